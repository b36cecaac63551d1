//! Shared helpers for the deterministic time slicing tests (`dts.rs`, `dts_install.rs`): small
//! slices and rounds, so that a long message spans rounds in a test, and drivers that run those
//! rounds. Builds on `scheduler_support`, which the test crate declares too.
#![allow(dead_code)]

use crate::scheduler_support::*;
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage, IngressOutcome};
use tabnet_execution::state::{decode_canister, LoadedWasm, ReplicatedState};
use tabnet_execution::SubnetConfig;
use tabnet_types::CanisterId;

pub const SLICE: u64 = 1_000_000;
pub const ROUND_LIMIT: u64 = 2_500_000;

/// An environment with `config`, rounds of `ROUND_LIMIT` instructions and slices of `slice`
/// (u64::MAX runs messages whole).
pub fn env_with(config: SubnetConfig, slice: u64) -> Env {
    let mut t = Env::with_config(config);
    t.env.slice_instructions = slice;
    t.env.round_instruction_limit = ROUND_LIMIT;
    t
}

/// The same environment rebuilt from its stored form, as a node restarted from disk (or
/// state-synced) has it: without any paused Wasm execution, nor the state an install built
/// aside.
pub fn restarted(t: &mut Env) {
    let state = t.env.state();
    let ids: Vec<CanisterId> = state.canister_ids().copied().collect();
    let canisters = ids.iter().map(|id| {
        let stored = state.stored_canister(id).unwrap();
        let wasm = stored.wasm.as_ref().map(|w| LoadedWasm {
            module: w.module.to_vec(),
            heap: w.heap.to_vec(),
            stable: w.stable.to_vec(),
        });
        decode_canister(&stored.record, |_| Ok(wasm.unwrap()), |layout| {
            stored.snapshots.iter().find(|s| s.layout == *layout).ok_or("no such snapshot")?.load()
        })
        .unwrap()
    });
    let state =
        ReplicatedState::decode(&state.encode_metadata(), canisters.collect::<Vec<_>>()).unwrap();
    let (slice, round_limit) = (t.env.slice_instructions, t.env.round_instruction_limit);
    let config = t.env.config().clone();
    let mut env =
        ExecutionEnvironment::from_state(state, config, t.env.subnet_id(), vec![0x30, 0x00]);
    env.slice_instructions = slice;
    env.round_instruction_limit = round_limit;
    t.env = env;
}

pub fn outcome_of(done: &[([u8; 32], IngressOutcome)], msg: &IngressMessage) -> Option<Outcome> {
    done.iter()
        .find(|(m, _)| *m == msg.id)
        .map(|(_, o)| to_outcome(o.clone()))
}

/// Asserts that round `round` kept its budget: a slice that starts within the round's
/// instructions runs to its end, so a round may run at most one slice over.
pub fn assert_round_budget(t: &Env, round: u64) {
    assert!(
        t.env.round_instructions() <= ROUND_LIMIT + SLICE,
        "round {round} ran {} instructions (budget {ROUND_LIMIT}, slice {SLICE})",
        t.env.round_instructions()
    );
}

/// A round that carries an `inc` to `other` (a counter canister), to show that other canisters
/// run while a message is paused: `served` counts its answers, each the count so far.
pub fn round_with_inc(
    t: &mut Env,
    other: CanisterId,
    served: &mut u64,
) -> Vec<([u8; 32], IngressOutcome)> {
    let inc = t.message(user(), other, "inc", vec![], other);
    let done = t.round_with(vec![inc.clone()]);
    if let Some(o) = outcome_of(&done, &inc) {
        *served += 1;
        assert_eq!(u64_of(&o.unwrap()), *served);
    }
    done
}

/// Runs rounds (the first with `msg`) until `msg` completes, at most `max_rounds`, calling
/// `each_round` after every round before looking for the outcome; returns the outcome and the
/// rounds it took.
pub fn rounds_until_done(
    t: &mut Env,
    msg: &IngressMessage,
    max_rounds: usize,
    mut each_round: impl FnMut(&mut Env, usize),
) -> (Outcome, usize) {
    let mut done = t.round_with(vec![msg.clone()]);
    for round in 1..max_rounds {
        each_round(t, round);
        if let Some(o) = outcome_of(&done, msg) {
            return (o, round);
        }
        done = t.tick();
    }
    panic!("the message did not complete in {max_rounds} rounds");
}

/// Runs rounds 1 to `total` (the first with `msg`, the others with what `next` gives) and
/// returns every round's state hash and `msg`'s outcome if it came. After the rounds in
/// `interrupt_at`, when `msg` must still be paused on its (effective) canister, `interrupt`
/// runs: an abort at a checkpoint, a restart.
pub fn hashes_interrupted(
    t: &mut Env,
    msg: &IngressMessage,
    interrupt_at: &[usize],
    interrupt: fn(&mut Env),
    total: usize,
    mut next: impl FnMut(&mut Env) -> Vec<IngressMessage>,
) -> (Vec<[u8; 32]>, Option<Outcome>) {
    let id = msg.effective_canister_id;
    let mut done = t.round_with(vec![msg.clone()]);
    let mut outcome = None;
    let mut hashes = Vec::new();
    for round in 1..=total {
        outcome = outcome.or_else(|| outcome_of(&done, msg));
        if interrupt_at.contains(&round) {
            assert!(
                t.env.has_long_execution(&id),
                "round {round}: the message is paused"
            );
            interrupt(t);
        }
        hashes.push(t.env.state_hash());
        let ingress = next(t);
        done = t.round_with(ingress);
    }
    (hashes, outcome)
}
