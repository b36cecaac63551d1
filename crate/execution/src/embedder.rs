//! The Wasm embedder: loads canister modules into wasmi and runs one entry point at a time
//! with the ic0 System API (`system_api.rs`).
//!
//! - `module`: [`CanisterModule`] — decode (raw or gzip), validate against the IC's rules,
//!   instrument (`instrument`), compile once with fuel metering.
//! - `instance`: [`ExecutionState`] — a live instance with heap, stable memory and globals;
//!   [`execute`] runs an entry point on it and rolls back on failure.

mod instance;
mod instrument;
mod module;

pub use instance::{ExecutionSnapshot, ExecutionState, GlobalValue, Step};
pub use module::{CanisterModule, MAX_MODULE_BYTES, SYSTEM_EXPORTS};

use crate::hypervisor::{ApiType, EntryPoint, ExecutionOutcome, ExecutionParameters, SystemStateView};

/// Runs `entry` on `state` under `api`. See [`ExecutionState::execute`].
pub fn execute(
    state: &mut ExecutionState,
    entry: &EntryPoint,
    api: ApiType,
    sys: &SystemStateView,
    params: &ExecutionParameters,
) -> ExecutionOutcome {
    state.execute(entry, api, sys, params)
}
