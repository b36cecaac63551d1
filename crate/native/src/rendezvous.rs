//! The rendezvous of tab subnets whose tabs are on different machines (`/_/rendezvous/<subnet>`,
//! a WebSocket). It is the trusted dealer of the tab subnets it introduces and their registry:
//! it keeps each subnet's genesis record (its size, a fresh dealer seed, the members' node
//! keys); a joining tab proves its node key (it signs a nonce), and the first N keys are the
//! members, each bound to its slot; once all N have joined, each gets the subnet's public keys
//! and its own BLS keys, nothing more (no member learns another's secrets from here). It then
//! relays the members' signals (WebRTC offers and answers, hellos). Frames between members
//! never pass here: they go over WebRTC.
//!
//! Connections are not trusted: a signal is at most 64 KiB, says it is from the connection's own
//! slot or is dropped, and a connection sends at most `SIGNALS_PER_SECOND` (with bursts of
//! `SIGNAL_BURST`) or is dropped; only so many subnets are kept. Genesis records are kept in the
//! state directory, so tabs that return after a restart find their subnet as they left it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tabnet_node::tab_signal::{valid_subnet_name, FromRendezvous, Genesis, JoinRequest, Membership, Signal, MAX_SIGNAL_BYTES, MAX_TAB_NODES};
use tokio::sync::mpsc;

/// Heights between a tab subnet's catch-up packages (as a tab that founds one locally picks).
const DKG_INTERVAL: u64 = 500;
/// Tab subnets known at once (each a genesis record and its open slots).
const MAX_SUBNETS: usize = 1_024;
/// Tab subnets whose records the rendezvous keeps on disk (each about a kilobyte): anyone may
/// name a new subnet, so without a cap, names cycled through would fill the disk.
const MAX_RECORDS: usize = 10_000;
const SIGNALS_PER_SECOND: f64 = 50.0;
const SIGNAL_BURST: f64 = 200.0;
/// Signals waiting for a slow member; more are dropped (members say hello again each second).
const QUEUE: usize = 256;
/// A tab proves its node key within this long after connecting.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Rendezvous {
    dir: PathBuf,
    subnets: Mutex<HashMap<String, Room>>,
    next_serial: Mutex<u64>,
    max_records: usize,
}

struct Room {
    genesis: Genesis,
    /// What each member is given, once the subnet has formed.
    dealt: Option<Vec<Membership>>,
    /// Per slot: the connection holding it (its serial, and where its signals go).
    members: Vec<Option<(u64, mpsc::Sender<String>)>>,
}

#[derive(Deserialize)]
pub struct JoinParams {
    nodes: usize,
}

/// A member's place while its connection is open.
#[derive(Debug)]
struct Seat {
    name: String,
    index: usize,
    serial: u64,
    /// The first thing to tell it: its welcome, or that the subnet is still forming.
    first: FromRendezvous,
    inbox: mpsc::Receiver<String>,
}

impl Rendezvous {
    pub fn new(state_dir: &std::path::Path) -> Arc<Self> {
        Arc::new(Self { dir: state_dir.join("rendezvous"), subnets: Mutex::new(HashMap::new()), next_serial: Mutex::new(0), max_records: MAX_RECORDS })
    }

    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new().route("/_/rendezvous/{name}", get(connect)).with_state(self.clone())
    }

    fn genesis_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The subnet's genesis as kept, or a new one.
    fn genesis(&self, name: &str, nodes: usize) -> Result<Genesis, String> {
        let file = self.genesis_file(name);
        if let Ok(text) = std::fs::read_to_string(&file) {
            return serde_json::from_str(&text)
                .map_err(|e| format!("the rendezvous's record of {name} is damaged or from an older tabnet ({e}); delete {} to start {name} afresh", file.display()));
        }
        let kept = std::fs::read_dir(&self.dir).map_or(0, |entries| entries.count());
        if kept >= self.max_records {
            return Err(format!("this rendezvous keeps as many tab subnets as it can ({}); join one it knows", self.max_records));
        }
        let mut dealer_seed = [0u8; 32];
        getrandom::getrandom(&mut dealer_seed).map_err(|e| e.to_string())?;
        Ok(Genesis::new(nodes, dealer_seed, DKG_INTERVAL))
    }

    /// Written before the member it registers hears of it.
    fn keep(&self, name: &str, genesis: &Genesis) -> Result<(), String> {
        let file = self.genesis_file(name);
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let partial = file.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string(genesis).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        std::fs::rename(&partial, &file).map_err(|e| e.to_string())
    }

    /// Seats the member whose node key is `key` (proven): in the slot it registered, or a free
    /// one. A connection that held its slot before is let go (the member connected again).
    fn take_seat(&self, name: &str, nodes: usize, key: &[u8; 32]) -> Result<Seat, String> {
        if !valid_subnet_name(name) {
            return Err(format!("{name:?} is not a subnet name (letters, digits, - and _; at most 64)"));
        }
        if !(1..=MAX_TAB_NODES).contains(&nodes) {
            return Err(format!("a tab subnet has 1 to {MAX_TAB_NODES} nodes, not {nodes}"));
        }
        let mut subnets = self.subnets.lock().unwrap_or_else(|e| e.into_inner());
        if !subnets.contains_key(name) {
            if subnets.len() >= MAX_SUBNETS {
                // Forget a subnet nobody is in (its genesis stays on disk).
                let idle = subnets.iter().find(|(_, r)| r.members.iter().all(Option::is_none)).map(|(n, _)| n.clone());
                match idle {
                    Some(idle) => drop(subnets.remove(&idle)),
                    None => return Err("this rendezvous serves as many tab subnets as it can".into()),
                }
            }
            let genesis = self.genesis(name, nodes)?;
            let dealt = if genesis.formed() { Some(genesis.deal()?) } else { None };
            let members = (0..genesis.nodes).map(|_| None).collect();
            subnets.insert(name.to_string(), Room { genesis, dealt, members });
        }
        let room = subnets.get_mut(name).expect("inserted above");
        if room.genesis.nodes != nodes {
            return Err(format!("the subnet {name} has {} nodes, not {nodes}", room.genesis.nodes));
        }
        let mut genesis = room.genesis.clone();
        let Some(index) = genesis.register(key) else { return Err(format!("the subnet {name} has all its {nodes} members already")) };
        if genesis != room.genesis {
            self.keep(name, &genesis)?;
            room.genesis = genesis;
        }
        let serial = {
            let mut next = self.next_serial.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let (tx, inbox) = mpsc::channel(QUEUE);
        room.members[index] = Some((serial, tx));
        let first = if room.dealt.is_none() && room.genesis.formed() {
            // This member completed it: welcome the others that wait.
            let dealt = room.genesis.deal()?;
            for (k, member) in room.members.iter().enumerate().filter(|(k, _)| *k != index) {
                if let Some((_, tx)) = member {
                    let _ = tx.try_send(FromRendezvous::Welcome { membership: dealt[k].clone() }.to_json());
                }
            }
            room.dealt = Some(dealt);
            FromRendezvous::Welcome { membership: room.dealt.as_ref().expect("dealt")[index].clone() }
        } else {
            match &room.dealt {
                Some(dealt) => FromRendezvous::Welcome { membership: dealt[index].clone() },
                None => FromRendezvous::Waiting { index, joined: room.genesis.joined(), nodes },
            }
        };
        Ok(Seat { name: name.to_string(), index, serial, first, inbox })
    }

    fn leave(&self, seat: &Seat) {
        let mut subnets = self.subnets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = subnets.get_mut(&seat.name).and_then(|r| r.members.get_mut(seat.index)) {
            if slot.as_ref().is_some_and(|(serial, _)| *serial == seat.serial) {
                *slot = None;
            }
        }
    }

    /// Passes a member's signal on: to the member it names, or to all others.
    fn relay(&self, seat: &Seat, signal: Signal) {
        let text = FromRendezvous::Signal(signal.clone()).to_json();
        let subnets = self.subnets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(room) = subnets.get(&seat.name) else { return };
        for (k, member) in room.members.iter().enumerate() {
            if let Some((_, tx)) = member.as_ref().filter(|_| k != seat.index && signal.to().is_none_or(|to| to == k)) {
                let _ = tx.try_send(text.clone());
            }
        }
    }
}

/// A page may join only from this node's own origin (a page elsewhere could otherwise join the
/// tab subnets of whoever runs this node, as WebSockets know no CORS); programs send no Origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.to_str().ok().and_then(|o| o.split_once("://")).is_some_and(|(_, rest)| rest == host)
}

async fn connect(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<JoinParams>,
    State(r): State<Arc<Rendezvous>>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "a page may join tab subnets only from this node's own origin").into_response();
    }
    ws.max_message_size(MAX_SIGNAL_BYTES).max_frame_size(MAX_SIGNAL_BYTES).on_upgrade(move |socket| session(socket, r, name, params))
}

/// The tab's proof of its node key, answering the nonce: `None` if it gives none in time.
async fn proven_key(socket: &mut WebSocket, name: &str) -> Option<[u8; 32]> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).ok()?;
    socket.send(Message::Text(FromRendezvous::Challenge { nonce }.to_json().into())).await.ok()?;
    let answer = tokio::time::timeout(JOIN_TIMEOUT, async {
        // (A few pings may come first; a flood of them gets no more pongs than that.)
        for _ in 0..8 {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => return JoinRequest::from_json(text.as_str()).ok(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
        None
    });
    let join = answer.await.ok().flatten()?;
    join.verify(name, &nonce).then_some(join.node_key)
}

async fn refuse(mut socket: WebSocket, reason: String) {
    let _ = socket.send(Message::Text(FromRendezvous::Refused { reason }.to_json().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn session(mut socket: WebSocket, r: Arc<Rendezvous>, name: String, params: JoinParams) {
    let Some(key) = proven_key(&mut socket, &name).await else {
        return refuse(socket, "the tab did not prove its node key".into()).await;
    };
    let mut seat = match r.take_seat(&name, params.nodes, &key) {
        Ok(seat) => seat,
        Err(reason) => return refuse(socket, reason).await,
    };
    if socket.send(Message::Text(seat.first.to_json().into())).await.is_ok() {
        let (mut tokens, mut at) = (SIGNAL_BURST, Instant::now());
        loop {
            tokio::select! {
                incoming = socket.recv() => {
                    // Every message counts, pings too (each costs a pong).
                    let now = Instant::now();
                    tokens = (tokens + now.duration_since(at).as_secs_f64() * SIGNALS_PER_SECOND).min(SIGNAL_BURST) - 1.0;
                    at = now;
                    if tokens < 0.0 {
                        break;
                    }
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        _ => break,
                    };
                    match Signal::from_json(text.as_str()) {
                        Ok(signal) if signal.from() == seat.index => r.relay(&seat, signal),
                        _ => break,
                    }
                }
                outgoing = seat.inbox.recv() => {
                    let Some(text) = outgoing else { break };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    r.leave(&seat);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_of_this_origin_join() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:4943".parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://127.0.0.1:4943"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:4944"))));
    }

    #[test]
    fn seats_belong_to_keys_and_the_subnet_forms_with_its_last_member() {
        let dir = std::env::temp_dir().join(format!("tabnet-rendezvous-{}", std::process::id()));
        let r = Rendezvous::new(&dir);
        let a = r.take_seat("s", 2, &[1; 32]).unwrap();
        assert!(matches!(a.first, FromRendezvous::Waiting { index: 0, joined: 1, nodes: 2 }));
        assert!(r.take_seat("s", 3, &[2; 32]).unwrap_err().contains("has 2 nodes, not 3"));
        assert!(r.take_seat("a/b", 2, &[2; 32]).is_err());
        // Keys here need not be valid curve points for seating; dealing needs real ones.
        let key = |k: u8| ed25519_dalek::SigningKey::from_bytes(&[k; 32]).verifying_key().to_bytes();
        let r = Rendezvous::new(&dir.join("real"));
        let mut a = r.take_seat("s", 2, &key(1)).unwrap();
        let b = r.take_seat("s", 2, &key(2)).unwrap();
        assert!(matches!(&b.first, FromRendezvous::Welcome { membership } if membership.index == 1));
        // The waiting member hears its welcome: its own BLS keys only.
        let welcome = FromRendezvous::from_json(&a.inbox.try_recv().unwrap()).unwrap();
        assert!(matches!(&welcome, FromRendezvous::Welcome { membership } if membership.index == 0));
        assert!(r.take_seat("s", 2, &key(3)).unwrap_err().contains("has all its 2 members"));
        // A member that left comes back to its slot, even while its old connection lingers.
        let again = r.take_seat("s", 2, &key(1)).unwrap();
        assert_eq!(again.index, 0);
        assert!(matches!(again.first, FromRendezvous::Welcome { .. }));
        // A new rendezvous on the same directory knows the members and deals the same.
        let r2 = Rendezvous::new(&dir.join("real"));
        let b2 = r2.take_seat("s", 2, &key(2)).unwrap();
        assert_eq!(b2.first, b.first);
        r.leave(&a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn new_subnet_names_stop_at_the_records_cap_and_known_ones_still_join() {
        let dir = std::env::temp_dir().join(format!("tabnet-rendezvous-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Rendezvous::new(&dir);
        Arc::get_mut(&mut r).expect("not shared").max_records = 3;
        for k in 0..3u8 {
            let seat = r.take_seat(&format!("n{k}"), 2, &[k; 32]).unwrap();
            r.leave(&seat);
        }
        let refused = r.take_seat("n3", 2, &[9; 32]).unwrap_err();
        assert!(refused.contains("as many tab subnets as it can (3)"), "{refused}");
        assert_eq!(std::fs::read_dir(&dir.join("rendezvous")).unwrap().count(), 3, "no fourth record on disk");
        // A subnet it keeps still takes members (forming it: dealing needs real node keys).
        let key = |k: u8| ed25519_dalek::SigningKey::from_bytes(&[k; 32]).verifying_key().to_bytes();
        assert_eq!(r.take_seat("n3", 1, &key(7)).unwrap_err(), refused, "whatever its size");
        let known = dir.join("rendezvous").join("n0.json");
        let mut genesis: Genesis = serde_json::from_str(&std::fs::read_to_string(&known).unwrap()).unwrap();
        genesis.node_keys[0] = Some(key(1));
        std::fs::write(&known, serde_json::to_string(&genesis).unwrap()).unwrap();
        let r = Rendezvous::new(&dir);
        assert_eq!(r.take_seat("n0", 2, &key(2)).unwrap().index, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
