//! Real canisters (ic-cdk Rust and Motoko, built by `scripts/build-canisters.sh` into
//! `target/canisters/`) run unmodified on the embedder alone: install, messages, traps,
//! limits, upgrades, calls and their callbacks. A missing canister fails the test.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod embedder_support;

use candid::{Decode, Encode, Principal};
use embedder_support::*;
use std::sync::Arc;
use tabnet_execution::hypervisor::{
    execute, ApiType, CanisterModule, EntryPoint, ExecutionOutcome, ExecutionState, WasmResult,
};
use tabnet_types::{canister_id_from_index, ErrorCode};

const NAMES: [&str; 10] =
    ["caller", "counter", "loop", "membomb", "stable", "timer", "trap", "motoko_caller", "motoko_counter", "invalid"];

fn canister(name: &str) -> Arc<CanisterModule> {
    CanisterModule::new(tabnet_test_canisters::wasm(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Instantiates and runs `canister_init` (if exported) with `arg`.
fn installed(name: &str, arg: Vec<u8>) -> ExecutionState {
    let mut state = install_module(canister(name));
    if state.exports_function("canister_init") {
        let init = ApiType::Init { caller: controller(), arg };
        let o = run(&mut state, "canister_init", init);
        assert_eq!(o.result, Ok(None), "{name}: canister_init");
    }
    state
}

fn call(state: &mut ExecutionState, method: &str, arg: Vec<u8>) -> ExecutionOutcome {
    update(state, method, &arg)
}

fn query_with(state: &mut ExecutionState, method: &str, arg: Vec<u8>) -> ExecutionOutcome {
    query(state, method, &arg)
}

#[test]
fn every_test_canister_loads() {
    for name in NAMES {
        match (name, CanisterModule::new(tabnet_test_canisters::wasm(name))) {
            ("invalid", Err(e)) => assert_eq!(e.code, ErrorCode::CanisterInvalidWasm),
            ("invalid", Ok(_)) => panic!("invalid.wasm was accepted"),
            (_, Err(e)) => panic!("{name}: {e}"),
            (_, Ok(m)) => {
                assert_eq!(m.is_wasm64(), name.starts_with("motoko"), "{name}: memory width");
                assert!(m.exports_function("canister_init") || !name.starts_with("motoko"), "{name}");
            }
        }
    }
}

#[test]
fn rust_counter() {
    let mut s = installed("counter", Encode!(&Some(41u64)).unwrap());
    assert_eq!(Decode!(&reply(&call(&mut s, "inc", Encode!().unwrap())), u64).unwrap(), 42);
    assert_eq!(Decode!(&reply(&query_with(&mut s, "get", Encode!().unwrap())), u64).unwrap(), 42);
    assert_eq!(Decode!(&reply(&query_with(&mut s, "whoami", Encode!().unwrap())), Principal).unwrap(), user());

    let o = call(&mut s, "set_certified", Encode!().unwrap());
    assert_eq!(o.changes.new_certified_data, Some(42u64.to_be_bytes().to_vec()));

    let api = ApiType::NonReplicatedQuery {
        caller: user(),
        method: "get_certified".into(),
        arg: Encode!().unwrap(),
        data_certificate: Some(b"a certificate".to_vec()),
    };
    let o = run(&mut s, "canister_query get_certified", api);
    #[derive(candid::CandidType, candid::Deserialize)]
    struct CertifiedCount {
        count: u64,
        certificate: Option<Vec<u8>>,
    }
    let r = Decode!(&reply(&o), CertifiedCount).unwrap();
    assert_eq!((r.count, r.certificate), (42, Some(b"a certificate".to_vec())));

    // Upgrade: pre_upgrade saves to stable memory, post_upgrade restores on a fresh instance.
    let pre = run(&mut s, "canister_pre_upgrade", ApiType::PreUpgrade { caller: controller() });
    assert_eq!(pre.result, Ok(None));
    let (mut upgraded, _) =
        ExecutionState::new(canister("counter"), s.stable_bytes().to_vec(), &sys(), &params()).unwrap();
    let post = ApiType::PostUpgrade { caller: controller(), arg: Encode!(&None::<u64>).unwrap() };
    assert_eq!(run(&mut upgraded, "canister_post_upgrade", post).result, Ok(None));
    assert_eq!(Decode!(&reply(&query_with(&mut upgraded, "get", Encode!().unwrap())), u64).unwrap(), 42);

    // Snapshot and restore mid-life.
    let mut restored = ExecutionState::restore(upgraded.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), upgraded.state_hash());
    let a = call(&mut upgraded, "inc", Encode!().unwrap());
    let b = call(&mut restored, "inc", Encode!().unwrap());
    assert_eq!(reply(&a), reply(&b));
    assert_eq!(a.instructions_used, b.instructions_used);
    assert_eq!(restored.state_hash(), upgraded.state_hash());
}

#[test]
fn motoko_counter_in_64_bit_memory() {
    let mut s = installed("motoko_counter", Encode!().unwrap());
    assert!(s.is_wasm64());
    for i in 1..=3u64 {
        assert_eq!(Decode!(&reply(&call(&mut s, "inc", Encode!().unwrap())), u64).unwrap(), i);
    }
    assert_eq!(Decode!(&reply(&query_with(&mut s, "get", Encode!().unwrap())), u64).unwrap(), 3);
    assert_eq!(Decode!(&reply(&query_with(&mut s, "whoami", Encode!().unwrap())), Principal).unwrap(), user());
    let id = Decode!(&reply(&query_with(&mut s, "self_id", Encode!().unwrap())), String).unwrap();
    assert_eq!(id, canister_id_from_index(7).to_text());

    let mut restored = ExecutionState::restore(s.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), s.state_hash());
    assert_eq!(Decode!(&reply(&call(&mut restored, "inc", Encode!().unwrap())), u64).unwrap(), 4);

    // Enhanced orthogonal persistence: upgrade keeping the heap; `count` survives.
    let pre = run(&mut s, "canister_pre_upgrade", ApiType::PreUpgrade { caller: controller() });
    assert!(pre.result.is_ok(), "{:?}", pre.result);
    let (mut upgraded, _) =
        ExecutionState::new_keeping_heap(canister("motoko_counter"), &s, &sys(), &params()).unwrap();
    let post = ApiType::PostUpgrade { caller: controller(), arg: Encode!().unwrap() };
    let o = run(&mut upgraded, "canister_post_upgrade", post);
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(Decode!(&reply(&query_with(&mut upgraded, "get", Encode!().unwrap())), u64).unwrap(), 3);
    assert_eq!(Decode!(&reply(&query_with(&mut upgraded, "transient_calls", Encode!().unwrap())), u64).unwrap(), 0);
}

#[test]
fn traps_roll_back_and_rejects_do_not() {
    let mut s = installed("trap", Encode!().unwrap());
    assert_eq!(Decode!(&reply(&call(&mut s, "maybe", Encode!(&false).unwrap())), u64).unwrap(), 1);
    let o = call(&mut s, "maybe", Encode!(&true).unwrap());
    assert_eq!(error_code(&o), ErrorCode::CanisterCalledTrap);
    assert_eq!(Decode!(&reply(&query_with(&mut s, "get", Encode!().unwrap())), u64).unwrap(), 1);

    let o = call(&mut s, "panic", Encode!().unwrap());
    assert_eq!(error_code(&o), ErrorCode::CanisterCalledTrap);
    assert!(error_message(&o).contains("Panicked at"), "{}", error_message(&o));

    // Bad candid: ic-cdk traps with its decoding message.
    let o = call(&mut s, "maybe", b"not candid".to_vec());
    assert_eq!(error_code(&o), ErrorCode::CanisterCalledTrap);

    let o = call(&mut s, "reject", Encode!(&"go away").unwrap());
    assert_eq!(o.result, Ok(Some(WasmResult::Reject("go away".into()))));
    assert!(call(&mut s, "boom", Encode!().unwrap()).result.is_err());
}

#[test]
fn endless_loops_hit_the_instruction_limit() {
    let mut s = installed("loop", Encode!().unwrap());
    let mut p = params();
    p.instruction_limit = 50_000_000;
    let entry = EntryPoint::Export("canister_update forever".into());
    let o = execute(&mut s, &entry, update_api("forever", &Encode!().unwrap()), &sys(), &p);
    assert_eq!(error_code(&o), ErrorCode::CanisterInstructionLimitExceeded);
    assert_eq!(o.instructions_used, 50_000_000);
    let used = Decode!(&reply(&call(&mut s, "spin", Encode!(&1000u64).unwrap())), u64).unwrap();
    assert!(used > 1000, "performance_counter reports the work done: {used}");
}

#[test]
fn memory_bombs_stop_at_the_limits() {
    let mut s = installed("membomb", Encode!().unwrap());
    let pages = |s: &mut ExecutionState, m: &str| Decode!(&reply(&query_with(s, m, Encode!().unwrap())), u64).unwrap();
    let heap_before = pages(&mut s, "heap_pages");
    let mut p = params();
    p.wasm_memory_limit = 64 << 20;
    let entry = EntryPoint::Export("canister_update grow".into());
    let o = execute(&mut s, &entry, update_api("grow", &Encode!().unwrap()), &sys(), &p);
    assert_eq!(error_code(&o), ErrorCode::CanisterWasmMemoryLimitExceeded, "{:?}", o.result);
    assert_eq!(pages(&mut s, "heap_pages"), heap_before);

    p.stable_memory_limit = 32 << 20;
    let entry = EntryPoint::Export("canister_update grow_stable".into());
    let o = execute(&mut s, &entry, update_api("grow_stable", &Encode!().unwrap()), &sys(), &p);
    assert!(o.result.is_err());
    assert_eq!(pages(&mut s, "stable_pages"), 0);
}

#[test]
fn stable_structures_survive_an_upgrade() {
    let mut s = installed("stable", Encode!().unwrap());
    assert_eq!(Decode!(&reply(&call(&mut s, "put", Encode!(&"k", &"v").unwrap())), Option<String>).unwrap(), None);
    call(&mut s, "set_heap", Encode!(&"heap value").unwrap());
    assert_eq!(run(&mut s, "canister_pre_upgrade", ApiType::PreUpgrade { caller: controller() }).result, Ok(None));
    let (mut upgraded, _) = ExecutionState::new(canister("stable"), s.into_stable_memory(), &sys(), &params()).unwrap();
    let post = ApiType::PostUpgrade { caller: controller(), arg: Encode!().unwrap() };
    assert_eq!(run(&mut upgraded, "canister_post_upgrade", post).result, Ok(None));
    let get = |s: &mut ExecutionState| {
        Decode!(&reply(&query_with(s, "get", Encode!(&"k").unwrap())), Option<String>).unwrap()
    };
    assert_eq!(get(&mut upgraded), Some("v".into()));
    assert_eq!(Decode!(&reply(&query_with(&mut upgraded, "upgrades", Encode!().unwrap())), u64, u64).unwrap(), (1, 1));
}

#[test]
fn rust_calls_and_their_callbacks() {
    let mut s = installed("caller", Encode!().unwrap());
    let callee = canister_id_from_index(9);
    let o = call(&mut s, "call_inc", Encode!(&callee).unwrap());
    assert_eq!(o.result, Ok(None), "no reply until the callee answers");
    assert_eq!(o.changes.calls.len(), 1);
    let c = &o.changes.calls[0];
    assert_eq!((c.callee, c.method.as_str()), (callee, "inc"));

    // The callee replies 7: the reply callback resumes the future, which replies `Ok(7)`.
    let reply_api = ApiType::ReplyCallback {
        caller: user(),
        reply: Encode!(&7u64).unwrap(),
        cycles_refunded: 0,
        cycles_available: 0,
        deadline: None,
        responded: false,
    };
    // Had the call context been answered already, the callback's reply would be refused.
    let mut answered = s.try_clone().unwrap();
    let again = ApiType::ReplyCallback {
        caller: user(),
        reply: Encode!(&7u64).unwrap(),
        cycles_refunded: 0,
        cycles_available: 0,
        deadline: None,
        responded: true,
    };
    let refused = execute(&mut answered, &EntryPoint::Closure(c.on_reply), again, &sys(), &params());
    assert_eq!(error_code(&refused), ErrorCode::CanisterContractViolation);
    assert!(error_message(&refused).contains("already been responded"), "{}", error_message(&refused));
    let o = execute(&mut s, &EntryPoint::Closure(c.on_reply), reply_api, &sys(), &params());
    #[derive(candid::CandidType, candid::Deserialize, Debug, PartialEq)]
    struct CallError {
        reject_code: u32,
        message: String,
    }
    let r = Decode!(&reply(&o), Result<u64, CallError>).unwrap();
    assert_eq!(r, Ok(7));
}

#[test]
fn motoko_calls_and_their_callbacks() {
    let mut s = installed("motoko_caller", Encode!().unwrap());
    let callee = canister_id_from_index(9);
    let o = call(&mut s, "call_inc", Encode!(&callee).unwrap());
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(o.changes.calls.len(), 1);
    let c = o.changes.calls[0].clone();
    assert_eq!((c.callee, c.method.as_str()), (callee, "inc"));
    let reply_api = ApiType::ReplyCallback {
        caller: user(),
        reply: Encode!(&5u64).unwrap(),
        cycles_refunded: 0,
        cycles_available: 0,
        deadline: None,
        responded: false,
    };
    let o = execute(&mut s, &EntryPoint::Closure(c.on_reply), reply_api, &sys(), &params());
    assert_eq!(Decode!(&reply(&o), u64).unwrap(), 5);
}

#[test]
fn timers_set_the_global_timer() {
    let mut s = install_module(canister("timer"));
    let o = run(&mut s, "canister_init", ApiType::Init { caller: controller(), arg: Encode!().unwrap() });
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(o.changes.new_global_timer, Some(TIME + 1_000_000_000), "init schedules a timer in 1 s");
    // An earlier timer moves the global timer.
    let o = call(&mut s, "schedule", Encode!(&500u64).unwrap());
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(o.changes.new_global_timer, Some(TIME + 500_000_000));
}
