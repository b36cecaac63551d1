//! Running one message on a canister: requests, responses (callbacks and cleanup),
//! `canister_inspect_message`, and applying what the code did to the system state.

use super::{check_running, ExecutionEnvironment, IngressMessage, MethodKind};
use crate::hypervisor::{
    ApiType, EntryPoint, ExecutionOutcome, ExecutionState, OutgoingCall, Step, SystemStateChanges, SystemStateView, WasmResult,
};
use crate::state::{
    AfterExecution, CallContextId, CallOrigin, Callback, CanisterMessage, LongExecution, Request, Response, ResponsePayload,
    CALLBACK_BYTES,
};
use tabnet_types::{CanisterId, ErrorCode, RejectCode, UserError};

impl ExecutionEnvironment {
    /// A request (from a user or a canister) to an update or query method.
    pub(super) fn execute_request(&mut self, id: &CanisterId, req: Request) {
        let Some(c) = self.state.canister(id) else {
            let e = UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found"));
            return self.reject_request(req.origin, *id, e, req.cycles);
        };
        let kind = check_running(c).and_then(|()| self.method_kind(c, &req.method));
        let kind = match kind {
            Ok(MethodKind::CompositeQuery) => Err(UserError::new(
                ErrorCode::CompositeQueryCalledInReplicatedMode,
                "Composite query cannot be called in replicated mode",
            )),
            other => other,
        };
        let limit = match kind {
            Ok(MethodKind::Update) => self.config.max_instructions_per_update,
            _ => self.config.max_instructions_per_query,
        };
        let kind = kind.and_then(|k| self.check_can_pay(c, self.prepayment(c, limit)).map(|()| k));
        let kind = match kind {
            Ok(k) => k,
            Err(e) => return self.reject_request(req.origin, *id, e, req.cycles),
        };

        let caller = req.sender();
        let deadline = req.origin.deadline();
        let c = self.state.canister_mut(id).expect("checked above");
        let ctx = c.system.new_call_context(req.origin, req.cycles);
        let method = req.method;
        let (entry, api) = match kind {
            MethodKind::Update => (
                format!("canister_update {method}"),
                ApiType::Update { caller, method, arg: req.arg, cycles_available: req.cycles, deadline },
            ),
            _ => (
                format!("canister_query {method}"),
                ApiType::ReplicatedQuery { caller, method, arg: req.arg, cycles_available: req.cycles },
            ),
        };
        // A query runs like an update, but the embedder rolls its memory back.
        self.start_execution(id, Some(ctx), EntryPoint::Export(entry), api, limit, AfterExecution::FinishCallContext);
    }

    /// The response to a call the canister made: its reply or reject callback, and the cleanup
    /// callback when that traps.
    pub(super) fn execute_response(&mut self, id: &CanisterId, resp: Response) {
        let Some(c) = self.state.canister_mut(id) else { return };
        // No callback: the call timed out (best effort) and this late response is dropped.
        let Some(cb) = c.system.callbacks.remove(&resp.callback_id) else { return };
        c.system.cycles = c.system.cycles.saturating_add(resp.refund);
        let ctx_id = cb.call_context;
        // No call context: the canister was uninstalled meanwhile; nothing runs.
        let Some(ctx) = c.system.call_contexts.get_mut(&ctx_id) else { return };
        ctx.outstanding_callbacks = ctx.outstanding_callbacks.saturating_sub(1);
        let caller = ctx.origin.caller(*id);
        let cycles_available = ctx.available_cycles;
        let responded = ctx.responded;
        if c.execution.is_none() {
            return self.finish_call_context(id, ctx_id, None);
        }
        let deadline = cb.deadline;
        let (entry, api) = match resp.payload {
            ResponsePayload::Reply(reply) => (
                cb.on_reply,
                ApiType::ReplyCallback { caller, reply, cycles_refunded: resp.refund, cycles_available, deadline, responded },
            ),
            ResponsePayload::Reject { code, message, .. } => (
                cb.on_reject,
                ApiType::RejectCallback { caller, code, message, cycles_refunded: resp.refund, cycles_available, deadline, responded },
            ),
        };
        let limit = self.config.max_instructions_per_update;
        let then = AfterExecution::Callback { on_cleanup: cb.on_cleanup, caller };
        self.start_execution(id, Some(ctx_id), EntryPoint::Closure(entry), api, limit, then);
    }

    /// Starts a message in replicated mode: it runs to its end within this slice, or pauses
    /// and goes on in later rounds ([`Self::run_slice`]); `then` follows its end.
    pub(crate) fn start_execution(
        &mut self,
        id: &CanisterId,
        ctx: Option<CallContextId>,
        entry: EntryPoint,
        api: ApiType,
        limit: u64,
        then: AfterExecution,
    ) {
        let Some(c) = self.state.canister(id) else { return };
        let Some(exec) = c.execution.as_ref() else {
            return self.after_execution(id, ctx, Err(super::no_module_error(id)), then);
        };
        let earlier = ctx.and_then(|ctx| c.system.call_contexts.get(&ctx)).map_or(0, |c| c.instructions);
        let sys = SystemStateView { call_context_instructions: earlier, ..self.view(c, self.round.time, true) };
        let params = self.params(c, exec.is_wasm64(), limit, self.config.max_reply_bytes);
        let long =
            LongExecution { call_context: ctx, entry, api, sys, params, fuel_given: 0, instructions_used: 0, then };
        self.run_slice(id, long);
    }

    /// Runs the next slice of a message: its first, or the next after a pause. The slice's
    /// instructions count against the round.
    pub(super) fn run_slice(&mut self, id: &CanisterId, mut long: LongExecution) {
        let Some(mut exec) = self.state.canister_mut(id).and_then(|c| c.execution.take()) else {
            return self.after_execution(id, long.call_context, Err(super::no_module_error(id)), long.then);
        };
        let slice = self.slice_instructions.max(1);
        let calls_allowed = self.calls_allowed(id);
        let env_vars = &self.state.canisters[id].system.settings.environment_variables;
        let step = if exec.is_paused() {
            exec.resume(slice)
        } else if long.fuel_given == 0 {
            exec.limit_calls(calls_allowed);
            exec.set_env_vars(env_vars);
            exec.execute_sliced(&long.entry, long.api.clone(), &long.sys, &long.params, slice)
        } else {
            // Paused on the other replicas, lost here (a restart): run it again to where they
            // paused it (counted already), then give it its slice.
            match super::replay_slices(&mut exec, &long, slice, calls_allowed, env_vars) {
                Step::Paused { .. } => exec.resume(slice),
                done => done,
            }
        };
        long.fuel_given = long.fuel_given.saturating_add(slice).min(long.params.instruction_limit);
        match step {
            Step::Paused { instructions_used } => {
                self.round.instructions =
                    self.round.instructions.saturating_add(instructions_used.saturating_sub(long.instructions_used));
                long.instructions_used = instructions_used;
                let c = self.state.canister_mut(id).expect("canister exists while it executes");
                c.execution = Some(exec);
                c.system.long_execution = Some(long);
            }
            Step::Done(outcome) => {
                self.round.instructions =
                    self.round.instructions.saturating_add(outcome.instructions_used.saturating_sub(long.instructions_used));
                self.complete_execution(id, long, exec, outcome);
            }
        }
    }

    /// Applies what an ended message did and what follows it.
    pub(super) fn complete_execution(&mut self, id: &CanisterId, long: LongExecution, exec: ExecutionState, outcome: ExecutionOutcome) {
        let result = self.apply_outcome(id, long.call_context, exec, outcome);
        self.after_execution(id, long.call_context, result, long.then);
    }

    /// What follows the end of a message: its cleanup callback if it failed, and closing its
    /// call context.
    fn after_execution(
        &mut self,
        id: &CanisterId,
        ctx: Option<CallContextId>,
        result: Result<Option<WasmResult>, UserError>,
        then: AfterExecution,
    ) {
        match then {
            AfterExecution::Callback { on_cleanup: Some(cleanup), caller } if ctx.is_some() => {
                if let Err(error) = result {
                    // Cleanup may not call or reply; only its memory changes and logs remain.
                    let limit = self.config.max_instructions_per_update;
                    let then = AfterExecution::Cleanup { call_context: ctx.expect("checked"), error };
                    return self.start_execution(id, None, EntryPoint::Closure(cleanup), ApiType::Cleanup { caller }, limit, then);
                }
                self.finish_call_context(id, ctx.expect("checked"), None);
            }
            AfterExecution::Cleanup { call_context, error } => self.finish_call_context(id, call_context, Some(error)),
            AfterExecution::FinishCallContext | AfterExecution::Callback { .. } => {
                if let Some(ctx) = ctx {
                    self.finish_call_context(id, ctx, result.err());
                }
            }
        }
    }

    /// Applies what an execution did: cycles for its instructions, logs, and (unless it
    /// trapped) the system-state changes and the response.
    fn apply_outcome(
        &mut self,
        id: &CanisterId,
        ctx: Option<CallContextId>,
        exec: ExecutionState,
        outcome: ExecutionOutcome,
    ) -> Result<Option<WasmResult>, UserError> {
        let cost = self.config.cycles.execution_cost(outcome.instructions_used, exec.is_wasm64());
        let heap_bytes = exec.heap_bytes().len() as u64;
        let c = self.state.canister_mut(id).expect("canister exists while it executes");
        if let Some(ctx) = ctx.and_then(|ctx| c.system.call_contexts.get_mut(&ctx)) {
            ctx.instructions = ctx.instructions.saturating_add(outcome.instructions_used);
        }
        c.execution = Some(exec);
        c.system.update_low_wasm_memory_hook(heap_bytes);
        c.system.charge(cost);
        for record in outcome.logs {
            c.system.log.push(record);
        }
        let result = outcome.result?;
        self.apply_changes(id, ctx, outcome.changes);
        if let (Some(ctx), Some(r)) = (ctx, &result) {
            self.respond(id, ctx, r.clone().into());
        }
        Ok(result)
    }

    fn apply_changes(&mut self, id: &CanisterId, ctx: Option<CallContextId>, changes: SystemStateChanges) {
        let Some(c) = self.state.canister_mut(id) else { return };
        if let Some(ctx) = ctx.and_then(|ctx| c.system.call_contexts.get_mut(&ctx)) {
            ctx.available_cycles = ctx.available_cycles.saturating_sub(changes.cycles_accepted);
        }
        c.system.cycles = c.system.cycles.saturating_add(changes.cycles_accepted);
        c.system.charge(changes.cycles_burned);
        if let Some(data) = changes.new_certified_data {
            c.system.certified_data = data;
        }
        if let Some(timer) = changes.new_global_timer {
            c.system.global_timer = timer;
        }
        if let Some(ctx) = ctx {
            // Queued calls hold memory until they run: what the subnet has left bounds them.
            let mut free = self.subnet_memory_available();
            for call in changes.calls {
                self.perform_call(id, ctx, call, &mut free);
            }
        }
    }

    /// Sends a call the canister made: registers its callback, takes its cycles and fee, and
    /// routes the request. A canister that cannot pay, or a call the subnet's memory (`free`
    /// bytes left) cannot hold, gets a SYS_TRANSIENT reject, as for a full queue on the IC.
    fn perform_call(&mut self, id: &CanisterId, ctx: CallContextId, call: OutgoingCall, free: &mut u64) {
        let fee = self.config.cycles.call_cost(call.method.len() + call.payload.len());
        let max_timeout = self.config.max_best_effort_timeout_seconds;
        let max_outstanding = self.config.max_outstanding_calls;
        let deadline = call
            .timeout_seconds
            .map(|t| self.round.time.saturating_add(u64::from(t.clamp(1, max_timeout)) * 1_000_000_000));
        let c = self.state.canister_mut(id).expect("caller exists");
        let callback_id = c.system.register_callback(Callback {
            call_context: ctx,
            callee: call.callee,
            on_reply: call.on_reply,
            on_reject: call.on_reject,
            on_cleanup: call.on_cleanup,
            deadline,
            expired: false,
        });
        let request = Request {
            receiver: call.callee,
            method: call.method,
            arg: call.payload,
            cycles: call.cycles,
            origin: CallOrigin::Canister { caller: *id, callback_id, deadline },
        };
        // The request waits in a queue; the callback stays until the response comes.
        let bytes = crate::state::request_bytes(&request) + CALLBACK_BYTES;
        // `ic0.call_perform` already refused calls beyond the quota (see `calls_allowed`);
        // this stays as a backstop.
        let refused = if c.system.callbacks.len() > max_outstanding {
            Some(UserError::new(
                ErrorCode::CanisterOutOfMemory,
                format!("Canister {id} has {max_outstanding} calls outstanding, the most it may have"),
            ))
        } else if bytes > *free {
            Some(super::subnet_memory_error(bytes, *free))
        } else if !c.system.withdraw(call.cycles.saturating_add(fee)) {
            Some(UserError::new(ErrorCode::CanisterOutOfCycles, format!("Canister {id} is out of cycles")))
        } else {
            None
        };
        if let Some(e) = refused {
            // Nothing was taken: the cycles stay in the balance.
            c.system.input_queue.push_back(CanisterMessage::Response(Response {
                callback_id,
                respondent: request.receiver,
                payload: ResponsePayload::Reject { code: RejectCode::SysTransient, message: e.message, error_code: Some(e.code) },
                refund: 0,
            }));
            return;
        }
        *free -= bytes;
        c.system.cycles_consumed = c.system.cycles_consumed.saturating_add(fee);
        self.route_request(request);
    }

    /// Runs `canister_inspect_message` (the embedder rolls its memory back); Ok if the canister
    /// called `accept_message`.
    pub(super) fn inspect_message(&mut self, msg: &IngressMessage, time: u64) -> Result<(), UserError> {
        let id = msg.canister_id;
        let Some(mut exec) = self.state.canisters.get_mut(&id).and_then(|c| c.execution.take()) else {
            return Err(super::no_module_error(&id));
        };
        let api = ApiType::InspectMessage { caller: msg.sender, method: msg.method.clone(), arg: msg.arg.clone() };
        let limit = self.config.max_instructions_per_inspect_message;
        let entry = EntryPoint::Export("canister_inspect_message".into());
        let outcome = self.run_wasm(&id, &mut exec, &entry, api, limit, time, false, 0);
        if let Some(c) = self.state.canisters.get_mut(&id) {
            c.execution = Some(exec);
        }
        match outcome.result? {
            Some(_) => Ok(()),
            None => Err(UserError::new(ErrorCode::CanisterRejectedMessage, format!("Canister {id} rejected the message"))),
        }
    }
}

impl From<ResponsePayload> for Result<WasmResult, UserError> {
    fn from(p: ResponsePayload) -> Self {
        match p {
            ResponsePayload::Reply(bytes) => Ok(WasmResult::Reply(bytes)),
            ResponsePayload::Reject { code: RejectCode::CanisterReject, message, .. } => Ok(WasmResult::Reject(message)),
            ResponsePayload::Reject { message, error_code, code } => Err(UserError::new(
                error_code.unwrap_or(match code {
                    RejectCode::DestinationInvalid => ErrorCode::CanisterNotFound,
                    RejectCode::SysTransient => ErrorCode::CanisterOutOfCycles,
                    _ => ErrorCode::CanisterCalledTrap,
                }),
                message,
            )),
        }
    }
}
