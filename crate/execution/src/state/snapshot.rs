//! Canister snapshots (`take_canister_snapshot`, `upload_canister_snapshot_metadata`): what a
//! snapshot holds — the module, heap, stable memory and globals, the certified data and the
//! Wasm chunk store (spec) — and how it is stored and hashed.
//!
//! A snapshot is replicated state: it is stored beside its canister's record (its small part,
//! [`SnapshotMeta`], and its module and memories in chunks, see the replica's
//! `canister_store`) and its hash is part of the canister's in the state hash. The hash is
//! computed once per change, not per round, as snapshots rarely change.

use super::system_state::LowWasmMemoryHook;
use crate::embedder::GlobalValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tabnet_types::CanisterId;

/// How a snapshot came to be (`read_canister_snapshot_metadata`'s `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotSource {
    TakenFromCanister,
    MetadataUpload,
}

/// Everything of a snapshot except its module and memories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub source: SnapshotSource,
    /// Block time when it was taken (or its metadata uploaded).
    pub taken_at: u64,
    /// The canister's version then.
    pub canister_version: u64,
    pub globals: Vec<GlobalValue>,
    #[serde(with = "serde_bytes")]
    pub certified_data: Vec<u8>,
    pub wasm_chunk_store: BTreeMap<[u8; 32], serde_bytes::ByteBuf>,
    /// `None`: not given in an uploaded snapshot (loading it leaves the timer as it is).
    /// `Some(0)`: inactive.
    pub global_timer: Option<u64>,
    pub low_wasm_memory_hook: Option<LowWasmMemoryHook>,
    pub module_len: u64,
    pub heap_len: u64,
    pub stable_len: u64,
}

/// One snapshot. Its memories keep the sizes its metadata names.
#[derive(Clone, PartialEq, Eq)]
pub struct CanisterSnapshot {
    meta: SnapshotMeta,
    module: Vec<u8>,
    heap: Vec<u8>,
    stable: Vec<u8>,
    hash: [u8; 32],
}

impl std::fmt::Debug for CanisterSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanisterSnapshot").field("meta", &self.meta.source).field("size", &self.size()).finish()
    }
}

/// Which byte area of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotArea {
    Module,
    Heap,
    Stable,
}

impl CanisterSnapshot {
    /// A snapshot of these parts; `None` if the memories do not have the sizes `meta` names.
    pub fn new(mut meta: SnapshotMeta, module: Vec<u8>, heap: Vec<u8>, stable: Vec<u8>) -> Option<Self> {
        if (meta.module_len, meta.heap_len, meta.stable_len) == (0, 0, 0) {
            meta.module_len = module.len() as u64;
            meta.heap_len = heap.len() as u64;
            meta.stable_len = stable.len() as u64;
        }
        if meta.module_len != module.len() as u64 || meta.heap_len != heap.len() as u64 || meta.stable_len != stable.len() as u64 {
            return None;
        }
        let mut s = Self { meta, module, heap, stable, hash: [0; 32] };
        s.rehash();
        Some(s)
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn bytes(&self, area: SnapshotArea) -> &[u8] {
        match area {
            SnapshotArea::Module => &self.module,
            SnapshotArea::Heap => &self.heap,
            SnapshotArea::Stable => &self.stable,
        }
    }

    /// Writes `chunk` at `offset` of an area; false (nothing written) if it does not fit.
    pub fn write(&mut self, area: SnapshotArea, offset: u64, chunk: &[u8]) -> bool {
        let bytes = match area {
            SnapshotArea::Module => &mut self.module,
            SnapshotArea::Heap => &mut self.heap,
            SnapshotArea::Stable => &mut self.stable,
        };
        let Some(end) = offset.checked_add(chunk.len() as u64).filter(|end| *end <= bytes.len() as u64) else {
            return false;
        };
        bytes[offset as usize..end as usize].copy_from_slice(chunk);
        self.rehash();
        true
    }

    /// Adds a chunk to the snapshot's Wasm chunk store.
    pub fn insert_chunk(&mut self, hash: [u8; 32], chunk: Vec<u8>) {
        self.meta.wasm_chunk_store.insert(hash, serde_bytes::ByteBuf::from(chunk));
        self.rehash();
    }

    /// Bytes the snapshot holds (they count toward its canister's memory): module, memories,
    /// globals, certified data and chunk store.
    pub fn size(&self) -> u64 {
        let m = &self.meta;
        let chunks: u64 = m.wasm_chunk_store.values().map(|c| c.len() as u64).sum();
        m.module_len + m.heap_len + m.stable_len + 8 * m.globals.len() as u64 + m.certified_data.len() as u64 + chunks
    }

    /// SHA-256 over everything it holds.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    fn rehash(&mut self) {
        let mut h = Sha256::new();
        h.update(b"tabnet-canister-snapshot-v1");
        for part in [&super::to_cbor(&self.meta), &self.module, &self.heap, &self.stable] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        self.hash = h.finalize().into();
    }
}

/// A snapshot id as the IC forms it: the local id (big-endian u64) followed by the canister id.
pub fn snapshot_id(canister: &CanisterId, local_id: u64) -> Vec<u8> {
    let mut id = local_id.to_be_bytes().to_vec();
    id.extend_from_slice(canister.as_slice());
    id
}

/// The canister and local id a snapshot id names, if it is well formed.
pub fn parse_snapshot_id(id: &[u8]) -> Option<(CanisterId, u64)> {
    if id.len() < 8 || id.len() > 8 + 29 {
        return None;
    }
    let local = u64::from_be_bytes(id[..8].try_into().ok()?);
    Some((CanisterId::from_slice(&id[8..]), local))
}

/// How a snapshot id reads in messages, as the replica writes it: `<canister>-<local id>`.
pub fn snapshot_id_text(id: &[u8]) -> String {
    match parse_snapshot_id(id) {
        Some((canister, local)) => format!("{canister}-{local}"),
        None => id.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
