//! Deterministic time slicing of `install_code`: `(start)`, `canister_init`,
//! `canister_pre_upgrade` and `canister_post_upgrade` run in slices, one per round while the
//! round has budget, with one instruction limit for the whole install. The new instance is
//! built aside and replaces the old one only when the install succeeds; meanwhile the canister
//! runs nothing else, management calls about it wait, other installs wait their turn, and the
//! caller is answered when the install ends. A checkpoint aborts the install (it starts over);
//! a replica that lost it (a restart) runs it again to where the others are.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod dts_support;
mod scheduler_support;

use candid::Encode;
use dts_support::*;
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_execution::scheduler::IngressMessage;
use tabnet_execution::SubnetConfig;
use tabnet_types::{CanisterId, ErrorCode, MANAGEMENT_CANISTER};

/// A canister whose hooks loop: every loop adds one to the counter at heap 0 per turn.
/// `canister_init` and `canister_post_upgrade` take `n` (u64 LE) and loop `n` turns, then trap
/// if the argument has a ninth byte; init sets certified data to "init". `canister_pre_upgrade`
/// loops the turns `set_pre_upgrade_turns` stored, then saves both counters to stable memory;
/// `canister_post_upgrade` restores them first. `(start)`, if `start_turns` > 0, loops that
/// many turns. `inc` adds one to the counter at heap 8; `spin` loops `n` turns and replies the
/// instructions it used; the query `read` replies both counters and the stable memory's size in
/// pages.
fn hooks_wat(start_turns: u64) -> Vec<u8> {
    let start = if start_turns > 0 {
        format!("(func $start (call $loop (i64.const {start_turns}))) (start $start)")
    } else {
        String::new()
    };
    wat(&format!(
        r#"(module {IMPORTS}
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (import "ic0" "certified_data_set" (func $cert_set (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "boom")
  (func $loop (param $n i64)
    (local $i i64)
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l))))
  (func $arg_n (result i64)
    (if (result i64) (i32.ge_u (call $arg_size) (i32.const 8))
      (then (call $arg_copy (i32.const 16) (i32.const 0) (i32.const 8)) (i64.load (i32.const 16)))
      (else (i64.const 0))))
  (func $maybe_trap
    (if (i32.ge_u (call $arg_size) (i32.const 9))
      (then (call $trap (i32.const 100) (i32.const 4)))))
  {start}
  (func (export "canister_init")
    (call $loop (call $arg_n))
    (i64.store (i32.const 32) (i64.const 0x74696e69))
    (call $cert_set (i32.const 32) (i32.const 4))
    (call $maybe_trap))
  (func (export "canister_pre_upgrade")
    (call $loop (i64.load (i32.const 24)))
    (if (i64.eqz (call $stable_size)) (then (drop (call $stable_grow (i64.const 1)))))
    (call $stable_write (i64.const 0) (i64.const 0) (i64.const 16)))
  (func (export "canister_post_upgrade")
    (if (i64.ne (call $stable_size) (i64.const 0))
      (then (call $stable_read (i64.const 0) (i64.const 0) (i64.const 16))))
    (call $loop (call $arg_n))
    (call $maybe_trap))
  (func (export "canister_update set_pre_upgrade_turns")
    (i64.store (i32.const 24) (call $arg_n))
    (call $reply))
  (func (export "canister_update inc")
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))
    (call $reply_append (i32.const 8) (i32.const 8))
    (call $reply))
  (func (export "canister_update spin")
    (call $loop (call $arg_n))
    (i64.store (i32.const 40) (call $perf (i32.const 0)))
    (call $reply_append (i32.const 40) (i32.const 8))
    (call $reply))
  (func (export "canister_query read")
    (i64.store (i32.const 48) (call $stable_size))
    (call $reply_append (i32.const 0) (i32.const 16))
    (call $reply_append (i32.const 48) (i32.const 8))
    (call $reply))
)"#
    ))
}

/// Loop turns per instruction budget (measured once, slicing off), so that tests ask for a
/// number of slices.
fn turns_for(instructions: u64) -> u64 {
    let mut t = env(u64::MAX);
    let id = t.deploy(&hooks_wat(0));
    let reply = t.update(id, "spin", 100_000u64.to_le_bytes().to_vec()).expect("spin");
    let per_turn = u64_of(&reply) as f64 / 100_000.0;
    (instructions as f64 / per_turn) as u64
}

fn config() -> SubnetConfig {
    SubnetConfig::for_subnet_size(13)
}

fn env(slice: u64) -> Env {
    env_with(config(), slice)
}

fn upgrade() -> CanisterInstallMode {
    CanisterInstallMode::Upgrade(None)
}

/// Runs rounds (the first with `msg`) until `msg` completes, checking every round's budget;
/// returns the outcome and the rounds it took.
fn run_until_done(t: &mut Env, msg: &IngressMessage) -> (Outcome, usize) {
    rounds_until_done(t, msg, 500, |t, round| assert_round_budget(t, round as u64))
}

fn wasm_hash(t: &Env, id: CanisterId) -> Option<[u8; 32]> {
    t.env.state().canister(&id).unwrap().execution.as_ref().map(|e| e.state_hash())
}

/// Counter at 0, counter at 8, stable memory pages.
fn read(t: &mut Env, id: CanisterId) -> (u64, u64, u64) {
    let r = t.query(user(), id, "read", vec![]).expect("read");
    (u64_of(&r), u64_of(&r[8..]), u64_of(&r[16..]))
}

#[test]
fn an_install_whose_init_runs_three_slices_ends_after_several_rounds_while_others_run() {
    let n = turns_for(3 * SLICE);
    let mut t = env(SLICE);
    let other = t.deploy(&counter_wat());
    let id = t.create(None);
    let install = t.install_message(id, &hooks_wat(0), n.to_le_bytes().to_vec(), CanisterInstallMode::Install);
    let mut done = t.round_with(vec![install.clone()]);
    let mut rounds = 1;
    let mut served = 0;
    while outcome_of(&done, &install).is_none() {
        assert_round_budget(&t, rounds);
        assert!(
            t.env.round_instructions() <= SLICE + 100_000,
            "round {rounds} ran more than one slice of the install ({} instructions)",
            t.env.round_instructions()
        );
        assert!(t.env.has_long_execution(&id), "the install is paused");
        assert!(wasm_hash(&t, id).is_none(), "the new instance is built aside");
        done = round_with_inc(&mut t, other, &mut served);
        rounds += 1;
        assert!(rounds < 50);
    }
    assert!(rounds >= 3, "three slices took {rounds} rounds");
    assert_eq!(served + 1, rounds, "the other canister was served in every round after the first");
    assert_eq!(outcome_of(&done, &install).unwrap().unwrap(), Encode!().unwrap(), "install_code replies ()");
    assert!(!t.env.has_long_execution(&id));
    assert_eq!(read(&mut t, id), (n, 0, 0), "canister_init ran every turn once");
    let c = t.env.state().canister(&id).unwrap();
    assert_eq!(c.system.certified_data, b"init");
    assert_eq!(c.system.canister_version, 1);

    // The same install unsliced ends in the same canister state.
    let mut whole = env(u64::MAX);
    whole.deploy(&counter_wat());
    let same = whole.create(None);
    let msg = whole.install_message(same, &hooks_wat(0), n.to_le_bytes().to_vec(), CanisterInstallMode::Install);
    let (outcome, rounds) = run_until_done(&mut whole, &msg);
    assert!(outcome.is_ok() && rounds == 1);
    assert_eq!(wasm_hash(&whole, same), wasm_hash(&t, id));
}

#[test]
fn a_long_start_function_is_sliced_and_counted() {
    let n = turns_for(3 * SLICE);
    let mut t = env(SLICE);
    let id = t.create(None);
    let install = t.install_message(id, &hooks_wat(n), vec![], CanisterInstallMode::Install);
    let (outcome, rounds) = run_until_done(&mut t, &install);
    outcome.expect("install");
    assert!(rounds >= 3, "a start of three slices took {rounds} rounds");
    assert_eq!(read(&mut t, id), (n, 0, 0), "(start) ran every turn once");
}

#[test]
fn an_upgrade_whose_long_post_upgrade_traps_leaves_the_canister_as_it_was() {
    let n = turns_for(3 * SLICE);
    let pre = turns_for(2 * SLICE);
    let mut t = env(SLICE);
    let id = t.deploy(&hooks_wat(0));
    for _ in 0..3 {
        t.update(id, "inc", vec![]).unwrap();
    }
    // pre_upgrade runs two slices on the old instance (it writes stable memory there).
    t.update(id, "set_pre_upgrade_turns", pre.to_le_bytes().to_vec()).unwrap();
    let before = wasm_hash(&t, id);
    let system_before = t.env.state().canister(&id).unwrap().system.clone();
    let cycles_before = t.cycles(id);

    let mut arg = n.to_le_bytes().to_vec();
    arg.push(1); // post_upgrade traps after its loop
    let msg = t.install_message(id, &hooks_wat(0), arg, upgrade());
    let mut done = t.round_with(vec![msg.clone()]);
    let mut rounds = 1;
    while outcome_of(&done, &msg).is_none() {
        // Meanwhile queries see the old canister, untouched.
        assert_eq!(read(&mut t, id), (0, 3, 0));
        assert_eq!(wasm_hash(&t, id), before);
        done = t.tick();
        rounds += 1;
        assert!(rounds < 50);
    }
    let (_, message, code) = outcome_of(&done, &msg).unwrap().unwrap_err();
    assert_eq!(code, ErrorCode::CanisterCalledTrap, "{message}");
    assert!(rounds >= 5, "pre_upgrade (2 slices) and post_upgrade (3 slices) took {rounds} rounds");
    assert_eq!(wasm_hash(&t, id), before, "heap, stable memory and globals as before");
    assert_eq!(read(&mut t, id), (0, 3, 0));
    let c = t.env.state().canister(&id).unwrap();
    assert!(c.system.long_install.is_none());
    assert_eq!(c.system.canister_version, system_before.canister_version);
    assert_eq!(c.system.certified_data, system_before.certified_data);
    assert_eq!(c.system.global_timer, system_before.global_timer);
    // The instructions were paid for: about five slices (turns_for rounds down), not the
    // whole limit that was prepaid.
    let cycles = &t.env.config().cycles;
    let paid = cycles_before - t.cycles(id);
    assert!(paid >= cycles.execution_cost(4 * SLICE, false), "paid {paid}");
    assert!(paid <= cycles.execution_cost(t.env.config().max_instructions_per_install_code, false));

    // Without the trap the same upgrade goes through: the counters come back from stable
    // memory, and post_upgrade's loop adds to the first.
    let msg = t.install_message(id, &hooks_wat(0), n.to_le_bytes().to_vec(), upgrade());
    let (outcome, rounds) = run_until_done(&mut t, &msg);
    outcome.expect("upgrade");
    assert!(rounds >= 5);
    assert_eq!(read(&mut t, id), (pre + n, 3, 1));
    assert_eq!(
        t.env.state().canister(&id).unwrap().system.canister_version,
        system_before.canister_version + 1
    );
}

#[test]
fn an_install_over_the_instruction_limit_fails_and_changes_nothing() {
    let limit = 8 * SLICE;
    let mut config = config();
    config.max_instructions_per_install_code = limit;
    let mut t = env_with(config, SLICE);
    let id = t.deploy(&hooks_wat(0));
    t.update(id, "inc", vec![]).unwrap();
    let before = wasm_hash(&t, id);
    let system_before = t.env.state().canister(&id).unwrap().system.clone();
    let cycles_before = t.cycles(id);
    // A reinstall whose init loops (nearly) forever.
    let msg = t.install_message(id, &hooks_wat(0), u64::MAX.to_le_bytes().to_vec(), CanisterInstallMode::Reinstall);
    let (outcome, rounds) = run_until_done(&mut t, &msg);
    let (_, message, code) = outcome.unwrap_err();
    assert_eq!(code, ErrorCode::CanisterInstructionLimitExceeded, "{message}");
    assert!(message.contains(&limit.to_string()), "names the install's limit: {message}");
    assert!(rounds as u64 >= limit / SLICE, "{limit} instructions in slices of {SLICE} took {rounds} rounds");
    assert_eq!(wasm_hash(&t, id), before, "the old instance is in place, unchanged");
    assert_eq!(read(&mut t, id), (0, 1, 0));
    let c = t.env.state().canister(&id).unwrap();
    assert!(c.system.long_install.is_none() && c.install_memory_usage() == 0);
    assert_eq!(c.system.canister_version, system_before.canister_version);
    assert_eq!(c.system.certified_data, system_before.certified_data);
    assert_eq!(
        cycles_before - t.cycles(id),
        t.env.config().cycles.execution_cost(limit, false),
        "the whole limit is paid for, nothing more"
    );
}

/// Upgrades `hooks_wat(0)` to `hooks_wat(start)` with long pre_upgrade, `(start)` and
/// post_upgrade (2.5 slices each, so that hooks end and begin within slices), calling
/// `interrupt` after the given rounds; returns every round's state hash and the outcome.
fn upgrade_hashes(interrupt_at: &[usize], interrupt: fn(&mut Env), total: usize) -> (Vec<[u8; 32]>, Outcome) {
    let turns = turns_for(5 * SLICE / 2);
    let mut t = env(SLICE);
    let other = t.deploy(&counter_wat());
    let id = t.deploy(&hooks_wat(0));
    t.update(id, "inc", vec![]).unwrap();
    t.update(id, "set_pre_upgrade_turns", turns.to_le_bytes().to_vec()).unwrap();
    let msg = t.install_message(id, &hooks_wat(turns), turns.to_le_bytes().to_vec(), upgrade());
    // Another canister's messages run meanwhile.
    let (hashes, outcome) = hashes_interrupted(&mut t, &msg, interrupt_at, interrupt, total, |t| {
        vec![t.message(user(), other, "inc", vec![], other)]
    });
    let outcome = outcome.expect("the upgrade completed");
    // pre_upgrade's count comes back from stable memory; post_upgrade adds as many.
    assert_eq!(read(&mut t, id), (2 * turns, 1, 1));
    (hashes, outcome)
}

#[test]
fn abort_before_a_checkpoint_then_completion_gives_the_state_of_an_uninterrupted_replica() {
    let (plain, reply) = upgrade_hashes(&[], |_| {}, 30);
    let (aborted, aborted_reply) = upgrade_hashes(
        &[2, 5],
        |t| assert!(t.env.abort_paused_executions(), "the paused install was aborted"),
        30,
    );
    assert_eq!(reply, aborted_reply);
    reply.expect("upgrade");
    assert_ne!(plain[2], aborted[2], "the abort shows in the state (the install starts over)");
    assert_eq!(plain.last(), aborted.last(), "the same final state");
}

#[test]
fn a_replica_restarted_during_an_install_stays_in_step() {
    // Restarts in pre_upgrade, in (start), and in post_upgrade: the restarted replica runs the
    // install again to where the others paused, and every round's state hash is the same.
    let (plain, reply) = upgrade_hashes(&[], |_| {}, 12);
    let (restarted_hashes, restarted_reply) = upgrade_hashes(&[1, 2, 4, 6], restarted, 12);
    assert_eq!(reply, restarted_reply);
    assert_eq!(plain, restarted_hashes);
}

#[test]
fn while_an_install_is_paused_calls_about_its_canister_and_other_installs_wait() {
    let n = turns_for(3 * SLICE);
    let mut t = env(SLICE);
    let id = t.deploy(&hooks_wat(0));
    let other = t.create(None);
    let msg = t.install_message(id, &hooks_wat(0), n.to_le_bytes().to_vec(), upgrade());
    let mut done = t.round_with(vec![msg.clone()]);
    assert!(t.env.has_long_execution(&id));
    let status_message = |t: &mut Env, id: CanisterId| {
        let arg = Encode!(&CanisterIdRecord { canister_id: id }).unwrap();
        t.message(user(), MANAGEMENT_CANISTER, "canister_status", arg, id)
    };
    let status = status_message(&mut t, id);
    let inc = t.message(user(), id, "inc", vec![], id);
    let other_install = t.install_message(other, &counter_wat(), Encode!().unwrap(), CanisterInstallMode::Install);
    let other_status = status_message(&mut t, other);
    let mut waiting = vec![status.clone(), inc.clone(), other_install.clone()];
    let mut ingress = vec![status.clone(), inc.clone(), other_install.clone(), other_status.clone()];
    let mut rounds = 1;
    while outcome_of(&done, &msg).is_none() {
        done = t.round_with(std::mem::take(&mut ingress));
        rounds += 1;
        if rounds == 2 {
            assert!(outcome_of(&done, &other_status).unwrap().is_ok(), "a call about another canister is answered");
        }
        if outcome_of(&done, &msg).is_none() {
            for m in &waiting {
                assert!(outcome_of(&done, m).is_none(), "round {rounds}: {} waits for the install", m.method);
            }
        }
        assert!(rounds < 50);
    }
    outcome_of(&done, &msg).unwrap().expect("upgrade");
    // Then they run, on the new canister: in the install's round or the next ones.
    for _ in 0..3 {
        waiting.retain(|m| match outcome_of(&done, m) {
            Some(o) => {
                assert!(o.is_ok(), "{}: {o:?}", m.method);
                false
            }
            None => true,
        });
        if waiting.is_empty() {
            break;
        }
        done = t.tick();
    }
    assert!(waiting.is_empty(), "still waiting: {:?}", waiting.iter().map(|m| &m.method).collect::<Vec<_>>());
    assert_eq!(t.status(id).version, 2);
    assert!(t.status(other).module_hash.is_some());
}

#[test]
fn a_canister_that_calls_install_code_is_answered_when_the_install_ends() {
    let n = turns_for(3 * SLICE);
    let mut t = env(SLICE);
    let proxy = t.deploy(&proxy_wat());
    let settings = CanisterSettings { controllers: Some(vec![user(), proxy]), ..Default::default() };
    let reply = t
        .mgmt(
            user(),
            "provisional_create_canister_with_cycles",
            &ProvisionalCreateCanisterWithCyclesArgs { settings: Some(settings), ..Default::default() },
        )
        .unwrap();
    let id = candid::decode_one::<CreateCanisterResult>(&reply).unwrap().canister_id;
    let args = install_code_args(id, &hooks_wat(0), n.to_le_bytes().to_vec(), CanisterInstallMode::Install);
    let forward = forward_arg(MANAGEMENT_CANISTER, "install_code", 0, 0, &Encode!(&args).unwrap());
    let msg = t.message(user(), proxy, "forward", forward, proxy);
    let (outcome, rounds) = run_until_done(&mut t, &msg);
    assert!(rounds >= 3, "the reply came after {rounds} rounds");
    assert_eq!(proxy_result(&outcome.unwrap()), Ok(Encode!().unwrap()));
    assert_eq!(read(&mut t, id), (n, 0, 0));
}

#[test]
fn a_replica_restarted_during_an_install_paused_inside_host_calls_stays_in_step() {
    // canister_init copies 60,000 bytes to stable memory 130 times: slices end inside those
    // host calls, which borrow past the slice's end; a restarted replica must pause the same.
    let writer = wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 2)
  (func (export "canister_init")
    (local $i i64)
    (drop (call $stable_grow (i64.const 1)))
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (i64.const 130)))
      (i64.store (i32.const 8) (local.get $i))
      (call $stable_write (i64.const 0) (i64.const 8) (i64.const 60000))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l))))
)"#
    ));
    let run = |restart_at: &[usize]| {
        let mut t = env(SLICE);
        let id = t.create(None);
        let msg = t.install_message(id, &writer, vec![], CanisterInstallMode::Install);
        let (hashes, outcome) = hashes_interrupted(&mut t, &msg, restart_at, restarted, 12, |_| vec![]);
        (hashes, outcome.expect("install completed"))
    };
    let (plain, reply) = run(&[]);
    let (restarted_hashes, restarted_reply) = run(&[2, 3, 5]);
    reply.clone().expect("install");
    assert_eq!(reply, restarted_reply);
    assert_eq!(plain, restarted_hashes);
}
