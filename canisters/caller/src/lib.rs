//! `caller`: exercises inter-canister calls — plain and best-effort calls, cycles transfer,
//! rejects from a trapping callee, and calls to the management canister.
//! Every call method returns `Result<_, CallError>` so a test sees the exact reject code.

use candid::{CandidType, Principal};
use ic_cdk::call::{Call, CallFailed, CandidDecodeFailed, Error as CallErrorKind};
use serde::Deserialize;

/// Why a call failed. `reject_code` is the IC reject code (1 SYS_FATAL, 2 SYS_TRANSIENT,
/// 3 DESTINATION_INVALID, 4 CANISTER_REJECT, 5 CANISTER_ERROR, 6 SYS_UNKNOWN); 0 means the call
/// never left this canister (not enough cycles, `call_perform` failed) or its reply did not decode.
#[derive(CandidType, Debug)]
pub struct CallError {
    pub reject_code: u32,
    pub message: String,
}

impl From<CallFailed> for CallError {
    fn from(e: CallFailed) -> Self {
        CallErrorKind::from(e).into()
    }
}

impl From<CandidDecodeFailed> for CallError {
    fn from(e: CandidDecodeFailed) -> Self {
        CallErrorKind::from(e).into()
    }
}

impl From<CallErrorKind> for CallError {
    fn from(e: CallErrorKind) -> Self {
        match e {
            CallErrorKind::CallRejected(r) => CallError {
                reject_code: r.raw_reject_code(),
                message: r.reject_message().to_string(),
            },
            other => CallError {
                reject_code: 0,
                message: other.to_string(),
            },
        }
    }
}

#[derive(CandidType)]
pub struct CyclesSent {
    /// Cycles the callee accepted.
    pub accepted: u128,
    /// Cycles that came back with the reply.
    pub refunded: u128,
}

/// `create_canister` argument of the management canister (settings left to defaults).
#[derive(CandidType)]
struct CreateCanisterArgs {
    settings: Option<CanisterSettings>,
    sender_canister_version: Option<u64>,
}

#[derive(CandidType)]
struct CanisterSettings {
    controllers: Option<Vec<Principal>>,
}

#[derive(CandidType, Deserialize)]
struct CreateCanisterResult {
    canister_id: Principal,
}

#[ic_cdk::update]
async fn call_inc(callee: Principal) -> Result<u64, CallError> {
    Ok(Call::unbounded_wait(callee, "inc").await?.candid::<u64>()?)
}

/// Calls the callee's `get` (a query method, run here as an inter-canister call).
#[ic_cdk::update]
async fn call_get(callee: Principal) -> Result<u64, CallError> {
    Ok(Call::unbounded_wait(callee, "get").await?.candid::<u64>()?)
}

/// Calls `method` with raw argument bytes and attached cycles; returns the raw reply.
#[ic_cdk::update]
async fn call_raw(
    callee: Principal,
    method: String,
    arg: Vec<u8>,
    cycles: u128,
) -> Result<Vec<u8>, CallError> {
    let reply = Call::unbounded_wait(callee, &method)
        .with_raw_args(&arg)
        .with_cycles(cycles)
        .await?;
    Ok(reply.into_bytes())
}

/// Calls `boom` on the callee (the `trap` canister), which traps: expect reject code 5.
#[ic_cdk::update]
async fn call_trap(callee: Principal) -> Result<Vec<u8>, CallError> {
    Ok(Call::unbounded_wait(callee, "boom").await?.into_bytes())
}

/// A best-effort (bounded-wait) call that gives up after `timeout_seconds`.
#[ic_cdk::update]
async fn call_bounded(
    callee: Principal,
    method: String,
    arg: Vec<u8>,
    timeout_seconds: u32,
) -> Result<Vec<u8>, CallError> {
    let reply = Call::bounded_wait(callee, &method)
        .with_raw_args(&arg)
        .change_timeout(timeout_seconds)
        .await?;
    Ok(reply.into_bytes())
}

/// Sends `amount` cycles to `callee.receive(accept)`.
#[ic_cdk::update]
async fn send_cycles(callee: Principal, amount: u128, accept: u128) -> Result<CyclesSent, CallError> {
    let reply = Call::unbounded_wait(callee, "receive")
        .with_arg(accept)
        .with_cycles(amount)
        .await?;
    Ok(CyclesSent {
        accepted: reply.candid::<u128>()?,
        refunded: ic_cdk::api::msg_cycles_refunded(),
    })
}

/// Accepts at most `max` of the cycles attached to this call; returns how many it took.
#[ic_cdk::update]
fn receive(max: u128) -> u128 {
    ic_cdk::api::msg_cycles_accept(max)
}

#[ic_cdk::query]
fn balance() -> u128 {
    ic_cdk::api::canister_cycle_balance()
}

/// 32 random bytes from the management canister.
#[ic_cdk::update]
async fn raw_rand() -> Result<Vec<u8>, CallError> {
    let reply = Call::unbounded_wait(Principal::management_canister(), "raw_rand").await?;
    Ok(reply.candid::<Vec<u8>>()?)
}

/// Creates a canister controlled by this canister and by the user who asked, paying `cycles`.
#[ic_cdk::update]
async fn create_canister(cycles: u128) -> Result<Principal, CallError> {
    let args = CreateCanisterArgs {
        settings: Some(CanisterSettings {
            controllers: Some(vec![ic_cdk::api::canister_self(), ic_cdk::api::msg_caller()]),
        }),
        sender_canister_version: Some(ic_cdk::api::canister_version()),
    };
    let reply = Call::unbounded_wait(Principal::management_canister(), "create_canister")
        .with_arg(args)
        .with_cycles(cycles)
        .await?;
    Ok(reply.candid::<CreateCanisterResult>()?.canister_id)
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
