//! The fee table of ic-interface.md §8, scaled to the subnet size (fees are quoted for 13 nodes).
//!
//! All arithmetic saturates, as the IC's `Cycles` type does: a cost too large for a u128 is
//! u128::MAX (more than any balance), never a panic or a wrapped small number.

use serde::{Deserialize, Serialize};

/// The published fees of a 13-node application subnet, and the size of this subnet. Every
/// cost is computed at full precision with the 13-node fees, then scaled by `subnet_size / 13`
/// (scaling each fee first would round the per-instruction fee of small subnets to zero).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CyclesConfig {
    pub subnet_size: u64,
    pub canister_creation_fee: u128,
    pub update_message_execution_fee: u128,
    /// Per 10 instructions, for wasm32.
    pub ten_update_instructions_execution_fee: u128,
    /// wasm64 canisters pay twice per instruction.
    pub ten_update_instructions_execution_fee_wasm64: u128,
    pub xnet_call_fee: u128,
    pub xnet_byte_transmission_fee: u128,
    pub ingress_message_reception_fee: u128,
    pub ingress_byte_reception_fee: u128,
    /// Per GiB per second.
    pub gib_storage_per_second_fee: u128,
    /// Per percent of compute allocation per second.
    pub compute_percent_allocated_per_second_fee: u128,
}

const GIB: u128 = 1 << 30;
/// The subnet size the published fees are for.
const REFERENCE_SUBNET_SIZE: u128 = 13;

impl CyclesConfig {
    /// The published fee table, for a subnet of `subnet_size` nodes.
    pub fn for_subnet_size(subnet_size: u64) -> Self {
        Self {
            subnet_size,
            canister_creation_fee: 500_000_000_000,
            update_message_execution_fee: 5_000_000,
            ten_update_instructions_execution_fee: 10,
            ten_update_instructions_execution_fee_wasm64: 20,
            xnet_call_fee: 260_000,
            xnet_byte_transmission_fee: 1_000,
            ingress_message_reception_fee: 1_200_000,
            ingress_byte_reception_fee: 2_000,
            gib_storage_per_second_fee: 127_000,
            compute_percent_allocated_per_second_fee: 10_000_000,
        }
    }

    /// A cost at 13-node prices, scaled to this subnet.
    fn scale(&self, cost: u128) -> u128 {
        cost.checked_mul(self.subnet_size as u128).map_or(u128::MAX, |c| c / REFERENCE_SUBNET_SIZE)
    }

    pub fn creation_fee(&self) -> u128 {
        self.scale(self.canister_creation_fee)
    }

    /// Cost of executing `instructions` in one message (base fee plus per-instruction fee).
    pub fn execution_cost(&self, instructions: u64, is_wasm64: bool) -> u128 {
        let per_ten = if is_wasm64 {
            self.ten_update_instructions_execution_fee_wasm64
        } else {
            self.ten_update_instructions_execution_fee
        };
        self.scale(self.update_message_execution_fee.saturating_add(per_ten.saturating_mul(instructions as u128) / 10))
    }

    /// Cost of receiving an ingress message of `bytes` bytes (method name + argument).
    pub fn ingress_induction_cost(&self, bytes: usize) -> u128 {
        self.scale(
            self.ingress_message_reception_fee.saturating_add(self.ingress_byte_reception_fee.saturating_mul(bytes as u128)),
        )
    }

    /// Cost of sending an inter-canister call of `bytes` bytes (method name + argument).
    pub fn call_cost(&self, bytes: usize) -> u128 {
        self.scale(self.xnet_call_fee.saturating_add(self.xnet_byte_transmission_fee.saturating_mul(bytes as u128)))
    }

    /// Storage cost of `bytes` held for `nanos` nanoseconds.
    pub fn storage_cost(&self, bytes: u64, nanos: u64) -> u128 {
        // The product of fee, bytes and nanoseconds can exceed a u128 (2^17 · 2^48 · 2^64).
        let cost = self.gib_storage_per_second_fee.checked_mul(bytes as u128).and_then(|c| c.checked_mul(nanos as u128));
        self.scale(cost.map_or(u128::MAX, |c| c / (GIB * 1_000_000_000)))
    }

    /// Cost of a compute allocation of `percent` held for `seconds`.
    pub fn compute_allocation_cost(&self, percent: u64, seconds: u64) -> u128 {
        self.scale(
            self.compute_percent_allocated_per_second_fee.saturating_mul(percent as u128).saturating_mul(seconds as u128),
        )
    }

    /// Cycles burned per second by a canister that just sits there: storage and compute
    /// allocation. This is what `canister_status` reports as `idle_cycles_burned_per_day / 86400`.
    pub fn idle_burn_per_second(&self, memory_bytes: u64, compute_allocation_percent: u64) -> u128 {
        self.scale(
            (self.gib_storage_per_second_fee.saturating_mul(memory_bytes as u128) / GIB).saturating_add(
                self.compute_percent_allocated_per_second_fee.saturating_mul(compute_allocation_percent as u128),
            ),
        )
    }

    /// The balance below which a canister is frozen: enough to pay its idle burn for
    /// `freezing_threshold_seconds`.
    pub fn freeze_threshold_cycles(
        &self,
        memory_bytes: u64,
        compute_allocation_percent: u64,
        freezing_threshold_seconds: u64,
    ) -> u128 {
        self.idle_burn_per_second(memory_bytes, compute_allocation_percent).saturating_mul(freezing_threshold_seconds as u128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_scale_with_subnet_size() {
        let thirteen = CyclesConfig::for_subnet_size(13);
        assert_eq!(thirteen.creation_fee(), 500_000_000_000);
        let one = CyclesConfig::for_subnet_size(1);
        assert_eq!(one.creation_fee(), 500_000_000_000 / 13);
        // Scaled after summing: a small subnet still pays for instructions.
        assert_eq!(one.execution_cost(13_000_000, false), (5_000_000 + 13_000_000) / 13);
        assert_eq!(thirteen.execution_cost(1_000, false), 5_000_000 + 1_000);
        assert_eq!(thirteen.execution_cost(1_000, true), 5_000_000 + 2_000);
        assert_eq!(thirteen.ingress_induction_cost(10), 1_200_000 + 20_000);
        // 1 GiB for 1 s
        assert_eq!(thirteen.storage_cost(1 << 30, 1_000_000_000), 127_000);
    }

    #[test]
    fn extreme_amounts_saturate() {
        let c = CyclesConfig::for_subnet_size(13);
        // 2^64 bytes for 2^64 ns overflows the product; the cost is then more than any balance.
        assert_eq!(c.storage_cost(u64::MAX, u64::MAX), u128::MAX);
        assert_eq!(c.compute_allocation_cost(u64::MAX, u64::MAX), u128::MAX);
        assert!(c.execution_cost(u64::MAX, true) > c.execution_cost(u64::MAX, false));
        assert!(c.call_cost(usize::MAX) > 0 && c.ingress_induction_cost(usize::MAX) > 0);
    }
}
