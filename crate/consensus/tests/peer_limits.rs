//! What one faulty peer can make a node hold and check: junk aggregates and catch-up packages
//! are charged to their sender, and one sender's junk never takes an honest peer's place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tabnet_consensus::{Aggregate, Artifact, Beacon, Block, Config, ConsensusNode, Crypto, Cup, Hash, IngressCheck, Kind, Message, NodeIndex, Output, Sig, SimCrypto, SimKeys, Start, Time};

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

/// Four honest nodes on a perfect network, run until node 0 has finalized `height`.
fn subnet_at(height: u64) -> Vec<ConsensusNode> {
    let keys = SimKeys::new(N, 2);
    let mut nodes: Vec<ConsensusNode> = (0..N)
        .map(|i| {
            let config = Config { unit_delay: 100, initial_notary_delay: 30, ..Config::default() };
            ConsensusNode::new(config, Arc::new(SimCrypto::new(i, keys.clone())), Arc::new(AnyIngress), Start::genesis(&[1; 32]))
        })
        .collect();
    let mut now = 1_000;
    while nodes[0].finalized_height() < height {
        assert!(now < 100_000, "the subnet does not finalize");
        now += 10;
        for node in nodes.iter_mut() {
            node.on_timer(now);
        }
        // Deliver everything sent, and execute what is finalized, until all is quiet.
        loop {
            let mut sent = Vec::new();
            for (i, node) in nodes.iter_mut().enumerate() {
                while let Some(output) = node.poll() {
                    match output {
                        Output::Send { to, message } => sent.push((i, to, message)),
                        Output::Deliver(batch) => {
                            let checkpoint = batch.checkpoint.then_some([9; 32]);
                            node.on_executed(now, batch.height, [batch.height as u8; 32], checkpoint);
                        }
                        _ => {}
                    }
                }
            }
            if sent.is_empty() {
                break;
            }
            for (from, to, message) in sent {
                for (k, node) in nodes.iter_mut().enumerate() {
                    if k != from && to.is_none_or(|t| t == k) {
                        node.on_message(now, from, message.clone());
                    }
                }
            }
        }
    }
    nodes
}

#[test]
fn catch_up_requests_repeated_by_one_peer_are_not_answered_each_time() {
    let mut nodes = subnet_at(3);
    let node = &mut nodes[0];
    while node.poll().is_some() {}
    let now = 200_000;
    // Peer 1 asks for everything since genesis 100 times in a row.
    for _ in 0..100 {
        node.on_message(now, 1, Message::CatchUpRequest { finalized: 0 });
    }
    let mut answers = 0;
    while let Some(output) = node.poll() {
        if let Output::Send { to: Some(1), message: Message::CatchUp(_) } = output {
            answers += 1;
        }
    }
    assert_eq!(answers, 1, "one peer asking again and again was answered {answers} times (each answer up to 8 MiB)");
    // A second later it may ask again; a follow-up from the top of what it got is answered at once.
    node.on_message(now + 1_000, 1, Message::CatchUpRequest { finalized: 0 });
    node.on_message(now + 1_000, 2, Message::CatchUpRequest { finalized: 0 });
    let served: Vec<usize> = std::iter::from_fn(|| node.poll()).filter_map(|o| match o {
        Output::Send { to: Some(to), message: Message::CatchUp(_) } => Some(to),
        _ => None,
    }).collect();
    assert_eq!(served, [1, 2]);
}
