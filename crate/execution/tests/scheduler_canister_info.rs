//! `canister_info` (spec): the canister history — creation, code deployments, uninstalls,
//! snapshot loads, controller changes, with who made them — its module hash and controllers,
//! for canisters only. Decoded with DFINITY's own types.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod scheduler_support;

use candid::{CandidType, Encode, Principal};
use ic_management_canister_types as ic;
use scheduler_support::*;
use sha2::{Digest, Sha256};
use tabnet_execution::management::types::*;
use tabnet_types::{CanisterId, ErrorCode, MANAGEMENT_CANISTER};

/// `method` of the management canister called by the proxy canister `proxy`.
fn via<T: CandidType>(t: &mut Env, proxy: CanisterId, method: &str, arg: &T) -> Result<Vec<u8>, (u32, String)> {
    let reply = t.update(proxy, "forward", forward_arg(MANAGEMENT_CANISTER, method, 0, 0, &Encode!(arg).unwrap())).unwrap();
    proxy_result(&reply)
}

fn info(t: &mut Env, proxy: CanisterId, id: CanisterId, n: Option<u64>) -> ic::CanisterInfoResult {
    let args = ic::CanisterInfoArgs { canister_id: id, num_requested_changes: n };
    candid::decode_one(&via(t, proxy, "canister_info", &args).unwrap()).unwrap()
}

fn set_controllers(t: &mut Env, id: CanisterId, controllers: Vec<Principal>) {
    let settings = CanisterSettings { controllers: Some(controllers), ..Default::default() };
    t.mgmt(user(), "update_settings", &UpdateSettingsArgs { canister_id: id, settings, sender_canister_version: None }).unwrap();
}

#[test]
fn canister_info_tells_the_history_of_installs_snapshots_and_controller_changes() {
    let mut t = Env::new();
    let proxy = t.deploy(&proxy_wat());
    let create = ProvisionalCreateCanisterWithCyclesArgs {
        settings: Some(CanisterSettings {
            environment_variables: Some(vec![EnvironmentVariable { name: "NETWORK".into(), value: "local".into() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = t.mgmt(user(), "provisional_create_canister_with_cycles", &create).unwrap();
    let id = candid::decode_one::<CreateCanisterResult>(&reply).unwrap().canister_id;
    let created_at = t.time;
    t.install(id, &counter_wat());
    t.install_mode(id, &counter_wat(), Encode!().unwrap(), CanisterInstallMode::Upgrade(None)).unwrap();
    set_controllers(&mut t, id, vec![user(), proxy]);
    let snapshot = {
        let args = ic::TakeCanisterSnapshotArgs { canister_id: id, replace_snapshot: None, uninstall_code: None, sender_canister_version: None };
        candid::decode_one::<ic::Snapshot>(&t.mgmt(user(), "take_canister_snapshot", &args).unwrap()).unwrap()
    };
    let version_at_snapshot = t.status(id).version;
    let load = ic::LoadCanisterSnapshotArgs { canister_id: id, snapshot_id: snapshot.id.clone(), sender_canister_version: None };
    t.mgmt(user(), "load_canister_snapshot", &load).unwrap();
    // The proxy (now a controller) uninstalls, naming its canister version.
    let proxy_version = t.status(proxy).version;
    let uninstall = ic::UninstallCodeArgs { canister_id: id, sender_canister_version: Some(proxy_version) };
    via(&mut t, proxy, "uninstall_code", &uninstall).unwrap();

    let result = info(&mut t, proxy, id, Some(100));
    assert_eq!(result.total_num_changes, 6);
    assert_eq!(result.module_hash, None);
    assert_eq!(result.controllers, { let mut c = vec![user(), proxy]; c.sort(); c });
    let details: Vec<ic::ChangeDetails> = result.recent_changes.iter().map(|c| c.details.clone().unwrap()).collect();
    let module_hash = Sha256::digest(counter_wat()).to_vec();
    // The hash of the variables as a map (spec: hash of map).
    let env_hash = Sha256::digest([Sha256::digest("NETWORK"), Sha256::digest("local")].concat()).to_vec();
    assert_eq!(
        details,
        vec![
            ic::ChangeDetails::Creation(ic::CreationRecord { controllers: vec![user()], environment_variables_hash: Some(env_hash) }),
            ic::ChangeDetails::CodeDeployment(ic::CodeDeploymentRecord { mode: ic::CodeDeploymentMode::Install, module_hash: module_hash.clone() }),
            ic::ChangeDetails::CodeDeployment(ic::CodeDeploymentRecord { mode: ic::CodeDeploymentMode::Upgrade, module_hash }),
            ic::ChangeDetails::ControllersChange(ic::ControllersChangeRecord { controllers: result.controllers.clone() }),
            ic::ChangeDetails::LoadSnapshot(ic::LoadSnapshotRecord {
                from_canister_id: None,
                snapshot_id: snapshot.id.clone(),
                canister_version: version_at_snapshot,
                taken_at_timestamp: snapshot.taken_at_timestamp,
                source: ic::SnapshotSource::TakenFromCanister(candid::Reserved),
            }),
            ic::ChangeDetails::CodeUninstall,
        ]
    );
    let first = &result.recent_changes[0];
    assert_eq!((first.timestamp_nanos, first.canister_version), (created_at, 0));
    assert_eq!(first.origin, ic::ChangeOrigin::FromUser(ic::FromUserRecord { user_id: user() }));
    let last = result.recent_changes.last().unwrap();
    assert_eq!(last.canister_version, t.status(id).version, "the version after the change");
    assert_eq!(
        last.origin,
        ic::ChangeOrigin::FromCanister(ic::FromCanisterRecord { canister_id: proxy, canister_version: Some(proxy_version) })
    );

    // Without `num_requested_changes` no changes; only the most recent when fewer are asked.
    assert!(info(&mut t, proxy, id, None).recent_changes.is_empty());
    let two = info(&mut t, proxy, id, Some(2)).recent_changes;
    assert_eq!(two, result.recent_changes[4..].to_vec());
    // Every canister may ask about every canister, itself included.
    assert_eq!(info(&mut t, proxy, proxy, Some(1)).total_num_changes, 2);
    let missing = ic::CanisterInfoArgs { canister_id: canister_id_absent(), num_requested_changes: None };
    assert!(via(&mut t, proxy, "canister_info", &missing).is_err());
}

fn canister_id_absent() -> CanisterId {
    tabnet_types::canister_id_from_index(999)
}

#[test]
fn users_cannot_call_canister_info_and_the_history_keeps_the_last_twenty_changes() {
    let mut t = Env::new();
    let proxy = t.deploy(&proxy_wat());
    let id = t.create(None);
    let args = ic::CanisterInfoArgs { canister_id: id, num_requested_changes: None };
    let e = t.mgmt(user(), "canister_info", &args).unwrap_err();
    assert_eq!(e.2, ErrorCode::CanisterRejectedMessage);

    for i in 0..25u8 {
        set_controllers(&mut t, id, vec![user(), Principal::self_authenticating([i])]);
    }
    let result = info(&mut t, proxy, id, Some(100));
    assert_eq!(result.total_num_changes, 26, "creation and 25 controller changes");
    assert_eq!(result.recent_changes.len(), 20);
    assert_eq!(result.recent_changes[0].canister_version, 6, "the oldest kept is the 7th change");
}
