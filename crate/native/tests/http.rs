//! Starts the `tabnet` binary on a free port and talks raw HTTP + CBOR to it, with an Ed25519
//! identity made here (the request ids signed with ed25519-dalek directly).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candid::{CandidType, Encode};
use ciborium::Value;
use ed25519_dalek::{Signer, SigningKey};
use tabnet_crypto::{lookup_path, Certificate, LookupResult};

const ED25519_DER_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

mod support;
use support::Node;

impl Node {
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body; a failed write is fine then.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP response");
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, response[split + 4..].to_vec())
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
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
    match ciborium::from_reader::<Value, _>(bytes).unwrap() {
        Value::Tag(55799, inner) => *inner,
        v => v,
    }
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Map(m) = v else { panic!("not a map: {v:?}") };
    m.iter().find(|(k, _)| k == &Value::Text(name.into())).map(|(_, v)| v).unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}

struct Identity(SigningKey);

impl Identity {
    fn der(&self) -> Vec<u8> {
        [&ED25519_DER_PREFIX[..], self.0.verifying_key().as_bytes()].concat()
    }
    fn principal(&self) -> Vec<u8> {
        // Self-authenticating: SHA-224 of the DER key, then 0x02.
        [&tabnet_crypto::sha224(&self.der())[..], &[0x02]].concat()
    }
    fn sign(&self, content: Value) -> ([u8; 32], Vec<u8>) {
        let id = tabnet_crypto::request_id(&content).unwrap();
        let sig = self.0.sign(&[b"\x0Aic-request".as_slice(), &id].concat());
        let envelope = Value::Tag(
            55799,
            Box::new(map(vec![
                ("content", content),
                ("sender_pubkey", Value::Bytes(self.der())),
                ("sender_sig", Value::Bytes(sig.to_bytes().to_vec())),
            ])),
        );
        (id, encode(&envelope))
    }
    fn create_call(&self, nonce: u8) -> ([u8; 32], Vec<u8>) {
        #[derive(CandidType)]
        struct Args {
            amount: Option<candid::Nat>,
        }
        self.sign(map(vec![
            ("request_type", Value::Text("call".into())),
            ("sender", Value::Bytes(self.principal())),
            ("ingress_expiry", Value::Integer((now() + 120_000_000_000).into())),
            ("nonce", Value::Bytes(vec![nonce])),
            ("canister_id", Value::Bytes(vec![])),
            ("method_name", Value::Text("provisional_create_canister_with_cycles".into())),
            ("arg", Value::Bytes(Encode!(&Args { amount: Some(candid::Nat::from(1_000_000_000_000u64)) }).unwrap())),
        ]))
    }
    fn read_state(&self, paths: Vec<Vec<Vec<u8>>>) -> Vec<u8> {
        let paths = paths.into_iter().map(|p| Value::Array(p.into_iter().map(Value::Bytes).collect())).collect();
        self.sign(map(vec![
            ("request_type", Value::Text("read_state".into())),
            ("sender", Value::Bytes(self.principal())),
            ("ingress_expiry", Value::Integer((now() + 120_000_000_000).into())),
            ("paths", Value::Array(paths)),
        ]))
        .1
    }
}

fn status_of(node: &Node, root_key: &[u8], identity: &Identity, id: &[u8; 32]) -> (String, Certificate) {
    let (code, _, body) = node.request(
        "POST",
        "/api/v2/canister/aaaaa-aa/read_state",
        &identity.read_state(vec![vec![b"request_status".to_vec(), id.to_vec()]]),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let cert = Certificate::from_cbor(&bytes(field(&decode(&body), "certificate"))).unwrap();
    cert.verify(root_key).unwrap();
    let status = match lookup_path(&cert.tree, &[b"request_status", id, b"status"]) {
        LookupResult::Found(s) => String::from_utf8(s.to_vec()).unwrap(),
        LookupResult::Absent => "unknown".into(),
        other => panic!("bad lookup {other:?}"),
    };
    (status, cert)
}

#[test]
fn status_call_read_state_and_restart() {
    let dir = std::env::temp_dir().join(format!("tabnet-http-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = Node::start(&dir);
    let alice = Identity(SigningKey::from_bytes(&[3; 32]));

    // Status.
    let (code, head, body) = node.request("GET", "/api/v2/status", b"");
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: application/cbor"), "{head}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{head}");
    let status = decode(&body);
    assert_eq!(field(&status, "replica_health_status"), &Value::Text("healthy".into()));
    let root_key = bytes(field(&status, "root_key"));
    assert_eq!(root_key.len(), 133);

    // A v2 call: 202, then polled through read_state until replied.
    let (id, envelope) = alice.create_call(1);
    let (code, _, body) = node.request("POST", "/api/v2/canister/aaaaa-aa/call", &envelope);
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&body));
    assert!(body.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    let cert = loop {
        let (status, cert) = status_of(&node, &root_key, &alice, &id);
        if status == "replied" {
            break cert;
        }
        assert!(Instant::now() < deadline, "call did not complete: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let LookupResult::Found(reply) = lookup_path(&cert.tree, &[b"request_status", &id, b"reply"]) else { panic!() };
    assert!(reply.starts_with(b"DIDL"));

    // A v3 call waits and answers with the certificate.
    let (id3, envelope) = alice.create_call(2);
    let (code, _, body) = node.request("POST", "/api/v3/canister/aaaaa-aa/call", &envelope);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let response = decode(&body);
    assert_eq!(field(&response, "status"), &Value::Text("replied".into()));
    let cert = Certificate::from_cbor(&bytes(field(&response, "certificate"))).unwrap();
    cert.verify(&root_key).unwrap();
    assert_eq!(lookup_path(&cert.tree, &[b"request_status", &id3, b"status"]), LookupResult::Found(b"replied"));

    // A non-replicated rejection: calling a canister that does not exist.
    let missing = tabnet_types::canister_id_from_index(999);
    let (_, envelope) = alice.sign(map(vec![
        ("request_type", Value::Text("call".into())),
        ("sender", Value::Bytes(alice.principal())),
        ("ingress_expiry", Value::Integer((now() + 120_000_000_000).into())),
        ("canister_id", Value::Bytes(missing.as_slice().to_vec())),
        ("method_name", Value::Text("inc".into())),
        ("arg", Value::Bytes(b"DIDL\x00\x00".to_vec())),
    ]));
    let (code, _, body) = node.request("POST", &format!("/api/v3/canister/{}/call", missing.to_text()), &envelope);
    assert_eq!(code, 200);
    let response = decode(&body);
    assert_eq!(field(&response, "status"), &Value::Text("non_replicated_rejection".into()));
    assert_eq!(field(&response, "reject_code"), &Value::Integer(3.into()));
    assert_eq!(field(&response, "error_code"), &Value::Text("IC0301".into()));

    // Errors: malformed CBOR, unknown route, oversized body, CORS preflight.
    let (code, _, _) = node.request("POST", "/api/v2/canister/aaaaa-aa/call", b"\xff\xfe");
    assert_eq!(code, 400);
    let (code, _, _) = node.request("POST", "/api/v2/canister/not-a-principal!/call", b"");
    assert_eq!(code, 400);
    let (code, _, _) = node.request("GET", "/api/v2/nothing", b"");
    assert_eq!(code, 404);
    let (code, _, _) = node.request("POST", "/api/v2/canister/aaaaa-aa/call", &vec![0u8; 3 * 1024 * 1024]);
    assert_eq!(code, 413);
    let (code, head, _) = node.request("OPTIONS", "/api/v2/canister/aaaaa-aa/call", b"");
    assert_eq!(code, 204);
    assert!(head.to_ascii_lowercase().contains("access-control-allow-methods"), "{head}");

    // Restart on the same directory: same root key, canisters and request history.
    node.stop();
    let node = Node::start(&dir);
    let (_, _, body) = node.request("GET", "/api/v2/status", b"");
    assert_eq!(bytes(field(&decode(&body), "root_key")), root_key);
    let (status, _) = status_of(&node, &root_key, &alice, &id);
    assert_eq!(status, "replied");
    let canister = tabnet_types::canister_id_from_index(1);
    let (code, _, body) = node.request(
        "POST",
        &format!("/api/v2/canister/{}/read_state", canister.to_text()),
        &alice.read_state(vec![vec![b"canister".to_vec(), canister.as_slice().to_vec(), b"controllers".to_vec()]]),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let cert = Certificate::from_cbor(&bytes(field(&decode(&body), "certificate"))).unwrap();
    let LookupResult::Found(controllers) = lookup_path(&cert.tree, &[b"canister", canister.as_slice(), b"controllers"]) else {
        panic!("canister 1 is gone after the restart")
    };
    assert_eq!(decode(controllers), Value::Array(vec![Value::Bytes(alice.principal())]));
    node.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
