//! What the node core needs of the platform's storage and of execution.
//!
//! Both contracts are synchronous: a call returns once what it wrote is durable. The native
//! node meets it with its log store; the simulator in memory.

use tabnet_consensus::{Batch, Checkpoint, Hash, Height};

/// A record of the node's own (what consensus asked it to keep): key and value.
pub type Record = (String, Vec<u8>);

/// The replicated state machine a node drives, with the key-value records the node keeps next
/// to it: the replica natively and in a tab, a small deterministic machine in the simulator.
pub trait Replicated {
    /// The height of the state executed last (0: genesis).
    fn executed_height(&self) -> Height;
    /// Executes a finalized batch, writing `records` (and deleting `delete`) durably with its
    /// state in one write; returns the state hash consensus certifies. Deterministic: every
    /// replica returns the same hash for the same batches.
    fn execute(&mut self, batch: &Batch, records: &[Record], delete: &[String]) -> Result<Hash, String>;
    /// The replicated state as checkpoint bytes (the same bytes on every replica).
    fn checkpoint(&mut self) -> Result<Vec<u8>, String>;
    /// Replaces the state with a checkpoint's and writes `records` with it in one durable
    /// write, deleting `delete`; returns the state hash.
    fn restore(&mut self, checkpoint: &[u8], records: &[Record], delete: &[String]) -> Result<Hash, String>;
    /// Consensus certified the state at `height`: serve it. `record` (the certification) is
    /// stored with the next write. Returns whether it was the state executed last.
    fn certify(&mut self, height: Height, signature: [u8; 48], record: Record) -> Result<bool, String>;
    /// Writes `records` and deletes `delete`, durably.
    fn write_records(&mut self, records: &[Record], delete: &[String]) -> Result<(), String>;
    /// The records whose keys start with `prefix`, by key.
    fn records(&self, prefix: &str) -> Result<Vec<Record>, String>;
}

/// Where a node keeps the checkpoints it serves to peers that sync state (the newest few).
pub trait CheckpointStore {
    /// Keeps `checkpoint` durably and drops the oldest beyond what is kept.
    fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String>;
    fn kept(&self) -> &[Checkpoint];
}

/// How many checkpoints a node keeps: those of the last two catch-up packages.
pub const CHECKPOINTS_KEPT: usize = 2;

/// Checkpoints in memory (the simulator; a platform that keeps them elsewhere wraps this).
#[derive(Clone, Default)]
pub struct MemoryCheckpoints {
    kept: Vec<Checkpoint>,
}

impl CheckpointStore for MemoryCheckpoints {
    fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String> {
        self.kept.retain(|c| c.height() != checkpoint.height());
        self.kept.push(checkpoint);
        while self.kept.len() > CHECKPOINTS_KEPT {
            self.kept.remove(0);
        }
        Ok(())
    }
    fn kept(&self) -> &[Checkpoint] {
        &self.kept
    }
}
