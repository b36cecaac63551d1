//! `tabnet node --join URL`: this process as a member of a tab subnet, an always-on node that
//! keeps the subnet alive when tabs close. It joins as a tab on another machine does: through
//! the rendezvous of the native `tabnet` that serves the app (`URL` is the app's address with
//! `?subnet=NAME&nodes=N`), proving its node key there; it links to every other member over
//! WebRTC (rtc.rs) and proves its node key on each link as tabs do (the gossip handshake bound
//! to both DTLS fingerprints). From there it is a native node like any other: the same node
//! core, its state in its state directory, the IC HTTP interface on its port.
//!
//! Links follow the tabs' rules (crate/web/src/tab_subnet.rs): every member says hello each
//! second with a random number per opening; the lower index of each pair offers, the higher
//! answers and challenges; a link that closes is made again at the next hello.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tabnet_consensus::handshake::{Acceptor, Connector, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};
use tabnet_consensus::{threshold, Kind, NodeIndex};
use tabnet_execution::SubnetConfig;
use tabnet_node::dealt::member_node;
use tabnet_node::tab_signal::{valid_subnet_name, FromRendezvous, JoinRequest, Membership, Signal, MAX_SIGNAL_BYTES, MAX_TAB_NODES};
use tabnet_replica::Store;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::api::API;

use crate::gossip::{self, Identity, Outbox, PeerInboxes};
use crate::log_store::LogStore;
use crate::rtc::RtcLink;
use crate::server;
use crate::subnet::{self, now_millis};

/// Where the node key is kept in the state directory's store.
const KEY_NODE: &str = "keys/tab-member";
/// The membership this state belongs to: the state directory serves one subnet only.
const KEY_MEMBERSHIP: &str = "tab-subnet/membership";
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// The channel must open and the peer prove its key within this of the link being made.
const LINK_TIMEOUT: Duration = Duration::from_secs(15);
/// The rendezvous's first answer must come within this.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(10);
/// A lost rendezvous connection is tried again this often.
const RECONNECT_EVERY: Duration = Duration::from_secs(3);
/// Frames waiting for one member (as natively over TCP).
const PEER_QUEUE: usize = 20_000;
/// Signals waiting to be handled or sent; a flood beyond is dropped (hellos come again).
const SIGNAL_QUEUE: usize = 1_000;

/// The subnet a `--join` URL names, and its rendezvous.
#[derive(Debug, PartialEq)]
pub struct JoinTarget {
    pub name: String,
    pub nodes: usize,
    /// `ws(s)://host/_/rendezvous/NAME?nodes=N`
    pub rendezvous: String,
}

impl JoinTarget {
    /// `http(s)://host[:port][/path]?subnet=NAME[&nodes=N]` (N defaults to 4, as in the app).
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || format!("--join wants the app's address with ?subnet=NAME (like http://127.0.0.1:4943/?subnet=class&nodes=4), not {url}");
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let ws = match scheme {
            "http" => "ws",
            "https" => "wss",
            _ => return Err(bad()),
        };
        let (before_query, query) = rest.split_once('?').ok_or_else(bad)?;
        let host = before_query.split('/').next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let (mut name, mut nodes) = (None, 4usize);
        for pair in query.split('#').next().unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("subnet", v)) => name = Some(v.to_string()),
                Some(("nodes", v)) => nodes = v.parse().map_err(|_| format!("nodes={v} is not a number"))?,
                _ => {}
            }
        }
        let name = name.ok_or_else(bad)?;
        if !valid_subnet_name(&name) {
            return Err(format!("the subnet name {name:?} is not 1 to 64 letters, digits, - or _"));
        }
        if !(1..=MAX_TAB_NODES).contains(&nodes) {
            return Err(format!("a tab subnet has 1 to {MAX_TAB_NODES} nodes, not {nodes}"));
        }
        Ok(JoinTarget { rendezvous: format!("{ws}://{host}/_/rendezvous/{name}?nodes={nodes}"), name, nodes })
    }
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("OS randomness");
    bytes
}

/// This node's key: the one kept in `store`, or a new one kept now.
fn node_key(store: &mut LogStore) -> Result<SigningKey, String> {
    if let Some(bytes) = store.get(KEY_NODE)? {
        let seed: [u8; 32] = bytes.try_into().map_err(|_| format!("{KEY_NODE} is not 32 bytes"))?;
        return Ok(SigningKey::from_bytes(&seed));
    }
    let key = SigningKey::from_bytes(&random32());
    store.put(KEY_NODE, &key.to_bytes())?;
    store.flush()?;
    Ok(key)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the rendezvous and proves `key`; returns the connection and this member's
/// membership once the subnet has formed (saying how the wait goes meanwhile).
async fn join(target: &JoinTarget, key: &SigningKey) -> Result<(Socket, Membership), String> {
    // A message is at most a signal's size (an offer's SDP, a membership): a larger one ends
    // the connection before it is held.
    let config = WebSocketConfig::default().max_message_size(Some(MAX_SIGNAL_BYTES)).max_frame_size(Some(MAX_SIGNAL_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(&target.rendezvous, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(RENDEZVOUS_TIMEOUT, connect)
        .await
        .map_err(|_| format!("no rendezvous answers at {}", target.rendezvous))?
        .map_err(|e| format!("no rendezvous answers at {}: {e}", target.rendezvous))?;
    let mut answered = false;
    let mut last_wait = None;
    loop {
        let next = if answered { Ok(ws.next().await) } else { tokio::time::timeout(RENDEZVOUS_TIMEOUT, ws.next()).await };
        let text = match next {
            Ok(Some(Ok(WsMessage::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("the rendezvous at {} broke off: {e}", target.rendezvous)),
            _ => return Err(format!("the rendezvous at {} closed the connection", target.rendezvous)),
        };
        match FromRendezvous::from_json(text.as_str())? {
            FromRendezvous::Challenge { nonce } => {
                answered = true;
                let proof = JoinRequest::sign(key, &target.name, &nonce).to_json();
                ws.send(WsMessage::text(proof)).await.map_err(|e| e.to_string())?;
            }
            FromRendezvous::Waiting { index, joined, nodes } => {
                if last_wait != Some(joined) {
                    eprintln!("tabnet: node {index} of the tab subnet {}: waiting for the others, {joined} of {nodes} have joined", target.name);
                    last_wait = Some(joined);
                }
            }
            FromRendezvous::Welcome { membership } => return Ok((ws, membership)),
            FromRendezvous::Refused { reason } => return Err(format!("the rendezvous refused this node: {reason}")),
            FromRendezvous::Signal(_) => {}
        }
    }
}

/// Keeps the rendezvous connection for this member: relays signals both ways, and connects
/// again when it is lost (links that are up stay up meanwhile).
async fn keep_rendezvous(target: JoinTarget, key: SigningKey, membership: Membership, mut ws: Socket, inbox: mpsc::Sender<Signal>, mut outbox: mpsc::Receiver<Signal>) {
    loop {
        loop {
            tokio::select! {
                received = ws.next() => match received {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Ok(FromRendezvous::Signal(signal)) = FromRendezvous::from_json(text.as_str()) {
                            let _ = inbox.try_send(signal);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                signal = outbox.recv() => match signal {
                    Some(signal) => if ws.send(WsMessage::text(signal.to_json())).await.is_err() { break },
                    None => return,
                },
            }
        }
        eprintln!("tabnet: lost the rendezvous at {}; links that are up stay up", target.rendezvous);
        loop {
            tokio::time::sleep(RECONNECT_EVERY).await;
            // (Signals meanwhile are stale: hellos come again each second.)
            while outbox.try_recv().is_ok() {}
            match join(&target, &key).await {
                Ok((socket, again)) if again == membership => {
                    eprintln!("tabnet: the rendezvous is back");
                    ws = socket;
                    break;
                }
                Ok(_) => eprintln!("tabnet: the rendezvous now deals another subnet under the name {}; not taken", target.name),
                Err(_) => {}
            }
        }
    }
}

/// The links to the other members, kept by one task.
struct Mesh {
    identity: Arc<Identity>,
    api: Arc<API>,
    nodes: usize,
    incarnation: u64,
    peer_incarnations: Vec<Option<u64>>,
    links: Vec<Option<Arc<RtcLink>>>,
    /// Per member: its proven link, which its frames are sent on.
    proven: Vec<watch::Sender<Option<Arc<RtcLink>>>>,
    inboxes: PeerInboxes,
    signals: mpsc::Sender<Signal>,
    /// Members reachable (this one included), as last reported.
    reported: Option<usize>,
}

impl Mesh {
    fn me(&self) -> NodeIndex {
        self.identity.me
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Signal>) {
        let mut tick = tokio::time::interval(HELLO_EVERY);
        loop {
            tokio::select! {
                signal = inbox.recv() => match signal {
                    Some(signal) => self.on_signal(signal).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let _ = self.signals.try_send(Signal::Hello { from: self.me(), incarnation: self.incarnation });
                    self.report();
                }
            }
        }
    }

    /// Says when the subnet can or cannot finalize from here.
    fn report(&mut self) {
        let reachable = 1 + self.proven.iter().filter(|p| p.borrow().as_ref().is_some_and(|l| l.is_open())).count();
        if self.reported == Some(reachable) {
            return;
        }
        self.reported = Some(reachable);
        let (n, needed) = (self.nodes, threshold(self.nodes, Kind::Finalization));
        if reachable < needed {
            eprintln!(
                "tabnet: {reachable} of the subnet's {n} nodes are linked (this one included); it cannot finalize without {needed}: waiting for the others"
            );
        } else {
            eprintln!("tabnet: {reachable} of the subnet's {n} nodes are linked: the subnet can finalize");
        }
    }

    async fn on_signal(&mut self, signal: Signal) {
        let (me, n) = (self.me(), self.nodes);
        match signal {
            Signal::Hello { from, incarnation } if from < n && from != me => {
                let reopened = self.peer_incarnations[from].replace(incarnation).is_some_and(|known| known != incarnation);
                if reopened {
                    if let Some(old) = self.links[from].take() {
                        eprintln!("tabnet: node {from} was reopened: its old link closed");
                        old.close_soon();
                    }
                }
                let stale = self.links[from].as_ref().is_none_or(|l| l.is_closed());
                if stale && me < from && !self.inboxes.is_banned(from) {
                    self.link(from, None).await;
                }
            }
            Signal::Offer { from, to, sdp } if to == me && from < me && !self.inboxes.is_banned(from) => self.link(from, Some(sdp)).await,
            Signal::Answer { from, to, sdp } if to == me && from < n => {
                if let Some(link) = self.links[from].clone().filter(|l| !l.is_open() && !l.is_closed()) {
                    tokio::spawn(async move {
                        let _ = link.accept(&sdp).await;
                    });
                }
            }
            _ => {}
        }
    }

    /// Makes a link to `peer`: offers (`offer` none) or answers its offer; a new link replaces
    /// whatever link there was (the peer made it again).
    async fn link(&mut self, peer: NodeIndex, offer: Option<String>) {
        let Ok(link) = RtcLink::new(&self.api).await else { return };
        if let Some(old) = self.links[peer].replace(link.clone()) {
            old.close_soon();
        }
        let (me, signals) = (self.me(), self.signals.clone());
        let signaling = link.clone();
        tokio::spawn(async move {
            let signal = match offer {
                None => signaling.offer().await.map(|sdp| Signal::Offer { from: me, to: peer, sdp }),
                Some(offer) => signaling.answer(&offer).await.map(|sdp| Signal::Answer { from: me, to: peer, sdp }),
            };
            if let Ok(signal) = signal {
                let _ = signals.send(signal).await;
            }
        });
        tokio::spawn(run_link(link, peer, self.identity.clone(), self.inboxes.clone(), self.proven[peer].clone()));
    }
}

/// One link's life: the channel opens, the peer proves its key, then its frames go to the node
/// until the link closes.
async fn run_link(link: Arc<RtcLink>, peer: NodeIndex, identity: Arc<Identity>, inboxes: PeerInboxes, proven: watch::Sender<Option<Arc<RtcLink>>>) {
    let proof = tokio::time::timeout(LINK_TIMEOUT, async {
        if !link.opened().await {
            return Err("the channel closed before it opened".to_string());
        }
        prove(&link, peer, &identity).await
    })
    .await
    .unwrap_or_else(|_| Err("the channel did not open, or the peer did not prove its key, in time".into()));
    if let Err(e) = proof {
        if link.is_open() {
            eprintln!("tabnet: the link to node {peer} was dropped: {e}");
        }
        link.close().await;
        return;
    }
    eprintln!("tabnet: link to node {peer} up");
    proven.send_replace(Some(link.clone()));
    while let Some(frame) = link.recv().await {
        if let Err(e) = inboxes.deliver(peer, frame).await {
            eprintln!("tabnet: {e}; its link is cut");
            break;
        }
    }
    if let Some(e) = link.error() {
        eprintln!("tabnet: node {peer} broke the framing ({e}); its link is cut");
    }
    proven.send_if_modified(|current| {
        let mine = current.as_ref().is_some_and(|l| Arc::ptr_eq(l, &link));
        if mine {
            *current = None;
        }
        mine
    });
    link.close().await;
    eprintln!("tabnet: link to node {peer} closed");
}

/// The gossip handshake on a link (see tabnet_consensus::handshake): the higher index
/// challenges, the lower proves its node key, bound to both DTLS fingerprints, and is proven
/// to in turn.
async fn prove(link: &RtcLink, peer: NodeIndex, identity: &Identity) -> Result<(), String> {
    let binding = link.channel_binding().await.ok_or("the descriptions state no DTLS fingerprints")?;
    let recv = || async { link.recv().await.ok_or_else(|| "the link closed".to_string()) };
    let wrong = |what: &str| format!("expected the peer's {what}");
    if identity.me > peer {
        let (acceptor, challenge) = Acceptor::new(identity.me, random32());
        link.send(&challenge).await?;
        let response = <[u8; RESPONSE_LEN]>::try_from(recv().await?.as_slice()).map_err(|_| wrong("proof"))?;
        let (who, confirm) = acceptor.on_response(&identity.peers, &identity.key, &binding, &response).map_err(|e| e.to_string())?;
        if who != peer {
            return Err(format!("node {who} answered on the link made for node {peer}"));
        }
        link.send(&confirm).await?;
    } else {
        let mut connector = Connector::new(identity.me, peer, random32());
        let challenge = <[u8; CHALLENGE_LEN]>::try_from(recv().await?.as_slice()).map_err(|_| wrong("challenge"))?;
        let response = connector.on_challenge(&identity.peers, &identity.key, &binding, &challenge).map_err(|e| e.to_string())?;
        link.send(&response).await?;
        let confirm = <[u8; CONFIRM_LEN]>::try_from(recv().await?.as_slice()).map_err(|_| wrong("confirmation"))?;
        connector.on_confirm(&identity.peers, &binding, &confirm).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sends what the node queues for one member on its proven link; while there is none, what is
/// queued is dropped (it is stale by the time the member returns; consensus sends what matters
/// again).
async fn send_to_member(peer: NodeIndex, mut queue: mpsc::Receiver<Arc<Vec<u8>>>, queued: Arc<std::sync::atomic::AtomicUsize>, proven: watch::Receiver<Option<Arc<RtcLink>>>) {
    while let Some(frame) = queue.recv().await {
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
        let link = proven.borrow().clone();
        if let Some(link) = link.filter(|l| l.is_open()) {
            if let Err(e) = link.send(&frame).await {
                eprintln!("tabnet: sending to node {peer} failed ({e}); its link is cut");
            }
        }
    }
}

/// `tabnet node --join URL`: runs this process as a member of the tab subnet `URL` names,
/// serving the IC HTTP interface with `settings`, until stopped.
pub async fn run_join(url: &str, settings: server::Settings) -> Result<(), String> {
    let target = JoinTarget::parse(url)?;
    let mut store = LogStore::open(&settings.state_dir)?;
    let key = node_key(&mut store)?;
    let (socket, membership) = join(&target, &key).await?;
    if membership.nodes() != target.nodes {
        return Err(format!("the subnet {} has {} nodes, not {}", target.name, membership.nodes(), target.nodes));
    }
    let record = serde_json::to_vec(&membership).map_err(|e| e.to_string())?;
    match store.get(KEY_MEMBERSHIP)? {
        Some(kept) if kept != record => {
            return Err(format!("{} holds the state of another subnet's node; give this one its own --state-dir", settings.state_dir.display()))
        }
        Some(_) => {}
        None => {
            store.put(KEY_MEMBERSHIP, &record)?;
            store.flush()?;
        }
    }
    let (index, n) = (membership.index, membership.nodes());
    eprintln!("tabnet: node {index} of the tab subnet {} ({n} nodes); the IC HTTP interface on http://{}:{}", target.name, settings.bind, settings.port);
    let public = membership.public_keys()?;
    let secret = membership.secrets(key, &public)?;
    let dealt = member_node(index, public, secret);
    let identity = Arc::new(Identity { me: index, key: dealt.secret.proposal_key.clone(), peers: dealt.peers.clone() });

    let (signals_in, signals_in_rx) = mpsc::channel(SIGNAL_QUEUE);
    let (signals_out, signals_out_rx) = mpsc::channel(SIGNAL_QUEUE);
    tokio::spawn(keep_rendezvous(target, identity.key.clone(), membership.clone(), socket, signals_in, signals_out_rx));
    let (inboxes, inbound) = gossip::inboxes(n, now_millis);
    let mut proven = Vec::with_capacity(n);
    let mut peers: Vec<Option<Outbox>> = Vec::with_capacity(n);
    for k in 0..n {
        let (tx, rx) = watch::channel(None);
        proven.push(tx);
        if k == index {
            peers.push(None);
            continue;
        }
        let (outbox, queue, queued) = gossip::outbox(PEER_QUEUE);
        tokio::spawn(send_to_member(k, queue, queued, rx));
        peers.push(Some(outbox));
    }
    let mesh = Mesh {
        identity,
        api: Arc::new(crate::rtc::api()),
        nodes: n,
        incarnation: u64::from_le_bytes(random32()[..8].try_into().expect("8 bytes")),
        peer_incarnations: vec![None; n],
        links: (0..n).map(|_| None).collect(),
        proven,
        inboxes,
        signals: signals_out,
        reported: None,
    };
    tokio::spawn(mesh.run(signals_in_rx));
    let config = SubnetConfig::for_subnet_size(n as u64);
    subnet::run(dealt, membership.genesis_seed, membership.dkg_interval, config, store, settings, inbound, peers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rendezvous that sends `message` after its challenge; returns its address.
    async fn rendezvous_sending(message: String) -> JoinTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let _ = ws.send(WsMessage::text(FromRendezvous::Challenge { nonce: [1; 32] }.to_json())).await;
            let _ = ws.next().await;
            let _ = ws.send(WsMessage::text(message)).await;
            let _ = ws.next().await;
        });
        JoinTarget::parse(&format!("http://127.0.0.1:{port}/?subnet=s&nodes=4")).unwrap()
    }

    #[tokio::test]
    async fn a_rendezvous_cannot_make_this_node_hold_a_huge_message() {
        let key = SigningKey::from_bytes(&[3; 32]);
        // 32 MiB: refused by the connection's message cap, before it is held (tungstenite's
        // default would take 64 MiB).
        let target = rendezvous_sending("x".repeat(32 << 20)).await;
        let err = join(&target, &key).await.unwrap_err();
        assert!(err.contains("broke off") && err.contains("too long"), "{err}");
        // What does fit is still read as a rendezvous message.
        let target = rendezvous_sending(FromRendezvous::Refused { reason: "full".into() }.to_json()).await;
        assert_eq!(join(&target, &key).await.unwrap_err(), "the rendezvous refused this node: full");
    }

    #[test]
    fn join_urls_name_the_subnet_and_its_rendezvous() {
        let t = JoinTarget::parse("http://127.0.0.1:8080/?subnet=class-3&nodes=5").unwrap();
        assert_eq!(t, JoinTarget { name: "class-3".into(), nodes: 5, rendezvous: "ws://127.0.0.1:8080/_/rendezvous/class-3?nodes=5".into() });
        let t = JoinTarget::parse("https://example.org/app/index.html?x=1&subnet=lab#top").unwrap();
        assert_eq!((t.nodes, t.rendezvous.as_str()), (4, "wss://example.org/_/rendezvous/lab?nodes=4"));
        for bad in ["127.0.0.1:8080/?subnet=a", "http://h/", "http://h/?nodes=4", "http://h/?subnet=a/b", "http://h/?subnet=a&nodes=14", "ftp://h/?subnet=a"] {
            assert!(JoinTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
