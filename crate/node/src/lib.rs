//! One node of a subnet, sans-IO: consensus, state sync, the replicated state machine and the
//! records the node keeps across a crash, as one state machine. The native process, the
//! simulator and a browser tab drive the same [`NodeCore`]; only their edges differ (sockets or
//! data channels, files or IndexedDB, a clock or virtual time).
//!
//! A driver feeds it inputs — peers' frames ([`NodeCore::on_frame`], from authenticated peers
//! only), ingress ([`NodeCore::submit_ingress`]) and timer ticks ([`NodeCore::on_timer`] when
//! [`NodeCore::next_wake`] is due), each with the current time in ms — and performs its
//! [`NodeOutput`]s in order. Storage is synchronous ([`store`]): everything the node must keep
//! before an output may be performed is durable by the time the output is polled.

pub mod codec;
pub mod dealt;
pub mod http;
mod persisted;
pub mod replica;
pub mod store;
pub mod tab_signal;
pub mod view;

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tabnet_consensus::{
    Artifact, Batch, Beacon, Block, Checkpoint, Config, ConsensusNode, Crypto, Cup, Hash, Height, Ingress, IngressCheck, Kind, Message,
    NodeIndex, Output, Start, StateSync, Time, UnverifiedIngress, VerifiedIngress,
};

pub use persisted::PREFIX_PERSISTED;
use persisted::Persisted;
pub use store::{CheckpointStore, MemoryCheckpoints, Record, Replicated, CHECKPOINTS_KEPT};

/// Where consensus resumes after a restart: the block and beacon of the state kept with it.
pub const KEY_RESUME: &str = "consensus/checkpoint";
/// The latest certification of the state, so that a restarted node serves its state at once.
pub const KEY_CERTIFICATION: &str = "consensus/certification";

/// How a node is set up besides its keys and storage.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub consensus: Config,
    /// The subnet's genesis seed: the genesis block and beacon derive from it.
    pub genesis_seed: Hash,
    /// State sync asks another peer when one has not answered in this long (ms).
    pub sync_timeout: Time,
    /// Checkpoints are served in chunks of this many bytes.
    pub checkpoint_chunk_bytes: usize,
}

impl NodeConfig {
    pub fn new(consensus: Config, genesis_seed: Hash) -> Self {
        Self { consensus, genesis_seed, sync_timeout: 2_000, checkpoint_chunk_bytes: tabnet_consensus::state_sync::CHUNK_BYTES }
    }
}

/// What the driver does for the node, in order.
#[derive(Debug)]
pub enum NodeOutput {
    /// To one peer, or to every peer (`None`). Transports send [`codec::encode`]d frames.
    Send { to: Option<NodeIndex>, message: Message },
    /// This node made the block `block` at `height`; its round had begun at `round_start`.
    Proposed { block: Hash, height: Height, time: Time, round_start: Time },
    /// A finalized batch was executed: the state at its height hashes to `state_hash`.
    Executed { batch: Batch, state_hash: Hash },
    /// The state at `height` is certified; `served` when it is the state the replica executed
    /// last, and so what queries and `read_state` now answer from.
    Certified { height: Height, state_hash: Hash, served: bool },
    /// Too far behind to catch up by blocks: syncing the state of a catch-up package.
    SyncStarted { finalized: Height, target: Height },
    /// State sync installed the state at `height` (`bytes` of it).
    Synced { height: Height, state_hash: Hash, bytes: usize },
    /// Check this ingress off the thread that drives the node (the signature check is the
    /// costly part), then hand it back: [`NodeCore::on_ingress_verified`]. A platform without
    /// threads verifies it at once.
    VerifyIngress(UnverifiedIngress),
    /// The node cannot go on (its storage failed, or its state does not certify as the
    /// subnet's): the driver stops it. A restart resumes from what is durable.
    Failed(String),
}

/// A node: consensus driving a replicated state machine, with state sync and what it persists.
pub struct NodeCore<R, C> {
    consensus: ConsensusNode,
    replica: R,
    checkpoints: C,
    config: NodeConfig,
    ingress_check: Arc<dyn IngressCheck>,
    persisted: Persisted,
    /// Records consensus asked to persist, written before the next output that depends on them.
    unsaved: Vec<Record>,
    sync: Option<StateSync>,
    outputs: VecDeque<NodeOutput>,
    /// Set once the node failed; it takes no more input.
    failed: bool,
    /// Peers' frames that did not decode, by peer.
    bad_frames: Vec<u64>,
    /// By peer: the highest notarization and finalization share heights it sent signed by
    /// itself (see [`Self::peer_share_heights`]).
    share_heights: Vec<(Height, Height)>,
}

#[derive(Serialize, Deserialize)]
struct ResumePoint {
    block: Block,
    beacon: Beacon,
}

fn resume_record(block: &Block, beacon: &Beacon) -> Record {
    (KEY_RESUME.to_string(), cbor(&ResumePoint { block: block.clone(), beacon: beacon.clone() }))
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("serializing to memory cannot fail");
    out
}

fn record(replica: &impl Replicated, key: &str) -> Result<Option<Vec<u8>>, String> {
    Ok(replica.records(key)?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
}

impl<R: Replicated, C: CheckpointStore> NodeCore<R, C> {
    /// Opens the node whose state and records `replica` holds: consensus resumes from the
    /// height executed last (genesis for a new node), with what it persisted.
    pub fn open(
        config: NodeConfig,
        crypto: Arc<dyn Crypto>,
        ingress_check: Arc<dyn IngressCheck>,
        mut replica: R,
        checkpoints: C,
    ) -> Result<Self, String> {
        if let Some(bytes) = record(&replica, KEY_CERTIFICATION)? {
            let (height, sig): (Height, serde_bytes::ByteBuf) =
                ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad certification record: {e}"))?;
            if let Ok(sig) = <[u8; 48]>::try_from(sig.as_slice()) {
                replica.certify(height, sig, (KEY_CERTIFICATION.to_string(), bytes))?;
            }
        }
        let mut start = match record(&replica, KEY_RESUME)? {
            Some(bytes) => {
                let point: ResumePoint = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad resume point: {e}"))?;
                // The package consensus starts from is a placeholder (unsigned): only its block,
                // beacon and height are used.
                Start { block: point.block, beacon: point.beacon, state_hash: [0; 32], persisted: Vec::new() }
            }
            None => Start::genesis(&config.genesis_seed),
        };
        let (persisted, artifacts) = Persisted::load(&replica)?;
        start.persisted = artifacts;
        if start.block.height != replica.executed_height() {
            return Err(format!(
                "the state is at height {} but consensus resumes at {}",
                replica.executed_height(),
                start.block.height
            ));
        }
        let n = crypto.nodes();
        Ok(Self {
            consensus: ConsensusNode::new(config.consensus.clone(), crypto, ingress_check.clone(), start),
            replica,
            checkpoints,
            config,
            ingress_check,
            persisted,
            unsaved: Vec::new(),
            sync: None,
            outputs: VecDeque::new(),
            failed: false,
            bad_frames: vec![0; n],
            share_heights: vec![(0, 0); n],
        })
    }

    // ----- inputs -----

    /// A frame from peer `from`, whose node key its transport verified. A frame that does not
    /// decode is dropped and counted against the peer.
    pub fn on_frame(&mut self, now: Time, from: NodeIndex, frame: &[u8]) {
        match codec::decode(frame) {
            Ok(Some(message)) => self.on_message(now, from, message),
            Ok(None) => {}
            Err(_) => {
                if let Some(count) = self.bad_frames.get_mut(from) {
                    *count += 1;
                }
            }
        }
    }

    /// A decoded message from peer `from` (the simulator passes messages without encoding).
    pub fn on_message(&mut self, now: Time, from: NodeIndex, message: Message) {
        self.on_messages(now, std::iter::once((from, message)));
    }

    /// Messages that were waiting together, taken in one go: what consensus asks after them
    /// is performed once (one write for what it persists, not one per message).
    pub fn on_messages(&mut self, now: Time, messages: impl IntoIterator<Item = (NodeIndex, Message)>) {
        if self.failed {
            return;
        }
        for (from, message) in messages {
            if let Message::Push(Artifact::Share(s)) = &message {
                if s.signer == from {
                    if let Some(seen) = self.share_heights.get_mut(from) {
                        match s.kind {
                            Kind::Notarization => seen.0 = seen.0.max(s.height),
                            Kind::Finalization => seen.1 = seen.1.max(s.height),
                            _ => {}
                        }
                    }
                }
            }
            match message {
                Message::Sync(m) if m.is_request() => {
                    // Answered as far as the peer's share of this node's work allows.
                    if let Some(answer) = self.consensus.answer_sync(now, from, &m, self.checkpoints.kept()) {
                        self.outputs.push_back(NodeOutput::Send { to: Some(from), message: Message::Sync(answer) });
                    }
                }
                Message::Sync(m) => {
                    if let Some(sync) = &mut self.sync {
                        sync.on_message(now, from, m);
                    }
                }
                message => self.consensus.on_message(now, from, message),
            }
        }
        self.pump(now);
    }

    /// An ingress message submitted to this node: checked, pooled and gossiped. `Err` says why
    /// it was refused.
    pub fn submit_ingress(&mut self, now: Time, ingress: Ingress) -> Result<Hash, String> {
        if self.failed {
            return Err("this node has stopped".into());
        }
        let id = self.consensus.submit_ingress(now, ingress)?;
        self.pump(now);
        Ok(id)
    }

    /// Ingress verified as [`NodeOutput::VerifyIngress`] asked (or a client's, verified by the
    /// edge before submitting it). `Err` says why it was refused.
    pub fn on_ingress_verified(&mut self, now: Time, verified: VerifiedIngress) -> Result<Hash, String> {
        if self.failed {
            return Err("this node has stopped".into());
        }
        let result = self.consensus.on_ingress_verified(now, verified);
        self.pump(now);
        result
    }

    /// What ingress is checked against (to verify it off the driving thread).
    pub fn ingress_check(&self) -> Arc<dyn IngressCheck> {
        self.ingress_check.clone()
    }

    /// Called when [`Self::next_wake`] is due (earlier is harmless).
    pub fn on_timer(&mut self, now: Time) {
        if self.failed {
            return;
        }
        if let Some(sync) = &mut self.sync {
            sync.on_timer(now);
        }
        self.consensus.on_timer(now);
        self.pump(now);
    }

    // ----- outputs -----

    /// The next output to perform, in order.
    pub fn poll(&mut self) -> Option<NodeOutput> {
        self.outputs.pop_front()
    }

    /// When the node next needs [`Self::on_timer`].
    pub fn next_wake(&self, now: Time) -> Option<Time> {
        if self.failed {
            return None;
        }
        self.consensus.next_wake(now).into_iter().chain(self.sync.as_ref().and_then(StateSync::next_wake)).min()
    }

    // ----- what the node is -----

    pub fn consensus(&self) -> &ConsensusNode {
        &self.consensus
    }
    /// (Simulator) Changes how this node's consensus misbehaves from now on (and after a
    /// restart through [`Self::open`] only if its config says so too).
    #[cfg(feature = "byzantine")]
    pub fn set_malice(&mut self, malice: tabnet_consensus::Malice) {
        self.config.consensus.malice = malice.clone();
        self.consensus.set_malice(malice);
    }
    pub fn replica(&self) -> &R {
        &self.replica
    }
    pub fn replica_mut(&mut self) -> &mut R {
        &mut self.replica
    }
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }
    pub fn checkpoints_mut(&mut self) -> &mut C {
        &mut self.checkpoints
    }
    /// How far state sync has come (chunks held, chunks in all), while syncing.
    pub fn sync_progress(&self) -> Option<(Height, usize, usize)> {
        self.sync.as_ref().map(|s| {
            let (have, all) = s.progress();
            (s.height(), have, all)
        })
    }
    /// By peer: the highest heights of the notarization and the finalization shares it sent
    /// this node itself (unchecked: a peer can only overstate its own progress), so that a
    /// node can show how far each peer has come without asking it.
    pub fn peer_share_heights(&self) -> &[(Height, Height)] {
        &self.share_heights
    }
    /// Frames of each peer that did not decode.
    pub fn bad_frames(&self) -> &[u64] {
        &self.bad_frames
    }
    /// What survives a crash: the replica with its records, and the checkpoints.
    pub fn into_parts(self) -> (R, C) {
        (self.replica, self.checkpoints)
    }

    // ----- performing what consensus asks -----

    fn fail(&mut self, reason: String) {
        self.failed = true;
        self.outputs.push_back(NodeOutput::Failed(reason));
    }

    /// Performs consensus's outputs in order, then state sync's. What consensus persists is
    /// stored before anything after it is sent or executed.
    fn pump(&mut self, now: Time) {
        while !self.failed {
            let Some(output) = self.consensus.poll() else { break };
            if let Err(e) = self.perform(now, output) {
                return self.fail(e);
            }
        }
        if !self.failed && (!self.unsaved.is_empty() || !self.persisted.forgotten.is_empty()) {
            let records = std::mem::take(&mut self.unsaved);
            let old = std::mem::take(&mut self.persisted.forgotten);
            if let Err(e) = self.replica.write_records(&records, &old) {
                return self.fail(format!("cannot store what consensus persists: {e}"));
            }
        }
        if !self.failed {
            self.pump_sync(now);
        }
    }

    fn perform(&mut self, now: Time, output: Output) -> Result<(), String> {
        match output {
            Output::Persist(artifact) => {
                let Some(record) = self.persisted.record(&artifact) else { return Ok(()) };
                if let Artifact::Proposal(p) = &artifact {
                    // A block is proposed when its maker first persists it.
                    if p.block.maker == self.consensus.me() {
                        let round_start = self.consensus.round_started(p.block.height).unwrap_or(now);
                        self.outputs.push_back(NodeOutput::Proposed { block: p.block.hash(), height: p.block.height, time: now, round_start });
                    }
                }
                self.unsaved.push(record);
            }
            Output::Forget(below) => self.persisted.forget_below(below),
            Output::Send { to, message } => {
                if !self.unsaved.is_empty() {
                    let records = std::mem::take(&mut self.unsaved);
                    self.replica.write_records(&records, &[]).map_err(|e| format!("cannot store what this node signed: {e}"))?;
                }
                self.outputs.push_back(NodeOutput::Send { to, message });
            }
            Output::Deliver(batch) => {
                let height = batch.height;
                let mut records = std::mem::take(&mut self.unsaved);
                records.push(resume_record(&batch.block, &batch.beacon));
                let old = std::mem::take(&mut self.persisted.forgotten);
                let state_hash = self.replica.execute(&batch, &records, &old).map_err(|e| format!("executing height {height} failed: {e}"))?;
                let checkpoint = if batch.checkpoint {
                    let bytes = self.replica.checkpoint().map_err(|e| format!("checkpointing height {height} failed: {e}"))?;
                    let checkpoint = Checkpoint::with_chunk_bytes(height, bytes, self.config.checkpoint_chunk_bytes);
                    let hash = checkpoint.hash();
                    // Consensus signs over the checkpoint's hash: it must be kept to serve it.
                    self.checkpoints.add(checkpoint)?;
                    Some(hash)
                } else {
                    None
                };
                self.consensus.on_executed(now, height, state_hash, checkpoint);
                self.outputs.push_back(NodeOutput::Executed { batch, state_hash });
            }
            Output::Certified { height, state_hash, certification } => {
                let sig = certification.sig;
                // Not synced on its own: it rides with the next height's write. (Lost in a
                // crash, the node just waits for the subnet's next certification.)
                let record = (KEY_CERTIFICATION.to_string(), cbor(&(height, serde_bytes::ByteBuf::from(sig.to_vec()))));
                let served = self.replica.certify(height, sig, record).map_err(|e| format!("cannot store the certification of height {height}: {e}"))?;
                self.outputs.push_back(NodeOutput::Certified { height, state_hash, served });
            }
            Output::VerifyIngress(unverified) => self.outputs.push_back(NodeOutput::VerifyIngress(unverified)),
            Output::StateSyncNeeded(cup) => match &mut self.sync {
                Some(sync) if sync.height() >= cup.height() => {}
                Some(sync) => sync.retarget(now, cup),
                None => {
                    let finalized = self.consensus.finalized_height();
                    let me = self.consensus.me();
                    let peers = (0..self.bad_frames.len()).filter(|k| *k != me).collect();
                    self.outputs.push_back(NodeOutput::SyncStarted { finalized, target: cup.height() });
                    self.sync = Some(StateSync::new(now, cup, peers, self.config.sync_timeout));
                }
            },
        }
        Ok(())
    }

    /// Sends what state sync asks for; once the state is complete, installs it and restarts
    /// consensus from the catch-up package.
    fn pump_sync(&mut self, now: Time) {
        // Blocks may have brought the node there after all.
        if self.sync.as_ref().is_some_and(|s| s.height() <= self.consensus.finalized_height()) {
            self.sync = None;
        }
        let Some(sync) = &mut self.sync else { return };
        while let Some((peer, request)) = sync.poll() {
            self.outputs.push_back(NodeOutput::Send { to: Some(peer), message: Message::Sync(request) });
        }
        if !sync.is_complete() {
            return;
        }
        let sync = self.sync.take().expect("syncing");
        let cup = sync.cup().clone();
        let bytes = sync.into_bytes().expect("complete");
        match self.install(now, cup, bytes) {
            Ok(()) => self.pump(now),
            Err(e) => self.fail(e),
        }
    }

    /// Puts the state that sync brought in place of this node's, with the package's block as
    /// the point consensus resumes from, in one durable write; restarts consensus from it.
    fn install(&mut self, now: Time, cup: Arc<Cup>, bytes: Vec<u8>) -> Result<(), String> {
        let height = cup.height();
        let size = bytes.len();
        // What was persisted at and below the package no longer matters; the package does.
        self.persisted.forget_below(height + 1);
        let old = std::mem::take(&mut self.persisted.forgotten);
        let mut records = std::mem::take(&mut self.unsaved);
        records.push(resume_record(&cup.block, &cup.beacon));
        records.extend(self.persisted.record(&Artifact::Cup(cup.clone())));
        let root = self.replica.restore(&bytes, &records, &old).map_err(|e| format!("installing the state of height {height} failed: {e}"))?;
        if root != cup.state_hash {
            // The manifest matched what 2f+1 nodes signed, so this is non-determinism, not a lie.
            return Err(format!("the state synced at height {height} does not certify as the subnet's (a replica bug); stopping"));
        }
        self.checkpoints.add(Checkpoint::with_chunk_bytes(height, bytes, self.config.checkpoint_chunk_bytes))?;
        let (persisted, kept) = Persisted::load(&self.replica)?;
        self.persisted = persisted;
        self.consensus.restart(Start { block: cup.block.clone(), beacon: cup.beacon.clone(), state_hash: cup.state_hash, persisted: kept });
        self.consensus.on_timer(now);
        self.outputs.push_back(NodeOutput::Synced { height, state_hash: root, bytes: size });
        Ok(())
    }
}
