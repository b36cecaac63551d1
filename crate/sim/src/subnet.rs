//! The subnet in the deterministic simulator: n nodes — each the node core every platform runs
//! ([`tabnet_node::NodeCore`]), here with a small deterministic state machine standing in for
//! execution — clients submitting ingress, faults scheduled from the seed, and the safety and
//! liveness invariants checked after every step.
//!
//! A [`Scenario`] has a one-line text form; a failing run prints the command that replays it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tabnet_consensus::{
    deal, faults_tolerated, ranking, Aggregate, Artifact, Batch, Beacon, Block, BlsCrypto, Config, Crypto, CryptoStats, Hash, Height, Ingress,
    IngressCheck, Kind, Malice, Message, NodeIndex, Proposal, Share, Sig, SimCrypto, SimKeys, Start, SyncMessage, Time,
};
use tabnet_node::{MemoryCheckpoints, NodeConfig, NodeCore, NodeOutput, Record, Replicated};

use crate::{Network, Node, Outbox, Partition, Rng, Simulation};

/// What a faulty node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Crashes at a seeded time and stays down.
    Crash,
    /// Crashes, and restarts from what it persisted a while later.
    Restart,
    /// Runs but never sends anything.
    Silent,
    /// Signs two blocks whenever it is a block maker.
    Equivocate,
    /// Notarizes (and finalizes) every block it sees.
    NotarizeAll,
    /// Every signature it sends is spoiled, and so is every state chunk it serves.
    BadSignatures,
    /// Re-sends old messages.
    Replay,
    /// Sends junk shares, blocks and ingress, many per second, near and far ahead.
    Flood,
    /// Proposes blocks that break the rules (see [`Malice::bad_blocks`]).
    BadBlocks,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Crash,
        Fault::Restart,
        Fault::Silent,
        Fault::Equivocate,
        Fault::NotarizeAll,
        Fault::BadSignatures,
        Fault::Replay,
        Fault::Flood,
        Fault::BadBlocks,
    ];
    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Restart => "restart",
            Fault::Silent => "silent",
            Fault::Equivocate => "equivocate",
            Fault::NotarizeAll => "notarize-all",
            Fault::BadSignatures => "bad-signatures",
            Fault::Replay => "replay",
            Fault::Flood => "flood",
            Fault::BadBlocks => "bad-blocks",
        }
    }
    /// Whether the node stays honest in what it signs (a crashed or restarted node does).
    fn honest(self) -> bool {
        matches!(self, Fault::Crash | Fault::Restart)
    }
}

/// A node that crashes at `at` and, with `restart`, comes back then from what it persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at: Time,
    pub restart: Option<Time>,
}

/// One simulated run, fully determined by its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: usize,
    /// One entry per faulty node; which nodes are faulty comes from the seed.
    pub faults: Vec<Fault>,
    /// Virtual milliseconds to run.
    pub duration: Time,
    pub min_delay: Time,
    pub max_delay: Time,
    pub loss_per_million: u32,
    pub duplicate_per_million: u32,
    /// Messages that take up to ten times `max_delay` (a long-tailed delay distribution).
    pub slow_per_million: u32,
    /// Cut the subnet in two for a seeded stretch of the run, then heal.
    pub partition: bool,
    /// Every node crashes, one after another a few message delays apart (so they stop at
    /// different heights), and all restart from what they persisted `downtime` later.
    pub blackout: bool,
    /// Crashes at given times, of given nodes (besides `faults`, which go to other nodes):
    /// each crashes at its time and, if a restart time is given, restarts then from what it
    /// persisted. Text form: `crashes=3@3000,2@6000..14000`.
    pub crashes: Vec<Crash>,
    /// A restarted node's links come up this long (ms) after it restarts: until then it reaches
    /// no one and no one reaches it (as a tab's WebRTC links, made again after a hello).
    pub link_delay: Time,
    /// Ingress messages submitted per virtual second (to random nodes), their size, and how
    /// long after submission they expire (ms).
    pub ingress_per_second: u64,
    pub ingress_size: usize,
    pub ingress_expiry: Time,
    pub unit_delay: Time,
    pub initial_notary_delay: Time,
    pub dkg_interval: Height,
    pub strip_blocks: bool,
    /// How long a restarting node stays down (ms); 0: a seeded time of up to a quarter of the
    /// run. Longer than two catch-up intervals, the node must come back by state sync.
    pub downtime: Time,
    /// Sign and verify with real BLS12-381 and Ed25519 (slow; for the crypto-cost figure).
    pub real_crypto: bool,
    /// A block's limits: ingress messages and payload bytes (the IC's: 1,000 and 4 MiB).
    pub block_ingress: usize,
    pub block_bytes: usize,
}

impl Scenario {
    /// A synchronous, fault-free run of `nodes` nodes.
    pub fn new(seed: u64, nodes: usize) -> Self {
        Scenario {
            seed,
            nodes,
            faults: Vec::new(),
            duration: 20_000,
            min_delay: 10,
            max_delay: 50,
            loss_per_million: 0,
            duplicate_per_million: 0,
            slow_per_million: 0,
            partition: false,
            blackout: false,
            crashes: Vec::new(),
            link_delay: 0,
            ingress_per_second: 50,
            ingress_size: 64,
            ingress_expiry: 60_000,
            unit_delay: 300,
            initial_notary_delay: 50,
            dkg_interval: 50,
            strip_blocks: true,
            downtime: 0,
            real_crypto: false,
            block_ingress: Config::default().max_block_ingress,
            block_bytes: Config::default().max_block_bytes,
        }
    }

    /// Whether the network is synchronous (no loss, no partition): then liveness is checked too.
    pub fn synchronous(&self) -> bool {
        self.loss_per_million == 0 && !self.partition
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("TABNET_SIM='{self}' cargo test --release -p tabnet-sim --test subnet replay -- --nocapture")
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = self.faults.iter().map(|x| x.name()).collect();
        write!(
            f,
            "seed={} nodes={} faults={} duration={} delay={}..{} loss={} duplicate={} partition={} ingress={} size={} unit={} notary={} interval={} strip={}{}{}{}{}{}{}{}",
            self.seed,
            self.nodes,
            if faults.is_empty() { "none".to_string() } else { faults.join(",") },
            self.duration,
            self.min_delay,
            self.max_delay,
            self.loss_per_million,
            self.duplicate_per_million,
            self.partition,
            self.ingress_per_second,
            self.ingress_size,
            self.unit_delay,
            self.initial_notary_delay,
            self.dkg_interval,
            self.strip_blocks,
            if self.downtime > 0 { format!(" downtime={}", self.downtime) } else { String::new() },
            if self.real_crypto { " crypto=bls" } else { "" },
            if self.ingress_expiry == 60_000 { String::new() } else { format!(" expiry={}", self.ingress_expiry) },
            if self.slow_per_million == 0 { String::new() } else { format!(" slow={}", self.slow_per_million) },
            if (self.block_ingress, self.block_bytes) == (Config::default().max_block_ingress, Config::default().max_block_bytes) {
                String::new()
            } else {
                format!(" block={}/{}", self.block_ingress, self.block_bytes)
            },
            if self.blackout { " blackout=true" } else { "" },
            if self.crashes.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = self
                    .crashes
                    .iter()
                    .map(|c| match c.restart {
                        Some(r) => format!("{}@{}..{r}", c.node, c.at),
                        None => format!("{}@{}", c.node, c.at),
                    })
                    .collect();
                format!(" crashes={} links={}", list.join(","), self.link_delay)
            }
        )
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut sc = Scenario::new(0, 4);
        for word in s.split_whitespace() {
            let (key, value) = word.split_once('=').ok_or_else(|| format!("`{word}` is not key=value"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{key}: {e}"));
            match key {
                "seed" => sc.seed = num(value)?,
                "nodes" => sc.nodes = num(value)? as usize,
                "faults" if value == "none" => sc.faults.clear(),
                "faults" => {
                    sc.faults = value
                        .split(',')
                        .map(|name| Fault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| format!("no fault `{name}`")))
                        .collect::<Result<_, _>>()?
                }
                "duration" => sc.duration = num(value)?,
                "delay" => {
                    let (a, b) = value.split_once("..").ok_or("delay=MIN..MAX")?;
                    (sc.min_delay, sc.max_delay) = (num(a)?, num(b)?);
                }
                "loss" => sc.loss_per_million = num(value)? as u32,
                "duplicate" => sc.duplicate_per_million = num(value)? as u32,
                "slow" => sc.slow_per_million = num(value)? as u32,
                "partition" => sc.partition = value == "true",
                "blackout" => sc.blackout = value == "true",
                "crashes" => {
                    sc.crashes = value
                        .split(',')
                        .map(|c| {
                            let (node, times) = c.split_once('@').ok_or("crashes=NODE@AT[..RESTART],...")?;
                            let (at, restart) = match times.split_once("..") {
                                Some((a, r)) => (num(a)?, Some(num(r)?)),
                                None => (num(times)?, None),
                            };
                            Ok(Crash { node: num(node)? as usize, at, restart })
                        })
                        .collect::<Result<_, String>>()?
                }
                "links" => sc.link_delay = num(value)?,
                "ingress" => sc.ingress_per_second = num(value)?,
                "size" => sc.ingress_size = num(value)?.max(16) as usize,
                "expiry" => sc.ingress_expiry = num(value)?,
                "unit" => sc.unit_delay = num(value)?,
                "notary" => sc.initial_notary_delay = num(value)?,
                "interval" => sc.dkg_interval = num(value)?,
                "strip" => sc.strip_blocks = value == "true",
                "downtime" => sc.downtime = num(value)?,
                "crypto" => sc.real_crypto = value == "bls",
                "block" => {
                    let (a, b) = value.split_once('/').ok_or("block=MESSAGES/BYTES")?;
                    (sc.block_ingress, sc.block_bytes) = (num(a)? as usize, num(b)? as usize);
                }
                _ => return Err(format!("unknown key `{key}`")),
            }
        }
        Ok(sc)
    }
}

/// The simulator's ingress: 8 bytes of expiry (ms, big-endian), then anything.
struct SimIngressCheck;

impl IngressCheck for SimIngressCheck {
    fn expiry(&self, bytes: &[u8]) -> Result<Time, String> {
        let head: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or("shorter than 8 bytes")?;
        Ok(Time::from_be_bytes(head))
    }
    fn admit(&self, now: Time, bytes: &[u8]) -> Result<Time, String> {
        let expiry = self.expiry(bytes)?;
        if expiry < now {
            return Err(format!("expired at {expiry}, now {now}"));
        }
        Ok(expiry)
    }
}

fn sim_ingress(expiry: Time, nonce: u64, size: usize) -> Ingress {
    let mut bytes = expiry.to_be_bytes().to_vec();
    bytes.extend_from_slice(&nonce.to_be_bytes());
    bytes.resize(size.max(16), 0xAB);
    Ingress { bytes }
}

/// A deterministic state machine in place of execution: the state hash chains every executed
/// message and each batch's height, time and randomness.
#[derive(Clone, Default)]
struct StateMachine {
    hash: Hash,
    height: Height,
    /// Messages executed and not expired yet, with their expiry: never executed again (the
    /// replica's ingress history; after every node restarted, consensus no longer knows every
    /// message finalized before its last catch-up package).
    history: BTreeMap<Hash, Time>,
}

/// Checkpoints are cut into small chunks here, so that syncing takes many of them (a state holds
/// an ingress history of some tens of kB).
const SIM_CHUNK_BYTES: usize = 4_096;
/// State sync asks another peer after this long (ms; message delays here are tens of ms).
const SIM_SYNC_TIMEOUT: Time = 500;

impl StateMachine {
    /// Its checkpoint: the hash, height and history, padded to a few chunks with bytes derived
    /// from them.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = self.hash.to_vec();
        bytes.extend_from_slice(&self.height.to_be_bytes());
        bytes.extend_from_slice(&(self.history.len() as u64).to_be_bytes());
        for (id, expiry) in &self.history {
            bytes.extend_from_slice(id);
            bytes.extend_from_slice(&expiry.to_be_bytes());
        }
        while bytes.len() < 5 * SIM_CHUNK_BYTES {
            let next: Hash = Sha256::digest(&bytes[bytes.len() - 32..]).into();
            bytes.extend_from_slice(&next);
        }
        bytes
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let word = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let mut state = StateMachine { hash: bytes.get(..32)?.try_into().ok()?, height: word(32)?, history: BTreeMap::new() };
        for k in 0..word(40)? as usize {
            let at = 48 + 40 * k;
            state.history.insert(bytes.get(at..at + 32)?.try_into().ok()?, word(at + 32)?);
        }
        (state.encode() == bytes).then_some(state)
    }

    /// Executes the batch; returns the messages it ran (not those it had run already).
    fn execute(&mut self, batch: &Batch) -> Vec<Hash> {
        self.history.retain(|_, expiry| *expiry >= batch.block.time);
        let mut h = Sha256::new();
        h.update(self.hash);
        h.update(batch.height.to_be_bytes());
        h.update(batch.block.time.to_be_bytes());
        h.update(batch.randomness);
        let mut executed = Vec::new();
        for i in &batch.ingress {
            let id = i.id();
            if self.history.insert(id, SimIngressCheck.expiry(&i.bytes).unwrap_or(0)).is_none() {
                h.update(id);
                executed.push(id);
            }
        }
        self.hash = h.finalize().into();
        self.height = batch.height;
        executed
    }
}

/// The replicated state machine of a simulated node with the records the node keeps next to
/// it: what survives its crash (with its checkpoints).
#[derive(Clone, Default)]
struct SimReplica {
    state: StateMachine,
    records: BTreeMap<String, Vec<u8>>,
    /// The messages each batch ran, for the checker, until reported.
    executed: VecDeque<Vec<Hash>>,
}

impl Replicated for SimReplica {
    fn executed_height(&self) -> Height {
        self.state.height
    }
    fn execute(&mut self, batch: &Batch, records: &[Record], delete: &[String]) -> Result<Hash, String> {
        self.write_records(records, delete)?;
        let ran = self.state.execute(batch);
        self.executed.push_back(ran);
        Ok(self.state.hash)
    }
    fn checkpoint(&mut self) -> Result<Vec<u8>, String> {
        Ok(self.state.encode())
    }
    fn restore(&mut self, checkpoint: &[u8], records: &[Record], delete: &[String]) -> Result<Hash, String> {
        self.state = StateMachine::decode(checkpoint).ok_or("the checkpoint does not decode")?;
        self.write_records(records, delete)?;
        Ok(self.state.hash)
    }
    fn certify(&mut self, height: Height, _signature: [u8; 48], record: Record) -> Result<bool, String> {
        let served = height == self.state.height;
        if served {
            self.records.insert(record.0, record.1);
        }
        Ok(served)
    }
    fn write_records(&mut self, records: &[Record], delete: &[String]) -> Result<(), String> {
        for key in delete {
            self.records.remove(key);
        }
        for (key, value) in records {
            self.records.insert(key.clone(), value.clone());
        }
        Ok(())
    }
    fn records(&self, prefix: &str) -> Result<Vec<Record>, String> {
        Ok(self.records.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// What a node keeps across a crash.
type Disk = (SimReplica, MemoryCheckpoints);

/// What nodes report to the checker.
enum Event {
    /// A block was made; its maker's round had begun at `round_start`.
    Proposed { block: Hash, time: Time, round_start: Time },
    /// `executed`: the messages of the batch the state machine ran.
    Finalized { node: NodeIndex, batch: Batch, executed: Vec<Hash>, time: Time },
    StateHash { node: NodeIndex, height: Height, hash: Hash },
    Certified { node: NodeIndex, height: Height, hash: Hash },
    /// State sync brought the node the state at `height`.
    Synced { node: NodeIndex, height: Height, hash: Hash },
    Sent { bytes: u64, proposal_bytes: u64, largest: u64 },
}

type Log = Rc<RefCell<Vec<Event>>>;

/// A simulated node: the node core, and how it misbehaves if it is faulty.
struct SimNode {
    core: NodeCore<SimReplica, MemoryCheckpoints>,
    fault: Option<Fault>,
    log: Log,
    measure_bytes: bool,
    /// (Replay) what it sent, to send again.
    sent: Vec<Message>,
    junk: u64,
    peers: u64,
    /// (With `measure_bytes`) frames and bytes sent to each peer in each virtual second.
    per_peer: BTreeMap<(Time, NodeIndex), (u64, u64)>,
}

impl SimNode {
    /// Performs the core's outputs: sends (unless faulty in how it sends), and reports what
    /// happened to the checker.
    fn pump(&mut self, now: Time, out: &mut Outbox<Message>) {
        let me = self.core.consensus().me();
        while let Some(output) = self.core.poll() {
            match output {
                NodeOutput::Send { to, mut message } => {
                    if self.fault == Some(Fault::Silent) {
                        continue;
                    }
                    if let (Some(Fault::BadSignatures), Message::Sync(SyncMessage::Chunk { bytes, .. })) = (self.fault, &mut message) {
                        if let Some(b) = bytes.first_mut() {
                            *b ^= 1;
                        }
                    }
                    if self.measure_bytes {
                        let len = tabnet_node::codec::encode(&message).len() as u64;
                        let copies = if to.is_some() { 1 } else { self.peers };
                        let proposal = matches!(&message, Message::Push(Artifact::Proposal(_)) | Message::CatchUp(_))
                            || matches!(&message, Message::Push(Artifact::Ingress(_)) if to.is_some());
                        let bytes = len * copies;
                        self.log.borrow_mut().push(Event::Sent { bytes, proposal_bytes: if proposal { bytes } else { 0 }, largest: len });
                        for peer in (0..=self.peers as usize).filter(|p| *p != me && to.is_none_or(|t| t == *p)) {
                            let (frames, bytes) = self.per_peer.entry((now / 1_000, peer)).or_default();
                            *frames += 1;
                            *bytes += len;
                        }
                    }
                    if self.fault == Some(Fault::Replay) && self.sent.len() < 2_000 {
                        self.sent.push(message.clone());
                    }
                    match to {
                        Some(to) => out.send(to, message),
                        None => out.broadcast(message),
                    }
                }
                NodeOutput::Proposed { block, time, round_start, .. } => self.log.borrow_mut().push(Event::Proposed { block, time, round_start }),
                NodeOutput::Executed { batch, state_hash } => {
                    let executed = self.core.replica_mut().executed.pop_front().unwrap_or_default();
                    let height = batch.height;
                    let mut log = self.log.borrow_mut();
                    log.push(Event::Finalized { node: me, batch, executed, time: now });
                    log.push(Event::StateHash { node: me, height, hash: state_hash });
                }
                NodeOutput::Certified { height, state_hash, .. } => self.log.borrow_mut().push(Event::Certified { node: me, height, hash: state_hash }),
                NodeOutput::SyncStarted { .. } => {}
                NodeOutput::VerifyIngress(unverified) => {
                    let _ = self.core.on_ingress_verified(now, unverified.verify(&SimIngressCheck));
                }
                NodeOutput::Synced { height, state_hash, .. } => self.log.borrow_mut().push(Event::Synced { node: me, height, hash: state_hash }),
                // Cannot happen here: storage is memory, and a synced state is checked chunk by
                // chunk against the package.
                NodeOutput::Failed(e) => panic!("node {me} failed: {e}"),
            }
        }
        if let Some(at) = self.core.next_wake(now) {
            out.wake_at(at);
        }
    }

    /// Replay and flood faults act on every wake-up.
    fn misbehave(&mut self, now: Time, out: &mut Outbox<Message>) {
        match self.fault {
            Some(Fault::Replay) if !self.sent.is_empty() => {
                for k in 0..5 {
                    let i = (now as usize / 7 + k * 31) % self.sent.len();
                    out.broadcast(self.sent[i].clone());
                }
                out.wake_at(now + 50);
            }
            Some(Fault::Flood) => {
                // Junk shares, blocks, aggregates and ingress, near the current height and past
                // how far ahead nodes keep anything, in its own name and in others'.
                let (h, n) = (self.core.consensus().notarized_height() + 1, self.peers + 1);
                for k in 0..20u64 {
                    self.junk += 1;
                    let kind = Kind::ALL[(self.junk % 5) as usize];
                    let content: Hash = Sha256::digest(self.junk.to_be_bytes()).into();
                    let (height, someone) = (h + k % 14, (self.junk % n) as NodeIndex);
                    let share = Share { kind, height, content, signer: someone, sig: [7; 48] };
                    out.broadcast(Message::Push(Artifact::Share(share)));
                    let block = Block { parent: content, height, rank: 0, maker: someone, time: now, ingress: Vec::new() };
                    let proposal = Proposal { block, signature: [7; 64], payload: None };
                    out.broadcast(Message::Push(Artifact::Proposal(Arc::new(proposal))));
                    let aggregate = Aggregate { kind, height, content, signers: Vec::new(), sig: [7; 48] };
                    out.broadcast(Message::Push(Artifact::Aggregate(aggregate)));
                    out.broadcast(Message::Push(Artifact::Ingress(Arc::new(sim_ingress(now + 1_000, u64::MAX - self.junk, 64)))));
                }
                out.wake_at(now + 50);
            }
            _ => {}
        }
    }
}

impl Node for SimNode {
    type Message = Message;
    fn on_message(&mut self, now: Time, from: NodeIndex, message: Message, out: &mut Outbox<Message>) {
        self.core.on_message(now, from, message);
        self.pump(now, out);
    }
    fn on_wake(&mut self, now: Time, out: &mut Outbox<Message>) {
        self.core.on_timer(now);
        self.pump(now, out);
        self.misbehave(now, out);
    }
}

/// How long a block took to be finalized at one node (virtual ms).
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub rank: u32,
    pub from_proposal: Time,
    /// From the start of its maker's round (a rank-r maker waits r × unit_delay first).
    pub from_round_start: Time,
}

/// Real crypto that adds up the time it takes (for the crypto-cost figure; never asserted).
struct TimedCrypto {
    inner: BlsCrypto,
    nanos: Arc<AtomicU64>,
}

impl TimedCrypto {
    fn timed<T>(&self, f: impl FnOnce(&BlsCrypto) -> T) -> T {
        let started = Instant::now();
        let out = f(&self.inner);
        self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

impl Crypto for TimedCrypto {
    fn nodes(&self) -> usize {
        self.inner.nodes()
    }
    fn me(&self) -> NodeIndex {
        self.inner.me()
    }
    fn sign_proposal(&self, msg: &[u8]) -> [u8; 64] {
        self.timed(|c| c.sign_proposal(msg))
    }
    fn verify_proposal(&self, maker: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.timed(|c| c.verify_proposal(maker, msg, sig))
    }
    fn sign_share(&self, kind: Kind, msg: &[u8]) -> Sig {
        self.timed(|c| c.sign_share(kind, msg))
    }
    fn verify_share(&self, kind: Kind, signer: NodeIndex, msg: &[u8], sig: &Sig) -> bool {
        self.timed(|c| c.verify_share(kind, signer, msg, sig))
    }
    fn combine(&self, kind: Kind, msg: &[u8], shares: &[(NodeIndex, Sig)]) -> Option<Sig> {
        self.timed(|c| c.combine(kind, msg, shares))
    }
    fn verify_aggregate(&self, kind: Kind, signers: &[NodeIndex], msg: &[u8], sig: &Sig) -> bool {
        self.timed(|c| c.verify_aggregate(kind, signers, msg, sig))
    }
}

/// What a run showed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub scenario: String,
    /// Invariant violations (empty when the run is correct).
    pub violations: Vec<String>,
    /// Lowest and highest finalized height among honest nodes that were up at the end.
    pub finalized_min: Height,
    pub finalized_max: Height,
    pub certified_min: Height,
    /// How many times a node came back by state sync.
    pub state_syncs: u64,
    pub ingress_submitted: u64,
    pub ingress_executed: u64,
    /// Per finalized block and honest node.
    pub latency: Vec<Latency>,
    /// The ranks of finalized blocks.
    pub finalized_ranks: Vec<u32>,
    pub crypto: CryptoStats,
    /// Wall time all nodes spent signing and verifying (real crypto only), ms.
    pub crypto_ms: f64,
    pub messages_delivered: u64,
    pub bytes_sent: u64,
    pub proposal_bytes_sent: u64,
    /// The largest single message sent (CBOR bytes), when bytes are measured.
    pub largest_message: u64,
    /// The most frames and bytes one honest node sent one peer in a virtual second, when bytes
    /// are measured (what [`crate::limits::Rates::FRAMES`] must allow).
    pub peak_peer_frames: u64,
    pub peak_peer_bytes: u64,
    pub wall_seconds: f64,
    /// The longest stretch (virtual ms) in which no honest node finalized a new height.
    pub longest_stall: Time,
    /// Blocks honest nodes refused, by reason.
    pub rejections: BTreeMap<&'static str, u64>,
    /// The most artifacts an honest node held unvalidated (sampled as the run goes).
    pub max_unvalidated: usize,
    /// Each node's finalized height at the end (`None`: down).
    pub finalized_by_node: Vec<Option<Height>>,
    /// At each crash and restart: when, and the highest height an honest node had finalized.
    pub marks: Vec<(Time, Height)>,
    /// Each time the highest height an honest node finalized rose: when, and to what.
    pub progress: Vec<(Time, Height)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the invariants as events arrive.
struct Checker {
    honest: Vec<bool>,
    finalized: BTreeMap<Height, Hash>,
    states: BTreeMap<Height, Hash>,
    certified: BTreeMap<Height, Hash>,
    executed: Vec<HashSet<Hash>>,
    /// Each block's proposal time and its maker's round start.
    proposed: HashMap<Hash, (Time, Time)>,
    /// A block's limits (messages, payload bytes).
    limits: (usize, usize),
    /// The highest height an honest node finalized, when, and its random beacon (which ranks
    /// the makers of the next height).
    top: (Height, Time, Beacon),
    /// Whether each node is faulty in any way (a crashed node makes no blocks either).
    faulty: Vec<bool>,
    /// Where each message was first finalized.
    included: HashMap<Hash, Height>,
    blackout: bool,
    /// Each wait for a new finalized height: how long, and how many of the heights it ended
    /// with had a faulty rank-0 maker (each may cost a round: ICC finalizes a height whose
    /// rank-0 maker is honest).
    stalls: Vec<(Time, u64)>,
    report: Report,
}

impl Checker {
    fn take(&mut self, log: &Log) {
        for event in log.borrow_mut().drain(..) {
            match event {
                Event::Proposed { block, time, round_start } => {
                    self.proposed.entry(block).or_insert((time, round_start));
                }
                Event::Finalized { node, batch, executed, time } => {
                    let hash = batch.block.hash();
                    let honest = self.honest[node];
                    // A node finalizes heights in order, so a new top follows the last one.
                    if honest && batch.height > self.top.0 {
                        let rank0 = ranking(&self.top.2, self.faulty.len()).iter().position(|r| *r == 0);
                        let excused = u64::from(rank0.is_none_or(|m| self.faulty[m]));
                        match self.stalls.last_mut() {
                            Some((_, e)) if time == self.top.1 => *e += excused,
                            _ => self.stalls.push((time - self.top.1, excused)),
                        }
                        self.top = (batch.height, time, batch.beacon.clone());
                        self.report.progress.push((time, batch.height));
                    }
                    let bytes: usize = batch.ingress.iter().map(|i| i.bytes.len()).sum();
                    if honest && (batch.ingress.len() > self.limits.0 || bytes > self.limits.1) {
                        self.report.violations.push(format!(
                            "node {node} finalized a block of {} messages and {bytes} bytes at height {} (limits {:?})",
                            batch.ingress.len(),
                            batch.height,
                            self.limits
                        ));
                    }
                    if honest {
                        match self.finalized.get(&batch.height) {
                            Some(other) if *other != hash => self.report.violations.push(format!(
                                "node {node} finalized {} at height {}, another honest node {}",
                                hex(&hash),
                                batch.height,
                                hex(other)
                            )),
                            Some(_) => {}
                            None => {
                                self.finalized.insert(batch.height, hash);
                                self.report.finalized_ranks.push(batch.block.rank);
                                // Consensus never finalizes a message twice; only when a faulty
                                // maker repeats one finalized before every node restarted
                                // (execution then skips it).
                                let excused = self.blackout && !self.honest[batch.block.maker];
                                for ingress in &batch.ingress {
                                    if let Some(first) = self.included.insert(ingress.id(), batch.height).filter(|_| !excused) {
                                        self.report.violations.push(format!(
                                            "ingress {} finalized at height {first} and again at {}",
                                            hex(&ingress.id()),
                                            batch.height
                                        ));
                                    }
                                }
                            }
                        }
                        if let Some((proposed, round_start)) = self.proposed.get(&hash) {
                            self.report.latency.push(Latency { rank: batch.block.rank, from_proposal: time - proposed, from_round_start: time - round_start });
                        }
                    }
                    for ingress in &batch.ingress {
                        let expiry = SimIngressCheck.expiry(&ingress.bytes).unwrap_or(0);
                        if expiry < batch.block.time {
                            self.report.violations.push(format!("node {node}: expired ingress {} finalized at height {}", hex(&ingress.id()), batch.height));
                        }
                    }
                    for id in executed {
                        if !self.executed[node].insert(id) {
                            self.report.violations.push(format!("node {node}: ingress {} executed twice (height {})", hex(&id), batch.height));
                        }
                    }
                }
                Event::StateHash { node, height, hash } => {
                    if self.honest[node] {
                        let first = *self.states.entry(height).or_insert(hash);
                        if first != hash {
                            self.report.violations.push(format!("node {node}: state hash at height {height} differs"));
                        }
                    }
                }
                Event::Certified { node, height, hash } => {
                    if self.honest[node] {
                        let first = *self.certified.entry(height).or_insert(hash);
                        if first != hash {
                            self.report.violations.push(format!("node {node}: certified a different state at height {height}"));
                        }
                        if self.states.get(&height).is_some_and(|s| *s != hash) {
                            self.report.violations.push(format!("node {node}: certified state at height {height} is not the executed one"));
                        }
                    }
                }
                Event::Synced { node, height, hash } => {
                    self.report.state_syncs += 1;
                    if self.states.get(&height).is_some_and(|s| *s != hash) {
                        self.report.violations.push(format!("node {node}: state sync brought a state at height {height} that no honest node executed"));
                    }
                }
                Event::Sent { bytes, proposal_bytes, largest } => {
                    self.report.bytes_sent += bytes;
                    self.report.proposal_bytes_sent += proposal_bytes;
                    self.report.largest_message = self.report.largest_message.max(largest);
                }
            }
            if self.report.violations.len() > 20 {
                self.report.violations.truncate(20);
            }
        }
    }
}

fn hex(h: &Hash) -> String {
    h[..6].iter().map(|b| format!("{b:02x}")).collect()
}

enum Action {
    Submit { node: NodeIndex, nonce: u64 },
    Crash(NodeIndex),
    Restart(NodeIndex),
}

/// Runs a scenario to its end, checking the invariants after every step.
pub fn run(scenario: &Scenario, measure_bytes: bool) -> Report {
    let started = Instant::now();
    let n = scenario.nodes;
    let f = faults_tolerated(n);
    // The scenario's own choices (which nodes fail, when, who gets ingress).
    let mut choices = Rng::new(scenario.seed ^ 0x5EED);
    // Which nodes are faulty, and how.
    let mut order: Vec<NodeIndex> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, choices.below(i as u64 + 1) as usize);
    }
    let mut fault_of: Vec<Option<Fault>> = vec![None; n];
    // Nodes crashed by the schedule are crashed or restarting ones; the seeded faults go to others.
    for c in &scenario.crashes {
        fault_of[c.node] = Some(if c.restart.is_some() { Fault::Restart } else { Fault::Crash });
    }
    order.retain(|i| !scenario.crashes.iter().any(|c| c.node == *i));
    for (k, fault) in scenario.faults.iter().enumerate().take(order.len()) {
        fault_of[order[k]] = Some(*fault);
    }
    let keys = SimKeys::new(n, scenario.seed);
    let crypto_time = Arc::new(AtomicU64::new(0));
    let dealt = scenario.real_crypto.then(|| {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&scenario.seed.to_be_bytes());
        let (public, secrets) = deal(n, &seed);
        (Arc::new(public), secrets)
    });
    let subnet_seed: Hash = Sha256::digest(scenario.seed.to_be_bytes()).into();
    let config_of = |fault: Option<Fault>| Config {
        unit_delay: scenario.unit_delay,
        initial_notary_delay: scenario.initial_notary_delay,
        dkg_interval: scenario.dkg_interval,
        rebroadcast_interval: 1_000,
        strip_blocks: scenario.strip_blocks,
        malice: Malice {
            equivocate: fault == Some(Fault::Equivocate),
            notarize_everything: fault == Some(Fault::NotarizeAll),
            corrupt_signatures: fault == Some(Fault::BadSignatures),
            bad_blocks: fault == Some(Fault::BadBlocks),
        },
        max_block_ingress: scenario.block_ingress,
        max_block_bytes: scenario.block_bytes,
        ..Config::default()
    };
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let make = |i: NodeIndex, disk: Disk| -> SimNode {
        let crypto: Arc<dyn Crypto> = match &dealt {
            Some((public, secrets)) => {
                let inner = BlsCrypto::new(i, secrets[i].clone(), public.clone());
                Arc::new(TimedCrypto { inner, nanos: crypto_time.clone() })
            }
            None => Arc::new(SimCrypto::new(i, keys.clone())),
        };
        let (mut replica, checkpoints) = disk;
        replica.executed.clear();
        let config = NodeConfig {
            sync_timeout: SIM_SYNC_TIMEOUT,
            checkpoint_chunk_bytes: SIM_CHUNK_BYTES,
            ..NodeConfig::new(config_of(fault_of[i]), subnet_seed)
        };
        let core = NodeCore::open(config, crypto, Arc::new(SimIngressCheck), replica, checkpoints).expect("a simulated node opens");
        SimNode { core, fault: fault_of[i], log: log.clone(), measure_bytes, sent: Vec::new(), junk: 0, peers: (n - 1) as u64, per_peer: BTreeMap::new() }
    };
    let nodes: Vec<SimNode> = (0..n).map(|i| make(i, Disk::default())).collect();
    let mut network = Network {
        min_delay: scenario.min_delay,
        max_delay: scenario.max_delay,
        loss_per_million: scenario.loss_per_million,
        duplicate_per_million: scenario.duplicate_per_million,
        slow_per_million: scenario.slow_per_million,
        partitions: Vec::new(),
    };
    let d = scenario.duration;
    if scenario.partition {
        let from = d / 5 + choices.below(d / 5);
        let side = (0..n).filter(|_| choices.below(2) == 0).collect();
        network.partitions.push(Partition { from, until: from + d / 5, side });
    }
    // The schedule: client submissions, crashes, restarts.
    let mut actions: Vec<(Time, Action)> = Vec::new();
    let submissions = scenario.ingress_per_second * d / 1_000;
    for k in 0..submissions {
        actions.push((choices.below(d * 3 / 4), Action::Submit { node: choices.below(n as u64) as usize, nonce: k }));
    }
    for (i, fault) in fault_of.iter().enumerate().filter(|(i, _)| !scenario.crashes.iter().any(|c| c.node == *i)) {
        match fault {
            Some(Fault::Crash) => actions.push((d / 10 + choices.below(d / 3), Action::Crash(i))),
            Some(Fault::Restart) => {
                let at = d / 10 + choices.below(d / 3);
                actions.push((at, Action::Crash(i)));
                let down = if scenario.downtime > 0 { scenario.downtime } else { 1_000 + choices.below(d / 4) };
                actions.push((at + down, Action::Restart(i)));
            }
            _ => {}
        }
    }
    for c in &scenario.crashes {
        actions.push((c.at, Action::Crash(c.node)));
        if let Some(back) = c.restart {
            actions.push((back, Action::Restart(c.node)));
            if scenario.link_delay > 0 {
                network.partitions.push(Partition { from: back, until: back + scenario.link_delay, side: [c.node].into() });
            }
        }
    }
    if scenario.blackout {
        let mut at = d / 4 + choices.below(d / 4);
        for i in 0..n {
            actions.push((at, Action::Crash(i)));
            at += choices.below(3 * scenario.max_delay + 1);
        }
        let back = at + if scenario.downtime > 0 { scenario.downtime } else { 1_000 + choices.below(2_000) };
        // (A node that crashed for good stays down.)
        for i in (0..n).filter(|i| fault_of[*i] != Some(Fault::Crash)) {
            actions.push((back + choices.below(2 * scenario.max_delay + 1), Action::Restart(i)));
        }
    }
    actions.sort_by_key(|(t, _)| *t);
    let mut sim = Simulation::new(scenario.seed, network, nodes);
    let mut checker = Checker {
        honest: fault_of.iter().map(|f| f.is_none_or(Fault::honest)).collect(),
        finalized: BTreeMap::new(),
        states: BTreeMap::new(),
        certified: BTreeMap::new(),
        executed: vec![HashSet::new(); n],
        proposed: HashMap::new(),
        limits: (scenario.block_ingress, scenario.block_bytes),
        top: (0, 0, Start::genesis(&subnet_seed).beacon),
        faulty: fault_of.iter().map(Option::is_some).collect(),
        included: HashMap::new(),
        blackout: scenario.blackout,
        stalls: Vec::new(),
        report: Report { scenario: scenario.to_string(), ..Report::default() },
    };
    let honest_now = |i: NodeIndex| fault_of[i].is_none();
    let mut steps: u64 = 0;
    let mut submitted: Vec<Hash> = Vec::new();
    // A faulty node may drop what clients give it (a flooder's own gossip is throttled by its
    // peers, a silent one sends nothing): only what honest nodes take must execute.
    let mut submitted_to_honest: Vec<Hash> = Vec::new();
    let mut disks: Vec<Option<Disk>> = vec![None; n];
    let mut actions = actions.into_iter().peekable();
    // TABNET_TRACE=1: every node's consensus state every 2 s of virtual time (as nodes print it).
    let trace = std::env::var_os("TABNET_TRACE").is_some();
    let mut traced: Time = 0;
    loop {
        if trace && sim.now() >= traced + 2_000 {
            traced = sim.now() / 2_000 * 2_000;
            for (i, node) in sim.nodes() {
                let c = node.core.consensus();
                eprintln!(
                    "t={} node {i}: finalized {} notarized {} certified {} unvalidated {} rejections {:?}; {}",
                    sim.now(),
                    c.finalized_height(),
                    c.notarized_height(),
                    c.certified_height(),
                    c.unvalidated_len(),
                    c.rejections(),
                    c.round_view()
                );
            }
        }
        let next_action = actions.peek().map(|(t, _)| *t).unwrap_or(d);
        match sim.next_time() {
            Some(t) if t <= next_action && t <= d => {
                sim.step();
                steps += 1;
                if steps % 256 == 0 {
                    let most = sim.nodes().filter(|(i, _)| honest_now(*i)).map(|(_, node)| node.core.consensus().unvalidated_len()).max();
                    checker.report.max_unvalidated = checker.report.max_unvalidated.max(most.unwrap_or(0));
                }
                if !log.borrow().is_empty() {
                    checker.take(&log);
                }
                continue;
            }
            _ => {}
        }
        let Some((at, action)) = actions.next() else { break };
        sim.run_until(at.saturating_sub(1));
        if matches!(action, Action::Crash(_) | Action::Restart(_)) {
            checker.report.marks.push((at, checker.top.0));
        }
        match action {
            Action::Submit { node, nonce } => {
                let ingress = sim_ingress(at + scenario.ingress_expiry, nonce, scenario.ingress_size);
                submitted.push(ingress.id());
                if fault_of[node].is_none() {
                    submitted_to_honest.push(ingress.id());
                }
                sim.act(node, |node, now, out| {
                    let _ = node.core.submit_ingress(now, ingress);
                    node.pump(now, out);
                });
            }
            Action::Crash(i) => {
                // (Crashing a node that is down already keeps the disk it went down with.)
                if let Some(node) = sim.crash(i) {
                    disks[i] = Some(node.core.into_parts());
                }
            }
            Action::Restart(i) => {
                if let Some(disk) = disks[i].take() {
                    sim.restart(i, make(i, disk));
                }
                // After a blackout, the wait for finality starts again as each node returns.
                if scenario.blackout {
                    checker.top.1 = checker.top.1.max(at);
                }
            }
        }
        checker.take(&log);
    }
    sim.run_until(d);
    checker.take(&log);
    let mut report = checker.report;
    let mut stalls = std::mem::take(&mut checker.stalls);
    // The wait at the end: who makes the heights not finalized yet is unknown here; allow six
    // faulty rank-0 makers in a row.
    stalls.push((d - checker.top.1, 6));
    report.longest_stall = stalls.iter().map(|(stall, _)| *stall).max().unwrap_or(0);
    report.ingress_submitted = submitted.len() as u64;
    let up_honest: Vec<&SimNode> = sim.nodes().filter(|(i, _)| fault_of[*i].is_none()).map(|(_, node)| node).collect();
    report.finalized_min = up_honest.iter().map(|n| n.core.consensus().finalized_height()).min().unwrap_or(0);
    report.finalized_max = up_honest.iter().map(|n| n.core.consensus().finalized_height()).max().unwrap_or(0);
    report.certified_min = up_honest.iter().map(|n| n.core.consensus().certified_height()).min().unwrap_or(0);
    report.finalized_by_node = (0..n).map(|i| sim.node(i).map(|node| node.core.consensus().finalized_height())).collect();
    // Nodes that crashed and came back must have caught up (unless the network was not synchronous).
    let restarted: Vec<(NodeIndex, Height)> = sim
        .nodes()
        .filter(|(i, _)| fault_of[*i] == Some(Fault::Restart))
        .map(|(i, node)| (i, node.core.consensus().finalized_height()))
        .collect();
    report.ingress_executed = submitted.iter().filter(|id| checker.executed.iter().any(|e| e.contains(*id))).count() as u64;
    for node in &up_honest {
        let s = node.core.consensus().crypto_stats();
        report.crypto.signed += s.signed;
        report.crypto.verified_shares += s.verified_shares;
        report.crypto.verified_aggregates += s.verified_aggregates;
        report.crypto.verified_proposals += s.verified_proposals;
        for (why, count) in node.core.consensus().rejections() {
            *report.rejections.entry(why).or_default() += count;
        }
    }
    for node in &up_honest {
        report.peak_peer_frames = report.peak_peer_frames.max(node.per_peer.values().map(|v| v.0).max().unwrap_or(0));
        report.peak_peer_bytes = report.peak_peer_bytes.max(node.per_peer.values().map(|v| v.1).max().unwrap_or(0));
    }
    report.messages_delivered = sim.stats.delivered;
    report.crypto_ms = crypto_time.load(Ordering::Relaxed) as f64 / 1e6;
    // Liveness: with at most f faulty nodes on a synchronous network, finality keeps rising all
    // along (no wait for a new finalized height longer than two slowest rounds, plus a round for
    // each faulty rank-0 maker on the way), and every message submitted to an honest node
    // executes (unless it may expire first).
    let faulty = fault_of.iter().filter(|x| x.is_some()).count();
    if faulty <= f && scenario.synchronous() {
        // Delays are bounded: by ten times max_delay where some messages are slow.
        let delta = if scenario.slow_per_million > 0 { 10 * scenario.max_delay } else { scenario.max_delay };
        let round = 3 * delta + scenario.initial_notary_delay + (f as u64 + 1) * scenario.unit_delay;
        // Each faulty rank-0 maker on the way may cost a round more.
        for (stall, excused) in stalls {
            let bound = (2 + excused) * round;
            if stall > bound {
                report.violations.push(format!("liveness: no new finalized height for {stall} ms ({excused} faulty rank-0 makers; at most {bound} expected)"));
            }
        }
        for (i, h) in &restarted {
            if h + 3 < report.finalized_min {
                report.violations.push(format!("liveness: node {i} restarted and stayed at height {h} (others at {})", report.finalized_min));
            }
        }
        if scenario.blackout && report.finalized_min + 3 < report.finalized_max {
            report.violations.push(format!("liveness: after the blackout a node stayed at height {} (others at {})", report.finalized_min, report.finalized_max));
        }
        let may_be_lost =
            scenario.blackout || scenario.faults.iter().any(|f| matches!(f, Fault::Crash | Fault::Restart | Fault::Silent)) || scenario.ingress_expiry < d;
        let lost = submitted_to_honest.iter().filter(|id| !checker.executed.iter().any(|e| e.contains(*id))).count();
        if lost > 0 && !may_be_lost {
            report.violations.push(format!("liveness: {lost} of {} messages submitted to honest nodes never executed", submitted_to_honest.len()));
        }
    }
    report.wall_seconds = started.elapsed().as_secs_f64();
    report
}

/// Runs a scenario and panics with the replay command if an invariant broke.
pub fn check(scenario: &Scenario) -> Report {
    let report = run(scenario, false);
    assert!(report.ok(), "invariants broken:\n  {}\nreplay with:\n  {}", report.violations.join("\n  "), scenario.replay_command());
    report
}
