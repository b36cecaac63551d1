//! Non-replicated queries and composite queries. Nothing here changes replicated state: plain
//! queries are rolled back by the embedder; a composite query's call context (the method and
//! its callbacks) runs on a scratch copy of the canister's instance that is dropped after.

use super::{check_running, error_payload, ExecutionEnvironment, MethodKind};
use crate::hypervisor::{ApiType, EntryPoint, ExecutionOutcome, ExecutionState, OutgoingCall, WasmResult};
use crate::management;
use crate::state::ResponsePayload;
use std::collections::VecDeque;
use tabnet_types::{CanisterId, ErrorCode, Principal, RejectCode, UserError, MANAGEMENT_CANISTER};

/// How deep composite queries may call (the root is depth 1).
const MAX_QUERY_CALL_DEPTH: usize = 6;
/// Total instructions of one composite query call graph (the IC's 50B).
const MAX_QUERY_GRAPH_INSTRUCTIONS: u64 = 50_000_000_000;

/// Bookkeeping for one query call graph.
struct QueryGraph {
    time: u64,
    /// Canisters with a query running now (loop detection).
    stack: Vec<CanisterId>,
    instructions: u64,
}

impl ExecutionEnvironment {
    /// Answers a query (`canister_query` or `canister_composite_query`, or the management
    /// canister's `canister_status` / `fetch_canister_logs`) at time `time`, without changing
    /// replicated state.
    pub fn query(
        &mut self,
        time: u64,
        sender: Principal,
        canister_id: CanisterId,
        method: &str,
        arg: Vec<u8>,
        data_certificate: Option<Vec<u8>>,
    ) -> Result<WasmResult, UserError> {
        if canister_id == MANAGEMENT_CANISTER {
            return management::query(self, sender, method, &arg);
        }
        let kind = self.query_method_kind(&canister_id, method)?;
        let mut graph = QueryGraph { time, stack: Vec::new(), instructions: 0 };
        match self.run_query(&mut graph, canister_id, sender, method, arg, data_certificate, kind)? {
            Some(r) => Ok(r),
            None => Err(UserError::new(
                ErrorCode::CanisterDidNotReply,
                format!("Canister {canister_id} did not produce a response"),
            )),
        }
    }

    /// The canister exists, runs, and exports `method` as a (composite) query.
    fn query_method_kind(&self, id: &CanisterId, method: &str) -> Result<MethodKind, UserError> {
        let c = self
            .state
            .canister(id)
            .ok_or_else(|| UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found")))?;
        check_running(c)?;
        match self.method_kind(c, method)? {
            MethodKind::Update => Err(UserError::new(
                ErrorCode::CanisterMethodNotFound,
                format!("Canister {id} has no query method '{method}'"),
            )),
            kind => Ok(kind),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_query(
        &mut self,
        graph: &mut QueryGraph,
        id: CanisterId,
        caller: Principal,
        method: &str,
        arg: Vec<u8>,
        data_certificate: Option<Vec<u8>>,
        kind: MethodKind,
    ) -> Result<Option<WasmResult>, UserError> {
        let (entry, api) = match kind {
            MethodKind::CompositeQuery => (
                format!("canister_composite_query {method}"),
                ApiType::CompositeQuery { caller, method: method.into(), arg, data_certificate },
            ),
            _ => (
                format!("canister_query {method}"),
                ApiType::NonReplicatedQuery { caller, method: method.into(), arg, data_certificate },
            ),
        };
        graph.stack.push(id);
        let result = match kind {
            MethodKind::CompositeQuery => {
                let scratch = self.state.canisters.get(&id).and_then(|c| c.execution.as_ref()).map(|e| e.try_clone());
                match scratch {
                    Some(Ok(mut scratch)) => self.run_query_graph(graph, id, &mut scratch, caller, EntryPoint::Export(entry), api),
                    Some(Err(e)) => Err(e),
                    None => Err(super::no_module_error(&id)),
                }
            }
            _ => self.run_live_query(graph, id, EntryPoint::Export(entry), api).and_then(|outcome| outcome.result),
        };
        graph.stack.pop();
        result
    }

    /// Runs a composite query on `exec`, then each call it makes and the callback for its
    /// response, in order.
    fn run_query_graph(
        &mut self,
        graph: &mut QueryGraph,
        id: CanisterId,
        exec: &mut ExecutionState,
        caller: Principal,
        entry: EntryPoint,
        api: ApiType,
    ) -> Result<Option<WasmResult>, UserError> {
        let outcome = self.run_query_step(graph, id, exec, entry, api)?;
        let mut response = outcome.result?;
        let mut first_error = None;
        let mut pending: VecDeque<OutgoingCall> = outcome.changes.calls.into();
        while let Some(call) = pending.pop_front() {
            let payload = self.query_call(graph, id, &call);
            let (closure, api) = match payload {
                ResponsePayload::Reply(reply) => (call.on_reply, ApiType::CompositeReplyCallback { caller, reply }),
                ResponsePayload::Reject { code, message, .. } => {
                    (call.on_reject, ApiType::CompositeRejectCallback { caller, code, message })
                }
            };
            let outcome = self.run_query_step(graph, id, exec, EntryPoint::Closure(closure), api)?;
            match outcome.result {
                Ok(r) => {
                    if response.is_none() {
                        response = r;
                    }
                    pending.extend(outcome.changes.calls);
                }
                Err(e) => {
                    if let Some(cleanup) = call.on_cleanup {
                        let _ = self.run_query_step(graph, id, exec, EntryPoint::Closure(cleanup), ApiType::Cleanup { caller });
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match (response, first_error) {
            (Some(r), _) => Ok(Some(r)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// One call a composite query made, answered synchronously.
    fn query_call(&mut self, graph: &mut QueryGraph, caller: CanisterId, call: &OutgoingCall) -> ResponsePayload {
        let callee = call.callee;
        let checked = if graph.stack.len() >= MAX_QUERY_CALL_DEPTH {
            Err(UserError::new(ErrorCode::QueryCallGraphTooDeep, "Composite query call graph went too deep"))
        } else if callee == MANAGEMENT_CANISTER {
            Err(UserError::new(
                ErrorCode::CanisterRejectedMessage,
                "The management canister cannot be called from a composite query",
            ))
        } else if graph.stack.contains(&callee) {
            Err(UserError::new(
                ErrorCode::QueryCallGraphLoopDetected,
                format!("Loop detected: canister {callee} is already in the query call graph"),
            ))
        } else {
            self.query_method_kind(&callee, &call.method)
        };
        let kind = match checked {
            Ok(kind) => kind,
            Err(e) => return error_payload(e),
        };
        match self.run_query(graph, callee, caller, &call.method, call.payload.clone(), None, kind) {
            Ok(Some(r)) => r.into(),
            Ok(None) => ResponsePayload::Reject {
                code: RejectCode::CanisterError,
                message: format!("Canister {callee} did not produce a response"),
                error_code: Some(ErrorCode::CanisterDidNotReply),
            },
            Err(e) => error_payload(e),
        }
    }

    /// Runs a plain query on the canister's own instance (the embedder rolls it back).
    fn run_live_query(
        &mut self,
        graph: &mut QueryGraph,
        id: CanisterId,
        entry: EntryPoint,
        api: ApiType,
    ) -> Result<ExecutionOutcome, UserError> {
        let Some(mut exec) = self.state.canisters.get_mut(&id).and_then(|c| c.execution.take()) else {
            return Err(super::no_module_error(&id));
        };
        let outcome = self.run_query_step(graph, id, &mut exec, entry, api);
        if let Some(c) = self.state.canisters.get_mut(&id) {
            c.execution = Some(exec);
        }
        outcome
    }

    /// Runs one entry point of a query within the graph's instruction budget.
    fn run_query_step(
        &mut self,
        graph: &mut QueryGraph,
        id: CanisterId,
        exec: &mut ExecutionState,
        entry: EntryPoint,
        api: ApiType,
    ) -> Result<ExecutionOutcome, UserError> {
        let left = MAX_QUERY_GRAPH_INSTRUCTIONS.saturating_sub(graph.instructions);
        if left == 0 {
            return Err(UserError::new(
                ErrorCode::QueryCallGraphTotalInstructionLimitExceeded,
                "Composite query exceeded its total instruction limit",
            ));
        }
        let limit = self.config.max_instructions_per_query.min(left);
        let outcome = self.run_wasm(&id, exec, &entry, api, limit, graph.time, false, 0);
        graph.instructions = graph.instructions.saturating_add(outcome.instructions_used);
        Ok(outcome)
    }
}
