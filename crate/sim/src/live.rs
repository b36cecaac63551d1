//! A simulated subnet for people to watch (the web app's front page): n nodes, each the node
//! core every platform runs ([`NodeCore`]) with the real replica ([`Replica`] over an in-memory
//! store) executing a real canister (the `counter` test canister, in wasmi), on the
//! deterministic simulator. It is controlled live — crash, restart and pause nodes, cut and slow
//! links, make nodes Byzantine, set a load of calls — and every control is recorded with the
//! virtual time (and the place among the simulation's steps) it happened at, so a run replays
//! exactly ([`LiveSubnet::replay`]).
//!
//! Signatures are [`SimCrypto`]'s hash-based stand-ins, which keep BLS's rules (a share checks
//! only against its signer, shares combine to one unique value, forgeries fail): real BLS12-381
//! pairings would make 13 nodes in one browser tab far too slow (each node verifies every
//! share of every height). Ingress is checked as on a real node ([`CallCheck`]): calls are
//! real IC envelopes (anonymous), wrapped with their effective canister id.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use candid::{Decode, Encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tabnet_consensus::{
    faults_tolerated, ranking, Artifact, Config, Hash, Height, Ingress, Kind, Malice, Message, NodeIndex, SimCrypto, SimKeys, Time,
};
use tabnet_crypto::user_identity::{anonymous_envelope, Request};
use tabnet_crypto::{BlsSecretKey, NodeSigningKey};
use tabnet_execution::hypervisor::WasmResult;
use tabnet_execution::management::types::{CanisterInstallMode, CreateCanisterResult, InstallCodeArgs, ProvisionalCreateCanisterWithCyclesArgs};
use tabnet_execution::SubnetConfig;
use tabnet_node::replica::{wrap_call, CallCheck};
use tabnet_node::{codec, MemoryCheckpoints, NodeConfig, NodeCore, NodeOutput};
pub use tabnet_node::view::{
    message_kind, BlockView, Flight, LinkView, NodeView, ProposalAt, Round, ShareAt, StatsView, Thresholds, View,
};
use tabnet_node::view::{block_tree, hex8};
use tabnet_replica::{authenticate, IngressState, Member, MemoryStore, ReadStateScope, Replica, RequestType};
use tabnet_types::{Principal, MANAGEMENT_CANISTER};

use crate::{Network, NextEvent, Node, Outbox, Rng, Simulation};

/// The `counter` test canister (`inc` update, `get` query), the same bytes as
/// `tabnet_test_canisters::wasm("counter")` (a test checks it): included alone, because that
/// function's match would pull every test canister (3 MB) into the web app's wasm.
pub const COUNTER_WASM: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/counter.wasm"));

/// Most nodes a live subnet has (as a tab subnet).
pub const MAX_NODES: usize = 13;

/// Message delays between nodes (ms): a browser's WebRTC links on one continent.
const MIN_DELAY: Time = 15;
const MAX_DELAY: Time = 60;
/// The most calls a second [`LiveSubnet::set_load`] takes.
pub const MAX_LOAD: u64 = 1_000;
/// Captions kept for [`LiveSubnet::events`].
const CAPTIONS_KEPT: usize = 500;
/// Messages in flight [`LiveSubnet::view`] shows at most (the newest).
const IN_FLIGHT_SHOWN: usize = 300;
/// The window (virtual ms) rates are measured over.
const RATE_WINDOW: Time = 5_000;
/// Heights of the block tree and of the rounds [`LiveSubnet::view`] shows.
const TREE_HEIGHTS: u64 = 12;
const ROUNDS_SHOWN: usize = 6;
/// A setup call not done after this long (virtual ms) is submitted again.
const SETUP_RETRY: Time = 10_000;

/// The protocol's parameters here: rounds slow enough to follow by eye (a block about every
/// 300–400 ms idle), a catch-up package every 50 heights.
fn consensus_config(mode: Byzantine) -> Config {
    Config {
        unit_delay: 600,
        initial_notary_delay: 100,
        idle_block_delay: 300,
        dkg_interval: 50,
        rebroadcast_interval: 1_000,
        malice: malice(mode),
        ..Config::default()
    }
}

fn malice(mode: Byzantine) -> Malice {
    Malice { equivocate: mode == Byzantine::Equivocate, corrupt_signatures: mode == Byzantine::BadShares, ..Malice::default() }
}

/// How a node misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    Honest,
    /// Signs two blocks whenever it is a block maker.
    Equivocate,
    /// Sends nothing (as the scenario runner's Silent fault).
    Withhold,
    /// Every signature it sends is spoiled.
    BadShares,
}

impl Byzantine {
    pub fn name(self) -> &'static str {
        match self {
            Byzantine::Honest => "",
            Byzantine::Equivocate => "equivocate",
            Byzantine::Withhold => "withhold",
            Byzantine::BadShares => "bad-shares",
        }
    }
    pub fn parse(name: &str) -> Result<Self, String> {
        [Byzantine::Honest, Byzantine::Equivocate, Byzantine::Withhold, Byzantine::BadShares]
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| format!("no Byzantine mode `{name}` (modes: '', 'equivocate', 'withhold', 'bad-shares')"))
    }
}

/// Whether a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Crashed,
    Paused,
}

impl NodeState {
    fn name(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Crashed => "crashed",
            NodeState::Paused => "paused",
        }
    }
}

type Core = NodeCore<Replica<MemoryStore>, MemoryCheckpoints>;

/// What the nodes did, as the live subnet learns it (drained after every step).
enum Seen {
    /// `copies`: how many peers it went to.
    Sent { node: NodeIndex, at: Time, bytes: u64, copies: u64, what: What },
    Proposed { node: NodeIndex, height: Height, rank: Option<u32> },
    Executed { node: NodeIndex, height: Height, at: Time, block: Hash, calls: usize, state_hash: Hash },
    Notarized { node: NodeIndex, height: Height, at: Time },
    SyncStarted { node: NodeIndex, target: Height },
    Synced { node: NodeIndex, height: Height, bytes: usize },
    Failed { node: NodeIndex, why: String },
}

/// What a sent message was, as far as the rounds' timeline cares.
#[derive(Clone, Copy)]
enum What {
    Proposal { height: Height, rank: u32, maker: NodeIndex, hash: Hash },
    Share { kind: Kind, height: Height, signer: NodeIndex },
    Aggregate { kind: Kind, height: Height, signers: usize, content: Hash },
    Other,
}

impl What {
    fn of(message: &Message) -> What {
        match message {
            Message::Push(Artifact::Proposal(p)) => What::Proposal { height: p.block.height, rank: p.block.rank, maker: p.block.maker, hash: p.block.hash() },
            Message::Push(Artifact::Share(s)) => What::Share { kind: s.kind, height: s.height, signer: s.signer },
            Message::Push(Artifact::Aggregate(a)) => What::Aggregate { kind: a.kind, height: a.height, signers: a.signers.len(), content: a.content },
            _ => What::Other,
        }
    }
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// One node of the live subnet: the node core, and whether it withholds what it sends.
pub struct LiveNode {
    core: Core,
    me: NodeIndex,
    peers: u64,
    withhold: bool,
    log: Log,
    /// Notarized height last reported.
    notarized: Height,
    /// The certified state changed since its counter was last read.
    counter_stale: bool,
}

impl LiveNode {
    pub fn core(&self) -> &Core {
        &self.core
    }

    fn pump(&mut self, now: Time, out: &mut Outbox<Message>) {
        let me = self.me;
        while let Some(output) = self.core.poll() {
            match output {
                NodeOutput::Send { to, message } => {
                    if self.withhold {
                        continue;
                    }
                    let copies = if to.is_some() { 1 } else { self.peers };
                    let bytes = codec::encode(&message).len() as u64 * copies;
                    self.log.borrow_mut().push(Seen::Sent { node: me, at: now, bytes, copies, what: What::of(&message) });
                    match to {
                        Some(to) => out.send(to, message),
                        None => out.broadcast(message),
                    }
                }
                NodeOutput::Proposed { height, .. } => {
                    let rank = self.core.consensus().rank_at(height);
                    self.log.borrow_mut().push(Seen::Proposed { node: me, height, rank });
                }
                NodeOutput::Executed { batch, state_hash } => self.log.borrow_mut().push(Seen::Executed {
                    node: me,
                    height: batch.height,
                    at: now,
                    block: batch.block.hash(),
                    calls: batch.ingress.len(),
                    state_hash,
                }),
                NodeOutput::Certified { served, .. } => self.counter_stale |= served,
                NodeOutput::SyncStarted { target, .. } => self.log.borrow_mut().push(Seen::SyncStarted { node: me, target }),
                NodeOutput::Synced { height, bytes, .. } => self.log.borrow_mut().push(Seen::Synced { node: me, height, bytes }),
                NodeOutput::VerifyIngress(unverified) => {
                    let check = self.core.ingress_check();
                    let _ = self.core.on_ingress_verified(now, unverified.verify(&*check));
                }
                NodeOutput::Failed(why) => self.log.borrow_mut().push(Seen::Failed { node: me, why }),
            }
        }
        let notarized = self.core.consensus().notarized_height();
        if notarized > self.notarized {
            self.notarized = notarized;
            self.log.borrow_mut().push(Seen::Notarized { node: me, height: notarized, at: now });
        }
        if let Some(at) = self.core.next_wake(now) {
            out.wake_at(at);
        }
    }

    fn submit(&mut self, now: Time, bytes: Vec<u8>, out: &mut Outbox<Message>) {
        let _ = self.core.submit_ingress(now, Ingress { bytes });
        self.pump(now, out);
    }

    /// The counter canister's value in this node's certified state (a query, as a client's).
    fn read_counter(&mut self, canister: Principal, now: Time) -> Option<u64> {
        let now_ns = now * 1_000_000;
        let request = Request { request_type: "query", canister_id: &canister, method: "get", arg: Encode!().ok()?, nonce: 0, ingress_expiry: now_ns + 60_000_000_000 };
        let (envelope, _) = anonymous_envelope(request);
        let scope = ReadStateScope::Canister(canister);
        let request = authenticate(&envelope, RequestType::Query, scope, now_ns).ok()?;
        match self.core.replica_mut().run_query(&request, scope) {
            Ok(Ok(WasmResult::Reply(bytes))) => Decode!(&bytes, u64).ok(),
            _ => None,
        }
    }
}

impl Node for LiveNode {
    type Message = Message;
    fn on_message(&mut self, now: Time, from: NodeIndex, message: Message, out: &mut Outbox<Message>) {
        self.core.on_message(now, from, message);
        self.pump(now, out);
    }
    fn on_wake(&mut self, now: Time, out: &mut Outbox<Message>) {
        self.core.on_timer(now);
        self.pump(now, out);
    }
}

/// One recorded control: when (virtual ms), where among the simulation's steps and clients'
/// calls (`seq`: replays put it at exactly the same place), and what.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Input {
    pub at: Time,
    /// Steps and calls done before it; without it (a hand-written input) it applies after
    /// everything due at `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub op: String,
    pub args: Vec<Value>,
}

/// A run's seed, size and controls: enough to replay it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recording {
    pub seed: u64,
    pub nodes: usize,
    pub inputs: Vec<Input>,
}

/// A caption: a short sentence on what just happened.
#[derive(Clone, Debug, Serialize)]
pub struct Caption {
    pub seq: u64,
    pub at: Time,
    pub text: String,
}

/// Where installing the counter canister is.
enum Setup {
    Creating { id: [u8; 32], call: Vec<u8>, since: Time },
    Installing { id: [u8; 32], call: Vec<u8>, since: Time, canister: Principal },
    Ready,
    Failed,
}

/// A control, parsed.
#[derive(Clone, Debug)]
enum Control {
    Crash(NodeIndex),
    Restart(NodeIndex),
    Pause(NodeIndex, bool),
    CutLink(NodeIndex, NodeIndex, bool),
    DelayLink(NodeIndex, NodeIndex, Time),
    Byzantine(NodeIndex, Byzantine),
    SetLoad(u64),
}

/// The what-survives-a-crash of a node: its store (the replica's records and consensus's) and
/// its checkpoints.
type Disk = (MemoryStore, MemoryCheckpoints);

/// The subnet's keys besides consensus's: the root key the replica names, each node's query
/// signing key.
struct Keys {
    consensus: Arc<SimKeys>,
    root_key_der: Vec<u8>,
    node_seeds: Vec<[u8; 32]>,
    node_ders: Vec<Vec<u8>>,
    genesis: Hash,
}

pub struct LiveSubnet {
    seed: u64,
    n: usize,
    sim: Simulation<LiveNode>,
    keys: Keys,
    log: Log,
    states: Vec<NodeState>,
    modes: Vec<Byzantine>,
    disks: Vec<Option<Disk>>,
    /// Steps and clients' calls done: where a control happens among them.
    actions: u64,
    inputs: Vec<Input>,
    /// Inputs still to re-apply (a replay).
    replay: VecDeque<Input>,
    captions: VecDeque<Caption>,
    caption_seq: u64,
    // The workload.
    load: u64,
    /// When the next client call is made (virtual µs).
    next_call_us: Option<u64>,
    calls: Rng,
    nonce: u64,
    setup: Setup,
    canister: Option<Principal>,
    // What the view shows.
    rounds: BTreeMap<Height, Round>,
    finalized: BTreeMap<Height, Hash>,
    /// Two different blocks finalized at one height (never, while at most f nodes misbehave).
    conflicts: Vec<String>,
    flights: VecDeque<Flight>,
    sent_window: VecDeque<(Time, NodeIndex, u64, u64)>,
    finalized_window: VecDeque<Time>,
    finality: VecDeque<Time>,
    calls_executed: u64,
    state_hashes: Vec<Option<Hash>>,
    counters: Vec<Option<u64>>,
    /// Each node's (notarized, finalized, certified) when last seen up.
    heights: Vec<(Height, Height, Height)>,
    /// A digest of every state hash every node executed, in order (for replay tests).
    digest: Hash,
}

impl LiveSubnet {
    /// A subnet of `nodes` nodes (1 to 13) from `seed`, which installs the counter canister at
    /// genesis (through consensus, as any call).
    pub fn new(seed: u64, nodes: usize) -> Result<Self, String> {
        if !(1..=MAX_NODES).contains(&nodes) {
            return Err(format!("a live subnet has 1 to {MAX_NODES} nodes, not {nodes}"));
        }
        let derive = |tag: &[u8], i: usize| -> [u8; 32] {
            Sha256::new().chain_update(b"tabnet-live").chain_update(tag).chain_update(seed.to_be_bytes()).chain_update((i as u64).to_be_bytes()).finalize().into()
        };
        let node_seeds: Vec<[u8; 32]> = (0..nodes).map(|i| derive(b"node", i)).collect();
        let keys = Keys {
            consensus: SimKeys::new(nodes, seed),
            root_key_der: BlsSecretKey::from_seed(&derive(b"root", 0)).public_key().to_der(),
            node_ders: node_seeds.iter().map(|s| NodeSigningKey::from_seed(*s).public_key_der()).collect(),
            node_seeds,
            genesis: derive(b"genesis", 0),
        };
        let log: Log = Rc::default();
        let modes = vec![Byzantine::Honest; nodes];
        let members: Vec<LiveNode> = (0..nodes).map(|i| open_node(&keys, &log, i, Byzantine::Honest, Disk::default())).collect();
        let network = Network { min_delay: MIN_DELAY, max_delay: MAX_DELAY, loss_per_million: 0, duplicate_per_million: 0, slow_per_million: 0, partitions: Vec::new() };
        let mut sim = Simulation::new(seed, network, members);
        sim.record_transmissions(true);
        let mut live = LiveSubnet {
            seed,
            n: nodes,
            sim,
            keys,
            log,
            states: vec![NodeState::Up; nodes],
            modes,
            disks: (0..nodes).map(|_| None).collect(),
            actions: 0,
            inputs: Vec::new(),
            replay: VecDeque::new(),
            captions: VecDeque::new(),
            caption_seq: 0,
            load: 0,
            next_call_us: None,
            calls: Rng::new(seed ^ 0xC0FFEE),
            nonce: 0,
            setup: Setup::Failed,
            canister: None,
            rounds: BTreeMap::new(),
            finalized: BTreeMap::new(),
            conflicts: Vec::new(),
            flights: VecDeque::new(),
            sent_window: VecDeque::new(),
            finalized_window: VecDeque::new(),
            finality: VecDeque::new(),
            calls_executed: 0,
            state_hashes: vec![None; nodes],
            counters: vec![None; nodes],
            heights: vec![(0, 0, 0); nodes],
            digest: [0; 32],
        };
        let f = faults_tolerated(nodes);
        live.caption(format!("a subnet of {nodes} nodes starts; it tolerates {f} faulty node{}", if f == 1 { "" } else { "s" }));
        // Create the counter canister: a call through consensus like any other.
        let arg = Encode!(&ProvisionalCreateCanisterWithCyclesArgs::default()).map_err(|e| e.to_string())?;
        let (id, call) = live.call_bytes(&MANAGEMENT_CANISTER, &MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", arg);
        live.submit_everywhere(&call);
        live.setup = Setup::Creating { id, call, since: 0 };
        Ok(live)
    }

    /// A new subnet that re-applies `recording`'s controls at their times as it advances.
    pub fn replay(recording: Recording) -> Result<Self, String> {
        let mut live = Self::new(recording.seed, recording.nodes)?;
        live.replay = recording.inputs.into();
        Ok(live)
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn now(&self) -> Time {
        self.sim.now()
    }
    /// Node `i`, unless crashed.
    pub fn node(&self, i: NodeIndex) -> Option<&LiveNode> {
        self.sim.node(i)
    }
    pub fn state(&self, i: NodeIndex) -> NodeState {
        self.states[i]
    }
    /// The canister the workload calls, once created.
    pub fn canister(&self) -> Option<Principal> {
        self.canister
    }
    /// Whether the counter canister is installed (the workload runs then).
    pub fn ready(&self) -> bool {
        matches!(self.setup, Setup::Ready)
    }
    /// Safety violations seen: two different blocks finalized at one height.
    pub fn conflicts(&self) -> &[String] {
        &self.conflicts
    }
    /// The highest height any node finalized.
    pub fn top_finalized(&self) -> Height {
        self.finalized.keys().next_back().copied().unwrap_or(0)
    }
    /// A digest of every state hash every node executed, in order.
    pub fn digest(&self) -> Hash {
        self.digest
    }

    // ----- running -----

    /// Runs virtual time forward by `ms`: everything due up to then (controls being replayed
    /// included).
    pub fn advance(&mut self, ms: Time) {
        let until = self.sim.now().saturating_add(ms);
        while self.next_thing(until, false).is_some() {}
        self.sim.run_until(until);
    }

    /// Runs exactly the next event (a message delivered, a node's timer, a client's call, a
    /// replayed control); says what it was.
    pub fn step_event(&mut self) -> String {
        loop {
            match self.next_thing(Time::MAX, true) {
                Some(text) if text.is_empty() => continue,
                Some(text) => return text,
                None => return format!("t={} nothing left to happen", self.sim.now()),
            }
        }
    }

    /// Does the next thing due at or before `until`; `None` if there is none. With `describe`,
    /// a line on what it was (empty for a timer that had nothing to do).
    fn next_thing(&mut self, until: Time, describe: bool) -> Option<String> {
        let next_event = self.sim.next_time();
        // A control being replayed, when its turn comes.
        if let Some(input) = self.replay.front() {
            let due = match input.seq {
                Some(seq) => seq <= self.actions,
                None => next_event.is_none_or(|t| t > input.at) && self.next_call_us.is_none_or(|us| us / 1_000 > input.at),
            };
            if due && input.at <= until {
                let input = self.replay.pop_front().expect("just looked");
                self.sim.run_before(input.at);
                let text = format!("t={} {}({})", input.at, input.op, input.args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
                if let Err(e) = parse_control(&input.op, &input.args).and_then(|c| self.control(c)) {
                    self.caption(format!("a replayed control failed: {e}"));
                }
                return Some(text);
            }
        }
        // A client's call, when it is due before the next event.
        if let Some(us) = self.next_call_us {
            let at = us / 1_000;
            if at <= until && next_event.is_none_or(|t| at < t) {
                self.sim.run_before(at);
                let text = self.client_call();
                self.actions += 1;
                return Some(if describe { format!("t={at} {text}") } else { String::new() });
            }
        }
        next_event.filter(|t| *t <= until)?;
        let text = if describe { self.describe_next() } else { String::new() };
        self.sim.step();
        self.actions += 1;
        self.drain();
        Some(text)
    }

    fn describe_next(&self) -> String {
        match self.sim.next_event() {
            Some((t, NextEvent::Deliver { from, to, message })) => {
                let (kind, height) = message_kind(message);
                let what = kind.replace('-', " ");
                if height > 0 {
                    format!("t={t} node {to} ← node {from}: {what} h={height}")
                } else {
                    format!("t={t} node {to} ← node {from}: {what}")
                }
            }
            Some((t, NextEvent::Wake { node, live: true })) => format!("t={t} node {node}: timer"),
            _ => String::new(),
        }
    }

    /// A client's anonymous `inc` call to a random node (none if that node is down).
    fn client_call(&mut self) -> String {
        let node = self.calls.below(self.n as u64) as NodeIndex;
        let gap = 1 + self.calls.below(2_000_000 / self.load.max(1));
        self.next_call_us = (self.load > 0).then(|| self.next_call_us.unwrap_or(0) + gap);
        let Some(canister) = self.canister.filter(|_| self.ready()) else { return "a client waits for the canister".into() };
        if self.states[node] != NodeState::Up {
            return format!("a client's call to node {node} is not made: the node is {}", self.states[node].name());
        }
        self.nonce += 1;
        let arg = Encode!().expect("empty arguments encode");
        let (_, call) = self.call_bytes(&canister, &canister, "inc", arg);
        self.sim.act(node, |n, now, out| n.submit(now, call, out));
        self.drain();
        format!("a client calls inc at node {node}")
    }

    /// An anonymous call's request id and its bytes in consensus.
    fn call_bytes(&mut self, canister: &Principal, ecid: &Principal, method: &str, arg: Vec<u8>) -> ([u8; 32], Vec<u8>) {
        let now_ns = self.sim.now() * 1_000_000;
        let request = Request { request_type: "call", canister_id: canister, method, arg, nonce: self.nonce, ingress_expiry: now_ns + 4 * 60 * 1_000_000_000 };
        let (envelope, id) = anonymous_envelope(request);
        (id, wrap_call(&envelope, ecid))
    }

    fn submit_everywhere(&mut self, call: &[u8]) {
        for i in 0..self.n {
            if self.states[i] == NodeState::Up {
                let call = call.to_vec();
                self.sim.act(i, |n, now, out| n.submit(now, call, out));
            }
        }
        self.drain();
    }

    /// Takes in what the nodes did and what went on the network.
    fn drain(&mut self) {
        for t in self.sim.take_transmissions() {
            if let Some(arrives) = t.arrives {
                let (kind, height) = message_kind(&t.message);
                self.flights.push_back(Flight { from: t.from, to: t.to, kind, height, sent: t.sent, arrives });
            }
        }
        let now = self.sim.now();
        while self.flights.front().is_some_and(|f| f.arrives <= now) || self.flights.len() > 4 * IN_FLIGHT_SHOWN {
            self.flights.pop_front();
        }
        let seen = std::mem::take(&mut *self.log.borrow_mut());
        for s in seen {
            self.absorb(s);
        }
        let from = now.saturating_sub(RATE_WINDOW);
        while self.sent_window.front().is_some_and(|s| s.0 < from) {
            self.sent_window.pop_front();
        }
        while self.finalized_window.front().is_some_and(|t| *t < from) {
            self.finalized_window.pop_front();
        }
    }

    fn round(&mut self, height: Height) -> &mut Round {
        self.rounds.entry(height).or_insert_with(|| Round::new(height))
    }

    fn absorb(&mut self, seen: Seen) {
        match seen {
            Seen::Sent { node, at, bytes, copies, what } => {
                self.sent_window.push_back((at, node, bytes, copies));
                match what {
                    What::Proposal { height, rank, maker, hash } if maker == node => {
                        let round = self.round(height);
                        if !round.proposals.iter().any(|p| p.hash == hash) {
                            let twice = round.proposals.iter().any(|p| p.maker == maker);
                            round.proposals.push(ProposalAt { rank, maker, at, hash });
                            if twice {
                                self.caption(format!("height {height}: node {maker} equivocates — a second block of rank {rank}"));
                            }
                        }
                    }
                    What::Share { kind, height, signer } if signer == node => {
                        let round = self.round(height);
                        let shares = match kind {
                            Kind::Notarization => &mut round.notarization_shares,
                            Kind::Finalization => &mut round.finalization_shares,
                            _ => return,
                        };
                        if !shares.iter().any(|s| s.node == signer) {
                            shares.push(ShareAt { node: signer, at });
                        }
                    }
                    What::Aggregate { kind: Kind::Beacon, height, .. } => {
                        self.round(height + 1).beacon.get_or_insert(at);
                    }
                    What::Aggregate { kind: Kind::Notarization, height, signers, content } => self.notarized(node, height, at, Some((signers, content))),
                    What::Aggregate { kind: Kind::Finalization, height, .. } => {
                        let round = self.round(height);
                        if round.finalized.is_none() {
                            round.finalized = Some(at);
                        }
                    }
                    _ => {}
                }
            }
            Seen::Proposed { node, height, rank } => match rank {
                Some(rank) => self.caption(format!("height {height}: node {node} (rank {rank}) proposed a block")),
                None => self.caption(format!("height {height}: node {node} proposed a block")),
            },
            Seen::Notarized { node, height, at } => self.notarized(node, height, at, None),
            Seen::Executed { node, height, at, block, calls, state_hash } => {
                self.state_hashes[node] = Some(state_hash);
                self.digest = Sha256::new().chain_update(self.digest).chain_update((node as u64).to_be_bytes()).chain_update(height.to_be_bytes()).chain_update(state_hash).finalize().into();
                match self.finalized.get(&height) {
                    Some(first) if *first != block => {
                        if self.conflicts.len() < 20 {
                            self.conflicts.push(format!("node {node} finalized {} at height {height}, another node {}", hex8(&block), hex8(first)));
                        }
                    }
                    Some(_) => {}
                    None => {
                        self.finalized.insert(height, block);
                        self.calls_executed += calls as u64;
                        self.finalized_window.push_back(at);
                        let round = self.round(height);
                        round.finalized = Some(round.finalized.map_or(at, |t| t.min(at)));
                        let proposed = round.proposals.iter().find(|p| p.hash == block).map(|p| p.at);
                        if let Some(proposed) = proposed {
                            self.finality.push_back(at - proposed);
                            if self.finality.len() > 20 {
                                self.finality.pop_front();
                            }
                        }
                        self.caption(if calls > 0 {
                            format!("height {height} finalized ({calls} call{} executed)", if calls == 1 { "" } else { "s" })
                        } else {
                            format!("height {height} finalized")
                        });
                        if let Some(top) = self.rounds.keys().next_back().copied() {
                            self.rounds = self.rounds.split_off(&top.saturating_sub(30));
                        }
                    }
                }
                self.check_setup(node);
            }
            Seen::SyncStarted { node, target } => {
                self.caption(format!("node {node} is too far behind to catch up by blocks: it syncs the state of height {target}"))
            }
            Seen::Synced { node, height, bytes } => self.caption(format!("node {node} synced the state of height {height} ({} KB)", bytes.div_ceil(1024))),
            Seen::Failed { node, why } => self.caption(format!("node {node} stopped: {why}")),
        }
    }

    /// Height `height` was notarized (at `node`; with the aggregate's signer count and block
    /// when seen as the aggregate): captioned the first time.
    fn notarized(&mut self, node: NodeIndex, height: Height, at: Time, aggregate: Option<(usize, Hash)>) {
        let round = self.round(height);
        if round.notarized.is_some() {
            return;
        }
        round.notarized = Some(at);
        let Some((signers, block)) = aggregate else {
            return self.caption(format!("height {height} notarized"));
        };
        let rank = round.proposals.iter().find(|p| p.hash == block).map(|p| p.rank);
        let n = self.n;
        self.caption(format!("height {height} notarized ({signers} of {n} shares)"));
        let Some(rank) = rank.filter(|r| *r > 0) else { return };
        // Why not rank 0's block: its maker, by the beacon of the height before.
        let rank0 = self
            .sim
            .node(node)
            .and_then(|x| x.core.consensus().beacon_at(height - 1))
            .and_then(|b| ranking(&b, n).iter().position(|r| *r == 0));
        let text = match rank0 {
            Some(m) if self.states[m] != NodeState::Up => {
                format!("node {m} was rank 0 but is {}; rank {rank}'s block was notarized after the rank delay", self.states[m].name())
            }
            Some(m) if self.modes[m] != Byzantine::Honest => {
                format!("node {m} was rank 0 but is Byzantine ({}); rank {rank}'s block was notarized after the rank delay", self.modes[m].name())
            }
            Some(m) => format!("rank 0 (node {m}) was late at height {height}; rank {rank}'s block was notarized"),
            None => format!("height {height}: rank {rank}'s block was notarized"),
        };
        self.caption(text);
    }

    /// Moves the counter's installation on when node `node` executed a height.
    fn check_setup(&mut self, node: NodeIndex) {
        let now = self.sim.now();
        let Some(live) = self.sim.node(node) else { return };
        let status = |id: &[u8; 32]| live.core.replica().request_status(id).map(|s| s.state.clone());
        match &self.setup {
            Setup::Creating { id, call, since } => match status(id) {
                Some(IngressState::Replied(bytes)) => match Decode!(&bytes, CreateCanisterResult) {
                    Ok(created) => {
                        let canister = created.canister_id;
                        self.canister = Some(canister);
                        self.caption(format!("canister {canister} created; installing the counter canister"));
                        let args = InstallCodeArgs {
                            mode: CanisterInstallMode::Install,
                            canister_id: canister,
                            wasm_module: COUNTER_WASM.to_vec(),
                            arg: Encode!(&None::<u64>).expect("encodes"),
                            sender_canister_version: None,
                        };
                        let (id, call) = self.call_bytes(&MANAGEMENT_CANISTER, &canister, "install_code", Encode!(&args).expect("encodes"));
                        self.setup = Setup::Installing { id, call: call.clone(), since: now, canister };
                        self.submit_everywhere(&call);
                    }
                    Err(e) => self.setup_failed(format!("the canister's id does not decode: {e}")),
                },
                Some(IngressState::Rejected { reject_message, .. }) => self.setup_failed(reject_message),
                _ if now > since + SETUP_RETRY => {
                    let (id, call) = (*id, call.clone());
                    self.setup = Setup::Creating { id, call: call.clone(), since: now };
                    self.submit_everywhere(&call);
                }
                _ => {}
            },
            Setup::Installing { id, call, since, canister } => match status(id) {
                Some(IngressState::Replied(_)) => {
                    self.setup = Setup::Ready;
                    self.caption("the counter canister is installed: every replica runs it".into());
                }
                Some(IngressState::Rejected { reject_message, .. }) => self.setup_failed(reject_message),
                _ if now > since + SETUP_RETRY => {
                    let (id, call, canister) = (*id, call.clone(), *canister);
                    self.setup = Setup::Installing { id, call: call.clone(), since: now, canister };
                    self.submit_everywhere(&call);
                }
                _ => {}
            },
            Setup::Ready | Setup::Failed => {}
        }
    }

    fn setup_failed(&mut self, why: String) {
        self.setup = Setup::Failed;
        self.caption(format!("installing the counter canister failed: {why}"));
    }

    fn caption(&mut self, text: String) {
        self.caption_seq += 1;
        self.captions.push_back(Caption { seq: self.caption_seq, at: self.sim.now(), text });
        if self.captions.len() > CAPTIONS_KEPT {
            self.captions.pop_front();
        }
    }

    /// Captions numbered after `after` (the last 500 are kept).
    pub fn events(&self, after: u64) -> Vec<Caption> {
        self.captions.iter().filter(|c| c.seq > after).cloned().collect()
    }

    // ----- controls -----

    fn check_node(&self, i: NodeIndex) -> Result<(), String> {
        if i >= self.n {
            return Err(format!("there is no node {i}: the subnet has nodes 0 to {}", self.n - 1));
        }
        Ok(())
    }

    /// Crashes node `i`: it stops; what it persisted survives for [`Self::restart`].
    pub fn crash(&mut self, i: NodeIndex) -> Result<(), String> {
        self.control(Control::Crash(i))
    }
    /// Restarts a crashed node from what it persisted.
    pub fn restart(&mut self, i: NodeIndex) -> Result<(), String> {
        self.control(Control::Restart(i))
    }
    /// Pauses (or resumes) a node: while paused it receives nothing and wakes for nothing;
    /// what is sent to it is held and delivered when it resumes.
    pub fn pause(&mut self, i: NodeIndex, paused: bool) -> Result<(), String> {
        self.control(Control::Pause(i, paused))
    }
    /// Cuts (or mends) the link between `a` and `b`, both ways.
    pub fn cut_link(&mut self, a: NodeIndex, b: NodeIndex, cut: bool) -> Result<(), String> {
        self.control(Control::CutLink(a, b, cut))
    }
    /// Extra latency (ms) on the link between `a` and `b`, both ways (0: none).
    pub fn delay_link(&mut self, a: NodeIndex, b: NodeIndex, ms: Time) -> Result<(), String> {
        self.control(Control::DelayLink(a, b, ms))
    }
    /// Makes node `i` misbehave: '' (honest), 'equivocate', 'withhold', 'bad-shares'.
    pub fn byzantine(&mut self, i: NodeIndex, mode: &str) -> Result<(), String> {
        self.control(Control::Byzantine(i, Byzantine::parse(mode)?))
    }
    /// Clients submit this many `inc` calls a second (to random nodes; at most 1,000).
    pub fn set_load(&mut self, calls_per_second: u64) -> Result<(), String> {
        if calls_per_second > MAX_LOAD {
            return Err(format!("at most {MAX_LOAD} calls a second, not {calls_per_second}"));
        }
        self.control(Control::SetLoad(calls_per_second))
    }

    /// Performs a control and records it.
    fn control(&mut self, control: Control) -> Result<(), String> {
        let now = self.sim.now();
        let seq = self.actions;
        let (op, args): (&str, Vec<Value>) = match control {
            Control::Crash(i) => {
                self.check_node(i)?;
                if self.states[i] == NodeState::Crashed {
                    return Err(format!("node {i} is crashed already"));
                }
                // What it showed last is what it had when it crashed (however often the view
                // was drawn: a replay shows the same).
                self.refresh_counter(i);
                let node = self.sim.crash(i).expect("a node not crashed is there");
                let c = node.core.consensus();
                self.heights[i] = (c.notarized_height(), c.finalized_height(), c.certified_height());
                let (replica, checkpoints) = node.core.into_parts();
                self.disks[i] = Some((replica.into_store(), checkpoints));
                self.states[i] = NodeState::Crashed;
                self.caption(format!("node {i} crashed"));
                ("crash", vec![i.into()])
            }
            Control::Restart(i) => {
                self.check_node(i)?;
                let Some(disk) = self.disks[i].take().filter(|_| self.states[i] == NodeState::Crashed) else {
                    return Err(format!("node {i} is not crashed"));
                };
                let node = open_node(&self.keys, &self.log, i, self.modes[i], disk);
                let finalized = node.core.consensus().finalized_height();
                self.sim.restart(i, node);
                self.states[i] = NodeState::Up;
                self.caption(format!("node {i} restarted from what it persisted (height {finalized})"));
                ("restart", vec![i.into()])
            }
            Control::Pause(i, paused) => {
                self.check_node(i)?;
                if self.states[i] == NodeState::Crashed {
                    return Err(format!("node {i} is crashed"));
                }
                self.sim.pause(i, paused);
                self.states[i] = if paused { NodeState::Paused } else { NodeState::Up };
                self.caption(if paused { format!("node {i} paused: what is sent to it waits") } else { format!("node {i} resumed") });
                ("pause", vec![i.into(), paused.into()])
            }
            Control::CutLink(a, b, cut) => {
                self.check_node(a)?;
                self.check_node(b)?;
                if a == b {
                    return Err(format!("a link joins two nodes, not node {a} to itself"));
                }
                self.sim.cut_link(a, b, cut);
                self.caption(if cut { format!("link {a}–{b} cut") } else { format!("link {a}–{b} mended") });
                ("cut_link", vec![a.into(), b.into(), cut.into()])
            }
            Control::DelayLink(a, b, ms) => {
                self.check_node(a)?;
                self.check_node(b)?;
                if a == b {
                    return Err(format!("a link joins two nodes, not node {a} to itself"));
                }
                self.sim.delay_link(a, b, ms);
                self.caption(if ms > 0 { format!("link {a}–{b} slowed by {ms} ms") } else { format!("link {a}–{b} back to normal speed") });
                ("delay_link", vec![a.into(), b.into(), ms.into()])
            }
            Control::Byzantine(i, mode) => {
                self.check_node(i)?;
                self.modes[i] = mode;
                if let Some(node) = self.sim.node_mut(i) {
                    node.withhold = mode == Byzantine::Withhold;
                    node.core.set_malice(malice(mode));
                }
                self.caption(match mode {
                    Byzantine::Honest => format!("node {i} is honest again"),
                    mode => format!("node {i} is Byzantine: {}", mode.name()),
                });
                ("byzantine", vec![i.into(), mode.name().into()])
            }
            Control::SetLoad(cps) => {
                self.load = cps;
                self.next_call_us = (cps > 0).then(|| now * 1_000 + 1 + self.calls.below(2_000_000 / cps));
                self.caption(format!("load: {cps} calls a second"));
                ("set_load", vec![cps.into()])
            }
        };
        self.inputs.push(Input { at: now, seq: Some(seq), op: op.into(), args });
        self.drain();
        Ok(())
    }

    /// The seed, the size and every control so far, with when each happened.
    pub fn record(&self) -> Recording {
        Recording { seed: self.seed, nodes: self.n, inputs: self.inputs.clone() }
    }

    // ----- the view -----

    /// Reads node `i`'s counter again if its certified state changed since.
    fn refresh_counter(&mut self, i: NodeIndex) {
        let now = self.sim.now();
        let Some(canister) = self.canister.filter(|_| self.ready()) else { return };
        if let Some(node) = self.sim.node_mut(i).filter(|x| x.counter_stale) {
            node.counter_stale = false;
            if let Some(value) = node.read_counter(canister, now) {
                self.counters[i] = Some(value);
            }
        }
    }

    /// Everything the web view draws, now.
    pub fn view(&mut self) -> View {
        let now = self.sim.now();
        let n = self.n;
        for i in 0..n {
            self.refresh_counter(i);
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let (mut rank, mut round) = (None, 0);
            if let Some(node) = self.sim.node(i) {
                let c = node.core.consensus();
                self.heights[i] = (c.notarized_height(), c.finalized_height(), c.certified_height());
                round = self.heights[i].0 + 1;
                rank = c.beacon_at(round - 1).map(|b| ranking(&b, n)[i]);
            }
            let (notarized, finalized, certified) = self.heights[i];
            nodes.push(NodeView {
                index: i,
                state: self.states[i].name(),
                byzantine: self.modes[i].name(),
                notarized,
                finalized,
                certified,
                rank,
                round: if round == 0 { notarized + 1 } else { round },
                state_hash: self.state_hashes[i].map(|h| hex8(&h)).unwrap_or_default(),
                counter: self.counters[i],
            });
        }
        let links = (0..n).map(|a| (0..n).map(|b| {
            let (cut, delay) = self.sim.link(a, b);
            LinkView { cut, delay }
        }).collect()).collect();
        let in_flight: Vec<Flight> = {
            let mut v: Vec<Flight> = self
                .flights
                .iter()
                .rev()
                .filter(|f| f.arrives > now && self.states[f.to] != NodeState::Crashed && !self.sim.link(f.from, f.to).0)
                .take(IN_FLIGHT_SHOWN)
                .cloned()
                .collect();
            v.reverse();
            v
        };
        // The block tree as the most advanced live node sees it.
        let blocks = self
            .sim
            .nodes()
            .max_by_key(|(i, x)| (x.core.consensus().notarized_height(), std::cmp::Reverse(*i)))
            .map(|(_, node)| block_tree(node.core.consensus(), TREE_HEIGHTS))
            .unwrap_or_default();
        let rounds: Vec<Round> = self.rounds.values().rev().take(ROUNDS_SHOWN).rev().cloned().collect();
        let window = now.clamp(1_000, RATE_WINDOW) as f64 / 1_000.0;
        let mut bytes = vec![0u64; n];
        let mut messages = 0u64;
        for (_, node, b, copies) in &self.sent_window {
            bytes[*node] += b;
            messages += copies;
        }
        let stats = StatsView {
            finality_ms: (!self.finality.is_empty()).then(|| self.finality.iter().sum::<Time>() as f64 / self.finality.len() as f64),
            blocks_per_s: self.finalized_window.len() as f64 / window,
            messages_per_s: messages as f64 / window,
            bytes_per_s: bytes.iter().map(|b| *b as f64 / window).collect(),
            calls_executed: self.calls_executed,
        };
        View {
            now,
            n,
            f: faults_tolerated(n),
            thresholds: Thresholds::of(n),
            nodes,
            links,
            in_flight,
            blocks,
            rounds,
            stats,
        }
    }
}

/// Opens node `i` from its disk (empty: a new node at genesis).
fn open_node(keys: &Keys, log: &Log, i: NodeIndex, mode: Byzantine, (store, checkpoints): Disk) -> LiveNode {
    let n = keys.node_seeds.len();
    let member = Member { root_key_der: keys.root_key_der.clone(), node_key_seed: keys.node_seeds[i], nodes: keys.node_ders.clone(), me: i };
    let subnet = SubnetConfig::for_subnet_size(n as u64);
    let check = Arc::new(CallCheck { max_bytes: subnet.max_ingress_bytes });
    let replica = Replica::open_member(store, subnet, member).expect("a live node's replica opens from memory");
    let config = NodeConfig { sync_timeout: 500, ..NodeConfig::new(consensus_config(mode), keys.genesis) };
    let crypto = Arc::new(SimCrypto::new(i, keys.consensus.clone()));
    let core = NodeCore::open(config, crypto, check, replica, checkpoints).expect("a live node opens from memory");
    let notarized = core.consensus().notarized_height();
    LiveNode { core, me: i, peers: (n as u64 - 1).max(1), withhold: mode == Byzantine::Withhold, log: log.clone(), notarized, counter_stale: true }
}

fn parse_control(op: &str, args: &[Value]) -> Result<Control, String> {
    let num = |k: usize| args.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{op}: argument {k} is not a number"));
    let flag = |k: usize| args.get(k).and_then(Value::as_bool).ok_or_else(|| format!("{op}: argument {k} is not true or false"));
    Ok(match op {
        "crash" => Control::Crash(num(0)? as usize),
        "restart" => Control::Restart(num(0)? as usize),
        "pause" => Control::Pause(num(0)? as usize, flag(1)?),
        "cut_link" => Control::CutLink(num(0)? as usize, num(1)? as usize, flag(2)?),
        "delay_link" => Control::DelayLink(num(0)? as usize, num(1)? as usize, num(2)?),
        "byzantine" => Control::Byzantine(num(0)? as usize, Byzantine::parse(args.get(1).and_then(Value::as_str).ok_or("byzantine: argument 1 is not a mode")?)?),
        "set_load" => Control::SetLoad(num(0)?.min(MAX_LOAD)),
        other => return Err(format!("no control `{other}`")),
    })
}
