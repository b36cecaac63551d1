//! Traps and limits: every failure rolls heap, stable memory and globals back and carries the
//! IC's error code.

mod embedder_support;

// In wasm32 builds the same tests run in headless Chromium.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use embedder_support::*;
use tabnet_execution::hypervisor::{execute, ApiType, EntryPoint, ExecutionParameters, ExecutionState};
use tabnet_types::ErrorCode;

const MODULE: &str = r#"
(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "stable64_grow" (func $stable_grow (param i64) (result i64)))
  (import "ic0" "stable64_write" (func $stable_write (param i64 i64 i64)))
  (memory 1)
  (data (i32.const 100) "boom")
  (global $g (mut i64) (i64.const 0))
  (func $mutate_everything
    (global.set $g (i64.add (global.get $g) (i64.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (drop (call $stable_grow (i64.const 1)))
    (call $stable_write (i64.const 0) (i64.const 100) (i64.const 4))
    (drop (memory.grow (i32.const 3))))
  (func (export "canister_update ok") (call $mutate_everything) (call $reply))
  (func (export "canister_update trap")
    (call $mutate_everything)
    (call $print (i32.const 100) (i32.const 4))
    (call $trap (i32.const 100) (i32.const 4)))
  (func (export "canister_update unreachable") (call $mutate_everything) (unreachable))
  (func (export "canister_update out_of_bounds") (drop (i32.load (i32.const 1000000000))))
  (func (export "canister_update divide_by_zero") (drop (i32.div_u (i32.const 1) (i32.const 0))))
  (func $recurse (call $recurse))
  (func (export "canister_update recurse") (call $recurse))
  (func (export "canister_update loop") (call $mutate_everything) (loop $l (br $l)))
  (func (export "canister_update grow")
    ;; grow by the number of pages in the argument's first byte... fixed at 100 pages
    (i32.store (i32.const 0) (memory.grow (i32.const 100)))
    (call $append (i32.const 0) (i32.const 4))
    (call $reply))
  (func (export "canister_update grow_or_trap")
    (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then (unreachable)))
    (call $reply))
  (func (export "canister_query grow_q") (i32.store (i32.const 0) (memory.grow (i32.const 100)))
    (call $append (i32.const 0) (i32.const 4))
    (call $reply))
  (func (export "canister_update big_reply") (call $append (i32.const 0) (i32.const 65536)) (call $reply)))
"#;

fn state() -> ExecutionState {
    let mut s = install(MODULE);
    assert_eq!(reply(&update(&mut s, "ok", &[])), b"");
    s
}

fn assert_rolled_back(s: &ExecutionState, before: [u8; 32], heap_len: usize) {
    assert_eq!(s.state_hash(), before);
    assert_eq!(s.heap_bytes().len(), heap_len);
}

#[test]
fn an_explicit_trap_rolls_everything_back_and_keeps_the_logs() {
    let mut s = state();
    let (before, heap) = (s.state_hash(), s.heap_bytes().len());
    let o = update(&mut s, "trap", &[]);
    assert_eq!(error_code(&o), ErrorCode::CanisterCalledTrap);
    assert_eq!(error_message(&o), "Canister called `ic0.trap` with message: 'boom'");
    assert_eq!(o.logs.len(), 2);
    assert_eq!(o.logs[0].content, b"boom");
    assert!(o.changes.calls.is_empty());
    assert_rolled_back(&s, before, heap);
    // And the state still works.
    update(&mut s, "ok", &[]);
    assert_ne!(s.state_hash(), before);
}

#[test]
fn wasm_traps_are_ic0502() {
    let mut s = state();
    let (before, heap) = (s.state_hash(), s.heap_bytes().len());
    for (method, message) in [
        ("unreachable", "Canister trapped: unreachable"),
        ("out_of_bounds", "Canister trapped: heap out of bounds"),
        ("divide_by_zero", "Canister trapped: integer division by 0"),
        ("recurse", "Canister trapped: stack overflow"),
    ] {
        let o = update(&mut s, method, &[]);
        assert_eq!(error_code(&o), ErrorCode::CanisterTrapped, "{method}");
        assert_eq!(error_message(&o), message);
        assert_eq!(String::from_utf8_lossy(&o.logs.last().unwrap().content), format!("[TRAP]: {message}"));
        assert_rolled_back(&s, before, heap);
    }
}

#[test]
fn the_instruction_limit_is_ic0522() {
    let mut s = state();
    let (before, heap) = (s.state_hash(), s.heap_bytes().len());
    let mut p = params();
    p.instruction_limit = 5_000_000;
    let o = execute(&mut s, &EntryPoint::Export("canister_update loop".into()), update_api("loop", &[]), &sys(), &p);
    assert_eq!(error_code(&o), ErrorCode::CanisterInstructionLimitExceeded);
    assert_eq!(error_message(&o), "Canister exceeded the limit of 5000000 instructions for single message execution.");
    assert_eq!(o.instructions_used, 5_000_000);
    assert_rolled_back(&s, before, heap);
}

#[test]
fn system_api_calls_cost_instructions_too() {
    let mut s = install(
        r#"(module
          (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
          (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
          (memory 1)
          (func (export "canister_update write")
            (drop (call $grow (i64.const 16)))
            (loop $l (call $write (i64.const 0) (i64.const 0) (i64.const 65536)) (br $l))))"#,
    );
    let mut p = params();
    p.instruction_limit = 10_000_000;
    let o = execute(&mut s, &EntryPoint::Export("canister_update write".into()), update_api("w", &[]), &sys(), &p);
    assert_eq!(error_code(&o), ErrorCode::CanisterInstructionLimitExceeded);
    assert!(s.stable_bytes().is_empty(), "rolled back");
}

fn with_heap_limit(bytes: u64) -> ExecutionParameters {
    let mut p = params();
    p.wasm_memory_limit = bytes;
    p
}

#[test]
fn growing_the_heap_past_the_wasm_memory_limit() {
    let mut s = state();
    let heap = s.heap_bytes().len();
    let limit = 50 * 65536;
    let run_with_limit = |s: &mut ExecutionState, export: &str, api| {
        execute(s, &EntryPoint::Export(export.into()), api, &sys(), &with_heap_limit(limit))
    };
    // memory.grow fails (-1); a canister that copes carries on.
    let o = run_with_limit(&mut s, "canister_update grow", update_api("grow", &[]));
    assert_eq!(i32::from_le_bytes(reply(&o).try_into().unwrap()), -1);
    let before = s.state_hash();
    // A canister that traps over it fails with IC0539, as on the IC; the trap is logged.
    let o = run_with_limit(&mut s, "canister_update grow_or_trap", update_api("grow_or_trap", &[]));
    assert_eq!(error_code(&o), ErrorCode::CanisterWasmMemoryLimitExceeded);
    assert!(error_message(&o).starts_with(&format!(
        "Canister exceeded its current Wasm memory limit of {limit} bytes. The peak Wasm memory usage was {} bytes.",
        heap + 100 * 65536
    )));
    assert_eq!(o.logs[0].content, b"[TRAP]: Canister trapped: unreachable");
    assert_rolled_back(&s, before, heap);
    // Queries are not held to wasm_memory_limit: the trap is reported as it is.
    let o = run_with_limit(&mut s, "canister_update grow_or_trap", query_api("grow_or_trap", &[]));
    assert_eq!(error_code(&o), ErrorCode::CanisterTrapped);
    // Within the limit, growth works and is kept.
    let o = update(&mut s, "grow", &[]);
    assert_eq!(u32_reply(&o) as usize, heap / 65536);
    assert_eq!(s.heap_bytes().len(), heap + 100 * 65536);
}

#[test]
fn a_reply_beyond_the_limit_traps() {
    let mut s = state();
    let mut p = params();
    p.max_reply_bytes = 1000;
    let o = execute(&mut s, &EntryPoint::Export("canister_update big_reply".into()), update_api("x", &[]), &sys(), &p);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("application payload size (65536) cannot be larger than 1000"));
}

#[test]
fn queries_and_inspect_message_roll_back_even_on_success() {
    let mut s = state();
    let (before, heap) = (s.state_hash(), s.heap_bytes().len());
    for api in [
        query_api("ok", &[]),
        ApiType::ReplicatedQuery { caller: user(), method: "ok".into(), arg: vec![], cycles_available: 0 },
    ] {
        assert_eq!(reply(&run(&mut s, "canister_update ok", api)), b"");
        assert_rolled_back(&s, before, heap);
    }
    let inspect = ApiType::InspectMessage { caller: user(), method: "ok".into(), arg: vec![] };
    let o = run(&mut s, "canister_update ok", inspect);
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation, "stable64_* is fine, msg_reply is not here");
    assert_rolled_back(&s, before, heap);
}

#[test]
fn rollbacks_return_to_the_last_committed_state() {
    // The embedder remembers the committed heap page by page; each rollback must land on the
    // state of the latest successful update, not an older one.
    let mut s = state();
    for _ in 0..3 {
        assert_eq!(reply(&update(&mut s, "ok", &[])), b"");
        let (committed, heap) = (s.state_hash(), s.heap_bytes().len());
        assert_eq!(reply(&run(&mut s, "canister_update ok", query_api("ok", &[]))), b"");
        assert_rolled_back(&s, committed, heap);
        assert_eq!(error_code(&update(&mut s, "trap", &[])), ErrorCode::CanisterCalledTrap);
        assert_rolled_back(&s, committed, heap);
        run(&mut s, "canister_query grow_q", query_api("grow_q", &[]));
        assert_rolled_back(&s, committed, heap);
    }
}

#[test]
fn failures_are_deterministic() {
    let failing = || {
        let mut s = state();
        let mut p = params();
        p.instruction_limit = 1_234_567;
        let o =
            execute(&mut s, &EntryPoint::Export("canister_update loop".into()), update_api("loop", &[]), &sys(), &p);
        let trapped = update(&mut s, "unreachable", &[]);
        (o.instructions_used, trapped.instructions_used, s.state_hash())
    };
    assert_eq!(failing(), failing());
}

#[test]
fn oversized_initial_memories_and_tables_are_refused_at_installation() {
    let m = embedder_support::module("(module (memory 100))");
    let outcome = ExecutionState::new(m, Vec::new(), &sys(), &with_heap_limit(10 * 65536)).unwrap_err();
    assert_eq!(error_code(&outcome), ErrorCode::CanisterInvalidWasm);
    assert!(error_message(&outcome).contains("instantiation failed"), "{}", error_message(&outcome));
    let m = embedder_support::module("(module (table 100000000 funcref))");
    let outcome = ExecutionState::new(m, Vec::new(), &sys(), &params()).unwrap_err();
    assert_eq!(error_code(&outcome), ErrorCode::CanisterInvalidWasm);
}

/// A canister that prints in a loop: `n` (arg, u32 LE) lines of `len` (arg, u32 LE) bytes.
const PRINTER: &str = r#"
(module
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 1)
  (func $print_loop
    (local $i i32)
    (call $arg_copy (i32.const 0) (i32.const 0) (i32.const 8))
    (loop $l
      (call $print (i32.const 16) (i32.load (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.load (i32.const 0))))))
  (func (export "canister_update print") (call $print_loop) (call $reply))
  (func (export "canister_update print_and_trap") (call $print_loop) (call $trap (i32.const 16) (i32.const 4))))
"#;

fn print_arg(lines: u32, len: u32) -> Vec<u8> {
    [lines.to_le_bytes(), len.to_le_bytes()].concat()
}

#[test]
fn printing_in_a_loop_keeps_a_bounded_log() {
    // Host memory held for one message's logs stays at the IC's 4 KiB however much the
    // canister prints: many empty lines, or many full ones (64 KiB-long, cut to 4 KiB).
    let mut s = install(PRINTER);
    let bytes = |o: &tabnet_execution::hypervisor::ExecutionOutcome| {
        // Each record counts its content and 16 bytes (index and timestamp), as the IC counts it.
        o.logs.iter().map(|l| l.content.len() + 16).sum::<usize>()
    };
    for (lines, len) in [(300_000, 0), (5_000, 65_536), (3, 10)] {
        for method in ["print", "print_and_trap"] {
            let o = update(&mut s, method, &print_arg(lines, len));
            assert!(bytes(&o) <= 4096, "{method} {lines}×{len}: {} records, {} bytes", o.logs.len(), bytes(&o));
            assert!(!o.logs.is_empty());
            if method == "print_and_trap" {
                assert!(o.logs.last().unwrap().content.starts_with(b"[TRAP]"), "the trap is the last record");
            }
        }
    }
    // A few short lines are all kept.
    assert_eq!(update(&mut s, "print", &print_arg(3, 10)).logs.len(), 3);
}

#[test]
fn a_reject_message_is_held_to_the_reply_limit() {
    // A reject message is a response like a reply: without a bound a canister could make the
    // node keep (and certify) a message as large as its heap.
    let mut s = install(
        r#"(module
          (import "ic0" "msg_reject" (func $reject (param i32 i32)))
          (memory 64)
          (func (export "canister_update reject_big") (call $reject (i32.const 0) (i32.const 3000000)))
          (func (export "canister_update reject_at_limit") (call $reject (i32.const 0) (i32.const 1000))))"#,
    );
    let mut p = params();
    p.max_reply_bytes = 1000;
    let run = |s: &mut ExecutionState, method: &str| {
        execute(s, &EntryPoint::Export(format!("canister_update {method}")), update_api(method, &[]), &sys(), &p)
    };
    let o = run(&mut s, "reject_big");
    assert_eq!(error_code(&o), ErrorCode::CanisterContractViolation);
    assert!(error_message(&o).contains("3000000"), "{}", error_message(&o));
    let o = run(&mut s, "reject_at_limit");
    assert!(matches!(o.result, Ok(Some(tabnet_execution::hypervisor::WasmResult::Reject(m))) if m.len() == 1000));
}
