//! A user identity that signs requests as agents do: an Ed25519 key, its self-authenticating
//! principal, and envelopes (`{content, sender_pubkey, sender_sig}`) for calls and queries.
//! The load generators use it (natively and in a tab); the replica only verifies.

use ciborium::Value;
use ed25519_dalek::{Signer, SigningKey};
use tabnet_types::Principal;

use crate::ingress_auth::self_authenticating_principal;
use crate::node_key::NodeSigningKey;
use crate::request_id::{request_id, IC_REQUEST};

pub struct UserIdentity {
    key: SigningKey,
    der: Vec<u8>,
    principal: Principal,
}

/// A call's or query's content fields.
pub struct Request<'a> {
    /// `call` or `query`.
    pub request_type: &'a str,
    pub canister_id: &'a Principal,
    pub method: &'a str,
    pub arg: Vec<u8>,
    /// Makes otherwise equal requests distinct (distinct request ids).
    pub nonce: u64,
    /// Nanoseconds since the epoch.
    pub ingress_expiry: u64,
}

impl UserIdentity {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let der = NodeSigningKey::from_seed(seed).public_key_der();
        Self { key: SigningKey::from_bytes(&seed), principal: self_authenticating_principal(&der), der }
    }

    pub fn principal(&self) -> Principal {
        self.principal
    }

    /// A signed envelope for `content` (a CBOR map), and its request id.
    pub fn envelope(&self, content: Vec<(&str, Value)>) -> (Vec<u8>, [u8; 32]) {
        let content = Value::Map(content.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect());
        let id = request_id(&content).expect("content is a well-formed map");
        let mut msg = IC_REQUEST.to_vec();
        msg.extend_from_slice(&id);
        let sig = self.key.sign(&msg).to_bytes().to_vec();
        let envelope = Value::Tag(
            55799,
            Box::new(Value::Map(vec![
                (Value::Text("content".into()), content),
                (Value::Text("sender_pubkey".into()), Value::Bytes(self.der.clone())),
                (Value::Text("sender_sig".into()), Value::Bytes(sig)),
            ])),
        );
        let mut bytes = Vec::new();
        ciborium::into_writer(&envelope, &mut bytes).expect("CBOR encodes into a Vec");
        (bytes, id)
    }

    /// The content of `request`, sent by this identity.
    pub fn content(&self, request: Request) -> Vec<(&'static str, Value)> {
        content_of(&self.principal, request)
    }

    /// A signed envelope for `request`, and its request id.
    pub fn sign(&self, request: Request) -> (Vec<u8>, [u8; 32]) {
        self.envelope(self.content(request))
    }
}

/// An envelope for `request` from the anonymous principal (no key, no signature), as agents
/// send queries with no identity; and its request id.
pub fn anonymous_envelope(request: Request) -> (Vec<u8>, [u8; 32]) {
    let mut content = content_of(&Principal::anonymous(), request);
    let content = Value::Map(content.drain(..).map(|(k, v)| (Value::Text(k.into()), v)).collect());
    let id = request_id(&content).expect("content is a well-formed map");
    let envelope = Value::Tag(55799, Box::new(Value::Map(vec![(Value::Text("content".into()), content)])));
    let mut bytes = Vec::new();
    ciborium::into_writer(&envelope, &mut bytes).expect("CBOR encodes into a Vec");
    (bytes, id)
}

fn content_of(sender: &Principal, request: Request) -> Vec<(&'static str, Value)> {
    let request_type = if request.request_type == "call" { "call" } else { "query" };
    vec![
        ("request_type", Value::Text(request_type.into())),
        ("sender", Value::Bytes(sender.as_slice().to_vec())),
        ("ingress_expiry", Value::Integer(request.ingress_expiry.into())),
        ("canister_id", Value::Bytes(request.canister_id.as_slice().to_vec())),
        ("method_name", Value::Text(request.method.into())),
        ("arg", Value::Bytes(request.arg)),
        ("nonce", Value::Bytes(request.nonce.to_be_bytes().to_vec())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress_auth::authenticate;

    #[test]
    fn envelopes_verify_as_the_replica_checks_them() {
        let who = UserIdentity::from_seed([3; 32]);
        let canister = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
        let (bytes, id) = who.sign(Request {
            request_type: "call", canister_id: &canister, method: "inc", arg: vec![], nonce: 1, ingress_expiry: 2_000_000_000,
        });
        let envelope: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        let Value::Tag(55799, inner) = envelope else { panic!("self-describing tag") };
        let map = inner.as_map().unwrap();
        let field = |k: &str| map.iter().find(|(key, _)| key.as_text() == Some(k)).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(request_id(&field("content")).unwrap(), id);
        let der = field("sender_pubkey").into_bytes().unwrap();
        let sig = field("sender_sig").into_bytes().unwrap();
        assert!(authenticate(&who.principal(), Some(&der), Some(&sig), &[], &id, 1_000_000_000, Some(&canister)).is_ok());
        let (bytes, id) = anonymous_envelope(Request {
            request_type: "query", canister_id: &canister, method: "get", arg: vec![], nonce: 2, ingress_expiry: 2_000_000_000,
        });
        let envelope: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        let Value::Tag(55799, inner) = envelope else { panic!("self-describing tag") };
        let content = inner.as_map().unwrap()[0].1.clone();
        assert_eq!(request_id(&content).unwrap(), id);
        assert!(authenticate(&Principal::anonymous(), None, None, &[], &id, 1_000_000_000, Some(&canister)).is_ok());
    }
}
