//! Round duration while one long update runs, and while one long `install_code` runs (its
//! `canister_init` loops), with deterministic time slicing (2B-instruction slices, the default)
//! and without (the message runs whole in one round, as before slicing). Each round also
//! carries a short update to another canister.
//!
//! `cargo bench -p tabnet-execution --bench dts_rounds [-- UPDATE_INSTRUCTIONS [INIT_INSTRUCTIONS]]`
//! (defaults 36e9, under the 40B limit of an update, and 20e9; 0 skips a case). Prints, per case
//! and mode, the rounds the long message took and the rounds' wall time, p50 and max.

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tabnet_execution::management::types::*;
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage, IngressOutcome};
use tabnet_execution::SubnetConfig;
use tabnet_types::{CanisterId, Principal, MANAGEMENT_CANISTER};

const SPIN: &str = r#"(module
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $reply_append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (memory (export "memory") 1)
  (func $loop (param $n i64)
    (local $i i64)
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l))))
  ;; With an 8-byte argument n, init loops n turns (the same loop as spin).
  (func (export "canister_init")
    (if (i32.eq (call $arg_size) (i32.const 8))
      (then
        (call $arg_copy (i32.const 16) (i32.const 0) (i32.const 8))
        (call $loop (i64.load (i32.const 16))))))
  (func (export "canister_update spin")
    (call $arg_copy (i32.const 16) (i32.const 0) (i32.const 8))
    (call $loop (i64.load (i32.const 16)))
    (i64.store (i32.const 32) (call $perf (i32.const 0)))
    (call $reply_append (i32.const 32) (i32.const 8))
    (call $reply))
  (func (export "canister_update inc")
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))
    (call $reply_append (i32.const 8) (i32.const 8))
    (call $reply)))"#;

struct Node {
    env: ExecutionEnvironment,
    time: u64,
    nonce: u64,
}

impl Node {
    fn new(slice: u64) -> Self {
        let mut env = ExecutionEnvironment::new(SubnetConfig::for_subnet_size(13), Principal::from_slice(&[0xAA; 29]), vec![0x30, 0]);
        env.slice_instructions = slice;
        Node { env, time: 1_700_000_000_000_000_000, nonce: 0 }
    }

    fn message(&mut self, canister: CanisterId, method: &str, arg: Vec<u8>) -> IngressMessage {
        self.nonce += 1;
        let effective = if canister == MANAGEMENT_CANISTER { self.nonce_canister(&arg).unwrap_or(canister) } else { canister };
        IngressMessage {
            id: Sha256::digest(self.nonce.to_be_bytes()).into(),
            sender: Principal::self_authenticating(b"bench"),
            canister_id: canister,
            method: method.into(),
            arg,
            effective_canister_id: effective,
        }
    }

    fn nonce_canister(&self, arg: &[u8]) -> Option<CanisterId> {
        candid::decode_one::<CanisterIdRecord>(arg).ok().map(|r| r.canister_id)
    }

    fn round(&mut self, ingress: Vec<IngressMessage>) -> (Vec<([u8; 32], IngressOutcome)>, Duration) {
        self.time += 1_000_000_000;
        let seed: [u8; 32] = Sha256::digest(self.time.to_be_bytes()).into();
        let start = Instant::now();
        let done = self.env.execute_round(self.time, seed, ingress);
        (done, start.elapsed())
    }

    fn call(&mut self, canister: CanisterId, method: &str, arg: Vec<u8>) -> Vec<u8> {
        let msg = self.message(canister, method, arg);
        let mut done = self.round(vec![msg.clone()]).0;
        loop {
            if let Some((_, outcome)) = done.iter().find(|(id, _)| *id == msg.id) {
                match outcome {
                    IngressOutcome::Replied(bytes) => return bytes.clone(),
                    other => panic!("{method}: {other:?}"),
                }
            }
            done = self.round(vec![]).0;
        }
    }

    fn create(&mut self) -> CanisterId {
        let args = ProvisionalCreateCanisterWithCyclesArgs::default();
        let reply = self.call(MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", candid::encode_one(&args).unwrap());
        candid::decode_one::<CreateCanisterResult>(&reply).unwrap().canister_id
    }

    /// The `install_code` message installing SPIN on `id`; `arg` goes to `canister_init`.
    fn install_message(&mut self, id: CanisterId, arg: Vec<u8>) -> IngressMessage {
        let install = InstallCodeArgs {
            mode: CanisterInstallMode::Install,
            canister_id: id,
            wasm_module: wat::parse_str(SPIN).unwrap(),
            arg,
            sender_canister_version: None,
        };
        self.message(MANAGEMENT_CANISTER, "install_code", candid::encode_one(&install).unwrap())
    }

    fn deploy(&mut self) -> CanisterId {
        let id = self.create();
        let install = InstallCodeArgs {
            mode: CanisterInstallMode::Install,
            canister_id: id,
            wasm_module: wat::parse_str(SPIN).unwrap(),
            arg: candid::encode_args(()).unwrap(),
            sender_canister_version: None,
        };
        self.call(MANAGEMENT_CANISTER, "install_code", candid::encode_one(&install).unwrap());
        id
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs rounds until `long` completes, with a short update to `other` in each; prints the
/// rounds' wall times.
fn measure(name: &str, node: &mut Node, long: IngressMessage, other: CanisterId) {
    let mut ingress = vec![long.clone()];
    let mut times = Vec::new();
    let mut short_served = 0;
    loop {
        let inc = node.message(other, "inc", vec![]);
        ingress.push(inc.clone());
        let (done, elapsed) = node.round(std::mem::take(&mut ingress));
        times.push(elapsed);
        short_served += done.iter().filter(|(m, _)| *m == inc.id).count();
        if let Some((_, outcome)) = done.iter().find(|(m, _)| *m == long.id) {
            assert!(matches!(outcome, IngressOutcome::Replied(_)), "{outcome:?}");
            break;
        }
    }
    let rounds = times.len();
    times.sort();
    println!(
        "{name:>16}: {rounds} rounds, round wall time p50 {:.3} s, max {:.3} s; short updates answered {short_served}/{rounds}",
        percentile(&times, 0.5).as_secs_f64(),
        times.last().unwrap().as_secs_f64()
    );
}

const MODES: [(&str, u64); 2] =
    [("without slicing", u64::MAX), ("with 2B slices", tabnet_execution::scheduler::DEFAULT_SLICE_INSTRUCTIONS)];

fn main() {
    let numbers: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let update_instructions = numbers.first().copied().unwrap_or(36e9);
    let init_instructions = numbers.get(1).copied().unwrap_or(20e9);
    // Loop turns per instruction, measured on a short run.
    let mut probe = Node::new(u64::MAX);
    let id = probe.deploy();
    let used = u64::from_le_bytes(probe.call(id, "spin", 1_000_000u64.to_le_bytes().to_vec())[..8].try_into().unwrap());
    let per_turn = used as f64 / 1e6;
    if update_instructions > 0.0 {
        let turns = (update_instructions / per_turn) as u64;
        println!("long update: {turns} loop turns, about {:.1}e9 instructions", update_instructions / 1e9);
        for (name, slice) in MODES {
            let mut node = Node::new(slice);
            let long = node.deploy();
            let other = node.deploy();
            let spin = node.message(long, "spin", turns.to_le_bytes().to_vec());
            measure(name, &mut node, spin, other);
        }
    }
    if init_instructions > 0.0 {
        let turns = (init_instructions / per_turn) as u64;
        println!("long install_code (canister_init): {turns} loop turns, about {:.1}e9 instructions", init_instructions / 1e9);
        for (name, slice) in MODES {
            let mut node = Node::new(slice);
            let long = node.create();
            let other = node.deploy();
            let install = node.install_message(long, turns.to_le_bytes().to_vec());
            measure(name, &mut node, install, other);
        }
    }
}
