//! What one faulty peer can make a node hold and check: junk aggregates and catch-up packages
//! are charged to their sender, and one sender's junk never takes an honest peer's place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tabnet_consensus::{Aggregate, Artifact, Beacon, Block, Config, ConsensusNode, Crypto, Cup, Hash, IngressCheck, Kind, Message, NodeIndex, Sig, SimCrypto, SimKeys, Start, Time};

const N: usize = 4;

/// The simulator's keys, counting every aggregate (BLS) verification: the cost a peer imposes.
struct Counting {
    inner: SimCrypto,
    verified: Arc<AtomicU64>,
}

impl Crypto for Counting {
    fn nodes(&self) -> usize {
        self.inner.nodes()
    }
    fn me(&self) -> NodeIndex {
        self.inner.me()
    }
    fn sign_proposal(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign_proposal(msg)
    }
    fn verify_proposal(&self, maker: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.inner.verify_proposal(maker, msg, sig)
    }
    fn sign_share(&self, kind: Kind, msg: &[u8]) -> Sig {
        self.inner.sign_share(kind, msg)
    }
    fn verify_share(&self, kind: Kind, signer: NodeIndex, msg: &[u8], sig: &Sig) -> bool {
        self.inner.verify_share(kind, signer, msg, sig)
    }
    fn combine(&self, kind: Kind, msg: &[u8], shares: &[(NodeIndex, Sig)]) -> Option<Sig> {
        self.inner.combine(kind, msg, shares)
    }
    fn verify_aggregate(&self, kind: Kind, signers: &[NodeIndex], msg: &[u8], sig: &Sig) -> bool {
        self.verified.fetch_add(1, Ordering::Relaxed);
        self.inner.verify_aggregate(kind, signers, msg, sig)
    }
}

struct AnyIngress;

impl IngressCheck for AnyIngress {
    fn expiry(&self, _: &[u8]) -> Result<Time, String> {
        Ok(Time::MAX)
    }
    fn admit(&self, _: Time, _: &[u8]) -> Result<Time, String> {
        Ok(Time::MAX)
    }
}

fn node() -> (ConsensusNode, Arc<AtomicU64>, Arc<SimKeys>) {
    let keys = SimKeys::new(N, 1);
    let verified = Arc::new(AtomicU64::new(0));
    let crypto = Arc::new(Counting { inner: SimCrypto::new(0, keys.clone()), verified: verified.clone() });
    (ConsensusNode::new(Config::default(), crypto, Arc::new(AnyIngress), Start::genesis(&[1; 32])), verified, keys)
}

fn junk(k: u64) -> Hash {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&k.to_be_bytes());
    h
}

fn push(node: &mut ConsensusNode, from: NodeIndex, artifact: Artifact) {
    node.on_message(1_000, from, Message::Push(artifact));
}

#[test]
fn junk_aggregates_cost_one_check_and_then_their_sender_is_ignored() {
    let (mut node, verified, _) = node();
    // Peer 1 sends 500 certifications and catch-up aggregates of made-up states, in range.
    for k in 0..500u64 {
        let kind = if k % 2 == 0 { Kind::Certification } else { Kind::CatchUp };
        push(&mut node, 1, Artifact::Aggregate(Aggregate { kind, height: 1 + k % 5, content: junk(k), signers: Vec::new(), sig: [7; 48] }));
    }
    let spent = verified.load(Ordering::Relaxed);
    assert!(spent <= 2, "500 junk aggregates from one peer cost {spent} signature checks");
    assert!(node.is_penalized(1));
    assert!(!node.is_penalized(2), "only the sender is charged");
    assert_eq!(node.rejections().get("aggregate with a bad signature"), Some(&1));
}

#[test]
fn junk_catch_up_packages_cost_one_check_and_wait_one_per_sender() {
    let (mut node, verified, _) = node();
    for k in 0..500u64 {
        let block = Block { parent: junk(k), height: 1_000 + k, rank: 0, maker: 1, time: 5, ingress: Vec::new() };
        let cup = Cup { block, beacon: Beacon::genesis(&junk(k)), state_hash: junk(k), checkpoint: junk(k), sig: [7; 48] };
        push(&mut node, 1, Artifact::Cup(Arc::new(cup)));
        assert!(node.unvalidated_len() <= 1);
    }
    let spent = verified.load(Ordering::Relaxed);
    assert!(spent <= 2, "500 junk catch-up packages from one peer cost {spent} signature checks");
    assert!(node.is_penalized(1));
}

#[test]
fn one_senders_junk_does_not_take_an_honest_peers_place() {
    let (mut node, _, keys) = node();
    // Beacons two and more heights ahead wait unchecked. Peer 1 fills height 3 with junk…
    for k in 0..50u64 {
        push(&mut node, 1, Artifact::Aggregate(Aggregate { kind: Kind::Beacon, height: 3, content: junk(k), signers: Vec::new(), sig: [7; 48] }));
    }
    let held = node.unvalidated_len();
    assert!(held <= 2, "one peer's junk beacons held: {held}");
    // …and peer 2's beacon for height 3 (signed with the subnet's beacon key) still gets in.
    let parent = junk(999);
    let msg = Kind::Beacon.message(3, &parent);
    let shares: Vec<(NodeIndex, Sig)> = (1..3).map(|i| (i, SimCrypto::new(i, keys.clone()).sign_share(Kind::Beacon, &msg))).collect();
    let sig = SimCrypto::new(2, keys).combine(Kind::Beacon, &msg, &shares).unwrap();
    push(&mut node, 2, Artifact::Aggregate(Aggregate { kind: Kind::Beacon, height: 3, content: parent, signers: Vec::new(), sig }));
    assert_eq!(node.unvalidated_len(), held + 1, "an honest peer's beacon was refused: one sender's junk filled its place");
}
