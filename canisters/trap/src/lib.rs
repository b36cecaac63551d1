//! `trap`: methods that trap, so tests can check reject codes and that a trap rolls back
//! every state change the message made.

use std::cell::Cell;

thread_local! {
    static WRITES: Cell<u64> = const { Cell::new(0) };
}

#[ic_cdk::update]
fn boom() {
    ic_cdk::trap("boom: this canister trapped on purpose");
}

#[ic_cdk::query]
fn boom_query() {
    ic_cdk::trap("boom_query: this canister trapped on purpose");
}

/// A Rust panic: ic-cdk's panic hook turns it into a trap carrying the panic message.
#[ic_cdk::update]
fn panic() {
    panic!("panic: this canister panicked on purpose");
}

/// Counts a write, then traps if `fail` is true — in which case the write must roll back.
#[ic_cdk::update]
fn maybe(fail: bool) -> u64 {
    WRITES.set(WRITES.get() + 1);
    if fail {
        ic_cdk::trap(format!("maybe: trapping after write number {}", WRITES.get()));
    }
    WRITES.get()
}

/// Number of writes that stuck.
#[ic_cdk::query]
fn get() -> u64 {
    WRITES.get()
}

/// Rejects explicitly (reject code 4, CANISTER_REJECT) without trapping.
#[ic_cdk::update(manual_reply = true)]
fn reject(message: String) {
    ic_cdk::api::msg_reject(message);
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
