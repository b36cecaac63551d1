//! Real ic-cdk and Motoko canisters (built by `scripts/build-canisters.sh` into
//! `target/canisters/`), unmodified, through the scheduler and the management canister.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_execution::SubnetConfig;
use tabnet_types::{ErrorCode, RejectCode};

fn canister(name: &str) -> Vec<u8> {
    real_canister(name)
}

#[derive(CandidType, Deserialize, Debug, PartialEq)]
struct CallError {
    reject_code: u32,
    message: String,
}

#[derive(CandidType, Deserialize, Debug, PartialEq)]
struct CyclesSent {
    accepted: Nat,
    refunded: Nat,
}

fn install_with(t: &mut Env, wasm: &[u8], arg: Vec<u8>) -> Principal {
    let id = t.create(None);
    t.install_mode(id, wasm, arg, CanisterInstallMode::Install).expect("install");
    id
}

fn get_u64(t: &mut Env, id: Principal, method: &str) -> u64 {
    Decode!(&t.query(user(), id, method, Encode!().unwrap()).unwrap(), u64).unwrap()
}

#[test]
fn rust_counter_install_upgrade_reinstall() {
    let wasm = canister("counter");
    let mut t = Env::new();
    let id = install_with(&mut t, &wasm, Encode!(&Some(5u64)).unwrap());
    assert_eq!(Decode!(&t.update(id, "inc", Encode!().unwrap()).unwrap(), u64).unwrap(), 6);
    assert_eq!(get_u64(&mut t, id, "get"), 6);
    let me = Decode!(&t.query(user(), id, "whoami", Encode!().unwrap()).unwrap(), Principal).unwrap();
    assert_eq!(me, user());

    t.install_mode(id, &wasm, Encode!(&None::<u64>).unwrap(), CanisterInstallMode::Upgrade(None)).unwrap();
    assert_eq!(get_u64(&mut t, id, "get"), 6, "pre_upgrade/post_upgrade kept the count in stable memory");

    t.install_mode(id, &wasm, Encode!(&None::<u64>).unwrap(), CanisterInstallMode::Reinstall).unwrap();
    assert_eq!(get_u64(&mut t, id, "get"), 0);

    // Certified data is set by an update and visible in the state.
    t.update(id, "inc", Encode!().unwrap()).unwrap();
    t.update(id, "set_certified", Encode!().unwrap()).unwrap();
    assert_eq!(t.env.state().certified_data(&id).unwrap(), &1u64.to_be_bytes());
}

#[test]
fn rust_caller_calls_counter_trap_and_sends_cycles() {
    let mut t = Env::new();
    let caller = install_with(&mut t, &canister("caller"), Encode!().unwrap());
    let counter = install_with(&mut t, &canister("counter"), Encode!(&None::<u64>).unwrap());
    let trap = install_with(&mut t, &canister("trap"), Encode!().unwrap());

    let r = t.update(caller, "call_inc", Encode!(&counter).unwrap()).unwrap();
    assert_eq!(Decode!(&r, Result<u64, CallError>).unwrap(), Ok(1));
    let r = t.update(caller, "call_get", Encode!(&counter).unwrap()).unwrap();
    assert_eq!(Decode!(&r, Result<u64, CallError>).unwrap(), Ok(1));

    let r = t.update(caller, "call_trap", Encode!(&trap).unwrap()).unwrap();
    let err = Decode!(&r, Result<serde_bytes::ByteBuf, CallError>).unwrap().unwrap_err();
    assert_eq!(err.reject_code, 5, "{}", err.message);

    let other = install_with(&mut t, &canister("caller"), Encode!().unwrap());
    let before = t.cycles(other);
    let r = t
        .update(caller, "send_cycles", Encode!(&other, &Nat::from(2_000_000_000u64), &Nat::from(500_000_000u64)).unwrap())
        .unwrap();
    let sent = Decode!(&r, Result<CyclesSent, CallError>).unwrap().unwrap();
    assert_eq!(sent.accepted, Nat::from(500_000_000u64));
    assert_eq!(sent.refunded, Nat::from(1_500_000_000u64));
    assert!(t.cycles(other) > before, "the callee kept what it accepted (minus its execution fee)");

    let r = t.update(caller, "raw_rand", Encode!().unwrap()).unwrap();
    assert_eq!(Decode!(&r, Result<serde_bytes::ByteBuf, CallError>).unwrap().unwrap().len(), 32);

    let fee = t.env.config().cycles.creation_fee();
    let r = t.update(caller, "create_canister", Encode!(&Nat::from(fee + 1_000_000)).unwrap()).unwrap();
    let created = Decode!(&r, Result<Principal, CallError>).unwrap().unwrap();
    assert_eq!(t.cycles(created), 1_000_000);
    let controllers = t.env.state().controllers(&created).unwrap().to_vec();
    assert!(controllers.contains(&caller));

    // A best-effort call that completes in time.
    let r = t
        .update(caller, "call_bounded", Encode!(&counter, &"inc", &serde_bytes::ByteBuf::from(Encode!().unwrap()), &10u32).unwrap())
        .unwrap();
    let reply = Decode!(&r, Result<serde_bytes::ByteBuf, CallError>).unwrap().unwrap();
    assert_eq!(Decode!(&reply, u64).unwrap(), 2);
}

#[test]
fn rust_trap_rolls_back() {
    let mut t = Env::new();
    let id = install_with(&mut t, &canister("trap"), Encode!().unwrap());
    assert_eq!(Decode!(&t.update(id, "maybe", Encode!(&false).unwrap()).unwrap(), u64).unwrap(), 1);
    let err = t.update(id, "maybe", Encode!(&true).unwrap()).unwrap_err();
    assert_eq!(err.0, RejectCode::CanisterError);
    assert_eq!(get_u64(&mut t, id, "get"), 1);
    let err = t.update(id, "panic", Encode!().unwrap()).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterCalledTrap);
    let err = t.update(id, "reject", Encode!(&"no").unwrap()).unwrap_err();
    assert_eq!((err.0, err.1.as_str()), (RejectCode::CanisterReject, "no"));
}

#[test]
fn rust_loop_hits_the_instruction_limit() {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_instructions_per_update = 20_000_000;
    config.max_instructions_per_query = 20_000_000;
    let mut t = Env::with_config(config);
    let id = install_with(&mut t, &canister("loop"), Encode!().unwrap());
    let err = t.update(id, "forever", Encode!().unwrap()).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInstructionLimitExceeded);
    let err = t.query(user(), id, "forever_query", Encode!().unwrap()).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInstructionLimitExceeded);
    // A bounded spin finishes.
    assert!(Decode!(&t.update(id, "spin", Encode!(&1000u64).unwrap()).unwrap(), u64).unwrap() > 0);
}

#[test]
fn rust_membomb_traps_and_rolls_back() {
    let mut config = SubnetConfig::for_subnet_size(13);
    config.max_wasm32_memory = 64 << 20;
    config.max_stable_memory = 16 << 20;
    let mut t = Env::with_config(config);
    let id = install_with(&mut t, &canister("membomb"), Encode!().unwrap());
    let before = get_u64(&mut t, id, "heap_pages");
    let err = t.update(id, "grow", Encode!().unwrap()).unwrap_err();
    assert_eq!(err.0, RejectCode::CanisterError, "{}", err.1);
    assert_eq!(get_u64(&mut t, id, "heap_pages"), before, "the failed growth rolled back");
    let err = t.update(id, "grow_stable", Encode!().unwrap()).unwrap_err();
    assert_eq!(err.0, RejectCode::CanisterError);
    assert_eq!(get_u64(&mut t, id, "stable_pages"), 0);
    // The canister still works.
    assert_eq!(get_u64(&mut t, id, "heap_pages"), before);
}

#[test]
fn rust_timers_and_heartbeat_fire() {
    let mut t = Env::new();
    let id = install_with(&mut t, &canister("timer"), Encode!().unwrap());
    t.advance(2 * SECOND);
    t.tick();
    t.tick();
    assert_eq!(get_u64(&mut t, id, "count"), 1, "the init timer fired");
    t.update(id, "schedule", Encode!(&5_000u64).unwrap()).unwrap();
    t.tick();
    assert_eq!(get_u64(&mut t, id, "count"), 1);
    t.advance(6 * SECOND);
    t.tick();
    t.tick();
    assert_eq!(get_u64(&mut t, id, "count"), 2);
    assert!(get_u64(&mut t, id, "beats") >= 4);
    let now = get_u64(&mut t, id, "now");
    assert!(now > T0);
}

#[test]
fn rust_stable_structures_survive_upgrade() {
    let wasm = canister("stable");
    let mut t = Env::new();
    let id = install_with(&mut t, &wasm, Encode!().unwrap());
    t.update(id, "put", Encode!(&"k", &"v").unwrap()).unwrap();
    t.update(id, "set_heap", Encode!(&"heap").unwrap()).unwrap();
    t.install_mode(id, &wasm, Encode!().unwrap(), CanisterInstallMode::Upgrade(None)).unwrap();
    let v = Decode!(&t.query(user(), id, "get", Encode!(&"k").unwrap()).unwrap(), Option<String>).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let (pre, post) = Decode!(&t.query(user(), id, "upgrades", Encode!().unwrap()).unwrap(), u64, u64).unwrap();
    assert_eq!((pre, post), (1, 1));
}

#[test]
fn motoko_counter_upgrades_with_kept_memory() {
    let wasm = canister("motoko_counter");
    let mut t = Env::new();
    let id = install_with(&mut t, &wasm, Encode!().unwrap());
    let n = Decode!(&t.update(id, "inc", Encode!().unwrap()).unwrap(), u64).unwrap();
    assert_eq!(n, 1);
    t.update(id, "inc", Encode!().unwrap()).unwrap();
    assert_eq!(get_u64(&mut t, id, "transient_calls"), 2);

    let keep = UpgradeOptions { skip_pre_upgrade: None, wasm_memory_persistence: Some(WasmMemoryPersistence::Keep) };
    t.install_mode(id, &wasm, Encode!().unwrap(), CanisterInstallMode::Upgrade(Some(keep))).unwrap();
    assert_eq!(get_u64(&mut t, id, "get"), 2, "persistent state kept");
    assert_eq!(get_u64(&mut t, id, "transient_calls"), 0, "transient state reset");

    let metadata = t.env.state().metadata_sections(&id);
    assert!(metadata.iter().any(|(name, _)| name == "candid:service"), "{metadata:?}");
}

#[test]
fn motoko_caller_calls_rust_and_motoko() {
    let mut t = Env::new();
    let caller = install_with(&mut t, &canister("motoko_caller"), Encode!().unwrap());
    let rust = install_with(&mut t, &canister("counter"), Encode!(&None::<u64>).unwrap());
    let motoko = install_with(&mut t, &canister("motoko_counter"), Encode!().unwrap());
    let trap = install_with(&mut t, &canister("trap"), Encode!().unwrap());
    for callee in [rust, motoko] {
        let r = t.update(caller, "call_inc", Encode!(&callee).unwrap()).unwrap();
        assert_eq!(Decode!(&r, u64).unwrap(), 1);
    }
    let r = t.update(caller, "call_trap", Encode!(&trap).unwrap()).unwrap();
    let text = Decode!(&r, String).unwrap();
    assert!(text.contains("canister_error"), "{text}");
}
