//! Hostile canisters and users against the scheduler: what one of them can make the node hold
//! (chunk store, queues, ingress) is bounded, cycles never overflow, and system tasks stay
//! within the round's budget.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{Encode, Nat};
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_execution::SubnetConfig;
use tabnet_types::{ErrorCode, MANAGEMENT_CANISTER};

const MIB: usize = 1 << 20;

/// `spam` takes `[count u32][size u32][method_len u8][method]` and makes `count` calls to itself,
/// each with `size` bytes of argument; it replies `[queued u32][refused u32]` (what
/// `call_perform` returned). `sink` counts the calls that arrive (`sunk`, a query, reads it);
/// `rejects` counts reject callbacks.
fn spammer_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "canister_self_size" (func $self_size (result i32)))
  (import "ic0" "canister_self_copy" (func $self_copy (param i32 i32 i32)))
  (memory (export "memory") 40)
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (func $on_reply (param i32))
  (func $on_reject (param i32)
    (i64.store (i32.const 48) (i64.add (i64.load (i32.const 48)) (i64.const 1))))
  (func (export "canister_update spam")
    (local $i i32)
    (call $arg_copy (i32.const 100) (i32.const 0) (call $arg_size))
    (call $self_copy (i32.const 200) (i32.const 0) (call $self_size))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 100))))
        (call $call_new (i32.const 200) (call $self_size)
                        (i32.const 109) (i32.load8_u (i32.const 108))
                        (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
        (call $call_data_append (i32.const 65536) (i32.load (i32.const 104)))
        (if (i32.eqz (call $call_perform))
          (then (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
          (else (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply))
  (func (export "canister_update sink")
    (i64.store (i32.const 40) (i64.add (i64.load (i32.const 40)) (i64.const 1)))
    (call $reply))
  (func (export "canister_query sunk") (call $reply_append (i32.const 40) (i32.const 8)) (call $reply))
  (func (export "canister_query rejects") (call $reply_append (i32.const 48) (i32.const 8)) (call $reply))
)"#
    ))
}

fn spam_arg(count: u32, size: u32, method: &str) -> Vec<u8> {
    let mut a = [count.to_le_bytes(), size.to_le_bytes()].concat();
    a.push(method.len() as u8);
    a.extend_from_slice(method.as_bytes());
    a
}

fn queued_and_refused(reply: &[u8]) -> (u32, u32) {
    (u32::from_le_bytes(reply[..4].try_into().unwrap()), u32::from_le_bytes(reply[4..8].try_into().unwrap()))
}

#[test]
fn a_message_may_queue_at_most_500_calls() {
    // The IC's output queue holds 500 requests; beyond it `call_perform` fails with
    // SYS_TRANSIENT (2) and nothing is queued.
    let mut t = Env::new();
    let a = t.deploy(&spammer_wat());
    let reply = t.update(a, "spam", spam_arg(2_000, 10, "sink")).unwrap();
    assert_eq!(queued_and_refused(&reply), (500, 1_500));
    for _ in 0..5 {
        t.tick();
    }
    assert_eq!(u64_of(&t.query(user(), a, "sunk", vec![]).unwrap()), 500);
}

#[test]
fn the_bytes_a_message_may_send_are_bounded() {
    // 100 calls of 1 MiB each would hold 100 MiB of host memory until the message ends; the
    // calls beyond 50 MiB a message are refused with SYS_TRANSIENT.
    let mut t = Env::new();
    let a = t.deploy(&spammer_wat());
    let reply = t.update(a, "spam", spam_arg(100, MIB as u32, "sink")).unwrap();
    let (queued, refused) = queued_and_refused(&reply);
    assert_eq!(queued, (50 * MIB / (MIB + 4)) as u32);
    assert_eq!(queued + refused, 100);
}

#[test]
fn an_oversized_chunked_module_is_refused_before_it_is_assembled() {
    // One 1 MiB chunk named 101 times would assemble into 101 MiB (and a list of hashes within
    // the Candid quota into hundreds of GiB): the size is checked from the chunks' sizes first.
    let mut t = Env::new();
    let id = t.create(None);
    let chunk = vec![0x61u8; MIB];
    let reply = t.mgmt(user(), "upload_chunk", &UploadChunkArgs { canister_id: id, chunk }).unwrap();
    let hash: ChunkHash = candid::decode_one(&reply).unwrap();
    let args = InstallChunkedCodeArgs {
        mode: CanisterInstallMode::Install,
        target_canister: id,
        store_canister: None,
        chunk_hashes_list: vec![hash; 101],
        wasm_module_hash: vec![0; 32],
        arg: vec![],
        sender_canister_version: None,
    };
    let (_, message, code) = t.mgmt(user(), "install_chunked_code", &args).unwrap_err();
    assert_eq!(code, ErrorCode::CanisterContractViolation);
    assert!(message.contains("exceeds the maximum"), "{message}");
}

#[test]
fn cycles_never_overflow() {
    // A canister holding nearly u128::MAX cycles accepts more, gets a deposit and a top-up: its
    // balance saturates (the IC's cycles arithmetic saturates) instead of panicking or wrapping.
    let mut t = Env::new();
    let rich = t.create(Some(u128::MAX));
    t.install(rich, &proxy_wat());
    let b = t.deploy(&proxy_wat());
    let reply = t.update(b, "forward", forward_arg(rich, "receive", 1_000_000_000_000, 0, b"")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"ok");
    assert!(t.cycles(rich) > u128::MAX - 1_000_000_000_000);
    let deposit = Encode!(&CanisterIdRecord { canister_id: rich }).unwrap();
    let reply = t.update(b, "forward", forward_arg(MANAGEMENT_CANISTER, "deposit_cycles", 1_000_000_000_000, 0, &deposit));
    assert!(proxy_result(&reply.unwrap()).is_ok());
    assert_eq!(t.cycles(rich), u128::MAX);
    let top_up = ProvisionalTopUpCanisterArgs { canister_id: rich, amount: Nat::from(u128::MAX) };
    t.mgmt(user(), "provisional_top_up_canister", &top_up).unwrap();
    assert_eq!(t.cycles(rich), u128::MAX);
    // It can still spend: send cycles on and get the refund back.
    let reply = t.update(rich, "forward", forward_arg(b, "echo", u64::MAX, 0, b"hi")).unwrap();
    assert_eq!(proxy_result(&reply).unwrap(), b"hi");
    assert!(t.cycles(rich) > u128::MAX / 2);
}

#[test]
fn idle_charges_for_huge_allocations_and_long_gaps_do_not_overflow() {
    // Storage for 2^48 bytes over ~300 years of block time overflows a u128 product.
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let settings = CanisterSettings {
        memory_allocation: Some(Nat::from(1u64 << 48)),
        freezing_threshold: Some(Nat::from(u64::MAX)),
        ..Default::default()
    };
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
        .unwrap();
    t.advance(15_000_000_000_000_000_000);
    t.tick();
    // Everything was charged; the canister could not pay and was uninstalled, as on the IC.
    assert_eq!(t.cycles(id), 0);
    assert!(t.env.state().canister(&id).unwrap().execution.is_none());
}

#[test]
fn the_chunk_store_counts_toward_the_subnets_memory() {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.subnet_memory_capacity = 3 * MIB as u64 + MIB as u64 / 2;
    let mut t = Env::with_config(config);
    let id = t.create(None);
    for i in 0..3u8 {
        t.mgmt(user(), "upload_chunk", &UploadChunkArgs { canister_id: id, chunk: vec![i; MIB] }).unwrap();
    }
    let (_, message, code) =
        t.mgmt(user(), "upload_chunk", &UploadChunkArgs { canister_id: id, chunk: vec![9; MIB] }).unwrap_err();
    assert_eq!(code, ErrorCode::SubnetOversubscribed, "{message}");
    // The chunks are paid for as the canister's memory, and reported so.
    let status = t.status(id);
    assert_eq!(status.memory_metrics.wasm_chunk_store_size, Nat::from(3 * MIB));
    // Clearing the store frees the memory.
    t.mgmt(user(), "clear_chunk_store", &CanisterIdRecord { canister_id: id }).unwrap();
    t.mgmt(user(), "upload_chunk", &UploadChunkArgs { canister_id: id, chunk: vec![9; MIB] }).unwrap();
}

#[test]
fn queued_calls_count_toward_the_subnets_memory() {
    // Calls waiting in queues hold memory; once the subnet's capacity is reached further calls
    // come back as SYS_TRANSIENT rejects instead of being queued.
    let mut config = SubnetConfig::for_subnet_size(13);
    config.subnet_memory_capacity = 8 * MIB as u64;
    let mut t = Env::with_config(config);
    let a = t.deploy(&spammer_wat());
    let used = t.env.state().canister(&a).unwrap().memory_usage();
    let free = 8 * MIB as u64 - used;
    let reply = t.update(a, "spam", spam_arg(10, MIB as u32, "sink")).unwrap();
    assert_eq!(queued_and_refused(&reply), (10, 0), "the embedder queues them");
    for _ in 0..5 {
        t.tick();
    }
    let sunk = u64_of(&t.query(user(), a, "sunk", vec![]).unwrap());
    let rejected = u64_of(&t.query(user(), a, "rejects", vec![]).unwrap());
    assert_eq!(sunk + rejected, 10);
    assert!(sunk <= free / MIB as u64, "{sunk} calls of 1 MiB queued with {free} bytes free");
    assert!(rejected > 0);
}

#[test]
fn ingress_is_held_to_its_size_limit_and_to_the_subnets_memory() {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_ingress_bytes = 100_000;
    let mut t = Env::with_config(config);
    let id = t.deploy(&counter_wat());
    let (_, message, _) = t.update(id, "inc", vec![0; 100_001]).unwrap_err();
    assert!(message.contains("exceeds the limit of 100000 bytes"), "{message}");
    let msg = t.message(user(), id, "inc", vec![0; 100_001], id);
    assert!(t.env.should_accept_ingress(&msg, t.time).is_err());
    assert!(t.update(id, "inc", vec![0; 99_000]).is_ok());

    // A round that runs one message at a time: the rest wait in the queue, holding memory.
    let mut config = SubnetConfig::for_subnet_size(13);
    config.subnet_memory_capacity = 6 * MIB as u64;
    let mut t = Env::with_config(config);
    let id = t.deploy(&counter_wat());
    t.env.round_instruction_limit = 1;
    let msgs: Vec<_> = (0..10).map(|_| t.message(user(), id, "inc", vec![0; MIB], id)).collect();
    let done = t.env.execute_round(t.time + SECOND, [0; 32], msgs);
    let refused = done
        .iter()
        .filter(|(_, o)| matches!(to_outcome(o.clone()), Err((_, _, ErrorCode::SubnetOversubscribed))))
        .count();
    assert!(refused >= 4, "{refused} of 10 messages of 1 MiB refused with 6 MiB of capacity");
    let queued = t.env.state().canister(&id).unwrap().system.input_queue.len();
    assert!(queued <= 6, "{queued} queued");
}

/// A heartbeat that burns a few million instructions, then counts itself (query `beats`).
fn busy_heartbeat_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (func (export "canister_heartbeat")
    (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1))))
  (func (export "canister_query beats") (call $reply_append (i32.const 0) (i32.const 8)) (call $reply))
)"#
    ))
}

#[test]
fn heartbeats_stay_within_the_round_budget_and_take_turns() {
    let mut t = Env::new();
    let ids: Vec<_> = (0..6).map(|_| t.deploy(&busy_heartbeat_wat())).collect();
    let beats = |t: &mut Env| -> Vec<u64> {
        ids.iter().map(|id| u64_of(&t.query(user(), *id, "beats", vec![]).unwrap())).collect()
    };
    // A budget the first heartbeat of a round already spends.
    t.env.round_instruction_limit = 1;
    let before = beats(&mut t);
    t.tick();
    let after = beats(&mut t);
    let ran: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert_eq!(ran, 1, "heartbeats in one round");
    // Every canister gets its turn within a few rounds.
    for _ in 0..6 {
        t.tick();
    }
    let later = beats(&mut t);
    assert!(later.iter().zip(&after).all(|(l, a)| l > a), "{after:?} -> {later:?}");
}

/// Call callbacks (WAT) that count at heap 0 the calls rejected with SYS_TRANSIENT (reject code
/// 2); replies are ignored. `fan_wat` and `burst_wat` share them.
const COUNT_TRANSIENT_REJECTS: &str = r#"
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (func $on_reply (param i32))
  (func $on_reject (param i32)
    (if (i32.eq (call $reject_code) (i32.const 2))
      (then (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1))))))"#;

/// `fan` calls `fan` on itself `FAN_OUT` times and never replies, so every call it makes stays
/// outstanding (a chain that is never answered). Reject callbacks count the SYS_TRANSIENT
/// rejects at heap 0 (a query, `transient`, reads it); calls `call_perform` refused are counted
/// at heap 8 (`refused`).
fn fan_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "canister_self_size" (func $self_size (result i32)))
  (import "ic0" "canister_self_copy" (func $self_copy (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "fan")
  {COUNT_TRANSIENT_REJECTS}
  (func (export "canister_update fan")
    (local $i i32)
    (call $self_copy (i32.const 200) (i32.const 0) (call $self_size))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const 10)))
        (call $call_new (i32.const 200) (call $self_size) (i32.const 100) (i32.const 3)
                        (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
        (if (call $call_perform)
          (then (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l))))
  (func (export "canister_query transient") (call $reply_append (i32.const 0) (i32.const 8)) (call $reply))
  (func (export "canister_query refused") (call $reply_append (i32.const 8) (i32.const 8)) (call $reply))
)"#
    ))
}

#[test]
fn calls_that_are_never_answered_cannot_grow_host_memory_without_bound() {
    // Before the quota (and with call contexts and callbacks not counted as memory) the chain
    // below held 8.2 million callbacks after six rounds.
    use tabnet_execution::state::{CALLBACK_BYTES, CALL_CONTEXT_BYTES};
    const QUOTA: usize = 2_000;
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_outstanding_calls = QUOTA;
    let mut t = Env::with_config(config);
    let id = t.deploy(&fan_wat());
    let msg = t.message(user(), id, "fan", vec![], id);
    t.round_with(vec![msg]);
    for _ in 0..5 {
        t.tick();
    }
    let state = t.env.state();
    let c = state.canister(&id).unwrap();
    let (callbacks, contexts) = (c.system.callbacks.len(), c.system.call_contexts.len());
    // Without the quota the chain had 11,110 callbacks after four passes, ten times more each.
    assert!(callbacks <= QUOTA, "{callbacks} callbacks outstanding (quota {QUOTA})");
    assert!(contexts <= QUOTA + 2, "{contexts} call contexts open");
    let held = callbacks as u64 * CALLBACK_BYTES + contexts as u64 * CALL_CONTEXT_BYTES;
    assert!(c.message_memory_usage() >= held, "open calls count toward the canister's memory");
    assert!(state.memory_used() >= held, "and toward the subnet's");
    let refused = u64_of(&t.query(user(), id, "refused", vec![]).unwrap());
    assert!(refused > 0, "ic0.call_perform refused the calls beyond the quota");
    let transient = u64_of(&t.query(user(), id, "transient", vec![]).unwrap());
    assert_eq!(transient, 0, "none was taken and rejected afterwards");
}

/// `burst` takes `[k u8][callee]` and calls `m` on the callee k times; it replies what each
/// `call_perform` returned (k bytes). Reject callbacks count SYS_TRANSIENT rejects (`transient`).
fn burst_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 100) "m")
  {COUNT_TRANSIENT_REJECTS}
  (func (export "canister_update burst")
    (local $k i32) (local $i i32) (local $n i32)
    (local.set $n (call $arg_size))
    (call $arg_copy (i32.const 200) (i32.const 0) (local.get $n))
    (local.set $k (i32.load8_u (i32.const 200)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $k)))
      (call $call_new (i32.const 201) (i32.sub (local.get $n) (i32.const 1)) (i32.const 100) (i32.const 1)
                      (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
      (i32.store8 (i32.add (i32.const 300) (local.get $i)) (call $call_perform))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $reply_append (i32.const 300) (local.get $k))
    (call $reply))
  (func (export "canister_query transient") (call $reply_append (i32.const 0) (i32.const 8)) (call $reply))
)"#
    ))
}

#[test]
fn call_perform_fails_beyond_the_outstanding_call_quota() {
    const QUOTA: usize = 5;
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_outstanding_calls = QUOTA;
    let mut t = Env::with_config(config);
    let id = t.deploy(&burst_wat());
    // Calls to a canister that does not exist: each is rejected at once, but the reject waits
    // in the queue behind the second message, so the first one's calls are still outstanding
    // when the second runs.
    let nowhere = tabnet_types::canister_id_from_index(999_999);
    let burst = |k: u8| [vec![k], nowhere.as_slice().to_vec()].concat();
    let first = t.message(user(), id, "burst", burst(3), id);
    let second = t.message(user(), id, "burst", burst(4), id);
    let done = t.round_with(vec![first.clone(), second.clone()]);
    let reply = |m: &tabnet_execution::scheduler::IngressMessage| {
        to_outcome(done.iter().find(|(i, _)| *i == m.id).expect("answered in the round").1.clone()).unwrap()
    };
    assert_eq!(reply(&first), [0, 0, 0], "three calls of five allowed");
    assert_eq!(reply(&second), [0, 0, 2, 2], "3 outstanding + 2 more make 5; then SYS_TRANSIENT");
    assert!(t.env.state().canister(&id).unwrap().system.callbacks.len() <= QUOTA);
    // Once the rejects ran, the quota is free again, and the refused calls cost nothing later.
    t.tick();
    assert!(t.env.state().canister(&id).unwrap().system.callbacks.is_empty());
    assert_eq!(t.update(id, "burst", burst(6)).unwrap(), [0, 0, 0, 0, 0, 2]);
    t.tick();
    assert_eq!(u64_of(&t.query(user(), id, "transient", vec![]).unwrap()), 0, "no call came back SYS_TRANSIENT");
}
