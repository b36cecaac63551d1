//! The gossip handshake (crate/consensus/src/handshake.rs), fed the peer's side as
//! crate/native/src/gossip.rs reads it: fixed-size messages from a byte stream (a short input is
//! a connection that closed). The first byte picks this node's role:
//!
//! - even: this node (member 0) was dialled; the rest is the connector's response.
//! - odd: this node (member 1) dialled member 0; the rest is the challenge, then the confirmation.
//!
//! Neither side may panic, and neither may accept without a valid signature: Ed25519 signing is
//! deterministic, so the only accepted input is the exact message the genuine member's key
//! makes for these nonces, which the harness computes and compares (a second, malleated
//! encoding of a signature would be a finding). Every message is a fixed-size array on the
//! stack: nothing the peer says is a length.

use std::sync::OnceLock;

use crate::Seed;
use tabnet_consensus::deal;
use tabnet_consensus::handshake::{Acceptor, Connector, PeerKeys, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};

const NODES: usize = 4;
/// This node's nonce: fixed, so that inputs replay (a node draws a fresh one per connection).
const NONCE: [u8; 32] = [0x42; 32];

fn subnet() -> &'static (PeerKeys, Vec<SigningKey>) {
    static SUBNET: OnceLock<(PeerKeys, Vec<SigningKey>)> = OnceLock::new();
    SUBNET.get_or_init(|| {
        let (public, secrets) = deal(NODES, &[0x5e; 32]);
        (PeerKeys::new(&public), secrets.into_iter().map(|s| s.proposal_key).collect())
    })
}

/// Reads a fixed-size message off the front of `stream`, as `read_exact` does.
fn read<const N: usize>(stream: &mut &[u8]) -> Option<[u8; N]> {
    let message = stream.get(..N)?.try_into().ok()?;
    *stream = &stream[N..];
    Some(message)
}

/// Whether the handshake accepted the peer (and as whom, for the acceptor).
fn handshake(data: &[u8]) -> Option<Result<Option<usize>, String>> {
    let (peers, keys) = subnet();
    let (&role, mut stream) = data.split_first()?;
    if role % 2 == 0 {
        let (acceptor, challenge) = Acceptor::new(0, NONCE);
        let response: [u8; RESPONSE_LEN] = read(&mut stream)?;
        let Ok((from, confirm)) = acceptor.on_response(peers, &keys[0], b"", &response) else { return Some(Err("refused".into())) };
        // Accepted: the response must be the one member `from` makes for this challenge.
        let their_nonce: [u8; 32] = response[4..36].try_into().unwrap();
        let genuine = Connector::new(from, 0, their_nonce).on_challenge(peers, &keys[from], b"", &challenge).expect("a member answers a challenge");
        assert!(response == genuine, "the acceptor took a response its member's key did not make: {response:02x?}");
        assert_eq!(confirm.len(), CONFIRM_LEN);
        Some(Ok(Some(from)))
    } else {
        let mut connector = Connector::new(1, 0, NONCE);
        let challenge: [u8; CHALLENGE_LEN] = read(&mut stream)?;
        let Ok(response) = connector.on_challenge(peers, &keys[1], b"", &challenge) else { return Some(Err("refused".into())) };
        let confirm: [u8; CONFIRM_LEN] = read(&mut stream)?;
        if connector.on_confirm(peers, b"", &confirm).is_err() {
            return Some(Err("refused".into()));
        }
        // Accepted: the confirmation must be the one member 0 makes for this exchange.
        let their_nonce: [u8; 32] = challenge[8..].try_into().unwrap();
        let (acceptor, _) = Acceptor::new(0, their_nonce);
        let (_, genuine) = acceptor.on_response(peers, &keys[0], b"", &response).expect("member 0 accepts member 1's response");
        assert!(confirm == genuine, "the connector took a confirmation member 0's key did not make: {confirm:02x?}");
        Some(Ok(None))
    }
}

pub fn run(data: &[u8]) {
    let _ = handshake(data);
}

/// Seeds named `accepted-*` must be accepted, the others refused.
pub fn check(seed: &Seed) -> Result<(), String> {
    let outcome = handshake(&seed.bytes).ok_or("the input ends before the handshake does")?;
    match (seed.name.starts_with("accepted-"), outcome) {
        (true, Ok(_)) | (false, Err(_)) => Ok(()),
        (true, Err(e)) => Err(format!("a genuine handshake was {e}")),
        (false, Ok(_)) => Err("a handshake that should fail was accepted".into()),
    }
}

pub fn seeds() -> Vec<Seed> {
    let (peers, keys) = subnet();
    // Member 2 dials this node (member 0), which challenged with NONCE.
    let (_, challenge) = Acceptor::new(0, NONCE);
    let response = Connector::new(2, 0, [7; 32]).on_challenge(peers, &keys[2], b"", &challenge).unwrap();
    let mut forged = response;
    forged[40] ^= 1;
    let mut wrong_member = response;
    wrong_member[3] = 3;
    // This node (member 1) dials member 0, which challenges with its nonce [9; 32].
    let (acceptor, challenge_0) = Acceptor::new(0, [9; 32]);
    let answer = Connector::new(1, 0, NONCE).on_challenge(peers, &keys[1], b"", &challenge_0).unwrap();
    let (_, confirm) = acceptor.on_response(peers, &keys[0], b"", &answer).unwrap();
    let dial = |confirm: &[u8]| [&[1u8][..], &challenge_0, confirm].concat();
    vec![
        Seed::new("accepted-response", [&[0u8][..], &response].concat()),
        Seed::new("forged-response", [&[0u8][..], &forged].concat()),
        Seed::new("response-of-another-member", [&[0u8][..], &wrong_member].concat()),
        Seed::new("accepted-dial", dial(&confirm)),
        Seed::new("dial-with-own-confirmation", dial(&keys[1].to_bytes().repeat(2))),
        Seed::new("dial-to-a-stranger", [&[1u8][..], b"tbg1", &[0, 0, 0, 2], &[0; 32][..], &[0; CONFIRM_LEN]].concat()),
    ]
}
