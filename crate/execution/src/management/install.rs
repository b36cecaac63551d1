//! `install_code`: install, reinstall and upgrade, in slices like long messages (deterministic
//! time slicing, as on the IC).
//!
//! The hooks — `canister_pre_upgrade` (on a copy of the old instance), the new module's
//! `(start)`, then `canister_init` or `canister_post_upgrade` — run one after the other with
//! one instruction budget for the whole install (`max_instructions_per_install_code`), in
//! slices of `slice_instructions`: at most one slice per round, so that a long install holds
//! up no round for longer than a slice. The new Wasm state is built aside and replaces the old
//! one only when every hook succeeded; a trap anywhere (or the limit) leaves the canister as it
//! was. The caller gets its reply or reject when the install ends.
//!
//! What is replicated is the [`LongInstall`] record (the install's arguments and how many
//! slices it was given); the state built aside ([`InstallProgress`]) lives only in memory. A
//! replica that lost it (a restart from its stored state) runs the install again, slice by
//! slice, to where every other replica paused it ([`catch_up`]); at a checkpoint every replica
//! drops it and starts the install over ([`abort`]), so no checkpoint holds a half-built
//! instance.

// The embedder hands back whole failed outcomes (logs, instructions) as `Err`.
#![allow(clippy::result_large_err)]

use super::types::{CanisterInstallMode, InstallCodeArgs, WasmMemoryPersistence};
use super::{controlled_canister, empty_reply};
use crate::hypervisor::{ApiType, CanisterModule, EntryPoint, ExecutionOutcome, ExecutionParameters, ExecutionState, LogRecord, Step};
use crate::scheduler::{error_payload, no_module_error, ExecutionEnvironment};
use crate::state::{CallOrigin, ChangeDetails, DeploymentMode, InstallMode, LongInstall, ResponsePayload};
use std::sync::Arc;
use tabnet_types::{CanisterId, ErrorCode, Principal, UserError, MANAGEMENT_CANISTER};

/// Checks an `install_code`, takes its prepayment, records it on the canister and runs its
/// first slice. `Ok`: the install answers `origin` itself, when it ends (possibly already).
pub(super) fn install_code(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    refund: u128,
    sender: Principal,
    args: InstallCodeArgs,
) -> Result<(), UserError> {
    let id = args.canister_id;
    let c = controlled_canister(env, sender, &id)?;
    match args.mode {
        CanisterInstallMode::Install if c.execution.is_some() => {
            return Err(UserError::new(
                ErrorCode::CanisterNonEmpty,
                format!("Canister {id} cannot be installed because the canister is not empty. Try installing with mode='reinstall' instead."),
            ));
        }
        CanisterInstallMode::Upgrade(_) if c.execution.is_none() => return Err(no_module_error(&id)),
        _ => {}
    }
    let limit = env.config.max_instructions_per_install_code;
    let out_of_cycles = |e: UserError| UserError::new(e.code, format!("Canister installation failed with `{}`", e.message));
    // Before compiling: a canister that cannot pay does not get a module compiled.
    env.check_can_pay(c, env.prepayment(c, limit)).map_err(out_of_cycles)?;

    let module = CanisterModule::new(args.wasm_module.as_slice())
        .map_err(|e| UserError::new(e.code, format!("Error from Canister {id}: {}", e.message)))?;
    let mode = match args.mode {
        CanisterInstallMode::Install => InstallMode::Install { reinstall: false },
        CanisterInstallMode::Reinstall => InstallMode::Install { reinstall: true },
        CanisterInstallMode::Upgrade(options) => {
            let options = options.unwrap_or_default();
            let old = c.execution.as_ref().ok_or_else(|| no_module_error(&id))?;
            check_memory_persistence(old.module(), &module, options.wasm_memory_persistence)?;
            InstallMode::Upgrade {
                skip_pre_upgrade: options.skip_pre_upgrade.unwrap_or(false),
                keep_heap: options.wasm_memory_persistence == Some(WasmMemoryPersistence::Keep),
            }
        }
    };
    // Execution is paid for up front at the new module's rate (wasm64 costs more); what the
    // install does not use goes back when it ends.
    let wasm64 = module.is_wasm64();
    let prepaid = env.config.cycles.execution_cost(limit, wasm64);
    env.check_can_pay(c, prepaid).map_err(out_of_cycles)?;
    let record = LongInstall {
        origin: origin.clone(),
        refund,
        caller: sender,
        mode,
        module: args.wasm_module,
        arg: args.arg,
        sys: env.view(c, env.time(), true),
        params: env.params(c, wasm64, limit, env.config.max_reply_bytes),
        wasm64,
        prepaid,
        slices: 0,
        instructions_used: 0,
        sender_canister_version: args.sender_canister_version,
    };
    let c = env.state.canister_mut(&id).expect("checked above");
    let paid = c.system.withdraw(prepaid);
    debug_assert!(paid, "check_can_pay checked the balance");
    c.system.long_install = Some(Box::new(record));
    run_slice(env, &id, Some(module));
    Ok(())
}

/// The state an install builds aside, between its slices. Not replicated: a replica that lost
/// it rebuilds it with [`catch_up`].
pub(crate) struct InstallProgress {
    module: Arc<CanisterModule>,
    stage: Stage,
    /// Instructions of the hooks that ended.
    consumed: u64,
    /// The running hook: instructions it used up to its pause, and the fuel it was given (what
    /// it leaves of that when it ends goes on to the next hook, in the same slice).
    running_used: u64,
    running_given: u64,
    /// Logs of the hooks that ended; they reach the canister's log when the install ends.
    logs: Vec<LogRecord>,
    new_certified_data: Option<Vec<u8>>,
    new_global_timer: Option<u64>,
}

/// Where an install stands; each instance either has not started its hook yet or is paused in it.
enum Stage {
    /// `canister_pre_upgrade` runs on a copy of the old instance.
    PreUpgrade(ExecutionState),
    /// The new instance, its `(start)` to run.
    Start(ExecutionState),
    /// The new instance, `canister_init` or `canister_post_upgrade` to run.
    Hook(ExecutionState),
    /// Between stages (only while one is being replaced).
    Moving,
}

impl InstallProgress {
    /// The install's first stage: a copy of the old instance for `canister_pre_upgrade`, or the
    /// new instance (for an upgrade that skips it: built from the old one).
    fn begin(r: &LongInstall, module: Arc<CanisterModule>, old: Option<&ExecutionState>) -> Result<Self, UserError> {
        let heap_limit = r.params.wasm_memory_limit;
        let stage = match r.mode {
            InstallMode::Install { .. } => Stage::Start(ExecutionState::new_unstarted(module.clone(), Vec::new(), heap_limit)?),
            InstallMode::Upgrade { skip_pre_upgrade, keep_heap } => {
                let old = old.ok_or_else(|| no_module_error(&r.sys.canister_id))?;
                if !skip_pre_upgrade && old.exports_function("canister_pre_upgrade") {
                    Stage::PreUpgrade(old.try_clone()?)
                } else if keep_heap {
                    Stage::Start(ExecutionState::new_unstarted_keeping_heap(module.clone(), old, heap_limit)?)
                } else {
                    Stage::Start(ExecutionState::new_unstarted(module.clone(), old.stable_bytes().to_vec(), heap_limit)?)
                }
            }
        };
        Ok(Self {
            module,
            stage,
            consumed: 0,
            running_used: 0,
            running_given: 0,
            logs: Vec::new(),
            new_certified_data: None,
            new_global_timer: None,
        })
    }

    /// Instructions the install used so far.
    fn instructions_used(&self) -> u64 {
        self.consumed.saturating_add(self.running_used)
    }

    /// Memory the state built aside holds (it counts toward the subnet's memory).
    pub(crate) fn memory_usage(&self) -> u64 {
        match &self.stage {
            Stage::PreUpgrade(e) | Stage::Start(e) | Stage::Hook(e) => e.memory_usage(),
            Stage::Moving => 0,
        }
    }

    /// Gives the install one slice of `slice` instructions: its hooks run on from where they
    /// paused, one after the other, until the slice is used up (`Ok(None)`: paused) or the
    /// last hook ended (`Ok(Some)`: the new instance). A hook that ends within the slice leaves
    /// the rest of it to the next one; a hook is never started with nothing left of the slice.
    /// Deterministic: the same slices bring every replica to the same instruction.
    /// `env_vars`: the canister's environment variables, which its hooks see (settings do
    /// not change while an install runs: management calls about the canister wait).
    fn advance(&mut self, r: &LongInstall, slice: u64, env_vars: &[(String, String)]) -> Result<Option<ExecutionState>, UserError> {
        let limit = r.params.instruction_limit;
        let mut fuel = slice;
        loop {
            let (exec, entry) = match &mut self.stage {
                Stage::PreUpgrade(e) => (e, Some("canister_pre_upgrade")),
                Stage::Start(e) => (e, None),
                Stage::Hook(e) => (e, Some(hook_of(r.mode))),
                Stage::Moving => unreachable!("a stage is always in place between slices"),
            };
            let exists = match entry {
                Some(name) => exec.exports_function(name),
                None => exec.has_start(),
            };
            if exists {
                if fuel == 0 && !exec.is_paused() {
                    return Ok(None);
                }
                let step = if exec.is_paused() {
                    exec.resume(fuel)
                } else {
                    let params = ExecutionParameters { instruction_limit: limit.saturating_sub(self.consumed), ..r.params.clone() };
                    match entry {
                        Some(name) => {
                            exec.set_env_vars(env_vars);
                            exec.execute_sliced(&EntryPoint::Export(name.into()), api_of(r, name), &r.sys, &params, fuel)
                        }
                        None => exec.start_sliced(&r.sys, &params, fuel),
                    }
                };
                self.running_given = self.running_given.saturating_add(fuel);
                match step {
                    Step::Paused { instructions_used } => {
                        self.running_used = instructions_used;
                        return Ok(None);
                    }
                    Step::Done(outcome) => {
                        fuel = self.running_given.saturating_sub(outcome.instructions_used);
                        self.running_given = 0;
                        self.running_used = 0;
                        self.account(outcome, limit)?;
                    }
                }
            }
            // The stage ended (or had nothing to run): on to the next.
            self.stage = match std::mem::replace(&mut self.stage, Stage::Moving) {
                Stage::PreUpgrade(old) => {
                    let heap_limit = r.params.wasm_memory_limit;
                    let new = match r.mode {
                        InstallMode::Upgrade { keep_heap: true, .. } => {
                            ExecutionState::new_unstarted_keeping_heap(self.module.clone(), &old, heap_limit)?
                        }
                        _ => ExecutionState::new_unstarted(self.module.clone(), old.into_stable_memory(), heap_limit)?,
                    };
                    Stage::Start(new)
                }
                Stage::Start(new) => Stage::Hook(new),
                Stage::Hook(new) => return Ok(Some(new)),
                Stage::Moving => unreachable!(),
            };
        }
    }

    /// Counts a hook's instructions, keeps its logs and system changes; its error, if any.
    fn account(&mut self, outcome: ExecutionOutcome, limit: u64) -> Result<(), UserError> {
        self.consumed = self.consumed.saturating_add(outcome.instructions_used);
        self.logs.extend(outcome.logs);
        if let Err(e) = outcome.result {
            // The limit is the whole install's, not what the hook had left of it.
            return Err(match e.code {
                ErrorCode::CanisterInstructionLimitExceeded => crate::system_api::instruction_limit_error(limit),
                _ => e,
            });
        }
        if let Some(d) = outcome.changes.new_certified_data {
            self.new_certified_data = Some(d);
        }
        if let Some(t) = outcome.changes.new_global_timer {
            self.new_global_timer = Some(t);
        }
        Ok(())
    }
}

fn hook_of(mode: InstallMode) -> &'static str {
    match mode {
        InstallMode::Install { .. } => "canister_init",
        InstallMode::Upgrade { .. } => "canister_post_upgrade",
    }
}

fn api_of(r: &LongInstall, hook: &str) -> ApiType {
    let caller = r.caller;
    match hook {
        "canister_pre_upgrade" => ApiType::PreUpgrade { caller },
        "canister_init" => ApiType::Init { caller, arg: r.arg.clone() },
        _ => ApiType::PostUpgrade { caller, arg: r.arg.clone() },
    }
}

/// Runs the next slice of the canister's install (its first, or the next after a pause or an
/// abort), counting it against the round; ends the install if it ended. `module`: the new
/// module, when already compiled.
pub(crate) fn run_slice(env: &mut ExecutionEnvironment, id: &CanisterId, module: Option<Arc<CanisterModule>>) {
    let Some(c) = env.state.canister_mut(id) else { return };
    let Some(mut record) = c.system.long_install.take() else { return };
    let progress = match c.install.take() {
        Some(p) => Ok(p),
        None => start(&record, module, c.execution.as_ref()).map(Box::new),
    };
    let mut progress = match progress {
        Ok(p) => p,
        Err(e) => return finish(env, id, *record, None, Err(e)),
    };
    let env_vars = &env.state.canisters[id].system.settings.environment_variables;
    let result = progress.advance(&record, env.slice_instructions.max(1), env_vars);
    record.slices += 1;
    let used = progress.instructions_used();
    env.count_round_instructions(used.saturating_sub(record.instructions_used));
    record.instructions_used = used;
    match result {
        Ok(None) => {
            let c = env.state.canister_mut(id).expect("the canister exists while it installs");
            c.system.long_install = Some(record);
            c.install = Some(progress);
        }
        done => finish(env, id, *record, Some(*progress), done),
    }
}

/// The install's state built anew from its start (compiling the module unless given).
fn start(r: &LongInstall, module: Option<Arc<CanisterModule>>, old: Option<&ExecutionState>) -> Result<InstallProgress, UserError> {
    let module = match module {
        Some(m) => m,
        None => CanisterModule::new(r.module.as_slice())?,
    };
    InstallProgress::begin(r, module, old)
}

/// Rebuilds the state of an install that paused on every replica but was lost here (a
/// restart): runs it again from its start with the same slices, to the same instruction. Not
/// counted against the round (the other replicas counted those slices when they ran them).
pub(crate) fn catch_up(env: &mut ExecutionEnvironment, id: &CanisterId) {
    let slice = env.slice_instructions.max(1);
    let Some(c) = env.state.canister_mut(id) else { return };
    let Some(record) = c.system.long_install.take() else { return };
    let mut result = Ok(None);
    let mut progress = start(&record, None, c.execution.as_ref());
    if let Ok(p) = progress.as_mut() {
        for _ in 0..record.slices {
            result = p.advance(&record, slice, &c.system.settings.environment_variables);
            if !matches!(result, Ok(None)) {
                break;
            }
        }
    }
    match (progress, result) {
        (Ok(p), Ok(None)) => {
            let c = env.state.canister_mut(id).expect("listed canister exists");
            c.system.long_install = Some(record);
            c.install = Some(Box::new(p));
        }
        // It cannot end before the point where every replica paused it (the same slices); if
        // it did anyway, it ends here.
        (Ok(p), done) => finish(env, id, *record, Some(p), done),
        (Err(e), _) => finish(env, id, *record, None, Err(e)),
    }
}

/// Drops the state an install built aside: it starts over from its beginning in a later round
/// (the caller still waits; the prepayment stays taken). For checkpoints, as
/// `abort_paused_executions` does with messages.
pub(crate) fn abort(env: &mut ExecutionEnvironment, id: &CanisterId) {
    let Some(c) = env.state.canister_mut(id) else { return };
    c.install = None;
    if let Some(record) = c.system.long_install.as_mut() {
        record.slices = 0;
        record.instructions_used = 0;
    }
}

/// Ends the canister's install early with `error` (the canister is being uninstalled).
pub(crate) fn abandon(env: &mut ExecutionEnvironment, id: &CanisterId, error: UserError) {
    let Some(c) = env.state.canister_mut(id) else { return };
    let Some(record) = c.system.long_install.take() else { return };
    let progress = c.install.take();
    finish(env, id, *record, progress.map(|p| *p), Err(error));
}

/// Ends an install: returns the unused prepayment, keeps the hooks' logs, puts the new
/// instance in place if it succeeded, and answers the caller.
fn finish(
    env: &mut ExecutionEnvironment,
    id: &CanisterId,
    record: LongInstall,
    progress: Option<InstallProgress>,
    result: Result<Option<ExecutionState>, UserError>,
) {
    let cost = env.config.cycles.execution_cost(record.instructions_used, record.wasm64);
    // The history dates the install by the time its hooks saw (fixed when it started, kept
    // across aborts), so that an install aborted at a checkpoint ends as an uninterrupted one.
    let time = record.sys.time;
    let upgrade = matches!(record.mode, InstallMode::Upgrade { .. });
    let payload = match env.state.canister_mut(id) {
        None => error_payload(UserError::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found"))),
        Some(c) => {
            c.system.cycles = c.system.cycles.saturating_add(record.prepaid);
            c.system.charge(cost);
            c.install = None;
            let (logs, certified_data, timer) =
                progress.map_or((Vec::new(), None, None), |p| (p.logs, p.new_certified_data, p.new_global_timer));
            // A reinstall purges the log (spec; an upgrade keeps it); the new code's hooks
            // start the new one.
            if matches!(record.mode, InstallMode::Install { reinstall: true }) && matches!(result, Ok(Some(_))) {
                c.system.log.clear();
            }
            for log in logs {
                c.system.log.push(log);
            }
            match result {
                Ok(Some(new_state)) => {
                    let module_hash = new_state.module().wasm_hash();
                    c.execution = Some(new_state);
                    c.system.canister_version += 1;
                    let mode = match record.mode {
                        InstallMode::Install { reinstall: false } => DeploymentMode::Install,
                        InstallMode::Install { reinstall: true } => DeploymentMode::Reinstall,
                        InstallMode::Upgrade { .. } => DeploymentMode::Upgrade,
                    };
                    let origin = super::change_origin(&record.origin, record.sender_canister_version);
                    c.system.record_change(time, origin, ChangeDetails::CodeDeployment { mode, module_hash });
                    if !upgrade {
                        c.system.certified_data.clear();
                    }
                    // Every install deactivates the timer; init/post_upgrade may have set it again.
                    c.system.global_timer = timer.unwrap_or(0);
                    if let Some(data) = certified_data {
                        c.system.certified_data = data;
                    }
                    ResponsePayload::Reply(empty_reply())
                }
                Ok(None) => error_payload(UserError::new(ErrorCode::CanisterWasmEngineError, "the install did not end")),
                Err(e) => error_payload(e),
            }
        }
    };
    env.deliver_response(record.origin, MANAGEMENT_CANISTER, payload, record.refund);
}

/// The metadata section by which a module declares enhanced orthogonal persistence (Motoko's
/// 64-bit heap that survives upgrades).
const ENHANCED_ORTHOGONAL_PERSISTENCE: &str = "enhanced-orthogonal-persistence";

/// The replica's rules for `wasm_memory_persistence`: a canister using enhanced orthogonal
/// persistence must say what happens to its heap (dropping it by accident loses all state),
/// and only such a module may keep the heap.
fn check_memory_persistence(
    old: &CanisterModule,
    new: &CanisterModule,
    persistence: Option<WasmMemoryPersistence>,
) -> Result<(), UserError> {
    match persistence {
        None if old.metadata(ENHANCED_ORTHOGONAL_PERSISTENCE).is_some() => Err(UserError::new(
            ErrorCode::CanisterContractViolation,
            "Missing upgrade option: Enhanced orthogonal persistence requires the `wasm_memory_persistence` upgrade option.",
        )),
        Some(WasmMemoryPersistence::Keep) if new.metadata(ENHANCED_ORTHOGONAL_PERSISTENCE).is_none() => Err(UserError::new(
            ErrorCode::CanisterContractViolation,
            "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option requires that the new canister module supports enhanced orthogonal persistence.",
        )),
        _ => Ok(()),
    }
}
