//! The web app's front page: a whole subnet simulated inside this tab ([`tabnet_sim::live`]) —
//! the node core every platform runs, with the real replica executing the counter canister,
//! on the deterministic simulator — driven and watched from JavaScript. A thin wrapper: the
//! Rust side answers in JSON.
//!
//! Built only with the `sim` feature (the `pkg-sim` bundle): the production tab node (`pkg`)
//! carries neither the simulator nor the Byzantine behaviours it turns on.

use tabnet_sim::live::{LiveSubnet, Recording};
use wasm_bindgen::prelude::*;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

/// A subnet simulated in this tab (see the module's documentation).
#[wasm_bindgen]
pub struct SimSubnet {
    live: LiveSubnet,
}

#[wasm_bindgen]
impl SimSubnet {
    /// A subnet of `nodes` nodes (1 to 13) from `seed`; it installs the counter canister at
    /// genesis. Throws if `nodes` is out of range.
    #[wasm_bindgen(constructor)]
    pub fn new(seed: u32, nodes: u32) -> Result<SimSubnet, JsError> {
        Ok(SimSubnet { live: LiveSubnet::new(u64::from(seed), nodes as usize).map_err(js_error)? })
    }

    /// A new subnet that re-applies the inputs of `record()`'s JSON at their times as it
    /// advances.
    pub fn replay(json: &str) -> Result<SimSubnet, JsError> {
        let recording: Recording = serde_json::from_str(json).map_err(|e| js_error(format!("not a recording: {e}")))?;
        Ok(SimSubnet { live: LiveSubnet::replay(recording).map_err(js_error)? })
    }

    /// Runs virtual time forward by `ms`.
    pub fn advance(&mut self, ms: f64) {
        self.live.advance(ms.max(0.0) as u64);
    }

    /// Runs exactly the next event; a one-line description of it.
    pub fn step_event(&mut self) -> String {
        self.live.step_event()
    }

    /// Virtual time (ms).
    pub fn now(&self) -> f64 {
        self.live.now() as f64
    }

    /// Everything the view draws, as JSON.
    pub fn view(&mut self) -> String {
        json(&self.live.view())
    }

    /// Captions numbered after `after`, as a JSON array of `{seq, at, text}`.
    pub fn events(&self, after: f64) -> String {
        json(&self.live.events(after.max(0.0) as u64))
    }

    pub fn crash(&mut self, i: u32) -> Result<(), JsError> {
        self.live.crash(i as usize).map_err(js_error)
    }

    /// Restarts a crashed node from what it persisted.
    pub fn restart(&mut self, i: u32) -> Result<(), JsError> {
        self.live.restart(i as usize).map_err(js_error)
    }

    /// A paused node receives nothing and wakes for nothing; what is sent to it is held and
    /// delivered when it resumes.
    pub fn pause(&mut self, i: u32, paused: bool) -> Result<(), JsError> {
        self.live.pause(i as usize, paused).map_err(js_error)
    }

    pub fn cut_link(&mut self, a: u32, b: u32, cut: bool) -> Result<(), JsError> {
        self.live.cut_link(a as usize, b as usize, cut).map_err(js_error)
    }

    pub fn delay_link(&mut self, a: u32, b: u32, ms: f64) -> Result<(), JsError> {
        self.live.delay_link(a as usize, b as usize, ms.max(0.0) as u64).map_err(js_error)
    }

    /// `mode`: '' (honest), 'equivocate', 'withhold', 'bad-shares'.
    pub fn byzantine(&mut self, i: u32, mode: &str) -> Result<(), JsError> {
        self.live.byzantine(i as usize, mode).map_err(js_error)
    }

    pub fn set_load(&mut self, calls_per_second: f64) -> Result<(), JsError> {
        self.live.set_load(calls_per_second.max(0.0) as u64).map_err(js_error)
    }

    /// `{seed, nodes, inputs: [{at, seq, op, args}]}`: every control so far.
    pub fn record(&self) -> String {
        json(&self.live.record())
    }
}
