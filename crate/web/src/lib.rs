//! The browser edge: tabnet's node compiled to wasm32 and driven from JavaScript.
//!
//! `TabNode` runs the same `ExecutionEnvironment` as the native node, inside the tab: canisters
//! are created, installed and called through the management canister and ingress, exactly as
//! the native node does it, just without the HTTP layer. Time comes from the caller.
//! `bench_fuel` measures the nested interpreter's speed (see `bench`).

pub mod bench;
#[cfg(target_arch = "wasm32")]
pub mod idb;
#[cfg(target_arch = "wasm32")]
pub mod load;
#[cfg(target_arch = "wasm32")]
pub mod membership;
#[cfg(target_arch = "wasm32")]
pub mod rtc;
#[cfg(target_arch = "wasm32")]
pub mod signaling;
#[cfg(feature = "sim")]
pub mod sim_subnet;
#[cfg(target_arch = "wasm32")]
pub mod tab_subnet;
#[cfg(target_arch = "wasm32")]
mod tab_view;

use candid::{Decode, Encode, IDLArgs, Principal};
use serde::Serialize;
use tabnet_execution::hypervisor::{CanisterModule, WasmResult};
use tabnet_execution::management::types::{
    CanisterIdRecord, CanisterInstallMode, CanisterStatusResult, FetchCanisterLogsResult, CreateCanisterResult, InstallCodeArgs,
    ProvisionalCreateCanisterWithCyclesArgs, UpgradeOptions, WasmMemoryPersistence,
};
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage, IngressOutcome};
use tabnet_execution::SubnetConfig;
use tabnet_types::{candid_decoder_config, candid_untyped_decoder_config, ErrorCode, UserError, MANAGEMENT_CANISTER};
use wasm_bindgen::prelude::*;

/// Rounds an update may take before the tab gives up waiting (calls between canisters take
/// several rounds).
const MAX_ROUNDS_PER_UPDATE: usize = 100;

/// What JavaScript gets back from a call: a Candid reply in text form, or the IC's error.
#[derive(Serialize)]
struct Outcome {
    ok: bool,
    reply: Option<String>,
    reject_code: Option<u32>,
    error_code: Option<String>,
    message: Option<String>,
}

impl Outcome {
    fn replied(bytes: &[u8]) -> Self {
        Self { ok: true, reply: Some(candid_to_text(bytes)), reject_code: None, error_code: None, message: None }
    }
    fn rejected(reject_code: u32, error_code: Option<String>, message: String) -> Self {
        Self { ok: false, reply: None, reject_code: Some(reject_code), error_code, message: Some(message) }
    }
    fn error(e: UserError) -> Self {
        Self::rejected(e.reject_code() as u32, Some(e.code.to_string()), e.message)
    }
    fn from_ingress(outcome: IngressOutcome) -> Self {
        match outcome {
            IngressOutcome::Replied(bytes) => Self::replied(&bytes),
            IngressOutcome::Rejected { reject_code, message, error_code } => {
                Self::rejected(reject_code as u32, Some(error_code.to_string()), message)
            }
        }
    }
    fn to_js(&self) -> JsValue {
        serde_wasm_bindgen::to_value(self).unwrap_or(JsValue::NULL)
    }
}

/// Candid bytes as text (`(42 : nat)`), or a hex dump if they are not Candid.
fn candid_to_text(bytes: &[u8]) -> String {
    match IDLArgs::from_bytes_with_config(bytes, &candid_untyped_decoder_config()) {
        Ok(args) => args.to_string(),
        Err(_) => format!("(non-Candid reply) 0x{}", hex(bytes)),
    }
}

/// Candid bytes of a known type as text, with field names rather than hashes.
fn typed_candid_text<T: candid::CandidType>(bytes: &[u8]) -> String {
    let mut types = candid::types::internal::TypeContainer::new();
    let ty = types.add::<T>();
    match IDLArgs::from_bytes_with_types_with_config(bytes, &types.env, &[ty], &candid_untyped_decoder_config()) {
        Ok(args) => args.to_string(),
        Err(_) => candid_to_text(bytes),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text_to_candid(text: &str) -> Result<Vec<u8>, UserError> {
    let args: IDLArgs = candid_parser::parse_idl_args(text)
        .map_err(|e| UserError::new(ErrorCode::InvalidManagementPayload, format!("the argument is not Candid text: {e}")))?;
    args.to_bytes()
        .map_err(|e| UserError::new(ErrorCode::InvalidManagementPayload, format!("cannot encode the argument: {e}")))
}

fn parse_principal(text: &str) -> Result<Principal, JsValue> {
    Principal::from_text(text).map_err(|e| JsValue::from_str(&format!("{text}: {e}")))
}

/// A node inside this tab: one subnet of one replica, in memory.
#[wasm_bindgen]
pub struct TabNode {
    env: ExecutionEnvironment,
    /// The tab's user: controller of the canisters it creates.
    user: Principal,
    next_message: u64,
}

#[wasm_bindgen]
impl TabNode {
    /// A fresh node; `time_nanos` is the wall clock now (the first block's time).
    #[wasm_bindgen(constructor)]
    pub fn new(time_nanos: u64) -> TabNode {
        let subnet_id = Principal::self_authenticating(b"tabnet tab subnet");
        let mut node = TabNode {
            env: ExecutionEnvironment::new(SubnetConfig::for_subnet_size(1), subnet_id, Vec::new()),
            user: Principal::self_authenticating(b"tabnet tab user"),
            next_message: 0,
        };
        node.tick(time_nanos);
        node
    }

    /// The user principal this tab calls as.
    pub fn user(&self) -> String {
        self.user.to_text()
    }

    /// Creates a canister with the provisional default balance; returns its id.
    pub fn create_canister(&mut self, time_nanos: u64) -> Result<String, JsValue> {
        let arg = Encode!(&ProvisionalCreateCanisterWithCyclesArgs::default()).expect("encodes");
        match self.run_ingress(MANAGEMENT_CANISTER, "provisional_create_canister_with_cycles", arg, None, time_nanos) {
            IngressOutcome::Replied(bytes) => Decode!([candid_decoder_config()]; &bytes, CreateCanisterResult)
                .map(|r| r.canister_id.to_text())
                .map_err(|e| JsValue::from_str(&e.to_string())),
            IngressOutcome::Rejected { message, error_code, .. } => Err(JsValue::from_str(&format!("{error_code}: {message}"))),
        }
    }

    /// Installs `wasm` with `mode` "install", "reinstall" or "upgrade" and a Candid-text init
    /// argument. Upgrades to a module with enhanced orthogonal persistence (Motoko's) keep the
    /// Wasm heap; others replace it.
    pub fn install_code(&mut self, canister_id: &str, mode: &str, wasm: Vec<u8>, arg: &str, time_nanos: u64) -> Result<JsValue, JsValue> {
        let canister_id = parse_principal(canister_id)?;
        let arg = match text_to_candid(arg) {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::error(e).to_js()),
        };
        let mode = match mode {
            "install" => CanisterInstallMode::Install,
            "reinstall" => CanisterInstallMode::Reinstall,
            "upgrade" => {
                let keep = CanisterModule::new(wasm.clone())
                    .map(|m| m.metadata("enhanced-orthogonal-persistence").is_some())
                    .unwrap_or(false);
                CanisterInstallMode::Upgrade(Some(UpgradeOptions {
                    skip_pre_upgrade: None,
                    wasm_memory_persistence: Some(if keep { WasmMemoryPersistence::Keep } else { WasmMemoryPersistence::Replace }),
                }))
            }
            other => return Err(JsValue::from_str(&format!("unknown install mode {other}"))),
        };
        let args = InstallCodeArgs { mode, canister_id, wasm_module: wasm, arg, sender_canister_version: None };
        let outcome = self.run_ingress(MANAGEMENT_CANISTER, "install_code", Encode!(&args).expect("encodes"), Some(canister_id), time_nanos);
        Ok(Outcome::from_ingress(outcome).to_js())
    }

    /// An update call with a Candid-text argument, run to completion.
    pub fn update(&mut self, canister_id: &str, method: &str, arg: &str, time_nanos: u64) -> Result<JsValue, JsValue> {
        let canister_id = parse_principal(canister_id)?;
        let outcome = match text_to_candid(arg) {
            Ok(arg) => Outcome::from_ingress(self.run_ingress(canister_id, method, arg, None, time_nanos)),
            Err(e) => Outcome::error(e),
        };
        Ok(outcome.to_js())
    }

    /// A query with a Candid-text argument; its state changes are discarded.
    pub fn query(&mut self, canister_id: &str, method: &str, arg: &str, time_nanos: u64) -> Result<JsValue, JsValue> {
        let canister_id = parse_principal(canister_id)?;
        let outcome = match text_to_candid(arg) {
            Ok(arg) => self.query_bytes(canister_id, method, arg, time_nanos),
            Err(e) => Outcome::error(e),
        };
        Ok(outcome.to_js())
    }

    /// `canister_status` of the management canister, as Candid text.
    pub fn canister_status(&mut self, canister_id: &str, time_nanos: u64) -> Result<String, JsValue> {
        self.management_query::<CanisterStatusResult>("canister_status", canister_id, time_nanos)
    }

    /// The canister's log (`fetch_canister_logs`): one line per record, `#index time: text`.
    pub fn logs(&mut self, canister_id: &str, time_nanos: u64) -> Result<Vec<String>, JsValue> {
        let bytes = self.management_query_bytes("fetch_canister_logs", canister_id, time_nanos)?;
        let logs = Decode!([candid_decoder_config()]; &bytes, FetchCanisterLogsResult).map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(logs
            .canister_log_records
            .iter()
            .map(|r| format!("#{} {}: {}", r.idx, r.timestamp_nanos, String::from_utf8_lossy(&r.content)))
            .collect())
    }

    /// One round with no new messages: heartbeats, timers, calls in flight.
    pub fn tick(&mut self, time_nanos: u64) {
        let seed = self.random_seed(time_nanos);
        self.env.execute_round(time_nanos, seed, Vec::new());
    }

    /// Hash of the whole replicated state, hex: equal on every replica that ran the same rounds.
    pub fn state_hash(&self) -> String {
        hex(&self.env.state_hash())
    }

    /// A one-line description of a node's `/api/v2/status` CBOR answer.
    pub fn describe_status(cbor: &[u8]) -> String {
        match ciborium::from_reader::<ciborium::Value, _>(cbor) {
            Ok(value) => {
                let value = match value {
                    ciborium::Value::Tag(_, inner) => *inner,
                    v => v,
                };
                let fields = value.as_map().cloned().unwrap_or_default();
                fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            ciborium::Value::Bytes(b) => format!("{} bytes", b.len()),
                            ciborium::Value::Text(t) => t.clone(),
                            ciborium::Value::Integer(i) => i128::from(*i).to_string(),
                            other => format!("{other:?}"),
                        };
                        format!("{}: {v}", k.as_text().unwrap_or("?"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => format!("not CBOR: {e}"),
        }
    }
}

impl TabNode {
    /// The round's random seed: a hash of the round's time and a counter. One replica alone
    /// has no beacon; a subnet of tabs takes it from consensus.
    fn random_seed(&mut self, time_nanos: u64) -> [u8; 32] {
        self.next_message += 1;
        tabnet_crypto::sha256(&[&time_nanos.to_be_bytes()[..], &self.next_message.to_be_bytes()[..]].concat())
    }

    fn run_ingress(&mut self, canister_id: Principal, method: &str, arg: Vec<u8>, effective: Option<Principal>, time: u64) -> IngressOutcome {
        let id = self.random_seed(time);
        let msg = IngressMessage {
            id,
            sender: self.user,
            canister_id,
            method: method.to_string(),
            arg,
            effective_canister_id: effective.unwrap_or(canister_id),
        };
        if let Err(e) = self.env.should_accept_ingress(&msg, time) {
            return IngressOutcome::from_error(e);
        }
        let mut batch = vec![msg];
        for _ in 0..MAX_ROUNDS_PER_UPDATE {
            let seed = self.random_seed(time);
            let completed = self.env.execute_round(time, seed, std::mem::take(&mut batch));
            if let Some((_, outcome)) = completed.into_iter().find(|(done, _)| *done == id) {
                return outcome;
            }
        }
        IngressOutcome::from_error(UserError::new(
            ErrorCode::IngressMessageTimeout,
            format!("no answer after {MAX_ROUNDS_PER_UPDATE} rounds"),
        ))
    }

    fn query_bytes(&mut self, canister_id: Principal, method: &str, arg: Vec<u8>, time: u64) -> Outcome {
        match self.env.query(time, self.user, canister_id, method, arg, None) {
            Ok(WasmResult::Reply(bytes)) => Outcome::replied(&bytes),
            Ok(WasmResult::Reject(message)) => Outcome::rejected(4, None, message),
            Err(e) => Outcome::error(e),
        }
    }

    /// A management canister method called as a query with a canister id; the reply as Candid
    /// text with field names.
    fn management_query<R: candid::CandidType>(&mut self, method: &str, canister_id: &str, time: u64) -> Result<String, JsValue> {
        Ok(typed_candid_text::<R>(&self.management_query_bytes(method, canister_id, time)?))
    }

    fn management_query_bytes(&mut self, method: &str, canister_id: &str, time: u64) -> Result<Vec<u8>, JsValue> {
        let arg = Encode!(&CanisterIdRecord { canister_id: parse_principal(canister_id)? }).expect("encodes");
        match self.env.query(time, self.user, MANAGEMENT_CANISTER, method, arg, None) {
            Ok(WasmResult::Reply(bytes)) => Ok(bytes),
            Ok(WasmResult::Reject(message)) => Err(JsValue::from_str(&message)),
            Err(e) => Err(JsValue::from_str(&format!("{}: {}", e.code, e.message))),
        }
    }
}
