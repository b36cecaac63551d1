//! Canister execution, sans-IO and deterministic.
//!
//! Layers, each with one job:
//! - `cycles`, `config`: the fee table and the subnet's limits.
//! - `hypervisor`: the contract between the scheduler and the Wasm embedder.
//! - `embedder`, `system_api`: wasmi and the ic0 System API — run one entry point of one canister.
//! - `state`: replicated state (canisters, their system state, call contexts), serialisable.
//! - `scheduler`: rounds — ingress, inter-canister calls, callbacks, heartbeats, timers, charging.
//! - `management`: the management canister `aaaaa-aa`.
//! - `query_state`: queries, on the live state or on a snapshot published after each round.

pub mod config;
pub mod cycles;
pub mod embedder;
pub mod hypervisor;
pub mod management;
pub mod query_state;
pub mod scheduler;
pub mod state;
pub mod system_api;

pub use config::SubnetConfig;
pub use cycles::CyclesConfig;
