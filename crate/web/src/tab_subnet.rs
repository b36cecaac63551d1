//! A browser tab as a node of a subnet of tabs: the node core every platform runs, driven here
//! with the tab's edges — WebRTC links to the other members, IndexedDB for what it keeps, the
//! page's clock.
//!
//! Joining the subnet NAME of N nodes (tabs of one browser; signaling between machines through
//! the native node's rendezvous comes later):
//! - Formation: under the Web Lock `tabnet:NAME:genesis`, the first tab finds no genesis record
//!   in the `tabnet-subnets` database and writes one (N, a fresh dealer seed). Every tab then
//!   takes the first free member slot: the Web Lock `tabnet:NAME:K`, held while the tab lives and
//!   released by the browser when it closes or crashes, so a reopened tab takes over a slot whose
//!   member is gone, with its database `tabnet-NAME-K`. Tabs beyond N find no slot and wait.
//! - Keys: the trusted dealer's, as in the native subnet (whoever can read the genesis record
//!   holds every key); the node key of slot K is kept in its database with the rest.
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
use serde::{Deserialize, Serialize};
use tabnet_consensus::handshake::{Acceptor, Connector, PeerKeys, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};
use tabnet_consensus::{BlsCrypto, Checkpoint, Height, Ingress, NodeIndex, Time};
use tabnet_execution::SubnetConfig;
use tabnet_node::dealt::{dealt_node, local_node_config};
use tabnet_node::replica::CallCheck;
use tabnet_node::http::{self, Checked, Endpoint};
use tabnet_node::{codec, CheckpointStore, MemoryCheckpoints, NodeCore, NodeOutput};
use tabnet_replica::{BatchStore, Replica, Store, WriteBatch};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::idb::IdbStorage;
use crate::rtc::RtcLink;

/// Heights between catch-up packages (state checkpoints) of a tab subnet.
const DKG_INTERVAL: u64 = 500;
/// Members say hello this often (ms); a link is made again at the next hello after it closed.
const HELLO_EVERY: Time = 1_000;
/// A link still proving who is at the other end after this long is dropped.
const HANDSHAKE_TIMEOUT: Time = 5_000;

/// What the founding tab writes: the subnet's size and the dealer's seed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Genesis {
    nodes: usize,
    dealer_seed: [u8; 32],
    dkg_interval: u64,
}

/// A message on the subnet's BroadcastChannel.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Signal {
    Hello { from: NodeIndex },
    Offer { from: NodeIndex, to: NodeIndex, sdp: String },
    Answer { from: NodeIndex, to: NodeIndex, sdp: String },
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn now() -> Time {
    Date::now() as Time
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the browser's crypto.getRandomValues");
    bytes
}

/// Takes the Web Lock `name` for the life of this tab if it is free; says whether it did.
async fn take_lock_for_life(name: &str) -> Result<bool, JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let locks = Reflect::get(&navigator, &"locks".into())?;
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let options = Object::new();
    Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE)?;
    let mut answer: Option<Function> = None;
    let taken = Promise::new(&mut |resolve, _| answer = Some(resolve));
    let answer = answer.expect("the executor ran");
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null();
        let _ = answer.call1(&JsValue::NULL, &JsValue::from_bool(got));
        // Held until the tab goes: the lock's promise never settles.
        if got {
            Promise::new(&mut |_, _| {}).into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let _ = request.call3(&locks, &name.into(), &options, &callback)?;
    Ok(JsFuture::from(taken).await?.as_bool() == Some(true))
}

/// Runs `body` holding the Web Lock `name` (waiting for it).
async fn with_lock<F: std::future::Future<Output = Result<JsValue, JsValue>> + 'static>(name: &str, body: F) -> Result<JsValue, JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let locks = Reflect::get(&navigator, &"locks".into())?;
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let body = RefCell::new(Some(body));
    let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        let body = body.borrow_mut().take().expect("called once");
        wasm_bindgen_futures::future_to_promise(body).into()
    });
    let promise: Promise = request.call2(&locks, &name.into(), &callback)?.dyn_into()?;
    JsFuture::from(promise).await
}

/// The subnet's genesis record: read, or written by the first tab.
async fn genesis_of(name: &str, nodes: usize) -> Result<Genesis, JsValue> {
    let key = format!("genesis/{name}");
    let key2 = key.clone();
    let bytes = with_lock(&format!("tabnet:{name}:genesis"), async move {
        let db = IdbStorage::open("tabnet-subnets").await.map_err(js_error)?;
        let store = db.load().await.map_err(js_error)?;
        let bytes = match store.get(&key2).map_err(js_error)? {
            Some(bytes) => bytes,
            None => {
                let genesis = Genesis { nodes, dealer_seed: random32(), dkg_interval: DKG_INTERVAL };
                let mut bytes = Vec::new();
                ciborium::into_writer(&genesis, &mut bytes).map_err(js_error)?;
                let batch = WriteBatch { seq: 1, puts: vec![(key2.clone(), bytes.clone().into())], deletes: Vec::new() };
                db.commit(&batch).await.map_err(js_error)?;
                bytes
            }
        };
        db.close();
        Ok(js_sys::Uint8Array::from(&bytes[..]).into())
    })
    .await?;
    let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
    let genesis: Genesis = ciborium::from_reader(bytes.as_slice()).map_err(|e| js_error(format!("bad genesis record {key}: {e}")))?;
    if genesis.nodes != nodes {
        return Err(js_error(format!("the subnet {name} has {} nodes, not {nodes}", genesis.nodes)));
    }
    Ok(genesis)
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

struct Member {
    name: String,
    index: NodeIndex,
    nodes: usize,
    key: SigningKey,
    peers: PeerKeys,
    core: Node,
    db: Rc<IdbStorage>,
    links: Vec<Option<Link>>,
    signals: Rc<RefCell<VecDeque<Signal>>>,
    channel: BroadcastChannel,
    _on_signal: Closure<dyn FnMut(MessageEvent)>,
    last_hello: Time,
    last_timer: Time,
    failed: Option<String>,
    /// Recent protocol events, for the page.
    events: VecDeque<String>,
}

/// A tab that is a node of a tab subnet (JavaScript drives it: [`TabSubnet::step`] in a loop).
#[wasm_bindgen]
pub struct TabSubnet {
    member: Rc<RefCell<Member>>,
}

#[wasm_bindgen]
impl TabSubnet {
    /// Makes this tab a node of the tab subnet `name` of `nodes` nodes, resuming the member it
    /// was (or whose tab is gone). Fails if the subnet has all its members.
    pub async fn join(name: String, nodes: u32) -> Result<TabSubnet, JsValue> {
        let nodes = nodes as usize;
        if !(1..=13).contains(&nodes) {
            return Err(js_error(format!("a tab subnet has 1 to 13 nodes, not {nodes}")));
        }
        let genesis = genesis_of(&name, nodes).await?;
        let mut index = None;
        for k in 0..nodes {
            if take_lock_for_life(&format!("tabnet:{name}:{k}")).await? {
                index = Some(k);
                break;
            }
        }
        let index = index.ok_or_else(|| js_error(format!("the subnet {name} has all its {nodes} members already")))?;
        let _ = crate::idb::persist().await;
        let db = IdbStorage::open(&format!("tabnet-{name}-{index}")).await.map_err(js_error)?;
        let store = db.load().await.map_err(js_error)?;
        let mut checkpoints = TabCheckpoints::default();
        for (height, bytes) in db.load_checkpoints().await.map_err(js_error)? {
            checkpoints.kept.add(Checkpoint::new(height, bytes)).map_err(js_error)?;
        }
        let dealt = dealt_node(nodes, &genesis.dealer_seed, index);
        let config = SubnetConfig::for_subnet_size(nodes as u64);
        let check = Arc::new(CallCheck { max_bytes: config.max_ingress_bytes });
        let replica = Replica::open_member(store, config, dealt.member).map_err(js_error)?;
        let crypto = Arc::new(BlsCrypto::new(index, dealt.secret.clone(), dealt.public.clone()));
        let core = NodeCore::open(local_node_config(&genesis.dealer_seed, genesis.dkg_interval), crypto, check, replica, checkpoints)
            .map_err(js_error)?;

        let channel = BroadcastChannel::new(&format!("tabnet:{name}"))?;
        let signals: Rc<RefCell<VecDeque<Signal>>> = Rc::default();
        let inbox = signals.clone();
        let on_signal = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                if let Ok(signal) = serde_json_signal(&text) {
                    let mut inbox = inbox.borrow_mut();
                    // A flood of signals is cut, not held.
                    if inbox.len() < 1_000 {
                        inbox.push_back(signal);
                    }
                }
            }
        });
        channel.set_onmessage(Some(on_signal.as_ref().unchecked_ref()));
        let member = Member {
            name,
            index,
            nodes,
            key: dealt.secret.proposal_key.clone(),
            peers: dealt.peers,
            core,
            db: Rc::new(db),
            links: (0..nodes).map(|_| None).collect(),
            signals,
            channel,
            _on_signal: on_signal,
            last_hello: 0,
            last_timer: 0,
            failed: None,
            events: VecDeque::new(),
        };
        Ok(TabSubnet { member: Rc::new(RefCell::new(member)) })
    }

    /// One turn of the node: signals, links, frames, timers; what it must keep is committed to
    /// IndexedDB before what it sends leaves. Returns how long (ms) until it wants the next turn.
    pub async fn step(&self) -> Result<f64, JsValue> {
        let now = now();
        let (writes, checkpoints, frames) = {
            let mut m = self.member.borrow_mut();
            if let Some(reason) = &m.failed {
                return Err(js_error(reason));
            }
            m.signal(now, &self.member);
            m.drive_links(now);
            // (A node that asks for no wake-up still gets a tick now and then, as natively.)
            if m.core.next_wake(now).is_none_or(|at| at <= now) || now >= m.last_timer + 1_000 {
                m.last_timer = now;
                m.core.on_timer(now);
            }
            let frames = m.perform(now);
            let writes = m.core.replica_mut().store_mut().take_batches();
            let checkpoints = std::mem::take(&mut m.core.checkpoints_mut().unwritten);
            (writes, checkpoints, frames)
        };
        // Durable before anything sent after it leaves (IndexedDB commits one write at a time).
        let db = self.member.borrow().db.clone();
        for batch in &writes {
            if let Err(e) = db.commit(batch).await {
                self.member.borrow_mut().failed = Some(e.clone());
                return Err(js_error(e));
            }
        }
        for c in &checkpoints {
            let keep: Vec<Height> = self.member.borrow().core.checkpoints().kept().iter().map(Checkpoint::height).collect();
            if let Err(e) = db.put_checkpoint(c.height(), c.bytes(), &keep).await {
                self.member.borrow_mut().failed = Some(e.clone());
                return Err(js_error(e));
            }
        }
        let m = self.member.borrow();
        for (to, frame) in &frames {
            for (k, link) in m.links.iter().enumerate() {
                if let Some(link) = link.as_ref().filter(|l| matches!(l.state, LinkState::Up) && to.is_none_or(|t| t == k)) {
                    link.rtc.send(frame);
                }
            }
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
        let now_ns = now() * 1_000_000;
        let endpoint = match http::route(&method, &path, content_type.as_deref()) {
            Ok(endpoint) => endpoint,
            Err(e) => return http_response(e.status, false, e.message.as_bytes()),
        };
        let id = {
            let mut m = self.member.borrow_mut();
            if let Some(r) = http::answer(m.core.replica_mut(), &endpoint, &body, now_ns) {
                return http_response(r.status, r.cbor, &r.body);
            }
            let Endpoint::Call { ecid, sync, subnet } = endpoint else { unreachable!("answered above") };
            match http::check_call(m.core.replica_mut(), ecid, subnet, sync, &body, now_ns) {
                Checked::Answer { status, body, cbor } => return http_response(status, cbor, &body),
                Checked::Submit { id, ingress } => {
                    if let Err(e) = m.core.submit_ingress(now(), Ingress { bytes: ingress }) {
                        return http_response(503, false, e.as_bytes());
                    }
                    if !sync {
                        return http_response(202, false, b"");
                    }
                    id
                }
            }
        };
        // The page's loop steps the node meanwhile; the outcome shows once certified.
        for _ in 0..500 {
            crate::rtc::sleep(20).await;
            if let Some(body) = http::call_outcome(self.member.borrow().core.replica(), &id) {
                return http_response(200, true, &body);
            }
        }
        http_response(202, false, b"")
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
            events: m.events.iter().map(String::as_str).collect(),
        });
        JsValue::from_str(&status)
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
}

fn serde_json_status(s: &StatusView) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn serde_json_signal(text: &str) -> Result<Signal, String> {
    if text.len() > 64 * 1024 {
        return Err("signal too long".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

impl Member {
    fn post(&self, signal: &Signal) {
        if let Ok(text) = serde_json::to_string(signal) {
            let _ = self.channel.post_message(&JsValue::from_str(&text));
        }
    }

    fn event(&mut self, text: String) {
        self.events.push_back(text);
        while self.events.len() > 50 {
            self.events.pop_front();
        }
    }

    /// Hellos, offers and answers: links are made by the lower index of each pair.
    fn signal(&mut self, now: Time, shared: &Rc<RefCell<Member>>) {
        if now >= self.last_hello + HELLO_EVERY {
            self.last_hello = now;
            self.post(&Signal::Hello { from: self.index });
        }
        let signals: Vec<Signal> = self.signals.borrow_mut().drain(..).collect();
        for signal in signals {
            match signal {
                Signal::Hello { from } if from < self.nodes && from != self.index => {
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
        let Ok(rtc) = RtcLink::new() else { return };
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
        let Ok(rtc) = RtcLink::new() else { return };
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
                LinkState::Up => {
                    self.core.on_frame(now, peer, &frame);
                }
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
                NodeOutput::Send { to, message } => frames.push((to, codec::encode(&message))),
                NodeOutput::VerifyIngress(unverified) => {
                    // No threads here: verified at once.
                    let check = self.core.ingress_check();
                    let _ = self.core.on_ingress_verified(now, unverified.verify(&*check));
                }
                NodeOutput::Proposed { height, .. } => self.event(format!("proposed a block at height {height}")),
                NodeOutput::Executed { .. } | NodeOutput::Certified { .. } => {}
                NodeOutput::SyncStarted { finalized, target } => self.event(format!("at height {finalized}, syncing the state of height {target}")),
                NodeOutput::Synced { height, bytes, .. } => self.event(format!("state sync brought height {height} ({bytes} bytes)")),
                NodeOutput::Failed(reason) => self.failed = Some(reason),
            }
        }
        frames
    }
}
