//! Limits of a subnet (ic-interface.md §9). Tests may lower them; the defaults are the IC's.

use crate::cycles::CyclesConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubnetConfig {
    pub cycles: CyclesConfig,
    pub max_instructions_per_update: u64,
    pub max_instructions_per_query: u64,
    pub max_instructions_per_install_code: u64,
    pub max_instructions_per_inspect_message: u64,
    /// Heap limit for 32-bit modules, bytes.
    pub max_wasm32_memory: u64,
    /// Heap limit for 64-bit modules, bytes.
    pub max_wasm64_memory: u64,
    pub max_stable_memory: u64,
    /// Memory all canisters of the node may use together (heaps and stable memories). Growing
    /// beyond it fails (`memory.grow` and `stable64_grow` return -1), so one canister can't
    /// exhaust the machine. The IC's subnets have terabytes; a tab or a laptop has less.
    pub subnet_memory_capacity: u64,
    pub max_ingress_bytes: usize,
    pub max_inter_canister_payload_same_subnet: usize,
    pub max_reply_bytes: usize,
    pub max_reply_bytes_query: usize,
    pub max_certified_data_bytes: usize,
    pub max_controllers: usize,
    /// Calls a canister may have outstanding at once; `call_perform` beyond it fails
    /// (SYS_TRANSIENT). Each holds a callback and keeps its call context open.
    #[serde(default = "default_max_outstanding_calls")]
    pub max_outstanding_calls: usize,
    pub max_best_effort_timeout_seconds: u32,
    /// Balance given by `provisional_create_canister_with_cycles` when none is named.
    pub provisional_default_cycles: u128,
    /// Default freezing threshold, seconds (30 days).
    pub default_freezing_threshold: u64,
}

impl SubnetConfig {
    /// The IC's limits, with fees scaled to `subnet_size` nodes.
    pub fn for_subnet_size(subnet_size: u64) -> Self {
        const GIB: u64 = 1 << 30;
        Self {
            cycles: CyclesConfig::for_subnet_size(subnet_size),
            max_instructions_per_update: 40_000_000_000,
            max_instructions_per_query: 5_000_000_000,
            max_instructions_per_install_code: 300_000_000_000,
            max_instructions_per_inspect_message: 200_000_000,
            max_wasm32_memory: 4 * GIB,
            max_wasm64_memory: 6 * GIB,
            max_stable_memory: 500 * GIB,
            subnet_memory_capacity: 4 * GIB,
            max_ingress_bytes: 2 * 1024 * 1024,
            max_inter_canister_payload_same_subnet: 10 * 1024 * 1024,
            max_reply_bytes: 2 * 1024 * 1024,
            max_reply_bytes_query: 3 * 1024 * 1024,
            max_certified_data_bytes: 32,
            max_controllers: 10,
            max_outstanding_calls: default_max_outstanding_calls(),
            max_best_effort_timeout_seconds: 300,
            provisional_default_cycles: 100_000_000_000_000,
            default_freezing_threshold: 30 * 24 * 3600,
        }
    }
}

/// The IC's per-canister quota of guaranteed-response callbacks (50,000): with the memory each
/// callback and call context counts (`state::CALLBACK_BYTES`), what one canister can make the
/// node hold with calls that are never answered is bounded.
fn default_max_outstanding_calls() -> usize {
    50_000
}
