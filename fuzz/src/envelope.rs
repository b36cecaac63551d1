//! The HTTP interface's request envelopes: CBOR decoding of each request type, then
//! authentication (expiry, signature, delegation chain), as `/api/v2|v3|v4` handle a body.

use crate::Seed;
use ciborium::Value;
use ed25519_dalek::{Signer, SigningKey};
use tabnet_replica::envelope::{self, RequestType};
use tabnet_replica::{authenticate, authenticate_call, ReadStateScope};
use tabnet_types::{canister_id_from_index, Principal, MANAGEMENT_CANISTER};

/// The node's clock for every input (seeds expire a minute after it).
pub const NOW: u64 = 1_700_000_000_000_000_000;
const ED25519_DER_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
const KINDS: [RequestType; 3] = [RequestType::Call, RequestType::Query, RequestType::ReadState];

pub fn run(data: &[u8]) {
    let other = canister_id_from_index(7);
    for kind in KINDS {
        let Ok(request) = envelope::decode(data, kind) else { continue };
        let target = request.call().map(|c| c.canister_id);
        let _ = envelope::validate(&request, NOW, target.as_ref());
        match kind {
            RequestType::Call => {
                // The effective canister id of the URL: the one the call names (so the
                // signature is checked), the management canister's target, another canister.
                let ecid = target.unwrap_or(MANAGEMENT_CANISTER);
                let _ = authenticate_call(data, &ecid, NOW);
                let _ = authenticate_call(data, &other, NOW);
            }
            RequestType::Query | RequestType::ReadState => {
                if let Some(t) = target {
                    let _ = authenticate(data, kind, ReadStateScope::Canister(t), NOW);
                }
                let _ = authenticate(data, kind, ReadStateScope::Canister(other), NOW);
                let _ = authenticate(data, kind, ReadStateScope::Subnet(Principal::from_slice(&[0xAA; 29])), NOW);
            }
        }
    }
}

/// Seeds must decode as their type and authenticate.
pub fn check(seed: &Seed) -> Result<(), String> {
    let kind = if seed.name.starts_with("call") {
        RequestType::Call
    } else if seed.name.starts_with("query") {
        RequestType::Query
    } else {
        RequestType::ReadState
    };
    let request = envelope::decode(&seed.bytes, kind).map_err(|e| format!("{e:?}"))?;
    // read_state seeds are sent to the seed canister's URL (the delegation's target).
    let target = request.call().map(|c| c.canister_id).or(Some(canister_id_from_index(0)));
    envelope::validate(&request, NOW, target.as_ref()).map_err(|e| format!("{e:?}"))
}

struct Identity(SigningKey);

impl Identity {
    fn der(&self) -> Vec<u8> {
        [&ED25519_DER_PREFIX[..], self.0.verifying_key().as_bytes()].concat()
    }
    fn principal(&self) -> Principal {
        tabnet_crypto::self_authenticating_principal(&self.der())
    }
}

fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR encoding to a Vec cannot fail");
    out
}

fn content(kind: RequestType, sender: Principal, canister: Principal, method: &str, arg: Vec<u8>) -> Value {
    let mut fields = vec![
        ("request_type", Value::Text(kind.as_str().into())),
        ("sender", Value::Bytes(sender.as_slice().to_vec())),
        ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
        ("nonce", Value::Bytes(vec![1, 2, 3])),
    ];
    match kind {
        RequestType::Call | RequestType::Query => {
            fields.push(("canister_id", Value::Bytes(canister.as_slice().to_vec())));
            fields.push(("method_name", Value::Text(method.into())));
            fields.push(("arg", Value::Bytes(arg)));
        }
        RequestType::ReadState => {
            let path = |labels: Vec<Vec<u8>>| Value::Array(labels.into_iter().map(Value::Bytes).collect());
            fields.push((
                "paths",
                Value::Array(vec![
                    path(vec![b"time".to_vec()]),
                    path(vec![b"request_status".to_vec(), vec![7; 32], b"reply".to_vec()]),
                    path(vec![b"canister".to_vec(), canister.as_slice().to_vec(), b"module_hash".to_vec()]),
                ]),
            ));
        }
    }
    map(fields)
}

/// An envelope signed by `signer`, through `delegations` (each signed by the key before it).
fn envelope(content: Value, sender_key: &Identity, chain: &[(&Identity, Option<Vec<Principal>>)]) -> Vec<u8> {
    let id = tabnet_crypto::request_id(&content).expect("request id of a well-formed content map");
    let mut signer = sender_key;
    let mut delegations = Vec::new();
    for (delegate, targets) in chain {
        let mut fields =
            vec![("pubkey", Value::Bytes(delegate.der())), ("expiration", Value::Integer((NOW + 3_600_000_000_000).into()))];
        if let Some(targets) = targets {
            fields.push(("targets", Value::Array(targets.iter().map(|t| Value::Bytes(t.as_slice().to_vec())).collect())));
        }
        let delegation = map(fields);
        let hash = tabnet_crypto::hash_of_map(&delegation).expect("hash of a delegation map");
        let sig = signer.0.sign(&[tabnet_crypto::IC_REQUEST_AUTH_DELEGATION, &hash].concat());
        delegations.push(map(vec![("delegation", delegation), ("signature", Value::Bytes(sig.to_bytes().to_vec()))]));
        signer = delegate;
    }
    let sig = signer.0.sign(&[tabnet_crypto::IC_REQUEST, &id].concat());
    let mut fields = vec![
        ("content", content),
        ("sender_pubkey", Value::Bytes(sender_key.der())),
        ("sender_sig", Value::Bytes(sig.to_bytes().to_vec())),
    ];
    if !delegations.is_empty() {
        fields.push(("sender_delegation", Value::Array(delegations)));
    }
    cbor(&Value::Tag(envelope::CBOR_SELF_DESCRIBE_TAG, Box::new(map(fields))))
}

pub fn seeds() -> Vec<Seed> {
    let alice = Identity(SigningKey::from_bytes(&[1; 32]));
    let session = Identity(SigningKey::from_bytes(&[2; 32]));
    let leaf = Identity(SigningKey::from_bytes(&[3; 32]));
    let canister = canister_id_from_index(0);
    let anonymous = Principal::anonymous();
    let arg = candid::encode_one(()).expect("Candid encoding of ()");
    let mut seeds = Vec::new();
    for kind in KINDS {
        let name = kind.as_str();
        let c = || content(kind, alice.principal(), canister, "greet", arg.clone());
        seeds.push(Seed::new(format!("{name}-ed25519"), envelope(c(), &alice, &[])));
        seeds.push(Seed::new(format!("{name}-delegation"), envelope(c(), &alice, &[(&session, None)])));
        seeds.push(Seed::new(
            format!("{name}-delegation-chain-targets"),
            envelope(c(), &alice, &[(&session, Some(vec![canister])), (&leaf, None)]),
        ));
        let anon = content(kind, anonymous, canister, "greet", arg.clone());
        seeds.push(Seed::new(
            format!("{name}-anonymous"),
            cbor(&Value::Tag(envelope::CBOR_SELF_DESCRIBE_TAG, Box::new(map(vec![("content", anon)])))),
        ));
    }
    seeds
}
