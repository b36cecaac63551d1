//! Replicated state: the canisters of this subnet and the subnet's own queue.
//!
//! Everything here is serialisable (compact CBOR) except the live Wasm instance, which persists
//! through its `ExecutionSnapshot`. Two replicas that executed the same rounds have equal
//! [`ReplicatedState::state_hash`]es.

pub mod snapshot;
pub mod system_state;

pub use snapshot::*;
pub use system_state::*;

use crate::hypervisor::{ExecutionSnapshot, ExecutionState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use tabnet_types::{canister_id_from_index, canister_index, CanisterId, Principal};

/// This subnet hosts canister indices `[0, CANISTER_RANGE_END)`.
pub const CANISTER_RANGE_END: u64 = 1 << 20;
/// Memory a queued message holds besides its method name and payload (principals, cycles,
/// origin); a round number, so that even empty messages count.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 100;

/// Memory a request holds while it waits in a queue.
pub fn request_bytes(r: &Request) -> u64 {
    (r.method.len() + r.arg.len()) as u64 + MESSAGE_OVERHEAD_BYTES
}

impl HeldBytes for Request {
    fn held_bytes(&self) -> u64 {
        request_bytes(self)
    }
}

impl HeldBytes for CanisterMessage {
    fn held_bytes(&self) -> u64 {
        message_bytes(self)
    }
}

/// Memory the replica holds for an open call context and for a callback (an outstanding
/// call): their records, with room for the origin, closures and bookkeeping.
pub const CALL_CONTEXT_BYTES: u64 = 200;
pub const CALLBACK_BYTES: u64 = 200;

/// Memory a queued message holds.
pub fn message_bytes(m: &CanisterMessage) -> u64 {
    match m {
        CanisterMessage::Request(r) => request_bytes(r),
        CanisterMessage::Response(r) => {
            let payload = match &r.payload {
                ResponsePayload::Reply(bytes) => bytes.len(),
                ResponsePayload::Reject { message, .. } => message.len(),
            };
            payload as u64 + MESSAGE_OVERHEAD_BYTES
        }
    }
}

/// One canister: its system state and, once code is installed, its Wasm state.
pub struct CanisterState {
    pub system: SystemState,
    pub execution: Option<ExecutionState>,
    /// The Wasm state an `install_code` running in slices builds aside
    /// (`system.long_install`); not replicated (see `management::install`).
    pub(crate) install: Option<Box<crate::management::install::InstallProgress>>,
}

impl CanisterState {
    /// Bytes the canister is charged storage for: Wasm memories, globals and the module, its
    /// certified data, its Wasm chunk store and its snapshots (which the IC counts as the
    /// canister's memory).
    pub fn memory_usage(&self) -> u64 {
        let wasm = self.execution.as_ref().map_or(0, |e| e.memory_usage());
        wasm + self.system.certified_data.len() as u64 + self.wasm_chunk_store_bytes() + self.system.snapshots_size()
    }

    pub fn wasm_chunk_store_bytes(&self) -> u64 {
        self.system.wasm_chunk_store.values().map(|chunk| chunk.len() as u64).sum()
    }

    /// Bytes held by the messages waiting in its input queue (the IC's message memory) and by
    /// its open call contexts and outstanding calls.
    pub fn message_memory_usage(&self) -> u64 {
        let s = &self.system;
        s.input_queue.bytes()
            + s.call_contexts.len() as u64 * CALL_CONTEXT_BYTES
            + s.callbacks.len() as u64 * CALLBACK_BYTES
    }

    pub fn id(&self) -> CanisterId {
        self.system.canister_id
    }

    /// Bytes an `install_code` running in slices holds aside (its new instance, or the copy of
    /// the old one `canister_pre_upgrade` runs on). The subnet's capacity bounds them too.
    pub fn install_memory_usage(&self) -> u64 {
        self.install.as_ref().map_or(0, |p| p.memory_usage())
    }

    pub fn module_hash(&self) -> Option<[u8; 32]> {
        self.execution.as_ref().map(|e| e.module().wasm_hash())
    }
}

/// Subnet-wide state besides the canisters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMetadata {
    pub next_canister_index: u64,
    /// Requests to the management canister, in arrival order.
    pub subnet_queue: MessageQueue<Request>,
    /// Rounds executed.
    pub round: u64,
    /// Block time of the last round.
    pub time: u64,
}

#[derive(Default)]
pub struct ReplicatedState {
    /// Changed only through `canister_mut`/`insert_canister`/`remove_canister`, which keep
    /// the dirty set and the hash cache right.
    pub(crate) canisters: BTreeMap<CanisterId, CanisterState>,
    pub metadata: StateMetadata,
    /// Canisters changed since the last `take_dirty` (not replicated).
    dirty: BTreeSet<CanisterId>,
    /// Per-canister hashes of unchanged canisters, so that hashing the state after a round
    /// does not rehash every canister's memories.
    hash_cache: RefCell<BTreeMap<CanisterId, [u8; 32]>>,
}

/// How one canister is stored: this small record, plus its module (kept once per module hash)
/// and its memories, which the replica keeps in chunks so that a round writes only the chunks
/// it changed.
#[derive(Serialize)]
struct CanisterRecordRef<'a> {
    system: &'a SystemState,
    wasm: Option<WasmLayout>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    snapshots: Vec<SnapshotLayout>,
}

#[derive(Deserialize)]
struct CanisterRecord {
    system: SystemState,
    wasm: Option<WasmLayout>,
    /// Records written before snapshots existed have none.
    #[serde(default)]
    snapshots: Vec<SnapshotLayout>,
}

/// What a stored canister's record says about one of its snapshots: its local id and the
/// hash of its content, so that a save rewrites a snapshot only when it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLayout {
    pub local_id: u64,
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
}

/// What a stored canister's record says about its Wasm state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WasmLayout {
    #[serde(with = "serde_bytes")]
    pub module_hash: Vec<u8>,
    pub heap_len: u64,
    pub stable_len: u64,
    pub globals: Vec<crate::embedder::GlobalValue>,
}

/// One canister in its stored form (see [`ReplicatedState::stored_canister`]).
pub struct StoredCanister<'a> {
    /// The record: system state, module hash, memory sizes and globals.
    pub record: Vec<u8>,
    /// The module and the memories, borrowed from the live instance.
    pub wasm: Option<StoredWasm<'a>>,
    pub snapshots: Vec<StoredSnapshot<'a>>,
}

/// One snapshot in its stored form: its metadata (CBOR of [`SnapshotMeta`]) and its module and
/// memories, borrowed.
pub struct StoredSnapshot<'a> {
    pub layout: SnapshotLayout,
    pub meta: Vec<u8>,
    pub module: &'a [u8],
    pub heap: &'a [u8],
    pub stable: &'a [u8],
}

impl StoredSnapshot<'_> {
    /// The snapshot back from its stored form (as a restarted node reads it).
    pub fn load(&self) -> Result<CanisterSnapshot, String> {
        let meta = decode_snapshot_meta(&self.meta)?;
        CanisterSnapshot::new(meta, self.module.to_vec(), self.heap.to_vec(), self.stable.to_vec())
            .ok_or_else(|| "snapshot memories do not have the recorded sizes".to_string())
    }
}

/// A snapshot's metadata from its stored form.
pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("bad snapshot metadata: {e}"))
}

pub struct StoredWasm<'a> {
    pub module_hash: [u8; 32],
    pub module: &'a [u8],
    pub heap: &'a [u8],
    pub stable: &'a [u8],
}

/// The module and memories a [`WasmLayout`] names, read back from the store.
pub struct LoadedWasm {
    pub module: Vec<u8>,
    pub heap: Vec<u8>,
    pub stable: Vec<u8>,
}

/// Rebuilds a canister from its record; `load` fetches the module and memories it names,
/// `load_snapshot` each snapshot it names (checked against the hash the record holds).
pub fn decode_canister(
    record: &[u8],
    load: impl FnOnce(&WasmLayout) -> Result<LoadedWasm, String>,
    mut load_snapshot: impl FnMut(&SnapshotLayout) -> Result<CanisterSnapshot, String>,
) -> Result<CanisterState, String> {
    let record: CanisterRecord = ciborium::from_reader(record).map_err(|e| format!("bad canister record: {e}"))?;
    let id = record.system.canister_id;
    let execution = match record.wasm {
        Some(layout) => {
            let loaded = load(&layout).map_err(|e| format!("canister {id}: {e}"))?;
            if loaded.heap.len() as u64 != layout.heap_len || loaded.stable.len() as u64 != layout.stable_len {
                return Err(format!("canister {id}: stored memories do not have the recorded sizes"));
            }
            let snapshot =
                ExecutionSnapshot { module: loaded.module, heap: loaded.heap, stable: loaded.stable, globals: layout.globals };
            Some(ExecutionState::restore(snapshot).map_err(|e| format!("canister {id}: cannot restore: {e}"))?)
        }
        None => None,
    };
    let mut system = record.system;
    for layout in &record.snapshots {
        let snapshot = load_snapshot(layout).map_err(|e| format!("canister {id}: snapshot {}: {e}", layout.local_id))?;
        if snapshot.hash()[..] != layout.hash[..] {
            return Err(format!("canister {id}: snapshot {} does not have the recorded hash", layout.local_id));
        }
        system.snapshots.insert(layout.local_id, std::sync::Arc::new(snapshot));
    }
    Ok(CanisterState { system, execution, install: None })
}

impl CanisterState {
    fn snapshot_layouts(&self) -> Vec<SnapshotLayout> {
        self.system
            .snapshots
            .iter()
            .map(|(local_id, s)| SnapshotLayout { local_id: *local_id, hash: s.hash().to_vec() })
            .collect()
    }
}

impl ReplicatedState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn canister(&self, id: &CanisterId) -> Option<&CanisterState> {
        self.canisters.get(id)
    }

    /// Mutable access; marks the canister dirty.
    pub fn canister_mut(&mut self, id: &CanisterId) -> Option<&mut CanisterState> {
        if !self.canisters.contains_key(id) {
            return None;
        }
        self.touch(id);
        self.canisters.get_mut(id)
    }

    pub fn insert_canister(&mut self, canister: CanisterState) {
        let id = canister.id();
        self.touch(&id);
        self.canisters.insert(id, canister);
    }

    pub fn remove_canister(&mut self, id: &CanisterId) -> Option<CanisterState> {
        self.touch(id);
        self.canisters.remove(id)
    }

    fn touch(&mut self, id: &CanisterId) {
        self.dirty.insert(*id);
        self.hash_cache.get_mut().remove(id);
    }

    /// Marks every canister dirty (e.g. to write a full checkpoint).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.canisters.keys().copied());
    }

    /// The next free canister id of this subnet's range, if any is left.
    pub fn allocate_canister_id(&mut self) -> Option<CanisterId> {
        while self.metadata.next_canister_index < CANISTER_RANGE_END {
            let id = canister_id_from_index(self.metadata.next_canister_index);
            self.metadata.next_canister_index += 1;
            if !self.canisters.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Memory everything on the subnet holds: every canister's memory, queued messages, open
    /// call contexts and outstanding calls, and
    /// the management canister's queue. The subnet's capacity bounds it.
    pub fn memory_used(&self) -> u64 {
        let canisters: u64 =
            self.canisters.values().map(|c| c.memory_usage() + c.message_memory_usage() + c.install_memory_usage()).sum();
        canisters + self.metadata.subnet_queue.bytes()
    }

    /// Whether `id` is a canister id in this subnet's range.
    pub fn in_range(id: &Principal) -> bool {
        canister_index(id).is_some_and(|i| i < CANISTER_RANGE_END)
    }

    // ---- persistence ----

    /// Canisters changed (or deleted) since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<CanisterId> {
        std::mem::take(&mut self.dirty)
    }

    /// The stored form of one canister; `None` if it does not exist (deleted).
    pub fn stored_canister(&self, id: &CanisterId) -> Option<StoredCanister<'_>> {
        let c = self.canisters.get(id)?;
        let wasm = c.execution.as_ref().map(|e| StoredWasm {
            module_hash: e.module().wasm_hash(),
            module: e.module().bytes(),
            heap: e.heap_bytes(),
            stable: e.stable_bytes(),
        });
        let layout = c.execution.as_ref().map(|e| WasmLayout {
            module_hash: e.module().wasm_hash().to_vec(),
            heap_len: e.heap_bytes().len() as u64,
            stable_len: e.stable_bytes().len() as u64,
            globals: e.global_values(),
        });
        let snapshots = c
            .system
            .snapshots
            .iter()
            .map(|(local_id, s)| StoredSnapshot {
                layout: SnapshotLayout { local_id: *local_id, hash: s.hash().to_vec() },
                meta: to_cbor(s.meta()),
                module: s.bytes(SnapshotArea::Module),
                heap: s.bytes(SnapshotArea::Heap),
                stable: s.bytes(SnapshotArea::Stable),
            })
            .collect();
        let record = CanisterRecordRef { system: &c.system, wasm: layout, snapshots: c.snapshot_layouts() };
        Some(StoredCanister { record: to_cbor(&record), wasm, snapshots })
    }

    /// The stored form of everything but the canisters.
    pub fn encode_metadata(&self) -> Vec<u8> {
        to_cbor(&self.metadata)
    }

    /// The state from its stored metadata and canisters (see [`decode_canister`]).
    pub fn decode(metadata: &[u8], canisters: impl IntoIterator<Item = CanisterState>) -> Result<Self, String> {
        let metadata: StateMetadata =
            ciborium::from_reader(metadata).map_err(|e| format!("bad state metadata: {e}"))?;
        let mut state = ReplicatedState { metadata, ..Default::default() };
        for c in canisters {
            state.canisters.insert(c.id(), c);
        }
        Ok(state)
    }

    /// A hash of everything replicated: metadata, and per canister its system state and the
    /// hash of its Wasm state.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tabnet-replicated-state");
        let meta = self.encode_metadata();
        h.update((meta.len() as u64).to_be_bytes());
        h.update(&meta);
        let mut cache = self.hash_cache.borrow_mut();
        for (id, c) in &self.canisters {
            let canister_hash = *cache.entry(*id).or_insert_with(|| canister_hash(id, c));
            h.update(canister_hash);
        }
        h.finalize().into()
    }

    // ---- read access for the certified state tree ----

    /// SHA-256 of the installed module as uploaded (`None`: empty canister).
    pub fn module_hash(&self, id: &CanisterId) -> Option<[u8; 32]> {
        Some(self.canisters.get(id)?.execution.as_ref()?.module().wasm_hash())
    }

    pub fn controllers(&self, id: &CanisterId) -> Option<&[Principal]> {
        Some(&self.canisters.get(id)?.system.controllers)
    }

    pub fn certified_data(&self, id: &CanisterId) -> Option<&[u8]> {
        Some(&self.canisters.get(id)?.system.certified_data)
    }

    /// Metadata section `name` of the canister's module: `(is_public, content)`.
    pub fn metadata_section(&self, id: &CanisterId, name: &str) -> Option<(bool, &[u8])> {
        self.canisters.get(id)?.execution.as_ref()?.module().metadata(name)
    }

    /// Names of the metadata sections, with their visibility (`true` = public).
    pub fn metadata_sections(&self, id: &CanisterId) -> Vec<(String, bool)> {
        match self.canisters.get(id).and_then(|c| c.execution.as_ref()) {
            Some(e) => e.module().metadata_sections().map(|(n, p)| (n.to_string(), p)).collect(),
            None => Vec::new(),
        }
    }

    pub fn canister_ids(&self) -> impl Iterator<Item = &CanisterId> {
        self.canisters.keys()
    }
}

/// One canister's part of the state hash: its id, system state and Wasm state.
fn canister_hash(id: &CanisterId, c: &CanisterState) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((id.as_slice().len() as u64).to_be_bytes());
    h.update(id.as_slice());
    let system = to_cbor(&c.system);
    h.update((system.len() as u64).to_be_bytes());
    h.update(&system);
    match &c.execution {
        Some(e) => {
            h.update([1]);
            h.update(e.state_hash());
        }
        None => h.update([0]),
    }
    // Snapshots are replicated state too.
    for (local_id, s) in &c.system.snapshots {
        h.update(local_id.to_be_bytes());
        h.update(s.hash());
    }
    h.finalize().into()
}

/// Compact CBOR; serialising these plain data types cannot fail.
pub(crate) fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding of plain data");
    out
}
