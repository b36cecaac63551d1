//! Interface-spec rules that tabnet got wrong once (issue 14's fidelity bugs): environment
//! variables reach `ic0.env_var_*`, the log is purged on reinstall and uninstall, and
//! `canister_status` answers the record DFINITY's own types decode, settings included.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{Encode, Nat, Principal};
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_types::{CanisterId, ErrorCode, RejectCode, MANAGEMENT_CANISTER};

/// Reads its environment: `count` (u32 LE, also as `count_at_init` as `canister_init` saw
/// it), `name` (argument: u32 LE index), `value` and `exists` (argument: the name).
fn env_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "env_var_count" (func $env_count (result i32)))
  (import "ic0" "env_var_name_size" (func $env_name_size (param i32) (result i32)))
  (import "ic0" "env_var_name_copy" (func $env_name_copy (param i32 i32 i32 i32)))
  (import "ic0" "env_var_name_exists" (func $env_exists (param i32 i32) (result i32)))
  (import "ic0" "env_var_value_size" (func $env_value_size (param i32 i32) (result i32)))
  (import "ic0" "env_var_value_copy" (func $env_value_copy (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "canister_init") (i32.store (i32.const 0) (call $env_count)))
  (func (export "canister_query count_at_init")
    (call $reply_append (i32.const 0) (i32.const 4)) (call $reply))
  (func (export "canister_update count")
    (i32.store (i32.const 4) (call $env_count))
    (call $reply_append (i32.const 4) (i32.const 4)) (call $reply))
  (func (export "canister_query name") (local $i i32) (local $n i32)
    (call $arg_copy (i32.const 8) (i32.const 0) (i32.const 4))
    (local.set $i (i32.load (i32.const 8)))
    (local.set $n (call $env_name_size (local.get $i)))
    (call $env_name_copy (local.get $i) (i32.const 1024) (i32.const 0) (local.get $n))
    (call $reply_append (i32.const 1024) (local.get $n)) (call $reply))
  (func (export "canister_query value") (local $len i32) (local $n i32)
    (local.set $len (call $arg_size))
    (call $arg_copy (i32.const 2048) (i32.const 0) (local.get $len))
    (local.set $n (call $env_value_size (i32.const 2048) (local.get $len)))
    (call $env_value_copy (i32.const 2048) (local.get $len) (i32.const 4096) (i32.const 0) (local.get $n))
    (call $reply_append (i32.const 4096) (local.get $n)) (call $reply))
  (func (export "canister_query exists") (local $len i32)
    (local.set $len (call $arg_size))
    (call $arg_copy (i32.const 2048) (i32.const 0) (local.get $len))
    (i32.store8 (i32.const 12) (call $env_exists (i32.const 2048) (local.get $len)))
    (call $reply_append (i32.const 12) (i32.const 1)) (call $reply))
)"#
    ))
}

fn vars(pairs: &[(&str, &str)]) -> Option<Vec<EnvironmentVariable>> {
    Some(pairs.iter().map(|(name, value)| EnvironmentVariable { name: name.to_string(), value: value.to_string() }).collect())
}

fn update_settings(t: &mut Env, id: CanisterId, settings: CanisterSettings) -> Outcome {
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
}

#[test]
fn environment_variables_of_the_settings_are_what_the_canister_reads() {
    let mut t = Env::new();
    let create = ProvisionalCreateCanisterWithCyclesArgs {
        settings: Some(CanisterSettings {
            environment_variables: vars(&[("NETWORK", "local"), ("API_KEY", "k1")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = t.mgmt(user(), "provisional_create_canister_with_cycles", &create).unwrap();
    let id = candid::decode_one::<CreateCanisterResult>(&reply).unwrap().canister_id;
    t.install(id, &env_wat());

    // canister_init, updates and queries see them, indexed in name order.
    assert_eq!(t.query(user(), id, "count_at_init", vec![]).unwrap(), 2u32.to_le_bytes());
    assert_eq!(t.update(id, "count", vec![]).unwrap(), 2u32.to_le_bytes());
    assert_eq!(t.query(user(), id, "name", 0u32.to_le_bytes().to_vec()).unwrap(), b"API_KEY");
    assert_eq!(t.query(user(), id, "name", 1u32.to_le_bytes().to_vec()).unwrap(), b"NETWORK");
    assert_eq!(t.query(user(), id, "value", b"NETWORK".to_vec()).unwrap(), b"local");
    assert_eq!(t.query(user(), id, "exists", b"API_KEY".to_vec()).unwrap(), [1]);
    assert_eq!(t.query(user(), id, "exists", b"HOME".to_vec()).unwrap(), [0]);
    // An unknown name or an index past the count traps (spec).
    assert_eq!(t.query(user(), id, "value", b"HOME".to_vec()).unwrap_err().2, ErrorCode::CanisterContractViolation);
    let past = t.query(user(), id, "name", 2u32.to_le_bytes().to_vec()).unwrap_err();
    assert!(past.1.contains("out of bounds"), "{past:?}");

    // update_settings replaces them, and the next execution sees the new ones.
    update_settings(&mut t, id, CanisterSettings { environment_variables: vars(&[("NETWORK", "ic")]), ..Default::default() })
        .unwrap();
    assert_eq!(t.update(id, "count", vec![]).unwrap(), 1u32.to_le_bytes());
    assert_eq!(t.query(user(), id, "value", b"NETWORK".to_vec()).unwrap(), b"ic");
    assert_eq!(t.status(id).settings.environment_variables, vars(&[("NETWORK", "ic")]).unwrap());

    // Names are unique (spec); count and lengths within the IC's limits.
    let duplicate = vars(&[("A", "1"), ("A", "2")]);
    let e = update_settings(&mut t, id, CanisterSettings { environment_variables: duplicate, ..Default::default() });
    assert_eq!(e.unwrap_err().2, ErrorCode::CanisterContractViolation);
    let many: Vec<(String, String)> = (0..21).map(|i| (format!("V{i}"), String::new())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let e = update_settings(&mut t, id, CanisterSettings { environment_variables: vars(&many), ..Default::default() });
    assert_eq!(e.unwrap_err().2, ErrorCode::CanisterContractViolation);
    let long = "x".repeat(129);
    let e = update_settings(&mut t, id, CanisterSettings { environment_variables: vars(&[("V", &long)]), ..Default::default() });
    assert_eq!(e.unwrap_err().2, ErrorCode::CanisterContractViolation);
    assert_eq!(t.update(id, "count", vec![]).unwrap(), 1u32.to_le_bytes(), "a refused update changes nothing");
}

fn logs(t: &mut Env, id: CanisterId) -> Vec<CanisterLogRecord> {
    let arg = Encode!(&CanisterIdRecord { canister_id: id }).unwrap();
    let reply = t.query(user(), MANAGEMENT_CANISTER, "fetch_canister_logs", arg).unwrap();
    candid::decode_one::<FetchCanisterLogsResult>(&reply).unwrap().canister_log_records
}

#[test]
fn reinstall_and_uninstall_purge_the_log_and_an_upgrade_keeps_it() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "print", vec![]).unwrap();
    assert_eq!(logs(&mut t, id).len(), 1);

    t.install_mode(id, &counter_wat(), Encode!().unwrap(), CanisterInstallMode::Upgrade(None)).unwrap();
    assert_eq!(logs(&mut t, id).len(), 1, "an upgrade keeps the log");

    t.install_mode(id, &counter_wat(), Encode!().unwrap(), CanisterInstallMode::Reinstall).unwrap();
    assert!(logs(&mut t, id).is_empty(), "a reinstall purges the log");
    t.update(id, "print", vec![]).unwrap();
    let after = logs(&mut t, id);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].idx, 1, "indices go on after a purge");

    // A reinstall that fails changes nothing: the log stays.
    let e = t.install_mode(id, b"not wasm", Encode!().unwrap(), CanisterInstallMode::Reinstall);
    assert!(e.is_err());
    assert!(!logs(&mut t, id).is_empty());

    t.mgmt(user(), "uninstall_code", &UninstallCodeArgs { canister_id: id, sender_canister_version: None }).unwrap();
    assert!(logs(&mut t, id).is_empty(), "uninstalling purges the log");
}

#[test]
fn canister_status_is_the_record_ic_cdk_decodes_with_the_settings_in_force() {
    use ic_management_canister_types as ic;
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "print", vec![]).unwrap();
    let viewer = other_user();
    let settings = CanisterSettings {
        minimum_incoming_canister_call_cycles: Some(Nat::from(1_000u64)),
        snapshot_visibility: Some(LogVisibility::Public),
        status_visibility: Some(LogVisibility::AllowedViewers(vec![viewer])),
        wasm_memory_threshold: Some(Nat::from(4096u64)),
        environment_variables: vars(&[("A", "1")]),
        ..Default::default()
    };
    update_settings(&mut t, id, settings).unwrap();

    let arg = CanisterIdRecord { canister_id: id };
    let reply = t.mgmt(user(), "canister_status", &arg).unwrap();
    let s: ic::CanisterStatusResult = candid::decode_one(&reply).expect("ic-management-canister-types decodes the reply");
    assert_eq!(s.status, ic::CanisterStatusType::Running);
    assert_eq!(s.settings.controllers, vec![user()]);
    assert_eq!(s.settings.minimum_incoming_canister_call_cycles, Nat::from(1_000u64));
    assert_eq!(s.settings.snapshot_visibility, ic::SnapshotVisibility::Public);
    assert_eq!(s.settings.status_visibility, ic::StatusVisibility::AllowedViewers(vec![viewer]));
    assert_eq!(s.settings.log_visibility, ic::LogVisibility::Controllers);
    assert_eq!(s.settings.wasm_memory_threshold, Nat::from(4096u64));
    assert_eq!(s.settings.environment_variables, vec![ic::EnvironmentVariable { name: "A".into(), value: "1".into() }]);
    assert!(s.memory_metrics.log_memory_store_size > Nat::from(0u64), "the printed line is in the log store");
    assert!(s.memory_metrics.wasm_memory_size > Nat::from(0u64));
    assert!(s.module_hash.is_some());

    // status_visibility: the viewer may read the status, by ingress and as a query; a
    // stranger may not.
    let stranger = Principal::self_authenticating(b"stranger");
    assert!(t.mgmt(viewer, "canister_status", &arg).is_ok());
    assert!(t.query(viewer, MANAGEMENT_CANISTER, "canister_status", Encode!(&arg).unwrap()).is_ok());
    assert_eq!(t.mgmt(stranger, "canister_status", &arg).unwrap_err().2, ErrorCode::CanisterInvalidController);
    let e = t.query(stranger, MANAGEMENT_CANISTER, "canister_status", Encode!(&arg).unwrap()).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterInvalidController);
    // Reading the status gives no other right.
    let e = t.mgmt(viewer, "stop_canister", &arg).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterInvalidController);

    // At most 10 allowed viewers (spec).
    let eleven = (0..11u8).map(|i| Principal::self_authenticating([i])).collect();
    let e = update_settings(&mut t, id, CanisterSettings { status_visibility: Some(LogVisibility::AllowedViewers(eleven)), ..Default::default() });
    assert_eq!(e.unwrap_err().2, ErrorCode::CanisterContractViolation);
}

#[test]
fn calls_from_other_canisters_below_the_minimum_cycles_are_rejected_before_they_run() {
    let mut t = Env::new();
    let callee = t.deploy(&proxy_wat());
    let caller = t.deploy(&proxy_wat());
    let settings = CanisterSettings { minimum_incoming_canister_call_cycles: Some(Nat::from(1_000u64)), ..Default::default() };
    update_settings(&mut t, callee, settings).unwrap();

    let before = t.cycles(callee);
    let reply = t.update(caller, "forward", forward_arg(callee, "receive", 999, 0, b"")).unwrap();
    let (code, message) = proxy_result(&reply).unwrap_err();
    assert_eq!(code, RejectCode::CanisterError as u32, "{message}");
    assert_eq!(t.cycles(callee), before, "the callee paid nothing and got nothing");
    assert_eq!(u64_of(&t.query(user(), caller, "refunded", vec![]).unwrap()), 999, "the cycles went back");

    // Enough cycles: the call runs.
    let reply = t.update(caller, "forward", forward_arg(callee, "receive", 1_000, 0, b"")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"ok");
    // Self-calls and ingress are exempt.
    let reply = t.update(callee, "forward", forward_arg(callee, "receive", 0, 0, b"")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"ok");
}
