//! How two nodes prove who they are before they gossip, sans-IO: the driver moves the bytes
//! (TCP natively; later a WebRTC data channel) and supplies the randomness.
//!
//! Three fixed-size messages, so a reader never allocates on a length a stranger claims:
//!
//! 1. acceptor → connector, [`Challenge`]: magic, the acceptor's index, a fresh 32-byte nonce.
//! 2. connector → acceptor, [`Response`]: the connector's index, its own fresh nonce, and its
//!    node key's Ed25519 signature over
//!    `"tabnet-gossip-connect" ‖ subnet id ‖ channel ‖ acceptor ‖ connector ‖ acceptor's nonce ‖ connector's nonce`.
//! 3. acceptor → connector, [`Confirm`]: the acceptor's signature over the same with
//!    `"tabnet-gossip-accept"`, so the connector knows it reached the node it dialled.
//!
//! The acceptor's nonce is fresh per connection, so a recorded response never verifies again;
//! the indices and the direction tag keep a signature from being reflected or relayed to another
//! node. `channel` binds the proof to the transport underneath: empty on loopback TCP, the DTLS
//! certificate fingerprints over WebRTC (so a relay in the middle cannot reuse it).

use ed25519_dalek::{Signature, Signer, VerifyingKey};
/// A node key (the same Ed25519 key that signs its blocks).
pub use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::artifact::{Hash, NodeIndex};
use crate::crypto::SubnetPublicKeys;

pub const CHALLENGE_LEN: usize = 4 + 4 + 32;
pub const RESPONSE_LEN: usize = 4 + 32 + 64;
pub const CONFIRM_LEN: usize = 64;
const MAGIC: [u8; 4] = *b"tbg1";

/// The node keys of a subnet's members, and the subnet's identity that every proof names.
#[derive(Clone, Debug)]
pub struct PeerKeys {
    subnet: Hash,
    keys: Vec<VerifyingKey>,
}

impl PeerKeys {
    /// The subnet is identified by its members' node keys and its threshold public key.
    pub fn new(public: &SubnetPublicKeys) -> Self {
        let mut h = Sha256::new();
        h.update(b"tabnet-subnet-id");
        h.update((public.proposal_keys.len() as u64).to_be_bytes());
        for key in &public.proposal_keys {
            h.update(key.as_bytes());
        }
        h.update(public.high.group.to_der());
        PeerKeys { subnet: h.finalize().into(), keys: public.proposal_keys.clone() }
    }

    pub fn nodes(&self) -> usize {
        self.keys.len()
    }

    fn verify(&self, signer: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.keys.get(signer).is_some_and(|key| key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok())
    }

    fn transcript(&self, tag: &[u8], channel: &[u8], acceptor: NodeIndex, connector: NodeIndex, nonces: (&[u8; 32], &[u8; 32])) -> Vec<u8> {
        let mut m = Vec::with_capacity(tag.len() + 32 + 8 + channel.len() + 16 + 64);
        m.extend_from_slice(tag);
        m.extend_from_slice(&self.subnet);
        m.extend_from_slice(&(channel.len() as u64).to_be_bytes());
        m.extend_from_slice(channel);
        m.extend_from_slice(&(acceptor as u64).to_be_bytes());
        m.extend_from_slice(&(connector as u64).to_be_bytes());
        m.extend_from_slice(nonces.0);
        m.extend_from_slice(nonces.1);
        m
    }
}

const CONNECT: &[u8] = b"tabnet-gossip-connect";
const ACCEPT: &[u8] = b"tabnet-gossip-accept";

#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a challenge of this protocol.
    Malformed,
    /// The index is no member of the subnet, is our own, or is not the node we dialled.
    WrongPeer(u32),
    /// The signature does not verify under that member's node key.
    BadSignature,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Malformed => write!(f, "not a tabnet gossip handshake"),
            HandshakeError::WrongPeer(k) => write!(f, "peer index {k} is not the expected member"),
            HandshakeError::BadSignature => write!(f, "the peer's signature does not verify under its node key"),
        }
    }
}

pub type Challenge = [u8; CHALLENGE_LEN];
pub type Response = [u8; RESPONSE_LEN];
pub type Confirm = [u8; CONFIRM_LEN];

/// The side that was dialled: challenges, then checks the response.
pub struct Acceptor {
    me: NodeIndex,
    nonce: [u8; 32],
}

impl Acceptor {
    /// `nonce` must be fresh randomness (never reused): it is what makes replays fail.
    pub fn new(me: NodeIndex, nonce: [u8; 32]) -> (Self, Challenge) {
        let mut challenge = [0u8; CHALLENGE_LEN];
        challenge[..4].copy_from_slice(&MAGIC);
        challenge[4..8].copy_from_slice(&(me as u32).to_be_bytes());
        challenge[8..].copy_from_slice(&nonce);
        (Acceptor { me, nonce }, challenge)
    }

    /// Checks the connector's proof; returns who it is and the confirmation to send it.
    pub fn on_response(self, peers: &PeerKeys, key: &SigningKey, channel: &[u8], response: &Response) -> Result<(NodeIndex, Confirm), HandshakeError> {
        let raw = u32::from_be_bytes(response[..4].try_into().expect("4 bytes"));
        let connector = raw as NodeIndex;
        if connector >= peers.nodes() || connector == self.me {
            return Err(HandshakeError::WrongPeer(raw));
        }
        let their_nonce: [u8; 32] = response[4..36].try_into().expect("32 bytes");
        let sig: [u8; 64] = response[36..].try_into().expect("64 bytes");
        let msg = peers.transcript(CONNECT, channel, self.me, connector, (&self.nonce, &their_nonce));
        if !peers.verify(connector, &msg, &sig) {
            return Err(HandshakeError::BadSignature);
        }
        let confirm = peers.transcript(ACCEPT, channel, self.me, connector, (&self.nonce, &their_nonce));
        Ok((connector, key.sign(&confirm).to_bytes()))
    }
}

/// The member a response claims to come from, before anything is checked (so that a member
/// shut out for a while costs no signature check when it comes back at once).
pub fn claimed_sender(response: &Response) -> NodeIndex {
    u32::from_be_bytes(response[..4].try_into().expect("4 bytes")) as NodeIndex
}

/// The side that dialled node `peer`: answers its challenge, then checks its confirmation.
pub struct Connector {
    me: NodeIndex,
    peer: NodeIndex,
    nonce: [u8; 32],
    /// The acceptor's nonce, once its challenge came.
    theirs: Option<[u8; 32]>,
}

impl Connector {
    /// `nonce`: fresh randomness, so the confirmation cannot be a replayed one.
    pub fn new(me: NodeIndex, peer: NodeIndex, nonce: [u8; 32]) -> Self {
        Connector { me, peer, nonce, theirs: None }
    }

    pub fn on_challenge(&mut self, peers: &PeerKeys, key: &SigningKey, channel: &[u8], challenge: &Challenge) -> Result<Response, HandshakeError> {
        if challenge[..4] != MAGIC {
            return Err(HandshakeError::Malformed);
        }
        let acceptor = u32::from_be_bytes(challenge[4..8].try_into().expect("4 bytes"));
        if acceptor as NodeIndex != self.peer {
            return Err(HandshakeError::WrongPeer(acceptor));
        }
        let theirs: [u8; 32] = challenge[8..].try_into().expect("32 bytes");
        self.theirs = Some(theirs);
        let msg = peers.transcript(CONNECT, channel, self.peer, self.me, (&theirs, &self.nonce));
        let mut response = [0u8; RESPONSE_LEN];
        response[..4].copy_from_slice(&(self.me as u32).to_be_bytes());
        response[4..36].copy_from_slice(&self.nonce);
        response[36..].copy_from_slice(&key.sign(&msg).to_bytes());
        Ok(response)
    }

    /// Whether the node dialled proved it holds its key.
    pub fn on_confirm(self, peers: &PeerKeys, channel: &[u8], confirm: &Confirm) -> Result<(), HandshakeError> {
        let theirs = self.theirs.ok_or(HandshakeError::Malformed)?;
        let msg = peers.transcript(ACCEPT, channel, self.peer, self.me, (&theirs, &self.nonce));
        if peers.verify(self.peer, &msg, confirm) {
            Ok(())
        } else {
            Err(HandshakeError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::deal;

    fn subnet() -> (PeerKeys, Vec<SigningKey>) {
        let (public, secrets) = deal(4, &[9; 32]);
        (PeerKeys::new(&public), secrets.into_iter().map(|s| s.proposal_key).collect())
    }

    /// Runs a handshake of `connector` dialling `acceptor`; returns who the acceptor thinks it is.
    fn run(peers: &PeerKeys, keys: &[SigningKey], acceptor: NodeIndex, connector: NodeIndex) -> Result<NodeIndex, HandshakeError> {
        let (a, challenge) = Acceptor::new(acceptor, [acceptor as u8 + 1; 32]);
        let mut c = Connector::new(connector, acceptor, [connector as u8 + 100; 32]);
        let response = c.on_challenge(peers, &keys[connector], b"", &challenge)?;
        let (who, confirm) = a.on_response(peers, &keys[acceptor], b"", &response)?;
        c.on_confirm(peers, b"", &confirm)?;
        Ok(who)
    }

    #[test]
    fn members_prove_their_keys_to_each_other() {
        let (peers, keys) = subnet();
        assert_eq!(run(&peers, &keys, 0, 3), Ok(3));
        assert_eq!(run(&peers, &keys, 2, 1), Ok(1));
    }

    #[test]
    fn a_claimed_index_without_its_key_is_refused() {
        let (peers, keys) = subnet();
        let (a, challenge) = Acceptor::new(0, [1; 32]);
        // An outsider (or node 2) claims to be node 1, signing with a key that is not node 1's.
        let mut forger = Connector::new(1, 0, [2; 32]);
        let response = forger.on_challenge(&peers, &keys[2], b"", &challenge).unwrap();
        assert_eq!(a.on_response(&peers, &keys[0], b"", &response).map(|r| r.0), Err(HandshakeError::BadSignature));
        // Indices outside the subnet, or the acceptor's own, are refused before any check.
        for claimed in [0u32, 4, u32::MAX] {
            let (a, _) = Acceptor::new(0, [1; 32]);
            let mut response = response;
            response[..4].copy_from_slice(&claimed.to_be_bytes());
            assert_eq!(a.on_response(&peers, &keys[0], b"", &response).map(|r| r.0), Err(HandshakeError::WrongPeer(claimed)));
        }
    }

    #[test]
    fn a_recorded_handshake_does_not_replay() {
        let (peers, keys) = subnet();
        let (a, challenge) = Acceptor::new(0, [1; 32]);
        let mut c = Connector::new(3, 0, [7; 32]);
        let recorded = c.on_challenge(&peers, &keys[3], b"", &challenge).unwrap();
        assert!(a.on_response(&peers, &keys[0], b"", &recorded).is_ok());
        // The same bytes against a fresh challenge of the same node, or another node, fail.
        let (again, _) = Acceptor::new(0, [5; 32]);
        assert_eq!(again.on_response(&peers, &keys[0], b"", &recorded).map(|r| r.0), Err(HandshakeError::BadSignature));
        let (other, _) = Acceptor::new(1, [1; 32]);
        assert_eq!(other.on_response(&peers, &keys[1], b"", &recorded).map(|r| r.0), Err(HandshakeError::BadSignature));
        // Bound to the channel underneath: the same proof over another channel fails.
        let (a, challenge) = Acceptor::new(0, [1; 32]);
        let mut c = Connector::new(3, 0, [7; 32]);
        let response = c.on_challenge(&peers, &keys[3], b"dtls fingerprint A", &challenge).unwrap();
        assert_eq!(a.on_response(&peers, &keys[0], b"dtls fingerprint B", &response).map(|r| r.0), Err(HandshakeError::BadSignature));
    }

    #[test]
    fn the_connector_checks_it_reached_the_node_it_dialled() {
        let (peers, keys) = subnet();
        // Someone else answers on node 1's address: it cannot confirm as node 1.
        let (a, challenge) = Acceptor::new(1, [1; 32]);
        let mut c = Connector::new(0, 1, [2; 32]);
        let response = c.on_challenge(&peers, &keys[0], b"", &challenge).unwrap();
        let (_, confirm) = a.on_response(&peers, &keys[2], b"", &response).unwrap();
        assert_eq!(c.on_confirm(&peers, b"", &confirm), Err(HandshakeError::BadSignature));
        // A challenge naming another node than the one dialled, or not of this protocol, is refused.
        let (_, challenge) = Acceptor::new(2, [1; 32]);
        assert_eq!(Connector::new(0, 1, [2; 32]).on_challenge(&peers, &keys[0], b"", &challenge), Err(HandshakeError::WrongPeer(2)));
        let mut junk = challenge;
        junk[0] = b'x';
        assert_eq!(Connector::new(0, 2, [2; 32]).on_challenge(&peers, &keys[0], b"", &junk), Err(HandshakeError::Malformed));
        // A node's own confirmation cannot be reflected back as a response, nor vice versa.
        let (a, challenge) = Acceptor::new(1, [1; 32]);
        let mut c = Connector::new(0, 1, [2; 32]);
        let response = c.on_challenge(&peers, &keys[0], b"", &challenge).unwrap();
        let (_, confirm) = a.on_response(&peers, &keys[1], b"", &response).unwrap();
        let mut reflected = response;
        reflected[36..].copy_from_slice(&confirm);
        let (a, _) = Acceptor::new(1, [1; 32]);
        assert_eq!(a.on_response(&peers, &keys[1], b"", &reflected).map(|r| r.0), Err(HandshakeError::BadSignature));
    }
}
