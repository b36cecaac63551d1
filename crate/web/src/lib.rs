//! The browser edge: tabnet's node compiled to wasm32 and driven from JavaScript.
//!
//! A tab is a node of a tab subnet ([`tab_subnet::TabSubnet`]): the node core every platform
//! runs, with WebRTC links, IndexedDB storage and the IC HTTP interface in the page. `bench`
//! measures the nested interpreter's speed; with the `sim` feature, [`sim_subnet`] is the
//! subnet the web app simulates in one tab (the `pkg-sim` build only).

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
// (Natively too, for its tests: it is plain Rust.)
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod tab_view;
