//! `install_code`: install, reinstall and upgrade. The new Wasm state is built aside and only
//! replaces the old one when every hook succeeded; a trap anywhere leaves the canister as it was.

// The embedder's constructors hand back the whole failed outcome (logs, instructions) as `Err`.
#![allow(clippy::result_large_err)]

use super::types::{CanisterInstallMode, InstallCodeArgs, UpgradeOptions, WasmMemoryPersistence};
use super::{controlled_canister, empty_reply};
use crate::hypervisor::{ApiType, CanisterModule, EntryPoint, ExecutionOutcome, ExecutionState, SystemStateChanges};
use crate::scheduler::{no_module_error, ExecutionEnvironment};
use std::sync::Arc;
use tabnet_types::{CanisterId, ErrorCode, Principal, UserError};

pub(super) fn install_code(env: &mut ExecutionEnvironment, sender: Principal, args: InstallCodeArgs) -> Result<Vec<u8>, UserError> {
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
    env.check_can_pay(c, env.prepayment(c, limit))
        .map_err(|e| UserError::new(e.code, format!("Canister installation failed with `{}`", e.message)))?;

    let module = CanisterModule::new(args.wasm_module)
        .map_err(|e| UserError::new(e.code, format!("Error from Canister {id}: {}", e.message)))?;
    let wasm64 = module.is_wasm64();
    let mut run = HookRunner { env, id, limit, instructions: 0, changes: SystemStateChanges::default() };
    let result = match args.mode {
        CanisterInstallMode::Install | CanisterInstallMode::Reinstall => run.install(module, sender, args.arg),
        CanisterInstallMode::Upgrade(options) => run.upgrade(module, sender, args.arg, options.unwrap_or_default()),
    };
    let HookRunner { env, instructions, changes, .. } = run;

    let cost = env.config.cycles.execution_cost(instructions, wasm64);
    let c = env.state.canister_mut(&id).expect("checked above");
    c.system.charge(cost);
    let new_state = result?;

    c.execution = Some(new_state);
    c.system.canister_version += 1;
    c.system.total_num_changes += 1;
    if !matches!(args.mode, CanisterInstallMode::Upgrade(_)) {
        c.system.certified_data.clear();
    }
    // Every install deactivates the timer; init/post_upgrade may have set it again.
    c.system.global_timer = changes.new_global_timer.unwrap_or(0);
    if let Some(data) = changes.new_certified_data {
        c.system.certified_data = data;
    }
    Ok(empty_reply())
}

/// Runs the hooks of one `install_code`, adding up instructions and system-state changes.
struct HookRunner<'a> {
    env: &'a mut ExecutionEnvironment,
    id: CanisterId,
    limit: u64,
    instructions: u64,
    changes: SystemStateChanges,
}

impl HookRunner<'_> {
    /// A fresh instance: `(start)`, then `canister_init`.
    fn install(&mut self, module: Arc<CanisterModule>, caller: Principal, arg: Vec<u8>) -> Result<ExecutionState, UserError> {
        let mut exec = self.instantiate(module, |m, sys, params| ExecutionState::new(m, Vec::new(), sys, params))?;
        self.run_hook(&mut exec, "canister_init", ApiType::Init { caller, arg })?;
        Ok(exec)
    }

    /// `canister_pre_upgrade` on the old instance (unless skipped), then a new instance that
    /// keeps stable memory (and the heap with `wasm_memory_persistence = keep`), `(start)` and
    /// `canister_post_upgrade`. On failure the old instance is put back as it was.
    fn upgrade(
        &mut self,
        module: Arc<CanisterModule>,
        caller: Principal,
        arg: Vec<u8>,
        options: UpgradeOptions,
    ) -> Result<ExecutionState, UserError> {
        let id = self.id;
        let mut old = self.env.state.canister_mut(&id).and_then(|c| c.execution.take()).ok_or_else(|| no_module_error(&id))?;
        let backup = old.try_clone();
        let result = backup.and_then(|backup| {
            let result = self.upgrade_from(&mut old, module, caller, arg, options);
            if result.is_err() {
                old = backup;
            }
            result
        });
        // The old instance goes back for now; on success the caller replaces it.
        if let Some(c) = self.env.state.canister_mut(&id) {
            c.execution = Some(old);
        }
        result
    }

    fn upgrade_from(
        &mut self,
        old: &mut ExecutionState,
        module: Arc<CanisterModule>,
        caller: Principal,
        arg: Vec<u8>,
        options: UpgradeOptions,
    ) -> Result<ExecutionState, UserError> {
        check_memory_persistence(old.module(), &module, options.wasm_memory_persistence)?;
        if !options.skip_pre_upgrade.unwrap_or(false) {
            self.run_hook(old, "canister_pre_upgrade", ApiType::PreUpgrade { caller })?;
        }
        let mut exec = if options.wasm_memory_persistence == Some(WasmMemoryPersistence::Keep) {
            self.instantiate(module, |m, sys, params| ExecutionState::new_keeping_heap(m, old, sys, params))?
        } else {
            let stable = old.stable_bytes().to_vec();
            self.instantiate(module, |m, sys, params| ExecutionState::new(m, stable, sys, params))?
        };
        self.run_hook(&mut exec, "canister_post_upgrade", ApiType::PostUpgrade { caller, arg })?;
        Ok(exec)
    }

    /// Builds an instance with `make` (which runs the module's `(start)`).
    fn instantiate(
        &mut self,
        module: Arc<CanisterModule>,
        make: impl FnOnce(
            Arc<CanisterModule>,
            &crate::hypervisor::SystemStateView,
            &crate::hypervisor::ExecutionParameters,
        ) -> Result<(ExecutionState, ExecutionOutcome), ExecutionOutcome>,
    ) -> Result<ExecutionState, UserError> {
        let c = &self.env.state.canisters[&self.id];
        let sys = self.env.view(c, self.env.time(), true);
        let left = self.limit.saturating_sub(self.instructions);
        let params = self.env.params(c, module.is_wasm64(), left, self.env.config.max_reply_bytes);
        match make(module, &sys, &params) {
            Ok((exec, outcome)) => {
                self.account(outcome)?;
                Ok(exec)
            }
            Err(outcome) => {
                self.account(outcome)?;
                Err(UserError::new(ErrorCode::CanisterWasmEngineError, "instantiation failed"))
            }
        }
    }

    /// Runs an exported hook if the module has it.
    fn run_hook(&mut self, exec: &mut ExecutionState, hook: &str, api: ApiType) -> Result<(), UserError> {
        if !exec.exports_function(hook) {
            return Ok(());
        }
        let left = self.limit.saturating_sub(self.instructions);
        let time = self.env.time();
        let outcome = self.env.run_wasm(&self.id, exec, &EntryPoint::Export(hook.into()), api, left, time, true, 0);
        self.account(outcome)
    }

    /// Counts instructions, keeps logs and system changes; the execution's error, if any.
    fn account(&mut self, outcome: ExecutionOutcome) -> Result<(), UserError> {
        self.instructions = self.instructions.saturating_add(outcome.instructions_used);
        if let Some(c) = self.env.state.canister_mut(&self.id) {
            for record in outcome.logs {
                c.system.log.push(record);
            }
        }
        outcome.result?;
        if let Some(d) = outcome.changes.new_certified_data {
            self.changes.new_certified_data = Some(d);
        }
        if let Some(t) = outcome.changes.new_global_timer {
            self.changes.new_global_timer = Some(t);
        }
        Ok(())
    }
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
