//! The management canister's Candid arguments, every method, decoded and executed as the node
//! does it, by every way an argument arrives:
//! - ingress: the HTTP layer's effective-canister-id check (which decodes the argument), the
//!   ingress filter (`should_accept_ingress`, which decodes it again), then a round;
//! - query: `canister_status` / `fetch_canister_logs` answered as queries;
//! - from a canister: a proxy canister forwards the argument in a call to `aaaaa-aa`, the
//!   only way to reach `create_canister`, `deposit_cycles`, `raw_rand`, `canister_info` …
//!
//! An input is `[method][route][argument…]`: `method` indexes [`METHODS`], `route` picks the
//! way (its bit 2 attaches cycles to the proxy's call). Every input runs on a fresh subnet
//! holding one canister, the proxy, controlled by [`user`]: built once by ingress (create,
//! install) and restored from its stored form for each input, as a node restores its state
//! (building it anew took most of each input's time).

use crate::Seed;
use candid::{CandidType, Encode, Nat, Principal};
use std::sync::{Arc, OnceLock};
use tabnet_execution::embedder::CanisterModule;
use tabnet_execution::management::types::*;
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage, IngressOutcome};
use tabnet_execution::state::{decode_canister, LoadedWasm, ReplicatedState};
use tabnet_execution::SubnetConfig;
use tabnet_replica::envelope::CanisterCall;
use tabnet_replica::replica::check_effective_canister_id;
use tabnet_types::MANAGEMENT_CANISTER;

/// Every method of `aaaaa-aa` the interface spec names, and one it does not.
pub const METHODS: &[&str] = &[
    "create_canister",
    "update_settings",
    "upload_chunk",
    "clear_chunk_store",
    "stored_chunks",
    "install_code",
    "install_chunked_code",
    "uninstall_code",
    "canister_status",
    "canister_info",
    "canister_metadata",
    "stop_canister",
    "start_canister",
    "delete_canister",
    "deposit_cycles",
    "raw_rand",
    "http_request",
    "ecdsa_public_key",
    "sign_with_ecdsa",
    "schnorr_public_key",
    "sign_with_schnorr",
    "vetkd_public_key",
    "vetkd_derive_key",
    "node_metrics_history",
    "subnet_info",
    "provisional_create_canister_with_cycles",
    "provisional_top_up_canister",
    "fetch_canister_logs",
    "bitcoin_get_balance",
    "bitcoin_get_utxos",
    "bitcoin_send_transaction",
    "bitcoin_get_current_fee_percentiles",
    "bitcoin_get_block_headers",
    "take_canister_snapshot",
    "load_canister_snapshot",
    "list_canister_snapshots",
    "delete_canister_snapshot",
    "no_such_method",
];

const T0: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;
/// Rounds a message may take (a `stop_canister` waits for the canister's calls).
const MAX_ROUNDS: u64 = 6;

pub fn user() -> Principal {
    Principal::self_authenticating(b"fuzz user")
}

/// Forwards `[cycles?: u8][method length: u8][method][argument]` to `aaaaa-aa` and replies
/// (or rejects) with what comes back.
const PROXY_WAT: &str = r#"(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $reply_append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reject" (func $reject (param i32 i32)))
  (import "ic0" "msg_reject_msg_size" (func $reject_msg_size (result i32)))
  (import "ic0" "msg_reject_msg_copy" (func $reject_msg_copy (param i32 i32 i32)))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_data_append" (func $call_data_append (param i32 i32)))
  (import "ic0" "call_cycles_add128" (func $call_cycles_add128 (param i64 i64)))
  (import "ic0" "call_perform" (func $call_perform (result i32)))
  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (func $on_reply (param $env i32)
    (call $arg_copy (i32.const 0) (i32.const 0) (call $arg_size))
    (call $reply_append (i32.const 0) (call $arg_size))
    (call $reply))
  (func $on_reject (param $env i32)
    (call $reject_msg_copy (i32.const 0) (i32.const 0) (call $reject_msg_size))
    (call $reject (i32.const 0) (call $reject_msg_size)))
  (func (export "canister_update forward")
    (local $n i32) (local $m i32)
    (local.set $n (call $arg_size))
    (call $arg_copy (i32.const 0) (i32.const 0) (local.get $n))
    (local.set $m (i32.load8_u (i32.const 1)))
    (call $call_new (i32.const 0) (i32.const 0) (i32.const 2) (local.get $m)
                    (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
    (call $call_data_append (i32.add (i32.const 2) (local.get $m))
                            (i32.sub (local.get $n) (i32.add (i32.const 2) (local.get $m))))
    (if (i32.load8_u (i32.const 0))
      (then (call $call_cycles_add128 (i64.const 0) (i64.const 2000000000000))))
    (drop (call $call_perform))))"#;

/// The proxy's module, compiled once: the embedder's module cache hands it to every fresh
/// subnet's `install_code` while this keeps it alive.
fn proxy_wasm() -> &'static (Vec<u8>, Arc<CanisterModule>) {
    static PROXY: OnceLock<(Vec<u8>, Arc<CanisterModule>)> = OnceLock::new();
    PROXY.get_or_init(|| {
        let wasm = wat::parse_str(PROXY_WAT).expect("proxy WAT parses");
        let module = CanisterModule::new(wasm.clone()).expect("proxy module loads");
        (wasm, module)
    })
}

struct Subnet {
    env: ExecutionEnvironment,
    time: u64,
    nonce: u64,
    proxy: Principal,
}

/// The set-up subnet in its stored form: metadata, and per canister its record, module and
/// memories; with the harness's clock, nonce and the proxy's id.
struct Stored {
    metadata: Vec<u8>,
    canisters: Vec<(Vec<u8>, Option<LoadedWasm>)>,
    time: u64,
    nonce: u64,
    proxy: Principal,
    hash: [u8; 32],
}

const SUBNET_ID: [u8; 29] = [0xAA; 29];

fn environment(state: ReplicatedState) -> ExecutionEnvironment {
    ExecutionEnvironment::from_state(state, SubnetConfig::for_subnet_size(13), Principal::from_slice(&SUBNET_ID), vec![0x30, 0x00])
}

impl Subnet {
    /// A fresh subnet with the proxy installed: restored from the one set up at the first call.
    fn new() -> Self {
        static STORED: OnceLock<Stored> = OnceLock::new();
        let stored = STORED.get_or_init(|| {
            let s = Subnet::set_up();
            let state = s.env.state();
            let canisters = state
                .canister_ids()
                .map(|id| {
                    let c = state.stored_canister(id).expect("listed");
                    let wasm = c.wasm.map(|w| LoadedWasm { module: w.module.to_vec(), heap: w.heap.to_vec(), stable: w.stable.to_vec() });
                    (c.record, wasm)
                })
                .collect();
            let stored = Stored { metadata: state.encode_metadata(), canisters, time: s.time, nonce: s.nonce, proxy: s.proxy, hash: s.env.state_hash() };
            assert_eq!(Subnet::restore(&stored).env.state_hash(), stored.hash, "the restored subnet differs from the one set up");
            stored
        });
        Subnet::restore(stored)
    }

    fn restore(stored: &Stored) -> Self {
        let canisters = stored.canisters.iter().map(|(record, wasm)| {
            decode_canister(
                record,
                |_| {
                    let w = wasm.as_ref().ok_or("no wasm stored")?;
                    Ok(LoadedWasm { module: w.module.clone(), heap: w.heap.clone(), stable: w.stable.clone() })
                },
                // The set-up takes no snapshots.
                |_| Err("no snapshot stored".into()),
            )
            .expect("a stored canister decodes")
        });
        let state = ReplicatedState::decode(&stored.metadata, canisters).expect("the stored state decodes");
        Subnet { env: environment(state), time: stored.time, nonce: stored.nonce, proxy: stored.proxy }
    }

    /// Creates the proxy and installs it by ingress, as a client would.
    fn set_up() -> Self {
        let env = environment(ReplicatedState::new());
        let mut s = Subnet { env, time: T0, nonce: 0, proxy: MANAGEMENT_CANISTER };
        let create = Encode!(&ProvisionalCreateCanisterWithCyclesArgs::default()).expect("encode");
        let reply = s.ingress(MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", create, MANAGEMENT_CANISTER);
        let Some(IngressOutcome::Replied(reply)) = reply else { panic!("creating the proxy failed: {reply:?}") };
        s.proxy = candid::decode_one::<CreateCanisterResult>(&reply).expect("create result").canister_id;
        let install = InstallCodeArgs {
            mode: CanisterInstallMode::Install,
            canister_id: s.proxy,
            wasm_module: proxy_wasm().0.clone(),
            arg: Encode!().expect("encode"),
            sender_canister_version: None,
        };
        let outcome = s.ingress(MANAGEMENT_CANISTER, "install_code", Encode!(&install).expect("encode"), s.proxy);
        assert!(matches!(outcome, Some(IngressOutcome::Replied(_))), "installing the proxy failed: {outcome:?}");
        s
    }

    /// Submits one ingress message as the node does (the ingress filter, then rounds until it
    /// completes); `None` if it has not completed after [`MAX_ROUNDS`].
    fn ingress(&mut self, canister: Principal, method: &str, arg: Vec<u8>, effective: Principal) -> Option<IngressOutcome> {
        self.nonce += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.nonce.to_be_bytes());
        let msg = IngressMessage { id, sender: user(), canister_id: canister, method: method.into(), arg, effective_canister_id: effective };
        if let Err(e) = self.env.should_accept_ingress(&msg, self.time) {
            return Some(IngressOutcome::from_error(e));
        }
        let mut batch = vec![msg];
        for round in 0..MAX_ROUNDS {
            self.time += SECOND;
            let seed = [round as u8; 32];
            let done = self.env.execute_round(self.time, seed, std::mem::take(&mut batch));
            if let Some((_, outcome)) = done.into_iter().find(|(m, _)| *m == id) {
                return Some(outcome);
            }
        }
        None
    }
}

pub fn run(data: &[u8]) {
    let [method, route, arg @ ..] = data else { return };
    let method = METHODS[*method as usize % METHODS.len()];
    let mut subnet = Subnet::new();
    let proxy = subnet.proxy;
    match route % 3 {
        0 => {
            // The HTTP layer first checks the URL's effective canister id against the argument.
            let call = CanisterCall { canister_id: MANAGEMENT_CANISTER, method_name: method.into(), arg: arg.to_vec() };
            if check_effective_canister_id(&call, &proxy).is_ok() {
                subnet.ingress(MANAGEMENT_CANISTER, method, arg.to_vec(), proxy);
            }
        }
        1 => {
            let _ = subnet.env.query(subnet.time, user(), MANAGEMENT_CANISTER, method, arg.to_vec(), None);
        }
        _ => {
            let mut forward = vec![u8::from(route & 4 != 0), method.len() as u8];
            forward.extend_from_slice(method.as_bytes());
            forward.extend_from_slice(arg);
            subnet.ingress(proxy, "forward", forward, proxy);
        }
    }
    // Whatever happened, the subnet goes on: another round runs and its state hashes.
    subnet.time += SECOND;
    subnet.env.execute_round(subnet.time, [9; 32], Vec::new());
    let _ = subnet.env.state_hash();
}

/// Each seed must get past decoding: its method replies, or refuses for a reason that is not
/// the argument's encoding.
/// Seeds named `*-refused` stand for attacks: they are not run here, before libFuzzer's
/// `-timeout` watches, but as corpus inputs, where a hang or a crash is reported.
pub fn check(seed: &Seed) -> Result<(), String> {
    if seed.name.ends_with("-refused") {
        return Ok(());
    }
    let [method, route, arg @ ..] = seed.bytes.as_slice() else { return Err("too short".into()) };
    let method = METHODS[*method as usize % METHODS.len()];
    let mut subnet = Subnet::new();
    let proxy = subnet.proxy;
    let outcome = match route % 3 {
        0 => subnet.ingress(MANAGEMENT_CANISTER, method, arg.to_vec(), proxy),
        1 => Some(match subnet.env.query(subnet.time, user(), MANAGEMENT_CANISTER, method, arg.to_vec(), None) {
            Ok(_) => IngressOutcome::Replied(Vec::new()),
            Err(e) => IngressOutcome::from_error(e),
        }),
        _ => {
            let mut forward = vec![u8::from(route & 4 != 0), method.len() as u8];
            forward.extend_from_slice(method.as_bytes());
            forward.extend_from_slice(arg);
            subnet.ingress(proxy, "forward", forward, proxy)
        }
    };
    match outcome {
        Some(IngressOutcome::Replied(_)) => Ok(()),
        Some(IngressOutcome::Rejected { message, .. }) if !message.to_lowercase().contains("decode") => Ok(()),
        other => Err(format!("{method}: {other:?}")),
    }
}

fn seed<T: CandidType>(method: &str, route: u8, arg: &T) -> Seed {
    let index = METHODS.iter().position(|m| *m == method).unwrap_or_else(|| panic!("{method} is not in METHODS"));
    let mut bytes = vec![index as u8, route];
    bytes.extend_from_slice(&Encode!(arg).expect("Candid encoding of a seed"));
    Seed::new(format!("{method}-{}", ["ingress", "query", "canister", "", "", "canister-cycles"][route as usize]), bytes)
}

pub fn seeds() -> Vec<Seed> {
    // The proxy is the first canister of a fresh subnet.
    let proxy = tabnet_types::canister_id_from_index(0);
    let id = CanisterIdRecord { canister_id: proxy };
    let settings = CanisterSettings {
        controllers: Some(vec![user(), proxy]),
        compute_allocation: Some(Nat::from(1u8)),
        memory_allocation: Some(Nat::from(1u64 << 30)),
        freezing_threshold: Some(Nat::from(3600u32)),
        reserved_cycles_limit: Some(Nat::from(1u64 << 40)),
        log_visibility: Some(LogVisibility::AllowedViewers(vec![user()])),
        wasm_memory_limit: Some(Nat::from(1u64 << 32)),
        wasm_memory_threshold: Some(Nat::from(1u64 << 20)),
        environment_variables: Some(vec![EnvironmentVariable { name: "A".into(), value: "b".into() }]),
        minimum_incoming_canister_call_cycles: Some(Nat::from(1_000u32)),
        snapshot_visibility: Some(LogVisibility::Public),
        status_visibility: Some(LogVisibility::AllowedViewers(vec![user()])),
    };
    let wasm = wat::parse_str("(module (func (export \"canister_update go\")))").expect("WAT");
    let chunk_hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&wasm).into();
    #[derive(CandidType)]
    struct CanisterInfoArgs {
        canister_id: Principal,
        num_requested_changes: Option<u64>,
    }
    #[derive(CandidType)]
    struct CanisterMetadataArgs {
        canister_id: Principal,
        name: String,
    }
    let mut seeds = vec![
        seed("provisional_create_canister_with_cycles", 0, &ProvisionalCreateCanisterWithCyclesArgs {
            amount: Some(Nat::from(10u64.pow(13))),
            settings: Some(settings.clone()),
            specified_id: None,
            sender_canister_version: Some(1),
        }),
        seed("provisional_top_up_canister", 0, &ProvisionalTopUpCanisterArgs { canister_id: proxy, amount: Nat::from(10u64.pow(12)) }),
        seed("update_settings", 0, &UpdateSettingsArgs { canister_id: proxy, settings: settings.clone(), sender_canister_version: None }),
        seed("upload_chunk", 0, &UploadChunkArgs { canister_id: proxy, chunk: wasm.clone() }),
        seed("clear_chunk_store", 0, &id),
        seed("stored_chunks", 0, &id),
        seed("install_code", 0, &InstallCodeArgs {
            mode: CanisterInstallMode::Reinstall,
            canister_id: proxy,
            wasm_module: wasm.clone(),
            arg: vec![],
            sender_canister_version: None,
        }),
        seed("install_code", 2, &InstallCodeArgs {
            mode: CanisterInstallMode::Upgrade(Some(UpgradeOptions { skip_pre_upgrade: Some(true), wasm_memory_persistence: Some(WasmMemoryPersistence::Keep) })),
            canister_id: proxy,
            wasm_module: wasm.clone(),
            arg: vec![],
            sender_canister_version: Some(2),
        }),
        seed("install_chunked_code", 0, &InstallChunkedCodeArgs {
            mode: CanisterInstallMode::Install,
            target_canister: proxy,
            store_canister: Some(proxy),
            chunk_hashes_list: vec![ChunkHash { hash: chunk_hash.to_vec() }],
            wasm_module_hash: chunk_hash.to_vec(),
            arg: vec![],
            sender_canister_version: None,
        }),
        seed("uninstall_code", 0, &UninstallCodeArgs { canister_id: proxy, sender_canister_version: Some(3) }),
        seed("canister_status", 0, &id),
        seed("canister_status", 1, &id),
        seed("canister_status", 2, &id),
        seed("fetch_canister_logs", 1, &id),
        seed("stop_canister", 0, &id),
        seed("start_canister", 0, &id),
        seed("delete_canister", 0, &id),
        seed("create_canister", 5, &CreateCanisterArgs { settings: Some(settings), sender_canister_version: Some(4) }),
        seed("deposit_cycles", 5, &id),
        seed("raw_rand", 2, &()),
        seed("canister_info", 2, &CanisterInfoArgs { canister_id: proxy, num_requested_changes: Some(5) }),
        seed("canister_metadata", 2, &CanisterMetadataArgs { canister_id: proxy, name: "candid:service".into() }),
    ];
    // The known hang of issue 10: a record whose unknown field is a `vec null` of 2^56.
    let mut hang = vec![METHODS.iter().position(|m| *m == "canister_status").expect("listed") as u8, 1];
    hang.extend_from_slice(&[
        0x44, 0x49, 0x44, 0x4c, 0x02, 0x6c, 0x01, 0x00, 0x01, 0x6d, 0x7f, 0x01, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ]);
    seeds.push(Seed::new("canister_status-query-vec-null-2-56-refused", hang));
    seeds
}
