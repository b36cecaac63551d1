//! What a node that restarted holds, and what it must still get from its peers.

use std::sync::Arc;

use tabnet_consensus::{Aggregate, Artifact, Block, Config, ConsensusNode, Crypto, Hash, IngressCheck, Kind, Message, NodeIndex, Output, SimCrypto, SimKeys, Start, Time};

const N: usize = 4;

struct AnyIngress;

impl IngressCheck for AnyIngress {
    fn expiry(&self, _: &[u8]) -> Result<Time, String> {
        Ok(Time::MAX)
    }
    fn admit(&self, _: Time, _: &[u8]) -> Result<Time, String> {
        Ok(Time::MAX)
    }
}

/// The finalization of `content` at `height`, signed by nodes 1, 2 and 3.
fn finalization(keys: &Arc<SimKeys>, height: u64, content: Hash) -> Aggregate {
    let msg = Kind::Finalization.message(height, &content);
    let signers: Vec<NodeIndex> = vec![1, 2, 3];
    let shares: Vec<_> = signers.iter().map(|i| (*i, SimCrypto::new(*i, keys.clone()).sign_share(Kind::Finalization, &msg))).collect();
    let sig = SimCrypto::new(1, keys.clone()).combine(Kind::Finalization, &msg, &shares).expect("shares combine");
    Aggregate { kind: Kind::Finalization, height, content, signers, sig }
}

fn catch_up_requests(node: &mut ConsensusNode) -> Vec<(Option<NodeIndex>, u64)> {
    let mut requests = Vec::new();
    while let Some(output) = node.poll() {
        if let Output::Send { to, message: Message::CatchUpRequest { finalized } } = output {
            requests.push((to, finalized));
        }
    }
    requests
}

#[test]
fn a_node_holding_a_finalization_of_a_block_it_lacks_asks_the_peer_that_sends_it_again() {
    // Before a whole-subnet crash node 0 had signed the finalization of node 1's block at
    // height 1 and kept the finalization; it does not keep others' blocks. After the restart, a
    // peer that finalized that block re-sends the finalization while everything waits for it:
    // node 0 must ask that peer to catch it up, each time (its first request may have been sent
    // before the link was up).
    let seed = [1; 32];
    let keys = SimKeys::new(N, 1);
    let genesis = Start::genesis(&seed);
    let block = Block { parent: genesis.block.hash(), height: 1, rank: 0, maker: 1, time: 1, ingress: Vec::new() };
    let fin = finalization(&keys, 1, block.hash());
    let start = Start { persisted: vec![Artifact::Aggregate(fin.clone())], ..Start::genesis(&seed) };
    let crypto: Arc<dyn Crypto> = Arc::new(SimCrypto::new(0, keys.clone()));
    let mut node = ConsensusNode::new(Config::default(), crypto, Arc::new(AnyIngress), start);
    assert_eq!(node.finalized_height(), 0);
    let mut asked = Vec::new();
    for k in 0..4u64 {
        node.on_message(10_000 * (k + 1), 2, Message::Push(Artifact::Aggregate(fin.clone())));
        asked.extend(catch_up_requests(&mut node));
    }
    // Each re-sent finalization it cannot deliver makes a catch-up request; every other one
    // goes to another peer in turn, so a faulty peer re-sending it cannot keep node 0 waiting.
    let to: Vec<Option<NodeIndex>> = asked.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![Some(2), Some(3), Some(2), Some(1)]);
    assert!(asked.iter().all(|(_, finalized)| *finalized == 0));
}
