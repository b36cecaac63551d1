//! `loop`: methods that never finish, so the node must stop them at the instruction limit,
//! and a bounded `spin` for measuring instruction counts.

use std::hint::black_box;

fn spin_forever() -> ! {
    let mut i: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop empty.
        i = black_box(i.wrapping_add(1));
    }
}

#[ic_cdk::update]
fn forever() {
    spin_forever()
}

#[ic_cdk::query]
fn forever_query() {
    spin_forever()
}

/// A composite query that calls `callee`'s `forever_query` `calls` times, one after another:
/// each call runs to the query instruction limit, so the graph runs `calls` times that.
/// Returns how many calls were rejected.
#[ic_cdk::query(composite = true)]
async fn forever_composite(callee: candid::Principal, calls: u32) -> u32 {
    let mut rejected = 0;
    for _ in 0..calls {
        if ic_cdk::call::Call::unbounded_wait(callee, "forever_query").await.is_err() {
            rejected += 1;
        }
    }
    rejected
}

/// Runs `n` loop iterations; returns the instructions this call used so far.
#[ic_cdk::update]
fn spin(n: u64) -> u64 {
    let mut acc: u64 = 0;
    for i in 0..n {
        acc = black_box(acc.wrapping_add(i));
    }
    ic_cdk::api::instruction_counter()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
