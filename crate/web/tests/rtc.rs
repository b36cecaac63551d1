//! The data-channel transport between two peer connections in headless Chromium: they connect
//! with one offer and one answer, prove their node keys bound to both DTLS fingerprints, carry
//! frames from empty to 5 MiB in order, cut off a peer that breaks the framing or sends more than
//! the node takes, and notice a peer that goes away.
#![cfg(target_arch = "wasm32")]

use tabnet_consensus::handshake::{Acceptor, Connector, PeerKeys};
use tabnet_consensus::deal;
use tabnet_web::rtc::{sleep, RtcLink, Wake, FRAGMENT, RECEIVED_BYTES};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn connected_pair() -> (RtcLink, RtcLink) {
    let a = RtcLink::new(Wake::default()).unwrap();
    let b = RtcLink::new(Wake::default()).unwrap();
    let offer = a.offer().await.unwrap();
    let answer = b.answer(&offer).await.unwrap();
    a.accept(&answer).await.unwrap();
    for _ in 0..400 {
        if a.is_open() && b.is_open() {
            return (a, b);
        }
        sleep(25).await;
    }
    panic!("the data channel did not open");
}

/// The next frame `link` receives from `sender` (whose queue is flushed meanwhile, as the
/// node's timer does).
async fn recv(sender: &RtcLink, link: &RtcLink) -> Vec<u8> {
    for _ in 0..800 {
        sender.flush();
        if let Some(frame) = link.recv() {
            return frame;
        }
        sleep(5).await;
    }
    panic!("no frame arrived");
}

#[wasm_bindgen_test]
async fn two_links_connect_prove_their_keys_and_carry_frames() {
    let (a, b) = connected_pair().await;
    // Both sides see the same binding: the two DTLS fingerprints.
    let binding = a.channel_binding().expect("fingerprints");
    assert_eq!(b.channel_binding().unwrap(), binding);
    assert!(String::from_utf8(binding.clone()).unwrap().starts_with("webrtc-dtls sha-256 "));

    // The gossip handshake over the channel: node 1 (b) accepts, node 0 (a) connects.
    let (public, secrets) = deal(2, &[9; 32]);
    let peers = PeerKeys::new(&public);
    let (acceptor, challenge) = Acceptor::new(1, [1; 32]);
    assert!(b.send(&challenge));
    let challenge = recv(&b, &a).await.try_into().unwrap();
    let mut connector = Connector::new(0, 1, [2; 32]);
    let response = connector.on_challenge(&peers, &secrets[0].proposal_key, &a.channel_binding().unwrap(), &challenge).unwrap();
    assert!(a.send(&response));
    let response = recv(&a, &b).await.try_into().unwrap();
    let (peer, confirm) = acceptor.on_response(&peers, &secrets[1].proposal_key, &b.channel_binding().unwrap(), &response).unwrap();
    assert_eq!(peer, 0);
    assert!(b.send(&confirm));
    let confirm = recv(&b, &a).await.try_into().unwrap();
    connector.on_confirm(&peers, &a.channel_binding().unwrap(), &confirm).unwrap();

    // Frames of every size arrive whole and in order.
    let big: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let frames = [Vec::new(), vec![7], vec![1; FRAGMENT], vec![2; FRAGMENT + 1], big];
    for f in &frames {
        assert!(a.send(f));
    }
    for f in &frames {
        assert_eq!(&recv(&a, &b).await, f);
    }
    assert!(b.send(b"back"));
    assert_eq!(recv(&b, &a).await, b"back");

    // The peer goes away: noticed.
    a.close();
    for _ in 0..400 {
        if b.is_closed() {
            return;
        }
        sleep(25).await;
    }
    panic!("the other side did not notice the link closed");
}

#[wasm_bindgen_test]
async fn a_proof_for_another_channel_does_not_verify() {
    let (a, b) = connected_pair().await;
    let (c, _d) = connected_pair().await;
    let (public, secrets) = deal(2, &[9; 32]);
    let peers = PeerKeys::new(&public);
    let (acceptor, challenge) = Acceptor::new(1, [1; 32]);
    let mut connector = Connector::new(0, 1, [2; 32]);
    // A relay that terminated DTLS on another link replays node 0's proof made for that link.
    let response = connector.on_challenge(&peers, &secrets[0].proposal_key, &c.channel_binding().unwrap(), &challenge).unwrap();
    assert!(acceptor.on_response(&peers, &secrets[1].proposal_key, &b.channel_binding().unwrap(), &response).is_err());
    drop(a);
}

#[wasm_bindgen_test]
async fn a_peer_that_breaks_the_framing_is_cut_off() {
    // Fragments that add up past the frame limit: cut off before the limit is held.
    let (a, b) = connected_pair().await;
    let mut fragment = vec![1u8; FRAGMENT + 1];
    fragment[0] = 1; // more follows
    for _ in 0..(tabnet_node::codec::MAX_FRAME / FRAGMENT + 2) {
        if b.is_closed() {
            break;
        }
        let _ = a.send_raw(&fragment);
        sleep(1).await;
    }
    for _ in 0..400 {
        if b.is_closed() {
            break;
        }
        sleep(25).await;
    }
    assert!(b.is_closed(), "a frame past the limit was accepted");
    assert!(b.error().unwrap().contains("frames are at most"), "{:?}", b.error());
    assert!(b.recv().is_none());

    // An oversized fragment: cut off at once.
    let (a, b) = connected_pair().await;
    a.send_raw(&vec![0u8; FRAGMENT + 2]).unwrap();
    for _ in 0..400 {
        if b.is_closed() {
            break;
        }
        sleep(25).await;
    }
    assert!(b.is_closed() && b.error().is_some());
}

#[wasm_bindgen_test]
async fn a_peer_that_sends_more_than_the_node_takes_is_cut_off() {
    // The node takes nothing while its peer sends 1 MiB frames: once what waits passes the cap,
    // the link is cut and what was held is dropped.
    let (a, b) = connected_pair().await;
    let frame = vec![3u8; 1 << 20];
    let mut sent = 0;
    for _ in 0..2_000 {
        if b.is_closed() {
            break;
        }
        if sent < RECEIVED_BYTES / frame.len() + 8 {
            assert!(a.send(&frame) || a.is_closed());
            sent += 1;
        }
        a.flush();
        sleep(5).await;
    }
    assert!(b.is_closed(), "{sent} frames of 1 MiB were all held");
    assert!(b.error().unwrap().contains("not yet taken"), "{:?}", b.error());
    assert!(b.recv().is_none(), "what was held is dropped");
}
