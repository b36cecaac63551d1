//! Rounds: induct ingress, then run messages, responses, heartbeats and timers until the subnet
//! is quiescent (or the round's budget is spent), charging cycles as it goes.
//!
//! One [`ExecutionEnvironment`] owns the [`ReplicatedState`]. Everything is deterministic: time
//! and randomness come in with the round; canisters and queues are visited in a fixed order.

mod messages;
mod query;

use crate::config::SubnetConfig;
use crate::hypervisor::{ApiType, EntryPoint, ExecutionParameters, ExecutionState, SystemStateView, WasmResult};
use crate::management;
use crate::state::{
    AfterExecution, CallContextId, CallOrigin, CanisterMessage, CanisterState, CanisterStatus, LowWasmMemoryHook, MessageId, ReplicatedState, Request,
    ResponsePayload,
};
use sha2::{Digest, Sha256};
use tabnet_types::{CanisterId, ErrorCode, Principal, RejectCode, UserError, MANAGEMENT_CANISTER};

/// An ingress message that passed the HTTP layer's checks (signature, expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressMessage {
    pub id: MessageId,
    pub sender: Principal,
    pub canister_id: CanisterId,
    pub method: String,
    pub arg: Vec<u8>,
    /// For calls to `aaaaa-aa`: the canister the call is about; otherwise `canister_id`.
    pub effective_canister_id: CanisterId,
}

/// How an ingress message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngressOutcome {
    Replied(Vec<u8>),
    Rejected { reject_code: RejectCode, message: String, error_code: ErrorCode },
}

impl IngressOutcome {
    pub fn from_error(e: UserError) -> Self {
        IngressOutcome::Rejected { reject_code: e.reject_code(), message: e.message, error_code: e.code }
    }
}

/// Instructions one round may run before the rest waits for the next round (the IC's 7B).
pub const DEFAULT_ROUND_INSTRUCTION_LIMIT: u64 = 7_000_000_000;
/// Instructions per slice of a long message (the IC's 2B): a message that needs more pauses
/// and goes on in the next round (deterministic time slicing).
pub const DEFAULT_SLICE_INSTRUCTIONS: u64 = 2_000_000_000;
/// Passes over all queues per round, so that a ping-pong of messages cannot hold a round forever.
const MAX_PASSES_PER_ROUND: usize = 1_000;
/// Storage and compute allocation are charged at most this often (charging dirties the canister).
const IDLE_CHARGE_INTERVAL_NANOS: u64 = 300 * 1_000_000_000;

/// Per-round inputs and outputs; not replicated.
#[derive(Default)]
struct Round {
    time: u64,
    random_seed: [u8; 32],
    random_counter: u64,
    instructions: u64,
    completed: Vec<(MessageId, IngressOutcome)>,
}

/// The execution layer of one subnet: its replicated state and the rules that change it.
pub struct ExecutionEnvironment {
    pub(crate) state: ReplicatedState,
    pub(crate) config: SubnetConfig,
    pub(crate) subnet_id: Principal,
    /// DER-encoded root public key, for `ic0.root_key_*`.
    pub(crate) root_key: Vec<u8>,
    /// Instructions per round; tests may lower it.
    pub round_instruction_limit: u64,
    /// Instructions per slice of a long message; tests may lower it. Every replica of a
    /// subnet must use the same.
    pub slice_instructions: u64,
    round: Round,
}

impl ExecutionEnvironment {
    pub fn new(config: SubnetConfig, subnet_id: Principal, root_key: Vec<u8>) -> Self {
        Self::from_state(ReplicatedState::new(), config, subnet_id, root_key)
    }

    /// Resume from a restored state.
    pub fn from_state(state: ReplicatedState, config: SubnetConfig, subnet_id: Principal, root_key: Vec<u8>) -> Self {
        Self {
            state,
            config,
            subnet_id,
            root_key,
            round_instruction_limit: DEFAULT_ROUND_INSTRUCTION_LIMIT,
            slice_instructions: DEFAULT_SLICE_INSTRUCTIONS,
            round: Round::default(),
        }
    }

    pub fn state(&self) -> &ReplicatedState {
        &self.state
    }

    /// Mutable state, for persistence (`take_dirty`). Changing canisters behind the
    /// scheduler's back breaks replication; don't.
    pub fn state_mut(&mut self) -> &mut ReplicatedState {
        &mut self.state
    }

    pub fn config(&self) -> &SubnetConfig {
        &self.config
    }

    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }

    pub fn state_hash(&self) -> [u8; 32] {
        self.state.state_hash()
    }

    /// Instructions the last round executed (replicated executions, slices included).
    pub fn round_instructions(&self) -> u64 {
        self.round.instructions
    }

    /// Executes one round at block time `time_nanos` with the round's random seed. Returns the
    /// ingress messages that completed in this round (possibly inducted in earlier rounds).
    pub fn execute_round(
        &mut self,
        time_nanos: u64,
        random_seed: [u8; 32],
        ingress: Vec<IngressMessage>,
    ) -> Vec<(MessageId, IngressOutcome)> {
        // Block time never goes backwards.
        let time = time_nanos.max(self.state.metadata.time);
        self.round = Round { time, random_seed, ..Round::default() };
        self.state.metadata.time = time;
        self.state.metadata.round += 1;

        self.catch_up_lost_executions();
        self.charge_idle_canisters();
        self.expire_best_effort_calls();
        for msg in ingress {
            self.induct_ingress(msg);
        }
        self.run_long_executions();
        self.run_heartbeats_and_timers();
        for _ in 0..MAX_PASSES_PER_ROUND {
            let progressed = self.run_one_pass();
            self.complete_stopping_canisters();
            if !progressed || self.round_budget_spent() {
                break;
            }
        }
        std::mem::take(&mut self.round.completed)
    }

    /// Whether an ingress message would be accepted now (the HTTP layer calls this before
    /// taking a message into its pool). Runs `canister_inspect_message` if exported.
    pub fn should_accept_ingress(&mut self, msg: &IngressMessage, time: u64) -> Result<(), UserError> {
        self.check_ingress_size(msg)?;
        if msg.canister_id == MANAGEMENT_CANISTER {
            return management::check_ingress(self, msg);
        }
        self.check_ingress_target(msg)?;
        if self.has_export(&msg.canister_id, "canister_inspect_message") {
            self.inspect_message(msg, time)?;
        }
        Ok(())
    }

    /// Aborts every paused message: the canister is as before it, and the message starts over
    /// from its beginning in a later round. The replica calls this before a checkpoint, at the
    /// same height on every replica, so that a checkpoint holds no half-run message and a node
    /// that starts from it goes on exactly as the others. Returns whether any was aborted.
    pub fn abort_paused_executions(&mut self) -> bool {
        // Installs running in slices drop what they built aside and start over too.
        let installs: Vec<CanisterId> =
            self.state.canisters.iter().filter(|(_, c)| c.system.long_install.is_some()).map(|(id, _)| *id).collect();
        for id in &installs {
            management::install::abort(self, id);
        }
        let ids: Vec<CanisterId> =
            self.state.canisters.iter().filter(|(_, c)| c.system.long_execution.is_some()).map(|(id, _)| *id).collect();
        for id in &ids {
            let c = self.state.canister_mut(id).expect("listed canister exists");
            if let Some(exec) = c.execution.as_mut() {
                if let Err(e) = exec.abort_paused() {
                    // Rebuilding the instance failed: the canister keeps no Wasm state.
                    c.system.log.push(crate::hypervisor::LogRecord { timestamp_nanos: self.round.time, content: e.message.into_bytes() });
                    c.execution = None;
                }
            }
            if let Some(long) = c.system.long_execution.as_mut() {
                long.fuel_given = 0;
                long.instructions_used = 0;
            }
        }
        !ids.is_empty() || !installs.is_empty()
    }

    /// Whether the canister has a message or an `install_code` running in slices (it runs
    /// nothing else meanwhile).
    pub fn has_long_execution(&self, id: &CanisterId) -> bool {
        self.state.canister(id).is_some_and(|c| c.system.is_busy())
    }

    /// Whether an `install_code` runs in slices on the subnet (others wait until it ends).
    pub fn has_long_install(&self) -> bool {
        self.state.canisters.values().any(|c| c.system.long_install.is_some())
    }

    // ---- round steps ----

    /// A replica that lost paused executions (a restart) runs them again to where every other
    /// replica paused them, before anything else: what they hold (memory) is then the same on
    /// every replica when the round starts. Not counted against the round: the others counted
    /// those slices when they ran them.
    fn catch_up_lost_executions(&mut self) {
        let lost_installs: Vec<CanisterId> = self
            .state
            .canisters
            .iter()
            .filter(|(_, c)| c.system.long_install.as_ref().is_some_and(|l| l.slices > 0) && c.install.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in lost_installs {
            management::install::catch_up(self, &id);
        }
        let lost: Vec<CanisterId> = self
            .state
            .canisters
            .iter()
            .filter(|(_, c)| {
                c.system.long_execution.as_ref().is_some_and(|l| l.fuel_given > 0)
                    && c.execution.as_ref().is_some_and(|e| !e.is_paused())
            })
            .map(|(id, _)| *id)
            .collect();
        let slice = self.slice_instructions.max(1);
        for id in lost {
            let calls_allowed = self.calls_allowed(&id);
            let c = self.state.canister_mut(&id).expect("listed canister exists");
            let (Some(mut exec), Some(long)) = (c.execution.take(), c.system.long_execution.take()) else { continue };
            match replay_slices(&mut exec, &long, slice, calls_allowed, &c.system.settings.environment_variables) {
                crate::hypervisor::Step::Paused { .. } => {
                    let c = self.state.canister_mut(&id).expect("listed canister exists");
                    c.execution = Some(exec);
                    c.system.long_execution = Some(long);
                }
                // It cannot end before the point where it paused before (the same fuel); if it
                // did anyway, it ends here.
                crate::hypervisor::Step::Done(outcome) => self.complete_execution(&id, long, exec, outcome),
            }
        }
    }

    /// Paused installs and messages go first, one slice each while the round's budget lasts:
    /// installs first (as on the IC; there is at most one, since installs wait while one runs),
    /// then messages, each round starting at another canister so that a spent budget leaves
    /// out different ones.
    fn run_long_executions(&mut self) {
        let installs: Vec<CanisterId> =
            self.state.canisters.iter().filter(|(_, c)| c.system.long_install.is_some()).map(|(id, _)| *id).collect();
        for id in installs {
            if self.round_budget_spent() {
                break;
            }
            management::install::run_slice(self, &id, None);
        }
        let mut ids: Vec<CanisterId> =
            self.state.canisters.iter().filter(|(_, c)| c.system.long_execution.is_some()).map(|(id, _)| *id).collect();
        if ids.is_empty() {
            return;
        }
        let start = (self.state.metadata.round % ids.len() as u64) as usize;
        ids.rotate_left(start);
        for id in ids {
            if self.round_budget_spent() {
                break;
            }
            let Some(long) = self.state.canister_mut(&id).and_then(|c| c.system.long_execution.take()) else { continue };
            self.run_slice(&id, long);
        }
    }

    fn round_budget_spent(&self) -> bool {
        self.round.instructions >= self.round_instruction_limit
    }

    /// Storage and compute allocation, paid for the time since the last charge. A canister that
    /// cannot pay is uninstalled, as on the IC.
    fn charge_idle_canisters(&mut self) {
        let time = self.round.time;
        let ids: Vec<CanisterId> = self.state.canisters.keys().copied().collect();
        for id in ids {
            let Some(c) = self.state.canister(&id) else { continue };
            let elapsed = time.saturating_sub(c.system.last_charge_time);
            if elapsed < IDLE_CHARGE_INTERVAL_NANOS {
                continue;
            }
            let bytes = c.memory_usage().max(c.system.settings.memory_allocation);
            let cost = self.config.cycles.storage_cost(bytes, elapsed).saturating_add(
                self.config.cycles.compute_allocation_cost(c.system.settings.compute_allocation, elapsed / 1_000_000_000),
            );
            let can_pay = c.system.cycles >= cost;
            let c = self.state.canister_mut(&id).expect("listed canister exists");
            c.system.charge(cost);
            c.system.last_charge_time = time;
            if !can_pay && c.execution.is_some() {
                // A paused message goes with the code; a paused install fails.
                c.system.long_execution = None;
                let e = UserError::new(
                    ErrorCode::CanisterOutOfCycles,
                    format!("Canister {id} was uninstalled during the install: it could not pay for its memory"),
                );
                management::install::abandon(self, &id, e);
                management::uninstall(self, &id, None);
                // Running out of cycles also drops the canister's history and its snapshots
                // (spec: canister_info, delete_canister_snapshot).
                if let Some(c) = self.state.canister_mut(&id) {
                    c.system.history.clear();
                    c.system.snapshots.clear();
                }
            }
        }
    }

    /// Best-effort calls whose deadline passed get a SYS_UNKNOWN reject, delivered before
    /// anything else the caller has queued; the real response, if it comes, is dropped.
    fn expire_best_effort_calls(&mut self) {
        let time = self.round.time;
        let ids: Vec<CanisterId> = self.state.canisters.keys().copied().collect();
        for id in ids {
            let system = &self.state.canisters[&id].system;
            // A response that arrived in time but still waits in the queue wins.
            let answered: std::collections::BTreeSet<u64> = system
                .input_queue
                .iter()
                .filter_map(|m| match m {
                    CanisterMessage::Response(r) => Some(r.callback_id),
                    CanisterMessage::Request(_) => None,
                })
                .collect();
            let expired: Vec<(u64, Principal)> = system
                .callbacks
                .iter()
                .filter(|(cb_id, cb)| {
                    !cb.expired && cb.deadline.is_some_and(|d| time >= d) && !answered.contains(cb_id)
                })
                .map(|(cb_id, cb)| (*cb_id, cb.callee))
                .collect();
            if expired.is_empty() {
                continue;
            }
            let c = self.state.canister_mut(&id).expect("listed canister exists");
            for (cb_id, callee) in expired.into_iter().rev() {
                if let Some(cb) = c.system.callbacks.get_mut(&cb_id) {
                    cb.expired = true;
                }
                c.system.input_queue.push_front(CanisterMessage::Response(crate::state::Response {
                    callback_id: cb_id,
                    respondent: callee,
                    payload: ResponsePayload::Reject {
                        code: RejectCode::SysUnknown,
                        message: "Request timed out.".into(),
                        error_code: Some(ErrorCode::DeadlineExpired),
                    },
                    refund: 0,
                }));
            }
        }
    }

    fn induct_ingress(&mut self, msg: IngressMessage) {
        let origin = CallOrigin::Ingress { message_id: msg.id, user: msg.sender };
        // A message waits in a queue until it runs: it must fit in the subnet's memory.
        let held = self.check_ingress_size(&msg).and_then(|bytes| self.check_subnet_memory(bytes));
        if let Err(e) = held {
            self.round.completed.push((msg.id, IngressOutcome::from_error(e)));
            return;
        }
        if msg.canister_id == MANAGEMENT_CANISTER {
            match management::check_ingress(self, &msg) {
                Ok(()) => self.state.metadata.subnet_queue.push_back(Request {
                    receiver: MANAGEMENT_CANISTER,
                    method: msg.method,
                    arg: msg.arg,
                    cycles: 0,
                    origin,
                }),
                Err(e) => self.round.completed.push((msg.id, IngressOutcome::from_error(e))),
            }
            return;
        }
        if let Err(e) = self.check_ingress_target(&msg) {
            self.round.completed.push((msg.id, IngressOutcome::from_error(e)));
            return;
        }
        let fee = self.config.cycles.ingress_induction_cost(msg.method.len() + msg.arg.len());
        let c = self.state.canister_mut(&msg.canister_id).expect("checked above");
        c.system.charge(fee);
        c.system.input_queue.push_back(CanisterMessage::Request(Request {
            receiver: msg.canister_id,
            method: msg.method,
            arg: msg.arg,
            cycles: 0,
            origin,
        }));
    }

    /// Checks an ingress message to a canister: it exists, runs, has code exporting the method,
    /// and can pay for the message. Returns the kind of method.
    fn check_ingress_target(&self, msg: &IngressMessage) -> Result<MethodKind, UserError> {
        let id = msg.canister_id;
        let c = self
            .state
            .canister(&id)
            .ok_or_else(|| UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found")))?;
        check_running(c)?;
        let kind = self.method_kind(c, &msg.method)?;
        let fee = self.config.cycles.ingress_induction_cost(msg.method.len() + msg.arg.len());
        self.check_can_pay(c, fee)?;
        Ok(kind)
    }

    /// The message's size (method name and argument), or the error if it exceeds
    /// `max_ingress_bytes` (the IC's 2 MiB).
    fn check_ingress_size(&self, msg: &IngressMessage) -> Result<u64, UserError> {
        let bytes = msg.method.len().saturating_add(msg.arg.len());
        let max = self.config.max_ingress_bytes;
        if bytes > max {
            return Err(UserError::new(
                ErrorCode::CanisterRejectedMessage,
                format!("Ingress message of {bytes} bytes exceeds the limit of {max} bytes"),
            ));
        }
        Ok(bytes as u64 + crate::state::MESSAGE_OVERHEAD_BYTES)
    }

    /// Heartbeats, due timers and low-memory hooks, as long as the round's budget lasts: each
    /// round starts at another canister, so that the ones a spent budget leaves out take their
    /// turn in the next rounds.
    fn run_heartbeats_and_timers(&mut self) {
        let time = self.round.time;
        let mut ids: Vec<CanisterId> = self.state.canisters.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let start = (self.state.metadata.round % ids.len() as u64) as usize;
        ids.rotate_left(start);
        for id in ids {
            if self.round_budget_spent() {
                break;
            }
            let Some(c) = self.state.canister(&id) else { continue };
            if c.system.status != CanisterStatus::Running || c.execution.is_none() || c.system.is_busy() {
                continue;
            }
            let prepay = self.prepayment(c, self.config.max_instructions_per_update);
            if self.check_can_pay(c, prepay).is_err() {
                continue;
            }
            let timer_due = c.system.global_timer != 0 && time >= c.system.global_timer;
            if self.has_export(&id, "canister_heartbeat") {
                self.run_system_task(&id, "canister_heartbeat", ApiType::Heartbeat);
            }
            if timer_due && !self.round_budget_spent() && !self.has_long_execution(&id) && self.has_export(&id, "canister_global_timer") {
                if let Some(c) = self.state.canister_mut(&id) {
                    c.system.global_timer = 0;
                }
                self.run_system_task(&id, "canister_global_timer", ApiType::GlobalTimer);
            }
            let low_memory = self.state.canister(&id).map(|c| c.system.low_wasm_memory_hook);
            if low_memory == Some(LowWasmMemoryHook::Ready)
                && !self.round_budget_spent()
                && !self.has_long_execution(&id)
                && self.has_export(&id, "canister_on_low_wasm_memory")
            {
                if let Some(c) = self.state.canister_mut(&id) {
                    c.system.low_wasm_memory_hook = LowWasmMemoryHook::Executed;
                }
                self.run_system_task(&id, "canister_on_low_wasm_memory", ApiType::OnLowWasmMemory);
            }
        }
    }

    fn run_system_task(&mut self, id: &CanisterId, export: &str, api: ApiType) {
        let Some(c) = self.state.canister_mut(id) else { return };
        let ctx = c.system.new_call_context(CallOrigin::System, 0);
        let limit = self.config.max_instructions_per_update;
        self.start_execution(id, Some(ctx), EntryPoint::Export(export.into()), api, limit, AfterExecution::FinishCallContext);
    }

    /// One pass: the management canister's queue, then every canister's queue, each as it was
    /// when the pass reached it. Returns whether anything ran.
    fn run_one_pass(&mut self) -> bool {
        let mut progressed = false;
        let subnet_requests = self.state.metadata.subnet_queue.take_all();
        let mut any_paused = self.state.canisters.values().any(|c| c.system.is_busy());
        let mut installing = any_paused && self.has_long_install();
        for req in subnet_requests {
            // A canister with a paused message or install takes no management calls until it
            // ends. Installs run one at a time while one runs in slices (as on the IC: the
            // memory built aside stays bounded), and only while the round has budget left.
            let installs = management::installs_code(&req);
            if any_paused && management::target_canister(&req).is_some_and(|id| self.has_long_execution(&id))
                || installs && (installing || self.round_budget_spent())
            {
                self.state.metadata.subnet_queue.push_back(req);
                continue;
            }
            progressed = true;
            management::execute(self, req);
            if installs && self.has_long_install() {
                any_paused = true;
                installing = true;
            }
        }
        let ids: Vec<CanisterId> = self.state.canisters.keys().copied().collect();
        for id in ids {
            let pending = match self.state.canister(&id) {
                Some(c) => c.system.input_queue.len(),
                None => continue,
            };
            for _ in 0..pending {
                if self.round_budget_spent() {
                    return progressed;
                }
                // A message that paused holds the queue until it ends.
                if self.has_long_execution(&id) {
                    break;
                }
                let Some(msg) = self.state.canister_mut(&id).and_then(|c| c.system.input_queue.pop_front()) else {
                    break;
                };
                progressed = true;
                match msg {
                    CanisterMessage::Request(req) => self.execute_request(&id, req),
                    CanisterMessage::Response(resp) => self.execute_response(&id, resp),
                }
            }
        }
        progressed
    }

    /// Stopping canisters whose last call context closed become stopped; their stop requests
    /// are answered.
    fn complete_stopping_canisters(&mut self) {
        let ids: Vec<CanisterId> = self
            .state
            .canisters
            .iter()
            .filter(|(_, c)| matches!(c.system.status, CanisterStatus::Stopping { .. }) && c.system.call_contexts.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let c = self.state.canister_mut(&id).expect("listed canister exists");
            let CanisterStatus::Stopping { stop_requests } = std::mem::replace(&mut c.system.status, CanisterStatus::Stopped)
            else {
                continue;
            };
            for origin in stop_requests {
                self.deliver_response(origin, MANAGEMENT_CANISTER, ResponsePayload::Reply(management::empty_reply()), 0);
            }
        }
    }

    // ---- shared helpers ----

    /// Calls the canister may still make under its quota of outstanding calls
    /// (`max_outstanding_calls`): `ic0.call_perform` fails beyond it. The canister's callbacks
    /// do not change while one of its messages is paused (it runs nothing else), so a
    /// restarted replica that runs a paused message again finds the same number.
    pub(crate) fn calls_allowed(&self, id: &CanisterId) -> u64 {
        let outstanding = self.state.canister(id).map_or(0, |c| c.system.callbacks.len() as u64);
        (self.config.max_outstanding_calls as u64).saturating_sub(outstanding)
    }

    /// Counts instructions a replicated execution ran against the round's budget.
    pub(crate) fn count_round_instructions(&mut self, instructions: u64) {
        self.round.instructions = self.round.instructions.saturating_add(instructions);
    }

    /// 32 bytes from the round's random tape.
    pub(crate) fn next_random(&mut self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tabnet-raw-rand");
        h.update(self.round.random_seed);
        h.update(self.round.random_counter.to_be_bytes());
        self.round.random_counter += 1;
        h.finalize().into()
    }

    pub(crate) fn time(&self) -> u64 {
        self.round.time
    }

    /// The balance below which the canister is frozen.
    pub(crate) fn freeze_threshold(&self, c: &CanisterState) -> u128 {
        let s = &c.system.settings;
        self.config.cycles.freeze_threshold_cycles(
            c.memory_usage().max(s.memory_allocation),
            s.compute_allocation,
            s.freezing_threshold,
        )
    }

    /// Cycles a message must be able to pay up front: execution at the full instruction limit.
    pub(crate) fn prepayment(&self, c: &CanisterState, instruction_limit: u64) -> u128 {
        self.config.cycles.execution_cost(instruction_limit, is_wasm64(c))
    }

    /// IC0207 if paying `cost` would take the canister below its freezing threshold.
    pub(crate) fn check_can_pay(&self, c: &CanisterState, cost: u128) -> Result<(), UserError> {
        let needed = self.freeze_threshold(c).saturating_add(cost);
        if c.system.cycles < needed {
            return Err(UserError::new(
                ErrorCode::CanisterOutOfCycles,
                format!(
                    "Canister {} is out of cycles: please top up the canister with at least {} additional cycles",
                    c.id(),
                    needed - c.system.cycles
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn has_export(&self, id: &CanisterId, name: &str) -> bool {
        self.state.canister(id).and_then(|c| c.execution.as_ref()).is_some_and(|e| e.exports_function(name))
    }

    /// How `method` would run on the canister, or the IC's error for a missing module/method.
    fn method_kind(&self, c: &CanisterState, method: &str) -> Result<MethodKind, UserError> {
        let id = c.id();
        let exec = c.execution.as_ref().ok_or_else(|| no_module_error(&id))?;
        if exec.exports_function(&format!("canister_update {method}")) {
            Ok(MethodKind::Update)
        } else if exec.exports_function(&format!("canister_query {method}")) {
            Ok(MethodKind::Query)
        } else if exec.exports_function(&format!("canister_composite_query {method}")) {
            Ok(MethodKind::CompositeQuery)
        } else {
            Err(UserError::new(ErrorCode::CanisterMethodNotFound, format!("Canister {id} has no update method '{method}'")))
        }
    }

    pub(crate) fn view(&self, c: &CanisterState, time: u64, replicated: bool) -> SystemStateView {
        let s = &c.system;
        SystemStateView {
            canister_id: s.canister_id,
            controllers: s.controllers.clone(),
            status: s.status.kind(),
            canister_version: s.canister_version,
            cycles_balance: s.cycles,
            cycles_reserved: self.freeze_threshold(c),
            subnet_id: self.subnet_id,
            root_key: self.root_key.clone(),
            time,
            global_timer: s.global_timer,
            certified_data: s.certified_data.clone(),
            in_replicated_execution: replicated,
            call_context_instructions: 0,
        }
    }

    pub(crate) fn params(&self, c: &CanisterState, wasm64: bool, instruction_limit: u64, max_reply_bytes: usize) -> ExecutionParameters {
        let subnet_limit = if wasm64 { self.config.max_wasm64_memory } else { self.config.max_wasm32_memory };
        let own_limit = c.system.settings.wasm_memory_limit;
        let wasm_limit = if own_limit == 0 { subnet_limit } else { own_limit.min(subnet_limit) };
        // What the node can still give: a canister may grow into it, no further.
        let available = self.subnet_memory_available();
        let (heap, stable) = c.execution.as_ref().map_or((0, 0), |e| (e.heap_bytes().len() as u64, e.stable_bytes().len() as u64));
        ExecutionParameters {
            instruction_limit,
            wasm_memory_limit: wasm_limit.min(heap.saturating_add(available)),
            stable_memory_limit: self.config.max_stable_memory.min(stable.saturating_add(available)),
            max_reply_bytes,
            max_call_payload_bytes: self.config.max_inter_canister_payload_same_subnet,
            max_certified_data_bytes: self.config.max_certified_data_bytes,
            max_best_effort_timeout_seconds: self.config.max_best_effort_timeout_seconds,
            cycles: self.config.cycles.clone(),
        }
    }

    /// Bytes the subnet can still give to canisters' memories, chunk stores and queues.
    pub(crate) fn subnet_memory_available(&self) -> u64 {
        self.config.subnet_memory_capacity.saturating_sub(self.state.memory_used())
    }

    /// IC0101 unless `bytes` more fit in the subnet's memory.
    pub(crate) fn check_subnet_memory(&self, bytes: u64) -> Result<(), UserError> {
        let available = self.subnet_memory_available();
        if bytes > available {
            return Err(subnet_memory_error(bytes, available));
        }
        Ok(())
    }

    /// Sends the response for `origin` from `respondent`: to the ingress history, to the
    /// calling canister's queue, or nowhere (system tasks).
    pub(crate) fn deliver_response(&mut self, origin: CallOrigin, respondent: Principal, payload: ResponsePayload, refund: u128) {
        match origin {
            CallOrigin::Ingress { message_id, .. } => {
                let outcome = match payload {
                    ResponsePayload::Reply(bytes) => IngressOutcome::Replied(bytes),
                    ResponsePayload::Reject { code, message, error_code } => IngressOutcome::Rejected {
                        reject_code: code,
                        message,
                        error_code: error_code.unwrap_or(ErrorCode::CanisterRejectedMessage),
                    },
                };
                self.round.completed.push((message_id, outcome));
            }
            CallOrigin::Canister { caller, callback_id, .. } => {
                // A response to a deleted canister is dropped with its refund.
                if let Some(c) = self.state.canister_mut(&caller) {
                    c.system.input_queue.push_back(CanisterMessage::Response(crate::state::Response {
                        callback_id,
                        respondent,
                        payload,
                        refund,
                    }));
                }
            }
            CallOrigin::System => {}
        }
    }

    /// Responds to a call context (once); the unaccepted cycles go back with the response.
    pub(crate) fn respond(&mut self, id: &CanisterId, ctx_id: CallContextId, payload: ResponsePayload) {
        let Some(c) = self.state.canister_mut(id) else { return };
        let Some(ctx) = c.system.call_contexts.get_mut(&ctx_id) else { return };
        if ctx.responded {
            return;
        }
        ctx.responded = true;
        let refund = std::mem::take(&mut ctx.available_cycles);
        let origin = ctx.origin.clone();
        self.deliver_response(origin, *id, payload, refund);
    }

    /// Closes the call context if nothing is outstanding; a context that never responded
    /// answers with `error` (the trap that ended it) or IC0506.
    pub(crate) fn finish_call_context(&mut self, id: &CanisterId, ctx_id: CallContextId, error: Option<UserError>) {
        let Some(c) = self.state.canister(id) else { return };
        let Some(ctx) = c.system.call_contexts.get(&ctx_id) else { return };
        if ctx.outstanding_callbacks > 0 {
            return;
        }
        if !ctx.responded && ctx.origin != CallOrigin::System {
            let e = error.unwrap_or_else(|| {
                UserError::new(ErrorCode::CanisterDidNotReply, format!("Canister {id} did not produce a response"))
            });
            self.respond(id, ctx_id, error_payload(e));
        }
        if let Some(c) = self.state.canister_mut(id) {
            c.system.call_contexts.remove(&ctx_id);
        }
    }

    /// Routes a request: to the management canister, to a canister's queue, or back as a
    /// reject when the callee does not exist.
    pub(crate) fn route_request(&mut self, req: Request) {
        if req.receiver == MANAGEMENT_CANISTER {
            self.state.metadata.subnet_queue.push_back(req);
        } else if let Some(c) = self.state.canister_mut(&req.receiver) {
            // `minimum_incoming_canister_call_cycles`: a call from another canister that
            // attaches fewer is rejected (CANISTER_ERROR) before it costs the callee anything;
            // self-calls are exempt.
            let minimum = c.system.settings.minimum_incoming_canister_call_cycles;
            if let CallOrigin::Canister { caller, .. } = &req.origin {
                if *caller != req.receiver && req.cycles < minimum {
                    let e = UserError::new(
                        ErrorCode::InsufficientCyclesInCall,
                        format!(
                            "Canister {} requires at least {minimum} cycles with each call from another canister, but the call from {caller} attached {}.",
                            req.receiver, req.cycles
                        ),
                    );
                    let refund = req.cycles;
                    return self.reject_request(req.origin, req.receiver, e, refund);
                }
            }
            c.system.input_queue.push_back(CanisterMessage::Request(req));
        } else {
            let e = UserError::new(ErrorCode::CanisterNotFound, format!("Canister {} not found", req.receiver));
            let refund = req.cycles;
            self.reject_request(req.origin, req.receiver, e, refund);
        }
    }

    /// Rejects a request that never ran.
    pub(crate) fn reject_request(&mut self, origin: CallOrigin, respondent: Principal, e: UserError, refund: u128) {
        self.deliver_response(origin, respondent, error_payload(e), refund);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_wasm(
        &mut self,
        id: &CanisterId,
        exec: &mut ExecutionState,
        entry: &EntryPoint,
        api: ApiType,
        instruction_limit: u64,
        time: u64,
        replicated: bool,
        call_context_instructions: u64,
    ) -> crate::hypervisor::ExecutionOutcome {
        let c = &self.state.canisters[id];
        let view = SystemStateView { call_context_instructions, ..self.view(c, time, replicated) };
        let max_reply = if replicated { self.config.max_reply_bytes } else { self.config.max_reply_bytes_query };
        let params = self.params(c, exec.is_wasm64(), instruction_limit, max_reply);
        exec.set_env_vars(&c.system.settings.environment_variables);
        let outcome = crate::hypervisor::execute(exec, entry, api, &view, &params);
        if replicated {
            self.round.instructions = self.round.instructions.saturating_add(outcome.instructions_used);
        }
        outcome
    }
}

/// Runs a message that paused on every replica but was lost here (a restart) again from its
/// start to where the others paused it: with the same slices one by one, not in one go, since
/// a host call that costs more than a slice has left borrows past the slice's end (so a single
/// run with all the fuel would pause elsewhere).
pub(crate) fn replay_slices(
    exec: &mut ExecutionState,
    long: &crate::state::LongExecution,
    slice: u64,
    calls_allowed: u64,
    env_vars: &[(String, String)],
) -> crate::hypervisor::Step {
    use crate::hypervisor::Step;
    // While paused, `fuel_given` is a whole number of slices (see `run_slice`).
    let slices = long.fuel_given.div_ceil(slice);
    exec.limit_calls(calls_allowed);
    // Settings do not change while a message runs in slices (management calls about the
    // canister wait), so these are the variables the other replicas' run saw.
    exec.set_env_vars(env_vars);
    let mut step = exec.execute_sliced(&long.entry, long.api.clone(), &long.sys, &long.params, slice);
    for _ in 1..slices {
        match step {
            Step::Paused { .. } => step = exec.resume(slice),
            done => return done,
        }
    }
    step
}

/// How a method is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodKind {
    Update,
    Query,
    CompositeQuery,
}

pub(crate) fn is_wasm64(c: &CanisterState) -> bool {
    c.execution.as_ref().is_some_and(|e| e.is_wasm64())
}

/// The IC's error when the subnet has no memory left for a request.
pub(crate) fn subnet_memory_error(requested: u64, available: u64) -> UserError {
    UserError::new(
        ErrorCode::SubnetOversubscribed,
        format!("Canister requested {requested} bytes of memory but only {available} bytes are available in the subnet"),
    )
}

pub(crate) fn no_module_error(id: &CanisterId) -> UserError {
    UserError::new(
        ErrorCode::CanisterWasmModuleNotFound,
        format!("Error from Canister {id}: Attempted to execute a message, but the canister contains no Wasm module."),
    )
}

/// IC0508/IC0509 for canisters that do not take new messages.
pub(crate) fn check_running(c: &CanisterState) -> Result<(), UserError> {
    match c.system.status {
        CanisterStatus::Running => Ok(()),
        CanisterStatus::Stopping { .. } => {
            Err(UserError::new(ErrorCode::CanisterStopping, format!("Canister {} is stopping", c.id())))
        }
        CanisterStatus::Stopped => Err(UserError::new(ErrorCode::CanisterStopped, format!("Canister {} is stopped", c.id()))),
    }
}

pub(crate) fn error_payload(e: UserError) -> ResponsePayload {
    ResponsePayload::Reject { code: e.reject_code(), message: e.message, error_code: Some(e.code) }
}

impl From<WasmResult> for ResponsePayload {
    fn from(r: WasmResult) -> Self {
        match r {
            WasmResult::Reply(bytes) => ResponsePayload::Reply(bytes),
            WasmResult::Reject(message) => {
                ResponsePayload::Reject { code: RejectCode::CanisterReject, message, error_code: Some(ErrorCode::CanisterRejectedMessage) }
            }
        }
    }
}
