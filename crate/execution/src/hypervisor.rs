//! The contract between the canister scheduler (state, call contexts, management canister,
//! cycles bookkeeping) and the Wasm embedder (wasmi + the ic0 System API).
//!
//! The scheduler decides *what* runs (which entry point, with which caller, argument, cycles and
//! limits) and applies the results; the embedder runs exactly one entry point of one canister
//! and reports what the code asked for. The embedder never touches other canisters.
//!
//! Implemented in `embedder.rs` (CanisterModule, ExecutionState, `execute`) and
//! `system_api.rs` (the ic0 imports).

use serde::{Deserialize, Serialize};
use tabnet_types::{CanisterId, Principal, RejectCode, UserError};

pub use crate::embedder::{execute, CanisterModule, ExecutionSnapshot, ExecutionState, Step};

/// A closure in the canister's table: `func` is the table index of a `(env) -> ()` function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmClosure {
    pub func: u64,
    pub env: u64,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPoint {
    /// An exported function, by its full export name, e.g. `canister_update inc`.
    Export(String),
    /// A table function: reply/reject callbacks and cleanup.
    Closure(WasmClosure),
}

/// The context an entry point runs in; it decides which ic0 functions are allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiType {
    /// The module's `(start)` function at installation.
    Start,
    Init { caller: Principal, arg: Vec<u8> },
    PreUpgrade { caller: Principal },
    PostUpgrade { caller: Principal, arg: Vec<u8> },
    Update { caller: Principal, method: String, arg: Vec<u8>, cycles_available: u128, deadline: Option<u64> },
    /// A query executed in replicated mode (as an update): state changes are discarded.
    ReplicatedQuery { caller: Principal, method: String, arg: Vec<u8>, cycles_available: u128 },
    /// A query answered by one node; `data_certificate` is present here only.
    NonReplicatedQuery { caller: Principal, method: String, arg: Vec<u8>, data_certificate: Option<Vec<u8>> },
    CompositeQuery { caller: Principal, method: String, arg: Vec<u8>, data_certificate: Option<Vec<u8>> },
    InspectMessage { caller: Principal, method: String, arg: Vec<u8> },
    /// `responded`: the call context was already answered (by the message or an earlier
    /// callback), so this callback may not reply or reject again.
    ReplyCallback { caller: Principal, reply: Vec<u8>, cycles_refunded: u128, cycles_available: u128, deadline: Option<u64>, responded: bool },
    RejectCallback { caller: Principal, code: RejectCode, message: String, cycles_refunded: u128, cycles_available: u128, deadline: Option<u64>, responded: bool },
    /// Composite-query callbacks: may call further queries, may not change state.
    CompositeReplyCallback { caller: Principal, reply: Vec<u8> },
    CompositeRejectCallback { caller: Principal, code: RejectCode, message: String },
    Cleanup { caller: Principal },
    Heartbeat,
    GlobalTimer,
    OnLowWasmMemory,
}

/// Canister status as `ic0.canister_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CanisterStatusKind {
    Running = 1,
    Stopping = 2,
    Stopped = 3,
}

/// What the System API may read of the canister's and the subnet's system state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStateView {
    pub canister_id: CanisterId,
    pub controllers: Vec<Principal>,
    pub status: CanisterStatusKind,
    pub canister_version: u64,
    pub cycles_balance: u128,
    /// Cycles that must stay in the balance (freezing threshold plus reservations):
    /// `canister_liquid_cycle_balance128` is balance minus this, and sending cycles or
    /// calling may not go below it.
    pub cycles_reserved: u128,
    pub subnet_id: Principal,
    /// The root key, DER-encoded.
    pub root_key: Vec<u8>,
    /// Block time, ns since 1970; constant within one execution.
    pub time: u64,
    pub global_timer: u64,
    pub certified_data: Vec<u8>,
    pub in_replicated_execution: bool,
    /// Instructions the call context's earlier executions used (`performance_counter(1)` adds
    /// this execution's).
    pub call_context_instructions: u64,
}

/// Limits for one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionParameters {
    pub instruction_limit: u64,
    /// Maximum heap size in bytes (the smaller of the subnet limit and `wasm_memory_limit`).
    pub wasm_memory_limit: u64,
    pub stable_memory_limit: u64,
    pub max_reply_bytes: usize,
    pub max_call_payload_bytes: usize,
    pub max_certified_data_bytes: usize,
    pub max_best_effort_timeout_seconds: u32,
    pub cycles: crate::cycles::CyclesConfig,
}

/// A call the canister made with `ic0.call_perform`. Its cycles are already taken from the
/// balance the embedder reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingCall {
    pub callee: Principal,
    pub method: String,
    pub payload: Vec<u8>,
    pub cycles: u128,
    pub on_reply: WasmClosure,
    pub on_reject: WasmClosure,
    pub on_cleanup: Option<WasmClosure>,
    /// `call_with_best_effort_response` timeout, seconds.
    pub timeout_seconds: Option<u32>,
}

/// The response the code gave to the message it ran for, if it gave one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WasmResult {
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    Reject(String),
}

/// One line of the canister's log: `debug_print` output, or the message of a trap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub timestamp_nanos: u64,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
}

/// System-state changes made by one execution. Empty when the execution trapped (its Wasm
/// state was rolled back too), except that logs are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemStateChanges {
    /// Cycles moved from the message into the balance (`msg_cycles_accept*`).
    pub cycles_accepted: u128,
    /// Cycles burned with `cycles_burn128`.
    pub cycles_burned: u128,
    /// Calls made (in order). Cycles attached are included in the calls.
    pub calls: Vec<OutgoingCall>,
    pub new_certified_data: Option<Vec<u8>>,
    pub new_global_timer: Option<u64>,
}

/// Everything one execution produced.
#[derive(Clone, Debug)]
pub struct ExecutionOutcome {
    /// `Ok(None)`: ran to the end without replying. `Err`: trapped or hit a limit; the error
    /// carries the IC error code (IC0503 trap, IC0522 instructions, IC0502 wasm trap, ...).
    pub result: Result<Option<WasmResult>, UserError>,
    pub instructions_used: u64,
    pub changes: SystemStateChanges,
    pub logs: Vec<LogRecord>,
}
