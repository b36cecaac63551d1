//! `membomb`: methods that allocate without bound, so the node must stop them at its memory
//! limits (Wasm heap and stable memory) with a trap, and go on serving; and `fill`, which
//! dirties a given amount of heap (the checkpoint benchmarks).

use std::cell::RefCell;

const MIB: usize = 1024 * 1024;
/// Stable memory pages (64 KiB each) added per step: 64 MiB.
const STABLE_STEP_PAGES: u64 = 1024;

thread_local! {
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Allocates 1 MiB chunks (touching every page) until the heap runs out, which traps.
#[ic_cdk::update]
fn grow() {
    loop {
        HOARD.with_borrow_mut(|h| h.push(vec![0xA5; MIB]));
    }
}

/// Keeps `mib` more MiB on the heap, every byte written with pseudo-random bytes (each call's
/// differ from the last's, so every page is dirty, and no storage engine can compress them
/// away); returns the heap size in 64 KiB pages.
#[ic_cdk::update]
fn fill(mib: u32) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ HOARD.with_borrow(|h| h.len() as u64);
    for _ in 0..mib {
        let chunk: Vec<u8> = (0..MIB / 8)
            .flat_map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        HOARD.with_borrow_mut(|h| h.push(chunk));
    }
    heap_pages()
}

/// Grows stable memory until a grow fails, then traps saying how far it got.
#[ic_cdk::update]
fn grow_stable() {
    loop {
        let old_pages = ic_cdk::api::stable_size();
        if ic_cdk::api::stable_grow(STABLE_STEP_PAGES) == u64::MAX {
            ic_cdk::trap(format!("grow_stable: stable memory full at {old_pages} pages"));
        }
        // Write into the new region so the memory is really used.
        ic_cdk::api::stable_write(old_pages * 65536, &[0xA5; 4096]);
    }
}

/// Wasm heap size in 64 KiB pages; stays small because failed `grow` calls roll back.
#[ic_cdk::query]
fn heap_pages() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) as u64;
    #[cfg(not(target_arch = "wasm32"))]
    return 0;
}

#[ic_cdk::query]
fn stable_pages() -> u64 {
    ic_cdk::api::stable_size()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
