//! A subnet whose keys come from a trusted dealer: every node derives its secrets from one seed
//! (and could derive the others'). The bootstrap subnets (native processes, browser tabs) use
//! it; a real distributed key generation comes with chain evolution.

use std::sync::Arc;

use tabnet_consensus::handshake::PeerKeys;
use tabnet_consensus::{deal, Config, Hash, NodeIndex, NodeSecrets, SubnetPublicKeys};
use tabnet_crypto::node_key::ED25519_DER_PREFIX;
use tabnet_replica::Member;

use crate::NodeConfig;

/// Node `index`'s part of the subnet dealt from a seed.
pub struct DealtNode {
    pub public: Arc<SubnetPublicKeys>,
    pub secret: NodeSecrets,
    /// What the replica needs: the root key, this node's query-signing key, everyone's.
    pub member: Member,
    /// Every member's node key, for the gossip handshake.
    pub peers: PeerKeys,
}

pub fn dealt_node(nodes: usize, dealer_seed: &[u8; 32], index: NodeIndex) -> DealtNode {
    let (public, mut secrets) = deal(nodes, dealer_seed);
    member_node(index, public, secrets.swap_remove(index))
}

/// Node `index` of the subnet whose keys are `public`, holding `secret`.
pub fn member_node(index: NodeIndex, public: SubnetPublicKeys, secret: NodeSecrets) -> DealtNode {
    let member = Member {
        root_key_der: public.high.group.to_der(),
        node_key_seed: secret.proposal_key.to_bytes(),
        nodes: public.proposal_keys.iter().map(|k| [&ED25519_DER_PREFIX[..], k.as_bytes()].concat()).collect(),
        me: index,
    };
    let peers = PeerKeys::new(&public);
    DealtNode { public: Arc::new(public), secret, member, peers }
}

/// The genesis block and beacon of the subnet dealt from `dealer_seed` derive from this.
pub fn genesis_seed(dealer_seed: &[u8; 32]) -> Hash {
    tabnet_crypto::sha256(&[b"tabnet-genesis".as_slice(), dealer_seed].concat())
}

/// How nodes on one machine or one network of tabs run: delays between them are milliseconds,
/// so notaries need not wait for rank 0's block (mainnet waits 300 ms); an idle subnet makes
/// about four blocks a second. `genesis`: see [`genesis_seed`].
pub fn local_node_config(genesis: Hash, dkg_interval: u64) -> NodeConfig {
    let consensus = Config { unit_delay: 1_000, initial_notary_delay: 0, idle_block_delay: 250, dkg_interval, ..Config::default() };
    NodeConfig::new(consensus, genesis)
}
