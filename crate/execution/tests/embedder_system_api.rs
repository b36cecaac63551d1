//! What the ic0 functions do: message data, responses, cycles, calls, callbacks, stable memory,
//! certified data, timers, logs, costs.

mod embedder_support;

// In wasm32 builds the same tests run in headless Chromium.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use embedder_support::*;
use tabnet_execution::hypervisor::{
    execute, ApiType, EntryPoint, ExecutionState, OutgoingCall, SystemStateView, WasmClosure, WasmResult,
};
use tabnet_execution::CyclesConfig;
use tabnet_types::{canister_id_from_index, ErrorCode, Principal, RejectCode};

/// Memory layout: 0.. scratch/reply, 100 callee id, 200 method name, 300 payload, 400 key names.
const SINK: &str = r#"
(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_caller_size" (func $caller_size (result i32)))
  (import "ic0" "msg_caller_copy" (func $caller_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reject" (func $reject (param i32 i32)))
  (import "ic0" "msg_method_name_size" (func $method_size (result i32)))
  (import "ic0" "msg_method_name_copy" (func $method_copy (param i32 i32 i32)))
  (import "ic0" "accept_message" (func $accept_message))
  (import "ic0" "msg_cycles_accept128" (func $accept (param i64 i64 i32)))
  (import "ic0" "msg_cycles_available128" (func $available (param i32)))
  (import "ic0" "cycles_burn128" (func $burn (param i64 i64 i32)))
  (import "ic0" "canister_cycle_balance128" (func $balance (param i32)))
  (import "ic0" "canister_liquid_cycle_balance128" (func $liquid (param i32)))
  (import "ic0" "msg_cycles_accept" (func $accept64 (param i64) (result i64)))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_data_append" (func $call_data (param i32 i32)))
  (import "ic0" "call_cycles_add128" (func $call_cycles (param i64 i64)))
  (import "ic0" "call_on_cleanup" (func $call_cleanup (param i32 i32)))
  (import "ic0" "call_with_best_effort_response" (func $best_effort (param i32)))
  (import "ic0" "call_perform" (func $call_perform (result i32)))
  (import "ic0" "certified_data_set" (func $certify (param i32 i32)))
  (import "ic0" "global_timer_set" (func $timer (param i64) (result i64)))
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "canister_self_size" (func $self_size (result i32)))
  (import "ic0" "canister_self_copy" (func $self_copy (param i32 i32 i32)))
  (import "ic0" "canister_status" (func $status (result i32)))
  (import "ic0" "canister_version" (func $version (result i64)))
  (import "ic0" "is_controller" (func $is_controller (param i32 i32) (result i32)))
  (import "ic0" "in_replicated_execution" (func $replicated (result i32)))
  (import "ic0" "data_certificate_present" (func $cert_present (result i32)))
  (import "ic0" "data_certificate_size" (func $cert_size (result i32)))
  (import "ic0" "data_certificate_copy" (func $cert_copy (param i32 i32 i32)))
  (import "ic0" "performance_counter" (func $counter (param i32) (result i64)))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "cost_call" (func $cost_call (param i64 i64 i32)))
  (import "ic0" "cost_create_canister" (func $cost_create (param i32)))
  (import "ic0" "cost_http_request" (func $cost_http (param i64 i64 i32)))
  (import "ic0" "cost_sign_with_ecdsa" (func $cost_ecdsa (param i32 i32 i32 i32) (result i32)))
  (import "ic0" "cost_sign_with_schnorr" (func $cost_schnorr (param i32 i32 i32 i32) (result i32)))
  (import "ic0" "env_var_count" (func $env_count (result i32)))
  (import "ic0" "env_var_name_size" (func $env_name_size (param i32) (result i32)))
  (import "ic0" "root_key_size" (func $root_key_size (result i32)))
  (import "ic0" "root_key_copy" (func $root_key_copy (param i32 i32 i32)))
  (memory 1)
  (data (i32.const 200) "hello")
  (data (i32.const 300) "abc")
  (data (i32.const 400) "key_1test_key_1nope")
  (func $reply_bytes (param $ptr i32) (param $len i32)
    (call $append (local.get $ptr) (local.get $len))
    (call $reply))
  (func $reply_i64 (param $v i64)
    (i64.store (i32.const 0) (local.get $v))
    (call $reply_bytes (i32.const 0) (i32.const 8)))
  (func $callee_from_arg
    ;; the callee id is the argument; copy it to 100
    (call $arg_copy (i32.const 100) (i32.const 0) (call $arg_size)))

  (func (export "canister_update echo")
    (call $arg_copy (i32.const 1000) (i32.const 0) (call $arg_size))
    (call $reply_bytes (i32.const 1000) (call $arg_size)))
  (func (export "canister_update caller")
    (call $caller_copy (i32.const 0) (i32.const 0) (call $caller_size))
    (call $reply_bytes (i32.const 0) (call $caller_size)))
  (func (export "canister_update caller_log")
    (call $caller_copy (i32.const 0) (i32.const 0) (call $caller_size))
    (call $print (i32.const 0) (call $caller_size)))
  (func (export "canister_update arg_out_of_range")
    (call $arg_copy (i32.const 0) (i32.const 1) (call $arg_size)))
  (func (export "canister_update reply_twice") (call $reply) (call $reply))
  (func (export "canister_update reject") (call $reject (i32.const 200) (i32.const 5)))
  (func (export "canister_update reject_bad_utf8")
    (i32.store8 (i32.const 0) (i32.const 255))
    (call $reject (i32.const 0) (i32.const 1)))
  (func (export "canister_update append_then_reject")
    (call $append (i32.const 300) (i32.const 3))
    (call $reject (i32.const 200) (i32.const 5)))
  (func (export "canister_update append_out_of_bounds") (call $append (i32.const 65535) (i32.const 2)))

  (func (export "canister_inspect_message")
    (call $method_copy (i32.const 0) (i32.const 0) (call $method_size))
    ;; accept only methods starting with "o"
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 111)) (then (call $accept_message))))
  (func (export "canister_update accept_twice") (call $accept_message) (call $accept_message))

  (func (export "canister_update cycles")
    ;; accept at most 300, then report accepted, available, balance, liquid
    (call $accept (i64.const 0) (i64.const 300) (i32.const 0))
    (call $available (i32.const 16))
    (call $balance (i32.const 32))
    (call $liquid (i32.const 48))
    (call $reply_bytes (i32.const 0) (i32.const 64)))
  (func (export "canister_update accept64")
    (call $reply_i64 (call $accept64 (i64.const 5000))))
  (func (export "canister_update burn")
    (call $burn (i64.const 0) (i64.const 100) (i32.const 0))
    (call $balance (i32.const 16))
    (call $reply_bytes (i32.const 0) (i32.const 32)))
  (func (export "canister_update available_after_reply")
    (call $reply)
    (call $available (i32.const 0))
    (call $print (i32.const 0) (i32.const 16)))

  (func (export "canister_update call")
    (call $callee_from_arg)
    (call $call_new (i32.const 100) (call $arg_size) (i32.const 200) (i32.const 5)
      (i32.const 1) (i32.const 42) (i32.const 2) (i32.const 43))
    (call $call_data (i32.const 300) (i32.const 3))
    (call $call_cycles (i64.const 0) (i64.const 1000))
    (call $call_cleanup (i32.const 3) (i32.const 44))
    (call $best_effort (i32.const 100000))
    (i32.store (i32.const 0) (call $call_perform))
    (call $balance (i32.const 16))
    (call $reply_bytes (i32.const 0) (i32.const 32)))
  (func (export "canister_update call_unfunded")
    (call $callee_from_arg)
    (call $call_new (i32.const 100) (call $arg_size) (i32.const 200) (i32.const 5)
      (i32.const 1) (i32.const 42) (i32.const 2) (i32.const 43))
    (i32.store (i32.const 0) (call $call_perform))
    (call $reply_bytes (i32.const 0) (i32.const 4)))
  (func (export "canister_update call_overdrawn")
    (call $callee_from_arg)
    (call $call_new (i32.const 100) (call $arg_size) (i32.const 200) (i32.const 5)
      (i32.const 1) (i32.const 42) (i32.const 2) (i32.const 43))
    (call $call_cycles (i64.const 1) (i64.const 0)))
  (func (export "canister_update call_discarded")
    (call $callee_from_arg)
    (call $call_new (i32.const 100) (call $arg_size) (i32.const 200) (i32.const 5)
      (i32.const 1) (i32.const 42) (i32.const 2) (i32.const 43))
    (call $call_cycles (i64.const 0) (i64.const 1000))
    (call $balance (i32.const 0))
    (call $reply_bytes (i32.const 0) (i32.const 16)))
  (func (export "canister_update perform_without_call") (drop (call $call_perform)))
  (func (export "canister_update call_then_trap")
    (call $callee_from_arg)
    (call $call_new (i32.const 100) (call $arg_size) (i32.const 200) (i32.const 5)
      (i32.const 1) (i32.const 42) (i32.const 2) (i32.const 43))
    (drop (call $call_perform))
    (call $certify (i32.const 200) (i32.const 5))
    (unreachable))

  (func (export "canister_update certify")
    (call $arg_copy (i32.const 0) (i32.const 0) (call $arg_size))
    (call $certify (i32.const 0) (call $arg_size))
    (call $reply))
  (func (export "canister_update timer")
    (drop (call $timer (i64.const 5)))
    (call $reply_i64 (call $timer (i64.const 9))))
  (func (export "canister_update identity")
    (call $self_copy (i32.const 0) (i32.const 0) (call $self_size))
    (i32.store8 (i32.const 10) (call $status))
    (i64.store (i32.const 11) (call $version))
    (i64.store (i32.const 19) (call $time))
    (i32.store8 (i32.const 27) (call $replicated))
    (call $caller_copy (i32.const 100) (i32.const 0) (call $caller_size))
    (i32.store8 (i32.const 28) (call $is_controller (i32.const 100) (call $caller_size)))
    (call $arg_copy (i32.const 100) (i32.const 0) (call $arg_size))
    (i32.store8 (i32.const 29) (call $is_controller (i32.const 100) (call $arg_size)))
    (call $reply_bytes (i32.const 0) (i32.const 30)))
  (func (export "canister_update bad_principal")
    (drop (call $is_controller (i32.const 0) (i32.const 30))))
  (func (export "canister_update root_key")
    (call $root_key_copy (i32.const 0) (i32.const 0) (call $root_key_size))
    (call $reply_bytes (i32.const 0) (call $root_key_size)))
  (func (export "canister_query certificate")
    (if (call $cert_present)
      (then
        (call $cert_copy (i32.const 0) (i32.const 0) (call $cert_size))
        (call $reply_bytes (i32.const 0) (call $cert_size)))
      (else (call $reply))))
  (func (export "canister_update counters")
    (i64.store (i32.const 0) (call $counter (i32.const 0)))
    (i64.store (i32.const 8) (call $counter (i32.const 0)))
    (i64.store (i32.const 16) (call $counter (i32.const 1)))
    (call $reply_bytes (i32.const 0) (i32.const 24)))
  (func (export "canister_update bad_counter") (drop (call $counter (i32.const 7))))
  (func (export "canister_update print")
    (call $print (i32.const 200) (i32.const 5))
    (call $print (i32.const 65530) (i32.const 100))
    (call $print (i32.const -1) (i32.const -1))
    (call $reply))
  (func (export "canister_update trap") (call $trap (i32.const 200) (i32.const 5)))
  (func (export "canister_update trap_out_of_bounds") (call $trap (i32.const 65535) (i32.const 10)))
  (func (export "canister_update costs")
    (call $cost_call (i64.const 5) (i64.const 3) (i32.const 0))
    (call $cost_create (i32.const 16))
    (call $cost_http (i64.const 100) (i64.const 2000) (i32.const 32))
    (i32.store (i32.const 48) (call $cost_ecdsa (i32.const 400) (i32.const 5) (i32.const 0) (i32.const 52)))
    (i32.store (i32.const 68) (call $cost_ecdsa (i32.const 405) (i32.const 10) (i32.const 0) (i32.const 72)))
    (i32.store (i32.const 88) (call $cost_ecdsa (i32.const 415) (i32.const 4) (i32.const 0) (i32.const 92)))
    (i32.store (i32.const 108) (call $cost_schnorr (i32.const 400) (i32.const 5) (i32.const 2) (i32.const 112)))
    (call $reply_bytes (i32.const 0) (i32.const 128)))
  (func (export "canister_update env")
    (i32.store (i32.const 0) (call $env_count))
    (call $reply_bytes (i32.const 0) (i32.const 4)))
  (func (export "canister_update env_name") (drop (call $env_name_size (i32.const 0)))))
"#;

fn sink() -> ExecutionState {
    install(SINK)
}

fn u128_at(bytes: &[u8], offset: usize) -> u128 {
    u128::from_le_bytes(bytes[offset..offset + 16].try_into().unwrap())
}

fn with_cycles(method: &str, arg: &[u8], cycles: u128) -> ApiType {
    ApiType::Update {
        caller: user(),
        method: method.into(),
        arg: arg.to_vec(),
        cycles_available: cycles,
        deadline: None,
    }
}

#[test]
fn argument_caller_and_replies() {
    let mut s = sink();
    assert_eq!(reply(&update(&mut s, "echo", b"ping")), b"ping");
    assert_eq!(reply(&update(&mut s, "caller", &[])), user().as_slice());
    // System tasks are called by the management canister (the empty principal).
    let o = run(&mut s, "canister_update caller_log", ApiType::Heartbeat);
    assert_eq!(o.result, Ok(None));
    assert_eq!(o.logs[0].content, Principal::management_canister().as_slice());
    let o = update(&mut s, "arg_out_of_range", b"xy");
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("exceeds the data size 2"), "{}", error_message(&o));
}

#[test]
fn responding_twice_or_with_bad_data_traps() {
    let mut s = sink();
    let o = update(&mut s, "reply_twice", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("already been responded to"));
    assert_eq!(update(&mut s, "reject", &[]).result, Ok(Some(WasmResult::Reject("hello".into()))));
    assert_eq!(update(&mut s, "append_then_reject", &[]).result, Ok(Some(WasmResult::Reject("hello".into()))));
    assert_eq!(error_code(&update(&mut s, "reject_bad_utf8", &[])), ErrorCode::CanisterContractViolation);
    let o = update(&mut s, "append_out_of_bounds", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("outside the Wasm memory"));
}

#[test]
fn inspect_message_accepts_by_calling_accept_message() {
    let mut s = sink();
    let inspect = |method: &str| ApiType::InspectMessage { caller: user(), method: method.into(), arg: vec![] };
    let o = run(&mut s, "canister_inspect_message", inspect("ok_method"));
    assert_eq!(o.result, Ok(Some(WasmResult::Reply(vec![]))));
    let o = run(&mut s, "canister_inspect_message", inspect("no_method"));
    assert_eq!(o.result, Ok(None));
    let o = run(&mut s, "canister_update accept_twice", inspect("x"));
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
}

#[test]
fn accepting_and_burning_cycles() {
    let mut s = sink();
    let o = run(&mut s, "canister_update cycles", with_cycles("cycles", &[], 1_000));
    let r = reply(&o);
    assert_eq!(u128_at(&r, 0), 300);
    assert_eq!(u128_at(&r, 16), 700);
    assert_eq!(u128_at(&r, 32), BALANCE + 300);
    assert_eq!(u128_at(&r, 48), BALANCE + 300);
    assert_eq!(o.changes.cycles_accepted, 300);

    let o = run(&mut s, "canister_update accept64", with_cycles("accept64", &[], 1_000));
    assert_eq!(u64_reply(&o), 1_000);

    let o = update(&mut s, "burn", &[]);
    let r = reply(&o);
    assert_eq!(u128_at(&r, 0), 100);
    assert_eq!(u128_at(&r, 16), BALANCE - 100);
    assert_eq!(o.changes.cycles_burned, 100);

    // Once replied, the remaining cycles are refunded: none are available.
    let o = run(&mut s, "canister_update available_after_reply", with_cycles("x", &[], 1_000));
    assert_eq!(o.logs[0].content, 0u128.to_le_bytes());
    assert_eq!(o.changes.cycles_accepted, 0);
}

#[test]
fn calls_are_assembled_and_paid_for() {
    let mut s = sink();
    let callee = canister_id_from_index(9);
    let o = update(&mut s, "call", callee.as_slice());
    let r = reply(&o);
    assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 0, "call_perform succeeds");
    let fee = CyclesConfig::for_subnet_size(13).call_cost(5 + 3);
    assert_eq!(u128_at(&r, 16), BALANCE - 1_000 - fee);
    assert_eq!(
        o.changes.calls,
        vec![OutgoingCall {
            callee,
            method: "hello".into(),
            payload: b"abc".to_vec(),
            cycles: 1_000,
            on_reply: WasmClosure { func: 1, env: 42 },
            on_reject: WasmClosure { func: 2, env: 43 },
            on_cleanup: Some(WasmClosure { func: 3, env: 44 }),
            timeout_seconds: Some(300),
        }]
    );

    // Not enough liquid cycles for the fee: call_perform returns 2 and nothing is sent.
    let mut poor = sys();
    // (call_unfunded sends "hello" with no payload.)
    poor.cycles_reserved = BALANCE - CyclesConfig::for_subnet_size(13).call_cost(5) + 1;
    let o = execute(
        &mut s,
        &EntryPoint::Export("canister_update call_unfunded".into()),
        update_api("x", callee.as_slice()),
        &poor,
        &params(),
    );
    assert_eq!(u32::from_le_bytes(reply(&o).try_into().unwrap()), 2);
    assert!(o.changes.calls.is_empty());

    // Attaching more than the liquid balance traps.
    let o = update(&mut s, "call_overdrawn", callee.as_slice());
    assert_eq!(error_code(&o), ErrorCode::CanisterOutOfCycles);

    // A call never performed takes no cycles with it (but they are gone while it is built).
    let o = update(&mut s, "call_discarded", callee.as_slice());
    assert_eq!(u128_at(&reply(&o), 0), BALANCE - 1_000);
    assert!(o.changes.calls.is_empty());

    let o = update(&mut s, "perform_without_call", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("no call under construction"));

    // A trap drops calls and certified data.
    let o = update(&mut s, "call_then_trap", callee.as_slice());
    assert_eq!(error_code(&o), ErrorCode::CanisterTrapped);
    assert_eq!(o.changes, Default::default());

    // A malformed callee id traps.
    let o = update(&mut s, "call", &[0u8; 30]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
}

#[test]
fn certified_data_timer_and_identity() {
    let mut s = sink();
    let o = update(&mut s, "certify", &[7u8; 32]);
    assert_eq!(o.changes.new_certified_data, Some(vec![7u8; 32]));
    let o = update(&mut s, "certify", &[7u8; 33]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);

    let mut timer_sys = sys();
    timer_sys.global_timer = 77;
    let o = execute(
        &mut s,
        &EntryPoint::Export("canister_update timer".into()),
        update_api("timer", &[]),
        &timer_sys,
        &params(),
    );
    assert_eq!(u64_reply(&o), 5, "global_timer_set returns the previous value");
    assert_eq!(o.changes.new_global_timer, Some(9));

    let r = reply(&update(&mut s, "identity", controller().as_slice()));
    assert_eq!(&r[..10], canister_id_from_index(7).as_slice());
    assert_eq!(r[10], 1, "running");
    assert_eq!(u64::from_le_bytes(r[11..19].try_into().unwrap()), 3, "canister version");
    assert_eq!(u64::from_le_bytes(r[19..27].try_into().unwrap()), TIME);
    assert_eq!(r[27], 1, "replicated");
    assert_eq!(r[28], 0, "the user is not a controller");
    assert_eq!(r[29], 1, "the controller is");
    assert_eq!(error_code(&update(&mut s, "bad_principal", &[])), ErrorCode::CanisterContractViolation);
    assert_eq!(reply(&update(&mut s, "root_key", &[])), b"root key DER");
}

#[test]
fn the_data_certificate_exists_in_non_replicated_queries_only() {
    let mut s = sink();
    let api = |cert: Option<Vec<u8>>| ApiType::NonReplicatedQuery {
        caller: user(),
        method: "certificate".into(),
        arg: vec![],
        data_certificate: cert,
    };
    let o = run(&mut s, "canister_query certificate", api(Some(b"cert".to_vec())));
    assert_eq!(reply(&o), b"cert");
    let o = run(&mut s, "canister_query certificate", api(None));
    assert_eq!(reply(&o), b"");
}

#[test]
fn performance_counter_debug_print_and_trap() {
    let mut s = sink();
    let r = reply(&update(&mut s, "counters", &[]));
    let first = u64::from_le_bytes(r[0..8].try_into().unwrap());
    let second = u64::from_le_bytes(r[8..16].try_into().unwrap());
    assert!(0 < first && first < second, "{first} {second}");
    // Counter 1 adds what the call context's earlier executions used.
    let earlier = SystemStateView { call_context_instructions: 1_000_000, ..sys() };
    let o = execute(&mut s, &EntryPoint::Export("canister_update counters".into()), update_api("counters", &[]), &earlier, &params());
    let r = reply(&o);
    let (now, context) = (u64::from_le_bytes(r[8..16].try_into().unwrap()), u64::from_le_bytes(r[16..24].try_into().unwrap()));
    assert!(context > 1_000_000 + now && context < 1_000_000 + now + 100, "{now} {context}");
    assert_eq!(error_code(&update(&mut s, "bad_counter", &[])), ErrorCode::CanisterContractViolation);

    // debug_print never traps, even outside the heap.
    let o = update(&mut s, "print", &[]);
    assert_eq!(reply(&o), b"");
    assert_eq!(o.logs.len(), 3);
    assert_eq!(o.logs[0].content, b"hello");
    assert!(String::from_utf8_lossy(&o.logs[1].content).contains("outside the Wasm memory"));
    assert!(o.logs.iter().all(|l| l.timestamp_nanos == TIME));

    let o = update(&mut s, "trap", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterCalledTrap);
    assert_eq!(error_message(&o), "Canister called `ic0.trap` with message: 'hello'");
    assert_eq!(o.logs.last().unwrap().content, b"[TRAP]: Canister called `ic0.trap` with message: 'hello'");
    assert_eq!(error_code(&update(&mut s, "trap_out_of_bounds", &[])), ErrorCode::CanisterCalledTrap);
}

#[test]
fn cost_functions_report_the_fees() {
    let mut s = sink();
    let r = reply(&update(&mut s, "costs", &[]));
    let cycles = CyclesConfig::for_subnet_size(13);
    assert_eq!(u128_at(&r, 0), cycles.call_cost(8));
    assert_eq!(u128_at(&r, 16), 500_000_000_000);
    assert_eq!(u128_at(&r, 32), (3_000_000 + 60_000 * 13 + 400 * 100 + 800 * 2000) * 13);
    assert_eq!(u32::from_le_bytes(r[48..52].try_into().unwrap()), 0);
    assert_eq!(u128_at(&r, 52), 26_153_846_153);
    assert_eq!(u32::from_le_bytes(r[68..72].try_into().unwrap()), 0);
    assert_eq!(u128_at(&r, 72), 10_000_000_000);
    assert_eq!(u32::from_le_bytes(r[88..92].try_into().unwrap()), 2, "unknown key name");
    assert_eq!(u32::from_le_bytes(r[108..112].try_into().unwrap()), 1, "unknown algorithm");
}

#[test]
fn no_environment_variables_are_set() {
    let mut s = sink();
    assert_eq!(reply(&update(&mut s, "env", &[])), 0u32.to_le_bytes());
    let o = update(&mut s, "env_name", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("out of bounds"));
}

/// Callbacks are table functions `(env : I) -> ()`, for both widths.
fn callbacks_module(wasm64: bool) -> String {
    let (p, mem) = if wasm64 { ("i64", "i64") } else { ("i32", "") };
    let env_byte = if wasm64 { "(i32.wrap_i64 (local.get $env))" } else { "(local.get $env)" };
    format!(
        r#"(module
          (import "ic0" "msg_arg_data_size" (func $arg_size (result {p})))
          (import "ic0" "msg_arg_data_copy" (func $arg_copy (param {p} {p} {p})))
          (import "ic0" "msg_reject_code" (func $reject_code (result i32)))
          (import "ic0" "msg_reject_msg_size" (func $reject_size (result {p})))
          (import "ic0" "msg_reject_msg_copy" (func $reject_copy (param {p} {p} {p})))
          (import "ic0" "msg_reply_data_append" (func $append (param {p} {p})))
          (import "ic0" "msg_reply" (func $reply))
          (memory {mem} 1)
          (table 4 funcref)
          (elem (i32.const 1) $on_reply $on_reject $wrong_type)
          (func $on_reply (param $env {p})
            ;; reply with the response followed by the env byte
            (call $arg_copy ({p}.const 0) ({p}.const 0) (call $arg_size))
            (i32.store8 (call $arg_size) {env_byte})
            (call $append ({p}.const 0) ({p}.add (call $arg_size) ({p}.const 1)))
            (call $reply))
          (func $on_reject (param $env {p})
            (i32.store8 ({p}.const 0) (call $reject_code))
            (call $reject_copy ({p}.const 1) ({p}.const 0) (call $reject_size))
            (call $append ({p}.const 0) ({p}.add (call $reject_size) ({p}.const 1)))
            (call $reply))
          (func $wrong_type (param i32 i32)))"#
    )
}

#[test]
fn callbacks_run_table_functions_with_their_env() {
    for wasm64 in [false, true] {
        let mut s = install(&callbacks_module(wasm64));
        let reply_api = ApiType::ReplyCallback {
            caller: user(),
            reply: b"pong".to_vec(),
            cycles_refunded: 0,
            cycles_available: 0,
            deadline: None,
            responded: false,
        };
        let closure = |func| EntryPoint::Closure(WasmClosure { func, env: 42 });
        let o = execute(&mut s, &closure(1), reply_api.clone(), &sys(), &params());
        assert_eq!(reply(&o), b"pong*", "wasm64 = {wasm64}");

        let reject_api = ApiType::RejectCallback {
            caller: user(),
            code: RejectCode::CanisterError,
            message: "oops".into(),
            cycles_refunded: 0,
            cycles_available: 0,
            deadline: None,
            responded: false,
        };
        let o = execute(&mut s, &closure(2), reject_api, &sys(), &params());
        assert_eq!(reply(&o), b"\x05oops");

        for (func, expected) in
            [(0, "uninitialized"), (3, "type mismatch"), (4, "out of bounds"), (u64::MAX, "out of bounds")]
        {
            let o = execute(&mut s, &closure(func), reply_api.clone(), &sys(), &params());
            assert_eq!(error_code(&o), ErrorCode::CanisterTrapped);
            assert!(error_message(&o).contains(expected), "{func}: {}", error_message(&o));
        }
    }
}

#[test]
fn composite_queries_keep_their_state_for_their_callbacks() {
    let s = install(
        r#"(module
          (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
          (import "ic0" "msg_reply" (func $reply))
          (memory 1)
          (table 1 funcref)
          (elem (i32.const 0) $callback)
          (func (export "canister_composite_query start") (i32.store8 (i32.const 0) (i32.const 7)))
          (func $callback (param i32) (call $append (i32.const 0) (i32.const 1)) (call $reply)))"#,
    );
    let mut copy = s.try_clone().unwrap();
    let api = ApiType::CompositeQuery { caller: user(), method: "start".into(), arg: vec![], data_certificate: None };
    assert_eq!(run(&mut copy, "canister_composite_query start", api).result, Ok(None));
    let callback = EntryPoint::Closure(WasmClosure { func: 0, env: 0 });
    let api = ApiType::CompositeReplyCallback { caller: user(), reply: vec![] };
    assert_eq!(reply(&execute(&mut copy, &callback, api, &sys(), &params())), [7]);
    // The original is untouched.
    assert_eq!(s.heap_bytes()[0], 0);
}

#[test]
fn stable_memory_in_both_widths() {
    for wasm64 in [false, true] {
        let (p, mem) = if wasm64 { ("i64", "i64") } else { ("i32", "") };
        let mut s = install(&format!(
            r#"(module
              (import "ic0" "stable64_size" (func $size (result i64)))
              (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
              (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
              (import "ic0" "stable64_read" (func $read (param i64 i64 i64)))
              (import "ic0" "msg_reply_data_append" (func $append (param {p} {p})))
              (import "ic0" "msg_reply" (func $reply))
              (memory {mem} 1)
              (data ({p}.const 100) "hello")
              (func (export "canister_update grow")
                (i64.store ({p}.const 0) (call $grow (i64.const 2)))
                (i64.store ({p}.const 8) (call $grow (i64.const 1000000000)))
                (i64.store ({p}.const 16) (call $size))
                (call $append ({p}.const 0) ({p}.const 24))
                (call $reply))
              (func (export "canister_update write_read")
                (call $write (i64.const 65533) (i64.const 100) (i64.const 5))
                (call $read (i64.const 200) (i64.const 65533) (i64.const 5))
                (call $append ({p}.const 200) ({p}.const 5))
                (call $reply))
              (func (export "canister_update read_out_of_bounds")
                (call $read (i64.const 0) (i64.const 131070) (i64.const 5)))
              (func (export "canister_update write_from_outside_heap")
                (call $write (i64.const 0) (i64.const 65534) (i64.const 5))))"#
        ));
        let mut limited = params();
        limited.stable_memory_limit = 1 << 30;
        let o =
            execute(&mut s, &EntryPoint::Export("canister_update grow".into()), update_api("g", &[]), &sys(), &limited);
        let r = reply(&o);
        assert_eq!(i64::from_le_bytes(r[0..8].try_into().unwrap()), 0);
        assert_eq!(i64::from_le_bytes(r[8..16].try_into().unwrap()), -1, "beyond the stable memory limit");
        assert_eq!(i64::from_le_bytes(r[16..24].try_into().unwrap()), 2);
        assert_eq!(reply(&update(&mut s, "write_read", &[])), b"hello");
        assert_eq!(&s.stable_bytes()[65533..65538], b"hello");
        let o = update(&mut s, "read_out_of_bounds", &[]);
        assert_eq!(error_code(&o), ErrorCode::CanisterTrapped);
        assert!(error_message(&o).contains("stable memory out of bounds"));
        assert_eq!(error_code(&update(&mut s, "write_from_outside_heap", &[])), ErrorCode::CanisterContractViolation);
    }
}

#[test]
fn legacy_32_bit_stable_memory() {
    let mut s = install(
        r#"(module
          (import "ic0" "stable_size" (func $size (result i32)))
          (import "ic0" "stable_grow" (func $grow (param i32) (result i32)))
          (import "ic0" "stable_write" (func $write (param i32 i32 i32)))
          (import "ic0" "stable_read" (func $read (param i32 i32 i32)))
          (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
          (import "ic0" "msg_reply" (func $reply))
          (memory 1)
          (data (i32.const 100) "hello")
          (func (export "canister_update run")
            (i32.store (i32.const 0) (call $grow (i32.const 1)))
            (i32.store (i32.const 4) (call $grow (i32.const 65536)))
            (i32.store (i32.const 8) (call $size))
            (call $write (i32.const 10) (i32.const 100) (i32.const 5))
            (call $read (i32.const 12) (i32.const 10) (i32.const 5))
            (call $append (i32.const 0) (i32.const 17))
            (call $reply)))"#,
    );
    let r = reply(&update(&mut s, "run", &[]));
    assert_eq!(i32::from_le_bytes(r[0..4].try_into().unwrap()), 0);
    assert_eq!(i32::from_le_bytes(r[4..8].try_into().unwrap()), -1, "more than 4 GiB");
    assert_eq!(i32::from_le_bytes(r[8..12].try_into().unwrap()), 1);
    assert_eq!(&r[12..17], b"hello");
}

#[test]
fn principals_of_any_valid_length_are_accepted() {
    let mut s = sink();
    let long = Principal::from_slice(&[9u8; 29]);
    let o = update(&mut s, "call", long.as_slice());
    assert_eq!(o.changes.calls[0].callee, long);
}
