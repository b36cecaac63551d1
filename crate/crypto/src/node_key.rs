//! The node's Ed25519 signing key. Nodes sign query responses over
//! `"\x0Bic-response" ‖ hash_of_map(response)`; agents check those signatures against the key
//! published at `/subnet/<subnet_id>/node/<node_id>/public_key` (DER, RFC 8410).

use crate::request_id::{hash_of_map, IC_RESPONSE};
use ciborium::Value;
use ed25519_dalek::{Signer, SigningKey};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
pub const ED25519_DER_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Clone)]
pub struct NodeSigningKey {
    key: SigningKey,
}

impl std::fmt::Debug for NodeSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NodeSigningKey({})",
            hex::encode(self.public_key_bytes())
        )
    }
}

impl NodeSigningKey {
    /// The Ed25519 key whose secret is `seed` (RFC 8032).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Signs `msg` as is (callers add the domain separator).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Signs a query response map: `"\x0Bic-response" ‖ hash_of_map(response)`.
    pub fn sign_response(&self, response: &Value) -> Result<[u8; 64], String> {
        let hash = hash_of_map(response)?;
        Ok(self.sign(&[IC_RESPONSE, &hash[..]].concat()))
    }

    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key in DER (RFC 8410), as published in the state tree.
    pub fn public_key_der(&self) -> Vec<u8> {
        [&ED25519_DER_PREFIX[..], &self.public_key_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress_auth::parse_public_key_der;

    #[test]
    fn rfc8032_test_vector_1() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = NodeSigningKey::from_seed(seed);
        assert_eq!(
            hex::encode(key.public_key_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn response_signature_verifies_with_published_key() {
        let key = NodeSigningKey::from_seed([5; 32]);
        let der = key.public_key_der();
        assert_eq!(der.len(), 44);
        let response = Value::Map(vec![
            (Value::Text("status".into()), Value::Text("replied".into())),
            (Value::Text("timestamp".into()), Value::Integer(1u8.into())),
        ]);
        let sig = key.sign_response(&response).unwrap();
        let msg = [IC_RESPONSE, &hash_of_map(&response).unwrap()[..]].concat();
        let pk = parse_public_key_der(&der).unwrap();
        assert!(pk.verify(&msg, &sig));
        assert!(!pk.verify(b"other", &sig));
        assert!(key.sign_response(&Value::Text("x".into())).is_err());
    }
}
