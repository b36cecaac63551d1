//! `counter`: the smallest stateful canister. The count survives upgrades (saved to stable
//! memory in `pre_upgrade`) and can be certified so agents can check it against the subnet's
//! certificate.

use std::cell::Cell;

use candid::{CandidType, Principal};

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Reply of `get_certified`: the count and the certificate the system gave this query
/// (only present in non-replicated queries).
#[derive(CandidType)]
pub struct CertifiedCount {
    pub count: u64,
    pub certificate: Option<Vec<u8>>,
}

/// Install argument `opt nat64`: the starting count (`DIDL\x00\x00`, no arguments, means 0).
#[ic_cdk::init]
fn init(start: Option<u64>) {
    COUNT.set(start.unwrap_or(0));
}

#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    ic_cdk::storage::stable_save((COUNT.get(),)).expect("counter: saving state failed");
}

#[ic_cdk::post_upgrade]
fn post_upgrade(start: Option<u64>) {
    let (saved,): (u64,) =
        ic_cdk::storage::stable_restore().expect("counter: restoring state failed");
    // An explicit start value on upgrade replaces the saved count.
    COUNT.set(start.unwrap_or(saved));
}

#[ic_cdk::update]
fn inc() -> u64 {
    COUNT.set(COUNT.get() + 1);
    COUNT.get()
}

#[ic_cdk::query]
fn get() -> u64 {
    COUNT.get()
}

/// Sets the canister's certified data to the count (8 bytes, big-endian).
#[ic_cdk::update]
fn set_certified() -> u64 {
    let count = COUNT.get();
    ic_cdk::api::certified_data_set(count.to_be_bytes());
    count
}

#[ic_cdk::query]
fn get_certified() -> CertifiedCount {
    CertifiedCount {
        count: COUNT.get(),
        certificate: ic_cdk::api::data_certificate(),
    }
}

/// The principal that sent this query.
#[ic_cdk::query]
fn whoami() -> Principal {
    ic_cdk::api::msg_caller()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
