//! The live Wasm state of one canister — a wasmi store and instance, its heap, stable memory
//! and mutable globals — and the execution of one entry point on it.
//!
//! What persists is exactly heap, stable memory and mutable globals (as on the IC). Tables
//! cannot change (`table.*` mutations are refused at validation), so an instance rebuilt from
//! those three behaves like the live one; a snapshot/restore round trip is invisible.

use super::instrument::{global_export, MEMORY_EXPORT, RESERVED_PREFIX, START_EXPORT, TABLE_EXPORT};
use super::module::{invalid_wasm, CanisterModule};
use crate::hypervisor::{
    ApiType, EntryPoint, ExecutionOutcome, ExecutionParameters, SystemStateChanges, SystemStateView, WasmResult,
};
use crate::system_api::{
    enforces_wasm_memory_limit, instruction_limit_error, wasm_memory_limit_error, Context, HeapLimiter, HostState,
    StableMemory, SystemApi, WASM_PAGE_SIZE,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tabnet_types::{ErrorCode, UserError};
use wasmi::{Func, Global, Instance, Memory, ResumableCall, ResumableCallOutOfFuel, Store, Table, TrapCode, Val, F32, F64};

/// The value of a mutable global, as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    /// IEEE bits.
    F32(u32),
    F64(u64),
}

impl GlobalValue {
    fn of(val: &Val) -> Option<Self> {
        Some(match val {
            Val::I32(v) => Self::I32(*v),
            Val::I64(v) => Self::I64(*v),
            Val::F32(v) => Self::F32(v.to_bits()),
            Val::F64(v) => Self::F64(v.to_bits()),
            _ => return None,
        })
    }

    fn to_val(self) -> Val {
        match self {
            Self::I32(v) => Val::I32(v),
            Self::I64(v) => Val::I64(v),
            Self::F32(v) => Val::F32(F32::from_bits(v)),
            Self::F64(v) => Val::F64(F64::from_bits(v)),
        }
    }

    fn hash_into(self, h: &mut Sha256) {
        match self {
            Self::I32(v) => h.update([[0u8].as_slice(), &v.to_le_bytes()].concat()),
            Self::I64(v) => h.update([[1u8].as_slice(), &v.to_le_bytes()].concat()),
            Self::F32(v) => h.update([[2u8].as_slice(), &v.to_le_bytes()].concat()),
            Self::F64(v) => h.update([[3u8].as_slice(), &v.to_le_bytes()].concat()),
        }
    }
}

/// Everything needed to rebuild an [`ExecutionState`]: the module as installed, heap, stable
/// memory and mutable globals.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSnapshot {
    #[serde(with = "serde_bytes")]
    pub module: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub heap: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stable: Vec<u8>,
    pub globals: Vec<GlobalValue>,
}

impl std::fmt::Debug for ExecutionSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionSnapshot")
            .field("module", &self.module.len())
            .field("heap", &self.heap.len())
            .field("stable", &self.stable.len())
            .field("globals", &self.globals)
            .finish()
    }
}

/// A canister's instantiated module with its memories.
pub struct ExecutionState {
    module: Arc<CanisterModule>,
    store: Store<HostState>,
    instance: Instance,
    memory: Option<Memory>,
    table: Option<Table>,
    globals: Vec<Global>,
    /// The heap before the running execution (reused between executions).
    heap_before: Vec<u8>,
    /// `heap_before` equals the heap as the last execution left it: the next save needs no
    /// copy. Executions keep it so by writing back (or rolling back) only the pages that differ,
    /// so a query on a large heap costs a comparison, not two copies.
    heap_before_current: bool,
    /// A message paused between slices. Meanwhile heap, stable memory and globals show the
    /// state before the message; its own changes are parked (see [`Self::park`]).
    paused: Option<Box<Paused>>,
    /// Calls the next execution may make ([`Self::limit_calls`]); unbounded when not set.
    calls_allowed: Option<u64>,
    /// The environment variables the next execution sees ([`Self::set_env_vars`]).
    env_vars: Option<Vec<(String, String)>>,
}

/// How (part of) a message's execution ended.
#[derive(Debug)]
pub enum Step {
    Done(ExecutionOutcome),
    /// The slice's fuel ran out with fuel of the message left: the execution waits in the
    /// instance for [`ExecutionState::resume`]. `instructions_used` counts all its slices.
    Paused { instructions_used: u64 },
}

/// What an execution needs from its start to its end.
struct Running {
    context: Context,
    saved: Saved,
    params: ExecutionParameters,
}

/// An execution between two slices.
struct Paused {
    call: ResumableCallOutOfFuel,
    running: Running,
    /// The execution's globals (the instance shows the ones before it).
    globals: Vec<GlobalValue>,
    /// The heap's size before the execution: the heap shown meanwhile.
    heap_len_before: usize,
}

impl std::fmt::Debug for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionState")
            .field("module", &self.module)
            .field("heap", &self.heap_bytes().len())
            .field("stable", &self.stable_bytes().len())
            .finish_non_exhaustive()
    }
}

/// The heap and globals before an execution, to roll back to.
struct Saved {
    globals: Vec<GlobalValue>,
}

// Installation returns the outcome of `(start)` either way (instructions, logs); it is rare,
// so the large `Err` does not matter.
#[allow(clippy::result_large_err)]
impl ExecutionState {
    /// Instantiates `module` with the given stable memory (empty for a fresh canister; the old
    /// one on upgrade) and runs its `(start)` function. `Err` carries the failed start's outcome.
    pub fn new(
        module: Arc<CanisterModule>,
        stable_memory: Vec<u8>,
        sys: &SystemStateView,
        params: &ExecutionParameters,
    ) -> Result<(Self, ExecutionOutcome), ExecutionOutcome> {
        let state = Self::new_unstarted(module, stable_memory, params.wasm_memory_limit).map_err(failed_outcome)?;
        state.start(sys, params)
    }

    /// Instantiates `module` with the given stable memory, its initial heap at most
    /// `heap_limit` bytes, without running `(start)`: the installer runs it with
    /// [`Self::start_sliced`] (time slicing), before `canister_init` / `canister_post_upgrade`.
    pub fn new_unstarted(module: Arc<CanisterModule>, stable_memory: Vec<u8>, heap_limit: u64) -> Result<Self, UserError> {
        let stable = checked_stable_memory(stable_memory)?;
        Self::instantiate(module, stable, heap_limit)
    }

    /// Upgrade with `wasm_memory_persistence = keep`: instantiates `module` with the heap and
    /// stable memory of `old`, then runs `(start)`. Globals start fresh, as the spec says
    /// ("any other WebAssembly state is discarded").
    pub fn new_keeping_heap(
        module: Arc<CanisterModule>,
        old: &ExecutionState,
        sys: &SystemStateView,
        params: &ExecutionParameters,
    ) -> Result<(Self, ExecutionOutcome), ExecutionOutcome> {
        let state = Self::new_unstarted_keeping_heap(module, old, params.wasm_memory_limit).map_err(failed_outcome)?;
        state.start(sys, params)
    }

    /// [`Self::new_keeping_heap`] without running `(start)` (see [`Self::new_unstarted`]).
    pub fn new_unstarted_keeping_heap(module: Arc<CanisterModule>, old: &ExecutionState, heap_limit: u64) -> Result<Self, UserError> {
        if module.is_wasm64() != old.module.is_wasm64() {
            return Err(invalid_wasm(
                "the Wasm memory cannot be kept: the old and the new module differ in memory width (32/64-bit)",
            ));
        }
        let heap = old.heap_bytes();
        if !heap.is_empty() && !module.has_memory() {
            return Err(invalid_wasm("the Wasm memory cannot be kept: the new module has no memory"));
        }
        let stable = StableMemory::new(old.stable_bytes().to_vec());
        let mut state = Self::instantiate(module, stable, heap_limit)?;
        state.load_heap(heap)?;
        Ok(state)
    }

    /// Rebuilds a state from a snapshot, compiling its module. `(start)` does not run.
    pub fn restore(snapshot: ExecutionSnapshot) -> Result<Self, UserError> {
        let module = CanisterModule::new(snapshot.module.as_slice())?;
        Self::restore_with_module(module, snapshot)
    }

    /// Rebuilds a state from a snapshot with an already compiled module (which must be the
    /// snapshot's). `(start)` does not run.
    pub fn restore_with_module(module: Arc<CanisterModule>, snapshot: ExecutionSnapshot) -> Result<Self, UserError> {
        let hash: [u8; 32] = Sha256::digest(&snapshot.module).into();
        if hash != module.wasm_hash() {
            return Err(restore_error("the snapshot was taken with a different module"));
        }
        Self::from_parts(module, &snapshot.heap, snapshot.stable, &snapshot.globals)
    }

    /// An independent copy (e.g. to run a composite query and its callbacks on, then drop).
    pub fn try_clone(&self) -> Result<Self, UserError> {
        Self::from_parts(self.module.clone(), self.heap_bytes(), self.stable_bytes().to_vec(), &self.global_values())
    }

    /// Copies of heap, stable memory and globals, for [`Self::from_memories`]. The heap's
    /// all-zero pages are not written, so they cost no memory.
    pub fn copy_memories(&self) -> (Vec<u8>, Vec<u8>, Vec<GlobalValue>) {
        (copy_of(self.heap_bytes()), self.stable_bytes().to_vec(), self.global_values())
    }

    /// Rebuilds a state from [`Self::copy_memories`] with the same (compiled) module.
    pub fn from_memories(
        module: Arc<CanisterModule>,
        heap: &[u8],
        stable: Vec<u8>,
        globals: &[GlobalValue],
    ) -> Result<Self, UserError> {
        Self::from_parts(module, heap, stable, globals)
    }

    pub fn snapshot(&self) -> ExecutionSnapshot {
        ExecutionSnapshot {
            module: self.module.bytes().to_vec(),
            heap: self.heap_bytes().to_vec(),
            stable: self.stable_bytes().to_vec(),
            globals: self.global_values(),
        }
    }

    pub fn module(&self) -> &Arc<CanisterModule> {
        &self.module
    }

    pub fn is_wasm64(&self) -> bool {
        self.module.is_wasm64()
    }

    pub fn exports_function(&self, name: &str) -> bool {
        self.module.exports_function(name)
    }

    /// The heap; while a message is paused, as it was before the message.
    pub fn heap_bytes(&self) -> &[u8] {
        let heap = self.memory.map_or(&[][..], |m| m.data(&self.store));
        match &self.paused {
            Some(p) => &heap[..p.heap_len_before],
            None => heap,
        }
    }

    /// Bounds the calls (`ic0.call_perform`) of the next execution started on this instance
    /// (by `execute` or `execute_sliced`; it stays bounded through its slices): beyond
    /// `calls_allowed` they fail with 2 (SYS_TRANSIENT), as calls beyond the canister's
    /// outstanding-call quota do. Composite-query calls are not bounded by it.
    pub fn limit_calls(&mut self, calls_allowed: u64) {
        self.calls_allowed = Some(calls_allowed);
    }

    /// The canister's environment variables for the next execution started on this instance
    /// (`ic0.env_var_*`; they stay with it through its slices). They are canister settings,
    /// not Wasm state, so the scheduler hands them over for each execution; none when not set.
    pub fn set_env_vars(&mut self, env_vars: &[(String, String)]) {
        self.env_vars = Some(env_vars.to_vec());
    }

    /// Whether a message is paused between slices.
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    pub fn stable_bytes(&self) -> &[u8] {
        self.store.data().stable.bytes()
    }

    /// The stable memory, e.g. to hand to the new module on upgrade.
    pub fn into_stable_memory(self) -> Vec<u8> {
        self.store.into_data().stable.into_bytes()
    }

    pub fn global_values(&self) -> Vec<GlobalValue> {
        self.globals
            .iter()
            .map(|g| {
                GlobalValue::of(&g.get(&self.store)).expect("persisted globals are numeric (checked at validation)")
            })
            .collect()
    }

    /// Bytes the canister uses: heap, stable memory, globals and the module itself. What a
    /// paused message grew counts too (the node holds it), so that canisters paused at once
    /// cannot each grow into the same free memory.
    pub fn memory_usage(&self) -> u64 {
        let heap = self.memory.map_or(0, |m| m.data_size(&self.store));
        let stable = self.store.data().stable.held_len();
        (heap + stable + 8 * self.globals.len() + self.module.bytes().len()) as u64
    }

    /// SHA-256 over module hash, heap, stable memory and globals: replicas that ran the same
    /// messages agree on it.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tabnet-execution-state-v1");
        h.update(self.module.wasm_hash());
        for part in [self.heap_bytes(), self.stable_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update((self.globals.len() as u64).to_be_bytes());
        for g in self.global_values() {
            g.hash_into(&mut h);
        }
        h.finalize().into()
    }

    // ---- building instances ----

    /// A fresh instance of `module` (no start function run: instrumentation removed it), whose
    /// initial memory may be at most `heap_limit` bytes.
    fn instantiate(module: Arc<CanisterModule>, stable: StableMemory, heap_limit: u64) -> Result<Self, UserError> {
        let mut store = Store::new(module.engine(), HostState::new(stable));
        store.data_mut().limiter.limit = heap_limit;
        store.limiter(|host| &mut host.limiter);
        let instance = module
            .linker()
            .instantiate_and_start(&mut store, module.compiled())
            .map_err(|e| invalid_wasm(format!("instantiation failed: {e}")))?;
        let missing =
            |what: &str| UserError::new(ErrorCode::CanisterWasmEngineError, format!("instrumented {what} not found"));
        let memory = match module.has_memory() {
            true => Some(instance.get_memory(&store, MEMORY_EXPORT).ok_or_else(|| missing("memory"))?),
            false => None,
        };
        let table = match module.has_table() {
            true => Some(instance.get_table(&store, TABLE_EXPORT).ok_or_else(|| missing("table"))?),
            false => None,
        };
        let globals = (0..module.persisted_globals().len())
            .map(|i| instance.get_global(&store, &global_export(i)).ok_or_else(|| missing("global")))
            .collect::<Result<Vec<_>, _>>()?;
        let host = store.data_mut();
        host.memory = memory;
        host.limiter = HeapLimiter::unlimited();
        Ok(Self {
            module,
            store,
            instance,
            memory,
            table,
            globals,
            heap_before: Vec::new(),
            heap_before_current: false,
            paused: None,
            calls_allowed: None,
            env_vars: None,
        })
    }

    fn from_parts(
        module: Arc<CanisterModule>,
        heap: &[u8],
        stable: Vec<u8>,
        globals: &[GlobalValue],
    ) -> Result<Self, UserError> {
        let stable = checked_stable_memory(stable).map_err(|e| restore_error(e.message))?;
        let mut state = Self::instantiate(module, stable, u64::MAX).map_err(|e| restore_error(e.message))?;
        state.load_heap(heap).map_err(|e| restore_error(e.message))?;
        state.load_globals(globals)?;
        Ok(state)
    }

    /// Copies `heap` over the start of the memory, growing the memory to hold it.
    fn load_heap(&mut self, heap: &[u8]) -> Result<(), UserError> {
        let Some(memory) = self.memory else {
            return match heap.is_empty() {
                true => Ok(()),
                false => Err(restore_error("the module has no memory but the heap is not empty")),
            };
        };
        if !(heap.len() as u64).is_multiple_of(WASM_PAGE_SIZE) {
            return Err(restore_error("the heap size is not a multiple of the Wasm page size"));
        }
        let current = memory.data_size(&self.store);
        if heap.len() > current {
            let pages = ((heap.len() - current) as u64) / WASM_PAGE_SIZE;
            memory
                .grow(&mut self.store, pages)
                .map_err(|e| restore_error(format!("cannot grow the memory to {} bytes: {e}", heap.len())))?;
        }
        memory.data_mut(&mut self.store)[..heap.len()].copy_from_slice(heap);
        Ok(())
    }

    fn load_globals(&mut self, values: &[GlobalValue]) -> Result<(), UserError> {
        if values.len() != self.globals.len() {
            return Err(restore_error(format!(
                "the module has {} mutable globals, the snapshot {}",
                self.globals.len(),
                values.len()
            )));
        }
        for (global, value) in self.globals.iter().zip(values) {
            global
                .set(&mut self.store, value.to_val())
                .map_err(|e| restore_error(format!("cannot set a global to {value:?}: {e}")))?;
        }
        Ok(())
    }

    /// Replaces the instance with a fresh one holding the same heap, globals and stable memory.
    fn reinstantiate(&mut self, heap: &[u8], globals: &[GlobalValue]) -> Result<(), UserError> {
        let stable = std::mem::take(&mut self.store.data_mut().stable);
        let mut fresh = Self::instantiate(self.module.clone(), stable, u64::MAX)?;
        fresh.load_heap(heap)?;
        fresh.load_globals(globals)?;
        fresh.heap_before = std::mem::take(&mut self.heap_before);
        *self = fresh;
        Ok(())
    }

    fn start(
        mut self,
        sys: &SystemStateView,
        params: &ExecutionParameters,
    ) -> Result<(Self, ExecutionOutcome), ExecutionOutcome> {
        let outcome = match self.start_sliced(sys, params, u64::MAX) {
            Step::Done(outcome) => outcome,
            Step::Paused { .. } => unreachable!("a slice of the whole limit does not pause"),
        };
        match outcome.result {
            Ok(_) => Ok((self, outcome)),
            Err(_) => Err(outcome),
        }
    }

    /// Whether the module has a `(start)` function (which instantiation did not run).
    pub fn has_start(&self) -> bool {
        self.module.has_start()
    }

    /// Runs the module's `(start)` function (in the `Start` context) for at most `slice`
    /// instructions, as [`Self::execute_sliced`] runs an export: instrumentation turned it into
    /// an exported function, so it is an ordinary resumable call and pauses like any message.
    /// A module without one is done at once, having used nothing.
    pub fn start_sliced(&mut self, sys: &SystemStateView, params: &ExecutionParameters, slice: u64) -> Step {
        if self.paused.is_some() {
            let e = UserError::new(ErrorCode::CanisterWasmEngineError, "the canister has a paused execution");
            return Step::Done(failed_outcome(e));
        }
        if !self.module.has_start() {
            return Step::Done(ExecutionOutcome {
                result: Ok(None),
                instructions_used: 0,
                changes: SystemStateChanges::default(),
                logs: Vec::new(),
            });
        }
        match self.instance.get_func(&self.store, START_EXPORT) {
            Some(start) => {
                // `(start)` may not read the environment (spec: env_var_* are not allowed there).
                self.calls_allowed = None;
                self.env_vars = None;
                self.run(start, &[], ApiType::Start, sys, params, slice)
            }
            None => Step::Done(failed_outcome(UserError::new(ErrorCode::CanisterWasmEngineError, "instrumented start not found"))),
        }
    }

    // ---- execution ----

    /// Runs one entry point under one context to its end. On failure (and always for queries
    /// and inspect_message) heap, stable memory and globals are rolled back. On an instance
    /// with a paused message it runs on a copy of the state before that message (queries).
    pub fn execute(
        &mut self,
        entry: &EntryPoint,
        api: ApiType,
        sys: &SystemStateView,
        params: &ExecutionParameters,
    ) -> ExecutionOutcome {
        if self.paused.is_some() {
            if !matches!(Context::of(&api), Context::NonReplicatedQuery | Context::CompositeQuery | Context::InspectMessage) {
                let e = UserError::new(ErrorCode::CanisterWasmEngineError, "the canister has a paused execution");
                return failed_outcome(e);
            }
            return match self.try_clone() {
                Ok(mut scratch) => {
                    scratch.env_vars = self.env_vars.take();
                    scratch.execute(entry, api, sys, params)
                }
                Err(e) => failed_outcome(e),
            };
        }
        match self.execute_sliced(entry, api, sys, params, u64::MAX) {
            Step::Done(outcome) => outcome,
            Step::Paused { .. } => unreachable!("a slice of the whole limit does not pause"),
        }
    }

    /// Runs one entry point for at most `slice` instructions: it ends, or pauses to be resumed
    /// with further slices (deterministic time slicing: the pause falls on the same instruction
    /// on every replica, being counted in fuel).
    pub fn execute_sliced(
        &mut self,
        entry: &EntryPoint,
        api: ApiType,
        sys: &SystemStateView,
        params: &ExecutionParameters,
        slice: u64,
    ) -> Step {
        // The bound and variables set for this execution, if any, go with it (and no further).
        let calls_allowed = self.calls_allowed.take().unwrap_or(u64::MAX);
        let env_vars = self.env_vars.take();
        if self.paused.is_some() {
            let e = UserError::new(ErrorCode::CanisterWasmEngineError, "the canister has a paused execution");
            return Step::Done(failed_outcome(e));
        }
        if self.module.fresh_instance_per_execution() {
            let (heap, globals) = (self.heap_bytes().to_vec(), self.global_values());
            if let Err(e) = self.reinstantiate(&heap, &globals) {
                return Step::Done(failed_outcome(e));
            }
        }
        // Resolve after any re-instantiation: functions belong to their store.
        let (func, args) = match self.resolve(entry, sys) {
            Ok(found) => found,
            Err(e) => return Step::Done(failed_outcome(e)),
        };
        // (Re-instantiation made a new `self`: the bound goes on to it here.)
        self.calls_allowed = Some(calls_allowed);
        self.env_vars = env_vars;
        self.run(func, &args, api, sys, params, slice)
    }

    /// Gives the paused message another `slice` of instructions (of those its limit has left).
    pub fn resume(&mut self, slice: u64) -> Step {
        let Some(paused) = self.paused.take() else {
            return Step::Done(failed_outcome(UserError::new(ErrorCode::CanisterWasmEngineError, "no paused execution")));
        };
        let Paused { call, running, globals, heap_len_before } = *paused;
        if let Err(e) = self.unpark(&globals, heap_len_before) {
            return Step::Done(self.finish(Err(e), running));
        }
        let host = self.store.data_mut();
        let take = slice.min(host.fuel_reserve);
        host.fuel_reserve -= take;
        let fuel = self.store.get_fuel().unwrap_or(0).saturating_add(take);
        let result = self.store.set_fuel(fuel).and_then(|()| call.resume(&mut self.store, &mut []));
        self.after_slice(result, running)
    }

    /// Drops a paused message: the instance is as it was before it (the scheduler starts the
    /// message again later, from the beginning).
    pub fn abort_paused(&mut self) -> Result<(), UserError> {
        let Some(paused) = self.paused.take() else { return Ok(()) };
        let Paused { call, running, heap_len_before, .. } = *paused;
        drop(call);
        let host = self.store.data_mut();
        host.stable.discard_parked();
        host.api = None;
        host.limiter = HeapLimiter::unlimited();
        host.fuel_reserve = 0;
        match self.memory {
            Some(memory) if memory.data_size(&self.store) != heap_len_before => {
                // The message grew the memory; memories cannot shrink, so rebuild the instance.
                let heap = memory.data(&self.store)[..heap_len_before].to_vec();
                let result = self.reinstantiate(&heap, &running.saved.globals);
                self.heap_before = heap;
                self.heap_before_current = result.is_ok();
                result
            }
            Some(memory) => {
                // The heap shows the state before; `heap_before` held the parked pages.
                copy_changed_pages(&mut self.heap_before, memory.data(&self.store));
                self.heap_before_current = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn run(
        &mut self,
        func: Func,
        args: &[Val],
        api: ApiType,
        sys: &SystemStateView,
        params: &ExecutionParameters,
        slice: u64,
    ) -> Step {
        let context = Context::of(&api);
        let calls_allowed = self.calls_allowed.take().unwrap_or(u64::MAX);
        let env_vars = self.env_vars.take().unwrap_or_default();
        let saved = self.save();
        let first = slice.min(params.instruction_limit);
        let host = self.store.data_mut();
        host.stable.begin();
        host.api =
            Some(SystemApi::new(api, sys.clone(), params.clone()).with_calls_allowed(calls_allowed).with_env_vars(env_vars));
        host.limiter = HeapLimiter { limit: params.wasm_memory_limit, exceeded: None };
        host.fuel_reserve = params.instruction_limit - first;
        let result = self.store.set_fuel(first).and_then(|()| func.call_resumable(&mut self.store, args, &mut []));
        self.after_slice(result, Running { context, saved, params: params.clone() })
    }

    /// Instructions the running execution used: its limit minus the fuel it has left.
    fn instructions_used(&self, params: &ExecutionParameters) -> u64 {
        let left = self.store.get_fuel().unwrap_or(0).saturating_add(self.store.data().fuel_reserve);
        params.instruction_limit.saturating_sub(left)
    }

    fn after_slice(&mut self, result: Result<ResumableCall, wasmi::Error>, running: Running) -> Step {
        let result = match result {
            Ok(ResumableCall::Finished) => Ok(()),
            Ok(ResumableCall::HostTrap(trap)) => Err(classify_error(trap.into_host_error(), &running.params)),
            Ok(ResumableCall::OutOfFuel(call)) if self.store.data().fuel_reserve > 0 => {
                let instructions_used = self.instructions_used(&running.params);
                return match self.park(call, running) {
                    Ok(()) => Step::Paused { instructions_used },
                    Err((e, running)) => Step::Done(self.finish(Err(e), running)),
                };
            }
            Ok(ResumableCall::OutOfFuel(_)) => Err(instruction_limit_error(running.params.instruction_limit)),
            Err(e) => Err(classify_error(e, &running.params)),
        };
        Step::Done(self.finish(result, running))
    }

    /// Pauses: the heap pages, stable pages and globals the execution changed trade places
    /// with their copies from before it, so that everything reading the instance meanwhile
    /// (state hash, persistence, checkpoints, queries) sees the state before the message.
    #[allow(clippy::type_complexity)]
    fn park(&mut self, call: ResumableCallOutOfFuel, running: Running) -> Result<(), (UserError, Running)> {
        let globals = self.global_values();
        if let Err(e) = self.load_globals(&running.saved.globals) {
            return Err((e, running));
        }
        let heap_len_before = self.heap_before.len();
        if let Some(memory) = self.memory {
            let heap = memory.data_mut(&mut self.store);
            swap_changed_pages(&mut heap[..heap_len_before], &mut self.heap_before);
        }
        self.store.data_mut().stable.swap_undo();
        self.paused = Some(Box::new(Paused { call, running, globals, heap_len_before }));
        Ok(())
    }

    /// Undoes [`Self::park`] before the next slice.
    fn unpark(&mut self, globals: &[GlobalValue], heap_len_before: usize) -> Result<(), UserError> {
        if let Some(memory) = self.memory {
            let heap = memory.data_mut(&mut self.store);
            swap_changed_pages(&mut heap[..heap_len_before], &mut self.heap_before);
        }
        self.store.data_mut().stable.swap_undo();
        self.load_globals(globals)
    }

    /// Ends an execution: reports its outcome, keeping or rolling back what it changed.
    fn finish(&mut self, result: Result<(), UserError>, running: Running) -> ExecutionOutcome {
        let Running { context, saved, params } = running;
        let instructions_used = self.instructions_used(&params);
        let host = self.store.data_mut();
        host.fuel_reserve = 0;
        let api = host.api.take();
        let exceeded = std::mem::replace(&mut host.limiter, HeapLimiter::unlimited()).exceeded;
        let Some(api) = api else {
            let e = UserError::new(ErrorCode::CanisterWasmEngineError, "the System API state disappeared");
            return self.fail(e, saved, instructions_used, Vec::new());
        };
        match result {
            Err(mut error) => {
                let mut api = api;
                // A trap after `memory.grow` failed at `wasm_memory_limit` is that limit's
                // fault, and the IC reports it so (IC0539); the trap itself goes to the log.
                if let Some(requested) = exceeded.filter(|_| enforces_wasm_memory_limit(context)) {
                    if matches!(error.code, ErrorCode::CanisterTrapped | ErrorCode::CanisterCalledTrap) {
                        api.log_error(&error);
                        error = wasm_memory_limit_error(params.wasm_memory_limit, requested);
                    }
                }
                // wasmi stops with fuel left that the next instruction needed: all was used.
                let instructions_used = match error.code {
                    ErrorCode::CanisterInstructionLimitExceeded => params.instruction_limit,
                    _ => instructions_used,
                };
                let logs = api.finish_with_error(&error);
                self.fail(error, saved, instructions_used, logs)
            }
            Ok(()) => {
                let done = api.finish();
                if matches!(context, Context::ReplicatedQuery | Context::NonReplicatedQuery | Context::InspectMessage) {
                    if let Err(e) = self.rollback(saved) {
                        return failed_outcome(e);
                    }
                } else {
                    self.store.data_mut().stable.commit();
                    self.remember_heap();
                }
                let result = match context {
                    // inspect_message answers whether it accepted the message.
                    Context::InspectMessage => done.message_accepted.then(|| WasmResult::Reply(Vec::new())),
                    _ => done.response,
                };
                ExecutionOutcome { result: Ok(result), instructions_used, changes: done.changes, logs: done.logs }
            }
        }
    }

    fn fail(
        &mut self,
        error: UserError,
        saved: Saved,
        instructions_used: u64,
        logs: Vec<crate::hypervisor::LogRecord>,
    ) -> ExecutionOutcome {
        let error = match self.rollback(saved) {
            Ok(()) => error,
            Err(e) => e,
        };
        ExecutionOutcome { result: Err(error), instructions_used, changes: SystemStateChanges::default(), logs }
    }

    /// Remembers heap (in `heap_before`) and globals.
    fn save(&mut self) -> Saved {
        if !self.heap_before_current || self.heap_before.len() != self.heap_bytes().len() {
            self.heap_before = copy_of(self.heap_bytes());
            self.heap_before_current = true;
        }
        Saved { globals: self.global_values() }
    }

    /// After a committed execution: `heap_before` takes the heap's changed pages.
    fn remember_heap(&mut self) {
        let heap = self.memory.map_or(&[][..], |m| m.data(&self.store));
        if heap.len() == self.heap_before.len() {
            copy_changed_pages(&mut self.heap_before, heap);
        } else {
            self.heap_before = copy_of(heap);
        }
        self.heap_before_current = true;
    }

    /// Puts back heap, globals and stable memory as they were at `save`.
    fn rollback(&mut self, saved: Saved) -> Result<(), UserError> {
        self.store.data_mut().stable.rollback();
        match self.memory {
            Some(memory) if memory.data_size(&self.store) != self.heap_before.len() => {
                // The memory grew; memories cannot shrink, so rebuild the instance.
                let heap = std::mem::take(&mut self.heap_before);
                let result = self.reinstantiate(&heap, &saved.globals);
                self.heap_before = heap;
                self.heap_before_current = result.is_ok();
                result
            }
            Some(memory) => {
                copy_changed_pages(memory.data_mut(&mut self.store), &self.heap_before);
                self.load_globals(&saved.globals)
            }
            None => self.load_globals(&saved.globals),
        }
    }

    /// The function to call for `entry`, with its arguments.
    fn resolve(&self, entry: &EntryPoint, sys: &SystemStateView) -> Result<(Func, Vec<Val>), UserError> {
        match entry {
            EntryPoint::Export(name) => {
                let func = (!name.starts_with(RESERVED_PREFIX))
                    .then(|| self.instance.get_func(&self.store, name))
                    .flatten()
                    .ok_or_else(|| method_not_found(name, sys))?;
                Ok((func, Vec::new()))
            }
            EntryPoint::Closure(closure) => {
                let trapped =
                    |what: String| UserError::new(ErrorCode::CanisterTrapped, format!("Canister trapped: {what}"));
                let table =
                    self.table.ok_or_else(|| trapped("the module has no table for callback functions".into()))?;
                let func = match table.get(&self.store, closure.func) {
                    None => return Err(trapped(format!("table out of bounds (callback function {})", closure.func))),
                    Some(r) => match r.as_func().and_then(|f| f.val().map(|f| **f)) {
                        Some(func) => func,
                        None => {
                            return Err(trapped(format!("uninitialized table element {} (callback)", closure.func)))
                        }
                    },
                };
                let env =
                    if self.module.is_wasm64() { Val::I64(closure.env as i64) } else { Val::I32(closure.env as i32) };
                let ty = func.ty(&self.store);
                if ty.params() != [env.ty()] || !ty.results().is_empty() {
                    return Err(trapped(format!(
                        "indirect call type mismatch (callback function {} must take one {:?} and return nothing)",
                        closure.func,
                        env.ty()
                    )));
                }
                Ok((func, vec![env]))
            }
        }
    }
}

fn checked_stable_memory(bytes: Vec<u8>) -> Result<StableMemory, UserError> {
    if !(bytes.len() as u64).is_multiple_of(WASM_PAGE_SIZE) {
        return Err(restore_error("the stable memory size is not a multiple of the Wasm page size"));
    }
    Ok(StableMemory::new(bytes))
}

fn restore_error(detail: impl std::fmt::Display) -> UserError {
    UserError::new(ErrorCode::CanisterWasmEngineError, format!("cannot rebuild the canister's Wasm state: {detail}"))
}

fn failed_outcome(e: UserError) -> ExecutionOutcome {
    ExecutionOutcome { result: Err(e), instructions_used: 0, changes: SystemStateChanges::default(), logs: Vec::new() }
}

fn method_not_found(export: &str, sys: &SystemStateView) -> UserError {
    let id = sys.canister_id;
    let message = if let Some(m) = export.strip_prefix("canister_update ") {
        format!("Canister {id} has no update method '{m}'")
    } else if let Some(m) = export.strip_prefix("canister_query ") {
        format!("Canister {id} has no query method '{m}'")
    } else if let Some(m) = export.strip_prefix("canister_composite_query ") {
        format!("Canister {id} has no composite query method '{m}'")
    } else {
        format!("Canister {id} does not export the function '{export}'")
    };
    UserError::new(ErrorCode::CanisterMethodNotFound, message)
}

/// The IC error for a failed execution.
fn classify_error(e: wasmi::Error, params: &ExecutionParameters) -> UserError {
    if let Some(host) = e.downcast_ref::<crate::system_api::HostTrap>() {
        return host.0.clone();
    }
    let trapped = |what: &str| UserError::new(ErrorCode::CanisterTrapped, format!("Canister trapped: {what}"));
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => instruction_limit_error(params.instruction_limit),
        Some(TrapCode::GrowthOperationLimited) => trapped("memory growth limited"),
        Some(TrapCode::UnreachableCodeReached) => trapped("unreachable"),
        Some(TrapCode::MemoryOutOfBounds) => trapped("heap out of bounds"),
        Some(TrapCode::TableOutOfBounds) => trapped("table out of bounds"),
        Some(TrapCode::IndirectCallToNull) => trapped("indirect call to uninitialized table element"),
        Some(TrapCode::IntegerDivisionByZero) => trapped("integer division by 0"),
        Some(TrapCode::IntegerOverflow) => trapped("integer overflow"),
        Some(TrapCode::BadConversionToInteger) => trapped("invalid conversion to integer"),
        Some(TrapCode::StackOverflow) => trapped("stack overflow"),
        Some(TrapCode::BadSignature) => trapped("indirect call type mismatch"),
        Some(TrapCode::OutOfSystemMemory) => trapped("out of memory"),
        None => trapped(&e.to_string()),
    }
}

/// A copy of a heap that writes only its non-zero pages: the zeroed allocation's untouched
/// pages cost no memory, and most of a young canister's heap is zeros.
fn copy_of(heap: &[u8]) -> Vec<u8> {
    let mut copy = vec![0u8; heap.len()];
    copy_changed_pages(&mut copy, heap);
    copy
}

/// Swaps the 4 KiB pages that differ between `a` and `b` (same length).
fn swap_changed_pages(a: &mut [u8], b: &mut [u8]) {
    const PAGE: usize = 4096;
    for (x, y) in a.chunks_mut(PAGE).zip(b.chunks_mut(PAGE)) {
        if !tabnet_types::same_bytes(x, y) {
            x.swap_with_slice(y);
        }
    }
}

/// Makes `dst` equal to `src` (same length), writing only the 4 KiB pages that differ.
///
/// Except in wasm32 (a tab), where it copies all: there the copy is one `memory.copy`, at
/// memcpy speed, while comparing pages is a loop of wasm instructions that took a quarter of a
/// tab's CPU answering queries (each query's heap restored) and a twelfth under updates; and
/// a page written needlessly costs a tab nothing it had not already.
fn copy_changed_pages(dst: &mut [u8], src: &[u8]) {
    if cfg!(target_arch = "wasm32") {
        dst.copy_from_slice(src);
        return;
    }
    const PAGE: usize = 4096;
    for (d, s) in dst.chunks_mut(PAGE).zip(src.chunks(PAGE)) {
        if !tabnet_types::same_bytes(d, s) {
            d.copy_from_slice(s);
        }
    }
}
