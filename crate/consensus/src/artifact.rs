//! The artifacts nodes exchange, and the bytes their hashes and signatures cover.
//!
//! Every signature is taken over a domain tag, the height and a 32-byte content hash, so a share
//! for one purpose can never be replayed as another.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Height = u64;
pub type NodeIndex = usize;
/// Milliseconds; consensus time comes from the driver (virtual in the simulator).
pub type Time = u64;
pub type Hash = [u8; 32];
/// A BLS12-381 signature or share (compressed G1), or the simulator's stand-in.
pub type Sig = [u8; 48];

/// What a share or an aggregate signs, and so which key and threshold it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Random beacon: low threshold (f+1) over the previous beacon's hash.
    Beacon,
    /// Notarization: multi-signature of n−f notaries over a block hash.
    Notarization,
    /// Finalization: multi-signature of n−f over a block hash.
    Finalization,
    /// State certification: high threshold (2f+1) over the state hash at a height.
    Certification,
    /// Catch-up package: high threshold over [`Cup::content_hash`].
    CatchUp,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Beacon, Kind::Notarization, Kind::Finalization, Kind::Certification, Kind::CatchUp];

    fn domain(self) -> &'static [u8] {
        match self {
            Kind::Beacon => b"tabnet-random-beacon",
            Kind::Certification => unreachable!("certifications sign the IC's state-root message"),
            Kind::Notarization => b"tabnet-notarization",
            Kind::Finalization => b"tabnet-finalization",
            Kind::CatchUp => b"tabnet-catch-up-package",
        }
    }

    /// The bytes a share or aggregate of this kind signs. A certification signs exactly what
    /// the IC interface spec says a certificate's signature covers, `"\x0Dic-state-root" ‖
    /// root hash`, so it is the signature agents check (the tree's `/time` keeps heights apart).
    pub fn message(self, height: Height, content: &Hash) -> Vec<u8> {
        if self == Kind::Certification {
            return [tabnet_crypto::IC_STATE_ROOT, content].concat();
        }
        let domain = self.domain();
        let mut m = Vec::with_capacity(1 + domain.len() + 8 + 32);
        m.push(domain.len() as u8);
        m.extend_from_slice(domain);
        m.extend_from_slice(&height.to_be_bytes());
        m.extend_from_slice(content);
        m
    }
}

/// One node's signature share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub kind: Kind,
    pub height: Height,
    pub content: Hash,
    pub signer: NodeIndex,
    #[serde(with = "serde_bytes")]
    pub sig: Sig,
}

/// Shares combined: a multi-signature (with its signers) or a threshold signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub kind: Kind,
    pub height: Height,
    pub content: Hash,
    /// Who signed (multi-signatures); empty for threshold signatures, which name no one.
    pub signers: Vec<NodeIndex>,
    #[serde(with = "serde_bytes")]
    pub sig: Sig,
}

/// The random beacon at a height: the threshold signature over the previous beacon's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub height: Height,
    pub parent: Hash,
    #[serde(with = "serde_bytes")]
    pub sig: Sig,
}

impl Beacon {
    pub fn genesis(subnet_seed: &Hash) -> Self {
        Beacon { height: 0, parent: *subnet_seed, sig: [0; 48] }
    }
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(b"tabnet-beacon");
        h.update(self.height.to_be_bytes());
        h.update(self.parent);
        h.update(self.sig);
        h.finalize().into()
    }
    fn from_aggregate(a: &Aggregate) -> Self {
        Beacon { height: a.height, parent: a.content, sig: a.sig }
    }
}

/// A signed ingress message as the HTTP interface received it; consensus treats it as opaque
/// bytes identified by their SHA-256. The driver's [`crate::IngressCheck`] reads its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl Ingress {
    pub fn id(&self) -> Hash {
        Sha256::digest(&self.bytes).into()
    }
}

/// A block: what the maker of `rank` proposes on top of `parent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub parent: Hash,
    pub height: Height,
    pub rank: u32,
    pub maker: NodeIndex,
    /// The block's time (ms); strictly greater than its parent's. Execution reads time from here.
    pub time: Time,
    /// The ids of the ingress messages it includes, in order.
    pub ingress: Vec<Hash>,
}

impl Block {
    pub fn genesis(subnet_seed: &Hash) -> Self {
        Block { parent: *subnet_seed, height: 0, rank: 0, maker: 0, time: 0, ingress: Vec::new() }
    }

    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(b"tabnet-block");
        h.update(self.parent);
        h.update(self.height.to_be_bytes());
        h.update(self.rank.to_be_bytes());
        h.update((self.maker as u64).to_be_bytes());
        h.update(self.time.to_be_bytes());
        h.update((self.ingress.len() as u64).to_be_bytes());
        for id in &self.ingress {
            h.update(id);
        }
        h.finalize().into()
    }
}

/// A block signed by its maker (Ed25519: cheap to check, and it makes equivocation provable).
/// On the wire the payload travels alongside, unless the block is sent stripped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Block,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    /// The ingress the block names, in order; `None` when stripped (the receiver has or fetches it).
    pub payload: Option<Vec<Arc<Ingress>>>,
}

impl Proposal {
    pub fn signed_bytes(hash: &Hash) -> Vec<u8> {
        [&b"\x0etabnet-proposal"[..], hash].concat()
    }
    pub fn stripped(&self) -> Proposal {
        Proposal { block: self.block.clone(), signature: self.signature, payload: None }
    }
    /// Roughly the bytes it takes on the wire, with its payload if it carries one.
    pub fn wire_size(&self) -> usize {
        120 + 32 * self.block.ingress.len() + self.payload.as_ref().map_or(0, |v| v.iter().map(|i| i.bytes.len() + 8).sum())
    }
}

/// A catch-up package: a finalized height's block, beacon and state hash, signed with the high
/// threshold key. Anyone holding the subnet key can start from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cup {
    pub block: Block,
    pub beacon: Beacon,
    /// The certified state's root hash at this height.
    pub state_hash: Hash,
    /// The hash of the manifest of the whole state at this height (state sync fetches it).
    pub checkpoint: Hash,
    #[serde(with = "serde_bytes")]
    pub sig: Sig,
}

impl Cup {
    pub fn content_hash(block_hash: &Hash, beacon_hash: &Hash, state_hash: &Hash, checkpoint: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update(b"tabnet-cup");
        h.update(block_hash);
        h.update(beacon_hash);
        h.update(state_hash);
        h.update(checkpoint);
        h.finalize().into()
    }
    pub fn height(&self) -> Height {
        self.block.height
    }
    pub fn hash(&self) -> Hash {
        Self::content_hash(&self.block.hash(), &self.beacon.hash(), &self.state_hash, &self.checkpoint)
    }
}

/// Everything the pools hold and the network carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Artifact {
    Ingress(Arc<Ingress>),
    Proposal(Arc<Proposal>),
    Share(Share),
    Aggregate(Aggregate),
    Cup(Arc<Cup>),
}

impl Artifact {
    /// Roughly the bytes it takes on the wire (decides push versus advertise).
    pub fn wire_size(&self) -> usize {
        match self {
            Artifact::Ingress(i) => i.bytes.len() + 8,
            Artifact::Proposal(p) => p.wire_size(),
            Artifact::Share(_) => 100,
            Artifact::Aggregate(a) => 100 + 2 * a.signers.len(),
            Artifact::Cup(_) => 300,
        }
    }

    /// The height it belongs to (ingress belongs to none).
    pub fn height(&self) -> Height {
        match self {
            Artifact::Ingress(_) => 0,
            Artifact::Proposal(p) => p.block.height,
            Artifact::Share(s) => s.height,
            Artifact::Aggregate(a) => a.height,
            Artifact::Cup(c) => c.height(),
        }
    }

    /// The id a receiver asks for when this artifact is advertised instead of pushed.
    pub fn id(&self) -> Option<ArtifactId> {
        match self {
            Artifact::Ingress(i) => Some(ArtifactId::Ingress(i.id())),
            Artifact::Proposal(p) => Some(ArtifactId::Block(p.block.hash())),
            _ => None,
        }
    }
}

/// Big artifacts are advertised by these ids and fetched on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArtifactId {
    Ingress(Hash),
    Block(Hash),
}

impl From<&Aggregate> for Beacon {
    fn from(a: &Aggregate) -> Self {
        Beacon::from_aggregate(a)
    }
}
