//! Canister lifecycle through the management canister: create, install, upgrade, reinstall,
//! uninstall, stop/start/delete, settings, status, controllers, bad input.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{Encode, Nat, Principal};
use sha2::Digest;
use scheduler_support::*;
use tabnet_execution::management::types::*;
use tabnet_types::{ErrorCode, RejectCode, MANAGEMENT_CANISTER};

#[test]
fn install_call_upgrade_keeps_stable_memory_and_reinstall_resets() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 1);
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 2);
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 2);

    let hash_before = t.status(id).module_hash.unwrap();
    t.install_mode(id, &counter_wat(), vec![], CanisterInstallMode::Upgrade(None)).unwrap();
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 2, "upgrade keeps the count via stable memory");
    assert_eq!(t.status(id).module_hash.unwrap(), hash_before);

    // skip_pre_upgrade: stable memory still holds the value saved at the last upgrade.
    t.update(id, "inc", vec![]).unwrap();
    let opts = UpgradeOptions { skip_pre_upgrade: Some(true), wasm_memory_persistence: None };
    t.install_mode(id, &counter_wat(), vec![], CanisterInstallMode::Upgrade(Some(opts))).unwrap();
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 2);

    // keep: only for modules that declare enhanced orthogonal persistence; the heap survives.
    t.update(id, "inc", vec![]).unwrap();
    t.update(id, "inc", vec![]).unwrap();
    let keep = UpgradeOptions { skip_pre_upgrade: Some(true), wasm_memory_persistence: Some(WasmMemoryPersistence::Keep) };
    let err = t.install_mode(id, &counter_wat(), vec![], CanisterInstallMode::Upgrade(Some(keep))).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterContractViolation);
    assert!(err.1.contains("requires that the new canister module supports enhanced orthogonal persistence"), "{}", err.1);
    let persistent = with_custom_section(counter_wat(), "icp:private enhanced-orthogonal-persistence", b"32-bit");
    t.install_mode(id, &persistent, vec![], CanisterInstallMode::Upgrade(Some(keep))).unwrap();
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 4);

    // Such a canister must say what happens to its heap.
    let err = t.install_mode(id, &persistent, vec![], CanisterInstallMode::Upgrade(None)).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterContractViolation);
    assert!(err.1.starts_with("Missing upgrade option"), "{}", err.1);

    t.install_mode(id, &counter_wat(), 7u64.to_le_bytes().to_vec(), CanisterInstallMode::Reinstall).unwrap();
    assert_eq!(u64_of(&t.query(user(), id, "read", vec![]).unwrap()), 7, "reinstall runs init with the argument");
}

#[test]
fn install_on_non_empty_canister_and_invalid_wasm_fail() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let err = t.install_mode(id, &counter_wat(), vec![], CanisterInstallMode::Install).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterNonEmpty);
    assert!(err.1.contains("not empty"));

    let empty = t.create(None);
    let err = t.install_mode(empty, b"not wasm at all", vec![], CanisterInstallMode::Install).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInvalidWasm);
    assert_eq!(err.0, RejectCode::CanisterError);
    assert!(t.status(empty).module_hash.is_none());

    let err = t.install_mode(empty, &counter_wat(), vec![], CanisterInstallMode::Upgrade(None)).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterWasmModuleNotFound);
}

#[test]
fn trap_in_post_upgrade_rolls_back_the_whole_upgrade() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "inc", vec![]).unwrap();
    let version = t.env.state().canister(&id).unwrap().system.canister_version;
    let err = t.install_mode(id, &bad_upgrade_wat(), vec![], CanisterInstallMode::Upgrade(None)).unwrap_err();
    assert_eq!(err.0, RejectCode::CanisterError);
    // Old code, old memory, old version; the pre_upgrade's stable write is rolled back too.
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 2);
    let c = t.env.state().canister(&id).unwrap();
    assert_eq!(c.system.canister_version, version);
    assert!(c.execution.as_ref().unwrap().stable_bytes().is_empty());
}

#[test]
fn only_controllers_manage_a_canister() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let args = InstallCodeArgs {
        mode: CanisterInstallMode::Reinstall,
        canister_id: id,
        wasm_module: counter_wat(),
        arg: vec![],
        sender_canister_version: None,
    };
    // Filtered at ingress ...
    let msg = t.message(other_user(), MANAGEMENT_CANISTER, "install_code", Encode!(&args).unwrap(), id);
    let err = t.env.should_accept_ingress(&msg, t.time).unwrap_err();
    assert_eq!(err.code, ErrorCode::CanisterInvalidController);
    let err = t.mgmt(other_user(), "install_code", &args).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInvalidController);
    // ... and refused in execution (here: a canister that is not a controller calls), with the
    // replica's message.
    let proxy = t.deploy(&proxy_wat());
    let call = forward_arg(MANAGEMENT_CANISTER, "install_code", 0, 0, &Encode!(&args).unwrap());
    let (code, message) = proxy_result(&t.update(proxy, "forward", call).unwrap()).unwrap_err();
    assert_eq!(code, 5);
    assert!(message.starts_with(&format!("Only the controllers of the canister {id} can control it.")), "{message}");

    // No controllers: nobody can change it any more.
    let settings = CanisterSettings { controllers: Some(vec![]), ..Default::default() };
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
        .unwrap();
    let err = t.mgmt(user(), "stop_canister", &CanisterIdRecord { canister_id: id }).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterInvalidController);
}

#[test]
fn stop_start_delete_lifecycle() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let rec = CanisterIdRecord { canister_id: id };
    let err = t.mgmt(user(), "delete_canister", &rec).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterNotStopped);

    t.mgmt(user(), "stop_canister", &rec).unwrap();
    let status = t.status(id);
    assert_eq!(status.status, CanisterStatusType::Stopped);
    assert!(status.ready_for_migration);
    assert_eq!(status.version, t.env.state().canister(&id).unwrap().system.canister_version);
    let err = t.update(id, "inc", vec![]).unwrap_err();
    assert_eq!((err.0, err.2), (RejectCode::CanisterError, ErrorCode::CanisterStopped));
    let err = t.query(user(), id, "read", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterStopped);

    t.mgmt(user(), "start_canister", &rec).unwrap();
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 1);

    t.mgmt(user(), "stop_canister", &rec).unwrap();
    t.mgmt(user(), "delete_canister", &rec).unwrap();
    assert!(t.env.state().canister(&id).is_none());
    let err = t.update(id, "inc", vec![]).unwrap_err();
    assert_eq!((err.0, err.2), (RejectCode::DestinationInvalid, ErrorCode::CanisterNotFound));
    let err = t.mgmt(user(), "canister_status", &rec).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterNotFound);
}

#[test]
fn uninstall_removes_code_and_status_reports_settings() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    let settings = CanisterSettings {
        freezing_threshold: Some(Nat::from(1000u64)),
        compute_allocation: Some(Nat::from(5u64)),
        log_visibility: Some(LogVisibility::Public),
        ..Default::default()
    };
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
        .unwrap();
    let s = t.status(id);
    assert_eq!(s.status, CanisterStatusType::Running);
    assert_eq!(s.settings.freezing_threshold, Nat::from(1000u64));
    assert_eq!(s.settings.compute_allocation, Nat::from(5u64));
    assert_eq!(s.settings.controllers, vec![user()]);
    assert_eq!(s.settings.log_visibility, LogVisibility::Public);
    assert!(u128::try_from(&s.idle_cycles_burned_per_day.0).unwrap() > 0);
    assert!(u64::try_from(&s.memory_size.0).unwrap() > 0);
    assert_eq!(s.query_stats.num_calls_total, Nat::from(0u64));

    // canister_status also answers as a query, to controllers only.
    let reply = t.query(user(), MANAGEMENT_CANISTER, "canister_status", Encode!(&CanisterIdRecord { canister_id: id }).unwrap());
    assert!(reply.is_ok());
    let err = t.query(other_user(), MANAGEMENT_CANISTER, "canister_status", Encode!(&CanisterIdRecord { canister_id: id }).unwrap());
    assert_eq!(err.unwrap_err().2, ErrorCode::CanisterInvalidController);

    t.mgmt(user(), "uninstall_code", &UninstallCodeArgs { canister_id: id, sender_canister_version: None }).unwrap();
    assert!(t.status(id).module_hash.is_none());
    let err = t.update(id, "inc", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterWasmModuleNotFound);
}

#[test]
fn bad_management_calls_get_clear_errors() {
    let mut t = Env::new();
    let err = t.ingress(user(), MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", b"junk".to_vec()).unwrap_err();
    assert_eq!(err.2, ErrorCode::InvalidManagementPayload);
    assert!(err.1.starts_with("Error decoding candid"));

    let msg = t.message(user(), MANAGEMENT_CANISTER, "no_such_method", Encode!().unwrap(), MANAGEMENT_CANISTER);
    assert_eq!(t.env.should_accept_ingress(&msg, t.time).unwrap_err().code, ErrorCode::CanisterMethodNotFound);
    let msg = t.message(user(), MANAGEMENT_CANISTER, "raw_rand", Encode!().unwrap(), MANAGEMENT_CANISTER);
    assert_eq!(t.env.should_accept_ingress(&msg, t.time).unwrap_err().code, ErrorCode::CanisterRejectedMessage);

    let id = t.deploy(&counter_wat());
    let err = t.update(id, "nope", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterMethodNotFound);
    let err = t.query(user(), id, "inc", vec![]).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterMethodNotFound);
}

#[test]
fn provisional_create_honours_specified_id_and_ids_count_from_zero() {
    let mut t = Env::new();
    let first = t.create(None);
    assert_eq!(first.to_text(), "rwlgt-iiaaa-aaaaa-aaaaa-cai");
    assert_eq!(t.cycles(first), t.env.config().provisional_default_cycles);

    let wanted = tabnet_types::canister_id_from_index(77);
    let args = ProvisionalCreateCanisterWithCyclesArgs { specified_id: Some(wanted), amount: Some(Nat::from(5u64)), ..Default::default() };
    let reply = t.mgmt(user(), "provisional_create_canister_with_cycles", &args).unwrap();
    assert_eq!(candid::decode_one::<CreateCanisterResult>(&reply).unwrap().canister_id, wanted);
    assert_eq!(t.cycles(wanted), 5);
    let err = t.mgmt(user(), "provisional_create_canister_with_cycles", &args).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterAlreadyInstalled);
    let outside = ProvisionalCreateCanisterWithCyclesArgs {
        specified_id: Some(tabnet_types::canister_id_from_index(1 << 40)),
        ..Default::default()
    };
    assert_eq!(t.mgmt(user(), "provisional_create_canister_with_cycles", &outside).unwrap_err().2, ErrorCode::CanisterNotHostedBySubnet);
    let not_a_canister = ProvisionalCreateCanisterWithCyclesArgs { specified_id: Some(Principal::anonymous()), ..Default::default() };
    assert!(t.mgmt(user(), "provisional_create_canister_with_cycles", &not_a_canister).is_err());
}

#[test]
fn logs_are_kept_and_fetched_per_visibility() {
    let mut t = Env::new();
    let id = t.deploy(&counter_wat());
    t.update(id, "print", vec![]).unwrap();
    let _ = t.update(id, "trap_after_inc", vec![]);
    let arg = Encode!(&CanisterIdRecord { canister_id: id }).unwrap();
    let reply = t.query(user(), MANAGEMENT_CANISTER, "fetch_canister_logs", arg.clone()).unwrap();
    let logs: FetchCanisterLogsResult = candid::decode_one(&reply).unwrap();
    assert!(logs.canister_log_records.len() >= 2);
    assert_eq!(logs.canister_log_records[0].content, b"boom");
    assert!(logs.canister_log_records.windows(2).all(|w| w[0].idx < w[1].idx));
    let err = t.query(other_user(), MANAGEMENT_CANISTER, "fetch_canister_logs", arg.clone()).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterRejectedMessage);
    // Not as an update.
    let err = t.ingress(user(), MANAGEMENT_CANISTER, "fetch_canister_logs", arg).unwrap_err();
    assert_eq!(err.2, ErrorCode::CanisterRejectedMessage);
}

#[test]
fn chunked_install_assembles_and_checks_the_module() {
    let mut t = Env::new();
    let id = t.create(None);
    let wasm = counter_wat();
    let (first, second) = wasm.split_at(wasm.len() / 2);
    let mut hashes = Vec::new();
    for chunk in [first, second] {
        let reply = t.mgmt(user(), "upload_chunk", &UploadChunkArgs { canister_id: id, chunk: chunk.to_vec() }).unwrap();
        hashes.push(candid::decode_one::<ChunkHash>(&reply).unwrap());
    }
    let stored = t.mgmt(user(), "stored_chunks", &CanisterIdRecord { canister_id: id }).unwrap();
    assert_eq!(candid::decode_one::<Vec<ChunkHash>>(&stored).unwrap().len(), 2);

    let mut args = InstallChunkedCodeArgs {
        mode: CanisterInstallMode::Install,
        target_canister: id,
        store_canister: None,
        chunk_hashes_list: hashes,
        wasm_module_hash: vec![0; 32],
        arg: vec![],
        sender_canister_version: None,
    };
    let err = t.mgmt(user(), "install_chunked_code", &args).unwrap_err();
    assert!(err.1.contains("does not match"), "{}", err.1);
    args.wasm_module_hash = sha2::Sha256::digest(&wasm).to_vec();
    t.mgmt(user(), "install_chunked_code", &args).unwrap();
    assert_eq!(u64_of(&t.update(id, "inc", vec![]).unwrap()), 1);
    assert_eq!(t.status(id).module_hash.unwrap().to_vec(), args.wasm_module_hash);

    t.mgmt(user(), "clear_chunk_store", &CanisterIdRecord { canister_id: id }).unwrap();
    let stored = t.mgmt(user(), "stored_chunks", &CanisterIdRecord { canister_id: id }).unwrap();
    assert!(candid::decode_one::<Vec<ChunkHash>>(&stored).unwrap().is_empty());
}

/// `wasm` with a custom section appended.
fn with_custom_section(mut wasm: Vec<u8>, name: &str, content: &[u8]) -> Vec<u8> {
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(content);
    assert!(payload.len() < 128, "one-byte LEB128 size");
    wasm.push(0);
    wasm.push(payload.len() as u8);
    wasm.extend(payload);
    wasm
}

#[test]
fn the_low_wasm_memory_hook_runs_once_per_crossing_of_the_threshold() {
    let module = wat(&format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (func (export "canister_update grow")
    (drop (memory.grow (i32.const 1)))
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply))
  (func (export "canister_query hooks")
    (call $reply_append (i32.const 0) (i32.const 8))
    (call $reply))
  (func (export "canister_on_low_wasm_memory")
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))))"#
    ));
    const PAGE: u64 = 65536;
    let mut t = Env::new();
    let id = t.deploy(&module);
    let set = |t: &mut Env, limit_pages: u64| {
        let settings = CanisterSettings {
            wasm_memory_limit: Some(Nat::from(limit_pages * PAGE)),
            wasm_memory_threshold: Some(Nat::from(2 * PAGE + 1)),
            ..Default::default()
        };
        t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None })
            .unwrap();
    };
    let hooks = |t: &mut Env| u64_of(&t.query(user(), id, "hooks", vec![]).unwrap());
    set(&mut t, 4);
    t.tick();
    assert_eq!(hooks(&mut t), 0, "3 pages left of 4: above the threshold");
    t.update(id, "grow", vec![]).unwrap();
    t.tick();
    assert_eq!(hooks(&mut t), 1, "2 pages left: below the threshold, the hook ran");
    t.tick();
    t.tick();
    assert_eq!(hooks(&mut t), 1, "and only once");
    set(&mut t, 100);
    t.tick();
    set(&mut t, 3);
    t.tick();
    assert_eq!(hooks(&mut t), 2, "freed up, then low again: it runs again");
}
