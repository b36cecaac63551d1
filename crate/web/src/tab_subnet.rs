//! A browser tab as a node of a subnet of tabs: the node core every platform runs, driven here
//! with the tab's edges — WebRTC links to the other members, IndexedDB for what it keeps, the
//! page's clock.
//!
//! Joining the subnet NAME of N nodes: see `membership.rs` (slots, node keys, the dealer) and
//! `signaling.rs` (the rendezvous, for tabs on different machines). Member K keeps its state in
//! the database `tabnet-NAME-<subnet fingerprint>-K`, so a reopened tab that is member K again
//! goes on from it.
//! - Links: members say hello on the BroadcastChannel `tabnet:NAME` every second; the lower
//!   index offers, the higher answers; on the data channel the higher index challenges and the
//!   lower proves its node key bound to both DTLS fingerprints, and is proven to in turn. A link
//!   that closes is made again at the next hello.
//!
//! The node runs in the page, not a worker: `RTCPeerConnection` does not exist in workers, and
//! relaying every frame between a worker and the page would cost more than it saves while
//! rounds are short.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Date, Function, Object, Promise, Reflect};
use serde::Serialize;
use tabnet_consensus::handshake::{Acceptor, Connector, PeerKeys, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};
use tabnet_consensus::{faults_tolerated, ranking, BlsCrypto, Checkpoint, Height, Ingress, NodeIndex, Time};
use tabnet_execution::SubnetConfig;
use tabnet_node::dealt::{local_node_config, member_node};
use tabnet_node::replica::CallCheck;
use tabnet_node::http::{self, Checked, Endpoint};
use tabnet_node::tab_signal::{Signal, MAX_TAB_NODES};
use tabnet_node::view::{block_tree, hex8, LinkView, NodeView, StatsView, Thresholds, View};
use tabnet_node::{codec, CheckpointStore, MemoryCheckpoints, NodeCore, NodeOutput};
use tabnet_replica::{BatchStore, Replica, WriteBatch};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::idb::IdbStorage;
use crate::tab_view::{Watch, RATE_WINDOW, ROUNDS_SHOWN};
use crate::membership::{local_membership, random32, rendezvous_key, HeldLock};
use crate::rtc::{RtcLink, Wake};
use crate::signaling::{Inbox, ServerLink, Signaling};

/// Members say hello this often (ms); a link is made again at the next hello after it closed.
const HELLO_EVERY: Time = 1_000;
/// Heights of the block tree the view shows.
const TREE_HEIGHTS: u64 = 12;
/// A link still proving who is at the other end after this long is dropped.
const HANDSHAKE_TIMEOUT: Time = 5_000;

/// What a tab that left its subnet answers.
const LEFT: &str = "this tab left the subnet";

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn now() -> Time {
    Date::now() as Time
}


/// The checkpoints a tab serves to syncing peers: in memory, and written to its database
/// before anything that depends on them is sent.
#[derive(Default)]
struct TabCheckpoints {
    kept: MemoryCheckpoints,
    unwritten: Vec<Checkpoint>,
}

impl CheckpointStore for TabCheckpoints {
    fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String> {
        self.unwritten.push(checkpoint.clone());
        self.kept.add(checkpoint)
    }
    fn kept(&self) -> &[Checkpoint] {
        self.kept.kept()
    }
}

/// How far a link to one member has come.
enum LinkState {
    /// Offer and answer on their way.
    Connecting,
    /// (The higher index) challenged, waiting for the proof.
    Challenged(Acceptor),
    /// (The lower index) waiting for the challenge, then for the confirmation.
    Dialled(Connector),
    Up,
}

struct Link {
    rtc: Rc<RtcLink>,
    state: LinkState,
    since: Time,
}

type Node = NodeCore<Replica<BatchStore>, TabCheckpoints>;

pub(crate) struct Member {
    name: String,
    index: NodeIndex,
    nodes: usize,
    key: SigningKey,
    peers: PeerKeys,
    core: Node,
    /// `None` once the tab has left the subnet.
    db: Option<Rc<IdbStorage>>,
    /// The Web Locks that make this member's slot and node key this tab's.
    held: Vec<HeldLock>,
    /// A turn is under way (`leave` waits for it to end).
    stepping: bool,
    links: Vec<Option<Link>>,
    signals: Inbox,
    signaling: Signaling,
    last_hello: Time,
    /// Random per opening of this member (see `Signal::Hello`), and the last one heard from
    /// each peer.
    incarnation: u64,
    peer_incarnations: Vec<Option<u64>>,
    last_timer: Time,
    failed: Option<String>,
    /// Recent protocol events, for the page: numbered, with the time (ms since the epoch).
    events: VecDeque<Event>,
    events_seen: u64,
    /// Heights last reported as events.
    reported: (Height, Height),
    faults: Faults,
    /// Synchronous calls waiting for their certified outcome.
    waiting: Vec<Waiter>,
    /// The certified height the waiters were last looked at for.
    waiters_seen: Height,
    storage: StorageFigures,
    /// What the node saw, for the page's subnet view.
    watch: Watch,
    /// Wakes the page's loop when a frame or a call arrives.
    wake: Wake,
}

/// A protocol event as the page's event stream shows it.
#[derive(Serialize)]
struct Event {
    seq: u64,
    at: Time,
    text: String,
}

/// Events kept for the page; older ones are dropped.
const EVENTS_KEPT: usize = 500;

/// Faults the page can put on this node, to show how the subnet copes.
#[derive(Default)]
struct Faults {
    /// Frozen: no turn runs (peers see a node that stopped; what arrives waits).
    paused: bool,
    /// Per peer: the link is cut (frames both ways dropped here).
    cut: Vec<bool>,
    /// Per peer: frames to it leave this many ms late.
    delay: Vec<Time>,
    /// Frames held back by a delay: (when they leave, to whom, the frame).
    delayed: VecDeque<(Time, NodeIndex, Vec<u8>)>,
    /// Byzantine: the signature shares this node sends are garbled (peers must notice, drop
    /// them and hold it to account; the subnet goes on while at most f nodes lie).
    corrupt_shares: bool,
}

/// A synchronous call waiting for its outcome: resolved with the certificate's body, or with
/// `null` when it stops waiting (the call is then answered 202, as natively).
struct Waiter {
    id: tabnet_replica::RequestId,
    until: Time,
    resolve: Function,
}

/// A call waits this long for its certified outcome (ms), as natively.
const SYNC_CALL_TIMEOUT: Time = 10_000;

/// What the node's storage did, for the page and the benchmark (`status().storage`).
#[derive(Default, Serialize)]
struct StorageFigures {
    /// Opening the database and reading everything in it (ms), and how much that was.
    open_ms: f64,
    open_bytes: u64,
    /// Writes committed.
    commits: u64,
    committed_bytes: u64,
    commit_ms_total: f64,
    /// The bytes of the write under way (0: none): a tab killed now loses that write only.
    writing_bytes: u64,
    /// Turns of the node, and the time they spent computing (ms; not waiting for writes).
    steps: u64,
    step_ms_total: f64,
    /// The largest write: its size and time (ms; the page's other work during it counts too).
    largest_commit_bytes: u64,
    largest_commit_ms: f64,
    /// The last checkpoint kept: its height, size, the bytes written for it (the chunks the
    /// checkpoints kept before did not have) and the time (ms).
    checkpoint_height: Height,
    checkpoint_bytes: u64,
    checkpoint_written_bytes: u64,
    checkpoint_ms: f64,
}

/// The page's monotonic clock (ms), for measuring.
pub(crate) fn performance_now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or_else(Date::now, |p| p.now())
}

/// A tab that is a node of a tab subnet (JavaScript drives it: [`TabSubnet::step`] in a loop).
#[wasm_bindgen]
pub struct TabSubnet {
    member: Rc<RefCell<Member>>,
}

#[wasm_bindgen]
impl TabSubnet {
    /// Makes this tab a node of the tab subnet `name` of `nodes` nodes, resuming the member it
    /// was (or whose tab is gone, among the tabs of one browser). Resolves once the subnet has
    /// formed (all its members have joined once; `on_progress(text)` hears of the wait). Fails
    /// if the subnet has all its members.
    ///
    /// `rendezvous`: the WebSocket address of a native node's rendezvous
    /// (`ws://host/_/rendezvous/NAME?nodes=N`), for tabs on different machines: this tab proves
    /// its node key there, and the rendezvous deals its keys. Without it, the tabs of this
    /// browser form the subnet among themselves (Web Locks, BroadcastChannel).
    pub async fn join(name: String, nodes: u32, rendezvous: Option<String>, on_progress: Option<Function>) -> Result<TabSubnet, JsValue> {
        let nodes = nodes as usize;
        if !(1..=MAX_TAB_NODES).contains(&nodes) {
            return Err(js_error(format!("a tab subnet has 1 to {MAX_TAB_NODES} nodes, not {nodes}")));
        }
        let signals: Inbox = Rc::default();
        let (key, membership, signaling, held) = match rendezvous {
            Some(url) => {
                let (key, held) = rendezvous_key(&name).await?;
                let (link, membership) = ServerLink::join(url, &name, key.clone(), &signals, on_progress.as_ref()).await?;
                (key, membership, Signaling::Server(link), held)
            }
            None => {
                let (key, membership, held) = local_membership(&name, nodes, on_progress.as_ref()).await?;
                (key, membership, Signaling::local(&name, &signals)?, held)
            }
        };
        if membership.nodes() != nodes {
            return Err(js_error(format!("the subnet {name} has {} nodes, not {nodes}", membership.nodes())));
        }
        let index = membership.index;
        let public = membership.public_keys().map_err(js_error)?;
        let secret = membership.secrets(key, &public).map_err(js_error)?;
        let _ = crate::idb::persist().await;
        let opening = performance_now();
        // Named by the subnet too: a subnet name reused for another subnet starts afresh.
        let db = IdbStorage::open(&format!("tabnet-{name}-{}-{index}", membership.fingerprint())).await.map_err(js_error)?;
        let store = db.load().await.map_err(js_error)?;
        let mut open_bytes = store.bytes();
        let mut checkpoints = TabCheckpoints::default();
        for (height, bytes) in db.load_checkpoints().await.map_err(js_error)? {
            open_bytes += bytes.len() as u64;
            checkpoints.kept.add(Checkpoint::new(height, bytes)).map_err(js_error)?;
        }
        let dealt = member_node(index, public, secret);
        let config = SubnetConfig::for_subnet_size(nodes as u64);
        let check = Arc::new(CallCheck { max_bytes: config.max_ingress_bytes });
        let replica = Replica::open_member(store, config, dealt.member).map_err(js_error)?;
        let crypto = Arc::new(BlsCrypto::new(index, dealt.secret.clone(), dealt.public.clone()));
        let core = NodeCore::open(local_node_config(membership.genesis_seed, membership.dkg_interval), crypto, check, replica, checkpoints)
            .map_err(js_error)?;
        let storage = StorageFigures { open_ms: performance_now() - opening, open_bytes, ..StorageFigures::default() };

        let member = Member {
            name,
            index,
            nodes,
            key: dealt.secret.proposal_key.clone(),
            peers: dealt.peers,
            core,
            db: Some(Rc::new(db)),
            held: vec![held],
            stepping: false,
            links: (0..nodes).map(|_| None).collect(),
            signals,
            signaling,
            last_hello: 0,
            incarnation: u64::from_le_bytes(random32()[..8].try_into().expect("8 bytes")),
            peer_incarnations: vec![None; nodes],
            last_timer: 0,
            failed: None,
            events: VecDeque::new(),
            events_seen: 0,
            reported: (0, 0),
            faults: Faults { cut: vec![false; nodes], delay: vec![0; nodes], ..Faults::default() },
            waiting: Vec::new(),
            waiters_seen: 0,
            storage,
            watch: Watch::default(),
            wake: Wake::default(),
        };
        Ok(TabSubnet { member: Rc::new(RefCell::new(member)) })
    }

    /// One turn of the node: signals, links, frames, timers; what it must keep is committed to
    /// IndexedDB before what it sends leaves. Returns how long (ms) until it wants the next turn.
    pub async fn step(&self) -> Result<f64, JsValue> {
        {
            let mut m = self.member.borrow_mut();
            if m.db.is_none() {
                return Err(js_error(LEFT));
            }
            m.stepping = true;
        }
        let turn = self.turn().await;
        self.member.borrow_mut().stepping = false;
        turn
    }

    /// Resolves after `ms` milliseconds, or sooner when a frame or a call arrives for the node:
    /// the page's loop waits with it between turns.
    pub fn wait(&self, ms: f64) -> Promise {
        let wake = self.member.borrow().wake.clone();
        Promise::new(&mut |resolve, _| {
            crate::rtc::set_timeout(&resolve, ms);
            wake.set(resolve);
        })
    }

    /// Stops being a node of the subnet, as closing the tab would, but cleanly: after the turn
    /// under way (what it wrote is whole), links and signaling close, calls waiting for their
    /// outcome are answered 202, the database closes and the slot and node key are let go, so
    /// this page or another can join again as this member and go on from what it kept.
    pub async fn leave(&self) {
        while self.member.borrow().stepping {
            crate::rtc::sleep(5).await;
        }
        let mut m = self.member.borrow_mut();
        let Some(db) = m.db.take() else { return };
        for link in m.links.iter_mut().filter_map(Option::take) {
            link.rtc.close();
        }
        m.signaling.close();
        for w in std::mem::take(&mut m.waiting) {
            let _ = w.resolve.call1(&JsValue::NULL, &JsValue::NULL);
        }
        if let Ok(db) = Rc::try_unwrap(db) {
            db.close();
        }
        m.event("left the subnet".into());
        let held = std::mem::take(&mut m.held);
        drop(m);
        // (After the database closed: whoever takes the slot next opens it after this tab.)
        for lock in held {
            lock.release().await;
        }
    }

    async fn turn(&self) -> Result<f64, JsValue> {
        let now = now();
        let computing = performance_now();
        let (writes, checkpoints, frames) = {
            let mut m = self.member.borrow_mut();
            if let Some(reason) = &m.failed {
                return Err(js_error(reason));
            }
            if m.faults.paused {
                return Ok(50.0);
            }
            m.signal(now, &self.member);
            m.drive_links(now);
            // (A node that asks for no wake-up still gets a tick now and then, as natively.)
            if m.core.next_wake(now).is_none_or(|at| at <= now) || now >= m.last_timer + 1_000 {
                m.last_timer = now;
                m.core.on_timer(now);
            }
            let frames = m.perform(now);
            m.report_heights();
            let m = &mut *m;
            m.watch.after_turn(now, m.core.consensus());
            let writes = m.core.replica_mut().store_mut().take_batches();
            let checkpoints = std::mem::take(&mut m.core.checkpoints_mut().unwritten);
            // Calls whose outcome is certified are answered before this turn's commits: a
            // certificate is the subnet's word whether or not this node has kept it yet, and the
            // 2f+1 nodes that signed it committed that state before they sent their shares.
            m.wake_waiters(now);
            m.storage.steps += 1;
            m.storage.step_ms_total += performance_now() - computing;
            (writes, checkpoints, frames)
        };
        // Durable before anything sent after it leaves (IndexedDB commits one write at a time).
        let db = self.member.borrow().db.clone().expect("a node that left takes no turn");
        for batch in &writes {
            let started = performance_now();
            self.member.borrow_mut().storage.writing_bytes = batch_bytes(batch);
            let committed = db.commit(batch).await;
            self.member.borrow_mut().storage.writing_bytes = 0;
            if let Err(e) = committed {
                self.member.borrow_mut().failed = Some(e.clone());
                return Err(js_error(e));
            }
            self.member.borrow_mut().storage.committed(batch, performance_now() - started);
        }
        for c in &checkpoints {
            let keep: Vec<Height> = self.member.borrow().core.checkpoints().kept().iter().map(Checkpoint::height).collect();
            let started = performance_now();
            let written = match db.put_checkpoint(c.height(), c.bytes(), &keep).await {
                Ok(written) => written,
                Err(e) => {
                    self.member.borrow_mut().failed = Some(e.clone());
                    return Err(js_error(e));
                }
            };
            let storage = &mut self.member.borrow_mut().storage;
            (storage.checkpoint_height, storage.checkpoint_bytes) = (c.height(), c.bytes().len() as u64);
            storage.checkpoint_written_bytes = written;
            storage.checkpoint_ms = performance_now() - started;
        }
        let mut m = self.member.borrow_mut();
        // (Those whose wait ran out during the commits, too.)
        m.wake_waiters(now);
        for (to, frame) in frames {
            for k in (0..m.nodes).filter(|k| to.is_none_or(|t| t == *k)) {
                match m.faults.delay[k] {
                    0 => m.send_to(k, &frame),
                    ms => m.faults.delayed.push_back((now + ms, k, frame.clone())),
                }
            }
        }
        while m.faults.delayed.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, k, frame) = m.faults.delayed.pop_front().expect("checked");
            m.send_to(k, &frame);
        }
        for link in m.links.iter().flatten() {
            link.rtc.flush();
        }
        let next = m.core.next_wake(now).map_or(50, |at| at.saturating_sub(now)).min(50);
        Ok(next as f64)
    }

    /// Answers a request of the IC HTTP interface (`/api/v2/status`, calls, queries,
    /// read_state) as the page's service worker hands it over: `{status, cbor, body}`. A v3/v4
    /// call waits for its certified outcome (up to 10 s, then 202, as natively).
    pub async fn http(&self, method: String, path: String, content_type: Option<String>, body: Vec<u8>) -> Result<JsValue, JsValue> {
        let r = serve(&self.member, &method, &path, content_type.as_deref(), &body).await;
        http_response(r.status, r.cbor, &r.body)
    }

    /// The protocol events after number `after` (0: all kept), oldest first, as JSON
    /// `[{seq, at, text}]` (`at`: ms since the epoch). Keeps the last 500.
    pub fn events(&self, after: f64) -> String {
        let m = self.member.borrow();
        let newer: Vec<&Event> = m.events.iter().filter(|e| e.seq as f64 > after).collect();
        serde_json::to_string(&newer).unwrap_or_default()
    }

    /// Freezes this node (`true`) or lets it go on: a paused node runs no turn, so to its peers
    /// it looks crashed; what they send waits for it.
    pub fn pause(&self, paused: bool) {
        let mut m = self.member.borrow_mut();
        m.faults.paused = paused;
        m.event(format!("{} by the page", if paused { "paused" } else { "resumed" }));
    }

    /// Cuts the link to node `peer` (`true`: frames both ways are dropped here) or restores it.
    pub fn cut_link(&self, peer: u32, cut: bool) -> Result<(), JsValue> {
        let mut m = self.member.borrow_mut();
        let peer = m.peer_index(peer)?;
        m.faults.cut[peer] = cut;
        m.event(format!("link to node {peer} {} by the page", if cut { "cut" } else { "restored" }));
        Ok(())
    }

    /// Delays every frame to node `peer` by `ms` (0: none).
    pub fn delay_link(&self, peer: u32, ms: u32) -> Result<(), JsValue> {
        let mut m = self.member.borrow_mut();
        let peer = m.peer_index(peer)?;
        m.faults.delay[peer] = Time::from(ms);
        m.event(format!("frames to node {peer} now leave {ms} ms late"));
        Ok(())
    }

    /// Makes this node Byzantine (`true`): the signature shares it sends are garbled. Peers
    /// drop them and charge it; with at most f such nodes the subnet goes on.
    pub fn corrupt_shares(&self, on: bool) {
        let mut m = self.member.borrow_mut();
        m.faults.corrupt_shares = on;
        m.event(format!("{} garbled signature shares", if on { "now sends" } else { "no longer sends" }));
    }

    /// The subnet as this node sees it, for the page's subnet view: JSON of the same shape as
    /// the simulated subnet's view (`SimSubnet::view`). Itself in full; each peer `up` while its
    /// link is up (else `unreachable`), with the heights of the shares it last sent here; the
    /// links are this node's; the messages in flight are what it sent and received lately; the
    /// rounds and blocks as it saw them; the rates its own.
    pub fn view(&self) -> String {
        let m = self.member.borrow();
        let now = now();
        let c = m.core.consensus();
        let n = m.nodes;
        let notarized = c.notarized_height();
        let ranks = c.beacon_at(notarized).map(|b| ranking(&b, n));
        let rank = |k: NodeIndex| ranks.as_ref().map(|r| r[k]);
        let shares = m.core.peer_share_heights();
        let nodes = (0..n)
            .map(|k| {
                if k == m.index {
                    NodeView {
                        index: k,
                        state: if m.faults.paused { "paused" } else if m.db.is_none() { "left" } else { "up" },
                        byzantine: if m.faults.corrupt_shares { "bad-shares" } else { "" },
                        notarized,
                        finalized: c.finalized_height(),
                        certified: c.certified_height(),
                        rank: rank(k),
                        round: notarized + 1,
                        state_hash: m.watch.state_hash.map(|h| hex8(&h)).unwrap_or_default(),
                        counter: None,
                    }
                } else {
                    let (notarized, finalized) = shares.get(k).copied().unwrap_or_default();
                    NodeView {
                        index: k,
                        state: if m.link_up(k) && !m.faults.cut[k] { "up" } else { "unreachable" },
                        byzantine: "",
                        notarized: notarized.max(finalized),
                        finalized,
                        certified: 0,
                        rank: rank(k),
                        round: notarized.max(finalized) + 1,
                        state_hash: String::new(),
                        counter: None,
                    }
                }
            })
            .collect();
        let links = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| {
                        let other = if a == m.index { b } else if b == m.index { a } else { return LinkView { cut: false, delay: 0 } };
                        LinkView { cut: m.faults.cut[other], delay: m.faults.delay[other] }
                    })
                    .collect()
            })
            .collect();
        let w = &m.watch;
        let in_flight = w.flights.iter().filter(|f| f.arrives > now).cloned().collect();
        let window = RATE_WINDOW as f64 / 1_000.0;
        let (messages, bytes) = w.traffic.iter().fold((0, 0), |(m, b), t| (m + t.1, b + t.2));
        let view = View {
            now,
            n,
            f: faults_tolerated(n),
            thresholds: Thresholds::of(n),
            nodes,
            links,
            in_flight,
            blocks: block_tree(c, TREE_HEIGHTS),
            rounds: w.rounds.values().rev().take(ROUNDS_SHOWN).rev().cloned().collect(),
            stats: StatsView {
                finality_ms: (!w.finality.is_empty()).then(|| w.finality.iter().sum::<Time>() as f64 / w.finality.len() as f64),
                blocks_per_s: w.finalized_at.len() as f64 / window,
                messages_per_s: messages as f64 / window,
                bytes_per_s: (0..n).map(|k| if k == m.index { bytes as f64 / window } else { 0.0 }).collect(),
                calls_executed: w.calls_executed,
            },
        };
        view.to_json()
    }

    pub(crate) fn member(&self) -> &Rc<RefCell<Member>> {
        &self.member
    }

    /// The node as the page shows it: JSON.
    pub fn status(&self) -> JsValue {
        let m = self.member.borrow();
        let c = m.core.consensus();
        let links: Vec<&str> = (0..m.nodes)
            .map(|k| match &m.links[k] {
                _ if k == m.index => "self",
                None => "down",
                Some(Link { state: LinkState::Up, .. }) => "up",
                Some(_) => "connecting",
            })
            .collect();
        let status = serde_json_status(&StatusView {
            subnet: &m.name,
            index: m.index,
            nodes: m.nodes,
            finalized: c.finalized_height(),
            notarized: c.notarized_height(),
            certified: c.certified_height(),
            links,
            failed: m.failed.as_deref(),
            events: m.events.iter().rev().take(8).rev().map(|e| e.text.as_str()).collect(),
            rank: c.rank_at(c.notarized_height() + 1),
            paused: m.faults.paused,
            cut: &m.faults.cut,
            delay: &m.faults.delay,
            corrupt_shares: m.faults.corrupt_shares,
            storage: &m.storage,
        });
        JsValue::from_str(&status)
    }
}

/// Answers one request of the IC HTTP interface with the node of `member`.
pub(crate) async fn serve(member: &Rc<RefCell<Member>>, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> http::Response {
    let plain = |status: u16, text: &[u8]| http::Response { status, cbor: false, body: text.to_vec() };
    let now_ms = now();
    let now_ns = now_ms * 1_000_000;
    let routed = http::route(method, path, content_type);
    let endpoint = match routed.and_then(|e| if body.len() > http::MAX_BODY_BYTES { Err(http::body_too_large()) } else { Ok(e) }) {
        Ok(endpoint) => endpoint,
        Err(e) => return plain(e.status, e.message.as_bytes()),
    };
    let outcome = {
        let mut m = member.borrow_mut();
        if m.db.is_none() {
            return plain(503, LEFT.as_bytes());
        }
        if let Some(r) = http::answer(m.core.replica_mut(), &endpoint, body, now_ns) {
            return r;
        }
        let Endpoint::Call { ecid, sync, subnet } = endpoint else { unreachable!("answered above") };
        match http::check_call(m.core.replica_mut(), ecid, subnet, sync, body, now_ns) {
            Checked::Answer { status, body, cbor } => return http::Response { status, cbor, body },
            Checked::Submit { id, ingress } => {
                if let Err(e) = m.core.submit_ingress(now_ms, Ingress { bytes: ingress }) {
                    return plain(503, e.as_bytes());
                }
                // (Its gossip leaves with the next turn.)
                m.wake.now();
                if !sync {
                    return plain(202, b"");
                }
                // The page's loop steps the node meanwhile; `step` resolves this once the
                // outcome is certified, or when it stops waiting.
                let mut resolve = None;
                let outcome = Promise::new(&mut |r, _| resolve = Some(r));
                m.waiting.push(Waiter { id, until: now_ms + SYNC_CALL_TIMEOUT, resolve: resolve.expect("the executor ran") });
                outcome
            }
        }
    };
    match JsFuture::from(outcome).await.ok().and_then(|v| v.dyn_into::<js_sys::Uint8Array>().ok()) {
        Some(certificate) => http::Response { status: 200, cbor: true, body: certificate.to_vec() },
        None => plain(202, b""),
    }
}

fn http_response(status: u16, cbor: bool, body: &[u8]) -> Result<JsValue, JsValue> {
    let response = Object::new();
    Reflect::set(&response, &"status".into(), &JsValue::from(status))?;
    Reflect::set(&response, &"cbor".into(), &JsValue::from_bool(cbor))?;
    Reflect::set(&response, &"body".into(), &js_sys::Uint8Array::from(body))?;
    Ok(response.into())
}

#[derive(Serialize)]
struct StatusView<'a> {
    subnet: &'a str,
    index: NodeIndex,
    nodes: usize,
    finalized: Height,
    notarized: Height,
    certified: Height,
    links: Vec<&'a str>,
    failed: Option<&'a str>,
    events: Vec<&'a str>,
    /// This node's block-maker rank for the height being decided (`null` before its beacon).
    rank: Option<u32>,
    paused: bool,
    cut: &'a [bool],
    delay: &'a [Time],
    corrupt_shares: bool,
    storage: &'a StorageFigures,
}

fn serde_json_status(s: &StatusView) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn batch_bytes(batch: &WriteBatch) -> u64 {
    batch.puts.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

impl StorageFigures {
    fn committed(&mut self, batch: &WriteBatch, ms: f64) {
        let bytes = batch_bytes(batch);
        self.commits += 1;
        self.committed_bytes += bytes;
        self.commit_ms_total += ms;
        if bytes >= self.largest_commit_bytes {
            (self.largest_commit_ms, self.largest_commit_bytes) = (ms, bytes);
        }
    }
}

/// A Byzantine node's lie: its signature share, sent on, no longer verifies.
fn garble_share(message: &mut tabnet_consensus::Message) {
    if let tabnet_consensus::Message::Push(tabnet_consensus::Artifact::Share(share)) = message {
        share.sig[7] ^= 0x5a;
    }
}

impl Member {
    /// Sends `frame` to `peer` if the link is up and not cut.
    fn peer_index(&self, peer: u32) -> Result<NodeIndex, JsValue> {
        let peer = peer as usize;
        if peer >= self.nodes || peer == self.index {
            return Err(js_error(format!("node {peer} is not a peer of node {}", self.index)));
        }
        Ok(peer)
    }

    /// The link to `peer` is up (made and proven).
    fn link_up(&self, peer: NodeIndex) -> bool {
        self.links[peer].as_ref().is_some_and(|l| matches!(l.state, LinkState::Up) && !l.rtc.is_closed())
    }

    fn send_to(&self, peer: NodeIndex, frame: &[u8]) {
        if self.faults.cut[peer] {
            return;
        }
        if let Some(link) = self.links[peer].as_ref().filter(|l| matches!(l.state, LinkState::Up)) {
            link.rtc.send(frame);
        }
    }

    /// The subnet's public key (DER), which certificates are checked against.
    pub(crate) fn root_key(&self) -> &[u8] {
        self.core.replica().root_key()
    }

    /// Answers the calls whose outcome is now certified, and those that waited long enough.
    fn wake_waiters(&mut self, now: Time) {
        if self.waiting.is_empty() {
            return;
        }
        let certified = self.core.consensus().certified_height();
        let fresh = certified != self.waiters_seen;
        self.waiters_seen = certified;
        let replica = self.core.replica();
        self.waiting.retain(|w| {
            let answer = if fresh { http::call_outcome(replica, &w.id) } else { None };
            match answer {
                Some(body) => {
                    let _ = w.resolve.call1(&JsValue::NULL, &js_sys::Uint8Array::from(&body[..]));
                    false
                }
                None if now >= w.until => {
                    let _ = w.resolve.call1(&JsValue::NULL, &JsValue::NULL);
                    false
                }
                None => true,
            }
        });
    }

    fn post(&self, signal: &Signal) {
        self.signaling.post(signal);
    }

    fn event(&mut self, text: String) {
        self.events_seen += 1;
        self.events.push_back(Event { seq: self.events_seen, at: now(), text });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// Finality and certification as events (once per height that moved them).
    fn report_heights(&mut self) {
        let c = self.core.consensus();
        let (finalized, certified) = (c.finalized_height(), c.certified_height());
        if finalized > self.reported.0 {
            self.reported.0 = finalized;
            self.event(format!("finalized height {finalized}"));
        }
        if certified > self.reported.1 {
            self.reported.1 = certified;
            self.event(format!("certified the state of height {certified}"));
        }
    }

    /// Hellos, offers and answers: links are made by the lower index of each pair.
    fn signal(&mut self, now: Time, shared: &Rc<RefCell<Member>>) {
        if let Some(note) = self.signaling.maintain(now) {
            self.event(note);
        }
        if now >= self.last_hello + HELLO_EVERY {
            self.last_hello = now;
            self.post(&Signal::Hello { from: self.index, incarnation: self.incarnation });
        }
        let signals: Vec<Signal> = self.signals.borrow_mut().drain(..).collect();
        for signal in signals {
            match signal {
                Signal::Hello { from, incarnation } if from < self.nodes && from != self.index => {
                    let reopened = self.peer_incarnations[from].replace(incarnation).is_some_and(|known| known != incarnation);
                    if reopened {
                        if let Some(old) = self.links[from].take() {
                            old.rtc.close();
                            self.event(format!("node {from} was reopened: its old link closed"));
                        }
                    }
                    let stale = self.links[from].as_ref().is_none_or(|l| l.rtc.is_closed());
                    if stale && self.index < from {
                        self.dial(now, from, shared);
                    }
                }
                Signal::Offer { from, to, sdp } if to == self.index && from < self.index => self.answer(now, from, sdp, shared),
                Signal::Answer { from, to, sdp } if to == self.index && from < self.nodes => {
                    if let Some(link) = self.links[from].as_ref().filter(|l| matches!(l.state, LinkState::Connecting)) {
                        let rtc = link.rtc.clone();
                        spawn_local(async move {
                            let _ = rtc.accept(&sdp).await;
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn dial(&mut self, now: Time, peer: NodeIndex, shared: &Rc<RefCell<Member>>) {
        let Ok(rtc) = RtcLink::new(self.wake.clone()) else { return };
        let rtc = Rc::new(rtc);
        self.links[peer] = Some(Link { rtc: rtc.clone(), state: LinkState::Connecting, since: now });
        let (me, shared) = (self.index, shared.clone());
        spawn_local(async move {
            if let Ok(sdp) = rtc.offer().await {
                shared.borrow().post(&Signal::Offer { from: me, to: peer, sdp });
            }
        });
    }

    fn answer(&mut self, now: Time, peer: NodeIndex, offer: String, shared: &Rc<RefCell<Member>>) {
        let Ok(rtc) = RtcLink::new(self.wake.clone()) else { return };
        let rtc = Rc::new(rtc);
        // A new offer replaces whatever link there was: the peer made it again.
        self.links[peer] = Some(Link { rtc: rtc.clone(), state: LinkState::Connecting, since: now });
        let (me, shared) = (self.index, shared.clone());
        spawn_local(async move {
            if let Ok(sdp) = rtc.answer(&offer).await {
                shared.borrow().post(&Signal::Answer { from: me, to: peer, sdp });
            }
        });
    }

    /// Moves each link on: the handshake once its channel opens, then frames to the node.
    fn drive_links(&mut self, now: Time) {
        for peer in 0..self.nodes {
            let Some(mut link) = self.links[peer].take() else { continue };
            let keep = self.drive_link(now, peer, &mut link);
            if keep {
                self.links[peer] = Some(link);
            } else {
                link.rtc.close();
                self.event(format!("link to node {peer} closed"));
            }
        }
    }

    fn drive_link(&mut self, now: Time, peer: NodeIndex, link: &mut Link) -> bool {
        if link.rtc.is_closed() {
            return false;
        }
        let proving = !matches!(link.state, LinkState::Up);
        if proving && now > link.since + HANDSHAKE_TIMEOUT + 10_000 {
            return false;
        }
        if !link.rtc.is_open() {
            return true;
        }
        let Some(binding) = link.rtc.channel_binding() else { return false };
        if matches!(link.state, LinkState::Connecting) {
            link.since = now;
            if self.index > peer {
                let (acceptor, challenge) = Acceptor::new(self.index, random32());
                link.rtc.send(&challenge);
                link.state = LinkState::Challenged(acceptor);
            } else {
                link.state = LinkState::Dialled(Connector::new(self.index, peer, random32()));
            }
        }
        while let Some(frame) = link.rtc.recv() {
            match std::mem::replace(&mut link.state, LinkState::Up) {
                LinkState::Up if self.faults.cut[peer] => {}
                // Decoded here once, so that the page's view sees it too.
                LinkState::Up => match codec::decode(&frame) {
                    Ok(Some(message)) => {
                        self.watch.message(now, self.index, &[peer], true, &message, frame.len() as u64, (self.core.consensus().finalized_height(), self.core.consensus().notarized_height()));
                        self.core.on_message(now, peer, message);
                    }
                    _ => self.core.on_frame(now, peer, &frame),
                },
                LinkState::Challenged(acceptor) => {
                    let Ok(response) = <[u8; RESPONSE_LEN]>::try_from(frame.as_slice()) else { return false };
                    match acceptor.on_response(&self.peers, &self.key, &binding, &response) {
                        Ok((who, confirm)) if who == peer => {
                            link.rtc.send(&confirm);
                            self.event(format!("link to node {peer} up"));
                        }
                        _ => return false,
                    }
                }
                LinkState::Dialled(mut connector) => {
                    if let Ok(challenge) = <[u8; CHALLENGE_LEN]>::try_from(frame.as_slice()) {
                        let Ok(response) = connector.on_challenge(&self.peers, &self.key, &binding, &challenge) else { return false };
                        link.rtc.send(&response);
                        link.state = LinkState::Dialled(connector);
                    } else if let Ok(confirm) = <[u8; CONFIRM_LEN]>::try_from(frame.as_slice()) {
                        if connector.on_confirm(&self.peers, &binding, &confirm).is_err() {
                            return false;
                        }
                        self.event(format!("link to node {peer} up"));
                    } else {
                        return false;
                    }
                }
                LinkState::Connecting => unreachable!("moved on above"),
            }
        }
        true
    }

    /// Performs the node's outputs but its sends, which leave once what precedes them is
    /// durable: returns them as frames.
    fn perform(&mut self, now: Time) -> Vec<(Option<NodeIndex>, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some(output) = self.core.poll() {
            match output {
                NodeOutput::Send { to, mut message } => {
                    if self.faults.corrupt_shares {
                        garble_share(&mut message);
                    }
                    let frame = codec::encode(&message);
                    let peers: Vec<NodeIndex> = (0..self.nodes)
                        .filter(|k| *k != self.index && to.is_none_or(|t| t == *k) && !self.faults.cut[*k] && self.link_up(*k))
                        .collect();
                    self.watch.message(now, self.index, &peers, false, &message, frame.len() as u64, (self.core.consensus().finalized_height(), self.core.consensus().notarized_height()));
                    frames.push((to, frame));
                }
                NodeOutput::VerifyIngress(unverified) => {
                    // No threads here: verified at once.
                    let check = self.core.ingress_check();
                    let _ = self.core.on_ingress_verified(now, unverified.verify(&*check));
                }
                NodeOutput::Proposed { height, .. } => self.event(format!("proposed a block at height {height}")),
                NodeOutput::Executed { batch, state_hash } => {
                    self.watch.calls_executed += batch.ingress.len() as u64;
                    self.watch.state_hash = Some(state_hash);
                }
                NodeOutput::Certified { .. } => {}
                NodeOutput::SyncStarted { finalized, target } => self.event(format!("at height {finalized}, syncing the state of height {target}")),
                NodeOutput::Synced { height, bytes, .. } => self.event(format!("state sync brought height {height} ({bytes} bytes)")),
                NodeOutput::Failed(reason) => self.failed = Some(reason),
            }
        }
        frames
    }
}
