//! Loading modules, running them, persisting and restoring their state.

mod embedder_support;

// In wasm32 builds the same tests run in headless Chromium.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use embedder_support::*;
use sha2::{Digest, Sha256};
use std::io::Write;
use tabnet_execution::hypervisor::{CanisterModule, ExecutionSnapshot, ExecutionState};
use tabnet_types::ErrorCode;

/// A counter kept in a global and (×10) in memory, which is not exported at all.
const COUNTER_32: &str = r#"
(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (global $counter (mut i32) (i32.const 0))
  (func $reply_u32 (param $v i32)
    (i32.store (i32.const 0) (local.get $v))
    (call $append (i32.const 0) (i32.const 4))
    (call $reply))
  (func $value (result i32) (i32.add (global.get $counter) (i32.load (i32.const 64))))
  (func (export "canister_update inc")
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (i32.store (i32.const 64) (i32.add (i32.load (i32.const 64)) (i32.const 10)))
    (call $reply_u32 (call $value)))
  (func (export "canister_query read") (call $reply_u32 (call $value)))
  (func (export "canister_query inc_and_read")
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (call $reply_u32 (call $value))))
"#;

/// The same counter with 64-bit memory (every ic0 pointer is an i64); memory exported as `mem`
/// the way Motoko does.
const COUNTER_64: &str = r#"
(module
  (import "ic0" "msg_reply_data_append" (func $append (param i64 i64)))
  (import "ic0" "msg_reply" (func $reply))
  (memory (export "mem") i64 1)
  (global $counter (mut i64) (i64.const 0))
  (func $reply_u64 (param $v i64)
    (i64.store (i64.const 0) (local.get $v))
    (call $append (i64.const 0) (i64.const 8))
    (call $reply))
  (func (export "canister_update inc")
    (global.set $counter (i64.add (global.get $counter) (i64.const 1)))
    (i64.store (i64.const 64) (i64.add (i64.load (i64.const 64)) (i64.const 10)))
    (call $reply_u64 (i64.add (global.get $counter) (i64.load (i64.const 64)))))
  (func (export "canister_query read")
    (call $reply_u64 (i64.add (global.get $counter) (i64.load (i64.const 64))))))
"#;

#[test]
fn counter_in_32_bit_memory_keeps_heap_and_globals_between_messages() {
    let mut state = install(COUNTER_32);
    assert!(!state.is_wasm64());
    for i in 1..=3u32 {
        let outcome = update(&mut state, "inc", &[]);
        assert_eq!(u32_reply(&outcome), 11 * i);
        assert!(outcome.instructions_used > 0);
    }
    assert_eq!(u32_reply(&query(&mut state, "read", &[])), 33);
}

#[test]
fn counter_in_64_bit_memory() {
    let mut state = install(COUNTER_64);
    assert!(state.is_wasm64());
    update(&mut state, "inc", &[]);
    assert_eq!(u64_reply(&update(&mut state, "inc", &[])), 22);
    assert_eq!(u64_reply(&query(&mut state, "read", &[])), 22);
}

#[test]
fn queries_never_change_the_state() {
    let mut state = install(COUNTER_32);
    update(&mut state, "inc", &[]);
    let hash = state.state_hash();
    assert_eq!(u32_reply(&query(&mut state, "inc_and_read", &[])), 12);
    assert_eq!(u32_reply(&query(&mut state, "inc_and_read", &[])), 12);
    assert_eq!(state.state_hash(), hash);
}

#[test]
fn gzipped_modules_load_and_the_hash_is_of_the_installed_bytes() {
    let raw = wasm(COUNTER_32);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gzipped = gz.finish().unwrap();
    assert_eq!(&gzipped[..3], &[0x1f, 0x8b, 0x08]);
    let module = CanisterModule::new(gzipped.clone()).unwrap();
    assert_eq!(module.wasm_hash(), <[u8; 32]>::from(Sha256::digest(&gzipped)));
    assert_eq!(module.bytes(), &gzipped[..]);
    let mut state = install_module(module);
    assert_eq!(u32_reply(&update(&mut state, "inc", &[])), 11);
}

#[test]
fn gzip_bombs_and_broken_gzip_are_rejected() {
    // 101 MiB of zeros compress to ~100 KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"\0asm\x01\0\0\0").unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..101 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let e = CanisterModule::new(bomb).unwrap_err();
    assert_eq!(e.code, ErrorCode::CanisterInvalidWasm);
    assert!(e.message.contains("larger than"), "{e}");

    let e = CanisterModule::new(vec![0x1f, 0x8b, 0x08, 0, 1, 2]).unwrap_err();
    assert_eq!(e.code, ErrorCode::CanisterInvalidWasm);
}

#[test]
fn invalid_modules_are_rejected_with_ic0505() {
    let cases: &[(&str, &str)] = &[
        ("(module (import \"env\" \"f\" (func)))", "\"env\" \"f\""),
        ("(module (import \"ic0\" \"no_such_function\" (func)))", "no_such_function"),
        ("(module (import \"ic0\" \"msg_reply\" (func (param i32))))", "ic0.msg_reply with type [i32] -> []"),
        ("(module (import \"ic0\" \"stable_size\" (func (result i32))) (memory i64 1))", "64-bit memory"),
        ("(module (import \"ic0\" \"msg_arg_data_size\" (func (result i32))) (memory i64 1))", "msg_arg_data_size"),
        ("(module (import \"env\" \"memory\" (memory 1)))", "not a function"),
        ("(module (func (export \"__tabnet_memory\")))", "reserved symbol"),
        ("(module (func (export \"canister_foo\")))", "canister_foo"),
        ("(module (func (export \"canister_update f\") (param i32)))", "[] -> []"),
        ("(module (func (export \"canister_init\") (result i32) (i32.const 0)))", "[] -> []"),
        (
            "(module (func $f) (export \"canister_update f\" (func $f)) (export \"canister_query f\" (func $f)))",
            "duplicate",
        ),
        ("(module (table 1 funcref) (func (drop (table.grow (ref.null func) (i32.const 1)))))", "table.grow"),
        ("(module (table 1 funcref) (func (table.set (i32.const 0) (ref.null func))))", "table.set"),
        ("(module (@custom \"icp:foo\" \"x\"))", "icp:foo"),
        ("(module (@custom \"icp:public x\" \"1\") (@custom \"icp:private x\" \"2\"))", "twice"),
        ("(module (func (export \"f\") (i32.const 1)))", "Canister's Wasm module is not valid"),
    ];
    for (wat, expected) in cases {
        let e = CanisterModule::new(wasm(wat)).err().unwrap_or_else(|| panic!("accepted: {wat}"));
        assert_eq!(e.code, ErrorCode::CanisterInvalidWasm, "{wat}");
        assert!(e.message.contains(expected), "{wat}: {e}");
    }
    for garbage in [&b""[..], b"\0asm", b"\0asm\x01\0\0\0\x01\x7f", b"hello world", b"\x1f\x8b"] {
        let e = CanisterModule::new(garbage).unwrap_err();
        assert_eq!(e.code, ErrorCode::CanisterInvalidWasm, "{garbage:?}");
    }
}

#[test]
fn modules_list_their_methods_and_metadata() {
    let m = module(
        r#"(module
          (func $f)
          (export "canister_update up" (func $f))
          (export "canister_query q" (func $f))
          (export "canister_composite_query cq" (func $f))
          (export "canister_init" (func $f))
          (export "canister_on_low_wasm_memory" (func $f))
          (export "helper" (func $f))
          (@custom "icp:public candid:service" "service : {}")
          (@custom "icp:private secret" "s")
          (@custom "name" "ignored"))"#,
    );
    assert!(m.exports_function("canister_update up"));
    assert!(m.exports_function("canister_init"));
    assert!(!m.exports_function("canister_update q"));
    assert_eq!(m.methods("canister_update").collect::<Vec<_>>(), ["up"]);
    assert_eq!(m.methods("canister_query").collect::<Vec<_>>(), ["q"]);
    assert_eq!(m.methods("canister_composite_query").collect::<Vec<_>>(), ["cq"]);
    assert_eq!(m.metadata("candid:service"), Some((true, &b"service : {}"[..])));
    assert_eq!(m.metadata("secret"), Some((false, &b"s"[..])));
    assert_eq!(m.metadata("name"), None);
    assert_eq!(m.metadata_sections().collect::<Vec<_>>(), [("candid:service", true), ("secret", false)]);
}

#[test]
fn a_missing_method_is_ic0536() {
    let mut state = install(COUNTER_32);
    let outcome = update(&mut state, "nope", &[]);
    assert_eq!(error_code(&outcome), ErrorCode::CanisterMethodNotFound);
    assert!(error_message(&outcome).contains("has no update method 'nope'"));
    // Reserved (instrumentation) exports are not entry points.
    let outcome = run(&mut state, "__tabnet_memory", update_api("x", &[]));
    assert_eq!(error_code(&outcome), ErrorCode::CanisterMethodNotFound);
}

#[test]
fn snapshot_and_restore_give_the_same_state_and_the_same_results() {
    for wat in [COUNTER_32, COUNTER_64] {
        let mut state = install(wat);
        update(&mut state, "inc", &[]);
        update(&mut state, "inc", &[]);
        let snapshot = state.snapshot();

        let mut encoded = Vec::new();
        ciborium::into_writer(&snapshot, &mut encoded).unwrap();
        let decoded: ExecutionSnapshot = ciborium::from_reader(encoded.as_slice()).unwrap();
        assert_eq!(decoded, snapshot);

        let mut restored = ExecutionState::restore(decoded).unwrap();
        assert_eq!(restored.state_hash(), state.state_hash());
        assert_eq!(restored.heap_bytes(), state.heap_bytes());
        assert_eq!(restored.global_values(), state.global_values());

        let a = update(&mut state, "inc", &[]);
        let b = update(&mut restored, "inc", &[]);
        assert_eq!(reply(&a), reply(&b));
        assert_eq!(a.instructions_used, b.instructions_used);
        assert_eq!(restored.state_hash(), state.state_hash());

        let clone = state.try_clone().unwrap();
        assert_eq!(clone.state_hash(), state.state_hash());
    }
}

#[test]
fn restore_refuses_a_snapshot_of_another_module() {
    let state = install(COUNTER_32);
    let other = module(COUNTER_64);
    let e = ExecutionState::restore_with_module(other, state.snapshot()).unwrap_err();
    assert_eq!(e.code, ErrorCode::CanisterWasmEngineError);
    let mut bad = state.snapshot();
    bad.heap.push(0);
    assert!(ExecutionState::restore(bad).is_err());
    let mut bad = state.snapshot();
    bad.globals.clear();
    assert!(ExecutionState::restore(bad).is_err());
}

/// `(start)` bumps a global and logs; it runs at installation only, never on restore.
const WITH_START: &str = r#"
(module
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (data (i32.const 16) "started")
  (global $starts (mut i32) (i32.const 0))
  (func $start
    (global.set $starts (i32.add (global.get $starts) (i32.const 1)))
    (drop (call $grow (i64.const 1)))
    (call $print (i32.const 16) (i32.const 7)))
  (start $start)
  (func (export "canister_query starts")
    (i32.store (i32.const 0) (global.get $starts))
    (call $append (i32.const 0) (i32.const 4))
    (call $reply)))
"#;

#[test]
fn start_runs_at_installation_only() {
    let (mut state, outcome) = ExecutionState::new(module(WITH_START), Vec::new(), &sys(), &params()).unwrap();
    assert!(outcome.result.is_ok());
    assert!(outcome.instructions_used > 0);
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].content, b"started");
    assert_eq!(outcome.logs[0].timestamp_nanos, TIME);
    assert_eq!(state.stable_bytes().len(), 65536);
    assert_eq!(u32_reply(&query(&mut state, "starts", &[])), 1);
    let mut restored = ExecutionState::restore(state.snapshot()).unwrap();
    assert_eq!(u32_reply(&query(&mut restored, "starts", &[])), 1);
}

#[test]
fn start_may_not_reply() {
    let m = module(r#"(module (import "ic0" "msg_reply" (func $reply)) (func $s (call $reply)) (start $s))"#);
    let outcome = ExecutionState::new(m, Vec::new(), &sys(), &params()).unwrap_err();
    assert_eq!(error_code(&outcome), ErrorCode::CanisterContractViolation);
    assert_eq!(error_message(&outcome), "\"ic0.msg_reply\" cannot be executed in start mode");
}

#[test]
fn same_inputs_give_the_same_instructions_and_state_hash() {
    let run_all = || {
        let mut state = install(COUNTER_32);
        let fuel: Vec<u64> = (0..5).map(|_| update(&mut state, "inc", &[]).instructions_used).collect();
        (fuel, state.state_hash())
    };
    let (fuel_a, hash_a) = run_all();
    let (fuel_b, hash_b) = run_all();
    assert_eq!(fuel_a, fuel_b);
    assert_eq!(hash_a, hash_b);
    // The first and the later calls cost the same: nothing is translated lazily.
    assert!(fuel_a.windows(2).all(|w| w[0] == w[1]), "{fuel_a:?}");
}

#[test]
fn upgrade_keeps_stable_memory_and_optionally_the_heap() {
    let mut old = install(COUNTER_32);
    update(&mut old, "inc", &[]);
    // Replace: a new instance with the old stable memory only.
    let (mut fresh, _) =
        ExecutionState::new(module(COUNTER_32), old.stable_bytes().to_vec(), &sys(), &params()).unwrap();
    assert_eq!(u32_reply(&query(&mut fresh, "read", &[])), 0);
    // Keep: the heap survives (globals start fresh, as the spec says).
    let (mut kept, _) = ExecutionState::new_keeping_heap(module(COUNTER_32), &old, &sys(), &params()).unwrap();
    assert_eq!(u32_reply(&query(&mut kept, "read", &[])), 10);
    // Memory widths must agree.
    let outcome = ExecutionState::new_keeping_heap(module(COUNTER_64), &old, &sys(), &params()).unwrap_err();
    assert_eq!(error_code(&outcome), ErrorCode::CanisterInvalidWasm);
    assert_eq!(old.into_stable_memory(), Vec::<u8>::new());
}

/// `data.drop` does not carry over to the next message on the IC (each message gets a fresh
/// instance); here neither.
#[test]
fn dropped_data_segments_come_back_in_the_next_message() {
    let mut state = install(
        r#"(module
          (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
          (import "ic0" "msg_reply" (func $reply))
          (memory 1)
          (data $greeting "hello")
          (func (export "canister_update copy")
            (memory.init $greeting (i32.const 0) (i32.const 0) (i32.const 5))
            (data.drop $greeting)
            (call $append (i32.const 0) (i32.const 5))
            (call $reply)))"#,
    );
    assert_eq!(reply(&update(&mut state, "copy", &[])), b"hello");
    assert_eq!(reply(&update(&mut state, "copy", &[])), b"hello");
}

#[test]
fn memory_usage_counts_heap_stable_and_module() {
    let state = install(WITH_START);
    let module_len = state.module().bytes().len() as u64;
    assert_eq!(state.memory_usage(), 65536 + 65536 + 8 + module_len);
}

/// Natively and in the browser, the same messages give the same instruction counts and the
/// same state hash — NaN bits included (the hash is hard-coded, so both builds check it).
#[test]
fn results_are_identical_on_every_platform() {
    let mut state = install(
        r#"(module
          (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
          (import "ic0" "msg_reply" (func $reply))
          (memory 1)
          (global $f (mut f64) (f64.const 1))
          (func (export "canister_update nan")
            (f32.store (i32.const 0) (f32.div (f32.const 0) (f32.const 0)))
            (f64.store (i32.const 8) (f64.sqrt (f64.const -1)))
            (global.set $f (f64.mul (global.get $f) (f64.const 1.5)))
            (call $append (i32.const 0) (i32.const 16))
            (call $reply)))"#,
    );
    let fuel: Vec<u64> = (0..3).map(|_| update(&mut state, "nan", &[]).instructions_used).collect();
    let hash: String = state.state_hash().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fuel, [74, 74, 74]);
    assert_eq!(hash, "106f1c71bf6ef12c0bd0fed06910a736c4e1cfa3fc6e79e2efd306d3617815a3");
    // The NaNs are canonical: sign clear, quiet bit set, payload zero.
    assert_eq!(&state.heap_bytes()[0..4], &0x7fc0_0000u32.to_le_bytes());
    assert_eq!(&state.heap_bytes()[8..16], &0x7ff8_0000_0000_0000u64.to_le_bytes());
}
