//! Queries on a snapshot of the state, so that they never hold up rounds.
//!
//! After each round the replica publishes a [`QueryState`]: per canister what queries read of
//! its system state, and its heap, stable memory and globals as of that round. It is immutable
//! and shared (`Arc`), so queries run on it on any thread while the next round executes.
//! Publishing copies only the canisters the round changed; the others are shared with the
//! previous `QueryState`, instance and all. A canister's query instance is built from its copy
//! on the first query after a change and reused while the canister stays unchanged (each
//! query is rolled back by the embedder); queries to one canister take turns on it, queries to
//! different canisters run in parallel.
//!
//! The query call graph (plain and composite queries, the management canister's queries) is
//! written once, over [`QueryTarget`]: the live state (`ExecutionEnvironment::query`, for the
//! tab and tests) or a `QueryState`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::embedder::GlobalValue;
use crate::hypervisor::{
    ApiType, CanisterModule, EntryPoint, ExecutionOutcome, ExecutionParameters, ExecutionState,
    OutgoingCall, SystemStateView, WasmResult,
};
use crate::management::{self, CanisterFacts, WasmFacts};
use crate::scheduler::{
    check_running, error_payload, is_wasm64, no_module_error, ExecutionEnvironment, MethodKind,
};
use crate::state::{ResponsePayload, SystemState};
use crate::SubnetConfig;
use tabnet_types::{CanisterId, ErrorCode, Principal, RejectCode, UserError, MANAGEMENT_CANISTER};

/// How deep composite queries may call (the root is depth 1).
const MAX_QUERY_CALL_DEPTH: usize = 6;
/// Total instructions of one composite query call graph (the IC's 50B).
const MAX_QUERY_GRAPH_INSTRUCTIONS: u64 = 50_000_000_000;

/// The state of all canisters as queries see it after one round.
pub struct QueryState {
    /// Block time of the round: what queries read as `ic0.time`.
    time: u64,
    config: SubnetConfig,
    canisters: BTreeMap<CanisterId, Published>,
}

struct Published {
    canister: Arc<QueryCanister>,
    /// Per round: the heap a query may grow to depends on the memory the subnet has left.
    params: ExecutionParameters,
}

/// One canister as of the round that last changed it.
struct QueryCanister {
    system: SystemState,
    memory_usage: u64,
    /// Whether it takes messages (IC0508/IC0509 if not).
    running: Result<(), UserError>,
    /// What the System API reads, but `time`.
    view: SystemStateView,
    wasm: Option<QueryWasm>,
}

struct QueryWasm {
    module: Arc<CanisterModule>,
    heap_len: usize,
    stable_len: usize,
    globals_len: usize,
    instance: Mutex<Instance>,
}

/// A canister's query instance, built on the first query that needs it.
enum Instance {
    Memories {
        heap: Vec<u8>,
        stable: Vec<u8>,
        globals: Vec<GlobalValue>,
    },
    Ready(ExecutionState),
    /// It could not be rebuilt (an engine error; it would fail the same way again).
    Failed(UserError),
}

/// The state queries run on after a round at `time`: canisters in `changed`, and all of them
/// when there is no `previous`, are copied anew; the others are shared with `previous`.
pub(crate) fn publish(
    env: &ExecutionEnvironment,
    previous: Option<&QueryState>,
    changed: &BTreeSet<CanisterId>,
    time: u64,
) -> QueryState {
    let mut canisters = BTreeMap::new();
    for (id, c) in &env.state.canisters {
        // A message paused mid-execution (time slicing) holds uncommitted memory: queries keep
        // seeing the canister as published before it, until the message ends.
        let paused = c.execution.as_ref().is_some_and(|e| e.is_paused());
        let kept = previous
            .filter(|_| paused || !changed.contains(id))
            .and_then(|p| p.canisters.get(id));
        let canister = match kept {
            Some(p) => p.canister.clone(),
            None => Arc::new(QueryCanister {
                system: c.system.clone(),
                memory_usage: c.memory_usage(),
                running: check_running(c),
                view: env.view(c, time, false),
                wasm: c.execution.as_ref().map(|e| {
                    let (heap, stable, globals) = e.copy_memories();
                    QueryWasm {
                        module: e.module().clone(),
                        heap_len: heap.len(),
                        stable_len: stable.len(),
                        globals_len: globals.len(),
                        instance: Mutex::new(Instance::Memories {
                            heap,
                            stable,
                            globals,
                        }),
                    }
                }),
            }),
        };
        let params = env.params(c, is_wasm64(c), 0, env.config.max_reply_bytes_query);
        canisters.insert(*id, Published { canister, params });
    }
    QueryState {
        time,
        config: env.config.clone(),
        canisters,
    }
}

/// Answers a query on the live state at `time` (see [`ExecutionEnvironment::query`]).
pub(crate) fn answer_live(
    env: &mut ExecutionEnvironment,
    time: u64,
    sender: Principal,
    canister_id: CanisterId,
    method: &str,
    arg: Vec<u8>,
    data_certificate: Option<Vec<u8>>,
) -> Result<WasmResult, UserError> {
    answer(
        &mut Live { env, time },
        sender,
        canister_id,
        method,
        arg,
        data_certificate,
    )
}

impl QueryState {
    /// Answers a query as [`ExecutionEnvironment::query`] does on the state of this round.
    pub fn query(
        &self,
        sender: Principal,
        canister_id: CanisterId,
        method: &str,
        arg: Vec<u8>,
        data_certificate: Option<Vec<u8>>,
    ) -> Result<WasmResult, UserError> {
        answer(
            &mut &*self,
            sender,
            canister_id,
            method,
            arg,
            data_certificate,
        )
    }

    pub fn time(&self) -> u64 {
        self.time
    }

    fn canister(&self, id: &CanisterId) -> Result<&Published, UserError> {
        self.canisters.get(id).ok_or_else(|| not_found(id))
    }
}

/// Where a query call graph finds its canisters.
trait QueryTarget {
    fn config(&self) -> &SubnetConfig;
    /// The canister exists, runs, and exports `method` as a (composite) query.
    fn method_kind(&self, id: &CanisterId, method: &str) -> Result<MethodKind, UserError>;
    /// Runs a plain query on the canister's own instance (the embedder rolls it back).
    fn run_own(
        &mut self,
        id: &CanisterId,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> Result<ExecutionOutcome, UserError>;
    /// An independent copy of the canister's instance, for a composite query's call context.
    fn scratch(&self, id: &CanisterId) -> Result<ExecutionState, UserError>;
    /// Runs one entry point on `exec`, the canister's scratch copy.
    fn run_on(
        &mut self,
        id: &CanisterId,
        exec: &mut ExecutionState,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> ExecutionOutcome;
    fn management(
        &mut self,
        sender: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<WasmResult, UserError>;
}

/// The live state at a time (replicated state is not changed).
struct Live<'a> {
    env: &'a mut ExecutionEnvironment,
    time: u64,
}

impl QueryTarget for Live<'_> {
    fn config(&self) -> &SubnetConfig {
        &self.env.config
    }

    fn method_kind(&self, id: &CanisterId, method: &str) -> Result<MethodKind, UserError> {
        let c = self.env.state.canister(id).ok_or_else(|| not_found(id))?;
        check_running(c)?;
        query_kind(id, c.execution.as_ref().map(|e| &**e.module()), method)
    }

    fn run_own(
        &mut self,
        id: &CanisterId,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> Result<ExecutionOutcome, UserError> {
        let Some(mut exec) = self
            .env
            .state
            .canisters
            .get_mut(id)
            .and_then(|c| c.execution.take())
        else {
            return Err(no_module_error(id));
        };
        let outcome = self.run_on(id, &mut exec, entry, api, limit);
        if let Some(c) = self.env.state.canisters.get_mut(id) {
            c.execution = Some(exec);
        }
        Ok(outcome)
    }

    fn scratch(&self, id: &CanisterId) -> Result<ExecutionState, UserError> {
        match self
            .env
            .state
            .canisters
            .get(id)
            .and_then(|c| c.execution.as_ref())
        {
            Some(e) => e.try_clone(),
            None => Err(no_module_error(id)),
        }
    }

    fn run_on(
        &mut self,
        id: &CanisterId,
        exec: &mut ExecutionState,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> ExecutionOutcome {
        self.env
            .run_wasm(id, exec, entry, api, limit, self.time, false, 0)
    }

    fn management(
        &mut self,
        sender: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<WasmResult, UserError> {
        let state = &self.env.state;
        management::query(
            &self.env.config,
            |id| state.canister(id).map(CanisterFacts::of),
            sender,
            method,
            arg,
        )
    }
}

impl QueryTarget for &QueryState {
    fn config(&self) -> &SubnetConfig {
        &self.config
    }

    fn method_kind(&self, id: &CanisterId, method: &str) -> Result<MethodKind, UserError> {
        let c = &self.canister(id)?.canister;
        c.running.clone()?;
        query_kind(id, c.wasm.as_ref().map(|w| &*w.module), method)
    }

    fn run_own(
        &mut self,
        id: &CanisterId,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> Result<ExecutionOutcome, UserError> {
        let p = self.canister(id)?;
        let wasm = p
            .canister
            .wasm
            .as_ref()
            .ok_or_else(|| no_module_error(id))?;
        // A panic while it ran (a bug) left no other instance; serve on from it.
        let mut instance = wasm.instance.lock().unwrap_or_else(|e| e.into_inner());
        if let Instance::Memories {
            heap,
            stable,
            globals,
        } = &mut *instance
        {
            let built = ExecutionState::from_memories(
                wasm.module.clone(),
                heap,
                std::mem::take(stable),
                globals,
            );
            *instance = match built {
                Ok(exec) => Instance::Ready(exec),
                Err(e) => Instance::Failed(e),
            };
        }
        match &mut *instance {
            Instance::Ready(exec) => Ok(self.run_on(id, exec, entry, api, limit)),
            Instance::Failed(e) => Err(e.clone()),
            Instance::Memories { .. } => unreachable!("built above"),
        }
    }

    fn scratch(&self, id: &CanisterId) -> Result<ExecutionState, UserError> {
        let wasm = self
            .canister(id)?
            .canister
            .wasm
            .as_ref()
            .ok_or_else(|| no_module_error(id))?;
        match &*wasm.instance.lock().unwrap_or_else(|e| e.into_inner()) {
            Instance::Memories {
                heap,
                stable,
                globals,
            } => ExecutionState::from_memories(wasm.module.clone(), heap, stable.clone(), globals),
            Instance::Ready(exec) => exec.try_clone(),
            Instance::Failed(e) => Err(e.clone()),
        }
    }

    fn run_on(
        &mut self,
        id: &CanisterId,
        exec: &mut ExecutionState,
        entry: &EntryPoint,
        api: ApiType,
        limit: u64,
    ) -> ExecutionOutcome {
        let p = &self.canisters[id];
        let view = SystemStateView {
            time: self.time,
            ..p.canister.view.clone()
        };
        let params = ExecutionParameters {
            instruction_limit: limit,
            ..p.params.clone()
        };
        exec.set_env_vars(&p.canister.system.settings.environment_variables);
        crate::hypervisor::execute(exec, entry, api, &view, &params)
    }

    fn management(
        &mut self,
        sender: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<WasmResult, UserError> {
        let canisters = &self.canisters;
        management::query(
            &self.config,
            |id| canisters.get(id).map(|p| p.canister.facts()),
            sender,
            method,
            arg,
        )
    }
}

impl QueryCanister {
    fn facts(&self) -> CanisterFacts<'_> {
        let wasm = self.wasm.as_ref().map(|w| WasmFacts {
            module: &w.module,
            heap: w.heap_len,
            stable: w.stable_len,
            globals: 8 * w.globals_len,
        });
        CanisterFacts {
            system: &self.system,
            memory_usage: self.memory_usage,
            wasm,
        }
    }
}

/// How `method` runs as a query, or the IC's error for a missing module or method.
fn query_kind(
    id: &CanisterId,
    module: Option<&CanisterModule>,
    method: &str,
) -> Result<MethodKind, UserError> {
    let module = module.ok_or_else(|| no_module_error(id))?;
    if module.exports_function(&format!("canister_update {method}")) {
        Err(UserError::new(
            ErrorCode::CanisterMethodNotFound,
            format!("Canister {id} has no query method '{method}'"),
        ))
    } else if module.exports_function(&format!("canister_query {method}")) {
        Ok(MethodKind::Query)
    } else if module.exports_function(&format!("canister_composite_query {method}")) {
        Ok(MethodKind::CompositeQuery)
    } else {
        Err(UserError::new(
            ErrorCode::CanisterMethodNotFound,
            format!("Canister {id} has no update method '{method}'"),
        ))
    }
}

fn not_found(id: &CanisterId) -> UserError {
    UserError::new(
        ErrorCode::CanisterNotFound,
        format!("Canister {id} not found"),
    )
}

// ---- the query call graph ----

/// Bookkeeping for one query call graph.
struct QueryGraph {
    /// Canisters with a query running now (loop detection).
    stack: Vec<CanisterId>,
    instructions: u64,
}

fn answer(
    t: &mut impl QueryTarget,
    sender: Principal,
    canister_id: CanisterId,
    method: &str,
    arg: Vec<u8>,
    data_certificate: Option<Vec<u8>>,
) -> Result<WasmResult, UserError> {
    if canister_id == MANAGEMENT_CANISTER {
        return t.management(sender, method, &arg);
    }
    let kind = t.method_kind(&canister_id, method)?;
    let mut graph = QueryGraph {
        stack: Vec::new(),
        instructions: 0,
    };
    match run_query(
        t,
        &mut graph,
        canister_id,
        sender,
        method,
        arg,
        data_certificate,
        kind,
    )? {
        Some(r) => Ok(r),
        None => Err(UserError::new(
            ErrorCode::CanisterDidNotReply,
            format!("Canister {canister_id} did not produce a response"),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_query(
    t: &mut impl QueryTarget,
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
            ApiType::CompositeQuery {
                caller,
                method: method.into(),
                arg,
                data_certificate,
            },
        ),
        _ => (
            format!("canister_query {method}"),
            ApiType::NonReplicatedQuery {
                caller,
                method: method.into(),
                arg,
                data_certificate,
            },
        ),
    };
    graph.stack.push(id);
    let entry = EntryPoint::Export(entry);
    let result = match kind {
        // The call context (the method and its callbacks) runs on a scratch copy, dropped after.
        MethodKind::CompositeQuery => match t.scratch(&id) {
            Ok(mut scratch) => run_query_graph(t, graph, id, &mut scratch, caller, entry, api),
            Err(e) => Err(e),
        },
        _ => run_query_step(t, graph, &id, None, &entry, api).and_then(|outcome| outcome.result),
    };
    graph.stack.pop();
    result
}

/// Runs a composite query on `exec`, then each call it makes and the callback for its
/// response, in order.
fn run_query_graph(
    t: &mut impl QueryTarget,
    graph: &mut QueryGraph,
    id: CanisterId,
    exec: &mut ExecutionState,
    caller: Principal,
    entry: EntryPoint,
    api: ApiType,
) -> Result<Option<WasmResult>, UserError> {
    let outcome = run_query_step(t, graph, &id, Some(exec), &entry, api)?;
    let mut response = outcome.result?;
    let mut first_error = None;
    let mut pending: VecDeque<OutgoingCall> = outcome.changes.calls.into();
    while let Some(call) = pending.pop_front() {
        let payload = query_call(t, graph, id, &call);
        let (closure, api) = match payload {
            ResponsePayload::Reply(reply) => (
                call.on_reply,
                ApiType::CompositeReplyCallback { caller, reply },
            ),
            ResponsePayload::Reject { code, message, .. } => (
                call.on_reject,
                ApiType::CompositeRejectCallback {
                    caller,
                    code,
                    message,
                },
            ),
        };
        let outcome = run_query_step(
            t,
            graph,
            &id,
            Some(exec),
            &EntryPoint::Closure(closure),
            api,
        )?;
        match outcome.result {
            Ok(r) => {
                if response.is_none() {
                    response = r;
                }
                pending.extend(outcome.changes.calls);
            }
            Err(e) => {
                if let Some(cleanup) = call.on_cleanup {
                    let cleanup = EntryPoint::Closure(cleanup);
                    let _ = run_query_step(
                        t,
                        graph,
                        &id,
                        Some(exec),
                        &cleanup,
                        ApiType::Cleanup { caller },
                    );
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
fn query_call(
    t: &mut impl QueryTarget,
    graph: &mut QueryGraph,
    caller: CanisterId,
    call: &OutgoingCall,
) -> ResponsePayload {
    let callee = call.callee;
    let checked = if graph.stack.len() >= MAX_QUERY_CALL_DEPTH {
        Err(UserError::new(
            ErrorCode::QueryCallGraphTooDeep,
            "Composite query call graph went too deep",
        ))
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
        t.method_kind(&callee, &call.method)
    };
    let kind = match checked {
        Ok(kind) => kind,
        Err(e) => return error_payload(e),
    };
    match run_query(
        t,
        graph,
        callee,
        caller,
        &call.method,
        call.payload.clone(),
        None,
        kind,
    ) {
        Ok(Some(r)) => r.into(),
        Ok(None) => ResponsePayload::Reject {
            code: RejectCode::CanisterError,
            message: format!("Canister {callee} did not produce a response"),
            error_code: Some(ErrorCode::CanisterDidNotReply),
        },
        Err(e) => error_payload(e),
    }
}

/// Runs one entry point of a query within the graph's instruction budget: on `exec` (a
/// composite query's scratch copy) or, without one, on the canister's own instance.
fn run_query_step(
    t: &mut impl QueryTarget,
    graph: &mut QueryGraph,
    id: &CanisterId,
    exec: Option<&mut ExecutionState>,
    entry: &EntryPoint,
    api: ApiType,
) -> Result<ExecutionOutcome, UserError> {
    let left = MAX_QUERY_GRAPH_INSTRUCTIONS.saturating_sub(graph.instructions);
    if left == 0 {
        return Err(UserError::new(
            ErrorCode::QueryCallGraphTotalInstructionLimitExceeded,
            "Composite query exceeded its total instruction limit",
        ));
    }
    let limit = t.config().max_instructions_per_query.min(left);
    let outcome = match exec {
        Some(exec) => t.run_on(id, exec, entry, api, limit),
        None => t.run_own(id, entry, api, limit)?,
    };
    graph.instructions = graph.instructions.saturating_add(outcome.instructions_used);
    Ok(outcome)
}
