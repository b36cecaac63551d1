//! The signatures consensus needs, behind one trait: the real scheme on BLS12-381 and Ed25519
//! ([`BlsCrypto`]), and a hash-based stand-in ([`SimCrypto`]) that keeps the same rules (a share
//! checks only against its signer, shares combine to one unique value, forgeries fail) at a
//! thousandth of the cost, so the simulator can run 40 nodes for thousands of rounds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use tabnet_crypto::bls::{self, BlsPublicKey, BlsSecretKey, HashedMessage, PreparedKey};
use tabnet_crypto::threshold::{self, PublicKeySet};

use crate::artifact::{Kind, NodeIndex, Sig};

/// How many shares of a kind make an aggregate in a subnet of `n`.
pub fn threshold(n: usize, kind: Kind) -> usize {
    let f = faults_tolerated(n);
    match kind {
        Kind::Beacon => f + 1,
        Kind::Notarization | Kind::Finalization => n - f,
        Kind::Certification | Kind::CatchUp => 2 * f + 1,
    }
}

/// f = ⌊(n−1)/3⌋.
pub fn faults_tolerated(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// One node's view of the subnet's keys: its own secrets and everyone's public keys.
pub trait Crypto: Send + Sync {
    fn nodes(&self) -> usize;
    fn me(&self) -> NodeIndex;
    fn sign_proposal(&self, msg: &[u8]) -> [u8; 64];
    fn verify_proposal(&self, maker: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool;
    fn sign_share(&self, kind: Kind, msg: &[u8]) -> Sig;
    fn verify_share(&self, kind: Kind, signer: NodeIndex, msg: &[u8], sig: &Sig) -> bool;
    /// Combines shares `(signer, share)` from distinct signers without checking them; an
    /// invalid share yields an aggregate that fails [`Crypto::verify_aggregate`].
    fn combine(&self, kind: Kind, msg: &[u8], shares: &[(NodeIndex, Sig)]) -> Option<Sig>;
    /// `signers` matters for multi-signatures only (threshold signatures name no one).
    fn verify_aggregate(&self, kind: Kind, signers: &[NodeIndex], msg: &[u8], sig: &Sig) -> bool;
}

fn is_multi(kind: Kind) -> bool {
    matches!(kind, Kind::Notarization | Kind::Finalization)
}

/// Everyone's public keys, as the dealer publishes them.
#[derive(Clone, Debug)]
pub struct SubnetPublicKeys {
    pub proposal_keys: Vec<VerifyingKey>,
    /// Individual BLS keys (notarization and finalization multi-signatures).
    pub multi_keys: Vec<BlsPublicKey>,
    /// f+1 of n (random beacon).
    pub low: PublicKeySet,
    /// 2f+1 of n (certification, catch-up packages); `high.group` is the subnet's public key.
    pub high: PublicKeySet,
}

/// One node's secrets.
#[derive(Clone)]
pub struct NodeSecrets {
    pub proposal_key: SigningKey,
    pub multi_key: BlsSecretKey,
    pub low_share: BlsSecretKey,
    pub high_share: BlsSecretKey,
}

/// A trusted dealer: every key of an `n`-node subnet from one seed. (A real DKG comes with
/// chain evolution; until then whoever runs `init-subnet` knows all the secrets.)
pub fn deal(n: usize, seed: &[u8; 32]) -> (SubnetPublicKeys, Vec<NodeSecrets>) {
    let proposal_keys: Vec<SigningKey> = (0..n).map(|i| SigningKey::from_bytes(&dealer_derive(seed, b"proposal", i))).collect();
    let (public, shares) = deal_bls(&proposal_keys.iter().map(SigningKey::verifying_key).collect::<Vec<_>>(), seed);
    let secrets = proposal_keys.into_iter().zip(shares).map(|(key, shares)| shares.with_node_key(key)).collect();
    (public, secrets)
}

/// What a trusted dealer gives one node when the node makes its own node key (tab subnets):
/// its BLS keys.
#[derive(Clone)]
pub struct BlsShares {
    pub multi_key: BlsSecretKey,
    pub low_share: BlsSecretKey,
    pub high_share: BlsSecretKey,
}

impl BlsShares {
    pub fn with_node_key(self, proposal_key: SigningKey) -> NodeSecrets {
        NodeSecrets { proposal_key, multi_key: self.multi_key, low_share: self.low_share, high_share: self.high_share }
    }
}

/// A trusted dealer of the BLS keys of a subnet whose members made their own node keys
/// (`node_keys`, in member order): the same BLS keys as [`deal`] for the same seed.
pub fn deal_bls(node_keys: &[VerifyingKey], seed: &[u8; 32]) -> (SubnetPublicKeys, Vec<BlsShares>) {
    let n = node_keys.len();
    let low = threshold::deal(threshold(n, Kind::Beacon), n, &dealer_derive(seed, b"low", 0));
    let high = threshold::deal(threshold(n, Kind::Certification), n, &dealer_derive(seed, b"high", 0));
    let shares: Vec<BlsShares> = (0..n)
        .map(|i| BlsShares {
            multi_key: BlsSecretKey::from_seed(&dealer_derive(seed, b"multi", i)),
            low_share: low.shares[i].clone(),
            high_share: high.shares[i].clone(),
        })
        .collect();
    let public = SubnetPublicKeys {
        proposal_keys: node_keys.to_vec(),
        multi_keys: shares.iter().map(|s| s.multi_key.public_key()).collect(),
        low: low.public,
        high: high.public,
    };
    (public, shares)
}

fn dealer_derive(seed: &[u8; 32], tag: &[u8], i: usize) -> [u8; 32] {
    Sha256::new().chain_update(b"tabnet-dealer").chain_update(tag).chain_update(seed).chain_update((i as u64).to_be_bytes()).finalize().into()
}

/// The real scheme.
pub struct BlsCrypto {
    me: NodeIndex,
    secrets: NodeSecrets,
    public: Arc<SubnetPublicKeys>,
    /// The group keys, prepared once: every height checks a beacon and a certification.
    low_group: PreparedKey,
    high_group: PreparedKey,
    /// Summed multi-signature keys by signer set (heights mostly repeat the same sets).
    multi_keys: Mutex<HashMap<Vec<NodeIndex>, Arc<PreparedKey>>>,
    /// The messages last hashed to G1: a node signs its share of a message and then checks the
    /// aggregate on it (4 messages a height).
    hashed: Mutex<VecDeque<(Vec<u8>, HashedMessage)>>,
}

/// How many hashed messages [`BlsCrypto`] keeps.
const HASHED_KEPT: usize = 16;

impl BlsCrypto {
    pub fn new(me: NodeIndex, secrets: NodeSecrets, public: Arc<SubnetPublicKeys>) -> Self {
        BlsCrypto {
            me,
            secrets,
            low_group: public.low.group.prepare(),
            high_group: public.high.group.prepare(),
            public,
            multi_keys: Mutex::new(HashMap::new()),
            hashed: Mutex::new(VecDeque::with_capacity(HASHED_KEPT)),
        }
    }

    fn hashed(&self, msg: &[u8]) -> HashedMessage {
        let lock = || self.hashed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, hashed)) = lock().iter().find(|(m, _)| m == msg) {
            return *hashed;
        }
        // (Hashed outside the lock: other threads' checks do not wait for it.)
        let hashed = bls::hash_message(msg);
        let mut kept = lock();
        if kept.len() == HASHED_KEPT {
            kept.pop_front();
        }
        kept.push_back((msg.to_vec(), hashed));
        hashed
    }

    fn multi_key(&self, signers: &[NodeIndex]) -> Arc<PreparedKey> {
        let mut cache = self.multi_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cache.get(signers) {
            return key.clone();
        }
        if cache.len() >= 64 {
            cache.clear();
        }
        let key = Arc::new(bls::aggregate_public_keys(signers.iter().map(|s| &self.public.multi_keys[*s])).prepare());
        cache.insert(signers.to_vec(), key.clone());
        key
    }

    fn key_set(&self, kind: Kind) -> &PublicKeySet {
        match kind {
            Kind::Beacon => &self.public.low,
            _ => &self.public.high,
        }
    }
}

impl Crypto for BlsCrypto {
    fn nodes(&self) -> usize {
        self.public.multi_keys.len()
    }
    fn me(&self) -> NodeIndex {
        self.me
    }
    fn sign_proposal(&self, msg: &[u8]) -> [u8; 64] {
        self.secrets.proposal_key.sign(msg).to_bytes()
    }
    fn verify_proposal(&self, maker: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.public.proposal_keys.get(maker).is_some_and(|key| key.verify(msg, &sig).is_ok())
    }
    fn sign_share(&self, kind: Kind, msg: &[u8]) -> Sig {
        let key = match kind {
            Kind::Beacon => &self.secrets.low_share,
            Kind::Notarization | Kind::Finalization => &self.secrets.multi_key,
            Kind::Certification | Kind::CatchUp => &self.secrets.high_share,
        };
        key.sign_hashed(&self.hashed(msg))
    }
    fn verify_share(&self, kind: Kind, signer: NodeIndex, msg: &[u8], sig: &Sig) -> bool {
        if is_multi(kind) {
            self.public.multi_keys.get(signer).is_some_and(|pk| bls::verify(pk, msg, sig))
        } else {
            threshold::verify_share(self.key_set(kind), signer, msg, sig)
        }
    }
    fn combine(&self, kind: Kind, _msg: &[u8], shares: &[(NodeIndex, Sig)]) -> Option<Sig> {
        if is_multi(kind) {
            bls::aggregate_signatures(shares.iter().map(|(_, s)| s))
        } else {
            threshold::combine(self.key_set(kind), shares).ok()
        }
    }
    fn verify_aggregate(&self, kind: Kind, signers: &[NodeIndex], msg: &[u8], sig: &Sig) -> bool {
        if is_multi(kind) {
            if signers.iter().any(|s| *s >= self.nodes()) {
                return false;
            }
            bls::verify_prepared_hashed(&self.multi_key(signers), &self.hashed(msg), sig)
        } else {
            let group = if kind == Kind::Beacon { &self.low_group } else { &self.high_group };
            bls::verify_prepared_hashed(group, &self.hashed(msg), sig)
        }
    }
}

/// The simulator's keys: a node's "signature" is a hash keyed by its secret. Only the
/// simulation holds the secrets, and Byzantine nodes get only their own, so they cannot forge.
pub struct SimKeys {
    node_secrets: Vec<[u8; 32]>,
    low_group: [u8; 32],
    high_group: [u8; 32],
}

impl SimKeys {
    pub fn new(n: usize, seed: u64) -> Arc<Self> {
        let derive = |tag: &[u8], i: usize| -> [u8; 32] {
            Sha256::new().chain_update(tag).chain_update(seed.to_be_bytes()).chain_update((i as u64).to_be_bytes()).finalize().into()
        };
        Arc::new(SimKeys {
            node_secrets: (0..n).map(|i| derive(b"node", i)).collect(),
            low_group: derive(b"low", 0),
            high_group: derive(b"high", 0),
        })
    }

    fn tag(key: &[u8; 32], kind: Kind, msg: &[u8]) -> Sig {
        let digest: [u8; 32] = Sha256::new().chain_update(key).chain_update([kind as u8]).chain_update(msg).finalize().into();
        let mut sig = [0u8; 48];
        sig[..32].copy_from_slice(&digest);
        sig
    }
}

pub struct SimCrypto {
    me: NodeIndex,
    keys: Arc<SimKeys>,
}

impl SimCrypto {
    pub fn new(me: NodeIndex, keys: Arc<SimKeys>) -> Self {
        SimCrypto { me, keys }
    }
}

impl Crypto for SimCrypto {
    fn nodes(&self) -> usize {
        self.keys.node_secrets.len()
    }
    fn me(&self) -> NodeIndex {
        self.me
    }
    fn sign_proposal(&self, msg: &[u8]) -> [u8; 64] {
        let s = SimKeys::tag(&self.keys.node_secrets[self.me], Kind::CatchUp, &[b"proposal", msg].concat());
        let mut out = [0u8; 64];
        out[..48].copy_from_slice(&s);
        out
    }
    fn verify_proposal(&self, maker: NodeIndex, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.keys.node_secrets.get(maker).is_some_and(|k| {
            sig[..48] == SimKeys::tag(k, Kind::CatchUp, &[b"proposal", msg].concat()) && sig[48..] == [0; 16]
        })
    }
    fn sign_share(&self, kind: Kind, msg: &[u8]) -> Sig {
        SimKeys::tag(&self.keys.node_secrets[self.me], kind, msg)
    }
    fn verify_share(&self, kind: Kind, signer: NodeIndex, msg: &[u8], sig: &Sig) -> bool {
        self.keys.node_secrets.get(signer).is_some_and(|k| SimKeys::tag(k, kind, msg) == *sig)
    }
    fn combine(&self, kind: Kind, msg: &[u8], shares: &[(NodeIndex, Sig)]) -> Option<Sig> {
        let all_valid = shares.iter().all(|(i, s)| self.verify_share(kind, *i, msg, s));
        if is_multi(kind) {
            // The stand-in multi-signature: a hash over the signers' shares, re-derivable by
            // anyone who can check each share.
            let mut sorted = shares.to_vec();
            sorted.sort_by_key(|(i, _)| *i);
            let mut h = Sha256::new();
            for (_, s) in &sorted {
                h.update(s);
            }
            let mut sig = [0u8; 48];
            sig[..32].copy_from_slice(&h.finalize());
            Some(sig)
        } else if all_valid {
            let group = if kind == Kind::Beacon { &self.keys.low_group } else { &self.keys.high_group };
            Some(SimKeys::tag(group, kind, msg))
        } else {
            Some([0xEE; 48])
        }
    }
    fn verify_aggregate(&self, kind: Kind, signers: &[NodeIndex], msg: &[u8], sig: &Sig) -> bool {
        if is_multi(kind) {
            let mut shares = Vec::with_capacity(signers.len());
            for s in signers {
                let Some(k) = self.keys.node_secrets.get(*s) else { return false };
                shares.push((*s, SimKeys::tag(k, kind, msg)));
            }
            self.combine(kind, msg, &shares).as_ref() == Some(sig)
        } else {
            let group = if kind == Kind::Beacon { &self.keys.low_group } else { &self.keys.high_group };
            SimKeys::tag(group, kind, msg) == *sig
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(crypto: &[Box<dyn Crypto>]) {
        let n = crypto.len();
        let msg = Kind::Notarization.message(3, &[7; 32]);
        for kind in Kind::ALL {
            let t = threshold(n, kind);
            let shares: Vec<(NodeIndex, Sig)> = crypto.iter().map(|c| (c.me(), c.sign_share(kind, &msg))).collect();
            assert!(crypto[0].verify_share(kind, 1, &msg, &shares[1].1));
            assert!(!crypto[0].verify_share(kind, 2, &msg, &shares[1].1), "{kind:?}: a share is its signer's only");
            let signers: Vec<NodeIndex> = (0..t).collect();
            let agg = crypto[0].combine(kind, &msg, &shares[..t]).unwrap();
            assert!(crypto[1].verify_aggregate(kind, &signers, &msg, &agg), "{kind:?}");
            assert!(!crypto[1].verify_aggregate(kind, &signers, &Kind::Finalization.message(3, &[7; 32]), &agg));
            let mut forged = shares[..t].to_vec();
            forged[0].1 = crypto[1].sign_share(kind, &msg);
            let bad = crypto[0].combine(kind, &msg, &forged).unwrap();
            assert!(!crypto[1].verify_aggregate(kind, &signers, &msg, &bad), "{kind:?}: a forged share spoils it");
        }
        let p = crypto[2].sign_proposal(b"block");
        assert!(crypto[0].verify_proposal(2, b"block", &p));
        assert!(!crypto[0].verify_proposal(1, b"block", &p));
    }

    #[test]
    fn the_real_and_the_simulated_schemes_keep_the_same_rules() {
        let (public, secrets) = deal(4, &[5; 32]);
        let public = Arc::new(public);
        let real: Vec<Box<dyn Crypto>> =
            secrets.into_iter().enumerate().map(|(i, s)| Box::new(BlsCrypto::new(i, s, public.clone())) as Box<dyn Crypto>).collect();
        check(&real);
        let keys = SimKeys::new(4, 5);
        let sim: Vec<Box<dyn Crypto>> = (0..4).map(|i| Box::new(SimCrypto::new(i, keys.clone())) as Box<dyn Crypto>).collect();
        check(&sim);
    }
}
