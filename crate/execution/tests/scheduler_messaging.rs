//! Messages between canisters, traps, limits, cycles, timers, queries and determinism.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{Encode, Nat};
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_execution::hypervisor::CanisterStatusKind;
use tabnet_execution::state::{decode_canister, LoadedWasm, ReplicatedState};
use tabnet_execution::SubnetConfig;
use tabnet_types::{canister_id_from_index, ErrorCode, RejectCode};

#[test]
fn inter_canister_call_moves_cycles_and_refunds_the_rest() {
    let mut t = Env::new();
    let a = t.deploy(&proxy_wat());
    let b = t.deploy(&proxy_wat());
    let (a0, b0) = (t.cycles(a), t.cycles(b));
    let reply = t.update(a, "forward", forward_arg(b, "receive", 1_000_000_000, 0, b"")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"ok");
    // B accepted everything and paid only for its execution; A paid the cycles and fees.
    assert!(t.cycles(b) > b0, "callee got the cycles");
    assert!(t.cycles(b) <= b0 + 1_000_000_000);
    assert!(t.cycles(a) < a0 - 1_000_000_000);

    // Nothing accepted: everything comes back as a refund.
    let reply = t.update(a, "forward", forward_arg(b, "echo", 500_000, 0, b"hi")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"hi");
    let refunded = t.query(user(), a, "refunded", vec![]).unwrap();
    assert_eq!(u64_of(&refunded), 500_000);
}

#[test]
fn rejects_propagate_with_their_codes() {
    let mut t = Env::new();
    let a = t.deploy(&proxy_wat());
    let c = t.deploy(&counter_wat());

    // Callee traps: reject 5 with the trap message.
    let r = proxy_result(&t.update(a, "forward", forward_arg(c, "trap_after_inc", 0, 0, b"")).unwrap());
    let (code, msg) = r.unwrap_err();
    assert_eq!(code, 5);
    assert!(msg.contains("boom"), "{msg}");
    assert_eq!(u64_of(&t.query(user(), c, "read", vec![]).unwrap()), 0, "the trapped increment rolled back");

    // Explicit reject: code 4.
    let (code, msg) = proxy_result(&t.update(a, "forward", forward_arg(c, "reject", 0, 0, b"")).unwrap()).unwrap_err();
    assert_eq!((code, msg.as_str()), (4, "boom"));

    // Missing canister: code 3.
    let missing = canister_id_from_index(999);
    let (code, _) = proxy_result(&t.update(a, "forward", forward_arg(missing, "x", 0, 0, b"")).unwrap()).unwrap_err();
    assert_eq!(code, 3);

    // No reply: code 5 (IC0506).
    let (code, msg) = proxy_result(&t.update(a, "forward", forward_arg(c, "no_reply", 0, 0, b"")).unwrap()).unwrap_err();
    assert_eq!(code, 5);
    assert!(msg.contains("did not produce a response"), "{msg}");

    // Stopped callee: code 5.
    t.mgmt(user(), "stop_canister", &CanisterIdRecord { canister_id: c }).unwrap();
    let (code, msg) = proxy_result(&t.update(a, "forward", forward_arg(c, "inc", 0, 0, b"")).unwrap()).unwrap_err();
    assert_eq!(code, 5);
    assert!(msg.contains("is stopped"), "{msg}");

    // The same for an ingress message that returns without replying.
    t.mgmt(user(), "start_canister", &CanisterIdRecord { canister_id: c }).unwrap();
    let err = t.update(c, "no_reply", vec![]).unwrap_err();
    assert_eq!((err.0, err.2), (RejectCode::CanisterError, ErrorCode::CanisterDidNotReply));
    let err = t.update(c, "reject", vec![]).unwrap_err();
    assert_eq!((err.0, err.1.as_str(), err.2), (RejectCode::CanisterReject, "boom", ErrorCode::CanisterRejectedMessage));
}

#[test]
fn best_effort_call_times_out_with_sys_unknown() {
    let mut t = Env::new();
    let a = t.deploy(&proxy_wat());
    // With a round budget of one instruction every round runs a single message, so the call
    // from `a` to `c` (best effort, 1 s) waits in c's queue until its deadline has passed.
    let c = t.deploy(&counter_wat());
    t.env.round_instruction_limit = 1;
    let msg = t.message(user(), a, "forward", forward_arg(c, "inc", 0, 1, b""), a);
    let id = msg.id;
    let mut done = t.env.execute_round(t.time + SECOND, [0; 32], vec![msg]);
    t.advance(SECOND);
    // Each round runs one message; the deadline (1 s) passes before c is reached.
    for _ in 0..20 {
        if let Some((_, o)) = done.iter().find(|(m, _)| *m == id) {
            let reply = to_outcome(o.clone()).unwrap();
            let (code, _) = proxy_result(&reply).unwrap_err();
            assert_eq!(code, 6, "SYS_UNKNOWN");
            return;
        }
        t.advance(2 * SECOND);
        done = t.env.execute_round(t.time, [0; 32], vec![]);
    }
    panic!("best-effort call never completed");
}

#[test]
fn trap_rolls_back_memory_and_reports_ic0503() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "inc", vec![]).unwrap();
    let err = t.update(id, "trap_after_inc", vec![]).unwrap_err();
    assert_eq!((err.0, err.2), (RejectCode::CanisterError, ErrorCode::CanisterCalledTrap));
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 1);
}

#[test]
fn endless_loop_hits_the_instruction_limit() {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_instructions_per_update = 5_000_000;
    config.max_instructions_per_query = 5_000_000;
    let mut t = Env::with_config(config);
    let id = t.deploy(&loop_wat());
    let before = t.cycles(id);
    let err = t.update(id, "spin", vec![]).unwrap_err();
    assert_eq!((err.0, err.2), (RejectCode::CanisterError, ErrorCode::CanisterInstructionLimitExceeded));
    assert!(t.cycles(id) < before - 5_000_000, "the instructions were paid for");
    let err = t.query(user(), id, "spin_query", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInstructionLimitExceeded);
}

#[test]
fn global_timer_fires_once_when_due() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "set_timer", (5 * SECOND).to_le_bytes().to_vec()).unwrap();
    t.tick();
    assert_eq!(u64_of(&t.query(user(), id, "fired", vec![]).unwrap()), 0);
    t.advance(5 * SECOND);
    t.tick();
    assert_eq!(u64_of(&t.query(user(), id, "fired", vec![]).unwrap()), 1);
    t.advance(60 * SECOND);
    t.tick();
    assert_eq!(u64_of(&t.query(user(), id, "fired", vec![]).unwrap()), 1, "the timer was reset after firing");
    assert_eq!(t.env.state().canister(&id).unwrap().system.global_timer, 0);
}

#[test]
fn frozen_canister_rejects_and_recovers_after_top_up() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    // A freezing threshold of 30 billion years makes the balance too small.
    let settings = CanisterSettings { freezing_threshold: Some(Nat::from(1_000_000_000_000_000_000u64)), ..Default::default() };
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
        .unwrap();
    let msg = t.message(user(), id, "inc", vec![], id);
    let err = t.env.should_accept_ingress(&msg, t.time).unwrap_err();
    assert_eq!((err.reject_code(), err.code), (RejectCode::SysTransient, ErrorCode::CanisterOutOfCycles));
    let err = t.update(id, "inc", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterOutOfCycles);
    assert!(t.env.state().canister(&id).is_some(), "a frozen canister is kept");

    let idle_per_day: u128 = t.status(id).idle_cycles_burned_per_day.0.try_into().unwrap();
    let needed = idle_per_day / 86_400 * 1_000_000_000_000_000_000 * 2;
    let top_up = ProvisionalTopUpCanisterArgs { canister_id: id, amount: Nat::from(needed) };
    t.mgmt(user(), "provisional_top_up_canister", &top_up).unwrap();
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 1);
}

#[test]
fn ingress_pays_fees_and_idle_canisters_pay_storage() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let before = t.cycles(id);
    t.update(id, "inc", vec![]).unwrap();
    let after_call = t.cycles(id);
    let fees = t.env.config().cycles.clone();
    assert!(before - after_call >= fees.ingress_induction_cost(3) + fees.update_message_execution_fee);
    t.advance(3600 * SECOND);
    t.tick();
    assert!(t.cycles(id) < after_call, "storage was charged for the hour");
}

#[test]
fn inspect_message_filters_ingress() {
    let src = format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (func (export "canister_inspect_message")
    ;; accept only methods whose name is 2 bytes long ("ok")
    (if (i32.eq (call $method_size) (i32.const 2)) (then (call $accept_message))))
  (func (export "canister_update ok") (call $reply))
  (func (export "canister_update nope") (call $reply))
)"#
    );
    let mut t = Env::new();
    let id = t.deploy(&wat(&src));
    let ok = t.message(user(), id, "ok", vec![], id);
    assert!(t.env.should_accept_ingress(&ok, t.time).is_ok());
    let nope = t.message(user(), id, "nope", vec![], id);
    assert_eq!(t.env.should_accept_ingress(&nope, t.time).unwrap_err().code, ErrorCode::CanisterRejectedMessage);
}

#[test]
fn composite_query_calls_other_queries() {
    let src = format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (data (i32.const 100) "read")
  ;; argument: the callee's principal bytes
  (func (export "canister_composite_query ask")
    (call $arg_copy (i32.const 0) (i32.const 0) (call $arg_size))
    (call $call_new (i32.const 0) (call $arg_size) (i32.const 100) (i32.const 4)
                    (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
    (drop (call $call_perform)))
  (func $on_reply (param i32)
    (call $arg_copy (i32.const 200) (i32.const 0) (call $arg_size))
    (call $reply_append (i32.const 200) (call $arg_size))
    (call $reply))
  (func $on_reject (param i32)
    (call $reject (i32.const 100) (i32.const 4)))
)"#
    );
    let mut t = Env::new();
    let asker = t.deploy(&wat(&src));
    let counter = t.deploy(&counter_wat());
    t.update(counter, "inc", vec![]).unwrap();
    let reply = t.query(user(), asker, "ask", counter.as_slice().to_vec()).unwrap();
    assert_eq!(u64_of(&reply), 1);
    // A missing callee: the reject callback runs.
    let err = t.query(user(), asker, "ask", canister_id_from_index(4242).as_slice().to_vec()).unwrap_err();
    assert_eq!(err.0, RejectCode::CanisterReject);
    // Composite queries cannot run as updates.
    let err = t.update(asker, "ask", counter.as_slice().to_vec()).unwrap_err();
    assert_eq!(err.2, ErrorCode::CompositeQueryCalledInReplicatedMode);
}

#[test]
fn raw_rand_and_create_canister_from_a_canister() {
    let mut t = Env::new();
    let a = t.deploy(&proxy_wat());
    let mgmt = tabnet_types::MANAGEMENT_CANISTER;
    let reply = proxy_result(&t.update(a, "forward", forward_arg(mgmt, "raw_rand", 0, 0, &Encode!().unwrap())).unwrap()).unwrap();
    let bytes: serde_bytes::ByteBuf = candid::decode_one(&reply).unwrap();
    assert_eq!(bytes.len(), 32);
    let reply2 = proxy_result(&t.update(a, "forward", forward_arg(mgmt, "raw_rand", 0, 0, &Encode!().unwrap())).unwrap()).unwrap();
    assert_ne!(reply, reply2);

    let fee = t.env.config().cycles.creation_fee() as u64;
    let args = Encode!(&CreateCanisterArgs::default()).unwrap();
    let (code, _) = proxy_result(&t.update(a, "forward", forward_arg(mgmt, "create_canister", 1000, 0, &args)).unwrap()).unwrap_err();
    assert_eq!(code, 4, "IC0403: not enough cycles for the creation fee");
    let reply = proxy_result(&t.update(a, "forward", forward_arg(mgmt, "create_canister", fee + 1_000_000, 0, &args)).unwrap()).unwrap();
    let created: CreateCanisterResult = candid::decode_one(&reply).unwrap();
    assert_eq!(t.cycles(created.canister_id), 1_000_000);
    assert_eq!(t.env.state().controllers(&created.canister_id).unwrap(), &[a]);
}

fn run_script(t: &mut Env) {
    let a = t.deploy(&proxy_wat());
    let c = t.deploy(&counter_wat());
    t.update(c, "inc", vec![]).unwrap();
    t.update(a, "forward", forward_arg(c, "inc", 10_000, 0, b"")).unwrap();
    t.update(c, "set_timer", SECOND.to_le_bytes().to_vec()).unwrap();
    let _ = t.update(c, "trap_after_inc", vec![]);
    t.advance(10 * SECOND);
    t.tick();
}

#[test]
fn same_rounds_give_the_same_state_hash_and_state_survives_encoding() {
    let mut one = Env::new();
    let mut two = Env::new();
    run_script(&mut one);
    run_script(&mut two);
    assert_eq!(one.env.state_hash(), two.env.state_hash());

    // Persistence: encode, decode, same hash; then the decoded state keeps working.
    let dirty = one.env.state_mut().take_dirty();
    assert_eq!(dirty.len(), 2);
    let meta = one.env.state().encode_metadata();
    let canisters = dirty.iter().map(|id| {
        let stored = one.env.state().stored_canister(id).unwrap();
        decode_canister(&stored.record, |layout| {
            let wasm = stored.wasm.as_ref().unwrap();
            assert_eq!(layout.module_hash, wasm.module_hash);
            Ok(LoadedWasm { module: wasm.module.to_vec(), heap: wasm.heap.to_vec(), stable: wasm.stable.to_vec() })
        }, |_| Err("no snapshots here".into()))
        .unwrap()
    });
    let restored = ReplicatedState::decode(&meta, canisters.collect::<Vec<_>>()).unwrap();
    assert_eq!(restored.state_hash(), one.env.state_hash());
    assert!(one.env.state_mut().take_dirty().is_empty());

    let c = *one.env.state().canister_ids().nth(1).unwrap();
    one.update(c, "inc", vec![]).unwrap();
    assert_ne!(one.env.state_hash(), two.env.state_hash());
    assert!(one.env.state_mut().take_dirty().contains(&c));
}

/// Runs one round at `t.time + 1 s` with the given messages; returns the outcomes by id.
fn round(t: &mut Env, msgs: Vec<tabnet_execution::scheduler::IngressMessage>) -> Vec<([u8; 32], Outcome)> {
    t.advance(SECOND);
    t.env.execute_round(t.time, [7; 32], msgs).into_iter().map(|(id, o)| (id, to_outcome(o))).collect()
}

fn outcome_of(done: &[([u8; 32], Outcome)], id: [u8; 32]) -> Option<Outcome> {
    done.iter().find(|(m, _)| *m == id).map(|(_, o)| o.clone())
}

#[test]
fn stopping_waits_for_open_call_contexts_and_start_cancels_it() {
    for cancel in [false, true] {
        let mut t = Env::new();
        let a = t.deploy(&proxy_wat());
        let c = t.deploy(&counter_wat());
        // One message per round, so that a's call context stays open across rounds.
        t.env.round_instruction_limit = 1;
        let mgmt = tabnet_types::MANAGEMENT_CANISTER;
        let rec = Encode!(&CanisterIdRecord { canister_id: a }).unwrap();

        let forward = t.message(user(), a, "forward", forward_arg(c, "inc", 0, 0, b""), a);
        round(&mut t, vec![forward.clone()]);
        let stop = t.message(user(), mgmt, "stop_canister", rec.clone(), a);
        let done = round(&mut t, vec![stop.clone()]);
        assert!(outcome_of(&done, stop.id).is_none(), "stop waits for the open call context");
        let status = |t: &Env| t.env.state().canister(&a).unwrap().system.status.kind();
        assert_eq!(status(&t), CanisterStatusKind::Stopping);
        let msg = t.message(user(), a, "receive", vec![], a);
        assert_eq!(t.env.should_accept_ingress(&msg, t.time).unwrap_err().code, ErrorCode::CanisterStopping);

        if cancel {
            let start = t.message(user(), mgmt, "start_canister", rec.clone(), a);
            let done = round(&mut t, vec![start.clone()]);
            let err = outcome_of(&done, stop.id).expect("stop answered").unwrap_err();
            assert_eq!((err.0, err.2), (RejectCode::CanisterError, ErrorCode::CanisterStoppingCancelled));
            assert!(outcome_of(&done, start.id).unwrap().is_ok());
            assert_eq!(status(&t), CanisterStatusKind::Running);
        } else {
            let mut stopped = None;
            for _ in 0..10 {
                let done = round(&mut t, vec![]);
                if let Some(o) = outcome_of(&done, stop.id) {
                    stopped = Some(o);
                    break;
                }
            }
            assert!(stopped.expect("stop completes").is_ok());
            assert_eq!(status(&t), CanisterStatusKind::Stopped);
        }
    }
}
