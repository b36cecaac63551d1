//! The ic0 System API: what one execution may ask of the system, and what it did.
//!
//! [`SystemApi`] holds the state of one execution (its context, the message, the reply being
//! built, calls, cycles moved, logs) and implements the semantics of the ic0 functions on plain
//! bytes; `linker.rs` binds them to wasmi host functions for 32-bit and 64-bit modules,
//! `imports.rs` lists which function may be called from where, and `stable.rs` is the stable
//! memory.

mod imports;
mod linker;
mod stable;

pub(crate) use imports::{lookup as lookup_ic0_function, mode_name, Context};
pub(crate) use linker::new_linker;
pub(crate) use linker::HostTrap;
pub(crate) use stable::{StableMemory, WASM_PAGE_SIZE};

use crate::hypervisor::{
    ApiType, ExecutionParameters, LogRecord, OutgoingCall, SystemStateChanges, SystemStateView, WasmClosure, WasmResult,
};
use crate::state::CanisterLog;
use tabnet_types::{ErrorCode, Principal, UserError};
use wasmi::Memory;
use wasmi_core::LimiterError;

/// Largest table a module may declare (real canisters use a few thousand entries).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Longest `debug_print` line kept in the log, and the longest trap message kept.
pub const MAX_LOG_RECORD_BYTES: usize = CanisterLog::MAX_BYTES;
pub const MAX_TRAP_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest method name `ic0.call_new` accepts (the cost functions assume at most this).
const MAX_METHOD_NAME_BYTES: usize = 20_000;
/// Calls one execution may queue: the IC's output queue capacity (500 requests). Beyond it
/// `ic0.call_perform` fails with SYS_TRANSIENT, as on the IC when the queue is full.
pub const MAX_CALLS_PER_EXECUTION: usize = 500;
/// Bytes (method names and arguments) the calls of one execution may hold: the host keeps
/// them until the execution ends, so they are bounded apart from the instruction limit. Five
/// same-subnet calls of the largest size (10 MiB); tabnet's own limit, the IC bounds this
/// by its subnet's message memory.
pub const MAX_CALL_BYTES_PER_EXECUTION: usize = 50 << 20;
/// Limits of a canister's environment variables: the IC's (`ic_config`'s
/// `MAX_ENVIRONMENT_VARIABLES`, `..._NAME_LENGTH`, `..._VALUE_LENGTH`); `update_settings`
/// enforces them, `ic0.env_var_*` traps on longer names.
pub const MAX_ENV_VARS: usize = 20;
pub const MAX_ENV_VAR_NAME_BYTES: usize = 128;
pub const MAX_ENV_VAR_VALUE_BYTES: usize = 128;
/// Fees of the threshold-key services (mainnet, for a 13-node subnet). This node does not
/// offer them yet; `cost_*` report what the IC charges so that canisters attach enough.
const THRESHOLD_KEY_FEE_13_NODES: u128 = 10_000_000_000;
/// Production keys (`key_1`) live on the 34-node fiduciary subnet; fees scale with its size.
const PRODUCTION_KEY_SUBNET_SIZE: u128 = 34;

/// The data of a wasmi store: the canister's memories and, while an entry point runs, its
/// System API state.
pub(crate) struct HostState {
    /// Memory 0 of the instance (None if the module has no memory).
    pub memory: Option<Memory>,
    pub stable: StableMemory,
    pub api: Option<SystemApi>,
    pub limiter: HeapLimiter,
    /// Fuel of the running message beyond its current slice (deterministic time slicing):
    /// the store holds the slice's fuel, this the rest of the message's instruction limit.
    pub fuel_reserve: u64,
}

impl HostState {
    pub fn new(stable: StableMemory) -> Self {
        Self { memory: None, stable, api: None, limiter: HeapLimiter::unlimited(), fuel_reserve: 0 }
    }
}

/// Enforces the heap limit on `memory.grow`: beyond it the growth fails (−1). The size asked
/// for is remembered: where the IC enforces `wasm_memory_limit`, an execution that then traps
/// fails with IC0539.
pub(crate) struct HeapLimiter {
    pub limit: u64,
    /// The largest size a failed growth asked for.
    pub exceeded: Option<u64>,
}

impl HeapLimiter {
    pub fn unlimited() -> Self {
        Self { limit: u64::MAX, exceeded: None }
    }
}

impl wasmi::ResourceLimiter for HeapLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let desired = desired as u64;
        if desired > self.limit {
            self.exceeded = self.exceeded.max(Some(desired));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        // `table.grow` is refused at validation; this only sees instantiation.
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1_000
    }

    fn memories(&self) -> usize {
        1
    }
}

/// A call being assembled between `ic0.call_new` and `ic0.call_perform`.
struct CallUnderConstruction {
    callee: Principal,
    method: String,
    payload: Vec<u8>,
    cycles: u128,
    on_reply: WasmClosure,
    on_reject: WasmClosure,
    on_cleanup: Option<WasmClosure>,
    timeout_seconds: Option<u32>,
}

/// The System API state of one execution.
pub(crate) struct SystemApi {
    api: ApiType,
    context: Context,
    sys: SystemStateView,
    params: ExecutionParameters,
    /// Whether `msg_reply`/`msg_reject` happened; the response, if any.
    responded: bool,
    reply_buffer: Vec<u8>,
    response: Option<WasmResult>,
    /// Cycles of the message not yet accepted (0 once responded).
    cycles_available: u128,
    /// Cycles that left the balance: attached to calls (performed or under construction) and
    /// the fees of performed calls.
    cycles_sent: u128,
    /// Method name and argument bytes of the calls performed.
    call_bytes: usize,
    message_accepted: bool,
    call: Option<CallUnderConstruction>,
    /// Calls this execution may still make under the canister's outstanding-call quota
    /// (`SubnetConfig::max_outstanding_calls` less the calls it has outstanding already).
    calls_allowed: u64,
    changes: SystemStateChanges,
    /// What this execution printed: bounded like the canister log it goes to (the IC keeps a
    /// 4 KiB buffer per execution too), so printing in a loop cannot grow host memory.
    logs: CanisterLog,
    /// The canister's environment variables (its settings), in the order `ic0.env_var_name_*`
    /// indexes them.
    env_vars: Vec<(String, String)>,
}

/// What an execution leaves behind besides its Wasm state.
pub(crate) struct SystemApiResult {
    pub response: Option<WasmResult>,
    pub message_accepted: bool,
    pub changes: SystemStateChanges,
    pub logs: Vec<LogRecord>,
}

impl SystemApi {
    pub fn new(api: ApiType, sys: SystemStateView, params: ExecutionParameters) -> Self {
        let cycles_available = match &api {
            ApiType::Update { cycles_available, .. }
            | ApiType::ReplicatedQuery { cycles_available, .. }
            | ApiType::ReplyCallback { cycles_available, .. }
            | ApiType::RejectCallback { cycles_available, .. } => *cycles_available,
            _ => 0,
        };
        let responded = matches!(
            api,
            ApiType::ReplyCallback { responded: true, .. } | ApiType::RejectCallback { responded: true, .. }
        );
        Self {
            context: Context::of(&api),
            api,
            sys,
            params,
            responded,
            reply_buffer: Vec::new(),
            response: None,
            cycles_available,
            cycles_sent: 0,
            call_bytes: 0,
            message_accepted: false,
            call: None,
            calls_allowed: u64::MAX,
            changes: SystemStateChanges::default(),
            logs: CanisterLog::default(),
            env_vars: Vec::new(),
        }
    }

    pub fn context(&self) -> Context {
        self.context
    }

    /// Bounds the calls this execution may make (see `calls_allowed`); unbounded by default.
    pub fn with_calls_allowed(mut self, calls_allowed: u64) -> Self {
        self.calls_allowed = calls_allowed;
        self
    }

    /// The canister's environment variables, as `update_settings` stored them.
    pub fn with_env_vars(mut self, env_vars: Vec<(String, String)>) -> Self {
        self.env_vars = env_vars;
        self
    }

    pub fn params(&self) -> &ExecutionParameters {
        &self.params
    }

    pub fn finish(self) -> SystemApiResult {
        // A call still under construction is discarded; its cycles never left.
        SystemApiResult {
            response: self.response,
            message_accepted: self.message_accepted,
            changes: self.changes,
            logs: self.logs.into_records(),
        }
    }

    /// Logs kept when the execution failed: everything printed, then the failure.
    pub fn finish_with_error(mut self, error: &UserError) -> Vec<LogRecord> {
        self.log_error(error);
        self.logs.into_records()
    }

    pub fn log_error(&mut self, error: &UserError) {
        self.log(format!("[TRAP]: {}", error.message).into_bytes());
    }

    // ---- errors ----

    /// IC0504 for calling `name` outside its allowed contexts.
    pub fn mode_error(&self, name: &str) -> UserError {
        UserError::new(
            ErrorCode::CanisterContractViolation,
            format!("\"ic0.{name}\" cannot be executed in {} mode", mode_name(&self.api)),
        )
    }

    fn violation(name: &str, message: impl std::fmt::Display) -> UserError {
        UserError::new(ErrorCode::CanisterContractViolation, format!("ic0.{name}: {message}"))
    }

    // ---- the message ----

    pub fn arg(&self) -> &[u8] {
        match &self.api {
            ApiType::Init { arg, .. }
            | ApiType::PostUpgrade { arg, .. }
            | ApiType::Update { arg, .. }
            | ApiType::ReplicatedQuery { arg, .. }
            | ApiType::NonReplicatedQuery { arg, .. }
            | ApiType::CompositeQuery { arg, .. }
            | ApiType::InspectMessage { arg, .. } => arg,
            ApiType::ReplyCallback { reply, .. } | ApiType::CompositeReplyCallback { reply, .. } => reply,
            _ => &[],
        }
    }

    /// The caller; system tasks are called by the management canister.
    pub fn caller(&self) -> &[u8] {
        match &self.api {
            ApiType::Init { caller, .. }
            | ApiType::PreUpgrade { caller }
            | ApiType::PostUpgrade { caller, .. }
            | ApiType::Update { caller, .. }
            | ApiType::ReplicatedQuery { caller, .. }
            | ApiType::NonReplicatedQuery { caller, .. }
            | ApiType::CompositeQuery { caller, .. }
            | ApiType::InspectMessage { caller, .. }
            | ApiType::ReplyCallback { caller, .. }
            | ApiType::RejectCallback { caller, .. }
            | ApiType::CompositeReplyCallback { caller, .. }
            | ApiType::CompositeRejectCallback { caller, .. }
            | ApiType::Cleanup { caller } => caller.as_slice(),
            ApiType::Start | ApiType::Heartbeat | ApiType::GlobalTimer | ApiType::OnLowWasmMemory => &[],
        }
    }

    /// 0 ("no error") unless this is a reject callback.
    pub fn reject_code(&self) -> i32 {
        match &self.api {
            ApiType::RejectCallback { code, .. } | ApiType::CompositeRejectCallback { code, .. } => *code as i32,
            _ => 0,
        }
    }

    pub fn reject_message(&self) -> &[u8] {
        match &self.api {
            ApiType::RejectCallback { message, .. } | ApiType::CompositeRejectCallback { message, .. } => {
                message.as_bytes()
            }
            _ => &[],
        }
    }

    pub fn method_name(&self) -> &[u8] {
        match &self.api {
            ApiType::InspectMessage { method, .. } => method.as_bytes(),
            _ => &[],
        }
    }

    pub fn deadline(&self) -> u64 {
        match &self.api {
            ApiType::Update { deadline, .. }
            | ApiType::ReplyCallback { deadline, .. }
            | ApiType::RejectCallback { deadline, .. } => deadline.unwrap_or(0),
            _ => 0,
        }
    }

    pub fn data_certificate(&self) -> Option<&[u8]> {
        match &self.api {
            ApiType::NonReplicatedQuery { data_certificate, .. } | ApiType::CompositeQuery { data_certificate, .. } => {
                data_certificate.as_deref()
            }
            _ => None,
        }
    }

    pub fn canister_self(&self) -> &[u8] {
        self.sys.canister_id.as_slice()
    }

    pub fn subnet_self(&self) -> &[u8] {
        self.sys.subnet_id.as_slice()
    }

    pub fn root_key(&self) -> &[u8] {
        &self.sys.root_key
    }

    pub fn sys(&self) -> &SystemStateView {
        &self.sys
    }

    // ---- responding ----

    fn check_can_respond(&self, name: &str) -> Result<(), UserError> {
        if self.responded {
            return Err(Self::violation(name, "the call has already been responded to"));
        }
        Ok(())
    }

    pub fn reply_data_append(&mut self, data: &[u8]) -> Result<(), UserError> {
        const NAME: &str = "msg_reply_data_append";
        self.check_can_respond(NAME)?;
        let total = self.reply_buffer.len() + data.len();
        if total > self.params.max_reply_bytes {
            return Err(Self::violation(
                NAME,
                format!("application payload size ({total}) cannot be larger than {}", self.params.max_reply_bytes),
            ));
        }
        self.reply_buffer.extend_from_slice(data);
        Ok(())
    }

    pub fn reply(&mut self) -> Result<(), UserError> {
        self.check_can_respond("msg_reply")?;
        let reply = std::mem::take(&mut self.reply_buffer);
        self.respond(WasmResult::Reply(reply));
        Ok(())
    }

    pub fn reject(&mut self, message: &[u8]) -> Result<(), UserError> {
        const NAME: &str = "msg_reject";
        self.check_can_respond(NAME)?;
        // A reject message is a response too: the reply limit bounds it.
        let max = self.params.max_reply_bytes;
        if message.len() > max {
            return Err(Self::violation(
                NAME,
                format!("the reject message size ({}) cannot be larger than {max}", message.len()),
            ));
        }
        let message = String::from_utf8(message.to_vec())
            .map_err(|_| Self::violation(NAME, "the reject message is not valid UTF-8"))?;
        self.reply_buffer.clear();
        self.respond(WasmResult::Reject(message));
        Ok(())
    }

    fn respond(&mut self, result: WasmResult) {
        self.responded = true;
        self.response = Some(result);
        // The unaccepted cycles go back to the caller with the response.
        self.cycles_available = 0;
    }

    pub fn accept_message(&mut self) -> Result<(), UserError> {
        if self.message_accepted {
            return Err(Self::violation("accept_message", "the message was already accepted"));
        }
        self.message_accepted = true;
        Ok(())
    }

    // ---- cycles ----

    /// The balance as the canister sees it now: accepted cycles in, burned and sent cycles out.
    pub fn balance(&self) -> u128 {
        self.sys
            .cycles_balance
            .saturating_add(self.changes.cycles_accepted)
            .saturating_sub(self.changes.cycles_burned)
            .saturating_sub(self.cycles_sent)
    }

    /// What can be spent without going below the reserved cycles (freezing threshold).
    pub fn liquid_balance(&self) -> u128 {
        self.balance().saturating_sub(self.sys.cycles_reserved)
    }

    pub fn cycles_available(&self) -> u128 {
        self.cycles_available
    }

    pub fn cycles_refunded(&self) -> u128 {
        match &self.api {
            ApiType::ReplyCallback { cycles_refunded, .. } | ApiType::RejectCallback { cycles_refunded, .. } => {
                *cycles_refunded
            }
            _ => 0,
        }
    }

    pub fn accept_cycles(&mut self, max: u128) -> u128 {
        let amount = max.min(self.cycles_available);
        self.cycles_available -= amount;
        self.changes.cycles_accepted = self.changes.cycles_accepted.saturating_add(amount);
        amount
    }

    pub fn burn_cycles(&mut self, max: u128) -> u128 {
        let amount = max.min(self.liquid_balance());
        self.changes.cycles_burned = self.changes.cycles_burned.saturating_add(amount);
        amount
    }

    // ---- calls ----

    /// Composite-query calls are queries: no cycles, no fees.
    fn calls_are_queries(&self) -> bool {
        matches!(
            self.context,
            Context::CompositeQuery | Context::CompositeReplyCallback | Context::CompositeRejectCallback
        )
    }

    fn discard_call(&mut self) {
        if let Some(call) = self.call.take() {
            self.cycles_sent = self.cycles_sent.saturating_sub(call.cycles);
        }
    }

    fn call_mut(&mut self, name: &str) -> Result<&mut CallUnderConstruction, UserError> {
        self.call
            .as_mut()
            .ok_or_else(|| Self::violation(name, "there is no call under construction (call ic0.call_new first)"))
    }

    pub fn call_new(
        &mut self,
        callee: &[u8],
        method: &[u8],
        on_reply: WasmClosure,
        on_reject: WasmClosure,
    ) -> Result<(), UserError> {
        const NAME: &str = "call_new";
        self.discard_call();
        let callee = Principal::try_from_slice(callee)
            .map_err(|e| Self::violation(NAME, format!("the callee is not a valid principal: {e}")))?;
        if method.len() > MAX_METHOD_NAME_BYTES {
            return Err(Self::violation(
                NAME,
                format!("the method name is {} bytes long, more than {MAX_METHOD_NAME_BYTES}", method.len()),
            ));
        }
        let method = String::from_utf8(method.to_vec())
            .map_err(|_| Self::violation(NAME, "the method name is not valid UTF-8"))?;
        self.call = Some(CallUnderConstruction {
            callee,
            method,
            payload: Vec::new(),
            cycles: 0,
            on_reply,
            on_reject,
            on_cleanup: None,
            timeout_seconds: None,
        });
        Ok(())
    }

    pub fn call_on_cleanup(&mut self, closure: WasmClosure) -> Result<(), UserError> {
        const NAME: &str = "call_on_cleanup";
        let call = self.call_mut(NAME)?;
        if call.on_cleanup.is_some() {
            return Err(Self::violation(NAME, "the cleanup callback is already set for this call"));
        }
        call.on_cleanup = Some(closure);
        Ok(())
    }

    pub fn call_data_append(&mut self, data: &[u8]) -> Result<(), UserError> {
        const NAME: &str = "call_data_append";
        let limit = self.params.max_call_payload_bytes;
        let call = self.call_mut(NAME)?;
        let total = call.payload.len() + data.len();
        if total > limit {
            return Err(Self::violation(
                NAME,
                format!("the call payload size ({total}) cannot be larger than {limit}"),
            ));
        }
        call.payload.extend_from_slice(data);
        Ok(())
    }

    pub fn call_with_best_effort_response(&mut self, timeout_seconds: u32) -> Result<(), UserError> {
        const NAME: &str = "call_with_best_effort_response";
        let max = self.params.max_best_effort_timeout_seconds;
        let call = self.call_mut(NAME)?;
        if call.timeout_seconds.is_some() {
            return Err(Self::violation(NAME, "the timeout is already set for this call"));
        }
        // Larger timeouts are silently bounded by the maximum (spec).
        call.timeout_seconds = Some(timeout_seconds.min(max));
        Ok(())
    }

    pub fn call_cycles_add(&mut self, amount: u128, name: &str) -> Result<(), UserError> {
        self.call_mut(name)?;
        let liquid = self.liquid_balance();
        if amount > liquid {
            return Err(UserError::new(
                ErrorCode::CanisterOutOfCycles,
                format!(
                    "Canister {} is out of cycles: ic0.{name} tried to attach {amount} cycles but only {liquid} can be \
                     spent without going below the freezing threshold",
                    self.sys.canister_id
                ),
            ));
        }
        self.cycles_sent = self.cycles_sent.saturating_add(amount);
        if let Some(call) = &mut self.call {
            call.cycles = call.cycles.saturating_add(amount);
        }
        Ok(())
    }

    /// 0 if the call is queued; 2 (SYS_TRANSIENT) if the canister cannot pay its fee, the
    /// execution has queued as many calls or bytes as it may, or the canister would have more
    /// calls outstanding than its quota, in which case the call is dropped and its cycles
    /// return (the interface spec: a non-zero result means the call could not be enqueued).
    pub fn call_perform(&mut self) -> Result<i32, UserError> {
        let call = self.call_mut("call_perform")?;
        let bytes = call.method.len() + call.payload.len();
        let queries = self.calls_are_queries();
        let fee = match queries {
            false => self.cost_call(0, bytes as u64),
            true => 0,
        };
        let queue_full = self.changes.calls.len() >= MAX_CALLS_PER_EXECUTION
            || self.call_bytes.saturating_add(bytes) > MAX_CALL_BYTES_PER_EXECUTION
            || !queries && self.changes.calls.len() as u64 >= self.calls_allowed;
        if queue_full || fee > self.liquid_balance() {
            self.discard_call();
            return Ok(2);
        }
        let Some(call) = self.call.take() else { return Ok(2) };
        self.call_bytes += bytes;
        self.cycles_sent = self.cycles_sent.saturating_add(fee);
        self.changes.calls.push(OutgoingCall {
            callee: call.callee,
            method: call.method,
            payload: call.payload,
            cycles: call.cycles,
            on_reply: call.on_reply,
            on_reject: call.on_reject,
            on_cleanup: call.on_cleanup,
            timeout_seconds: call.timeout_seconds,
        });
        Ok(0)
    }

    // ---- certified data, timer, controllers ----

    pub fn certified_data_set(&mut self, data: &[u8]) -> Result<(), UserError> {
        let max = self.params.max_certified_data_bytes;
        if data.len() > max {
            return Err(Self::violation(
                "certified_data_set",
                format!("certified data size ({}) cannot be larger than {max}", data.len()),
            ));
        }
        self.changes.new_certified_data = Some(data.to_vec());
        Ok(())
    }

    pub fn global_timer_set(&mut self, time: u64) -> u64 {
        let previous = self.changes.new_global_timer.unwrap_or(self.sys.global_timer);
        self.changes.new_global_timer = Some(time);
        previous
    }

    pub fn is_controller(&self, principal: &[u8]) -> Result<bool, UserError> {
        let principal = Principal::try_from_slice(principal)
            .map_err(|e| Self::violation("is_controller", format!("invalid principal: {e}")))?;
        Ok(self.sys.controllers.contains(&principal))
    }

    // ---- costs ----

    pub fn cost_call(&self, method_name_size: u64, payload_size: u64) -> u128 {
        let bytes = method_name_size.saturating_add(payload_size);
        self.params.cycles.call_cost(usize::try_from(bytes).unwrap_or(usize::MAX))
    }

    pub fn cost_create_canister(&self) -> u128 {
        self.params.cycles.creation_fee()
    }

    /// The IC's HTTPS outcall fee: `(3M + 60K·n + 400·request + 800·max_response) · n`.
    pub fn cost_http_request(&self, request_size: u64, max_res_bytes: u64) -> u128 {
        let n = self.params.cycles.subnet_size as u128;
        (3_000_000u128 + 60_000 * n + 400 * request_size as u128 + 800 * max_res_bytes as u128) * n
    }

    /// `(code, fee)` of a threshold-key operation: code 1 for an unknown curve/algorithm,
    /// 2 for an unknown key name.
    pub fn cost_threshold_key(&self, key_name: &[u8], curve_valid: bool) -> (i32, u128) {
        if !curve_valid {
            return (1, 0);
        }
        match key_name {
            b"key_1" => (0, THRESHOLD_KEY_FEE_13_NODES * PRODUCTION_KEY_SUBNET_SIZE / 13),
            b"test_key_1" | b"dfx_test_key" => (0, THRESHOLD_KEY_FEE_13_NODES),
            _ => (2, 0),
        }
    }

    // ---- environment variables (the canister's settings) ----

    pub fn env_var_count(&self) -> usize {
        self.env_vars.len()
    }

    pub fn env_var_name_exists(&self, name: &[u8]) -> Result<bool, UserError> {
        let name = Self::check_env_var_name("env_var_name_exists", name)?;
        Ok(self.env_var(name).is_some())
    }

    /// Traps when no variable has that name (spec).
    pub fn env_var_value(&self, name: &[u8], fn_name: &str) -> Result<&[u8], UserError> {
        let name = Self::check_env_var_name(fn_name, name)?;
        self.env_var(name)
            .map(str::as_bytes)
            .ok_or_else(|| Self::violation(fn_name, format!("environment variable \"{name}\" is not set")))
    }

    /// Traps when `index` is not below `env_var_count` (spec).
    pub fn env_var_name(&self, index: u64, fn_name: &str) -> Result<&[u8], UserError> {
        usize::try_from(index).ok().and_then(|i| self.env_vars.get(i)).map(|(name, _)| name.as_bytes()).ok_or_else(|| {
            Self::violation(
                fn_name,
                format!(
                    "Environment variable index {index} is out of bounds. The number of environment variables is {}.",
                    self.env_vars.len()
                ),
            )
        })
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env_vars.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    fn check_env_var_name<'n>(fn_name: &str, name: &'n [u8]) -> Result<&'n str, UserError> {
        if name.len() > MAX_ENV_VAR_NAME_BYTES {
            return Err(Self::violation(
                fn_name,
                format!("the variable name is {} bytes long, more than {MAX_ENV_VAR_NAME_BYTES}", name.len()),
            ));
        }
        std::str::from_utf8(name).map_err(|_| Self::violation(fn_name, "the variable name is not valid UTF-8"))
    }

    // ---- logs ----

    pub fn debug_print(&mut self, bytes: &[u8]) {
        self.log(bytes[..bytes.len().min(MAX_LOG_RECORD_BYTES)].to_vec());
    }

    fn log(&mut self, content: Vec<u8>) {
        self.logs.push(LogRecord { timestamp_nanos: self.sys.time, content });
    }
}

/// The error of an explicit `ic0.trap`.
pub(crate) fn called_trap_error(message: &[u8]) -> UserError {
    let message = String::from_utf8_lossy(&message[..message.len().min(MAX_TRAP_MESSAGE_BYTES)]);
    UserError::new(ErrorCode::CanisterCalledTrap, format!("Canister called `ic0.trap` with message: '{message}'"))
}

/// The error of running out of instructions.
pub(crate) fn instruction_limit_error(limit: u64) -> UserError {
    UserError::new(
        ErrorCode::CanisterInstructionLimitExceeded,
        format!("Canister exceeded the limit of {limit} instructions for single message execution."),
    )
}

/// The IC's error when the heap grows past `wasm_memory_limit`.
pub(crate) fn wasm_memory_limit_error(limit: u64, requested: u64) -> UserError {
    UserError::new(
        ErrorCode::CanisterWasmMemoryLimitExceeded,
        format!(
            "Canister exceeded its current Wasm memory limit of {limit} bytes. The peak Wasm memory usage was \
             {requested} bytes. If the canister reaches 4GiB, then it may stop functioning and may become \
             unrecoverable. Please reach out to the canister owner to investigate the reason for the increased \
             memory usage. It might be necessary to move data from the Wasm memory to the stable memory. If such \
             high Wasm memory usage is expected and safe, then the developer can increase the Wasm memory limit in \
             the canister settings."
        ),
    )
}

/// Whether the IC enforces `wasm_memory_limit` here: updates, callbacks, system tasks, install
/// and upgrade hooks — not queries.
pub(crate) fn enforces_wasm_memory_limit(context: Context) -> bool {
    matches!(
        context,
        Context::Start
            | Context::Init
            | Context::Update
            | Context::ReplyCallback
            | Context::RejectCallback
            | Context::Cleanup
            | Context::SystemTask
    )
}
