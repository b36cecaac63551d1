//! The tab subnets' rendezvous, tried as a member and as an attacker: a WebSocket client (the
//! `tungstenite` axum's server uses) joins `/_/rendezvous/<subnet>` of a `tabnet` binary.
//! Members prove their node keys and get distinct slots, bound to their keys; the subnet forms
//! when the last joins, and each member gets its own keys; members get each other's signals; a
//! forged proof is refused; a member that speaks for another slot, floods, or sends an
//! oversized message is cut off without disturbing the others; a page of another origin is
//! refused; a restarted node keeps the subnet and its members.

use std::net::TcpStream;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tabnet_node::tab_signal::{FromRendezvous, JoinRequest, Membership, Signal};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

mod support;
use support::Node;

fn key(k: u8) -> SigningKey {
    SigningKey::from_bytes(&[k; 32])
}

/// Joins as the holder of `key`; the rendezvous's answer to the proof.
fn join(node: &Node, subnet: &str, nodes: usize, key: &SigningKey) -> (Ws, FromRendezvous) {
    join_with(node, subnet, nodes, |nonce| JoinRequest::sign(key, subnet, nonce).to_json())
}

fn join_with(node: &Node, subnet: &str, nodes: usize, answer: impl Fn(&[u8; 32]) -> String) -> (Ws, FromRendezvous) {
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/_/rendezvous/{subnet}?nodes={nodes}", node.addr)).expect("the rendezvous answers");
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let Some(FromRendezvous::Challenge { nonce }) = next(&mut ws) else { panic!("no challenge first") };
    ws.send(Message::Text(answer(&nonce).into())).unwrap();
    let first = next(&mut ws).expect("an answer to the proof");
    (ws, first)
}

/// The next rendezvous message, or `None` once the connection is closed (or silent for 5 s).
fn next(ws: &mut Ws) -> Option<FromRendezvous> {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => return Some(FromRendezvous::from_json(text.as_str()).expect("rendezvous JSON")),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

fn send(ws: &mut Ws, signal: &Signal) -> bool {
    ws.send(Message::Text(signal.to_json().into())).is_ok()
}

fn index_of(first: &FromRendezvous) -> usize {
    match first {
        FromRendezvous::Welcome { membership } => membership.index,
        FromRendezvous::Waiting { index, .. } => *index,
        other => panic!("not a seat: {other:?}"),
    }
}

fn welcome(first: Option<FromRendezvous>) -> Membership {
    match first {
        Some(FromRendezvous::Welcome { membership }) => membership,
        other => panic!("not a welcome: {other:?}"),
    }
}

fn refused(first: &FromRendezvous, why: &str) -> bool {
    matches!(first, FromRendezvous::Refused { reason } if reason.contains(why))
}

#[test]
fn members_meet_and_misbehaving_ones_are_cut_off() {
    let dir = std::env::temp_dir().join(format!("tabnet-rendezvous-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = Node::start(&dir);
    let (mut a, wa) = join(&node, "class", 3, &key(1));
    let (mut b, wb) = join(&node, "class", 3, &key(2));
    assert_eq!((wa, &wb), (FromRendezvous::Waiting { index: 0, joined: 1, nodes: 3 }, &FromRendezvous::Waiting { index: 1, joined: 2, nodes: 3 }));
    assert!(refused(&join(&node, "class", 4, &key(7)).1, "has 3 nodes, not 4"));
    // A proof made with another key, for another nonce, or none at all: refused.
    let forged = |nonce: &[u8; 32]| JoinRequest { node_key: key(1).verifying_key().to_bytes(), ..JoinRequest::sign(&key(9), "class", nonce) }.to_json();
    assert!(refused(&join_with(&node, "class", 3, forged).1, "did not prove"));
    assert!(refused(&join_with(&node, "class", 3, |_| JoinRequest::sign(&key(9), "class", &[0; 32]).to_json()).1, "did not prove"));
    assert!(refused(&join_with(&node, "class", 3, |_| "{}".into()).1, "did not prove"));

    // A hello goes to the others; an offer only to the member it names.
    assert!(send(&mut a, &Signal::Hello { from: 0, incarnation: 1 }));
    assert_eq!(next(&mut b), Some(FromRendezvous::Signal(Signal::Hello { from: 0, incarnation: 1 })));
    assert!(send(&mut b, &Signal::Offer { from: 1, to: 0, sdp: "v=0".into() }));
    assert_eq!(next(&mut a), Some(FromRendezvous::Signal(Signal::Offer { from: 1, to: 0, sdp: "v=0".into() })));

    // B speaks for A's slot: B is cut off, and nobody hears it.
    assert!(send(&mut b, &Signal::Hello { from: 0, incarnation: 1 }));
    assert_eq!(next(&mut b), None, "the spoofer's connection is closed");
    // Its slot stays its key's: it comes back to it.
    let (mut c, wc) = join(&node, "class", 3, &key(2));
    assert_eq!(index_of(&wc), 1);

    // The third member forms the subnet: it is welcomed, and so are the two that waited, each
    // with the same public keys and its own BLS keys.
    let (mut e, we) = join(&node, "class", 3, &key(3));
    let m2 = welcome(Some(we));
    let (m0, m1) = (welcome(next(&mut a)), welcome(next(&mut c)));
    assert_eq!((m0.index, m1.index, m2.index), (0, 1, 2));
    assert!(m0.keys == m1.keys && m1.keys == m2.keys && m0.shares != m1.shares);
    let public = m0.public_keys().unwrap();
    for (m, k) in [(&m0, 1), (&m1, 2), (&m2, 3)] {
        assert!(m.secrets(key(k), &public).is_ok(), "member {} got keys that match the subnet's", m.index);
    }
    // Formed: a fourth key finds no slot.
    assert!(refused(&join(&node, "class", 3, &key(4)).1, "has all its 3 members"));

    // C floods: it is cut off after its burst; A goes on hearing the others.
    let mut sent = 0;
    while sent < 2_000 && send(&mut c, &Signal::Hello { from: 1, incarnation: 1 }) {
        sent += 1;
    }
    let mut heard = 0;
    while let Some(FromRendezvous::Signal(Signal::Hello { from: 1, incarnation: 1 })) = next(&mut a) {
        heard += 1;
        if heard > 1_000 {
            break;
        }
    }
    assert!((150..=300).contains(&heard), "A heard {heard} of the flood's hellos: the burst allows about 200");
    let (mut d, wd) = join(&node, "class", 3, &key(2));
    assert_eq!(welcome(Some(wd)), m1, "the flooder's member came back to its slot and keys");
    assert!(send(&mut d, &Signal::Hello { from: 1, incarnation: 1 }));
    assert_eq!(next(&mut a), Some(FromRendezvous::Signal(Signal::Hello { from: 1, incarnation: 1 })));

    // So does a flood of pings (each would cost the node a pong).
    let mut pings = 0;
    while pings < 5_000 && e.send(Message::Ping(vec![0; 8].into())).is_ok() {
        pings += 1;
    }
    // Its hello after the flood reaches nobody: the rendezvous closed it.
    let _ = send(&mut e, &Signal::Hello { from: 2, incarnation: 1 });
    // (D's hello, relayed to it before, may still come first.)
    let mut after = next(&mut e);
    while matches!(after, Some(FromRendezvous::Signal(Signal::Hello { from: 1, .. }))) {
        after = next(&mut e);
    }
    assert_eq!(after, None, "the pinger's connection is closed");
    assert_eq!(next(&mut a), None, "and its hello was not relayed");

    // A message over 64 KiB ends the connection.
    let huge = Signal::Offer { from: 1, to: 0, sdp: "x".repeat(70 * 1024) };
    let _ = send(&mut d, &huge);
    assert_eq!(next(&mut d), None);

    // A page of another origin cannot join.
    let mut request = format!("ws://{}/_/rendezvous/class?nodes=3", node.addr).into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    match tungstenite::connect(request) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a cross-origin join was not refused: {:?}", other.map(|_| ())),
    }

    // A restarted node keeps the subnet: its members and their keys.
    drop((a, c, d, e));
    drop(node);
    let node = Node::start(&dir);
    assert_eq!(welcome(Some(join(&node, "class", 3, &key(1)).1)), m0);
    assert!(refused(&join(&node, "class", 3, &key(4)).1, "has all its 3 members"));
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
