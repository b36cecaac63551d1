//! The subnet, sans-IO: one node's artifact pools, gossip and ICC consensus as a plain state
//! machine. A driver (the simulator, a native process, a browser tab) feeds it messages, ingress,
//! timer ticks and the state hashes of executed batches, and performs what it asks for:
//! [`Output`]s (send, deliver a finalized batch, persist, certified) and a wake-up time.
//!
//! Protocol (ICC1, ../shared/docs/ic-protocol.md): a random beacon per height (threshold BLS,
//! f+1) ranks the block makers of the next height; the rank-r maker proposes after
//! `r × unit_delay`; notaries sign the lowest-ranked valid block after the notary delay; n−f
//! notarization shares notarize; a node that notarization-signed exactly one block at a height
//! finalization-signs it; n−f finalize it and its ancestors. Executed heights are certified with
//! the high threshold key (2f+1); every `dkg_interval` heights a catch-up package is signed and
//! the pools are purged below the one before.

pub mod artifact;
pub mod crypto;
pub mod handshake;
pub mod limits;
mod node;
pub mod pool;
pub mod state_sync;

pub use artifact::{Aggregate, Artifact, ArtifactId, Beacon, Block, Cup, Hash, Height, Ingress, Kind, NodeIndex, Proposal, Share, Sig, Time};
pub use crypto::{deal, deal_bls, faults_tolerated, BlsShares, threshold, BlsCrypto, Crypto, NodeSecrets, SimCrypto, SimKeys, SubnetPublicKeys};
pub use state_sync::{Checkpoint, Manifest, StateSync, SyncMessage};
pub use node::{ranking, Batch, CatchUp, Config, ConsensusNode, CryptoStats, IngressCheck, Malice, Message, Output, Start, UnverifiedIngress, VerifiedIngress, MAX_FETCHES_PER_PEER, MAX_VERIFYING_PER_PEER};
