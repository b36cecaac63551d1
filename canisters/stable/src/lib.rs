//! `stable`: a key-value store kept in stable memory (ic-stable-structures over the stable64
//! System API), so it survives upgrades, beside a heap value that an upgrade resets.
//! `pre_upgrade` and `post_upgrade` each bump a counter in stable memory, so a test can see
//! both hooks ran and that what `pre_upgrade` wrote reached the new code.

use std::cell::RefCell;

use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};

type Memory = VirtualMemory<DefaultMemoryImpl>;

const ENTRIES: MemoryId = MemoryId::new(0);
const PRE_UPGRADES: MemoryId = MemoryId::new(1);
const POST_UPGRADES: MemoryId = MemoryId::new(2);

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    static ENTRY_MAP: RefCell<StableBTreeMap<String, String, Memory>> =
        RefCell::new(StableBTreeMap::init(MEMORY.with(|m| m.get(ENTRIES))));
    static PRE_UPGRADE_COUNT: RefCell<StableCell<u64, Memory>> =
        RefCell::new(StableCell::init(MEMORY.with(|m| m.get(PRE_UPGRADES)), 0));
    static POST_UPGRADE_COUNT: RefCell<StableCell<u64, Memory>> =
        RefCell::new(StableCell::init(MEMORY.with(|m| m.get(POST_UPGRADES)), 0));
    /// Lives on the heap only: back to empty after every upgrade.
    static HEAP_VALUE: RefCell<String> = const { RefCell::new(String::new()) };
}

#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    PRE_UPGRADE_COUNT.with_borrow_mut(|c| {
        let n = *c.get() + 1;
        c.set(n);
    });
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    POST_UPGRADE_COUNT.with_borrow_mut(|c| {
        let n = *c.get() + 1;
        c.set(n);
    });
}

/// Stores `value` under `key`; returns the previous value.
#[ic_cdk::update]
fn put(key: String, value: String) -> Option<String> {
    ENTRY_MAP.with_borrow_mut(|m| m.insert(key, value))
}

#[ic_cdk::query]
fn get(key: String) -> Option<String> {
    ENTRY_MAP.with_borrow(|m| m.get(&key))
}

#[ic_cdk::query]
fn len() -> u64 {
    ENTRY_MAP.with_borrow(|m| m.len())
}

#[ic_cdk::update]
fn set_heap(value: String) {
    HEAP_VALUE.set(value);
}

#[ic_cdk::query]
fn get_heap() -> String {
    HEAP_VALUE.with_borrow(|v| v.clone())
}

/// How many times `pre_upgrade` and `post_upgrade` have run.
#[ic_cdk::query]
fn upgrades() -> (u64, u64) {
    (
        PRE_UPGRADE_COUNT.with_borrow(|c| *c.get()),
        POST_UPGRADE_COUNT.with_borrow(|c| *c.get()),
    )
}

/// Stable memory size in 64 KiB pages.
#[ic_cdk::query]
fn stable_pages() -> u64 {
    ic_cdk::api::stable_size()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
