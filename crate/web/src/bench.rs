//! The execution benchmark: a compute-bound canister (xorshift in a loop) run by the embedder,
//! natively (`cargo run --release -p tabnet-web --example bench_fuel`) and in a tab
//! (`www/bench.mjs`). Reports fuel (= instructions charged) and the time taken.
//! `node scripts/bench-browser.mjs` compares the two, alternating calls after a warm-up.

use serde::Serialize;
use tabnet_execution::hypervisor::{
    execute, ApiType, CanisterModule, CanisterStatusKind, EntryPoint, ExecutionParameters, ExecutionState, SystemStateView,
};
use tabnet_execution::SubnetConfig;
use tabnet_types::{canister_id_from_index, Principal};
use wasm_bindgen::prelude::*;

/// The compute canister (`src/compute.wat`, made a module by build.rs): `canister_update
/// compute` reads n (u64 LE) from the argument, runs n xorshift rounds and replies with the
/// accumulated value.
const COMPUTE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/compute.wasm"));

#[derive(Serialize, Debug, Clone)]
pub struct FuelRun {
    /// Instructions charged (wasmi fuel).
    pub fuel: u64,
    pub millis: f64,
    /// The reply (hex), so that the work cannot be optimised away and runs can be compared.
    pub result: String,
}

fn system_state() -> SystemStateView {
    SystemStateView {
        canister_id: canister_id_from_index(0),
        controllers: vec![],
        status: CanisterStatusKind::Running,
        canister_version: 0,
        cycles_balance: 1 << 100,
        cycles_reserved: 0,
        subnet_id: Principal::management_canister(),
        root_key: vec![],
        time: 0,
        global_timer: 0,
        certified_data: vec![],
        in_replicated_execution: true,
        call_context_instructions: 0,
    }
}

fn parameters(config: &SubnetConfig) -> ExecutionParameters {
    ExecutionParameters {
        instruction_limit: config.max_instructions_per_update,
        wasm_memory_limit: config.max_wasm32_memory,
        stable_memory_limit: config.max_stable_memory,
        max_reply_bytes: config.max_reply_bytes,
        max_call_payload_bytes: config.max_inter_canister_payload_same_subnet,
        max_certified_data_bytes: config.max_certified_data_bytes,
        max_best_effort_timeout_seconds: config.max_best_effort_timeout_seconds,
        cycles: config.cycles.clone(),
    }
}

/// Runs the compute canister for `iterations` loop turns; `now_millis` is the platform's clock.
pub fn run_fuel(iterations: u64, now_millis: &dyn Fn() -> f64) -> Result<FuelRun, String> {
    let config = SubnetConfig::for_subnet_size(13);
    let (sys, params) = (system_state(), parameters(&config));
    let module = CanisterModule::new(COMPUTE_WASM.to_vec()).map_err(|e| e.to_string())?;
    let (mut state, _) = ExecutionState::new(module, Vec::new(), &sys, &params).map_err(|o| format!("{:?}", o.result))?;
    let api = ApiType::Update {
        caller: Principal::anonymous(),
        method: "compute".into(),
        arg: iterations.to_le_bytes().to_vec(),
        cycles_available: 0,
        deadline: None,
    };
    let started = now_millis();
    let outcome = execute(&mut state, &EntryPoint::Export("canister_update compute".into()), api, &sys, &params);
    let millis = now_millis() - started;
    match outcome.result {
        Ok(Some(tabnet_execution::hypervisor::WasmResult::Reply(bytes))) if bytes.len() == 8 => Ok(FuelRun {
            fuel: outcome.instructions_used,
            millis,
            result: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }),
        other => Err(format!("the compute canister did not reply: {other:?}")),
    }
}

/// The benchmark for JavaScript: `bench_fuel(n, () => performance.now())` → `{fuel, millis, result}`.
#[wasm_bindgen]
pub fn bench_fuel(iterations: u64, now_millis: &js_sys::Function) -> Result<JsValue, JsValue> {
    let clock = || now_millis.call0(&JsValue::NULL).ok().and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    let run = run_fuel(iterations, &clock).map_err(|e| JsValue::from_str(&e))?;
    serde_wasm_bindgen::to_value(&run).map_err(|e| JsValue::from_str(&e.to_string()))
}

/// The fuel the compute canister is charged for `iterations` loop turns: 32 per turn plus the
/// call's prologue and epilogue. Fixed by wasmi's fuel costs; the same natively and in a tab.
pub fn expected_fuel(iterations: u64) -> u64 {
    32 * iterations + 125
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuel_is_deterministic() {
        let run = super::run_fuel(1_000, &|| 0.0).expect("runs");
        assert_eq!(run.fuel, super::expected_fuel(1_000));
        assert_eq!(run.result, super::run_fuel(1_000, &|| 0.0).unwrap().result);
    }
}
