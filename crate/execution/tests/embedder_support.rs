//! Helpers shared by the `embedder_*` tests (included with `mod embedder_support;`).
#![allow(dead_code)]

use std::sync::Arc;
use tabnet_execution::config::SubnetConfig;
use tabnet_execution::hypervisor::{
    execute, ApiType, CanisterModule, CanisterStatusKind, EntryPoint, ExecutionOutcome, ExecutionParameters,
    ExecutionState, SystemStateView, WasmResult,
};
use tabnet_types::{canister_id_from_index, ErrorCode, Principal, RejectCode};

pub const TIME: u64 = 1_700_000_000_000_000_000;
pub const BALANCE: u128 = 10_000_000_000_000;

pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap_or_else(|e| panic!("bad WAT in test: {e}"))
}

pub fn module(wat: &str) -> Arc<CanisterModule> {
    CanisterModule::new(wasm(wat)).unwrap_or_else(|e| panic!("module rejected: {e}"))
}

pub fn controller() -> Principal {
    Principal::from_slice(&[0xC0, 0x17, 0x01])
}

pub fn user() -> Principal {
    Principal::from_slice(&[0x05, 0xE5, 0x02])
}

pub fn sys() -> SystemStateView {
    SystemStateView {
        canister_id: canister_id_from_index(7),
        controllers: vec![controller()],
        status: CanisterStatusKind::Running,
        canister_version: 3,
        cycles_balance: BALANCE,
        cycles_reserved: 0,
        subnet_id: Principal::from_slice(&[0x5B; 29]),
        root_key: b"root key DER".to_vec(),
        time: TIME,
        global_timer: 0,
        certified_data: Vec::new(),
        in_replicated_execution: true,
        call_context_instructions: 0,
    }
}

pub fn params() -> ExecutionParameters {
    let config = SubnetConfig::for_subnet_size(13);
    ExecutionParameters {
        instruction_limit: config.max_instructions_per_update,
        wasm_memory_limit: config.max_wasm32_memory,
        stable_memory_limit: config.max_stable_memory,
        max_reply_bytes: config.max_reply_bytes,
        max_call_payload_bytes: config.max_inter_canister_payload_same_subnet,
        max_certified_data_bytes: config.max_certified_data_bytes,
        max_best_effort_timeout_seconds: config.max_best_effort_timeout_seconds,
        cycles: config.cycles,
    }
}

/// Instantiates the module (running its start function, which must succeed).
pub fn install(wat: &str) -> ExecutionState {
    install_module(module(wat))
}

pub fn install_module(m: Arc<CanisterModule>) -> ExecutionState {
    match ExecutionState::new(m, Vec::new(), &sys(), &params()) {
        Ok((state, _)) => state,
        Err(outcome) => panic!("start failed: {:?}", outcome.result),
    }
}

pub fn update_api(method: &str, arg: &[u8]) -> ApiType {
    ApiType::Update { caller: user(), method: method.into(), arg: arg.to_vec(), cycles_available: 0, deadline: None }
}

pub fn query_api(method: &str, arg: &[u8]) -> ApiType {
    ApiType::NonReplicatedQuery { caller: user(), method: method.into(), arg: arg.to_vec(), data_certificate: None }
}

pub fn run(state: &mut ExecutionState, export: &str, api: ApiType) -> ExecutionOutcome {
    execute(state, &EntryPoint::Export(export.into()), api, &sys(), &params())
}

pub fn update(state: &mut ExecutionState, method: &str, arg: &[u8]) -> ExecutionOutcome {
    run(state, &format!("canister_update {method}"), update_api(method, arg))
}

pub fn query(state: &mut ExecutionState, method: &str, arg: &[u8]) -> ExecutionOutcome {
    run(state, &format!("canister_query {method}"), query_api(method, arg))
}

/// The reply of a successful execution.
pub fn reply(outcome: &ExecutionOutcome) -> Vec<u8> {
    match &outcome.result {
        Ok(Some(WasmResult::Reply(bytes))) => bytes.clone(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub fn error_code(outcome: &ExecutionOutcome) -> ErrorCode {
    match &outcome.result {
        Err(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn error_message(outcome: &ExecutionOutcome) -> String {
    match &outcome.result {
        Err(e) => e.message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn u32_reply(outcome: &ExecutionOutcome) -> u32 {
    u32::from_le_bytes(reply(outcome).try_into().expect("4-byte reply"))
}

pub fn u64_reply(outcome: &ExecutionOutcome) -> u64 {
    u64::from_le_bytes(reply(outcome).try_into().expect("8-byte reply"))
}

/// One ApiType per context the spec names (letter, api, mode name in errors).
pub fn all_contexts() -> Vec<(&'static str, ApiType)> {
    let caller = user();
    vec![
        ("s", ApiType::Start),
        ("I", ApiType::Init { caller, arg: vec![] }),
        ("I", ApiType::PostUpgrade { caller, arg: vec![] }),
        ("G", ApiType::PreUpgrade { caller }),
        ("U", update_api("m", &[])),
        ("RQ", ApiType::ReplicatedQuery { caller, method: "m".into(), arg: vec![], cycles_available: 0 }),
        ("NRQ", query_api("m", &[])),
        ("CQ", ApiType::CompositeQuery { caller, method: "m".into(), arg: vec![], data_certificate: None }),
        (
            "Ry",
            ApiType::ReplyCallback {
                caller,
                reply: vec![],
                cycles_refunded: 0,
                cycles_available: 0,
                deadline: None,
                responded: false,
            },
        ),
        (
            "Rt",
            ApiType::RejectCallback {
                caller,
                code: RejectCode::CanisterReject,
                message: "no".into(),
                cycles_refunded: 0,
                cycles_available: 0,
                deadline: None,
                responded: false,
            },
        ),
        ("CRy", ApiType::CompositeReplyCallback { caller, reply: vec![] }),
        ("CRt", ApiType::CompositeRejectCallback { caller, code: RejectCode::CanisterReject, message: "no".into() }),
        ("C", ApiType::Cleanup { caller }),
        ("F", ApiType::InspectMessage { caller, method: "m".into(), arg: vec![] }),
        ("T", ApiType::Heartbeat),
        ("T", ApiType::GlobalTimer),
    ]
}
