//! Deterministic time slicing: a message longer than a slice pauses when the slice's fuel runs
//! out and goes on in the next rounds, on every replica at the same instruction; meanwhile the
//! state shows the canister as before the message, other canisters run, and the round keeps its
//! budget. Paused messages abort at checkpoints and start over; a replica that lost its paused
//! execution (a restart) catches up to where the others are.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod dts_support;
mod scheduler_support;

use dts_support::*;
use scheduler_support::*;
use tabnet_execution::scheduler::IngressMessage;
use tabnet_execution::SubnetConfig;
use tabnet_types::ErrorCode;

const UPDATE_LIMIT: u64 = 30_000_000;

/// `spin` (arg: u64 LE n) grows the heap by a page, writes "busy" to stable memory and to the
/// new page, adds one to the counter at heap 0 n times, and replies the counter and the
/// instructions it used. `inc` adds one to the counter at heap 8 and replies it. The query
/// `read` replies the counter, the first 8 bytes of stable memory and the heap's size in pages.
fn busy_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "canister_update spin")
    (local $n i64) (local $i i64) (local $page i32)
    (call $arg_copy (i32.const 16) (i32.const 0) (i32.const 8))
    (local.set $n (i64.load (i32.const 16)))
    (local.set $page (memory.grow (i32.const 1)))
    (i64.store (i32.mul (local.get $page) (i32.const 65536)) (i64.const 0x79737562))
    (if (i64.eqz (call $stable_size)) (then (drop (call $stable_grow (i64.const 1)))))
    (i64.store (i32.const 24) (i64.const 0x79737562))
    (call $stable_write (i64.const 0) (i64.const 24) (i64.const 8))
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (i64.store (i32.const 32) (call $perf (i32.const 0)))
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply_append (i32.const 32) (i32.const 8))
    (call $reply))
  (func (export "canister_update inc")
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))
    (call $reply_append (i32.const 8) (i32.const 8))
    (call $reply))
  (func (export "canister_query read")
    (i64.store (i32.const 40) (i64.const 0))
    (if (i64.ne (call $stable_size) (i64.const 0))
      (then (call $stable_read (i64.const 40) (i64.const 0) (i64.const 8))))
    (i64.store (i32.const 48) (i64.extend_i32_u (memory.size)))
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply_append (i32.const 40) (i32.const 16))
    (call $reply))
)"#
    ))
}

/// Iterations of `spin` per instruction budget: measured once on a scratch environment with
/// slicing off, so that the tests ask for a number of slices, not of loop turns.
fn iterations_for(instructions: u64) -> u64 {
    let mut t = env(u64::MAX);
    let id = t.deploy(&busy_wat());
    let reply = t
        .update(id, "spin", 100_000u64.to_le_bytes().to_vec())
        .expect("spin");
    let per_iteration = u64_of(&reply[8..]) as f64 / 100_000.0;
    (instructions as f64 / per_iteration) as u64
}

fn config() -> SubnetConfig {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_instructions_per_update = UPDATE_LIMIT;
    config
}

/// An environment with small slices and rounds (`slice`: u64::MAX runs messages whole).
fn env(slice: u64) -> Env {
    env_with(config(), slice)
}

/// Runs rounds until `msg` completes, keeping every round's state hash; returns its outcome
/// and the rounds it took.
fn run_until_done(
    t: &mut Env,
    msg: &IngressMessage,
    hashes: &mut Vec<[u8; 32]>,
) -> (Outcome, usize) {
    rounds_until_done(t, msg, 200, |t, _| hashes.push(t.env.state_hash()))
}

#[test]
fn a_ten_slice_update_completes_across_rounds_identically_on_two_replicas() {
    let n = iterations_for(10 * SLICE);
    let mut replicas = [env(SLICE), env(SLICE)];
    let mut results = Vec::new();
    for t in &mut replicas {
        let id = t.deploy(&busy_wat());
        let msg = t.message(user(), id, "spin", n.to_le_bytes().to_vec(), id);
        let mut hashes = Vec::new();
        let (outcome, rounds) = run_until_done(t, &msg, &mut hashes);
        results.push((outcome.expect("spin replies"), rounds, hashes));
    }
    let (reply, rounds, _) = &results[0];
    assert_eq!(u64_of(reply), n, "every turn of the loop ran once");
    assert!(*rounds >= 10, "ten slices take ten rounds, took {rounds}");
    assert_eq!(
        results[0], results[1],
        "two replicas agree on the reply and every round's state hash"
    );

    // The same message unsliced gives the same reply (the instructions it reports too).
    let mut whole = env(u64::MAX);
    let id = whole.deploy(&busy_wat());
    assert_eq!(
        whole.update(id, "spin", n.to_le_bytes().to_vec()).unwrap(),
        *reply
    );
}

#[test]
fn while_a_message_is_paused_rounds_keep_their_budget_and_other_canisters_run() {
    let n = iterations_for(10 * SLICE);
    let mut t = env(SLICE);
    let long = t.deploy(&busy_wat());
    let other = t.deploy(&busy_wat());
    let spin = t.message(user(), long, "spin", n.to_le_bytes().to_vec(), long);
    // Queued behind the long message on its own canister: it waits until that ends.
    let behind = t.message(user(), long, "inc", vec![], long);
    let mut done = t.round_with(vec![spin.clone(), behind.clone()]);
    let mut served = 0;
    let mut rounds = 1;
    while outcome_of(&done, &spin).is_none() {
        assert_round_budget(&t, rounds);
        assert!(
            outcome_of(&done, &behind).is_none(),
            "the paused canister ran nothing else"
        );
        assert!(t.env.has_long_execution(&long));
        done = round_with_inc(&mut t, other, &mut served);
        rounds += 1;
        assert!(rounds < 100);
    }
    assert!(rounds >= 10, "took {rounds} rounds");
    assert!(
        served + 1 >= rounds,
        "the other canister was served in every round ({served} of {rounds})"
    );
    // The message behind it runs after it: in its round or the next.
    let behind_outcome = outcome_of(&done, &behind).or_else(|| outcome_of(&t.tick(), &behind));
    assert_eq!(u64_of(&behind_outcome.expect("inc after spin").unwrap()), 1);
}

#[test]
fn an_update_over_the_limit_fails_after_its_slices_and_is_rolled_back() {
    let n = iterations_for(2 * UPDATE_LIMIT);
    let mut t = env(SLICE);
    let id = t.deploy(&busy_wat());
    let before = t
        .env
        .state()
        .canister(&id)
        .unwrap()
        .execution
        .as_ref()
        .unwrap()
        .state_hash();
    let msg = t.message(user(), id, "spin", n.to_le_bytes().to_vec(), id);
    let (outcome, rounds) = run_until_done(&mut t, &msg, &mut Vec::new());
    let (_, message, code) = outcome.unwrap_err();
    assert_eq!(
        code,
        ErrorCode::CanisterInstructionLimitExceeded,
        "{message}"
    );
    assert!(
        rounds as u64 >= UPDATE_LIMIT / SLICE,
        "{UPDATE_LIMIT} instructions in slices of {SLICE} took {rounds} rounds"
    );
    let after = t
        .env
        .state()
        .canister(&id)
        .unwrap()
        .execution
        .as_ref()
        .unwrap()
        .state_hash();
    assert_eq!(before, after, "heap, stable memory and globals rolled back");
    assert!(!t.env.has_long_execution(&id));
    assert_eq!(
        t.query(user(), id, "read", vec![]).unwrap(),
        [0u64.to_le_bytes(), [0; 8], 1u64.to_le_bytes()].concat()
    );
}

#[test]
fn a_query_during_a_paused_message_sees_the_state_before_it() {
    let n = iterations_for(10 * SLICE);
    let mut t = env(SLICE);
    let id = t.deploy(&busy_wat());
    let wasm_before = t
        .env
        .state()
        .canister(&id)
        .unwrap()
        .execution
        .as_ref()
        .unwrap()
        .state_hash();
    let used_before = t.env.state().memory_used();
    let msg = t.message(user(), id, "spin", n.to_le_bytes().to_vec(), id);
    let mut done = t.round_with(vec![msg.clone()]);
    for _ in 0..3 {
        assert!(outcome_of(&done, &msg).is_none());
        assert!(t.env.has_long_execution(&id), "the message is paused");
        let read = t.query(user(), id, "read", vec![]).unwrap();
        assert_eq!(
            read,
            [0u64.to_le_bytes(), [0; 8], 1u64.to_le_bytes()].concat(),
            "counter, stable memory, heap size before"
        );
        let c = t.env.state().canister(&id).unwrap();
        let exec = c.execution.as_ref().unwrap();
        assert_eq!(
            exec.state_hash(),
            wasm_before,
            "the state hashed and stored is the state before the message"
        );
        assert_eq!(exec.heap_bytes().len(), 65536);
        assert!(exec.stable_bytes().is_empty());
        // What the paused message grew (a heap page, a stable page) is held, and counted.
        assert!(
            t.env.state().memory_used() >= used_before + 2 * 65536,
            "the paused message's growth counts toward the subnet's memory"
        );
        done = t.tick();
    }
    let mut hashes = Vec::new();
    while outcome_of(&done, &msg).is_none() {
        done = t.tick();
        hashes.push(t.env.state_hash());
        assert!(hashes.len() < 100);
    }
    let read = t.query(user(), id, "read", vec![]).unwrap();
    assert_eq!(
        read,
        [
            n.to_le_bytes(),
            0x79737562u64.to_le_bytes(),
            2u64.to_le_bytes()
        ]
        .concat()
    );
}

/// Runs `spin` to its end on a fresh environment, calling `interrupt` after the given rounds;
/// returns the state hash of every round from the first to `total`.
fn hashes_with(
    interrupt_at: &[usize],
    interrupt: fn(&mut Env),
    total: usize,
) -> (Vec<[u8; 32]>, Outcome) {
    let n = iterations_for(8 * SLICE);
    let mut t = env(SLICE);
    let id = t.deploy(&busy_wat());
    let msg = t.message(user(), id, "spin", n.to_le_bytes().to_vec(), id);
    let (hashes, outcome) =
        hashes_interrupted(&mut t, &msg, interrupt_at, interrupt, total, |_| vec![]);
    (hashes, outcome.expect("spin completed"))
}

#[test]
fn abort_at_a_checkpoint_then_resume_ends_in_the_same_state() {
    let (plain, reply) = hashes_with(&[], |_| {}, 40);
    let (aborted, aborted_reply) = hashes_with(
        &[2, 4],
        |t| {
            assert!(
                t.env.abort_paused_executions(),
                "a paused message was aborted"
            );
        },
        40,
    );
    assert_eq!(
        reply, aborted_reply,
        "the message started over and gave the same reply"
    );
    assert_ne!(
        plain[2], aborted[2],
        "the abort shows in the state (the message starts over)"
    );
    assert_eq!(plain.last(), aborted.last(), "the same final state");
}

#[test]
fn a_replica_that_lost_its_paused_execution_stays_in_step() {
    // A restart between rounds (from the stored state, without the live Wasm execution) runs
    // the message again to where the others paused: every round's state hash is the same.
    let (plain, reply) = hashes_with(&[], |_| {}, 20);
    let (restarted_hashes, restarted_reply) = hashes_with(&[1, 2, 5], restarted, 20);
    assert_eq!(reply, restarted_reply);
    assert_eq!(plain, restarted_hashes);
}

/// `write` (arg: u64 LE n) copies 60,000 bytes of the heap to stable memory n times and
/// replies n: nearly all its instructions are host calls, so slices end inside them (a host
/// call that costs more than the slice has left borrows from the message's fuel).
fn stable_writer_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 2)
  (func (export "canister_update write")
    (local $n i64) (local $i i64)
    (call $arg_copy (i32.const 0) (i32.const 0) (i32.const 8))
    (local.set $n (i64.load (i32.const 0)))
    (drop (call $stable_grow (i64.const 1)))
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 8) (local.get $i))
      (call $stable_write (i64.const 0) (i64.const 8) (i64.const 60000))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply))
)"#
    ))
}

#[test]
fn a_replica_that_lost_a_message_paused_inside_a_host_call_stays_in_step() {
    // About 16 writes per slice, each slice ending inside one: the replica that restarted must
    // pause where the others did, though the slices borrowed past their ends.
    fn run(restart_at: &[usize]) -> (Vec<[u8; 32]>, Outcome) {
        let mut t = env(SLICE);
        let id = t.deploy(&stable_writer_wat());
        let msg = t.message(user(), id, "write", 130u64.to_le_bytes().to_vec(), id);
        let (hashes, outcome) =
            hashes_interrupted(&mut t, &msg, restart_at, restarted, 12, |_| vec![]);
        (hashes, outcome.expect("write completed"))
    }
    let (plain, reply) = run(&[]);
    let (restarted_hashes, restarted_reply) = run(&[2, 3, 5]);
    assert_eq!(u64_of(&reply.clone().unwrap()), 130);
    assert_eq!(reply, restarted_reply);
    assert_eq!(plain, restarted_hashes);
}
