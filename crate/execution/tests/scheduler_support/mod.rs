//! Shared helpers for the scheduler tests: a small driver around `ExecutionEnvironment` and WAT
//! canisters written against the ic0 System API.
#![allow(dead_code)]

use candid::{CandidType, Encode, Nat, Principal};
use sha2::{Digest, Sha256};
use tabnet_execution::management::types::*;
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage, IngressOutcome};
use tabnet_execution::SubnetConfig;
use tabnet_types::{CanisterId, ErrorCode, RejectCode, MANAGEMENT_CANISTER};

pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SECOND: u64 = 1_000_000_000;

pub fn user() -> Principal {
    Principal::self_authenticating(b"user")
}
pub fn other_user() -> Principal {
    Principal::self_authenticating(b"other user")
}

/// What an ingress message ended with, in a shape that is easy to assert on.
pub type Outcome = Result<Vec<u8>, (RejectCode, String, ErrorCode)>;

pub struct Env {
    pub env: ExecutionEnvironment,
    pub time: u64,
    round: u64,
    nonce: u64,
}

impl Env {
    pub fn new() -> Self {
        Self::with_config(SubnetConfig::for_subnet_size(13))
    }

    pub fn with_config(config: SubnetConfig) -> Self {
        let subnet = Principal::from_slice(&[0xAA; 29]);
        Env {
            env: ExecutionEnvironment::new(config, subnet, vec![0x30, 0x00]),
            time: T0,
            round: 0,
            nonce: 0,
        }
    }

    /// One round, one second after the last.
    pub fn tick(&mut self) -> Vec<([u8; 32], IngressOutcome)> {
        self.round_with(Vec::new())
    }

    pub fn advance(&mut self, nanos: u64) {
        self.time += nanos;
    }

    pub fn round_with(&mut self, ingress: Vec<IngressMessage>) -> Vec<([u8; 32], IngressOutcome)> {
        self.time += SECOND;
        self.round += 1;
        let seed: [u8; 32] = Sha256::digest(self.round.to_be_bytes()).into();
        self.env.execute_round(self.time, seed, ingress)
    }

    pub fn message(
        &mut self,
        sender: Principal,
        canister: CanisterId,
        method: &str,
        arg: Vec<u8>,
        effective: CanisterId,
    ) -> IngressMessage {
        self.nonce += 1;
        IngressMessage {
            id: Sha256::digest(self.nonce.to_be_bytes()).into(),
            sender,
            canister_id: canister,
            method: method.into(),
            arg,
            effective_canister_id: effective,
        }
    }

    /// Submits one ingress message and runs rounds until it completes.
    pub fn ingress(
        &mut self,
        sender: Principal,
        canister: CanisterId,
        method: &str,
        arg: Vec<u8>,
    ) -> Outcome {
        let effective = if canister == MANAGEMENT_CANISTER {
            effective_id(&arg).unwrap_or(canister)
        } else {
            canister
        };
        let msg = self.message(sender, canister, method, arg, effective);
        let id = msg.id;
        let mut done = self.round_with(vec![msg]);
        for _ in 0..50 {
            if let Some((_, outcome)) = done.iter().find(|(m, _)| *m == id) {
                return to_outcome(outcome.clone());
            }
            done = self.tick();
        }
        panic!("ingress message did not complete in 50 rounds");
    }

    pub fn update(&mut self, canister: CanisterId, method: &str, arg: Vec<u8>) -> Outcome {
        self.ingress(user(), canister, method, arg)
    }

    pub fn query(
        &mut self,
        sender: Principal,
        canister: CanisterId,
        method: &str,
        arg: Vec<u8>,
    ) -> Outcome {
        // Every query also runs on the state published for queries: it must answer the same.
        let published = self.env.query_state(None, &Default::default(), self.time);
        let on_view = published.query(sender, canister, method, arg.clone(), None);
        let live = self
            .env
            .query(self.time, sender, canister, method, arg, None);
        assert_eq!(
            live, on_view,
            "a query on the published state answers as on the live state"
        );
        match live {
            Ok(tabnet_execution::hypervisor::WasmResult::Reply(b)) => Ok(b),
            Ok(tabnet_execution::hypervisor::WasmResult::Reject(m)) => Err((
                RejectCode::CanisterReject,
                m,
                ErrorCode::CanisterRejectedMessage,
            )),
            Err(e) => Err((e.reject_code(), e.message, e.code)),
        }
    }

    pub fn mgmt<T: CandidType>(&mut self, sender: Principal, method: &str, arg: &T) -> Outcome {
        self.ingress(sender, MANAGEMENT_CANISTER, method, Encode!(arg).unwrap())
    }

    /// A fresh canister controlled by `user()` with `cycles` (default: the provisional amount).
    pub fn create(&mut self, cycles: Option<u128>) -> CanisterId {
        let args = ProvisionalCreateCanisterWithCyclesArgs {
            amount: cycles.map(Nat::from),
            ..Default::default()
        };
        let reply = self
            .mgmt(user(), "provisional_create_canister_with_cycles", &args)
            .expect("create");
        candid::decode_one::<CreateCanisterResult>(&reply)
            .unwrap()
            .canister_id
    }

    pub fn install_mode(
        &mut self,
        id: CanisterId,
        wasm: &[u8],
        arg: Vec<u8>,
        mode: CanisterInstallMode,
    ) -> Outcome {
        self.mgmt(user(), "install_code", &install_code_args(id, wasm, arg, mode))
    }

    /// The `install_code` message `install_mode` sends, for a test to submit in rounds of its
    /// own (an install that spans rounds).
    pub fn install_message(
        &mut self,
        id: CanisterId,
        wasm: &[u8],
        arg: Vec<u8>,
        mode: CanisterInstallMode,
    ) -> IngressMessage {
        let args = Encode!(&install_code_args(id, wasm, arg, mode)).unwrap();
        self.message(user(), MANAGEMENT_CANISTER, "install_code", args, id)
    }

    pub fn install(&mut self, id: CanisterId, wasm: &[u8]) {
        self.install_mode(id, wasm, Encode!().unwrap(), CanisterInstallMode::Install)
            .expect("install");
    }

    /// Creates and installs in one go.
    pub fn deploy(&mut self, wasm: &[u8]) -> CanisterId {
        let id = self.create(None);
        self.install(id, wasm);
        id
    }

    pub fn status(&mut self, id: CanisterId) -> CanisterStatusResult {
        let reply = self
            .mgmt(
                user(),
                "canister_status",
                &CanisterIdRecord { canister_id: id },
            )
            .expect("status");
        candid::decode_one(&reply).unwrap()
    }

    pub fn cycles(&self, id: CanisterId) -> u128 {
        self.env.state().canister(&id).unwrap().system.cycles
    }
}

/// The argument of `install_code` for `wasm` on `id`.
pub fn install_code_args(
    id: CanisterId,
    wasm: &[u8],
    arg: Vec<u8>,
    mode: CanisterInstallMode,
) -> InstallCodeArgs {
    InstallCodeArgs {
        mode,
        canister_id: id,
        wasm_module: wasm.to_vec(),
        arg,
        sender_canister_version: None,
    }
}

pub fn effective_id(arg: &[u8]) -> Option<Principal> {
    #[derive(candid::Deserialize, CandidType)]
    struct WithId {
        canister_id: Principal,
    }
    candid::decode_one::<WithId>(arg)
        .ok()
        .map(|w| w.canister_id)
}

pub fn to_outcome(o: IngressOutcome) -> Outcome {
    match o {
        IngressOutcome::Replied(b) => Ok(b),
        IngressOutcome::Rejected {
            reject_code,
            message,
            error_code,
        } => Err((reject_code, message, error_code)),
    }
}

pub fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

pub fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid WAT")
}

/// The ic0 imports the WAT canisters use (32-bit memory).
pub const IMPORTS: &str = r#"
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $reply_append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reject" (func $reject (param i32 i32)))
  (import "ic0" "msg_reject_code" (func $reject_code (result i32)))
  (import "ic0" "msg_reject_msg_size" (func $reject_msg_size (result i32)))
  (import "ic0" "msg_reject_msg_copy" (func $reject_msg_copy (param i32 i32 i32)))
  (import "ic0" "msg_cycles_accept128" (func $accept128 (param i64 i64 i32)))
  (import "ic0" "msg_cycles_refunded128" (func $refunded128 (param i32)))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_data_append" (func $call_data_append (param i32 i32)))
  (import "ic0" "call_cycles_add128" (func $call_cycles_add128 (param i64 i64)))
  (import "ic0" "call_with_best_effort_response" (func $call_best_effort (param i32)))
  (import "ic0" "call_on_cleanup" (func $call_on_cleanup (param i32 i32)))
  (import "ic0" "call_perform" (func $call_perform (result i32)))
  (import "ic0" "stable64_grow" (func $stable_grow (param i64) (result i64)))
  (import "ic0" "stable64_size" (func $stable_size (result i64)))
  (import "ic0" "stable64_write" (func $stable_write (param i64 i64 i64)))
  (import "ic0" "stable64_read" (func $stable_read (param i64 i64 i64)))
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "global_timer_set" (func $timer_set (param i64) (result i64)))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "accept_message" (func $accept_message))
  (import "ic0" "msg_method_name_size" (func $method_size (result i32)))
"#;

/// Counter at heap address 0 (u64 LE). `inc` adds one and replies the count; `read` (query)
/// replies it; `trap_after_inc` adds one and traps; upgrades save the count to stable memory
/// and restore it into a fresh heap.
/// `set_timer` sets the global timer to `time + arg(u64 LE)`; the timer increments `fired` at
/// address 8. `inspect`: only methods not starting with `x` are accepted.
pub fn counter_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 100) "boom")
  (func $reply_u64 (param $addr i32)
    (call $reply_append (local.get $addr) (i32.const 8))
    (call $reply))
  (func $inc
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1))))
  (func (export "canister_init")
    (if (i32.ge_u (call $arg_size) (i32.const 8))
      (then (call $arg_copy (i32.const 0) (i32.const 0) (i32.const 8)))))
  (func (export "canister_update inc") (call $inc) (call $reply_u64 (i32.const 0)))
  (func (export "canister_query read") (call $reply_u64 (i32.const 0)))
  (func (export "canister_query fired") (call $reply_u64 (i32.const 8)))
  (func (export "canister_update trap_after_inc")
    (call $inc)
    (call $trap (i32.const 100) (i32.const 4)))
  (func (export "canister_update no_reply") (call $inc))
  (func (export "canister_update reject")
    (call $reject (i32.const 100) (i32.const 4)))
  (func (export "canister_update set_timer")
    (call $arg_copy (i32.const 16) (i32.const 0) (i32.const 8))
    (drop (call $timer_set (i64.add (call $time) (i64.load (i32.const 16)))))
    (call $reply_u64 (i32.const 16)))
  (func (export "canister_global_timer")
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1))))
  (func (export "canister_pre_upgrade")
    (drop (call $stable_grow (i64.const 1)))
    (call $stable_write (i64.const 0) (i64.const 0) (i64.const 8)))
  ;; A kept heap (wasm_memory_persistence = keep) already holds the count.
  (func (export "canister_post_upgrade")
    (if (i32.and (i64.gt_u (call $stable_size) (i64.const 0)) (i64.eqz (i64.load (i32.const 0))))
      (then (call $stable_read (i64.const 0) (i64.const 0) (i64.const 8)))))
  (func (export "canister_update print")
    (call $print (i32.const 100) (i32.const 4))
    (call $reply_u64 (i32.const 0)))
)"#
    ))
}

/// Like the counter, but `post_upgrade` traps (an upgrade to it must roll back).
pub fn bad_upgrade_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (func (export "canister_post_upgrade") (call $trap (i32.const 0) (i32.const 0)))
  (func (export "canister_query read") (call $reply_append (i32.const 0) (i32.const 8)) (call $reply))
)"#
    ))
}

/// A canister that loops forever in `spin`.
pub fn loop_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (func (export "canister_update spin") (loop $l (br $l)))
  (func (export "canister_query spin_query") (loop $l (br $l)))
)"#
    ))
}

/// Proxy: `forward` takes `callee principal bytes (29 max) ‖ method` framed as
/// `[callee_len u8][callee][method_len u8][method][cycles u64 LE][timeout u32 LE, 0 = none][payload…]`,
/// calls it, and replies with `[tag u8][reject_code u32 LE if rejected][reply or reject message]`:
/// tag 1 = reply, 2 = reject. `receive` accepts all cycles offered and replies `ok`;
/// `refunded` replies the cycles refunded to the last callback (u64 LE at 2000).
/// `hang` calls `forward`'s target but never replies in its callback... (not needed here).
pub fn proxy_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (data (i32.const 3000) "ok")
  ;; argument copied to 1000..; callee at 1001, method follows.
  (func (export "canister_update forward")
    (local $n i32) (local $callee_len i32) (local $method_off i32) (local $method_len i32)
    (local $p i32) (local $cycles i64) (local $timeout i32) (local $payload i32)
    (local.set $n (call $arg_size))
    (call $arg_copy (i32.const 1000) (i32.const 0) (local.get $n))
    (local.set $callee_len (i32.load8_u (i32.const 1000)))
    (local.set $p (i32.add (i32.const 1001) (local.get $callee_len)))
    (local.set $method_len (i32.load8_u (local.get $p)))
    (local.set $method_off (i32.add (local.get $p) (i32.const 1)))
    (local.set $p (i32.add (local.get $method_off) (local.get $method_len)))
    (local.set $cycles (i64.load (local.get $p)))
    (local.set $timeout (i32.load (i32.add (local.get $p) (i32.const 8))))
    (local.set $payload (i32.add (local.get $p) (i32.const 12)))
    (call $call_new (i32.const 1001) (local.get $callee_len)
                    (local.get $method_off) (local.get $method_len)
                    (i32.const 0) (i32.const 7) (i32.const 1) (i32.const 7))
    (call $call_data_append (local.get $payload)
      (i32.sub (i32.add (i32.const 1000) (local.get $n)) (local.get $payload)))
    (if (i64.ne (local.get $cycles) (i64.const 0))
      (then (call $call_cycles_add128 (i64.const 0) (local.get $cycles))))
    (if (i32.ne (local.get $timeout) (i32.const 0))
      (then (call $call_best_effort (local.get $timeout))))
    (if (i32.ne (call $call_perform) (i32.const 0))
      (then (call $trap (i32.const 3000) (i32.const 2)))))
  (func $on_reply (param $env i32)
    (call $refunded128 (i32.const 2000))
    (i32.store8 (i32.const 500) (i32.const 1))
    (call $reply_append (i32.const 500) (i32.const 1))
    (call $arg_copy (i32.const 4000) (i32.const 0) (call $arg_size))
    (call $reply_append (i32.const 4000) (call $arg_size))
    (call $reply))
  (func $on_reject (param $env i32)
    (call $refunded128 (i32.const 2000))
    (i32.store8 (i32.const 500) (i32.const 2))
    (i32.store (i32.const 501) (call $reject_code))
    (call $reply_append (i32.const 500) (i32.const 5))
    (call $reject_msg_copy (i32.const 4000) (i32.const 0) (call $reject_msg_size))
    (call $reply_append (i32.const 4000) (call $reject_msg_size))
    (call $reply))
  (func (export "canister_update receive")
    (call $accept128 (i64.const -1) (i64.const -1) (i32.const 2100))
    (call $reply_append (i32.const 3000) (i32.const 2))
    (call $reply))
  (func (export "canister_update silent"))
  (func (export "canister_query refunded")
    (call $reply_append (i32.const 2000) (i32.const 8))
    (call $reply))
  (func (export "canister_query echo")
    (call $arg_copy (i32.const 4000) (i32.const 0) (call $arg_size))
    (call $reply_append (i32.const 4000) (call $arg_size))
    (call $reply))
)"#
    ))
}

/// The framed argument of the proxy's `forward`.
pub fn forward_arg(
    callee: Principal,
    method: &str,
    cycles: u64,
    timeout: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut a = vec![callee.as_slice().len() as u8];
    a.extend_from_slice(callee.as_slice());
    a.push(method.len() as u8);
    a.extend_from_slice(method.as_bytes());
    a.extend_from_slice(&cycles.to_le_bytes());
    a.extend_from_slice(&timeout.to_le_bytes());
    a.extend_from_slice(payload);
    a
}

/// Decodes the proxy's reply: Ok(reply) or Err((reject code, message)).
pub fn proxy_result(bytes: &[u8]) -> Result<Vec<u8>, (u32, String)> {
    match bytes[0] {
        1 => Ok(bytes[1..].to_vec()),
        _ => Err((
            u32::from_le_bytes(bytes[1..5].try_into().unwrap()),
            String::from_utf8_lossy(&bytes[5..]).into(),
        )),
    }
}

/// A real canister of `canisters/` (ic-cdk or Motoko), unmodified.
pub fn real_canister(name: &str) -> Vec<u8> {
    tabnet_test_canisters::wasm(name).to_vec()
}
