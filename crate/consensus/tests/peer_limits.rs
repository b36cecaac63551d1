//! What one faulty peer can make a node hold, check and answer: junk aggregates, catch-up
//! packages and forged ingress are charged to their sender; one sender's junk never takes an
//! honest peer's place; a peer's requests (blocks, ingress, state-sync chunks) are answered
//! at its rate, each charged what the answer weighs; its adverts make the node chase a bounded
//! number of artifacts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tabnet_consensus::limits::Rates;
use tabnet_consensus::{
    Aggregate, Artifact, ArtifactId, Beacon, Block, Checkpoint, Config, ConsensusNode, Crypto, Cup, Hash, Ingress, IngressCheck, Kind, Message,
    NodeIndex, Output, Sig, SimCrypto, SimKeys, Start, SyncMessage, Time, MAX_FETCHES_PER_PEER,
};

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
    let served: Vec<usize> = std::iter::from_fn(|| node.poll())
        .filter_map(|o| match o {
            Output::Send { to: Some(to), message: Message::CatchUp(_) } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(served, [1, 2]);
}

/// Drains `node`'s outputs: how many were sent to `to`, matching `what`.
fn sent_to(node: &mut ConsensusNode, to: NodeIndex, what: impl Fn(&Message) -> bool) -> usize {
    std::iter::from_fn(|| node.poll()).filter(|o| matches!(o, Output::Send { to: Some(t), message } if *t == to && what(message))).count()
}

#[test]
fn a_peer_asking_for_a_block_in_a_loop_is_throttled_and_others_are_still_answered() {
    let mut nodes = subnet_at(3);
    let node = &mut nodes[0];
    while node.poll().is_some() {}
    let block = ArtifactId::Block(node.finalized_hash(2).unwrap());
    let now = 200_000;
    for _ in 0..100_000 {
        node.on_message(now, 1, Message::Request(block));
    }
    let answered = sent_to(node, 1, |m| matches!(m, Message::Push(Artifact::Proposal(_))));
    let burst = Rates::REQUESTS.item_burst as usize;
    assert!(answered <= burst + 1, "100,000 requests in a burst were answered {answered} times");
    assert!(node.requests_dropped(1) >= 100_000 - burst as u64 - 1);
    node.on_message(now, 2, Message::Request(block));
    assert_eq!(sent_to(node, 2, |m| matches!(m, Message::Push(Artifact::Proposal(_)))), 1, "another peer has its own share");
    // Its rate comes back with time.
    node.on_message(now + 1_000, 1, Message::Request(block));
    assert_eq!(sent_to(node, 1, |_| true), 1);
}

#[test]
fn requests_are_charged_what_their_answers_weigh() {
    let (mut node, _, _) = node();
    // A 1 MiB message in the pool, asked for by peer 1 again and again.
    let id = node.submit_ingress(1_000, Ingress { bytes: vec![7; 1 << 20] }).unwrap();
    while node.poll().is_some() {}
    for _ in 0..1_000 {
        node.on_message(2_000, 1, Message::Request(ArtifactId::Ingress(id)));
    }
    let answered = sent_to(&mut node, 1, |m| matches!(m, Message::Push(Artifact::Ingress(_))));
    let most = (Rates::REQUESTS.byte_burst >> 20) as usize + 2;
    assert!((most - 4..=most).contains(&answered), "1,000 requests for 1 MiB answered {answered} times (the burst is {most} MiB)");
}

#[test]
fn a_peer_asking_for_state_sync_chunks_in_a_loop_is_throttled() {
    let (mut node, _, _) = node();
    let checkpoint = Checkpoint::with_chunk_bytes(50, (0..8u32 << 20).map(|i| i as u8).collect(), 1 << 20);
    let ask = SyncMessage::ChunkRequest { height: 50, index: 3 };
    let answered = |node: &mut ConsensusNode, now: Time, peer: NodeIndex, times: usize| {
        (0..times).filter(|_| matches!(node.answer_sync(now, peer, &ask, [&checkpoint]), Some(SyncMessage::Chunk { .. }))).count()
    };
    let burst = answered(&mut node, 1_000, 1, 1_000);
    let rate = (Rates::REQUESTS.bytes_per_second >> 20) as usize;
    assert!(burst <= (Rates::REQUESTS.byte_burst >> 20) as usize + 1, "1,000 chunk requests at once answered {burst} times");
    assert!(node.requests_dropped(1) >= 900);
    // A second later, the second's rate of chunks again (the debt of the last one first).
    let later = answered(&mut node, 2_000, 1, 1_000);
    assert!((rate - 1..=rate + 1).contains(&later), "{later} chunks a second later (rate {rate} MiB/s)");
    assert_eq!(answered(&mut node, 2_000, 2, 1), 1, "another peer is answered");
    assert!(node.answer_sync(2_000, 9, &ask, [&checkpoint]).is_none(), "no answer to a non-member");
}

/// Ingress whose bytes begin "forged" does not verify; the first 8 bytes of the rest are its
/// expiry.
struct Signed;

impl IngressCheck for Signed {
    fn expiry(&self, bytes: &[u8]) -> Result<Time, String> {
        let tail = bytes.strip_prefix(b"forged").unwrap_or(bytes);
        Ok(Time::from_be_bytes(tail.get(..8).ok_or("short")?.try_into().unwrap()))
    }
    fn admit(&self, now: Time, bytes: &[u8]) -> Result<Time, String> {
        if bytes.starts_with(b"forged") {
            return Err("bad signature".into());
        }
        let expiry = self.expiry(bytes)?;
        if expiry < now {
            return Err("expired".into());
        }
        Ok(expiry)
    }
}

fn ingress(forged: bool, expiry: Time, nonce: u8) -> Arc<Ingress> {
    let head: &[u8] = if forged { b"forged" } else { b"" };
    Arc::new(Ingress { bytes: [head, &expiry.to_be_bytes(), &[nonce; 40]].concat() })
}

#[test]
fn forged_ingress_from_a_peer_is_verified_off_the_node_never_pooled_and_charged_to_the_peer() {
    let keys = SimKeys::new(N, 1);
    let check = Arc::new(Signed);
    let mut node = ConsensusNode::new(Config::default(), Arc::new(SimCrypto::new(0, keys)), check.clone(), Start::genesis(&[1; 32]));
    let now = 1_000;
    let pushes = [(1, ingress(true, 60_000, 1)), (2, ingress(false, 60_000, 2)), (3, ingress(false, now - 1, 3))];
    for (from, i) in &pushes {
        node.on_message(now, *from, Message::Push(Artifact::Ingress(i.clone())));
    }
    // Nothing is checked on the node's own path: all three wait for the driver to verify them.
    assert_eq!(node.ingress_pool_len(), 0);
    let waiting: Vec<_> = std::iter::from_fn(|| node.poll())
        .filter_map(|o| match o {
            Output::VerifyIngress(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(waiting.iter().map(|u| u.sender()).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
    for u in waiting {
        let _ = node.on_ingress_verified(now, u.verify(&*check));
    }
    assert_eq!(node.ingress_pool_len(), 1, "only the good message is pooled");
    assert!(node.is_penalized(1), "the peer that sent a forged message is charged");
    assert_eq!(node.rejections().get("ingress that does not verify"), Some(&1));
    assert!(!node.is_penalized(3), "a message that expired on its way is no fault of the peer that relayed it");
    // What peer 1 pushes next is not even verified while it is penalized.
    node.on_message(now, 1, Message::Push(Artifact::Ingress(ingress(true, 60_000, 4))));
    assert!(!std::iter::from_fn(|| node.poll()).any(|o| matches!(o, Output::VerifyIngress(_))));
}

#[test]
fn one_peers_adverts_cannot_make_the_node_chase_without_bound() {
    let (mut node, _, _) = node();
    for k in 0..10_000u64 {
        node.on_message(1_000, 1, Message::Advert(ArtifactId::Ingress(junk(k))));
    }
    let asked = sent_to(&mut node, 1, |m| matches!(m, Message::Request(_)));
    assert_eq!(asked, MAX_FETCHES_PER_PEER, "10,000 junk adverts from one peer made {asked} requests");
    node.on_message(1_000, 2, Message::Advert(ArtifactId::Ingress(junk(1 << 40))));
    assert_eq!(sent_to(&mut node, 2, |m| matches!(m, Message::Request(_))), 1, "another peer's advert is still followed");
}
