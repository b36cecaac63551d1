//! Canister snapshots as the interface spec describes them (`take_canister_snapshot`,
//! `load_canister_snapshot`, `list_canister_snapshots`, `delete_canister_snapshot`, and the
//! download/upload of a snapshot), encoded and decoded with DFINITY's own types as ic-cdk does.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{CandidType, Encode};
use ic_management_canister_types as ic;
use scheduler_support::*;
use tabnet_types::{CanisterId, ErrorCode};

/// State in every place a snapshot keeps: `inc` adds one to a counter in the heap (address 0),
/// in a mutable global and in stable memory, and certifies it; `read` (query) replies the
/// three, 24 bytes; `smash` wrecks them all (and grows the heap). `v2` adds `version`.
fn state_wat(v2: bool) -> Vec<u8> {
    let version = if v2 { r#"(func (export "canister_query version") (call $reply))"# } else { "" };
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "certified_data_set" (func $cert_set (param i32 i32)))
  (memory (export "memory") 1)
  (global $g (mut i64) (i64.const 0))
  (func (export "canister_update inc")
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (global.set $g (i64.add (global.get $g) (i64.const 1)))
    (if (i64.eqz (call $stable_size)) (then (drop (call $stable_grow (i64.const 1)))))
    (call $stable_write (i64.const 0) (i64.const 0) (i64.const 8))
    (call $cert_set (i32.const 0) (i32.const 8))
    (call $reply_append (i32.const 0) (i32.const 8)) (call $reply))
  (func (export "canister_query read")
    (i64.store (i32.const 8) (global.get $g))
    (call $stable_read (i64.const 16) (i64.const 0) (i64.const 8))
    (call $reply_append (i32.const 0) (i32.const 24)) (call $reply))
  (func (export "canister_update smash")
    (drop (memory.grow (i32.const 1)))
    (memory.fill (i32.const 0) (i32.const 0xff) (i32.const 65536))
    (global.set $g (i64.const -1))
    (call $stable_write (i64.const 0) (i64.const 0) (i64.const 8))
    (call $reply))
  {version}
)"#
    ))
}

/// (heap counter, global, stable counter)
fn read(t: &mut Env, id: CanisterId) -> (u64, u64, u64) {
    let r = t.query(user(), id, "read", vec![]).unwrap();
    (u64_of(&r[0..8]), u64_of(&r[8..16]), u64_of(&r[16..24]))
}

fn call<T: CandidType>(t: &mut Env, sender: candid::Principal, method: &str, arg: &T) -> Outcome {
    t.mgmt(sender, method, arg)
}

fn take(t: &mut Env, id: CanisterId, replace: Option<Vec<u8>>) -> Result<ic::Snapshot, (tabnet_types::RejectCode, String, ErrorCode)> {
    let args = ic::TakeCanisterSnapshotArgs { canister_id: id, replace_snapshot: replace, uninstall_code: None, sender_canister_version: None };
    call(t, user(), "take_canister_snapshot", &args).map(|r| candid::decode_one(&r).unwrap())
}

fn load(t: &mut Env, id: CanisterId, snapshot_id: &[u8]) -> Outcome {
    let args = ic::LoadCanisterSnapshotArgs { canister_id: id, snapshot_id: snapshot_id.to_vec(), sender_canister_version: None };
    call(t, user(), "load_canister_snapshot", &args)
}

fn list(t: &mut Env, sender: candid::Principal, id: CanisterId) -> Result<Vec<ic::Snapshot>, (tabnet_types::RejectCode, String, ErrorCode)> {
    call(t, sender, "list_canister_snapshots", &ic::CanisterIdRecord { canister_id: id }).map(|r| candid::decode_one(&r).unwrap())
}

fn delete(t: &mut Env, id: CanisterId, snapshot_id: &[u8]) -> Outcome {
    call(t, user(), "delete_canister_snapshot", &ic::DeleteCanisterSnapshotArgs { canister_id: id, snapshot_id: snapshot_id.to_vec() })
}

fn code(o: Outcome) -> ErrorCode {
    o.expect_err("rejected").2
}

#[test]
fn a_loaded_snapshot_restores_heap_stable_memory_globals_module_and_certified_data() {
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    for _ in 0..3 {
        t.update(id, "inc", vec![]).unwrap();
    }
    let module_hash = t.status(id).module_hash;
    let cycles_before = t.cycles(id);
    let hash_before = t.env.state_hash();

    let snapshot = take(&mut t, id, None).unwrap();
    // The replica's id: the local id (big-endian u64) and the canister id.
    assert_eq!(snapshot.id, [&0u64.to_be_bytes()[..], id.as_slice()].concat());
    assert_eq!(snapshot.taken_at_timestamp, t.time);
    assert!(snapshot.total_size >= 2 * 65536, "heap and stable memory at least: {}", snapshot.total_size);
    assert!(t.cycles(id) < cycles_before, "taking a snapshot costs cycles");
    assert_ne!(t.env.state_hash(), hash_before, "a snapshot is part of the replicated state");
    // Its bytes count toward the canister's memory (spec: memory_metrics.snapshots_size).
    let status = t.status(id);
    assert_eq!(status.memory_metrics.snapshots_size, snapshot.total_size);
    assert!(status.memory_size >= snapshot.total_size * 2u64);

    // Change everything: more increments, wreck the memories, a new module.
    t.update(id, "inc", vec![]).unwrap();
    t.update(id, "smash", vec![]).unwrap();
    assert_eq!(read(&mut t, id), (u64::MAX, u64::MAX, u64::MAX));
    t.install_mode(id, &state_wat(true), Encode!().unwrap(), ic_mode_upgrade()).unwrap();
    assert!(t.query(user(), id, "version", vec![]).is_ok());
    assert_ne!(t.status(id).module_hash, module_hash);
    let version_before_load = t.status(id).version;

    load(&mut t, id, &snapshot.id).unwrap();
    assert_eq!(read(&mut t, id), (3, 3, 3), "heap, global and stable memory as they were");
    assert_eq!(t.status(id).module_hash, module_hash, "the module as it was");
    assert_eq!(t.query(user(), id, "version", vec![]).unwrap_err().2, ErrorCode::CanisterMethodNotFound);
    assert_eq!(t.env.state().certified_data(&id).unwrap(), 3u64.to_le_bytes(), "certified data as it was");
    assert_eq!(t.status(id).version, version_before_load + 1, "loading is a change of the canister");
    // The snapshot stays and can be loaded again.
    t.update(id, "inc", vec![]).unwrap();
    load(&mut t, id, &snapshot.id).unwrap();
    assert_eq!(read(&mut t, id), (3, 3, 3));
}

fn ic_mode_upgrade() -> tabnet_execution::management::types::CanisterInstallMode {
    tabnet_execution::management::types::CanisterInstallMode::Upgrade(None)
}

#[test]
fn snapshots_are_listed_and_deleted_and_a_deleted_one_is_not_found() {
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    t.update(id, "inc", vec![]).unwrap();
    let first = take(&mut t, id, None).unwrap();
    t.update(id, "inc", vec![]).unwrap();
    let second = take(&mut t, id, None).unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(list(&mut t, user(), id).unwrap(), vec![first.clone(), second.clone()]);

    delete(&mut t, id, &first.id).unwrap();
    assert_eq!(list(&mut t, user(), id).unwrap(), vec![second.clone()]);
    assert_eq!(t.status(id).memory_metrics.snapshots_size, second.total_size);
    assert_eq!(code(delete(&mut t, id, &first.id)), ErrorCode::CanisterSnapshotNotFound);
    assert_eq!(code(load(&mut t, id, &first.id)), ErrorCode::CanisterSnapshotNotFound);
    // Ids are not reused.
    let third = take(&mut t, id, None).unwrap();
    assert_eq!(third.id[..8], 2u64.to_be_bytes());

    // A snapshot of another canister is not this one's to delete.
    let other = t.deploy(&state_wat(false));
    let e = delete(&mut t, other, &second.id).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterRejectedMessage);
    assert!(e.1.contains("does not belong"), "{e:?}");
}

#[test]
fn only_controllers_take_load_and_delete_and_snapshot_visibility_rules_reads() {
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    t.update(id, "inc", vec![]).unwrap();
    let snapshot = take(&mut t, id, None).unwrap();
    let stranger = other_user();

    let take_args = ic::TakeCanisterSnapshotArgs { canister_id: id, replace_snapshot: None, uninstall_code: None, sender_canister_version: None };
    assert_eq!(code(call(&mut t, stranger, "take_canister_snapshot", &take_args)), ErrorCode::CanisterInvalidController);
    let load_args = ic::LoadCanisterSnapshotArgs { canister_id: id, snapshot_id: snapshot.id.clone(), sender_canister_version: None };
    assert_eq!(code(call(&mut t, stranger, "load_canister_snapshot", &load_args)), ErrorCode::CanisterInvalidController);
    let delete_args = ic::DeleteCanisterSnapshotArgs { canister_id: id, snapshot_id: snapshot.id.clone() };
    assert_eq!(code(call(&mut t, stranger, "delete_canister_snapshot", &delete_args)), ErrorCode::CanisterInvalidController);
    let meta_args = ic::ReadCanisterSnapshotMetadataArgs { canister_id: id, snapshot_id: snapshot.id.clone() };
    assert_eq!(code(call(&mut t, stranger, "read_canister_snapshot_metadata", &meta_args)), ErrorCode::CanisterInvalidController);
    assert_eq!(list(&mut t, stranger, id).unwrap_err().2, ErrorCode::CanisterInvalidController);

    // `snapshot_visibility = public`: anyone lists and reads, still only controllers change.
    let settings = tabnet_execution::management::types::CanisterSettings {
        snapshot_visibility: Some(tabnet_execution::management::types::LogVisibility::Public),
        ..Default::default()
    };
    let update = tabnet_execution::management::types::UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None };
    t.mgmt(user(), "update_settings", &update).unwrap();
    assert_eq!(list(&mut t, stranger, id).unwrap(), vec![snapshot.clone()]);
    assert!(call(&mut t, stranger, "read_canister_snapshot_metadata", &meta_args).is_ok());
    assert_eq!(code(call(&mut t, stranger, "delete_canister_snapshot", &delete_args)), ErrorCode::CanisterInvalidController);
    assert_eq!(list(&mut t, user(), id).unwrap().len(), 1);
}

#[test]
fn at_most_ten_snapshots_unless_one_is_replaced_and_an_empty_canister_has_none() {
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    let taken: Vec<ic::Snapshot> = (0..10).map(|_| take(&mut t, id, None).unwrap()).collect();
    let e = take(&mut t, id, None).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterRejectedMessage);
    assert!(e.1.contains("maximum number of snapshots"), "{e:?}");

    // replace_snapshot deletes the named one once the new one exists.
    t.update(id, "inc", vec![]).unwrap();
    let newest = take(&mut t, id, Some(taken[3].id.clone())).unwrap();
    let ids: Vec<Vec<u8>> = list(&mut t, user(), id).unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 10);
    assert!(!ids.contains(&taken[3].id) && ids.contains(&newest.id));
    assert_eq!(code(load(&mut t, id, &taken[3].id)), ErrorCode::CanisterSnapshotNotFound);

    // uninstall_code empties the canister after the snapshot; loading brings the code back.
    let args = ic::TakeCanisterSnapshotArgs {
        canister_id: id,
        replace_snapshot: Some(newest.id.clone()),
        uninstall_code: Some(true),
        sender_canister_version: None,
    };
    let last: ic::Snapshot = candid::decode_one(&call(&mut t, user(), "take_canister_snapshot", &args).unwrap()).unwrap();
    assert_eq!(t.status(id).module_hash, None);
    load(&mut t, id, &last.id).unwrap();
    assert_eq!(read(&mut t, id).0, 1);

    let empty = t.create(None);
    let e = take(&mut t, empty, None).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterRejectedMessage);
    assert!(e.1.contains("empty canister"), "{e:?}");
}

fn read_data(t: &mut Env, id: CanisterId, snapshot_id: &[u8], kind: ic::SnapshotDataKind) -> Outcome {
    let args = ic::ReadCanisterSnapshotDataArgs { canister_id: id, snapshot_id: snapshot_id.to_vec(), kind };
    call(t, user(), "read_canister_snapshot_data", &args)
}

/// Downloads one area in slices of at most `slice` bytes.
fn download(t: &mut Env, id: CanisterId, snapshot_id: &[u8], len: u64, kind: fn(u64, u64) -> ic::SnapshotDataKind) -> Vec<u8> {
    let slice = 50_000;
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < len {
        let size = slice.min(len - bytes.len() as u64);
        let r = read_data(t, id, snapshot_id, kind(bytes.len() as u64, size)).unwrap();
        bytes.extend(candid::decode_one::<ic::ReadCanisterSnapshotDataResult>(&r).unwrap().chunk);
    }
    bytes
}

fn upload(t: &mut Env, id: CanisterId, snapshot_id: &[u8], bytes: &[u8], kind: fn(u64) -> ic::SnapshotDataOffset) {
    for (i, chunk) in bytes.chunks(50_000).enumerate() {
        let args = ic::UploadCanisterSnapshotDataArgs {
            canister_id: id,
            snapshot_id: snapshot_id.to_vec(),
            kind: kind(i as u64 * 50_000),
            chunk: chunk.to_vec(),
        };
        call(t, user(), "upload_canister_snapshot_data", &args).unwrap();
    }
}

#[test]
fn a_downloaded_snapshot_uploaded_to_another_canister_loads_there() {
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    for _ in 0..5 {
        t.update(id, "inc", vec![]).unwrap();
    }
    let chunk = vec![7u8; 1000];
    let upload_chunk = tabnet_execution::management::types::UploadChunkArgs { canister_id: id, chunk: chunk.clone() };
    t.mgmt(user(), "upload_chunk", &upload_chunk).unwrap();
    let snapshot = take(&mut t, id, None).unwrap();

    let meta_args = ic::ReadCanisterSnapshotMetadataArgs { canister_id: id, snapshot_id: snapshot.id.clone() };
    let meta: ic::ReadCanisterSnapshotMetadataResult =
        candid::decode_one(&call(&mut t, user(), "read_canister_snapshot_metadata", &meta_args).unwrap()).unwrap();
    assert!(matches!(meta.source, Some(ic::SnapshotSource::TakenFromCanister(_))));
    assert_eq!(meta.taken_at_timestamp, snapshot.taken_at_timestamp);
    assert_eq!((meta.wasm_memory_size, meta.stable_memory_size), (65536, 65536));
    assert_eq!(meta.wasm_module_size as usize, state_wat(false).len());
    assert!(matches!(meta.globals[..], [Some(ic::SnapshotMetadataGlobal::I64(5))]), "{:?}", meta.globals);
    assert_eq!(meta.certified_data, 5u64.to_le_bytes());
    assert_eq!(meta.wasm_chunk_store.len(), 1);
    assert!(matches!(meta.global_timer, Some(ic::CanisterTimer::Inactive)));

    let module = download(&mut t, id, &snapshot.id, meta.wasm_module_size, |offset, size| ic::SnapshotDataKind::WasmModule { offset, size });
    assert_eq!(module, state_wat(false));
    let heap = download(&mut t, id, &snapshot.id, meta.wasm_memory_size, |offset, size| ic::SnapshotDataKind::WasmMemory { offset, size });
    let stable = download(&mut t, id, &snapshot.id, meta.stable_memory_size, |offset, size| ic::SnapshotDataKind::StableMemory { offset, size });
    assert_eq!(heap[0..8], 5u64.to_le_bytes());
    let hash = meta.wasm_chunk_store[0].hash.clone();
    let r = read_data(&mut t, id, &snapshot.id, ic::SnapshotDataKind::WasmChunk { hash }).unwrap();
    assert_eq!(candid::decode_one::<ic::ReadCanisterSnapshotDataResult>(&r).unwrap().chunk, chunk);

    // Out of range and too large slices are refused.
    let past = read_data(&mut t, id, &snapshot.id, ic::SnapshotDataKind::WasmMemory { offset: 65_000, size: 1000 });
    assert_eq!(code(past), ErrorCode::InvalidManagementPayload);
    let large = read_data(&mut t, id, &snapshot.id, ic::SnapshotDataKind::StableMemory { offset: 0, size: 2_000_001 });
    assert_eq!(code(large), ErrorCode::InvalidManagementPayload);

    // Upload to a new, empty canister: metadata first, then the data.
    let target = t.create(None);
    let upload_meta = ic::UploadCanisterSnapshotMetadataArgs {
        canister_id: target,
        replace_snapshot: None,
        wasm_module_size: meta.wasm_module_size,
        globals: meta.globals.iter().flatten().cloned().collect(),
        wasm_memory_size: meta.wasm_memory_size,
        stable_memory_size: meta.stable_memory_size,
        certified_data: meta.certified_data.clone(),
        global_timer: meta.global_timer.clone(),
        on_low_wasm_memory_hook_status: meta.on_low_wasm_memory_hook_status.clone(),
    };
    let created: ic::UploadCanisterSnapshotMetadataResult =
        candid::decode_one(&call(&mut t, user(), "upload_canister_snapshot_metadata", &upload_meta).unwrap()).unwrap();
    assert_eq!(created.snapshot_id[8..], *target.as_slice());
    upload(&mut t, target, &created.snapshot_id, &module, |offset| ic::SnapshotDataOffset::WasmModule { offset });
    upload(&mut t, target, &created.snapshot_id, &heap, |offset| ic::SnapshotDataOffset::WasmMemory { offset });
    upload(&mut t, target, &created.snapshot_id, &stable, |offset| ic::SnapshotDataOffset::StableMemory { offset });
    upload(&mut t, target, &created.snapshot_id, &chunk, |_| ic::SnapshotDataOffset::WasmChunk);
    // Writing past the sizes the metadata gave is refused.
    let past = ic::UploadCanisterSnapshotDataArgs {
        canister_id: target,
        snapshot_id: created.snapshot_id.clone(),
        kind: ic::SnapshotDataOffset::WasmMemory { offset: 65_536 },
        chunk: vec![1],
    };
    assert_eq!(code(call(&mut t, user(), "upload_canister_snapshot_data", &past)), ErrorCode::InvalidManagementPayload);
    // A snapshot taken from a canister cannot be written to.
    let taken = ic::UploadCanisterSnapshotDataArgs {
        canister_id: id,
        snapshot_id: snapshot.id.clone(),
        kind: ic::SnapshotDataOffset::WasmModule { offset: 0 },
        chunk: vec![0],
    };
    let e = call(&mut t, user(), "upload_canister_snapshot_data", &taken).unwrap_err();
    assert!(e.1.contains("Only canister snapshots created by metadata upload can be mutated"), "{e:?}");

    load(&mut t, target, &created.snapshot_id).unwrap();
    assert_eq!(read(&mut t, target), (5, 5, 5));
    assert_eq!(t.env.state().certified_data(&target).unwrap(), 5u64.to_le_bytes());
    assert_eq!(t.status(target).module_hash, t.status(id).module_hash);
    let stored = tabnet_execution::management::types::CanisterIdRecord { canister_id: target };
    let hashes: Vec<tabnet_execution::management::types::ChunkHash> =
        candid::decode_one(&t.mgmt(user(), "stored_chunks", &stored).unwrap()).unwrap();
    assert_eq!(hashes.len(), 1, "the chunk store comes with the snapshot");
    let meta_args = ic::ReadCanisterSnapshotMetadataArgs { canister_id: target, snapshot_id: created.snapshot_id.clone() };
    let uploaded: ic::ReadCanisterSnapshotMetadataResult =
        candid::decode_one(&call(&mut t, user(), "read_canister_snapshot_metadata", &meta_args).unwrap()).unwrap();
    assert!(matches!(uploaded.source, Some(ic::SnapshotSource::MetadataUpload(_))));
}

#[test]
fn a_snapshot_loads_onto_another_canister_of_the_same_controller() {
    let mut t = Env::new();
    let source = t.deploy(&state_wat(false));
    t.update(source, "inc", vec![]).unwrap();
    t.update(source, "inc", vec![]).unwrap();
    let snapshot = take(&mut t, source, None).unwrap();
    let target = t.create(None);
    load(&mut t, target, &snapshot.id).unwrap();
    assert_eq!(read(&mut t, target), (2, 2, 2));
    assert!(list(&mut t, user(), target).unwrap().is_empty(), "the snapshot stays its canister's");
}

#[test]
fn snapshots_survive_the_stored_form_and_count_in_the_canister_hash() {
    use tabnet_execution::state::{decode_canister, LoadedWasm, ReplicatedState};
    let mut t = Env::new();
    let id = t.deploy(&state_wat(false));
    t.update(id, "inc", vec![]).unwrap();
    take(&mut t, id, None).unwrap();
    t.update(id, "inc", vec![]).unwrap();
    let state = t.env.state();
    let stored = state.stored_canister(&id).unwrap();
    assert_eq!(stored.snapshots.len(), 1);
    let wasm = stored.wasm.as_ref().unwrap();
    let decoded = decode_canister(
        &stored.record,
        |_| Ok(LoadedWasm { module: wasm.module.to_vec(), heap: wasm.heap.to_vec(), stable: wasm.stable.to_vec() }),
        |layout| stored.snapshots.iter().find(|s| s.layout == *layout).unwrap().load(),
    )
    .unwrap();
    assert_eq!(decoded.system.snapshots.len(), 1);
    let again = ReplicatedState::decode(&state.encode_metadata(), [decoded]).unwrap();
    let mut original = ReplicatedState::decode(&state.encode_metadata(), []).unwrap();
    assert_ne!(again.state_hash(), original.state_hash());
    // The same canister decoded twice hashes the same; without its snapshot it hashes otherwise.
    let twice = decode_canister(
        &stored.record,
        |_| Ok(LoadedWasm { module: wasm.module.to_vec(), heap: wasm.heap.to_vec(), stable: wasm.stable.to_vec() }),
        |layout| stored.snapshots.iter().find(|s| s.layout == *layout).unwrap().load(),
    )
    .unwrap();
    let mut without = twice;
    let kept = std::mem::take(&mut without.system.snapshots);
    original.insert_canister(without);
    assert_ne!(again.state_hash(), original.state_hash());
    original.canister_mut(&id).unwrap().system.snapshots = kept;
    assert_eq!(again.state_hash(), original.state_hash());
    assert_eq!(again.state_hash(), state.state_hash(), "the stored form is the live state");
}
