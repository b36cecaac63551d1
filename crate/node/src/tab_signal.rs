//! How the tabs of a tab subnet find each other: the subnet's genesis (its size and the trusted
//! dealer's seed), and the signals that set up a WebRTC link between two members. Tabs of one
//! browser exchange them on a BroadcastChannel; tabs on different machines through the
//! rendezvous a native `tabnet` serves at `/_/rendezvous/<subnet>` (a WebSocket), which also
//! keeps the genesis and hands out member slots. Both carry the JSON of these types.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tabnet_consensus::{deal_bls, threshold, BlsShares, Kind, NodeIndex, NodeSecrets, SubnetPublicKeys};
use tabnet_crypto::bls::{BlsPublicKey, BlsSecretKey};
use tabnet_crypto::threshold::PublicKeySet;

use crate::dealt::genesis_seed;

/// A signal is at most this long (an SDP offer is a few KiB).
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// A tab subnet has 1 to this many members.
pub const MAX_TAB_NODES: usize = 13;

/// The dealer's record of a tab subnet, kept by the rendezvous (tabs on different machines) or
/// in the browser by the founding tab (tabs of one browser). The dealer deals the BLS keys from
/// its seed, as in the native subnet; each member makes its own node key (Ed25519, kept in its
/// IndexedDB) and registers it when it first joins. The subnet forms once every slot has a key;
/// from then on a slot belongs to its key's holder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Genesis {
    pub nodes: usize,
    pub dealer_seed: [u8; 32],
    pub dkg_interval: u64,
    pub node_keys: Vec<Option<[u8; 32]>>,
}

impl Genesis {
    pub fn new(nodes: usize, dealer_seed: [u8; 32], dkg_interval: u64) -> Self {
        Genesis { nodes, dealer_seed, dkg_interval, node_keys: vec![None; nodes] }
    }

    /// The slot of the member whose node key is `key`: the one it registered, or else the first
    /// free one (registering it there). `None`: every slot belongs to another key.
    pub fn register(&mut self, key: &[u8; 32]) -> Option<NodeIndex> {
        if let Some(k) = self.node_keys.iter().position(|k| k.as_ref() == Some(key)) {
            return Some(k);
        }
        let free = self.node_keys.iter().position(Option::is_none)?;
        self.node_keys[free] = Some(*key);
        Some(free)
    }

    /// Members registered so far.
    pub fn joined(&self) -> usize {
        self.node_keys.iter().flatten().count()
    }

    /// Every member's slot has a key: the subnet exists.
    pub fn formed(&self) -> bool {
        self.node_keys.len() == self.nodes && self.joined() == self.nodes
    }

    /// What the dealer hands each member once the subnet has formed (in member order).
    pub fn deal(&self) -> Result<Vec<Membership>, String> {
        if !self.formed() {
            return Err(format!("the subnet has {} of its {} members", self.joined(), self.nodes));
        }
        let node_keys: Vec<VerifyingKey> = self
            .node_keys
            .iter()
            .flatten()
            .map(|k| VerifyingKey::from_bytes(k).map_err(|e| format!("a member's node key is not an Ed25519 key: {e}")))
            .collect::<Result<_, _>>()?;
        let (public, shares) = deal_bls(&node_keys, &self.dealer_seed);
        let keys = PublicKeysRecord::of(&public);
        Ok(shares
            .into_iter()
            .enumerate()
            .map(|(index, s)| Membership {
                index,
                dkg_interval: self.dkg_interval,
                genesis_seed: genesis_seed(&self.dealer_seed),
                keys: keys.clone(),
                shares: [s.multi_key.to_bytes(), s.low_share.to_bytes(), s.high_share.to_bytes()],
            })
            .collect())
    }
}

/// What a member is given of its subnet: everyone's public keys and its own BLS keys.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Membership {
    pub index: NodeIndex,
    pub dkg_interval: u64,
    /// The genesis block and beacon derive from it.
    pub genesis_seed: [u8; 32],
    pub keys: PublicKeysRecord,
    /// This member's BLS secret keys: multi-signature key, beacon share, certification share.
    pub shares: [[u8; 32]; 3],
}

impl Membership {
    pub fn nodes(&self) -> usize {
        self.keys.node_keys.len()
    }

    /// Names the subnet in a member's database name: state kept for one subnet is never opened
    /// under another of the same name.
    pub fn fingerprint(&self) -> String {
        let digest = tabnet_crypto::sha256(&[b"tabnet-tab-subnet".as_slice(), &self.genesis_seed].concat());
        hex::encode(&digest[..4])
    }

    /// The subnet's public keys, checked: sizes, points, thresholds.
    pub fn public_keys(&self) -> Result<SubnetPublicKeys, String> {
        self.keys.to_public()
    }

    /// This member's secrets, with `node_key` (its own) which must be the one registered for
    /// its slot, and BLS keys that match the published public keys.
    pub fn secrets(&self, node_key: SigningKey, public: &SubnetPublicKeys) -> Result<NodeSecrets, String> {
        if public.proposal_keys.get(self.index) != Some(&node_key.verifying_key()) {
            return Err(format!("node {} of this subnet has another node key", self.index));
        }
        let key = |bytes: &[u8; 32]| BlsSecretKey::from_bytes(bytes);
        let shares = BlsShares { multi_key: key(&self.shares[0])?, low_share: key(&self.shares[1])?, high_share: key(&self.shares[2])? };
        let matches = public.multi_keys[self.index] == shares.multi_key.public_key()
            && public.low.shares[self.index] == shares.low_share.public_key()
            && public.high.shares[self.index] == shares.high_share.public_key();
        if !matches {
            return Err("the dealer's keys for this member do not match the subnet's public keys".into());
        }
        Ok(shares.with_node_key(node_key))
    }
}

/// [`SubnetPublicKeys`] as bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicKeysRecord {
    pub node_keys: Vec<[u8; 32]>,
    pub multi_keys: Vec<Vec<u8>>,
    pub low: KeySetRecord,
    pub high: KeySetRecord,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeySetRecord {
    pub threshold: usize,
    pub group: Vec<u8>,
    pub shares: Vec<Vec<u8>>,
}

impl KeySetRecord {
    fn of(set: &PublicKeySet) -> Self {
        KeySetRecord { threshold: set.threshold, group: set.group.to_bytes().to_vec(), shares: set.shares.iter().map(|k| k.to_bytes().to_vec()).collect() }
    }

    fn to_set(&self, n: usize, threshold: usize) -> Result<PublicKeySet, String> {
        if self.threshold != threshold || self.shares.len() != n {
            return Err("a key set of the wrong size or threshold".into());
        }
        Ok(PublicKeySet {
            threshold,
            group: BlsPublicKey::from_bytes(&self.group)?,
            shares: self.shares.iter().map(|k| BlsPublicKey::from_bytes(k)).collect::<Result<_, _>>()?,
        })
    }
}

impl PublicKeysRecord {
    fn of(public: &SubnetPublicKeys) -> Self {
        PublicKeysRecord {
            node_keys: public.proposal_keys.iter().map(|k| k.to_bytes()).collect(),
            multi_keys: public.multi_keys.iter().map(|k| k.to_bytes().to_vec()).collect(),
            low: KeySetRecord::of(&public.low),
            high: KeySetRecord::of(&public.high),
        }
    }

    fn to_public(&self) -> Result<SubnetPublicKeys, String> {
        let n = self.node_keys.len();
        if !(1..=MAX_TAB_NODES).contains(&n) || self.multi_keys.len() != n {
            return Err(format!("a subnet's keys for {n} nodes"));
        }
        Ok(SubnetPublicKeys {
            proposal_keys: self.node_keys.iter().map(|k| VerifyingKey::from_bytes(k).map_err(|e| e.to_string())).collect::<Result<_, _>>()?,
            multi_keys: self.multi_keys.iter().map(|k| BlsPublicKey::from_bytes(k)).collect::<Result<_, _>>()?,
            low: self.low.to_set(n, threshold(n, Kind::Beacon))?,
            high: self.high.to_set(n, threshold(n, Kind::Certification))?,
        })
    }
}

/// Between members: the lower index of each pair offers, the higher answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Signal {
    /// Sent every second. `incarnation` is random per opening of a member: a hello with a new
    /// one says the member was closed and opened again, so a link to its old self is dead even
    /// if WebRTC has not noticed yet.
    Hello { from: NodeIndex, incarnation: u64 },
    Offer { from: NodeIndex, to: NodeIndex, sdp: String },
    Answer { from: NodeIndex, to: NodeIndex, sdp: String },
}

impl Signal {
    pub fn from(&self) -> NodeIndex {
        match self {
            Signal::Hello { from, .. } | Signal::Offer { from, .. } | Signal::Answer { from, .. } => *from,
        }
    }

    /// The member it is for; `None`: all.
    pub fn to(&self) -> Option<NodeIndex> {
        match self {
            Signal::Hello { .. } => None,
            Signal::Offer { to, .. } | Signal::Answer { to, .. } => Some(*to),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a signal serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        from_capped_json(text, "signal too long")
    }
}

/// What the rendezvous sends a member.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum FromRendezvous {
    /// The first message: prove your node key by signing [`join_message`] with this nonce.
    Challenge { nonce: [u8; 32] },
    /// This connection holds slot `index` of a subnet still forming (`joined` of `nodes`
    /// members have registered their keys); a welcome follows once it has formed.
    Waiting { index: NodeIndex, joined: usize, nodes: usize },
    /// This connection holds its member's slot until it closes (or the member connects again).
    Welcome { membership: Membership },
    /// The last message: no slot (the subnet has all its members, has another size, or the
    /// proof failed).
    Refused { reason: String },
    /// Another member's signal.
    Signal(Signal),
}

impl FromRendezvous {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a rendezvous message serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        from_capped_json(text, "rendezvous message too long")
    }
}

/// A tab's answer to the challenge: its node key and its signature of [`join_message`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinRequest {
    pub node_key: [u8; 32],
    pub signature: Vec<u8>,
}

/// What a joining tab signs: the subnet's name and the rendezvous's nonce (so the proof is
/// good for this connection only).
pub fn join_message(name: &str, nonce: &[u8; 32]) -> Vec<u8> {
    [b"tabnet-rendezvous-join".as_slice(), &(name.len() as u64).to_be_bytes(), name.as_bytes(), nonce].concat()
}

impl JoinRequest {
    pub fn sign(key: &SigningKey, name: &str, nonce: &[u8; 32]) -> Self {
        use ed25519_dalek::Signer;
        JoinRequest { node_key: key.verifying_key().to_bytes(), signature: key.sign(&join_message(name, nonce)).to_bytes().to_vec() }
    }

    /// Whether the signature proves the node key.
    pub fn verify(&self, name: &str, nonce: &[u8; 32]) -> bool {
        let (Ok(key), Ok(sig)) = (VerifyingKey::from_bytes(&self.node_key), <[u8; 64]>::try_from(self.signature.as_slice())) else { return false };
        key.verify_strict(&join_message(name, nonce), &Signature::from_bytes(&sig)).is_ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a join request serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        from_capped_json(text, "join request too long")
    }
}

/// Decodes a signal or rendezvous message: at most [`MAX_SIGNAL_BYTES`] (`too_long` says what
/// was refused), checked before serde_json reads it.
fn from_capped_json<T: serde::de::DeserializeOwned>(text: &str, too_long: &str) -> Result<T, String> {
    if text.len() > MAX_SIGNAL_BYTES {
        return Err(too_long.into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Subnet names are short and plain: letters, digits, `-` and `_`, at most 64.
pub fn valid_subnet_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_as_json() {
        let s = Signal::Offer { from: 0, to: 3, sdp: "v=0".into() };
        assert_eq!(Signal::from_json(&s.to_json()).unwrap(), s);
        assert_eq!((s.from(), s.to()), (0, Some(3)));
        let w = FromRendezvous::Waiting { index: 2, joined: 3, nodes: 4 };
        assert_eq!(FromRendezvous::from_json(&w.to_json()).unwrap(), w);
        assert!(Signal::from_json(&"x".repeat(MAX_SIGNAL_BYTES + 1)).is_err());
        assert!(valid_subnet_name("class-3_b") && !valid_subnet_name("a/b") && !valid_subnet_name(""));
    }

    fn member_key(k: u8) -> SigningKey {
        SigningKey::from_bytes(&[k; 32])
    }

    #[test]
    fn a_subnet_forms_once_every_member_registered_its_own_key() {
        let mut g = Genesis::new(4, [7; 32], 500);
        let keys: Vec<SigningKey> = (1..=5).map(member_key).collect();
        for (k, key) in keys[..3].iter().enumerate() {
            assert_eq!(g.register(&key.verifying_key().to_bytes()), Some(k));
        }
        assert!(!g.formed() && g.deal().is_err());
        // A member that comes back keeps its slot.
        assert_eq!(g.register(&keys[1].verifying_key().to_bytes()), Some(1));
        assert_eq!(g.register(&keys[3].verifying_key().to_bytes()), Some(3));
        assert!(g.formed());
        // Formed: a fifth key finds no slot.
        assert_eq!(g.register(&keys[4].verifying_key().to_bytes()), None);
        let dealt = g.deal().unwrap();
        for (k, m) in dealt.iter().enumerate() {
            // Through JSON, as the rendezvous sends it.
            let m: Membership = serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap();
            let public = m.public_keys().unwrap();
            assert_eq!(public.proposal_keys[k], keys[k].verifying_key());
            assert!(m.secrets(keys[k].clone(), &public).is_ok());
            // Another key, or another member's BLS keys, do not make this member.
            assert!(m.secrets(keys[4].clone(), &public).is_err());
            let mut swapped = m.clone();
            swapped.shares = dealt[(k + 1) % 4].shares;
            assert!(swapped.secrets(keys[k].clone(), &public).is_err());
        }
        assert_eq!(dealt[0].fingerprint(), dealt[3].fingerprint());
    }

    #[test]
    fn a_join_proves_the_node_key_for_this_nonce_only() {
        let key = member_key(9);
        let join = JoinRequest::sign(&key, "class", &[1; 32]);
        assert!(join.verify("class", &[1; 32]));
        assert!(!join.verify("class", &[2; 32]) && !join.verify("other", &[1; 32]));
        let forged = JoinRequest { node_key: member_key(8).verifying_key().to_bytes(), ..join.clone() };
        assert!(!forged.verify("class", &[1; 32]));
        assert_eq!(JoinRequest::from_json(&join.to_json()).unwrap(), join);
    }
}
