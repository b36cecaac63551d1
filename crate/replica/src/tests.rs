//! Tests of the replica through its public API, with real Ed25519 identities and the real
//! execution environment.

use candid::{CandidType, Encode};
use ciborium::Value;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use tabnet_crypto::{lookup_path, Certificate, LookupResult};
use tabnet_execution::SubnetConfig;
use tabnet_types::{canister_id_from_index, Principal, MANAGEMENT_CANISTER};

use crate::envelope::{self, RequestType, MAX_INGRESS_TTL_NANOS};
use crate::{IngressState, MemoryStore, ReadStateScope, Replica, SubmitError};

const NOW: u64 = 1_700_000_000_000_000_000;
const ED25519_DER_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

struct Identity {
    key: SigningKey,
}

impl Identity {
    fn new(seed: u8) -> Self {
        Self { key: SigningKey::from_bytes(&[seed; 32]) }
    }
    fn der(&self) -> Vec<u8> {
        [&ED25519_DER_PREFIX[..], self.key.verifying_key().as_bytes()].concat()
    }
    fn principal(&self) -> Principal {
        tabnet_crypto::self_authenticating_principal(&self.der())
    }
    /// A signed envelope around `content` (whose `sender` must be this identity).
    fn envelope(&self, content: Value) -> Vec<u8> {
        let id = tabnet_crypto::request_id(&content).unwrap();
        let sig = self.key.sign(&[b"\x0Aic-request".as_slice(), &id].concat());
        encode(&Value::Tag(
            55799,
            Box::new(map(vec![
                ("content", content),
                ("sender_pubkey", Value::Bytes(self.der())),
                ("sender_sig", Value::Bytes(sig.to_bytes().to_vec())),
            ])),
        ))
    }
}

fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn decode(bytes: &[u8]) -> Value {
    envelope::parse_cbor(bytes).unwrap()
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Map(m) = v else { panic!("not a map: {v:?}") };
    m.iter().find(|(k, _)| k == &Value::Text(name.into())).map(|(_, v)| v).unwrap_or_else(|| panic!("no {name}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}

fn call_content(sender: Principal, canister: Principal, method: &str, arg: Vec<u8>, expiry: u64) -> Value {
    map(vec![
        ("request_type", Value::Text("call".into())),
        ("sender", Value::Bytes(sender.as_slice().to_vec())),
        ("ingress_expiry", Value::Integer(expiry.into())),
        ("canister_id", Value::Bytes(canister.as_slice().to_vec())),
        ("method_name", Value::Text(method.into())),
        ("arg", Value::Bytes(arg)),
        ("nonce", Value::Bytes(vec![1, 2, 3])),
    ])
}

fn read_state_content(sender: Principal, paths: Vec<Vec<&[u8]>>, expiry: u64) -> Value {
    map(vec![
        ("request_type", Value::Text("read_state".into())),
        ("sender", Value::Bytes(sender.as_slice().to_vec())),
        ("ingress_expiry", Value::Integer(expiry.into())),
        (
            "paths",
            Value::Array(
                paths.into_iter().map(|p| Value::Array(p.into_iter().map(|l| Value::Bytes(l.to_vec())).collect())).collect(),
            ),
        ),
    ])
}

#[derive(CandidType)]
struct CreateArgs {
    amount: Option<candid::Nat>,
}

fn create_arg() -> Vec<u8> {
    Encode!(&CreateArgs { amount: Some(candid::Nat::from(5_000_000_000_000u64)) }).unwrap()
}

fn new_replica() -> Replica<MemoryStore> {
    Replica::open(MemoryStore::new(), [42; 32], SubnetConfig::for_subnet_size(13)).unwrap()
}

/// Creates a canister with `identity` and returns the request id.
fn create_canister(r: &mut Replica<MemoryStore>, identity: &Identity, now: u64) -> [u8; 32] {
    let content = call_content(identity.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), now + 60_000_000_000);
    let id = r.submit_call(&identity.envelope(content), &MANAGEMENT_CANISTER, now).unwrap();
    assert_eq!(r.request_status(&id).unwrap().state, IngressState::Received);
    let completed = r.tick(now + 1, [7; 32]).unwrap();
    assert_eq!(completed, vec![id]);
    id
}

fn read_state(r: &Replica<MemoryStore>, identity: &Identity, scope: ReadStateScope, paths: Vec<Vec<&[u8]>>, now: u64) -> Result<Certificate, u16> {
    let body = identity.envelope(read_state_content(identity.principal(), paths, now + 60_000_000_000));
    let response = r.read_state(&body, scope, now).map_err(|e| e.status)?;
    let cert = Certificate::from_cbor(&bytes(field(&decode(&response), "certificate"))).unwrap();
    cert.verify(r.root_key()).unwrap();
    Ok(cert)
}

#[test]
fn envelopes_decode_and_malformed_ones_are_400() {
    let alice = Identity::new(1);
    let content = call_content(alice.principal(), canister_id_from_index(0), "inc", vec![], NOW);
    let request = envelope::decode(&alice.envelope(content.clone()), RequestType::Call).unwrap();
    assert_eq!(request.sender, alice.principal());
    assert_eq!(request.call().unwrap().method_name, "inc");
    assert_eq!(request.nonce, Some(vec![1, 2, 3]));
    assert_eq!(request.request_id, tabnet_crypto::request_id(&content).unwrap());

    let bad = |bytes: &[u8]| envelope::decode(bytes, RequestType::Call).unwrap_err().status;
    assert_eq!(bad(b"\xff\x00garbage"), 400);
    assert_eq!(bad(&encode(&Value::Array(vec![]))), 400);
    assert_eq!(bad(&encode(&map(vec![("sender_sig", Value::Bytes(vec![]))]))), 400);
    // Wrong request type for the endpoint.
    assert_eq!(envelope::decode(&alice.envelope(content.clone()), RequestType::Query).unwrap_err().status, 400);
    // A missing and a mistyped field.
    let Value::Map(fields) = content.clone() else { unreachable!() };
    let without_method: Vec<_> = fields.iter().filter(|(k, _)| k != &Value::Text("method_name".into())).cloned().collect();
    let e = envelope::decode(&alice.envelope(Value::Map(without_method)), RequestType::Call).unwrap_err();
    assert!(e.message.contains("method_name"), "{e}");
    let mistyped: Vec<_> = fields
        .iter()
        .map(|(k, v)| if k == &Value::Text("arg".into()) { (k.clone(), Value::Text("x".into())) } else { (k.clone(), v.clone()) })
        .collect();
    let e = envelope::decode(&alice.envelope(Value::Map(mistyped)), RequestType::Call).unwrap_err();
    assert!(e.message.contains("`arg`"), "{e}");
    // Oversized nonce.
    let big_nonce: Vec<_> = fields
        .iter()
        .map(|(k, v)| if k == &Value::Text("nonce".into()) { (k.clone(), Value::Bytes(vec![0; 33])) } else { (k.clone(), v.clone()) })
        .collect();
    assert_eq!(envelope::decode(&alice.envelope(Value::Map(big_nonce)), RequestType::Call).unwrap_err().status, 400);
}

#[test]
fn expiry_window_is_enforced() {
    assert!(envelope::check_expiry(NOW, NOW).is_ok());
    assert!(envelope::check_expiry(NOW + MAX_INGRESS_TTL_NANOS, NOW).is_ok());
    assert_eq!(envelope::check_expiry(NOW - 1, NOW).unwrap_err().status, 400);
    assert_eq!(envelope::check_expiry(NOW + MAX_INGRESS_TTL_NANOS + 61_000_000_000, NOW).unwrap_err().status, 400);

    let mut r = new_replica();
    let alice = Identity::new(1);
    let past = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), NOW - 1);
    match r.submit_call(&alice.envelope(past), &MANAGEMENT_CANISTER, NOW) {
        Err(SubmitError::Http(e)) => assert!(e.status == 400 && e.message.contains("expiry"), "{e}"),
        other => panic!("expected 400, got {other:?}"),
    }
}

#[test]
fn authentication_failures_are_400() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    let mallory = Identity::new(2);
    let expiry = NOW + 60_000_000_000;
    let content = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), expiry);
    let status = |r: &mut Replica<MemoryStore>, body: Vec<u8>| match r.submit_call(&body, &MANAGEMENT_CANISTER, NOW) {
        Err(SubmitError::Http(e)) => e.status,
        other => panic!("expected an HTTP error, got {other:?}"),
    };
    // Signed by someone else's key (sender is not that key's principal).
    assert_eq!(status(&mut r, mallory.envelope(content.clone())), 400);
    // A signature that does not verify.
    let id = tabnet_crypto::request_id(&content).unwrap();
    let mut sig = alice.key.sign(&[b"\x0Aic-request".as_slice(), &id].concat()).to_bytes();
    sig[0] ^= 1;
    let forged = encode(&map(vec![
        ("content", content.clone()),
        ("sender_pubkey", Value::Bytes(alice.der())),
        ("sender_sig", Value::Bytes(sig.to_vec())),
    ]));
    assert_eq!(status(&mut r, forged), 400);
    // Unsigned but not anonymous.
    assert_eq!(status(&mut r, encode(&map(vec![("content", content.clone())]))), 400);
    // The genuine one is accepted.
    assert!(r.submit_call(&alice.envelope(content), &MANAGEMENT_CANISTER, NOW).is_ok());
}

#[test]
fn effective_canister_id_must_match() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    let expiry = NOW + 60_000_000_000;
    let c0 = canister_id_from_index(0);
    let c1 = canister_id_from_index(1);
    let to_c0 = call_content(alice.principal(), c0, "inc", vec![], expiry);
    match r.submit_call(&alice.envelope(to_c0.clone()), &c1, NOW) {
        Err(SubmitError::Http(e)) => assert_eq!(e.status, 400),
        other => panic!("expected 400, got {other:?}"),
    }
    // The right id, but no such canister: refused before execution with IC0301.
    match r.submit_call(&alice.envelope(to_c0), &c0, NOW) {
        Err(SubmitError::Rejected(e)) => assert_eq!(e.code, tabnet_types::ErrorCode::CanisterNotFound),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Management calls: the canister_id in the argument is the effective canister id.
    #[derive(CandidType)]
    struct Arg {
        canister_id: Principal,
    }
    let status_call = call_content(alice.principal(), MANAGEMENT_CANISTER, "start_canister", Encode!(&Arg { canister_id: c0 }).unwrap(), expiry);
    match r.submit_call(&alice.envelope(status_call), &c1, NOW) {
        Err(SubmitError::Http(e)) => assert_eq!(e.status, 400),
        other => panic!("expected 400, got {other:?}"),
    }
}

#[test]
fn calls_complete_and_the_certified_tree_shows_them() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    let bob = Identity::new(2);
    let id = create_canister(&mut r, &alice, NOW);
    let IngressState::Replied(reply) = &r.request_status(&id).unwrap().state else {
        panic!("not replied: {:?}", r.request_status(&id))
    };
    assert!(reply.starts_with(b"DIDL"));
    let canister = canister_id_from_index(0);
    assert!(r.state().canister(&canister).is_some());

    // The sender reads its request status; the certificate verifies under the root key.
    let scope = ReadStateScope::Canister(MANAGEMENT_CANISTER);
    let cert = read_state(&r, &alice, scope, vec![vec![b"request_status", &id]], NOW + 2).unwrap();
    assert_eq!(lookup_path(&cert.tree, &[b"request_status", &id, b"status"]), LookupResult::Found(b"replied"));
    assert_eq!(lookup_path(&cert.tree, &[b"request_status", &id, b"reply"]), LookupResult::Found(reply.as_slice()));
    let LookupResult::Found(time) = lookup_path(&cert.tree, &[b"time"]) else { panic!("no time") };
    assert_eq!(leb128::read::unsigned(&mut &time[..]).unwrap(), NOW + 1);
    // Someone else may not.
    assert_eq!(read_state(&r, &bob, scope, vec![vec![b"request_status", &id]], NOW + 2).unwrap_err(), 403);

    // Canister information, for the effective canister id.
    let cs = ReadStateScope::Canister(canister);
    let cert = read_state(&r, &bob, cs, vec![vec![b"canister", canister.as_slice(), b"controllers"], vec![b"canister", canister.as_slice(), b"module_hash"]], NOW + 2).unwrap();
    let LookupResult::Found(controllers) = lookup_path(&cert.tree, &[b"canister", canister.as_slice(), b"controllers"]) else {
        panic!("no controllers")
    };
    assert_eq!(
        decode(controllers),
        Value::Array(vec![Value::Bytes(alice.principal().as_slice().to_vec())])
    );
    assert_eq!(&controllers[..3], &[0xd9, 0xd9, 0xf7]);
    // No code installed: no module hash.
    assert_eq!(lookup_path(&cert.tree, &[b"canister", canister.as_slice(), b"module_hash"]), LookupResult::Absent);

    // The subnet: its key is the root key, its id the self-authenticating id of that key, and
    // the node's key is listed.
    let subnet = r.subnet_id();
    assert_eq!(subnet, tabnet_crypto::self_authenticating_principal(r.root_key()));
    let cert = read_state(&r, &bob, ReadStateScope::Subnet(subnet), vec![vec![b"subnet"], vec![b"canister_ranges", subnet.as_slice()]], NOW + 2).unwrap();
    assert_eq!(lookup_path(&cert.tree, &[b"subnet", subnet.as_slice(), b"public_key"]), LookupResult::Found(r.root_key()));
    let node = r.node_id();
    let LookupResult::Found(node_key) = lookup_path(&cert.tree, &[b"subnet", subnet.as_slice(), b"node", node.as_slice(), b"public_key"]) else {
        panic!("no node key")
    };
    assert_eq!(node, tabnet_crypto::self_authenticating_principal(node_key));
    let LookupResult::Found(ranges) = lookup_path(&cert.tree, &[b"subnet", subnet.as_slice(), b"canister_ranges"]) else { panic!() };
    assert_eq!(
        decode(ranges),
        Value::Array(vec![Value::Array(vec![
            Value::Bytes(canister_id_from_index(0).as_slice().to_vec()),
            Value::Bytes(canister_id_from_index((1 << 20) - 1).as_slice().to_vec()),
        ])])
    );
    assert!(matches!(
        lookup_path(&cert.tree, &[b"canister_ranges", subnet.as_slice(), canister_id_from_index(0).as_slice()]),
        LookupResult::Found(_)
    ));
    // Another subnet id is not served.
    assert_eq!(read_state(&r, &bob, ReadStateScope::Subnet(Principal::from_slice(&[9])), vec![vec![b"time"]], NOW + 2).unwrap_err(), 404);

    // Submitting the same call again is harmless.
    let again = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), NOW + 60_000_000_000);
    assert_eq!(r.submit_call(&alice.envelope(again), &MANAGEMENT_CANISTER, NOW + 3).unwrap(), id);
    assert!(!r.has_pending_ingress());
}

#[test]
fn query_responses_are_signed_by_the_node_key() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    let content = map(vec![
        ("request_type", Value::Text("query".into())),
        ("sender", Value::Bytes(alice.principal().as_slice().to_vec())),
        ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
        ("canister_id", Value::Bytes(canister.as_slice().to_vec())),
        ("method_name", Value::Text("greet".into())),
        ("arg", Value::Bytes(b"DIDL\x00\x00".to_vec())),
    ]);
    let request_id = tabnet_crypto::request_id(&content).unwrap();
    let body = r.query(&alice.envelope(content), ReadStateScope::Canister(canister), NOW + 5).unwrap();
    let response = decode(&body);
    // The canister is empty: the query is rejected, and the rejection is signed.
    assert_eq!(field(&response, "status"), &Value::Text("rejected".into()));
    let Value::Array(sigs) = field(&response, "signatures") else { panic!() };
    let sig = &sigs[0];
    let timestamp = field(sig, "timestamp").clone();
    assert_eq!(timestamp, Value::Integer((NOW + 5).into()));
    assert_eq!(bytes(field(sig, "identity")), r.node_id().as_slice().to_vec());
    let signed = map(vec![
        ("status", Value::Text("rejected".into())),
        ("reject_code", field(&response, "reject_code").clone()),
        ("reject_message", field(&response, "reject_message").clone()),
        ("error_code", field(&response, "error_code").clone()),
        ("timestamp", timestamp),
        ("request_id", Value::Bytes(request_id.to_vec())),
    ]);
    let hash = tabnet_crypto::hash_of_map(&signed).unwrap();
    // The node key from the certified tree verifies the signature.
    let cert = read_state(&r, &alice, ReadStateScope::Canister(canister), vec![vec![b"subnet"]], NOW + 5).unwrap();
    let subnet = r.subnet_id();
    let node = r.node_id();
    let LookupResult::Found(der) = lookup_path(&cert.tree, &[b"subnet", subnet.as_slice(), b"node", node.as_slice(), b"public_key"]) else {
        panic!()
    };
    let key = ed25519_dalek::VerifyingKey::from_bytes(der[12..].try_into().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&bytes(field(sig, "signature"))).unwrap();
    key.verify(&[b"\x0Bic-response".as_slice(), &hash].concat(), &signature).unwrap();

    // A query whose canister id is not the effective one is a 400.
    let content = map(vec![
        ("request_type", Value::Text("query".into())),
        ("sender", Value::Bytes(Principal::anonymous().as_slice().to_vec())),
        ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
        ("canister_id", Value::Bytes(canister.as_slice().to_vec())),
        ("method_name", Value::Text("greet".into())),
        ("arg", Value::Bytes(vec![])),
    ]);
    let anonymous = encode(&map(vec![("content", content)]));
    let e = r.query(&anonymous, ReadStateScope::Canister(canister_id_from_index(3)), NOW + 5).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn a_management_query_goes_to_the_url_of_the_canister_it_is_about() {
    // agent-js sends fetch_canister_logs to /api/v2/canister/<that canister>/query with
    // canister_id = aaaaa-aa, as the IC accepts.
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    #[derive(CandidType)]
    struct CanisterIdRecord {
        canister_id: Principal,
    }
    let content = map(vec![
        ("request_type", Value::Text("query".into())),
        ("sender", Value::Bytes(alice.principal().as_slice().to_vec())),
        ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
        ("canister_id", Value::Bytes(MANAGEMENT_CANISTER.as_slice().to_vec())),
        ("method_name", Value::Text("fetch_canister_logs".into())),
        ("arg", Value::Bytes(Encode!(&CanisterIdRecord { canister_id: canister }).unwrap())),
    ]);
    let body = r.query(&alice.envelope(content), ReadStateScope::Canister(canister), NOW + 5).unwrap();
    let response = decode(&body);
    assert_eq!(field(&response, "status"), &Value::Text("replied".into()), "{response:?}");
    // Its log, empty.
    #[derive(candid::Deserialize, CandidType)]
    struct Record {
        idx: u64,
        timestamp_nanos: u64,
        content: Vec<u8>,
    }
    #[derive(candid::Deserialize, CandidType)]
    struct Logs {
        canister_log_records: Vec<Record>,
    }
    let reply = bytes(field(field(&response, "reply"), "arg"));
    use candid::Decode;
    assert!(Decode!(&reply, Logs).unwrap().canister_log_records.is_empty());
}

#[test]
fn canister_status_as_a_query_goes_to_the_url_of_its_canister_and_no_other() {
    // `dfx canister status`-style: canister_status sent as a query to
    // /api/v2/canister/<that canister>/query with canister_id = aaaaa-aa.
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    #[derive(CandidType)]
    struct CanisterIdRecord {
        canister_id: Principal,
    }
    let content = |method: &str| {
        map(vec![
            ("request_type", Value::Text("query".into())),
            ("sender", Value::Bytes(alice.principal().as_slice().to_vec())),
            ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
            ("canister_id", Value::Bytes(MANAGEMENT_CANISTER.as_slice().to_vec())),
            ("method_name", Value::Text(method.into())),
            ("arg", Value::Bytes(Encode!(&CanisterIdRecord { canister_id: canister }).unwrap())),
        ])
    };
    let body = r.query(&alice.envelope(content("canister_status")), ReadStateScope::Canister(canister), NOW + 5).unwrap();
    let response = decode(&body);
    assert_eq!(field(&response, "status"), &Value::Text("replied".into()), "{response:?}");
    #[derive(candid::Deserialize, CandidType)]
    struct Settings {
        controllers: Vec<Principal>,
    }
    #[derive(candid::Deserialize, CandidType)]
    struct Status {
        settings: Settings,
    }
    let reply = bytes(field(field(&response, "reply"), "arg"));
    use candid::Decode;
    assert_eq!(Decode!(&reply, Status).unwrap().settings.controllers, vec![alice.principal()]);

    // The spec: the effective canister id of a management query is the canister_id of its
    // argument; another canister's URL is refused.
    let elsewhere = ReadStateScope::Canister(canister_id_from_index(7));
    for method in ["canister_status", "fetch_canister_logs"] {
        let e = r.query(&alice.envelope(content(method)), elsewhere, NOW + 5).unwrap_err();
        assert_eq!(e.status, 400, "{method}");
    }
}

#[test]
fn read_state_shows_the_subnet_type() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let subnet = r.subnet_id();
    for scope in [ReadStateScope::Canister(canister_id_from_index(0)), ReadStateScope::Subnet(subnet)] {
        let cert = read_state(&r, &alice, scope, vec![vec![b"subnet", subnet.as_slice(), b"type"]], NOW + 5).unwrap();
        assert_eq!(
            lookup_path(&cert.tree, &[b"subnet", subnet.as_slice(), b"type"]),
            LookupResult::Found(b"application".as_slice()),
        );
    }
}

#[test]
fn state_survives_reopening_the_store() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    let id = create_canister(&mut r, &alice, NOW);
    // One call stays in the pool, unexecuted, across the restart.
    let pending = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), NOW + 120_000_000_000);
    let pending_id = r.submit_call(&alice.envelope(pending), &MANAGEMENT_CANISTER, NOW + 2).unwrap();
    let root_key = r.root_key().to_vec();
    let cycles = r.state().canister(&canister_id_from_index(0)).unwrap().system.cycles;
    let store = r.into_store();

    // A different fresh seed: the stored one wins.
    let mut r = Replica::open(store, [1; 32], SubnetConfig::for_subnet_size(13)).unwrap();
    assert_eq!(r.root_key(), root_key.as_slice());
    assert_eq!(r.last_round_time(), NOW + 1);
    assert_eq!(r.state().canister(&canister_id_from_index(0)).unwrap().system.cycles, cycles);
    assert!(matches!(r.request_status(&id).unwrap().state, IngressState::Replied(_)));
    assert!(r.has_pending_ingress());
    // A round before the last one's time is moved after it.
    assert_eq!(r.tick(NOW - 1_000, [3; 32]).unwrap(), vec![pending_id]);
    assert_eq!(r.last_round_time(), NOW + 2);
    assert!(r.state().canister(&canister_id_from_index(1)).is_some());
}

/// Node `me` of a 3-node subnet (every node's replica starts from an empty store).
fn member(me: usize) -> Replica<MemoryStore> {
    use tabnet_crypto::{BlsSecretKey, NodeSigningKey};
    let nodes = (0..3u8).map(|i| NodeSigningKey::from_seed([i + 1; 32]).public_key_der()).collect();
    let root_key_der = BlsSecretKey::from_seed(&[9; 32]).public_key().to_der();
    let member = crate::Member { root_key_der, node_key_seed: [me as u8 + 1; 32], nodes, me };
    Replica::open_member(MemoryStore::new(), SubnetConfig::for_subnet_size(3), member).unwrap()
}

#[test]
fn a_checkpoint_restores_the_same_state_on_another_node() {
    let alice = Identity::new(1);
    let create = |nonce: u64| {
        let content = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create_arg(), NOW + 60_000_000_000 + nonce);
        vec![(alice.envelope(content), MANAGEMENT_CANISTER)]
    };
    let (mut a, mut b, mut c) = (member(0), member(1), member(2));
    let mut root_at_2 = [0; 32];
    for (height, nonce) in [(1u64, 1u64), (2, 2)] {
        let ha = a.execute_batch(NOW + height, [height as u8; 32], &create(nonce), &[]).unwrap();
        let hb = b.execute_batch(NOW + height, [height as u8; 32], &create(nonce), &[]).unwrap();
        assert_eq!(ha, hb);
        root_at_2 = ha;
    }
    let checkpoint = a.checkpoint().unwrap();
    assert_eq!(checkpoint, b.checkpoint().unwrap(), "replicas at one height give the same checkpoint bytes");

    // C never executed anything; the checkpoint brings it to height 2.
    let root = c.restore_checkpoint(&checkpoint, &[("consensus/mine".into(), b"kept".to_vec())]).unwrap();
    assert_eq!(root, root_at_2, "the restored state certifies as the original did");
    assert_eq!(c.executed_height(), 2);
    assert!(!c.has_certified_state(), "nothing is served until consensus certifies a later height");
    assert_eq!(c.record("consensus/mine").unwrap().as_deref(), Some(&b"kept"[..]));
    assert!(c.state().canister(&canister_id_from_index(1)).is_some());
    // The same call again is skipped on both (the history came along), and a new one runs alike.
    let hc = c.execute_batch(NOW + 3, [3; 32], &create(2), &[]).unwrap();
    let hb = b.execute_batch(NOW + 3, [3; 32], &create(2), &[]).unwrap();
    assert_eq!(hc, hb);
    let hc = c.execute_batch(NOW + 4, [4; 32], &create(4), &[]).unwrap();
    let hb = b.execute_batch(NOW + 4, [4; 32], &create(4), &[]).unwrap();
    assert_eq!(hc, hb);
    assert_eq!(c.checkpoint().unwrap(), b.checkpoint().unwrap());
    assert!(c.state().canister(&canister_id_from_index(2)).is_some());

    // Records outside the replicated state are refused.
    let mut bad: Vec<(String, serde_bytes::ByteBuf)> = ciborium::from_reader(checkpoint.as_slice()).unwrap();
    bad.push(("keys/seed".into(), serde_bytes::ByteBuf::from(vec![0; 32])));
    let mut bytes = Vec::new();
    ciborium::into_writer(&bad, &mut bytes).unwrap();
    assert!(c.restore_checkpoint(&bytes, &[]).unwrap_err().contains("outside the replicated state"));
    assert!(c.restore_checkpoint(b"\xff junk", &[]).is_err());
}

/// A record whose unknown field is a `vec null` of length 2^56: skipping it once took hours.
const CANDID_BOMB: &str = "4449444c026c0100016d7f0100808080808080808001";

#[test]
fn a_candid_bomb_in_a_management_call_is_rejected_at_once() {
    let mut r = new_replica();
    let alice = Identity::new(1);
    let bomb = hex::decode(CANDID_BOMB).unwrap();
    // A query: the effective canister id is looked for in the argument, then the management
    // canister decodes it.
    let query = map(vec![
        ("request_type", Value::Text("query".into())),
        ("sender", Value::Bytes(Principal::anonymous().as_slice().to_vec())),
        ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
        ("canister_id", Value::Bytes(vec![])),
        ("method_name", Value::Text("canister_status".into())),
        ("arg", Value::Bytes(bomb.clone())),
    ]);
    let body = encode(&Value::Tag(55799, Box::new(map(vec![("content", query)]))));
    let _ = r.query(&body, ReadStateScope::Canister(MANAGEMENT_CANISTER), NOW);
    // A call that gets into a round: it is rejected there, and the round completes.
    let content = call_content(alice.principal(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", bomb, NOW + 60_000_000_000);
    let id = r.submit_call(&alice.envelope(content), &MANAGEMENT_CANISTER, NOW).unwrap();
    r.tick(NOW + 1, [7; 32]).unwrap();
    match &r.request_status(&id).unwrap().state {
        IngressState::Rejected { reject_code, error_code, reject_message } => {
            assert_eq!((*reject_code, error_code.as_deref()), (4, Some("IC0408")), "{reject_message}");
        }
        other => panic!("expected a reject, got {other:?}"),
    }
}

/// A `content` map of `keys` text keys, about 7 bytes each.
fn content_map_with_keys(keys: usize) -> Vec<u8> {
    let mut bytes = vec![0xd9, 0xd9, 0xf7, 0xa1, 0x67];
    bytes.extend_from_slice(b"content");
    bytes.push(0xba);
    bytes.extend_from_slice(&(keys as u32).to_be_bytes());
    for i in 0..keys {
        let key = format!("{i:05x}");
        bytes.push(0x60 + key.len() as u8);
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0xf6);
    }
    bytes
}

#[test]
fn a_content_map_of_300_000_keys_is_refused_by_its_shape() {
    let body = content_map_with_keys(300_000);
    assert!(body.len() <= 2 * 1024 * 1024 + 256 * 1024, "{} bytes: it fits the body limit", body.len());
    // Checking duplicates pairwise took minutes here; the shape check refuses it before any
    // value is built.
    let e = envelope::decode(&body, RequestType::Call).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("elements in an array or map"), "{e}");
    // The same with duplicate keys within the limits is refused as a duplicate.
    let mut dup = vec![0xa1, 0x67];
    dup.extend_from_slice(b"content");
    dup.push(0xa2);
    for _ in 0..2 {
        dup.extend_from_slice(&[0x63, b'a', b'r', b'g', 0x40]);
    }
    assert!(envelope::decode(&dup, RequestType::Call).unwrap_err().message.contains("Duplicate field `arg`"));
}

#[test]
fn cbor_limits_hold_for_hostile_shapes() {
    use envelope::check_cbor_limits;
    // A length beyond the input, an array claiming 2^32 elements, deep nesting, a break
    // where none belongs, and indefinite arrays that never end or grow too long.
    assert!(check_cbor_limits(&[0x5b, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err().contains("longer than the input"));
    assert!(check_cbor_limits(&[0x9a, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(check_cbor_limits(&[0x81; 100]).unwrap_err().contains("nesting"));
    assert!(check_cbor_limits(&[0x82, 0x01, 0xff]).unwrap_err().contains("break"));
    assert!(check_cbor_limits(&[0x9f, 0x01, 0x02]).is_err());
    let mut long = vec![0x9f];
    long.extend(std::iter::repeat_n(0x01, 1001));
    long.push(0xff);
    assert!(check_cbor_limits(&long).unwrap_err().contains("1000"));
    // Within the limits: an indefinite array of chunked bytes, tags, a map.
    assert!(check_cbor_limits(&[0xd9, 0xd9, 0xf7, 0x9f, 0x5f, 0x41, 0x00, 0xff, 0xa1, 0x01, 0x02, 0xff]).is_ok());
    // Every envelope this file makes passes.
    let alice = Identity::new(1);
    let body = alice.envelope(call_content(alice.principal(), MANAGEMENT_CANISTER, "m", vec![0; 100_000], NOW));
    assert!(check_cbor_limits(&body).is_ok());
}

#[test]
fn the_effective_canister_id_of_a_large_management_call_is_found_past_its_payload() {
    #[derive(CandidType)]
    struct UploadChunkArgs {
        canister_id: Principal,
        chunk: serde_bytes::ByteBuf,
    }
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    // Only `canister_id` is read: a 1 MiB chunk, and the most a message may carry, are skipped.
    for size in [1 << 20, (2 << 20) - 4096] {
        let arg = Encode!(&UploadChunkArgs { canister_id: canister, chunk: serde_bytes::ByteBuf::from(vec![7u8; size]) }).unwrap();
        let content = call_content(alice.principal(), MANAGEMENT_CANISTER, "upload_chunk", arg, NOW + 60_000_000_000);
        let submitted = r.submit_call(&alice.envelope(content), &canister, NOW);
        assert!(submitted.is_ok(), "a {size}-byte chunk: {submitted:?}");
    }
}

/// Submits a management call as `identity` at `now` and runs the round; its reply.
fn management_call<T: CandidType>(r: &mut Replica<MemoryStore>, identity: &Identity, method: &str, arg: &T, target: Principal, now: u64) -> Vec<u8> {
    let content = call_content(identity.principal(), MANAGEMENT_CANISTER, method, Encode!(arg).unwrap(), now + 60_000_000_000);
    let id = r.submit_call(&identity.envelope(content), &target, now).unwrap();
    assert_eq!(r.tick(now + 1, [7; 32]).unwrap(), vec![id]);
    match &r.request_status(&id).unwrap().state {
        IngressState::Replied(reply) => reply.clone(),
        other => panic!("{method}: {other:?}"),
    }
}

#[test]
fn snapshots_survive_reopening_the_store_and_leave_it_when_deleted() {
    use crate::store::Store;
    use tabnet_execution::management::types::{CanisterIdRecord, InstallCodeArgs, CanisterInstallMode, Snapshot, SnapshotIdRecord, TakeCanisterSnapshotArgs};
    let mut r = new_replica();
    let alice = Identity::new(1);
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    // A module with one page of memory and nothing else.
    let module = vec![0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1];
    let install = InstallCodeArgs { mode: CanisterInstallMode::Install, canister_id: canister, wasm_module: module, arg: vec![], sender_canister_version: None };
    management_call(&mut r, &alice, "install_code", &install, canister, NOW + 10);
    let take = TakeCanisterSnapshotArgs { canister_id: canister, replace_snapshot: None, uninstall_code: None, sender_canister_version: None };
    let snapshot: Snapshot = candid::decode_one(&management_call(&mut r, &alice, "take_canister_snapshot", &take, canister, NOW + 20)).unwrap();
    let snapshot_keys = |r: &mut Replica<MemoryStore>| r.store_mut().list("state/snapshot/").unwrap();
    assert!(!snapshot_keys(&mut r).is_empty(), "the snapshot is stored");
    let hash = r.state().state_hash();

    let mut r = Replica::open(r.into_store(), [1; 32], SubnetConfig::for_subnet_size(13)).unwrap();
    assert_eq!(r.state().state_hash(), hash, "the reopened state hashes as before, snapshot included");
    let listed: Vec<Snapshot> =
        candid::decode_one(&management_call(&mut r, &alice, "list_canister_snapshots", &CanisterIdRecord { canister_id: canister }, canister, NOW + 30)).unwrap();
    assert_eq!(listed, vec![snapshot.clone()]);

    let delete = SnapshotIdRecord { canister_id: canister, snapshot_id: snapshot.id };
    management_call(&mut r, &alice, "delete_canister_snapshot", &delete, canister, NOW + 40);
    assert!(snapshot_keys(&mut r).is_empty(), "a deleted snapshot leaves the store");
}

#[test]
fn a_query_asked_again_on_the_same_state_is_answered_from_the_query_cache() {
    use candid::Decode;
    use tabnet_execution::management::types::{CanisterSettings, UpdateSettingsArgs};
    let mut r = new_replica();
    let (alice, bob) = (Identity::new(1), Identity::new(2));
    create_canister(&mut r, &alice, NOW);
    let canister = canister_id_from_index(0);
    #[derive(CandidType)]
    struct CanisterIdRecord {
        canister_id: Principal,
    }
    #[derive(candid::Deserialize, CandidType)]
    struct Settings {
        controllers: Vec<Principal>,
    }
    #[derive(candid::Deserialize, CandidType)]
    struct Status {
        settings: Settings,
    }
    // canister_status as a query: a new envelope (its own nonce) each time.
    let ask = |r: &mut Replica<MemoryStore>, who: &Identity, nonce: u64| -> Value {
        let content = map(vec![
            ("request_type", Value::Text("query".into())),
            ("sender", Value::Bytes(who.principal().as_slice().to_vec())),
            ("nonce", Value::Bytes(nonce.to_be_bytes().to_vec())),
            ("ingress_expiry", Value::Integer((NOW + 60_000_000_000).into())),
            ("canister_id", Value::Bytes(MANAGEMENT_CANISTER.as_slice().to_vec())),
            ("method_name", Value::Text("canister_status".into())),
            ("arg", Value::Bytes(Encode!(&CanisterIdRecord { canister_id: canister }).unwrap())),
        ]);
        decode(&r.query(&who.envelope(content), ReadStateScope::Canister(canister), NOW + 5).unwrap())
    };
    let controllers = |response: &Value| Decode!(&bytes(field(field(response, "reply"), "arg")), Status).unwrap().settings.controllers;
    let first = ask(&mut r, &alice, 1);
    assert_eq!(r.query_views().cache_stats(), (0, 1));
    let again = ask(&mut r, &alice, 2);
    assert_eq!(r.query_views().cache_stats(), (1, 1), "the same query on the same state is not run again");
    assert_eq!(field(&again, "reply"), field(&first, "reply"));
    // The caller is part of the query: bob, no controller, is refused, not given alice's answer.
    let by_bob = ask(&mut r, &bob, 3);
    assert_eq!(field(&by_bob, "status"), &Value::Text("rejected".into()));
    assert_eq!(r.query_views().cache_stats(), (1, 2));
    // A new certified state starts with an empty cache: the query runs on it and sees bob.
    let settings = CanisterSettings { controllers: Some(vec![alice.principal(), bob.principal()]), ..Default::default() };
    management_call(&mut r, &alice, "update_settings", &UpdateSettingsArgs { canister_id: canister, settings, sender_canister_version: None }, canister, NOW + 10);
    let after = ask(&mut r, &alice, 4);
    assert_eq!(r.query_views().cache_stats(), (1, 3));
    assert_eq!(controllers(&after), vec![alice.principal(), bob.principal()]);
    assert_eq!(controllers(&first), vec![alice.principal()]);
}
