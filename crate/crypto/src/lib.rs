//! The cryptography of the IC interface, as tabnet's replica and clients need it.
//!
//! - [`request_id`]: the representation-independent hash (request ids, delegations, query
//!   responses) and the domain separators signatures are taken over.
//! - [`hash_tree`]: the certification hash tree, its CBOR form, witnesses and lookups.
//! - [`bls`]: BLS12-381 min-signature signatures (the subnet's certification key).
//! - [`certificate`]: signed state-tree certificates (`{tree, signature}`).
//! - [`ingress_auth`]: sender public keys, self-authenticating principals, delegation chains.
//! - [`node_key`]: the Ed25519 key a node signs query responses with.
//! - [`user_identity`]: a user's Ed25519 key that signs calls and queries (load generators).
//!
//! Everything here is deterministic: keys come from seeds the caller passes in, and the current
//! time is an argument. No clocks, threads or global randomness, so the crate builds for
//! `wasm32-unknown-unknown`.

pub mod bls;
pub mod certificate;
pub mod hash_tree;
pub mod ingress_auth;
pub mod node_key;
pub mod request_id;
pub mod threshold;
pub mod user_identity;

pub use bls::{BlsPublicKey, BlsSecretKey};
pub use certificate::Certificate;
pub use hash_tree::{lookup_path, CertifiedMap, HashTree, HashedTree, LabeledTree, LookupResult};
pub use ingress_auth::{
    authenticate, delegations_from_cbor, parse_public_key_der, self_authenticating_principal,
    PublicKey, SignedDelegation,
};
pub use node_key::NodeSigningKey;
pub use request_id::{
    hash_of_map, request_id, IC_REQUEST, IC_REQUEST_AUTH_DELEGATION, IC_RESPONSE, IC_STATE_ROOT,
};

use sha2::Digest;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// SHA-224 of `data` (self-authenticating and derived principals).
pub fn sha224(data: &[u8]) -> [u8; 28] {
    sha2::Sha224::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_vectors() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(sha224(b"abc")),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
    }
}
