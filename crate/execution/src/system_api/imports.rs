//! The ic0 functions a canister may import: name, type and the contexts it may be called from,
//! as listed in the IC interface spec ("Overview of imports"). Module validation checks imports
//! against this table; the linker (`linker.rs`) defines exactly these functions.

use crate::hypervisor::ApiType;

/// Where an entry point runs; decides which ic0 functions are allowed. The names are the
/// spec's letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Context {
    /// `s`: the module's `(start)` function.
    Start = 0,
    /// `I`: `canister_init` or `canister_post_upgrade`.
    Init,
    /// `G`: `canister_pre_upgrade`.
    PreUpgrade,
    /// `U`: `canister_update`.
    Update,
    /// `RQ`: a query in replicated mode.
    ReplicatedQuery,
    /// `NRQ`: a query in non-replicated mode.
    NonReplicatedQuery,
    /// `CQ`: `canister_composite_query`.
    CompositeQuery,
    /// `Ry`, `Rt`: reply and reject callbacks.
    ReplyCallback,
    RejectCallback,
    /// `CRy`, `CRt`: composite-query callbacks.
    CompositeReplyCallback,
    CompositeRejectCallback,
    /// `C`: cleanup callbacks.
    Cleanup,
    /// `F`: `canister_inspect_message`.
    InspectMessage,
    /// `T`: system tasks (heartbeat, global timer).
    SystemTask,
}

impl Context {
    pub fn of(api: &ApiType) -> Self {
        match api {
            ApiType::Start => Self::Start,
            ApiType::Init { .. } | ApiType::PostUpgrade { .. } => Self::Init,
            ApiType::PreUpgrade { .. } => Self::PreUpgrade,
            ApiType::Update { .. } => Self::Update,
            ApiType::ReplicatedQuery { .. } => Self::ReplicatedQuery,
            ApiType::NonReplicatedQuery { .. } => Self::NonReplicatedQuery,
            ApiType::CompositeQuery { .. } => Self::CompositeQuery,
            ApiType::InspectMessage { .. } => Self::InspectMessage,
            ApiType::ReplyCallback { .. } => Self::ReplyCallback,
            ApiType::RejectCallback { .. } => Self::RejectCallback,
            ApiType::CompositeReplyCallback { .. } => Self::CompositeReplyCallback,
            ApiType::CompositeRejectCallback { .. } => Self::CompositeRejectCallback,
            ApiType::Cleanup { .. } => Self::Cleanup,
            ApiType::Heartbeat | ApiType::GlobalTimer | ApiType::OnLowWasmMemory => Self::SystemTask,
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// The name of the mode in error messages (the replica's wording).
pub fn mode_name(api: &ApiType) -> &'static str {
    match api {
        ApiType::Start => "start",
        ApiType::Init { .. } => "init",
        ApiType::PostUpgrade { .. } => "post upgrade",
        ApiType::PreUpgrade { .. } => "pre upgrade",
        ApiType::Update { .. } => "update",
        ApiType::ReplicatedQuery { .. } => "replicated query",
        ApiType::NonReplicatedQuery { .. } => "non replicated query",
        ApiType::CompositeQuery { .. } => "composite query",
        ApiType::InspectMessage { .. } => "inspect message",
        ApiType::ReplyCallback { .. } => "reply callback",
        ApiType::RejectCallback { .. } => "reject callback",
        ApiType::CompositeReplyCallback { .. } => "composite reply callback",
        ApiType::CompositeRejectCallback { .. } => "composite reject callback",
        ApiType::Cleanup { .. } => "cleanup",
        ApiType::Heartbeat => "heartbeat",
        ApiType::GlobalTimer => "global timer",
        ApiType::OnLowWasmMemory => "low wasm memory hook",
    }
}

/// A set of contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contexts(u16);

impl Contexts {
    pub fn contains(self, c: Context) -> bool {
        self.0 & c.bit() != 0
    }
    const fn or(self, other: Contexts) -> Contexts {
        Contexts(self.0 | other.0)
    }
}

const fn ctx(list: &[Context]) -> Contexts {
    let mut bits = 0;
    let mut i = 0;
    while i < list.len() {
        bits |= list[i].bit();
        i += 1;
    }
    Contexts(bits)
}

use Context::*;
const S: Contexts = ctx(&[Start]);
/// `*` in the spec: everywhere except `(start)`.
const ALL: Contexts = ctx(&[
    Init,
    PreUpgrade,
    Update,
    ReplicatedQuery,
    NonReplicatedQuery,
    CompositeQuery,
    ReplyCallback,
    RejectCallback,
    CompositeReplyCallback,
    CompositeRejectCallback,
    Cleanup,
    InspectMessage,
    SystemTask,
]);
const ALL_S: Contexts = ALL.or(S);
const ARG: Contexts = ctx(&[
    Init,
    Update,
    ReplicatedQuery,
    NonReplicatedQuery,
    CompositeQuery,
    ReplyCallback,
    CompositeReplyCallback,
    InspectMessage,
]);
const CALLER_INFO: Contexts = ctx(&[
    Update,
    ReplicatedQuery,
    NonReplicatedQuery,
    CompositeQuery,
    ReplyCallback,
    RejectCallback,
    CompositeReplyCallback,
    CompositeRejectCallback,
    Cleanup,
    InspectMessage,
]);
const REJECT_CODE: Contexts =
    ctx(&[ReplyCallback, RejectCallback, CompositeReplyCallback, CompositeRejectCallback, Cleanup]);
const REJECT_MSG: Contexts = ctx(&[RejectCallback, CompositeRejectCallback]);
const RESPOND: Contexts = ctx(&[
    Update,
    ReplicatedQuery,
    NonReplicatedQuery,
    CompositeQuery,
    ReplyCallback,
    RejectCallback,
    CompositeReplyCallback,
    CompositeRejectCallback,
]);
const CYCLES_MSG: Contexts = ctx(&[Update, ReplicatedQuery, RejectCallback, ReplyCallback]);
const REFUND: Contexts = ctx(&[RejectCallback, ReplyCallback]);
const BURN: Contexts =
    ctx(&[Init, PreUpgrade, Update, ReplicatedQuery, ReplyCallback, RejectCallback, Cleanup, SystemTask]);
const INSPECT: Contexts = ctx(&[InspectMessage]);
const CALL: Contexts = ctx(&[
    Update,
    CompositeQuery,
    ReplyCallback,
    RejectCallback,
    CompositeReplyCallback,
    CompositeRejectCallback,
    SystemTask,
]);
const CALL_CYCLES: Contexts = ctx(&[Update, ReplyCallback, RejectCallback, SystemTask]);
const ROOT_KEY: Contexts =
    ctx(&[Init, PreUpgrade, Update, ReplicatedQuery, ReplyCallback, RejectCallback, Cleanup, SystemTask]);
const CERTIFIED_DATA: Contexts = ctx(&[Init, PreUpgrade, Update, ReplyCallback, RejectCallback, SystemTask]);
const DATA_CERTIFICATE: Contexts = ctx(&[NonReplicatedQuery, CompositeQuery]);
const TIMER: Contexts = ctx(&[Init, PreUpgrade, Update, ReplyCallback, RejectCallback, Cleanup, SystemTask]);

/// A value type in an ic0 signature; `Ptr` is the spec's `I`: i32 for 32-bit memory, i64 for
/// 64-bit memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    I32,
    I64,
    Ptr,
}

pub struct Ic0Function {
    pub name: &'static str,
    pub params: &'static [Ty],
    pub results: &'static [Ty],
    pub contexts: Contexts,
    /// Only available to modules with 32-bit (or no) memory.
    pub wasm32_only: bool,
}

use Ty::{Ptr as P, I32, I64};

const fn f(name: &'static str, params: &'static [Ty], results: &'static [Ty], contexts: Contexts) -> Ic0Function {
    Ic0Function { name, params, results, contexts, wasm32_only: false }
}
const fn f32_only(
    name: &'static str,
    params: &'static [Ty],
    results: &'static [Ty],
    contexts: Contexts,
) -> Ic0Function {
    Ic0Function { name, params, results, contexts, wasm32_only: true }
}

pub const IC0_FUNCTIONS: &[Ic0Function] = &[
    f("msg_arg_data_size", &[], &[P], ARG),
    f("msg_arg_data_copy", &[P, P, P], &[], ARG),
    f("msg_caller_size", &[], &[P], ALL),
    f("msg_caller_copy", &[P, P, P], &[], ALL),
    f("msg_caller_info_data_size", &[], &[P], CALLER_INFO),
    f("msg_caller_info_data_copy", &[P, P, P], &[], CALLER_INFO),
    f("msg_caller_info_signer_size", &[], &[P], CALLER_INFO),
    f("msg_caller_info_signer_copy", &[P, P, P], &[], CALLER_INFO),
    f("msg_reject_code", &[], &[I32], REJECT_CODE),
    f("msg_reject_msg_size", &[], &[P], REJECT_MSG),
    f("msg_reject_msg_copy", &[P, P, P], &[], REJECT_MSG),
    f("msg_deadline", &[], &[I64], RESPOND),
    f("msg_reply_data_append", &[P, P], &[], RESPOND),
    f("msg_reply", &[], &[], RESPOND),
    f("msg_reject", &[P, P], &[], RESPOND),
    f("msg_cycles_available128", &[P], &[], CYCLES_MSG),
    f("msg_cycles_refunded128", &[P], &[], REFUND),
    f("msg_cycles_accept128", &[I64, I64, P], &[], CYCLES_MSG),
    f("cycles_burn128", &[I64, I64, P], &[], BURN),
    f("canister_self_size", &[], &[P], ALL),
    f("canister_self_copy", &[P, P, P], &[], ALL),
    f("canister_cycle_balance128", &[P], &[], ALL),
    f("canister_liquid_cycle_balance128", &[P], &[], ALL),
    f("canister_status", &[], &[I32], ALL),
    f("canister_version", &[], &[I64], ALL),
    f("subnet_self_size", &[], &[P], ALL),
    f("subnet_self_copy", &[P, P, P], &[], ALL),
    f("msg_method_name_size", &[], &[P], INSPECT),
    f("msg_method_name_copy", &[P, P, P], &[], INSPECT),
    f("accept_message", &[], &[], INSPECT),
    f("call_new", &[P, P, P, P, P, P, P, P], &[], CALL),
    f("call_on_cleanup", &[P, P], &[], CALL),
    f("call_data_append", &[P, P], &[], CALL),
    f("call_with_best_effort_response", &[I32], &[], CALL),
    f("call_cycles_add128", &[I64, I64], &[], CALL_CYCLES),
    f("call_perform", &[], &[I32], CALL),
    f("stable64_size", &[], &[I64], ALL_S),
    f("stable64_grow", &[I64], &[I64], ALL_S),
    f("stable64_write", &[I64, I64, I64], &[], ALL_S),
    f("stable64_read", &[I64, I64, I64], &[], ALL_S),
    f("root_key_size", &[], &[P], ROOT_KEY),
    f("root_key_copy", &[P, P, P], &[], ROOT_KEY),
    f("certified_data_set", &[P, P], &[], CERTIFIED_DATA),
    f("data_certificate_present", &[], &[I32], ALL),
    f("data_certificate_size", &[], &[P], DATA_CERTIFICATE),
    f("data_certificate_copy", &[P, P, P], &[], DATA_CERTIFICATE),
    f("time", &[], &[I64], ALL),
    f("global_timer_set", &[I64], &[I64], TIMER),
    f("performance_counter", &[I32], &[I64], ALL_S),
    f("is_controller", &[P, P], &[I32], ALL_S),
    f("in_replicated_execution", &[], &[I32], ALL_S),
    f("cost_call", &[I64, I64, P], &[], ALL_S),
    f("cost_create_canister", &[P], &[], ALL_S),
    f("cost_http_request", &[I64, I64, P], &[], ALL_S),
    f("cost_sign_with_ecdsa", &[P, P, I32, P], &[I32], ALL_S),
    f("cost_sign_with_schnorr", &[P, P, I32, P], &[I32], ALL_S),
    f("cost_vetkd_derive_key", &[P, P, I32, P], &[I32], ALL_S),
    f("env_var_count", &[], &[P], ALL),
    f("env_var_name_size", &[P], &[P], ALL),
    f("env_var_name_copy", &[P, P, P, P], &[], ALL),
    f("env_var_name_exists", &[P, P], &[I32], ALL),
    f("env_var_value_size", &[P, P], &[P], ALL),
    f("env_var_value_copy", &[P, P, P, P, P], &[], ALL),
    f("debug_print", &[P, P], &[], ALL_S),
    f("trap", &[P, P], &[], ALL_S),
    f32_only("msg_cycles_available", &[], &[I64], CYCLES_MSG),
    f32_only("msg_cycles_refunded", &[], &[I64], REFUND),
    f32_only("msg_cycles_accept", &[I64], &[I64], CYCLES_MSG),
    f32_only("canister_cycle_balance", &[], &[I64], ALL),
    f32_only("call_cycles_add", &[I64], &[], CALL_CYCLES),
    f32_only("stable_size", &[], &[I32], ALL_S),
    f32_only("stable_grow", &[I32], &[I32], ALL_S),
    f32_only("stable_write", &[I32, I32, I32], &[], ALL_S),
    f32_only("stable_read", &[I32, I32, I32], &[], ALL_S),
];

/// The ic0 function `name`, if the spec has it for this memory width.
pub fn lookup(name: &str, wasm64: bool) -> Option<&'static Ic0Function> {
    IC0_FUNCTIONS.iter().find(|f| f.name == name && !(wasm64 && f.wasm32_only))
}

/// `lookup` for names known at compile time (the linker's definitions).
pub(super) fn spec(name: &str) -> &'static Ic0Function {
    IC0_FUNCTIONS.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("ic0.{name} is missing from IC0_FUNCTIONS"))
}

impl Ty {
    /// The concrete Wasm type for a module of the given width.
    pub fn resolve(self, wasm64: bool) -> wasmparser::ValType {
        match self {
            Ty::I32 => wasmparser::ValType::I32,
            Ty::I64 => wasmparser::ValType::I64,
            Ty::Ptr if wasm64 => wasmparser::ValType::I64,
            Ty::Ptr => wasmparser::ValType::I32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = IC0_FUNCTIONS.iter().map(|f| f.name).collect();
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
    }

    #[test]
    fn start_may_use_only_the_listed_functions() {
        let allowed: Vec<_> =
            IC0_FUNCTIONS.iter().filter(|f| f.contexts.contains(Context::Start)).map(|f| f.name).collect();
        for name in &allowed {
            assert!(
                name.starts_with("stable")
                    || name.starts_with("cost_")
                    || ["performance_counter", "is_controller", "in_replicated_execution", "debug_print", "trap"]
                        .contains(name),
                "{name} must not be allowed in (start)"
            );
        }
    }
}
