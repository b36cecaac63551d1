//! Shared vocabulary: principals and canister ids, reject codes, error codes.
//! Everything in tabnet depends on this crate; it depends on nothing of tabnet.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Principals are candid's: same bytes, same text form (CRC32 + base32) as the IC.
pub use candid::Principal;

/// Canister ids are principals of the form `index (u64, big-endian) ‖ 0x01 0x01`.
pub type CanisterId = Principal;

/// The management canister `aaaaa-aa`.
pub const MANAGEMENT_CANISTER: Principal = Principal::management_canister();

/// The canister id with the given index on the subnet (index 0 is `rwlgt-iiaaa-aaaaa-aaaaa-cai`).
pub fn canister_id_from_index(index: u64) -> CanisterId {
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    bytes[8] = 0x01;
    bytes[9] = 0x01;
    Principal::from_slice(&bytes)
}

/// The index of a canister id, if it has the canister-id form.
pub fn canister_index(id: &Principal) -> Option<u64> {
    let b = id.as_slice();
    if b.len() == 10 && b[8] == 0x01 && b[9] == 0x01 {
        Some(u64::from_be_bytes(b[..8].try_into().unwrap()))
    } else {
        None
    }
}

/// Decoding limits for Candid from outside the node (management canister arguments, the
/// effective canister id of a call, replies shown to users). Without them a 141-byte argument
/// with a `vec null` of length 2^56 in a skipped field makes the decoder loop for hours. The
/// skipping quota is the IC's own (`ic_management_canister_types::decoder_config`); the decoding
/// quota lets the largest message (a 2 MiB `install_code`, where a `blob` costs its length)
/// through with room to spare.
pub fn candid_decoder_config() -> candid::de::DecoderConfig {
    let mut config = candid::de::DecoderConfig::new();
    config.set_skipping_quota(CANDID_SKIPPING_QUOTA).set_decoding_quota(CANDID_DECODING_QUOTA).set_full_error_message(false);
    config
}

/// See [`candid_decoder_config`].
pub const CANDID_SKIPPING_QUOTA: usize = 10_000;
/// See [`candid_decoder_config`].
pub const CANDID_DECODING_QUOTA: usize = 16 << 20;

/// Limits for Candid read without its full type: one field picked from a message whose other
/// fields are skipped (the effective canister id of an `install_code` skips a whole module),
/// or any reply rendered as text. Skipping costs each value's size, and candid charges untyped
/// work 50 times on the decoding quota; both fit the largest message (2 MiB) twice over, and
/// still bound the work of a hostile one to milliseconds.
pub fn candid_untyped_decoder_config() -> candid::de::DecoderConfig {
    let mut config = candid::de::DecoderConfig::new();
    config.set_skipping_quota(CANDID_UNTYPED_QUOTA).set_decoding_quota(50 * CANDID_UNTYPED_QUOTA).set_full_error_message(false);
    config
}

/// See [`candid_untyped_decoder_config`].
pub const CANDID_UNTYPED_QUOTA: usize = 4 << 20;

/// Whether `a` and `b` hold the same bytes, compared 8 at a time. Memories are compared page by
/// page after every message and every height (what changed is what is kept and written); a
/// slice comparison is a byte-at-a-time `memcmp` on wasm32 (compiler-builtins), several times
/// slower in a tab.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().expect("8 bytes"));
    wa.remainder() == wb.remainder() && wa.zip(wb).all(|(x, y)| word(x) == word(y))
}

/// Reject codes of the IC interface spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u32)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
    SysUnknown = 6,
}

impl RejectCode {
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::SysFatal,
            2 => Self::SysTransient,
            3 => Self::DestinationInvalid,
            4 => Self::CanisterReject,
            5 => Self::CanisterError,
            6 => Self::SysUnknown,
            _ => return None,
        })
    }
}

/// The replica's error codes, shown as `IC0xxx`. The numbers are the IC's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    SubnetOversubscribed = 101,
    MaxNumberOfCanistersReached = 102,
    CanisterQueueFull = 201,
    IngressMessageTimeout = 202,
    CanisterQueueNotEmpty = 203,
    IngressHistoryFull = 204,
    CanisterIdAlreadyExists = 205,
    StopCanisterRequestTimeout = 206,
    CanisterOutOfCycles = 207,
    CertifiedStateUnavailable = 208,
    CanisterInstallCodeRateLimited = 209,
    CanisterHeapDeltaRateLimited = 210,
    CanisterNotFound = 301,
    CanisterSnapshotNotFound = 305,
    InsufficientMemoryAllocation = 402,
    InsufficientCyclesForCreateCanister = 403,
    SubnetNotFound = 404,
    CanisterNotHostedBySubnet = 405,
    CanisterRejectedMessage = 406,
    UnknownManagementMessage = 407,
    InvalidManagementPayload = 408,
    CanisterTrapped = 502,
    CanisterCalledTrap = 503,
    CanisterContractViolation = 504,
    CanisterInvalidWasm = 505,
    CanisterDidNotReply = 506,
    CanisterOutOfMemory = 507,
    CanisterStopped = 508,
    CanisterStopping = 509,
    CanisterNotStopped = 510,
    CanisterStoppingCancelled = 511,
    CanisterInvalidController = 512,
    CanisterFunctionNotFound = 513,
    CanisterNonEmpty = 514,
    QueryCallGraphLoopDetected = 517,
    InsufficientCyclesInCall = 520,
    CanisterWasmEngineError = 521,
    CanisterInstructionLimitExceeded = 522,
    CanisterMemoryAccessLimitExceeded = 524,
    QueryCallGraphTooDeep = 525,
    QueryCallGraphTotalInstructionLimitExceeded = 526,
    CompositeQueryCalledInReplicatedMode = 527,
    QueryTimeLimitExceeded = 528,
    QueryCallGraphInternal = 529,
    InsufficientCyclesInComputeAllocation = 530,
    InsufficientCyclesInMemoryAllocation = 531,
    InsufficientCyclesInMemoryGrow = 532,
    ReservedCyclesLimitExceededInMemoryAllocation = 533,
    ReservedCyclesLimitExceededInMemoryGrow = 534,
    InsufficientCyclesInMessageMemoryGrow = 535,
    CanisterMethodNotFound = 536,
    CanisterWasmModuleNotFound = 537,
    CanisterAlreadyInstalled = 538,
    CanisterWasmMemoryLimitExceeded = 539,
    ReservedCyclesLimitIsTooLow = 540,
    DeadlineExpired = 601,
    ResponseDropped = 602,
}

impl ErrorCode {
    /// The reject code the IC pairs with this error code (its first digit).
    pub fn reject_code(self) -> RejectCode {
        RejectCode::from_u32(self as u32 / 100).unwrap_or(RejectCode::SysUnknown)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IC{:04}", *self as u16)
    }
}

/// An error a user sees: the reject code, the IC error code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserError {
    pub code: ErrorCode,
    pub message: String,
}

impl UserError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn reject_code(&self) -> RejectCode {
        self.code.reject_code()
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error from Canister: {}: {}", self.code, self.message)
    }
}

impl std::error::Error for UserError {}

#[cfg(test)]
mod tests {
    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (0..4099u32).map(|i| (i * 7) as u8).collect();
        assert!(super::same_bytes(&a, &a.clone()));
        for at in [0, 7, 8, 4095, 4098] {
            let mut b = a.clone();
            b[at] ^= 1;
            assert!(!super::same_bytes(&a, &b), "differs at {at}");
        }
        assert!(!super::same_bytes(&a, &a[..4098]));
        assert!(super::same_bytes(&[], &[]));
    }

    use super::*;

    #[test]
    fn canister_ids_follow_the_spec() {
        assert_eq!(canister_id_from_index(0).to_text(), "rwlgt-iiaaa-aaaaa-aaaaa-cai");
        assert_eq!(canister_id_from_index(1).to_text(), "rrkah-fqaaa-aaaaa-aaaaq-cai");
        assert_eq!(canister_index(&canister_id_from_index(77)), Some(77));
        assert_eq!(MANAGEMENT_CANISTER.to_text(), "aaaaa-aa");
        assert_eq!(Principal::from_slice(&[0xAB, 0xCD, 0x01]).to_text(), "em77e-bvlzu-aq");
        assert_eq!(Principal::anonymous().to_text(), "2vxsx-fae");
    }

    #[test]
    fn error_codes_print_and_map_to_reject_codes() {
        assert_eq!(ErrorCode::CanisterOutOfCycles.to_string(), "IC0207");
        assert_eq!(ErrorCode::CanisterOutOfCycles.reject_code(), RejectCode::SysTransient);
        assert_eq!(ErrorCode::CanisterCalledTrap.reject_code(), RejectCode::CanisterError);
        assert_eq!(ErrorCode::CanisterNotFound.reject_code(), RejectCode::DestinationInvalid);
        assert_eq!(ErrorCode::DeadlineExpired.reject_code(), RejectCode::SysUnknown);
    }
}
