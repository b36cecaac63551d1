//! Certificates: a hash tree signed (BLS) by the subnet over `"\x0Dic-state-root" ‖ root_hash`.
//!
//! Encoded as the CBOR map `{"tree": <tree>, "signature": <48 bytes>}` inside the
//! self-describing tag 55799, as IC replicas send it (certificates seen from real replicas begin
//! `d9 d9 f7 a2 64 "tree"`). Agents accept it with or without the tag; so does [`Certificate::from_cbor`].
//! Tabnet runs a single subnet whose key is the root key, so certificates carry no delegation.

use crate::bls::{self, BlsPublicKey, BlsSecretKey};
use crate::hash_tree::HashTree;
use crate::request_id::IC_STATE_ROOT;
use ciborium::Value;

/// CBOR's self-describing tag.
const SELF_DESCRIBING_TAG: u64 = 55799;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub tree: HashTree,
    pub signature: [u8; 48],
}

impl Certificate {
    /// Signs `tree` with the subnet key.
    pub fn sign(tree: HashTree, key: &BlsSecretKey) -> Self {
        let signature = key.sign(&signed_message(&tree));
        Self { tree, signature }
    }

    /// Checks the signature against the root key in DER form.
    pub fn verify(&self, root_key_der: &[u8]) -> Result<(), String> {
        let key = BlsPublicKey::from_der(root_key_der)?;
        if bls::verify(&key, &signed_message(&self.tree), &self.signature) {
            Ok(())
        } else {
            Err("certificate signature does not verify under the root key".into())
        }
    }

    pub fn to_cbor_value(&self) -> Value {
        Value::Tag(
            SELF_DESCRIBING_TAG,
            Box::new(Value::Map(vec![
                (Value::Text("tree".into()), self.tree.to_cbor_value()),
                (
                    Value::Text("signature".into()),
                    Value::Bytes(self.signature.to_vec()),
                ),
            ])),
        )
    }

    /// The bytes that go into `read_state` responses, `certificate` fields and
    /// `data_certificate_copy`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&self.to_cbor_value(), &mut out)
            .expect("writing CBOR to a Vec cannot fail");
        out
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        let value: Value =
            ciborium::from_reader(bytes).map_err(|e| format!("certificate: invalid CBOR: {e}"))?;
        Self::from_cbor_value(&value)
    }

    pub fn from_cbor_value(value: &Value) -> Result<Self, String> {
        let value = match value {
            Value::Tag(SELF_DESCRIBING_TAG, inner) => inner.as_ref(),
            v => v,
        };
        let Value::Map(fields) = value else {
            return Err("certificate must be a CBOR map".into());
        };
        let mut tree = None;
        let mut signature = None;
        for (key, value) in fields {
            match key.as_text() {
                Some("tree") => tree = Some(HashTree::from_cbor_value(value)?),
                Some("signature") => {
                    let bytes = value
                        .as_bytes()
                        .ok_or("certificate signature must be bytes")?;
                    let sig: [u8; 48] = bytes.as_slice().try_into().map_err(|_| {
                        format!(
                            "certificate signature must be 48 bytes, got {}",
                            bytes.len()
                        )
                    })?;
                    signature = Some(sig);
                }
                Some("delegation") => {
                    return Err(
                        "delegated certificates (subnet delegation) are not supported".into(),
                    )
                }
                _ => return Err("certificate has an unknown field".into()),
            }
        }
        Ok(Self {
            tree: tree.ok_or("certificate has no tree")?,
            signature: signature.ok_or("certificate has no signature")?,
        })
    }
}

/// `"\x0Dic-state-root" ‖ root_hash`.
fn signed_message(tree: &HashTree) -> Vec<u8> {
    [IC_STATE_ROOT, &tree.digest()[..]].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_tree::{lookup_path, LabeledTree, LookupResult};
    use std::collections::BTreeMap;

    fn key() -> BlsSecretKey {
        BlsSecretKey::from_seed(&[42; 32])
    }

    #[test]
    fn sign_encode_decode_verify() {
        let state = LabeledTree::SubTree(BTreeMap::from([
            (b"time".to_vec(), LabeledTree::Leaf(vec![0x80, 0x01])),
            (b"other".to_vec(), LabeledTree::Leaf(b"secret".to_vec())),
        ]));
        let tree = state.witness(&[vec![b"time".to_vec()]]);
        let cert = Certificate::sign(tree, &key());
        let bytes = cert.to_cbor();
        assert_eq!(&bytes[..8], &hex::decode("d9d9f7a264747265").unwrap()[..]);
        let decoded = Certificate::from_cbor(&bytes).unwrap();
        assert_eq!(decoded, cert);
        let root_key = key().public_key().to_der();
        decoded.verify(&root_key).unwrap();
        assert_eq!(
            lookup_path(&decoded.tree, &[b"time"]),
            LookupResult::Found(&[0x80, 0x01])
        );

        // Wrong key, tampered tree, tampered signature.
        let other_key = BlsSecretKey::from_seed(&[43; 32]).public_key().to_der();
        assert!(decoded.verify(&other_key).is_err());
        let mut tampered = decoded.clone();
        tampered.tree = HashTree::labeled("time", HashTree::leaf(vec![0x81, 0x01]));
        assert!(tampered.verify(&root_key).is_err());
        let mut tampered = decoded;
        tampered.signature[0] ^= 0x01;
        assert!(tampered.verify(&root_key).is_err());
    }

    #[test]
    fn untagged_certificates_decode_too() {
        let cert = Certificate::sign(HashTree::Empty, &key());
        let bytes = cert.to_cbor();
        assert_eq!(Certificate::from_cbor(&bytes[3..]).unwrap(), cert);
        assert!(Certificate::from_cbor(&bytes[..bytes.len() - 1]).is_err());
        assert!(Certificate::from_cbor(&hex::decode("a0").unwrap()).is_err());
    }

    /// A certificate produced by a real (local) IC replica, with that replica's root key, from
    /// the tests of DFINITY's service worker. Checks tree hashing, CBOR decoding and BLS
    /// verification against the real implementation.
    #[test]
    fn verifies_a_real_replica_certificate() {
        let root_key = hex::decode(concat!(
            "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100",
            "8096df0d1ffb96ca6fff319d4e1dd4b8339f3019d7e9848a9d315a6468df1e51dc6989efdcdcb90f33",
            "bae821281a90781202aa623dd38eb9cfae16424e7c4764e0ad3362b549b7fc4a5d8bf1f326df0171e1",
            "2c68814743f8371459b9680fde64"
        ))
        .unwrap();
        let cert = hex::decode(concat!(
            "d9d9f7a2647472656583024e726571756573745f7374617475738302582007bf53acde2967b1ddc8f0",
            "6814fb8a0d037e5ef19ba597e92b9d1febe726698983018302457265706c79820358354449444c046d",
            "7b6c02007101716d016c03a2f5ed880400c6a4a19806029aa1b2f90c7a01030c68656c6c6f20776f72",
            "6c642100c8008302467374617475738203477265706c696564697369676e61747572655830971e62f3",
            "5e9c288ea9b4c446b8febfc2bf040172a539753bed5349ed671bda6d80b4c7ae641ce9df0fc779deb6",
            "1511e6"
        ))
        .unwrap();
        let decoded = Certificate::from_cbor(&cert).unwrap();
        decoded.verify(&root_key).unwrap();
        let request_id =
            hex::decode("07bf53acde2967b1ddc8f06814fb8a0d037e5ef19ba597e92b9d1febe7266989")
                .unwrap();
        assert_eq!(
            lookup_path(&decoded.tree, &[b"request_status", &request_id, b"status"]),
            LookupResult::Found(b"replied")
        );
        // Re-encoding gives the replica's exact bytes.
        assert_eq!(decoded.to_cbor(), cert);
    }
}
