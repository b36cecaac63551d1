//! How the replicated state lies in the [`Store`]:
//!
//! ```text
//! state/metadata                  subnet-wide state
//! state/canister/<id>             a canister's record: system state, module hash, memory sizes
//! state/module/<sha256>           a module, once however many canisters run it
//! state/heap/<id>/<chunk>         64 KiB chunks of the Wasm heap; all-zero chunks are absent
//! state/stable/<id>/<chunk>       the same for stable memory
//! state/snapshot/<id>/<local>     a snapshot's metadata (globals, certified data, chunk store)
//! state/snapshot/<id>/<local>/{module,heap,stable}/<chunk>
//!                                 its module and memories, in chunks as above
//! ```
//!
//! A snapshot is written when it is new or its hash (in the canister's record) changed, and
//! deleted with its canister or when the record no longer names it.
//!
//! A round writes the records of the canisters it changed and, of their memories, only the
//! chunks whose bytes differ from the stored ones: a counter's update costs a chunk or two,
//! not its whole heap and module.

use std::collections::BTreeSet;

use tabnet_execution::state::{
    decode_canister, decode_snapshot_meta, CanisterSnapshot, LoadedWasm, ReplicatedState, SnapshotLayout, WasmLayout,
};
use tabnet_types::CanisterId;

use crate::store::Store;

/// Every key of the replicated state starts with this.
pub const PREFIX: &str = "state/";
const KEY_METADATA: &str = "state/metadata";
const PREFIX_CANISTER: &str = "state/canister/";
const PREFIX_MODULE: &str = "state/module/";
const PREFIX_HEAP: &str = "state/heap/";
const PREFIX_STABLE: &str = "state/stable/";
const PREFIX_SNAPSHOT: &str = "state/snapshot/";
const CHUNK_BYTES: usize = 64 * 1024;

fn canister_key(id: &CanisterId) -> String {
    format!("{PREFIX_CANISTER}{}", hex::encode(id.as_slice()))
}
fn module_key(hash: &[u8]) -> String {
    format!("{PREFIX_MODULE}{}", hex::encode(hash))
}
fn memory_prefix(kind: &str, id: &CanisterId) -> String {
    format!("{kind}{}/", hex::encode(id.as_slice()))
}
fn snapshot_key(id: &CanisterId, local_id: u64) -> String {
    format!("{PREFIX_SNAPSHOT}{}/{local_id:016x}", hex::encode(id.as_slice()))
}
/// Where a snapshot's module, heap or stable memory lie.
fn snapshot_area_prefix(id: &CanisterId, local_id: u64, area: &str) -> String {
    format!("{}/{area}/", snapshot_key(id, local_id))
}
const SNAPSHOT_AREAS: [&str; 3] = ["module", "heap", "stable"];

/// Writes what changed of the canisters in `dirty` and the metadata.
pub fn save(store: &mut impl Store, state: &ReplicatedState, dirty: &BTreeSet<CanisterId>) -> Result<(), String> {
    let mut replaced_modules = BTreeSet::new();
    for id in dirty {
        let key = canister_key(id);
        // What is stored now: its module may be orphaned, its memories may have been longer.
        let (old, old_snapshots) = match store.get(&key)? {
            Some(record) => stored_layout(&record)?,
            None => (None, Vec::new()),
        };
        let stored = state.stored_canister(id);
        match &stored {
            Some(s) => store.put(&key, &s.record)?,
            None => store.delete(&key)?,
        }
        let wasm = stored.as_ref().and_then(|s| s.wasm.as_ref());
        if let Some(w) = wasm {
            let key = module_key(&w.module_hash);
            if !store.contains(&key)? {
                store.put(&key, w.module)?;
            }
        }
        let (old_heap, old_stable) = old.as_ref().map_or((0, 0), |o| (o.heap_len, o.stable_len));
        save_memory(store, &memory_prefix(PREFIX_HEAP, id), wasm.map_or(&[], |w| w.heap), old_heap)?;
        save_memory(store, &memory_prefix(PREFIX_STABLE, id), wasm.map_or(&[], |w| w.stable), old_stable)?;
        if let Some(old) = old.filter(|o| wasm.is_none_or(|w| w.module_hash[..] != o.module_hash[..])) {
            replaced_modules.insert(old.module_hash);
        }
        save_snapshots(store, id, stored.as_ref().map_or(&[][..], |s| &s.snapshots), &old_snapshots)?;
    }
    // Modules no canister runs any more.
    if !replaced_modules.is_empty() {
        let in_use: BTreeSet<Vec<u8>> =
            state.canister_ids().filter_map(|id| state.module_hash(id)).map(|h| h.to_vec()).collect();
        for hash in replaced_modules.difference(&in_use) {
            store.delete(&module_key(hash))?;
        }
    }
    store.put(KEY_METADATA, &state.encode_metadata())
}

/// Writes the snapshots that are new or changed since `old` was stored, and deletes those no
/// longer there. A snapshot's sizes never change, so its chunks past the end need no care.
fn save_snapshots(
    store: &mut impl Store,
    id: &CanisterId,
    snapshots: &[tabnet_execution::state::StoredSnapshot<'_>],
    old: &[SnapshotLayout],
) -> Result<(), String> {
    for s in snapshots {
        if old.contains(&s.layout) {
            continue;
        }
        let local_id = s.layout.local_id;
        store.put(&snapshot_key(id, local_id), &s.meta)?;
        for (area, bytes) in SNAPSHOT_AREAS.into_iter().zip([s.module, s.heap, s.stable]) {
            save_memory(store, &snapshot_area_prefix(id, local_id, area), bytes, bytes.len() as u64)?;
        }
    }
    for gone in old.iter().filter(|o| !snapshots.iter().any(|s| s.layout.local_id == o.local_id)) {
        store.delete(&snapshot_key(id, gone.local_id))?;
        for area in SNAPSHOT_AREAS {
            for key in store.list(&snapshot_area_prefix(id, gone.local_id, area))? {
                store.delete(&key)?;
            }
        }
    }
    Ok(())
}

/// Reads back a snapshot [`save_snapshots`] wrote.
fn load_snapshot(store: &impl Store, id: &CanisterId, layout: &SnapshotLayout) -> Result<CanisterSnapshot, String> {
    let key = snapshot_key(id, layout.local_id);
    let meta = decode_snapshot_meta(&store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?)?;
    let mut areas = Vec::with_capacity(3);
    for (area, len) in SNAPSHOT_AREAS.into_iter().zip([meta.module_len, meta.heap_len, meta.stable_len]) {
        areas.push(load_memory(store, &snapshot_area_prefix(id, layout.local_id, area), len)?);
    }
    let stable = areas.pop().unwrap_or_default();
    let heap = areas.pop().unwrap_or_default();
    let module = areas.pop().unwrap_or_default();
    CanisterSnapshot::new(meta, module, heap, stable).ok_or_else(|| format!("{key}: memories do not have the recorded sizes"))
}

/// Writes the chunks of `memory` that differ from the stored ones and drops those past its end
/// (the memory was `old_len` bytes).
fn save_memory(store: &mut impl Store, prefix: &str, memory: &[u8], old_len: u64) -> Result<(), String> {
    static ZEROS: [u8; CHUNK_BYTES] = [0; CHUNK_BYTES];
    for (i, chunk) in memory.chunks(CHUNK_BYTES).enumerate() {
        let key = chunk_key(prefix, i);
        if tabnet_types::same_bytes(chunk, &ZEROS[..chunk.len()]) {
            store.delete(&key)?;
        } else {
            store.put_if_changed(&key, chunk)?;
        }
    }
    for i in memory.len().div_ceil(CHUNK_BYTES)..(old_len as usize).div_ceil(CHUNK_BYTES) {
        store.delete(&chunk_key(prefix, i))?;
    }
    Ok(())
}

fn chunk_key(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:08x}")
}

fn chunk_index(name: &str) -> Option<usize> {
    usize::from_str_radix(name, 16).ok()
}

fn load_memory(store: &impl Store, prefix: &str, len: u64) -> Result<Vec<u8>, String> {
    let mut memory = vec![0u8; len as usize];
    for key in store.list(prefix)? {
        let at = chunk_index(&key[prefix.len()..]).ok_or_else(|| format!("bad chunk key {key}"))? * CHUNK_BYTES;
        let chunk = store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?;
        memory
            .get_mut(at..at + chunk.len())
            .ok_or_else(|| format!("chunk {key} lies past the memory's recorded size"))?
            .copy_from_slice(&chunk);
    }
    Ok(memory)
}

/// The Wasm layout a stored record names (`None`: an empty canister), and its snapshots.
fn stored_layout(record: &[u8]) -> Result<(Option<WasmLayout>, Vec<SnapshotLayout>), String> {
    #[derive(serde::Deserialize)]
    struct Record {
        wasm: Option<WasmLayout>,
        #[serde(default)]
        snapshots: Vec<SnapshotLayout>,
    }
    let record: Record = ciborium::from_reader(record).map_err(|e| format!("bad canister record: {e}"))?;
    Ok((record.wasm, record.snapshots))
}

/// The stored state, or `None` if the store holds none yet.
pub fn load(store: &impl Store) -> Result<Option<ReplicatedState>, String> {
    let Some(metadata) = store.get(KEY_METADATA)? else { return Ok(None) };
    let mut canisters = Vec::new();
    for key in store.list(PREFIX_CANISTER)? {
        let record = store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?;
        let id_hex = &key[PREFIX_CANISTER.len()..];
        let id = CanisterId::from_slice(&hex::decode(id_hex).map_err(|_| format!("bad canister key {key}"))?);
        canisters.push(decode_canister(
            &record,
            |layout| {
                let module_key = module_key(&layout.module_hash);
                Ok(LoadedWasm {
                    module: store.get(&module_key)?.ok_or_else(|| format!("store lost {module_key}"))?,
                    heap: load_memory(store, &memory_prefix(PREFIX_HEAP, &id), layout.heap_len)?,
                    stable: load_memory(store, &memory_prefix(PREFIX_STABLE, &id), layout.stable_len)?,
                })
            },
            |layout| load_snapshot(store, &id, layout),
        )?);
    }
    ReplicatedState::decode(&metadata, canisters).map(Some)
}
