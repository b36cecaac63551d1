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
