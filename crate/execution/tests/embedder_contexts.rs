//! Every ic0 function, called from every context: allowed where the IC interface spec's import
//! table says, IC0504 "cannot be executed in <mode> mode" everywhere else. The table below is
//! transcribed from the spec independently of the embedder's own table.

mod embedder_support;

// In wasm32 builds the same tests run in headless Chromium.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use embedder_support::*;
use tabnet_execution::hypervisor::ApiType;
use tabnet_types::ErrorCode;

/// name | parameters | results | contexts (spec letters; `*` = all but `s`) | 32-bit only
const SPEC: &str = "
msg_arg_data_size | | I | I U RQ NRQ TQ CQ Ry CRy F |
msg_arg_data_copy | I I I | | I U RQ NRQ TQ CQ Ry CRy F |
msg_caller_size | | I | * |
msg_caller_copy | I I I | | * |
msg_caller_info_data_size | | I | U RQ NRQ CQ Ry Rt CRy CRt C CC F |
msg_caller_info_data_copy | I I I | | U RQ NRQ CQ Ry Rt CRy CRt C CC F |
msg_caller_info_signer_size | | I | U RQ NRQ CQ Ry Rt CRy CRt C CC F |
msg_caller_info_signer_copy | I I I | | U RQ NRQ CQ Ry Rt CRy CRt C CC F |
msg_reject_code | | i32 | Ry Rt CRy CRt C |
msg_reject_msg_size | | I | Rt CRt |
msg_reject_msg_copy | I I I | | Rt CRt |
msg_deadline | | i64 | U RQ NRQ CQ Ry Rt CRy CRt |
msg_reply_data_append | I I | | U RQ NRQ TQ CQ Ry Rt CRy CRt |
msg_reply | | | U RQ NRQ TQ CQ Ry Rt CRy CRt |
msg_reject | I I | | U RQ NRQ TQ CQ Ry Rt CRy CRt |
msg_cycles_available128 | I | | U RQ Rt Ry |
msg_cycles_refunded128 | I | | Rt Ry |
msg_cycles_accept128 | i64 i64 I | | U RQ Rt Ry |
cycles_burn128 | i64 i64 I | | I G U RQ Ry Rt C T |
canister_self_size | | I | * |
canister_self_copy | I I I | | * |
canister_cycle_balance128 | I | | * |
canister_liquid_cycle_balance128 | I | | * |
canister_status | | i32 | * |
canister_version | | i64 | * |
subnet_self_size | | I | * |
subnet_self_copy | I I I | | * |
msg_method_name_size | | I | F |
msg_method_name_copy | I I I | | F |
accept_message | | | F |
call_new | I I I I I I I I | | U CQ Ry Rt CRy CRt T |
call_on_cleanup | I I | | U CQ Ry Rt CRy CRt T |
call_data_append | I I | | U CQ Ry Rt CRy CRt T |
call_with_best_effort_response | i32 | | U CQ Ry Rt CRy CRt T |
call_cycles_add128 | i64 i64 | | U Ry Rt T |
call_perform | | i32 | U CQ Ry Rt CRy CRt T |
stable64_size | | i64 | * s |
stable64_grow | i64 | i64 | * s |
stable64_write | i64 i64 i64 | | * s |
stable64_read | i64 i64 i64 | | * s |
root_key_size | | I | I G U RQ Ry Rt C T |
root_key_copy | I I I | | I G U RQ Ry Rt C T |
certified_data_set | I I | | I G U Ry Rt T |
data_certificate_present | | i32 | * |
data_certificate_size | | I | NRQ CQ |
data_certificate_copy | I I I | | NRQ CQ |
time | | i64 | * |
global_timer_set | i64 | i64 | I G U Ry Rt C T |
performance_counter | i32 | i64 | * s |
is_controller | I I | i32 | * s |
in_replicated_execution | | i32 | * s |
cost_call | i64 i64 I | | * s |
cost_create_canister | I | | * s |
cost_http_request | i64 i64 I | | * s |
cost_sign_with_ecdsa | I I i32 I | i32 | * s |
cost_sign_with_schnorr | I I i32 I | i32 | * s |
cost_vetkd_derive_key | I I i32 I | i32 | * s |
env_var_count | | I | * |
env_var_name_size | I | I | * |
env_var_name_copy | I I I I | | * |
env_var_name_exists | I I | i32 | * |
env_var_value_size | I I | I | * |
env_var_value_copy | I I I I I | | * |
debug_print | I I | | * s |
trap | I I | | * s |
msg_cycles_available | | i64 | U RQ Rt Ry | 32
msg_cycles_refunded | | i64 | Rt Ry | 32
msg_cycles_accept | i64 | i64 | U RQ Rt Ry | 32
canister_cycle_balance | | i64 | * | 32
call_cycles_add | i64 | | U Ry Rt T | 32
stable_size | | i32 | * s | 32
stable_grow | i32 | i32 | * s | 32
stable_write | i32 i32 i32 | | * s | 32
stable_read | i32 i32 i32 | | * s | 32
";

struct Function {
    name: String,
    params: Vec<String>,
    results: Vec<String>,
    contexts: Vec<String>,
    wasm32_only: bool,
}

fn spec() -> Vec<Function> {
    SPEC.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
            let mut contexts = words(cols[3]);
            if contexts.iter().any(|c| c == "*") {
                contexts.extend(
                    ["I", "G", "U", "RQ", "NRQ", "CQ", "Ry", "Rt", "CRy", "CRt", "C", "F", "T"].map(String::from),
                );
            }
            Function {
                name: cols[0].into(),
                params: words(cols[1]),
                results: words(cols[2]),
                contexts,
                wasm32_only: cols[4] == "32",
            }
        })
        .collect()
}

/// A module importing every function (of its width) and exporting `canister_update t_<name>`,
/// which calls it with zeros.
fn probe_module(functions: &[&Function], wasm64: bool) -> String {
    let ptr = if wasm64 { "i64" } else { "i32" };
    let ty = |t: &String| if t == "I" { ptr.to_string() } else { t.clone() };
    let mut wat = String::from("(module\n");
    for f in functions {
        let params: Vec<String> = f.params.iter().map(ty).collect();
        let results: Vec<String> = f.results.iter().map(ty).collect();
        wat += &format!(
            "  (import \"ic0\" \"{0}\" (func ${0} (param {1}) (result {2})))\n",
            f.name,
            params.join(" "),
            results.join(" ")
        );
    }
    wat += &format!("  (memory {} 1)\n", if wasm64 { "i64" } else { "" });
    for f in functions {
        let args: String = f.params.iter().map(|t| format!("({}.const 0) ", ty(t))).collect();
        let drops = "(drop) ".repeat(f.results.len());
        wat += &format!("  (func (export \"canister_update t_{0}\") (call ${0} {args}) {drops})\n", f.name);
    }
    wat + ")"
}

fn check_width(wasm64: bool) {
    let spec = spec();
    let functions: Vec<&Function> = spec.iter().filter(|f| !(wasm64 && f.wasm32_only)).collect();
    let mut state = install(&probe_module(&functions, wasm64));
    let mut checked = 0;
    for (letter, api) in all_contexts() {
        for f in &functions {
            let outcome = run(&mut state, &format!("canister_update t_{}", f.name), api.clone());
            let mode_error = format!("\"ic0.{}\" cannot be executed in", f.name);
            let allowed = f.contexts.iter().any(|c| c == letter);
            match &outcome.result {
                Err(e) if e.message.starts_with(&mode_error) => {
                    assert!(!allowed, "ic0.{} must be allowed in {letter} ({api:?}): {e}", f.name);
                    assert_eq!(e.code, ErrorCode::CanisterContractViolation);
                }
                other => assert!(allowed, "ic0.{} must trap in {letter} ({api:?}), got {other:?}", f.name),
            }
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

#[test]
fn every_function_is_allowed_exactly_where_the_spec_says_32_bit() {
    check_width(false);
}

#[test]
fn every_function_is_allowed_exactly_where_the_spec_says_64_bit() {
    check_width(true);
}

#[test]
fn mode_errors_name_the_function_and_the_mode() {
    let spec = spec();
    let f: Vec<&Function> = spec.iter().filter(|f| f.name == "msg_reply").collect();
    let mut state = install(&probe_module(&f, false));
    let outcome = run(&mut state, "canister_update t_msg_reply", ApiType::Init { caller: user(), arg: vec![] });
    assert_eq!(error_message(&outcome), "\"ic0.msg_reply\" cannot be executed in init mode");
    let outcome = run(&mut state, "canister_update t_msg_reply", ApiType::Heartbeat);
    assert_eq!(error_message(&outcome), "\"ic0.msg_reply\" cannot be executed in heartbeat mode");
}
