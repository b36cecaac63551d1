//! The management canister `aaaaa-aa`: canister lifecycle, settings, cycles, randomness and
//! logs. Arguments and results are Candid, typed as the interface spec's `ic.did`.

mod chunks;
pub(crate) mod install;
mod snapshots;
pub mod types;

use crate::hypervisor::WasmResult;
use crate::SubnetConfig;
use crate::scheduler::{ExecutionEnvironment, IngressMessage};
use crate::state::{
    CallOrigin, CanisterState, CanisterStatus, ChangeDetails, ChangeOrigin, LogVisibility, Request, ResponsePayload,
    SystemState,
};
use candid::{CandidType, Nat};
use serde::de::DeserializeOwned;
use tabnet_types::{CanisterId, ErrorCode, Principal, RejectCode, UserError, MANAGEMENT_CANISTER};
use types::*;

/// The result of one management call.
enum Outcome {
    /// Reply with these Candid bytes; refund these cycles.
    Reply(Vec<u8>, u128),
    Reject(UserError, u128),
    /// Answered later (`stop_canister`).
    Pending,
}

/// Methods only canisters may call (the replica's list).
const CANISTER_ONLY: &[&str] = &[
    "create_canister",
    "canister_info",
    "canister_metadata",
    "deposit_cycles",
    "raw_rand",
    "http_request",
    "ecdsa_public_key",
    "sign_with_ecdsa",
    "schnorr_public_key",
    "sign_with_schnorr",
    "vetkd_public_key",
    "vetkd_derive_key",
    "bitcoin_get_balance",
    "bitcoin_get_utxos",
    "bitcoin_get_block_headers",
    "bitcoin_send_transaction",
    "bitcoin_get_current_fee_percentiles",
    "node_metrics_history",
    "subnet_info",
];

/// Methods a controller may call by ingress (effective canister id = the canister).
const CONTROLLER_INGRESS: &[&str] = &[
    "canister_status",
    "start_canister",
    "stop_canister",
    "uninstall_code",
    "delete_canister",
    "update_settings",
    "install_code",
    "upload_chunk",
    "stored_chunks",
    "clear_chunk_store",
    "install_chunked_code",
    "take_canister_snapshot",
    "load_canister_snapshot",
    "delete_canister_snapshot",
    "upload_canister_snapshot_metadata",
    "upload_canister_snapshot_data",
    // Also open to whom `snapshot_visibility` names (see `check_ingress`).
    "list_canister_snapshots",
    "read_canister_snapshot_metadata",
    "read_canister_snapshot_data",
];

/// Methods that whom a canister's `snapshot_visibility` names may call besides controllers.
const SNAPSHOT_READS: &[&str] = &["list_canister_snapshots", "read_canister_snapshot_metadata", "read_canister_snapshot_data"];

/// The effective canister id the replica reads from a management payload. Each argument is
/// decoded as its method's own type: decoding only `canister_id` would skip the other fields,
/// and skipping a module or a chunk of a few MiB exceeds the decoder's skipping quota.
fn effective_canister_id(method: &str, arg: &[u8]) -> Option<CanisterId> {
    match method {
        "install_code" => decode::<InstallCodeArgs>(arg).ok().map(|a| a.canister_id),
        "install_chunked_code" => decode::<InstallChunkedCodeArgs>(arg).ok().map(|a| a.target_canister),
        "upload_chunk" => decode::<UploadChunkArgs>(arg).ok().map(|a| a.canister_id),
        "update_settings" => decode::<UpdateSettingsArgs>(arg).ok().map(|a| a.canister_id),
        "uninstall_code" => decode::<UninstallCodeArgs>(arg).ok().map(|a| a.canister_id),
        "take_canister_snapshot" => decode::<TakeCanisterSnapshotArgs>(arg).ok().map(|a| a.canister_id),
        "load_canister_snapshot" => decode::<LoadCanisterSnapshotArgs>(arg).ok().map(|a| a.canister_id),
        "delete_canister_snapshot" | "read_canister_snapshot_metadata" => {
            decode::<SnapshotIdRecord>(arg).ok().map(|a| a.canister_id)
        }
        "read_canister_snapshot_data" => decode::<ReadCanisterSnapshotDataArgs>(arg).ok().map(|a| a.canister_id),
        "upload_canister_snapshot_metadata" => decode::<UploadCanisterSnapshotMetadataArgs>(arg).ok().map(|a| a.canister_id),
        "upload_canister_snapshot_data" => decode::<UploadCanisterSnapshotDataArgs>(arg).ok().map(|a| a.canister_id),
        _ => decode::<CanisterIdRecord>(arg).ok().map(|r| r.canister_id),
    }
}

/// The canister a management request is about, if it names one.
pub(crate) fn target_canister(req: &Request) -> Option<CanisterId> {
    effective_canister_id(&req.method, &req.arg)
}

/// Whether a management request installs code (these run one at a time while an install runs
/// in slices, as on the IC, and wait for a round with budget left).
pub(crate) fn installs_code(req: &Request) -> bool {
    matches!(req.method.as_str(), "install_code" | "install_chunked_code")
}

/// Whether an ingress message to `aaaaa-aa` may enter (the replica's ingress filter).
pub(crate) fn check_ingress(env: &ExecutionEnvironment, msg: &IngressMessage) -> Result<(), UserError> {
    let m = msg.method.as_str();
    if CANISTER_ONLY.contains(&m) {
        return Err(UserError::new(ErrorCode::CanisterRejectedMessage, format!("Only canisters can call ic00 method {m}")));
    }
    if CONTROLLER_INGRESS.contains(&m) {
        // The replica reads the effective canister id from the payload.
        let id = effective_canister_id(m, &msg.arg).ok_or_else(|| {
            UserError::new(ErrorCode::InvalidManagementPayload, format!("Failed to decode payload for ic00 method: {m}"))
        })?;
        let c = env
            .state
            .canister(&id)
            .ok_or_else(|| UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found")))?;
        let may_read_status =
            m == "canister_status" && c.system.settings.status_visibility.allows(&msg.sender, &c.system.controllers);
        let may_read_snapshots =
            SNAPSHOT_READS.contains(&m) && c.system.settings.snapshot_visibility.allows(&msg.sender, &c.system.controllers);
        if !c.system.is_controller(&msg.sender) && !may_read_status && !may_read_snapshots {
            return Err(UserError::new(
                ErrorCode::CanisterInvalidController,
                format!("Only controllers of canister {id} can call ic00 method {m}"),
            ));
        }
        return Ok(());
    }
    match m {
        "fetch_canister_logs" => Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            "fetch_canister_logs API is not accessible via ingress in replicated mode",
        )),
        // A development subnet: everyone is on the provisional whitelist.
        "provisional_create_canister_with_cycles" | "provisional_top_up_canister" => Ok(()),
        _ => Err(unknown_method(m)),
    }
}

/// Executes a request to the management canister and sends its response.
pub(crate) fn execute(env: &mut ExecutionEnvironment, req: Request) {
    let outcome = dispatch(env, &req);
    match outcome {
        Outcome::Reply(bytes, refund) => env.deliver_response(req.origin, MANAGEMENT_CANISTER, ResponsePayload::Reply(bytes), refund),
        Outcome::Reject(e, refund) => env.reject_request(req.origin, MANAGEMENT_CANISTER, e, refund),
        Outcome::Pending => {}
    }
}

/// Management methods that answer as queries (controllers only / per log visibility).
/// What the management canister's status and log queries read of a canister: from the live
/// state or from a query view (which keeps no live instance).
pub(crate) struct CanisterFacts<'a> {
    pub system: &'a SystemState,
    /// [`CanisterState::memory_usage`].
    pub memory_usage: u64,
    pub wasm: Option<WasmFacts<'a>>,
}

/// The installed module and the sizes of heap, stable memory and globals, in bytes.
pub(crate) struct WasmFacts<'a> {
    pub module: &'a crate::hypervisor::CanisterModule,
    pub heap: usize,
    pub stable: usize,
    pub globals: usize,
}

impl<'a> CanisterFacts<'a> {
    pub fn of(c: &'a CanisterState) -> Self {
        let wasm = c.execution.as_ref().map(|e| WasmFacts {
            module: e.module(),
            heap: e.heap_bytes().len(),
            stable: e.stable_bytes().len(),
            globals: 8 * e.global_values().len(),
        });
        CanisterFacts { system: &c.system, memory_usage: c.memory_usage(), wasm }
    }
}

/// Answers a query to the management canister; `canister` finds the canister it is about.
pub(crate) fn query<'a>(
    config: &SubnetConfig,
    canister: impl Fn(&CanisterId) -> Option<CanisterFacts<'a>>,
    sender: Principal,
    method: &str,
    arg: &[u8],
) -> Result<WasmResult, UserError> {
    let reply = match method {
        "canister_status" => {
            let args: CanisterIdRecord = decode(arg)?;
            let c = canister(&args.canister_id).ok_or_else(|| not_found(&args.canister_id))?;
            status_of(config, sender, &args.canister_id, &c)?
        }
        "fetch_canister_logs" => {
            let args: CanisterIdRecord = decode(arg)?;
            let c = canister(&args.canister_id).ok_or_else(|| not_found(&args.canister_id))?;
            logs_of(sender, c.system)?
        }
        _ => return Err(unknown_method(method)),
    };
    Ok(WasmResult::Reply(reply))
}

fn dispatch(env: &mut ExecutionEnvironment, req: &Request) -> Outcome {
    let sender = req.sender();
    let cycles = req.cycles;
    let caller_is_canister = matches!(req.origin, CallOrigin::Canister { .. });
    // Most methods take no cycles: everything attached goes back.
    let reply = |r: Result<Vec<u8>, UserError>| match r {
        Ok(bytes) => Outcome::Reply(bytes, cycles),
        Err(e) => Outcome::Reject(e, cycles),
    };
    let arg = req.arg.as_slice();
    match req.method.as_str() {
        "create_canister" if caller_is_canister => match decode::<CreateCanisterArgs>(arg) {
            Ok(args) => create_canister(env, &req.origin, sender, cycles, args),
            Err(e) => Outcome::Reject(e, cycles),
        },
        "provisional_create_canister_with_cycles" => reply(decode(arg).and_then(|a| provisional_create(env, &req.origin, sender, a))),
        "provisional_top_up_canister" => reply(decode(arg).and_then(|a| provisional_top_up(env, a))),
        // An install answers when it ends (possibly in a later round, see `install`).
        "install_code" => match decode(arg).and_then(|a| install::install_code(env, &req.origin, cycles, sender, a)) {
            Ok(()) => Outcome::Pending,
            Err(e) => Outcome::Reject(e, cycles),
        },
        "install_chunked_code" => match decode(arg).and_then(|a| chunks::install_chunked_code(env, &req.origin, cycles, sender, a)) {
            Ok(()) => Outcome::Pending,
            Err(e) => Outcome::Reject(e, cycles),
        },
        "upload_chunk" => reply(decode(arg).and_then(|a| chunks::upload_chunk(env, sender, a))),
        "stored_chunks" => reply(decode(arg).and_then(|a| chunks::stored_chunks(env, sender, a))),
        "clear_chunk_store" => reply(decode(arg).and_then(|a| chunks::clear_chunk_store(env, sender, a))),
        "uninstall_code" => reply(decode::<UninstallCodeArgs>(arg).and_then(|a| {
            controlled_canister(env, sender, &a.canister_id)?;
            uninstall(env, &a.canister_id, Some(change_origin(&req.origin, a.sender_canister_version)));
            Ok(empty_reply())
        })),
        "start_canister" => reply(decode::<CanisterIdRecord>(arg).and_then(|a| start_canister(env, sender, &a.canister_id))),
        "stop_canister" => match decode::<CanisterIdRecord>(arg).and_then(|a| stop_canister(env, sender, &a.canister_id, &req.origin)) {
            Ok(true) => Outcome::Reply(empty_reply(), cycles),
            Ok(false) => Outcome::Pending,
            Err(e) => Outcome::Reject(e, cycles),
        },
        "delete_canister" => reply(decode::<CanisterIdRecord>(arg).and_then(|a| delete_canister(env, sender, &a.canister_id))),
        "update_settings" => reply(decode(arg).and_then(|a| update_settings(env, &req.origin, sender, a))),
        "canister_status" => reply(decode::<CanisterIdRecord>(arg).and_then(|a| canister_status(env, sender, &a.canister_id))),
        "take_canister_snapshot" => reply(decode(arg).and_then(|a| snapshots::take(env, &req.origin, sender, a))),
        "load_canister_snapshot" => reply(decode(arg).and_then(|a| snapshots::load(env, &req.origin, sender, a))),
        "list_canister_snapshots" => reply(decode(arg).and_then(|a| snapshots::list(env, sender, a))),
        "delete_canister_snapshot" => reply(decode(arg).and_then(|a| snapshots::delete(env, sender, a))),
        "read_canister_snapshot_metadata" => reply(decode(arg).and_then(|a| snapshots::read_metadata(env, sender, a))),
        "read_canister_snapshot_data" => reply(decode(arg).and_then(|a| snapshots::read_data(env, sender, a))),
        "upload_canister_snapshot_metadata" => reply(decode(arg).and_then(|a| snapshots::upload_metadata(env, sender, a))),
        "upload_canister_snapshot_data" => reply(decode(arg).and_then(|a| snapshots::upload_data(env, sender, a))),
        "deposit_cycles" if caller_is_canister => match decode::<CanisterIdRecord>(arg) {
            Ok(a) => match env.state.canister_mut(&a.canister_id) {
                Some(c) => {
                    c.system.cycles = c.system.cycles.saturating_add(cycles);
                    Outcome::Reply(empty_reply(), 0)
                }
                None => Outcome::Reject(not_found(&a.canister_id), cycles),
            },
            Err(e) => Outcome::Reject(e, cycles),
        },
        "canister_info" if caller_is_canister => reply(decode(arg).and_then(|a| canister_info(env, a))),
        "raw_rand" if caller_is_canister => {
            let bytes = env.next_random();
            reply(Ok(encode(&serde_bytes::ByteBuf::from(bytes.to_vec()))))
        }
        "fetch_canister_logs" => reply(Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            "fetch_canister_logs API is only accessible in non-replicated mode",
        ))),
        m if CANISTER_ONLY.contains(&m) && !caller_is_canister => {
            reply(Err(UserError::new(ErrorCode::CanisterRejectedMessage, format!("Only canisters can call ic00 method {m}"))))
        }
        m => reply(Err(unknown_method(m))),
    }
}

// ---- canister lifecycle ----

fn create_canister(env: &mut ExecutionEnvironment, origin: &CallOrigin, sender: Principal, cycles: u128, args: CreateCanisterArgs) -> Outcome {
    let fee = env.config.cycles.creation_fee();
    if cycles < fee {
        return Outcome::Reject(
            UserError::new(
                ErrorCode::InsufficientCyclesForCreateCanister,
                format!(
                    "Creating a canister requires a fee of {fee} that is deducted from the canister's initial balance but only {cycles} cycles were received with the create_canister request."
                ),
            ),
            cycles,
        );
    }
    let origin = change_origin(origin, args.sender_canister_version);
    match new_canister(env, origin, sender, cycles - fee, args.settings, None) {
        Ok(canister_id) => Outcome::Reply(encode(&CreateCanisterResult { canister_id }), 0),
        Err(e) => Outcome::Reject(e, cycles),
    }
}

fn provisional_create(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    sender: Principal,
    args: ProvisionalCreateCanisterWithCyclesArgs,
) -> Result<Vec<u8>, UserError> {
    let amount = match &args.amount {
        Some(n) => nat_to_u128(n, "amount")?,
        None => env.config.provisional_default_cycles,
    };
    let origin = change_origin(origin, args.sender_canister_version);
    let canister_id = new_canister(env, origin, sender, amount, args.settings, args.specified_id)?;
    Ok(encode(&CreateCanisterResult { canister_id }))
}

fn provisional_top_up(env: &mut ExecutionEnvironment, args: ProvisionalTopUpCanisterArgs) -> Result<Vec<u8>, UserError> {
    let amount = nat_to_u128(&args.amount, "amount")?;
    let c = env.state.canister_mut(&args.canister_id).ok_or_else(|| not_found(&args.canister_id))?;
    c.system.cycles = c.system.cycles.saturating_add(amount);
    Ok(empty_reply())
}

/// Creates an empty running canister controlled by `sender` (unless the settings say otherwise).
fn new_canister(
    env: &mut ExecutionEnvironment,
    origin: ChangeOrigin,
    sender: Principal,
    cycles: u128,
    settings: Option<CanisterSettings>,
    specified_id: Option<Principal>,
) -> Result<CanisterId, UserError> {
    let settings = settings.unwrap_or_default();
    let validated = validate_settings(env, &settings)?;
    let id = match specified_id {
        Some(id) => {
            if !crate::state::ReplicatedState::in_range(&id) {
                return Err(UserError::new(
                    ErrorCode::CanisterNotHostedBySubnet,
                    format!("Unsuccessful validation of specified ID: The specified canister ID {id} is not in this subnet's range"),
                ));
            }
            if env.state.canister(&id).is_some() {
                return Err(UserError::new(ErrorCode::CanisterAlreadyInstalled, format!("Canister {id} is already installed")));
            }
            id
        }
        None => env.state.allocate_canister_id().ok_or_else(|| {
            UserError::new(
                ErrorCode::SubnetOversubscribed,
                "Could not create canister. Subnet has surpassed its canister ID allocation.",
            )
        })?,
    };
    let mut system = SystemState::new(
        id,
        vec![sender],
        cycles,
        crate::state::CanisterSettings::new(env.config.default_freezing_threshold),
        env.time(),
    );
    let environment_variables_hash = validated.environment_variables.as_deref().map(env_vars_hash);
    validated.apply(&mut system);
    let creation = ChangeDetails::Creation { controllers: system.controllers.clone(), environment_variables_hash };
    system.record_change(env.time(), origin, creation);
    env.state.insert_canister(CanisterState { system, execution: None, install: None });
    Ok(id)
}

/// Removes the code and memories; open call contexts are rejected; callbacks stay so that
/// their refunds still arrive, but they no longer run. The canister history records it when
/// someone asked for it (`origin`).
pub(crate) fn uninstall(env: &mut ExecutionEnvironment, id: &CanisterId, origin: Option<ChangeOrigin>) {
    let time = env.time();
    let Some(c) = env.state.canister_mut(id) else { return };
    c.execution = None;
    c.system.certified_data.clear();
    // Uninstalling purges the log (spec).
    c.system.log.clear();
    c.system.global_timer = 0;
    c.system.canister_version += 1;
    if let Some(origin) = origin {
        c.system.record_change(time, origin, ChangeDetails::CodeUninstall);
    }
    let contexts = std::mem::take(&mut c.system.call_contexts);
    for ctx in contexts.into_values().filter(|ctx| !ctx.responded) {
        env.deliver_response(
            ctx.origin,
            *id,
            ResponsePayload::Reject {
                code: RejectCode::CanisterReject,
                message: "Canister has been uninstalled.".into(),
                error_code: Some(ErrorCode::CanisterRejectedMessage),
            },
            ctx.available_cycles,
        );
    }
}

fn start_canister(env: &mut ExecutionEnvironment, sender: Principal, id: &CanisterId) -> Result<Vec<u8>, UserError> {
    controlled_canister(env, sender, id)?;
    let c = env.state.canister_mut(id).expect("checked");
    let old = std::mem::replace(&mut c.system.status, CanisterStatus::Running);
    if let CanisterStatus::Stopping { stop_requests } = old {
        for origin in stop_requests {
            let e = UserError::new(ErrorCode::CanisterStoppingCancelled, format!("Canister {id}'s stop request was cancelled."));
            env.reject_request(origin, MANAGEMENT_CANISTER, e, 0);
        }
    }
    Ok(empty_reply())
}

/// Returns true when the canister is already stopped (reply now); otherwise the request waits
/// in the `Stopping` status until the last call context closes.
fn stop_canister(env: &mut ExecutionEnvironment, sender: Principal, id: &CanisterId, origin: &CallOrigin) -> Result<bool, UserError> {
    controlled_canister(env, sender, id)?;
    let c = env.state.canister_mut(id).expect("checked");
    match &mut c.system.status {
        CanisterStatus::Stopped => return Ok(true),
        CanisterStatus::Stopping { stop_requests } => stop_requests.push(origin.clone()),
        CanisterStatus::Running => c.system.status = CanisterStatus::Stopping { stop_requests: vec![origin.clone()] },
    }
    Ok(false)
}

fn delete_canister(env: &mut ExecutionEnvironment, sender: Principal, id: &CanisterId) -> Result<Vec<u8>, UserError> {
    if sender == *id {
        return Err(UserError::new(ErrorCode::CanisterInvalidController, format!("Canister {id} cannot delete itself.")));
    }
    let c = controlled_canister(env, sender, id)?;
    if c.system.status != CanisterStatus::Stopped {
        return Err(UserError::new(ErrorCode::CanisterNotStopped, format!("Canister {id} must be stopped before it is deleted.")));
    }
    // Requests still queued for it will never run: reject them as sent to a missing canister.
    if let Some(deleted) = env.state.remove_canister(id) {
        for msg in deleted.system.input_queue {
            if let crate::state::CanisterMessage::Request(req) = msg {
                env.reject_request(req.origin, *id, not_found(id), req.cycles);
            }
        }
    }
    Ok(empty_reply())
}

fn update_settings(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    sender: Principal,
    args: UpdateSettingsArgs,
) -> Result<Vec<u8>, UserError> {
    controlled_canister(env, sender, &args.canister_id)?;
    let validated = validate_settings(env, &args.settings)?;
    let time = env.time();
    let c = env.state.canister_mut(&args.canister_id).expect("checked");
    let controllers_change = validated.controllers.is_some();
    validated.apply(&mut c.system);
    c.system.canister_version += 1;
    if controllers_change {
        let details = ChangeDetails::ControllersChange { controllers: c.system.controllers.clone() };
        c.system.record_change(time, change_origin(origin, args.sender_canister_version), details);
    }
    // A new limit or threshold can meet (or end) the low-memory hook's condition.
    let heap_bytes = c.execution.as_ref().map_or(0, |e| e.heap_bytes().len() as u64);
    c.system.update_low_wasm_memory_hook(heap_bytes);
    Ok(empty_reply())
}

// ---- reads ----

fn canister_status(env: &ExecutionEnvironment, sender: Principal, id: &CanisterId) -> Result<Vec<u8>, UserError> {
    let c = env.state.canister(id).ok_or_else(|| not_found(id))?;
    status_of(&env.config, sender, id, &CanisterFacts::of(c))
}

fn status_of(config: &SubnetConfig, sender: Principal, id: &CanisterId, c: &CanisterFacts) -> Result<Vec<u8>, UserError> {
    let s = c.system;
    // The canister itself, its controllers, and whom `status_visibility` names.
    if sender != *id && !s.settings.status_visibility.allows(&sender, &s.controllers) {
        check_controller_of(s, sender)?;
    }
    let memory_size = c.memory_usage;
    let (heap, stable, globals, module) =
        c.wasm.as_ref().map_or((0, 0, 0, 0), |w| (w.heap, w.stable, w.globals, w.module.bytes().len()));
    let idle_per_second = config.cycles.idle_burn_per_second(
        memory_size.max(s.settings.memory_allocation),
        s.settings.compute_allocation,
    );
    let custom_sections: usize = c.wasm.as_ref().map_or(0, |w| {
        let m = w.module;
        m.metadata_sections().filter_map(|(name, _)| m.metadata(name)).map(|(_, content)| content.len()).sum()
    });
    let result = CanisterStatusResult {
        status: match s.status {
            CanisterStatus::Running => CanisterStatusType::Running,
            CanisterStatus::Stopping { .. } => CanisterStatusType::Stopping,
            CanisterStatus::Stopped => CanisterStatusType::Stopped,
        },
        ready_for_migration: s.status == CanisterStatus::Stopped && s.input_queue.is_empty(),
        version: s.canister_version,
        settings: definite_settings(s),
        module_hash: c.wasm.as_ref().map(|w| serde_bytes::ByteBuf::from(w.module.wasm_hash().to_vec())),
        memory_size: Nat::from(memory_size),
        memory_metrics: MemoryMetrics {
            wasm_memory_size: Nat::from(heap),
            stable_memory_size: Nat::from(stable),
            global_memory_size: Nat::from(globals),
            wasm_binary_size: Nat::from(module),
            custom_sections_size: Nat::from(custom_sections),
            canister_history_size: Nat::from(0u64),
            wasm_chunk_store_size: Nat::from(s.wasm_chunk_store.values().map(|chunk| chunk.len() as u64).sum::<u64>()),
            snapshots_size: Nat::from(s.snapshots_size()),
            log_memory_store_size: Nat::from(s.log.size()),
        },
        cycles: Nat::from(s.cycles),
        reserved_cycles: Nat::from(0u64),
        idle_cycles_burned_per_day: Nat::from(idle_per_second * 86_400),
        query_stats: QueryStats {
            num_calls_total: Nat::from(0u64),
            num_instructions_total: Nat::from(0u64),
            request_payload_bytes_total: Nat::from(0u64),
            response_payload_bytes_total: Nat::from(0u64),
        },
    };
    Ok(encode(&result))
}

fn definite_settings(s: &SystemState) -> DefiniteCanisterSettings {
    let st = &s.settings;
    DefiniteCanisterSettings {
        controllers: s.controllers.clone(),
        compute_allocation: Nat::from(st.compute_allocation),
        memory_allocation: Nat::from(st.memory_allocation),
        freezing_threshold: Nat::from(st.freezing_threshold),
        reserved_cycles_limit: Nat::from(st.reserved_cycles_limit),
        minimum_incoming_canister_call_cycles: Nat::from(st.minimum_incoming_canister_call_cycles),
        log_visibility: visibility_out(&st.log_visibility),
        log_memory_limit: Nat::from(crate::state::CanisterLog::MAX_BYTES),
        snapshot_visibility: visibility_out(&st.snapshot_visibility),
        status_visibility: visibility_out(&st.status_visibility),
        wasm_memory_limit: Nat::from(st.wasm_memory_limit),
        wasm_memory_threshold: Nat::from(st.wasm_memory_threshold),
        environment_variables: st
            .environment_variables
            .iter()
            .map(|(name, value)| EnvironmentVariable { name: name.clone(), value: value.clone() })
            .collect(),
    }
}

fn visibility_out(v: &LogVisibility) -> types::LogVisibility {
    match v {
        LogVisibility::Controllers => types::LogVisibility::Controllers,
        LogVisibility::Public => types::LogVisibility::Public,
        LogVisibility::AllowedViewers(p) => types::LogVisibility::AllowedViewers(p.clone()),
    }
}

fn logs_of(sender: Principal, s: &SystemState) -> Result<Vec<u8>, UserError> {
    if !s.settings.log_visibility.allows(&sender, &s.controllers) {
        return Err(UserError::new(
            ErrorCode::CanisterRejectedMessage,
            format!("Caller {sender} is not allowed to query ic00 method fetch_canister_logs"),
        ));
    }
    let records = s
        .log
        .records
        .iter()
        .map(|r| CanisterLogRecord { idx: r.idx, timestamp_nanos: r.timestamp_nanos, content: r.content.clone() })
        .collect();
    Ok(encode(&FetchCanisterLogsResult { canister_log_records: records }))
}

// ---- settings ----

/// Settings checked against the subnet's limits, ready to apply.
#[derive(Default)]
struct ValidatedSettings {
    controllers: Option<Vec<Principal>>,
    compute_allocation: Option<u64>,
    memory_allocation: Option<u64>,
    freezing_threshold: Option<u64>,
    reserved_cycles_limit: Option<u128>,
    minimum_incoming_canister_call_cycles: Option<u128>,
    log_visibility: Option<LogVisibility>,
    snapshot_visibility: Option<LogVisibility>,
    status_visibility: Option<LogVisibility>,
    wasm_memory_limit: Option<u64>,
    wasm_memory_threshold: Option<u64>,
    environment_variables: Option<Vec<(String, String)>>,
}

impl ValidatedSettings {
    fn apply(self, s: &mut SystemState) {
        if let Some(v) = self.controllers {
            s.controllers = v;
        }
        let st = &mut s.settings;
        if let Some(v) = self.compute_allocation {
            st.compute_allocation = v;
        }
        if let Some(v) = self.memory_allocation {
            st.memory_allocation = v;
        }
        if let Some(v) = self.freezing_threshold {
            st.freezing_threshold = v;
        }
        if let Some(v) = self.reserved_cycles_limit {
            st.reserved_cycles_limit = v;
        }
        if let Some(v) = self.minimum_incoming_canister_call_cycles {
            st.minimum_incoming_canister_call_cycles = v;
        }
        if let Some(v) = self.log_visibility {
            st.log_visibility = v;
        }
        if let Some(v) = self.snapshot_visibility {
            st.snapshot_visibility = v;
        }
        if let Some(v) = self.status_visibility {
            st.status_visibility = v;
        }
        if let Some(v) = self.wasm_memory_limit {
            st.wasm_memory_limit = v;
        }
        if let Some(v) = self.wasm_memory_threshold {
            st.wasm_memory_threshold = v;
        }
        if let Some(v) = self.environment_variables {
            st.environment_variables = v;
        }
    }
}

fn invalid_settings(message: String) -> UserError {
    UserError::new(ErrorCode::CanisterContractViolation, format!("Could not validate the settings: {message} "))
}

fn validate_settings(env: &ExecutionEnvironment, s: &CanisterSettings) -> Result<ValidatedSettings, UserError> {
    let mut v = ValidatedSettings::default();
    if let Some(controllers) = &s.controllers {
        if controllers.len() > env.config.max_controllers {
            return Err(invalid_settings(format!(
                "Invalid settings: 'controllers' length exceeds maximum size allowed of {}.",
                env.config.max_controllers
            )));
        }
        let mut sorted = controllers.clone();
        sorted.sort();
        sorted.dedup();
        v.controllers = Some(sorted);
    }
    if let Some(n) = &s.compute_allocation {
        let percent = nat_to_u64(n, "compute_allocation")?;
        if percent > 100 {
            return Err(invalid_settings(format!(
                "ComputeAllocation expected to be in the range [0..100], got {percent}"
            )));
        }
        v.compute_allocation = Some(percent);
    }
    if let Some(n) = &s.memory_allocation {
        let bytes = nat_to_u64(n, "memory_allocation")?;
        if bytes > 1 << 48 {
            return Err(invalid_settings(format!("MemoryAllocation expected to be in the range [0..2^48], got {bytes}")));
        }
        v.memory_allocation = Some(bytes);
    }
    if let Some(n) = &s.freezing_threshold {
        v.freezing_threshold = Some(nat_to_u64(n, "freezing_threshold")?);
    }
    if let Some(n) = &s.reserved_cycles_limit {
        v.reserved_cycles_limit = Some(nat_to_u128(n, "reserved_cycles_limit")?);
    }
    if let Some(n) = &s.wasm_memory_limit {
        let bytes = nat_to_u64(n, "wasm_memory_limit")?;
        if bytes > 1 << 48 {
            return Err(invalid_settings(format!("Wasm memory limit expected to be in the range [0..2^48], got {bytes}")));
        }
        v.wasm_memory_limit = Some(bytes);
    }
    if let Some(n) = &s.wasm_memory_threshold {
        v.wasm_memory_threshold = Some(nat_to_u64(n, "wasm_memory_threshold")?);
    }
    if let Some(n) = &s.minimum_incoming_canister_call_cycles {
        v.minimum_incoming_canister_call_cycles = Some(nat_to_u128(n, "minimum_incoming_canister_call_cycles")?);
    }
    v.log_visibility = s.log_visibility.as_ref().map(|x| visibility_in("log_visibility", x)).transpose()?;
    v.snapshot_visibility = s.snapshot_visibility.as_ref().map(|x| visibility_in("snapshot_visibility", x)).transpose()?;
    v.status_visibility = s.status_visibility.as_ref().map(|x| visibility_in("status_visibility", x)).transpose()?;
    if let Some(vars) = &s.environment_variables {
        v.environment_variables = Some(validate_env_vars(vars)?);
    }
    Ok(v)
}

/// A visibility setting; `allowed_viewers` lists at most 10 principals (spec).
fn visibility_in(field: &str, v: &types::LogVisibility) -> Result<LogVisibility, UserError> {
    const MAX_VIEWERS: usize = 10;
    Ok(match v {
        types::LogVisibility::Controllers => LogVisibility::Controllers,
        types::LogVisibility::Public => LogVisibility::Public,
        types::LogVisibility::AllowedViewers(p) if p.len() > MAX_VIEWERS => {
            return Err(invalid_settings(format!(
                "Invalid {field}: the allowed viewers list has {} principals, at most {MAX_VIEWERS} are allowed.",
                p.len()
            )))
        }
        types::LogVisibility::AllowedViewers(p) => LogVisibility::AllowedViewers(p.clone()),
    })
}

/// The variables as `ic0.env_var_*` sees them: sorted by name (the IC keeps them in a map, so
/// `env_var_name_*` indexes them in that order), names unique (spec), within the IC's limits.
fn validate_env_vars(vars: &[EnvironmentVariable]) -> Result<Vec<(String, String)>, UserError> {
    use crate::system_api::{MAX_ENV_VARS, MAX_ENV_VAR_NAME_BYTES, MAX_ENV_VAR_VALUE_BYTES};
    if vars.len() > MAX_ENV_VARS {
        return Err(invalid_settings(format!(
            "Too many environment variables: {} (maximum is {MAX_ENV_VARS})",
            vars.len()
        )));
    }
    let mut sorted: Vec<(String, String)> = vars.iter().map(|e| (e.name.clone(), e.value.clone())).collect();
    sorted.sort();
    for (i, (name, value)) in sorted.iter().enumerate() {
        if name.len() > MAX_ENV_VAR_NAME_BYTES {
            return Err(invalid_settings(format!(
                "Environment variable name \"{name}\" exceeds the maximum allowed length of {MAX_ENV_VAR_NAME_BYTES}"
            )));
        }
        if value.len() > MAX_ENV_VAR_VALUE_BYTES {
            return Err(invalid_settings(format!(
                "Environment variable value of \"{name}\" exceeds the maximum allowed length of {MAX_ENV_VAR_VALUE_BYTES}"
            )));
        }
        if i > 0 && sorted[i - 1].0 == *name {
            return Err(invalid_settings(format!("Duplicate environment variable name \"{name}\"")));
        }
    }
    Ok(sorted)
}

// ---- canister history ----

/// Who made a change, for the canister history.
pub(crate) fn change_origin(origin: &CallOrigin, sender_canister_version: Option<u64>) -> ChangeOrigin {
    match origin {
        CallOrigin::Canister { caller, .. } => ChangeOrigin::Canister { canister_id: *caller, canister_version: sender_canister_version },
        CallOrigin::Ingress { user, .. } => ChangeOrigin::User(*user),
        CallOrigin::System => ChangeOrigin::User(MANAGEMENT_CANISTER),
    }
}

/// The representation-independent hash of the variables as a map from name to value (spec:
/// canister history, hash of map).
fn env_vars_hash(vars: &[(String, String)]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut pairs: Vec<Vec<u8>> = vars
        .iter()
        .map(|(name, value)| [Sha256::digest(name.as_bytes()), Sha256::digest(value.as_bytes())].concat())
        .collect();
    pairs.sort();
    Sha256::digest(pairs.concat()).into()
}

/// `canister_info`: any canister may ask about any canister (spec).
fn canister_info(env: &ExecutionEnvironment, args: CanisterInfoArgs) -> Result<Vec<u8>, UserError> {
    let c = env.state.canister(&args.canister_id).ok_or_else(|| not_found(&args.canister_id))?;
    let s = &c.system;
    let wanted = args.num_requested_changes.unwrap_or(0).min(s.history.len() as u64) as usize;
    let recent_changes = s.history.iter().skip(s.history.len() - wanted).map(change_out).collect();
    Ok(encode(&CanisterInfoResult {
        total_num_changes: s.total_num_changes,
        recent_changes,
        module_hash: c.module_hash().map(|h| serde_bytes::ByteBuf::from(h.to_vec())),
        controllers: s.controllers.clone(),
    }))
}

fn change_out(c: &crate::state::CanisterChange) -> Change {
    use crate::state::{DeploymentMode, SnapshotSource as Source};
    let origin = match &c.origin {
        ChangeOrigin::User(user_id) => types::ChangeOrigin::FromUser { user_id: *user_id },
        ChangeOrigin::Canister { canister_id, canister_version } => {
            types::ChangeOrigin::FromCanister { canister_id: *canister_id, canister_version: *canister_version }
        }
    };
    let bytes = |b: &[u8]| serde_bytes::ByteBuf::from(b.to_vec());
    let details = match &c.details {
        ChangeDetails::Creation { controllers, environment_variables_hash } => types::ChangeDetails::Creation {
            controllers: controllers.clone(),
            environment_variables_hash: environment_variables_hash.map(|h| bytes(&h)),
        },
        ChangeDetails::CodeUninstall => types::ChangeDetails::CodeUninstall,
        ChangeDetails::CodeDeployment { mode, module_hash } => types::ChangeDetails::CodeDeployment {
            mode: match mode {
                DeploymentMode::Install => types::CodeDeploymentMode::Install,
                DeploymentMode::Reinstall => types::CodeDeploymentMode::Reinstall,
                DeploymentMode::Upgrade => types::CodeDeploymentMode::Upgrade,
            },
            module_hash: bytes(module_hash),
        },
        ChangeDetails::LoadSnapshot { canister_version, snapshot_id, taken_at, source, from_canister } => {
            types::ChangeDetails::LoadSnapshot {
                canister_version: *canister_version,
                snapshot_id: bytes(snapshot_id),
                taken_at_timestamp: *taken_at,
                source: match source {
                    Source::TakenFromCanister => types::SnapshotSource::TakenFromCanister(candid::Reserved),
                    Source::MetadataUpload => types::SnapshotSource::MetadataUpload(candid::Reserved),
                },
                from_canister_id: *from_canister,
            }
        }
        ChangeDetails::ControllersChange { controllers } => {
            types::ChangeDetails::ControllersChange { controllers: controllers.clone() }
        }
    };
    Change { timestamp_nanos: c.timestamp_nanos, canister_version: c.canister_version, origin, details }
}

// ---- helpers ----

/// The canister, if it exists and `sender` controls it.
fn controlled_canister<'a>(env: &'a ExecutionEnvironment, sender: Principal, id: &CanisterId) -> Result<&'a CanisterState, UserError> {
    let c = env.state.canister(id).ok_or_else(|| not_found(id))?;
    check_controller(c, sender)?;
    Ok(c)
}

/// IC0512 unless `sender` controls the canister. A canister without controllers is immutable.
fn check_controller(c: &CanisterState, sender: Principal) -> Result<(), UserError> {
    check_controller_of(&c.system, sender)
}

fn check_controller_of(s: &SystemState, sender: Principal) -> Result<(), UserError> {
    if s.is_controller(&sender) {
        return Ok(());
    }
    let controllers: Vec<String> = s.controllers.iter().map(|p| p.to_text()).collect();
    Err(UserError::new(
        ErrorCode::CanisterInvalidController,
        format!(
            "Only the controllers of the canister {} can control it.\nCanister's controllers: {}\nSender's ID: {}",
            s.canister_id,
            controllers.join(" "),
            sender
        ),
    ))
}

fn not_found(id: &CanisterId) -> UserError {
    UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found."))
}

fn unknown_method(m: &str) -> UserError {
    UserError::new(ErrorCode::CanisterMethodNotFound, format!("Management canister has no method '{m}'"))
}

fn decode<T: DeserializeOwned + CandidType>(arg: &[u8]) -> Result<T, UserError> {
    candid::utils::decode_one_with_config(arg, &tabnet_types::candid_decoder_config())
        .map_err(|e| UserError::new(ErrorCode::InvalidManagementPayload, format!("Error decoding candid: {e}")))
}

fn encode<T: CandidType>(value: &T) -> Vec<u8> {
    candid::encode_one(value).unwrap_or_default()
}

/// `()` in Candid.
pub(crate) fn empty_reply() -> Vec<u8> {
    candid::encode_args(()).unwrap_or_default()
}

fn nat_to_u128(n: &Nat, field: &str) -> Result<u128, UserError> {
    u128::try_from(&n.0).map_err(|_| {
        UserError::new(ErrorCode::InvalidManagementPayload, format!("Error decoding candid: {field} {n} is out of range"))
    })
}

fn nat_to_u64(n: &Nat, field: &str) -> Result<u64, UserError> {
    u64::try_from(&n.0).map_err(|_| {
        UserError::new(ErrorCode::InvalidManagementPayload, format!("Error decoding candid: {field} {n} is out of range"))
    })
}
