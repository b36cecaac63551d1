//! The tab's IndexedDB storage in headless Chromium: what a node's store flushes is committed
//! batch by batch and read back after a reopen; a transaction cut off midway leaves nothing of
//! itself and the earlier state whole.
#![cfg(target_arch = "wasm32")]

use tabnet_replica::{BatchStore, Store};
use tabnet_web::idb::IdbStorage;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn fresh(name: &str) -> IdbStorage {
    IdbStorage::delete(name).await.expect("deleted");
    IdbStorage::open(name).await.expect("opened")
}

#[wasm_bindgen_test]
async fn committed_batches_survive_a_reopen() {
    let name = "tabnet-test-reopen";
    let db = fresh(name).await;
    let mut store = db.load().await.unwrap();
    store.put("canister/a", &[1; 100_000]).unwrap();
    store.put("canister/b", b"b").unwrap();
    store.flush().unwrap();
    store.delete("canister/b").unwrap();
    store.put("canister/c", b"c").unwrap();
    store.flush().unwrap();
    for batch in store.take_batches() {
        db.commit(&batch).await.unwrap();
    }
    db.put_checkpoint(10, b"state at 10", &[]).await.unwrap();
    db.put_checkpoint(20, b"state at 20", &[10]).await.unwrap();
    db.put_checkpoint(30, b"state at 30", &[20]).await.unwrap();
    db.close();

    let db = IdbStorage::open(name).await.unwrap();
    let store: BatchStore = db.load().await.unwrap();
    assert_eq!(store.list("").unwrap(), ["canister/a", "canister/c"]);
    assert_eq!(store.get("canister/a").unwrap().unwrap(), vec![1; 100_000]);
    assert_eq!(store.get("canister/c").unwrap().as_deref(), Some(&b"c"[..]));
    let heights: Vec<u64> = db.load_checkpoints().await.unwrap().into_iter().map(|(h, _)| h).collect();
    assert_eq!(heights, [20, 30], "the oldest checkpoint is dropped in the same write");
    db.close();
}

#[wasm_bindgen_test]
async fn a_write_cut_off_midway_leaves_the_previous_state_whole() {
    let name = "tabnet-test-abort";
    let db = fresh(name).await;
    let mut store = db.load().await.unwrap();
    store.put("page/0", &[0; 65_536]).unwrap();
    store.put("page/1", &[1; 65_536]).unwrap();
    store.flush().unwrap();
    for batch in store.take_batches() {
        db.commit(&batch).await.unwrap();
    }
    // The next checkpoint rewrites both pages and adds one; the tab dies before it completes.
    store.put("page/0", &[9; 65_536]).unwrap();
    store.put("page/1", &[9; 65_536]).unwrap();
    store.put("page/2", &[9; 65_536]).unwrap();
    store.flush().unwrap();
    let batch = store.take_batches().pop().unwrap();
    db.write_and_abort(&batch).await.unwrap();
    db.close();

    let db = IdbStorage::open(name).await.unwrap();
    let store = db.load().await.unwrap();
    assert_eq!(store.list("").unwrap(), ["page/0", "page/1"]);
    assert_eq!(store.get("page/0").unwrap().unwrap(), vec![0; 65_536]);
    assert_eq!(store.get("page/1").unwrap().unwrap(), vec![1; 65_536]);
    db.close();
}

/// Bytes that look like a state: pseudo-random (so content-defined cuts fall everywhere), with
/// `changed` 64 KiB pages rewritten at `pages`.
fn state(len: usize, seed: u64, pages: &[usize]) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for &p in pages {
        for (i, b) in bytes[p * 65_536..(p + 1) * 65_536].iter_mut().enumerate() {
            *b = (i as u64 ^ seed) as u8;
        }
    }
    bytes
}

#[wasm_bindgen_test]
async fn a_checkpoint_writes_only_what_the_kept_ones_lack() {
    let name = "tabnet-test-checkpoint-chunks";
    let db = fresh(name).await;
    let first = state(8 << 20, 1, &[]);
    let written = db.put_checkpoint(500, &first, &[]).await.unwrap();
    assert!(written >= first.len() as u64, "the first writes it all ({written})");
    // Two pages of 128 changed: about two chunks of 64 KiB (and their neighbours) are written.
    let second = state(8 << 20, 2, &[3, 70]);
    let written = db.put_checkpoint(1000, &second, &[500]).await.unwrap();
    assert!(written < 1 << 20, "a checkpoint that changed 128 KiB wrote {written} bytes");
    // A third drops the first (not kept): what only it had goes, what the others share stays.
    let third = state(8 << 20, 3, &[3]);
    db.put_checkpoint(1500, &third, &[1000]).await.unwrap();
    db.close();

    let db = IdbStorage::open(name).await.unwrap();
    let kept = db.load_checkpoints().await.unwrap();
    assert_eq!(kept.iter().map(|(h, _)| *h).collect::<Vec<_>>(), [1000, 1500]);
    assert!(kept[0].1 == second && kept[1].1 == third, "each checkpoint reads back whole");
    db.close();
}
