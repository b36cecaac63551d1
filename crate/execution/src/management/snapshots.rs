//! Canister snapshots: `take_canister_snapshot`, `load_canister_snapshot`,
//! `list_canister_snapshots`, `delete_canister_snapshot`, and the download/upload of a
//! snapshot (`read_canister_snapshot_metadata`/`_data`, `upload_canister_snapshot_metadata`/
//! `_data`), as the interface spec describes them and with the replica's limits, errors and
//! costs.
//!
//! A snapshot holds the module, heap, stable memory and globals, the certified data and the
//! Wasm chunk store (spec); its bytes count toward the canister's memory. Taking, loading and
//! uploading cost a baseline of instructions plus one per byte, as on the IC.

use super::types::{
    ChunkHash, GlobalTimer, LoadCanisterSnapshotArgs, OnLowWasmMemoryHookStatus, ReadCanisterSnapshotDataArgs,
    ReadCanisterSnapshotDataResult, ReadCanisterSnapshotMetadataResult, Snapshot, SnapshotDataKind, SnapshotDataOffset,
    SnapshotGlobal, SnapshotIdRecord, TakeCanisterSnapshotArgs, UploadCanisterSnapshotDataArgs,
    UploadCanisterSnapshotMetadataArgs, UploadCanisterSnapshotMetadataResult,
};
use super::{check_controller_of, controlled_canister, empty_reply, encode, not_found, CanisterIdRecord};
use crate::embedder::{GlobalValue, MAX_MODULE_BYTES};
use crate::hypervisor::{ExecutionSnapshot, ExecutionState};
use crate::scheduler::ExecutionEnvironment;
use crate::state::{
    snapshot_id, snapshot_id_text, CallOrigin, ChangeDetails, CanisterSnapshot, CanisterState, LowWasmMemoryHook, SnapshotArea, SnapshotMeta,
    SnapshotSource,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tabnet_types::{CanisterId, ErrorCode, Principal, UserError};

/// The replica's limits and costs (`max_number_of_snapshots_per_canister`,
/// `canister_snapshot_baseline_instructions`, `canister_snapshot_data_baseline_instructions`,
/// the largest slice one `read_canister_snapshot_data` returns).
pub(crate) const MAX_SNAPSHOTS_PER_CANISTER: usize = 10;
const BASELINE_INSTRUCTIONS: u64 = 2_000_000_000;
const DATA_BASELINE_INSTRUCTIONS: u64 = 5_000_000;
const MAX_SLICE_BYTES: u64 = 2_000_000;
const WASM_PAGE: u64 = 64 * 1024;
const GIB: u64 = 1 << 30;

pub(super) fn take(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    sender: Principal,
    args: TakeCanisterSnapshotArgs,
) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    let replaced = replaced_snapshot(c, &id, args.replace_snapshot.as_ref().map(|b| b.as_slice()))?;
    let exec = c.execution.as_ref().ok_or_else(|| {
        UserError::new(ErrorCode::CanisterRejectedMessage, format!("Failed to create snapshot for empty canister {id}."))
    })?;
    let (heap, stable, globals) = exec.copy_memories();
    let meta = SnapshotMeta {
        source: SnapshotSource::TakenFromCanister,
        taken_at: env.time(),
        canister_version: c.system.canister_version,
        globals,
        certified_data: c.system.certified_data.clone(),
        wasm_chunk_store: c.system.wasm_chunk_store.clone(),
        global_timer: Some(c.system.global_timer),
        low_wasm_memory_hook: Some(c.system.low_wasm_memory_hook),
        module_len: 0,
        heap_len: 0,
        stable_len: 0,
    };
    let snapshot = CanisterSnapshot::new(meta, exec.module().bytes().to_vec(), heap, stable).expect("sizes taken from the parts");
    let size = snapshot.size();
    let freed = replaced.map_or(0, |local| c.system.snapshots[&local].size());
    pay(env, &id, BASELINE_INSTRUCTIONS.saturating_add(size), size.saturating_sub(freed))?;
    let taken_at = snapshot.meta().taken_at;
    let local_id = insert(env, &id, replaced, snapshot);
    if args.uninstall_code == Some(true) {
        super::uninstall(env, &id, Some(super::change_origin(origin, args.sender_canister_version)));
    }
    Ok(encode(&Snapshot { id: snapshot_id(&id, local_id), taken_at_timestamp: taken_at, total_size: size }))
}

pub(super) fn load(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    sender: Principal,
    args: LoadCanisterSnapshotArgs,
) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    // The snapshot may be another canister's of this subnet; the caller must control both (spec).
    let (owner, local_id) = crate::state::parse_snapshot_id(&args.snapshot_id).ok_or_else(|| snapshot_not_found(&id, &args.snapshot_id))?;
    let owner_state = env.state.canister(&owner).ok_or_else(|| snapshot_not_found(&id, &args.snapshot_id))?;
    let snapshot = owner_state.system.snapshots.get(&local_id).cloned().ok_or_else(|| snapshot_not_found(&id, &args.snapshot_id))?;
    if owner != id {
        check_controller_of(&owner_state.system, sender)?;
    }
    let m = snapshot.meta();
    // The canister's state gives way to the snapshot's.
    let old_bytes = c.memory_usage() - c.system.snapshots_size();
    pay(env, &id, BASELINE_INSTRUCTIONS.saturating_add(snapshot.size()), snapshot.size().saturating_sub(old_bytes))?;
    let execution = ExecutionState::restore(ExecutionSnapshot {
        module: snapshot.bytes(SnapshotArea::Module).to_vec(),
        heap: snapshot.bytes(SnapshotArea::Heap).to_vec(),
        stable: snapshot.bytes(SnapshotArea::Stable).to_vec(),
        globals: m.globals.clone(),
    })
    .map_err(|e| UserError::new(e.code, format!("Error from Canister {id}: {}", e.message)))?;
    let time = env.time();
    let c = env.state.canister_mut(&id).expect("checked above");
    c.execution = Some(execution);
    c.system.certified_data = m.certified_data.clone();
    c.system.wasm_chunk_store = m.wasm_chunk_store.clone();
    // Only an uploaded snapshot restores the timer and the hook's status, and only when its
    // metadata gave them (spec; the replica keeps them for taken snapshots).
    if m.source == SnapshotSource::MetadataUpload {
        if let Some(t) = m.global_timer {
            c.system.global_timer = t;
        }
        if let Some(h) = m.low_wasm_memory_hook {
            c.system.low_wasm_memory_hook = h;
        }
    }
    c.system.canister_version += 1;
    let details = ChangeDetails::LoadSnapshot {
        canister_version: m.canister_version,
        snapshot_id: args.snapshot_id.clone(),
        taken_at: m.taken_at,
        source: m.source,
        from_canister: (owner != id).then_some(owner),
    };
    c.system.record_change(time, super::change_origin(origin, args.sender_canister_version), details);
    Ok(empty_reply())
}

pub(super) fn list(env: &ExecutionEnvironment, sender: Principal, args: CanisterIdRecord) -> Result<Vec<u8>, UserError> {
    let c = visible_canister(env, sender, &args.canister_id)?;
    let list: Vec<Snapshot> = c
        .system
        .snapshots
        .iter()
        .map(|(local, s)| Snapshot {
            id: snapshot_id(&args.canister_id, *local),
            taken_at_timestamp: s.meta().taken_at,
            total_size: s.size(),
        })
        .collect();
    Ok(encode(&list))
}

pub(super) fn delete(env: &mut ExecutionEnvironment, sender: Principal, args: SnapshotIdRecord) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    let local_id = owned_snapshot(c, &id, &args.snapshot_id)?;
    env.state.canister_mut(&id).expect("checked above").system.snapshots.remove(&local_id);
    Ok(empty_reply())
}

pub(super) fn read_metadata(env: &ExecutionEnvironment, sender: Principal, args: SnapshotIdRecord) -> Result<Vec<u8>, UserError> {
    let c = visible_canister(env, sender, &args.canister_id)?;
    let s = &c.system.snapshots[&owned_snapshot(c, &args.canister_id, &args.snapshot_id)?];
    let m = s.meta();
    let result = ReadCanisterSnapshotMetadataResult {
        source: match m.source {
            SnapshotSource::TakenFromCanister => super::types::SnapshotSource::TakenFromCanister(candid::Reserved),
            SnapshotSource::MetadataUpload => super::types::SnapshotSource::MetadataUpload(candid::Reserved),
        },
        taken_at_timestamp: m.taken_at,
        wasm_module_size: m.module_len,
        globals: m.globals.iter().map(|g| global_out(*g)).collect(),
        wasm_memory_size: m.heap_len,
        stable_memory_size: m.stable_len,
        wasm_chunk_store: m.wasm_chunk_store.keys().map(|h| ChunkHash { hash: h.to_vec() }).collect(),
        canister_version: m.canister_version,
        certified_data: m.certified_data.clone(),
        global_timer: m.global_timer.map(|t| if t == 0 { GlobalTimer::Inactive } else { GlobalTimer::Active(t) }),
        on_low_wasm_memory_hook_status: m.low_wasm_memory_hook.map(|h| match h {
            LowWasmMemoryHook::ConditionNotSatisfied => OnLowWasmMemoryHookStatus::ConditionNotSatisfied,
            LowWasmMemoryHook::Ready => OnLowWasmMemoryHookStatus::Ready,
            LowWasmMemoryHook::Executed => OnLowWasmMemoryHookStatus::Executed,
        }),
    };
    Ok(encode(&result))
}

pub(super) fn read_data(env: &mut ExecutionEnvironment, sender: Principal, args: ReadCanisterSnapshotDataArgs) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = visible_canister(env, sender, &id)?;
    let s = c.system.snapshots[&owned_snapshot(c, &id, &args.snapshot_id)?].clone();
    let chunk = match args.kind {
        SnapshotDataKind::WasmModule { offset, size } => slice(&s, SnapshotArea::Module, offset, size)?,
        SnapshotDataKind::WasmMemory { offset, size } => slice(&s, SnapshotArea::Heap, offset, size)?,
        SnapshotDataKind::StableMemory { offset, size } => slice(&s, SnapshotArea::Stable, offset, size)?,
        SnapshotDataKind::WasmChunk { hash } => <[u8; 32]>::try_from(hash.as_slice())
            .ok()
            .and_then(|h| s.meta().wasm_chunk_store.get(&h))
            .map(|c| c.to_vec())
            .ok_or_else(|| chunk_store_error(format!("WasmChunkHash {} not found.", hex(&hash))))?,
    };
    // The canister pays for the copy, whoever reads (as on the IC).
    pay(env, &id, DATA_BASELINE_INSTRUCTIONS.saturating_add(chunk.len() as u64), 0)?;
    Ok(encode(&ReadCanisterSnapshotDataResult { chunk }))
}

pub(super) fn upload_metadata(
    env: &mut ExecutionEnvironment,
    sender: Principal,
    args: UploadCanisterSnapshotMetadataArgs,
) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    let wasm64 = c.execution.as_ref().is_some_and(|e| e.is_wasm64());
    let meta = validate_metadata(env, &args, wasm64)?;
    let replaced = replaced_snapshot(c, &id, args.replace_snapshot.as_ref().map(|b| b.as_slice()))?;
    let size = meta.module_len + meta.heap_len + meta.stable_len + 8 * meta.globals.len() as u64 + meta.certified_data.len() as u64;
    let freed = replaced.map_or(0, |local| c.system.snapshots[&local].size());
    // The whole snapshot is charged for from the start, its memories as the metadata sizes them.
    pay(env, &id, BASELINE_INSTRUCTIONS.saturating_add(size), size.saturating_sub(freed))?;
    let zeros = |n: u64| vec![0u8; n as usize];
    let (module, heap, stable) = (zeros(meta.module_len), zeros(meta.heap_len), zeros(meta.stable_len));
    let snapshot = CanisterSnapshot::new(meta, module, heap, stable).expect("sizes taken from the metadata");
    let local_id = insert(env, &id, replaced, snapshot);
    Ok(encode(&UploadCanisterSnapshotMetadataResult { snapshot_id: snapshot_id(&id, local_id) }))
}

pub(super) fn upload_data(env: &mut ExecutionEnvironment, sender: Principal, args: UploadCanisterSnapshotDataArgs) -> Result<Vec<u8>, UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    let local_id = owned_snapshot(c, &id, &args.snapshot_id)?;
    let s = &c.system.snapshots[&local_id];
    if s.meta().source != SnapshotSource::MetadataUpload {
        return Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            "Only canister snapshots created by metadata upload can be mutated.",
        ));
    }
    let len = args.chunk.len() as u64;
    let (area, offset) = match args.kind {
        SnapshotDataOffset::WasmModule { offset } => (SnapshotArea::Module, offset),
        SnapshotDataOffset::WasmMemory { offset } => (SnapshotArea::Heap, offset),
        SnapshotDataOffset::StableMemory { offset } => (SnapshotArea::Stable, offset),
        SnapshotDataOffset::WasmChunk => {
            if args.chunk.len() > super::chunks::MAX_CHUNK_BYTES {
                return Err(chunk_store_error(format!(
                    "Wasm chunk size {} exceeds the maximum chunk size of {}",
                    args.chunk.len(),
                    super::chunks::MAX_CHUNK_BYTES
                )));
            }
            let hash: [u8; 32] = Sha256::digest(&args.chunk).into();
            let store = &s.meta().wasm_chunk_store;
            if store.contains_key(&hash) {
                return Ok(empty_reply());
            }
            if store.len() >= super::chunks::MAX_CHUNKS {
                return Err(chunk_store_error("Wasm chunk store has no space left".into()));
            }
            // The chunk store was not sized by the metadata: its chunks add memory.
            pay(env, &id, DATA_BASELINE_INSTRUCTIONS.saturating_add(len), len)?;
            let c = env.state.canister_mut(&id).expect("checked above");
            let s = Arc::make_mut(c.system.snapshots.get_mut(&local_id).expect("checked above"));
            s.insert_chunk(hash, args.chunk);
            return Ok(empty_reply());
        }
    };
    if offset.checked_add(len).is_none_or(|end| end > s.bytes(area).len() as u64) {
        return Err(invalid_slice(offset, len));
    }
    pay(env, &id, DATA_BASELINE_INSTRUCTIONS.saturating_add(len), 0)?;
    let c = env.state.canister_mut(&id).expect("checked above");
    let s = Arc::make_mut(c.system.snapshots.get_mut(&local_id).expect("checked above"));
    let written = s.write(area, offset, &args.chunk);
    debug_assert!(written, "the slice was checked to fit");
    Ok(empty_reply())
}

// ---- helpers ----

/// Adds a snapshot under the canister's next local id, after removing the one it replaces.
fn insert(env: &mut ExecutionEnvironment, id: &CanisterId, replaced: Option<u64>, snapshot: CanisterSnapshot) -> u64 {
    let s = &mut env.state.canister_mut(id).expect("the canister exists").system;
    if let Some(local) = replaced {
        s.snapshots.remove(&local);
    }
    let local_id = s.next_snapshot_id;
    s.next_snapshot_id += 1;
    s.snapshots.insert(local_id, Arc::new(snapshot));
    local_id
}

/// The snapshot `replace` names (it must be the canister's), or, without one, a check that
/// the canister has room for another (spec: at most so many snapshots per canister).
fn replaced_snapshot(c: &CanisterState, id: &CanisterId, replace: Option<&[u8]>) -> Result<Option<u64>, UserError> {
    match replace {
        Some(snapshot) => owned_snapshot(c, id, snapshot).map(Some),
        None if c.system.snapshots.len() >= MAX_SNAPSHOTS_PER_CANISTER => Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            format!("Canister {id} has reached the maximum number of snapshots allowed: {MAX_SNAPSHOTS_PER_CANISTER}."),
        )),
        None => Ok(None),
    }
}

/// The local id of the canister's snapshot `snapshot`: IC0305 if there is none, and a reject
/// if it is another canister's.
fn owned_snapshot(c: &CanisterState, id: &CanisterId, snapshot: &[u8]) -> Result<u64, UserError> {
    let (owner, local) = crate::state::parse_snapshot_id(snapshot).ok_or_else(|| snapshot_not_found(id, snapshot))?;
    if owner != *id {
        return Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            format!("The snapshot {} does not belong to canister {id}.", snapshot_id_text(snapshot)),
        ));
    }
    if !c.system.snapshots.contains_key(&local) {
        return Err(snapshot_not_found(id, snapshot));
    }
    Ok(local)
}

fn snapshot_not_found(id: &CanisterId, snapshot: &[u8]) -> UserError {
    UserError::new(
        ErrorCode::CanisterSnapshotNotFound,
        format!("Could not find the snapshot ID {} for canister {id}.", snapshot_id_text(snapshot)),
    )
}

/// The canister, if `sender` may list and read its snapshots (`snapshot_visibility`, spec).
fn visible_canister<'a>(env: &'a ExecutionEnvironment, sender: Principal, id: &CanisterId) -> Result<&'a CanisterState, UserError> {
    let c = env.state.canister(id).ok_or_else(|| not_found(id))?;
    if !c.system.settings.snapshot_visibility.allows(&sender, &c.system.controllers) {
        check_controller_of(&c.system, sender)?;
    }
    Ok(c)
}

/// Takes the cost of `instructions` from the canister, which must stay above its freezing
/// threshold with `new_bytes` more memory, and checks that the subnet has that memory.
fn pay(env: &mut ExecutionEnvironment, id: &CanisterId, instructions: u64, new_bytes: u64) -> Result<(), UserError> {
    let c = env.state.canister(id).ok_or_else(|| not_found(id))?;
    let cost = env.config.cycles.execution_cost(instructions, false);
    let st = &c.system.settings;
    let memory = c.memory_usage().saturating_add(new_bytes);
    if st.memory_allocation > 0 && new_bytes > 0 && memory > st.memory_allocation {
        return Err(UserError::new(
            ErrorCode::InsufficientMemoryAllocation,
            format!("Canister was given {} memory allocation but at least {memory} of memory is required.", st.memory_allocation),
        ));
    }
    let threshold =
        env.config.cycles.freeze_threshold_cycles(memory.max(st.memory_allocation), st.compute_allocation, st.freezing_threshold);
    let needed = threshold.saturating_add(cost);
    if c.system.cycles < needed {
        return Err(UserError::new(
            ErrorCode::CanisterOutOfCycles,
            format!(
                "Canister snapshotting failed with: `Canister {id} is out of cycles: please top up the canister with at least {} additional cycles`",
                needed - c.system.cycles
            ),
        ));
    }
    env.check_subnet_memory(new_bytes)?;
    env.count_round_instructions(instructions);
    env.state.canister_mut(id).expect("checked above").system.charge(cost);
    Ok(())
}

fn slice(s: &CanisterSnapshot, area: SnapshotArea, offset: u64, size: u64) -> Result<Vec<u8>, UserError> {
    if size > MAX_SLICE_BYTES {
        return Err(UserError::new(
            ErrorCode::InvalidManagementPayload,
            format!("Requested slice too large: {size} > {MAX_SLICE_BYTES}"),
        ));
    }
    let bytes = s.bytes(area);
    match offset.checked_add(size).filter(|end| *end <= bytes.len() as u64) {
        Some(end) => Ok(bytes[offset as usize..end as usize].to_vec()),
        None => Err(invalid_slice(offset, size)),
    }
}

fn invalid_slice(offset: u64, size: u64) -> UserError {
    UserError::new(
        ErrorCode::InvalidManagementPayload,
        format!("Invalid subslice into wasm module / main memory / stable memory: offset: {offset}, size: {size}"),
    )
}

fn chunk_store_error(message: String) -> UserError {
    UserError::new(ErrorCode::CanisterContractViolation, format!("Error from Wasm chunk store: {message}"))
}

/// The metadata of an uploaded snapshot, checked as the replica checks it: memories in whole
/// Wasm pages within the heap's and stable memory's limits, a module no larger than any,
/// certified data of at most 32 bytes, globals this engine keeps (no `v128`).
fn validate_metadata(env: &ExecutionEnvironment, a: &UploadCanisterSnapshotMetadataArgs, wasm64: bool) -> Result<SnapshotMeta, UserError> {
    let invalid = |reason: String| {
        UserError::new(ErrorCode::InvalidManagementPayload, format!("Snapshot Metadata contains invalid data: {reason}"))
    };
    let max_heap = if wasm64 { 6 * GIB } else { 4 * GIB };
    if !a.wasm_memory_size.is_multiple_of(WASM_PAGE) || a.wasm_memory_size > max_heap {
        return Err(invalid(format!("wasm_memory_size {} is not a whole number of Wasm pages up to {max_heap}", a.wasm_memory_size)));
    }
    if !a.stable_memory_size.is_multiple_of(WASM_PAGE) || a.stable_memory_size > env.config.max_stable_memory {
        return Err(invalid(format!("stable_memory_size {} is not a whole number of Wasm pages up to {}", a.stable_memory_size, env.config.max_stable_memory)));
    }
    if a.wasm_module_size > MAX_MODULE_BYTES as u64 {
        return Err(invalid(format!("wasm_module_size {} exceeds {MAX_MODULE_BYTES}", a.wasm_module_size)));
    }
    if a.certified_data.len() > 32 {
        return Err(invalid(format!("certified_data has {} bytes, at most 32 are allowed", a.certified_data.len())));
    }
    let globals = a.globals.iter().map(|g| global_in(g).ok_or_else(|| invalid("v128 globals are not supported".into()))).collect::<Result<_, _>>()?;
    Ok(SnapshotMeta {
        source: SnapshotSource::MetadataUpload,
        taken_at: env.time(),
        canister_version: env.state.canister(&a.canister_id).map_or(0, |c| c.system.canister_version),
        globals,
        certified_data: a.certified_data.clone(),
        wasm_chunk_store: Default::default(),
        global_timer: a.global_timer.map(|t| match t {
            GlobalTimer::Inactive => 0,
            GlobalTimer::Active(t) => t,
        }),
        low_wasm_memory_hook: a.on_low_wasm_memory_hook_status.map(|h| match h {
            OnLowWasmMemoryHookStatus::ConditionNotSatisfied => LowWasmMemoryHook::ConditionNotSatisfied,
            OnLowWasmMemoryHookStatus::Ready => LowWasmMemoryHook::Ready,
            OnLowWasmMemoryHookStatus::Executed => LowWasmMemoryHook::Executed,
        }),
        module_len: a.wasm_module_size,
        heap_len: a.wasm_memory_size,
        stable_len: a.stable_memory_size,
    })
}

fn global_out(g: GlobalValue) -> SnapshotGlobal {
    match g {
        GlobalValue::I32(v) => SnapshotGlobal::I32(v),
        GlobalValue::I64(v) => SnapshotGlobal::I64(v),
        GlobalValue::F32(bits) => SnapshotGlobal::F32(f32::from_bits(bits)),
        GlobalValue::F64(bits) => SnapshotGlobal::F64(f64::from_bits(bits)),
    }
}

fn global_in(g: &SnapshotGlobal) -> Option<GlobalValue> {
    Some(match g {
        SnapshotGlobal::I32(v) => GlobalValue::I32(*v),
        SnapshotGlobal::I64(v) => GlobalValue::I64(*v),
        SnapshotGlobal::F32(v) => GlobalValue::F32(v.to_bits()),
        SnapshotGlobal::F64(v) => GlobalValue::F64(v.to_bits()),
        SnapshotGlobal::V128(_) => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
