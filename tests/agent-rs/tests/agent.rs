//! The everyday flow through DFINITY's `ic-agent` against a spawned `tabnet`: fetch the root
//! key, create and install canisters, call, query (signature-verified), upgrade, see rejects
//! with the IC's codes, restart on the same state.

use candid::{Decode, Encode, Principal};
use ic_agent::{Agent, Identity};
use tabnet_agent_tests::*;

async fn counter_get(agent: &Agent, id: Principal) -> u64 {
    let reply = agent.query(&id, "get").with_arg(no_args()).call().await.expect("counter.get");
    Decode!(&reply, u64).unwrap()
}

async fn counter_inc(agent: &Agent, id: Principal) -> u64 {
    let reply = agent.update(&id, "inc").with_arg(no_args()).call_and_wait().await.expect("counter.inc");
    Decode!(&reply, u64).unwrap()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

#[tokio::test]
async fn counter_lifecycle_with_verification() {
    let node = TabnetNode::start().await;
    let owner = ed25519_identity();
    let owner_principal = owner.sender().unwrap();
    let agent = agent(&node, owner).await;
    assert_eq!(agent.read_root_key().len(), 133, "DER-wrapped BLS12-381 G2 root key");

    let id = create_canister(&agent).await.expect("provisional_create_canister_with_cycles");
    let wasm = canister_wasm("counter");
    install_code(&agent, id, InstallMode::Install, wasm.clone(), Encode!(&Some(5u64)).unwrap())
        .await
        .expect("install_code");
    assert_eq!(counter_get(&agent, id).await, 5);
    assert_eq!(counter_inc(&agent, id).await, 6);
    assert_eq!(counter_inc(&agent, id).await, 7);
    assert_eq!(counter_get(&agent, id).await, 7);

    // Certified state, read through read_state and checked against the root key.
    let module_hash = agent.read_state_canister_module_hash(id).await.expect("module_hash");
    assert_eq!(module_hash, sha256(&wasm));
    let controllers = agent.read_state_canister_controllers(id).await.expect("controllers");
    assert_eq!(controllers, vec![owner_principal]);
    let status = canister_status(&agent, id).await.expect("canister_status");
    assert!(matches!(status.status, CanisterStatusKind::Running));
    assert_eq!(status.module_hash, Some(sha256(&wasm)));

    // Upgrade keeps the count; an upgrade argument replaces it.
    install_code(&agent, id, InstallMode::Upgrade(None), wasm.clone(), no_args())
        .await
        .expect("upgrade");
    assert_eq!(counter_get(&agent, id).await, 7);
    install_code(&agent, id, InstallMode::Upgrade(None), wasm.clone(), Encode!(&Some(100u64)).unwrap())
        .await
        .expect("upgrade with argument");
    assert_eq!(counter_get(&agent, id).await, 100);

    // The caller the canister sees is the agent's identity.
    let who = agent.query(&id, "whoami").with_arg(no_args()).call().await.unwrap();
    assert_eq!(Decode!(&who, Principal).unwrap(), owner_principal);

    // Certified data: the count as 8 big-endian bytes, with a certificate in the query reply.
    let set = agent.update(&id, "set_certified").with_arg(no_args()).call_and_wait().await.unwrap();
    assert_eq!(Decode!(&set, u64).unwrap(), 100);
    #[derive(candid::CandidType, serde::Deserialize)]
    struct CertifiedCount {
        count: u64,
        certificate: Option<Vec<u8>>,
    }
    let reply = agent.query(&id, "get_certified").with_arg(no_args()).call().await.unwrap();
    let certified = Decode!(&reply, CertifiedCount).unwrap();
    assert_eq!(certified.count, 100);
    let cert: ic_agent::Certificate =
        serde_cbor::from_slice(&certified.certificate.expect("a data certificate")).expect("certificate CBOR");
    agent.verify(&cert, id).expect("the data certificate verifies against the root key");
    let data = ic_agent::lookup_value(&cert, [b"canister".as_slice(), id.as_slice(), b"certified_data"])
        .expect("certified_data in the certificate");
    assert_eq!(data, 100u64.to_be_bytes());
}

#[tokio::test]
async fn rejects_carry_the_ic_codes() {
    let node = TabnetNode::start().await;
    let agent = agent(&node, ed25519_identity()).await;
    let trap = deploy(&agent, "trap", no_args()).await;
    let counter = deploy(&agent, "counter", no_args()).await;

    let boom = agent.update(&trap, "boom").with_arg(no_args()).call_and_wait().await;
    let reject = assert_reject(boom, 5, Some("IC0503"));
    assert!(reject.reject_message.contains("boom: this canister trapped on purpose"));

    let boom_query = agent.query(&trap, "boom_query").with_arg(no_args()).call().await;
    assert_reject(boom_query, 5, Some("IC0503"));

    // A trap rolls the message's writes back.
    let ok = agent.update(&trap, "maybe").with_arg(Encode!(&false).unwrap()).call_and_wait().await.unwrap();
    assert_eq!(Decode!(&ok, u64).unwrap(), 1);
    let failed = agent.update(&trap, "maybe").with_arg(Encode!(&true).unwrap()).call_and_wait().await;
    assert_reject(failed, 5, Some("IC0503"));
    let writes = agent.query(&trap, "get").with_arg(no_args()).call().await.unwrap();
    assert_eq!(Decode!(&writes, u64).unwrap(), 1);

    let rejected = agent.update(&trap, "reject").with_arg(Encode!(&"no thanks").unwrap()).call_and_wait().await;
    let reject = assert_reject(rejected, 4, Some("IC0406"));
    assert_eq!(reject.reject_message, "no thanks");

    let missing_update = agent.update(&counter, "no_such_method").with_arg(no_args()).call_and_wait().await;
    assert_reject(missing_update, 5, Some("IC0536"));
    let missing_query = agent.query(&counter, "no_such_method").with_arg(no_args()).call().await;
    assert_reject(missing_query, 5, Some("IC0536"));

    let ghost = canister_id_from_index(canister_index(counter) + 1000);
    let to_ghost = agent.query(&ghost, "get").with_arg(no_args()).call().await;
    assert_reject(to_ghost, 3, Some("IC0301"));
    let to_ghost = agent.update(&ghost, "inc").with_arg(no_args()).call_and_wait().await;
    assert_reject(to_ghost, 3, Some("IC0301"));

    // Only controllers may install code or read the status (a secp256k1 stranger here).
    let stranger = tabnet_agent_tests::agent(&node, secp256k1_identity()).await;
    let install = install_code(&stranger, counter, InstallMode::Reinstall, canister_wasm("counter"), no_args()).await;
    assert_reject(install, 5, Some("IC0512"));
    assert_reject(canister_status(&stranger, counter).await, 5, Some("IC0512"));

    // Invalid Wasm is refused and the old code keeps running.
    let before = counter_inc(&agent, counter).await;
    let invalid = install_code(&agent, counter, InstallMode::Upgrade(None), canister_wasm("invalid"), no_args()).await;
    assert_reject(invalid, 5, Some("IC0505"));
    assert_eq!(counter_get(&agent, counter).await, before);
}

#[tokio::test]
async fn every_key_type_is_accepted() {
    let node = TabnetNode::start().await;
    let owner = tabnet_agent_tests::agent(&node, ed25519_identity()).await;
    let counter = deploy(&owner, "counter", no_args()).await;
    let identities: Vec<(&str, Box<dyn Identity>)> = vec![
        ("ed25519", Box::new(ed25519_identity())),
        ("secp256k1", Box::new(secp256k1_identity())),
        ("p256", Box::new(p256_identity())),
    ];
    for (kind, identity) in identities {
        let principal = identity.sender().unwrap();
        let agent = Agent::builder()
            .with_url(node.url())
            .with_boxed_identity(identity)
            .with_verify_query_signatures(true)
            .build()
            .unwrap();
        agent.fetch_root_key().await.unwrap();
        let who = agent.query(&counter, "whoami").with_arg(no_args()).call().await.unwrap();
        assert_eq!(Decode!(&who, Principal).unwrap(), principal, "{kind}");
        let before = counter_get(&agent, counter).await;
        assert_eq!(counter_inc(&agent, counter).await, before + 1, "{kind}");
    }
}

#[tokio::test]
async fn motoko_wasm64_counter_keeps_its_memory_across_upgrade() {
    let node = TabnetNode::start().await;
    let agent = agent(&node, ed25519_identity()).await;
    let id = deploy(&agent, "motoko_counter", no_args()).await;
    assert_eq!(counter_inc(&agent, id).await, 1);
    assert_eq!(counter_inc(&agent, id).await, 2);
    // A module with enhanced orthogonal persistence may only be upgraded with an explicit
    // `wasm_memory_persistence`; the replica refuses with IC0504 otherwise.
    let refused = install_code(&agent, id, InstallMode::Upgrade(None), canister_wasm("motoko_counter"), no_args()).await;
    let reject = assert_reject(refused, 5, Some("IC0504"));
    assert!(reject.reject_message.contains("wasm_memory_persistence"), "{}", reject.reject_message);
    assert_eq!(counter_get(&agent, id).await, 2);
    let keep = InstallMode::Upgrade(Some(UpgradeOptions {
        skip_pre_upgrade: None,
        wasm_memory_persistence: Some(WasmMemoryPersistence::Keep),
    }));
    install_code(&agent, id, keep, canister_wasm("motoko_counter"), no_args()).await.expect("upgrade with keep");
    assert_eq!(counter_get(&agent, id).await, 2);
    let transient = agent.query(&id, "transient_calls").with_arg(no_args()).call().await.unwrap();
    assert_eq!(Decode!(&transient, u64).unwrap(), 0);
}

#[tokio::test]
async fn restart_keeps_canisters_and_state() {
    let mut node = TabnetNode::start().await;
    let seed = random_32();
    let agent = tabnet_agent_tests::agent(&node, ed25519_identity_from_seed(&seed)).await;
    let counter = deploy(&agent, "counter", Encode!(&Some(41u64)).unwrap()).await;
    assert_eq!(counter_inc(&agent, counter).await, 42);

    node.restart().await;
    let agent = tabnet_agent_tests::agent(&node, ed25519_identity_from_seed(&seed)).await;
    assert_eq!(counter_get(&agent, counter).await, 42);
    assert_eq!(counter_inc(&agent, counter).await, 43);
    let other = create_canister(&agent).await.expect("creating after restart");
    assert_ne!(other, counter, "a restarted node must not hand out a taken canister id");
}
