//! The node in a tab, in headless Chromium: real canisters created, installed, called,
//! upgraded and queried through the same management canister and scheduler as natively.
#![cfg(target_arch = "wasm32")]

use tabnet_web::TabNode;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const T0: u64 = 1_700_000_000_000_000_000;

fn field(outcome: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(outcome, &JsValue::from_str(name)).expect("outcome is an object")
}

fn reply(outcome: JsValue) -> String {
    assert_eq!(field(&outcome, "ok"), JsValue::TRUE, "call failed: {:?}", field(&outcome, "message"));
    field(&outcome, "reply").as_string().expect("a reply")
}

#[wasm_bindgen_test]
fn a_rust_canister_runs_in_the_tab() {
    let mut node = TabNode::new(T0);
    let id = node.create_canister(T0).expect("created");
    let wasm = tabnet_test_canisters::wasm("counter").to_vec();
    reply(node.install_code(&id, "install", wasm.clone(), "(opt (5 : nat64))", T0).unwrap());
    assert_eq!(reply(node.update(&id, "inc", "()", T0).unwrap()), "(6 : nat64)");
    assert_eq!(reply(node.query(&id, "get", "()", T0).unwrap()), "(6 : nat64)");
    // The counter keeps its count across an upgrade (pre/post_upgrade through stable memory).
    reply(node.install_code(&id, "upgrade", wasm, "(null)", T0).unwrap());
    assert_eq!(reply(node.query(&id, "get", "()", T0).unwrap()), "(6 : nat64)");
    assert!(node.canister_status(&id, T0).unwrap().contains("running"));
}

#[wasm_bindgen_test]
fn a_motoko_canister_keeps_its_heap_across_an_upgrade_in_the_tab() {
    let mut node = TabNode::new(T0);
    let id = node.create_canister(T0).expect("created");
    let wasm = tabnet_test_canisters::wasm("motoko_counter").to_vec();
    reply(node.install_code(&id, "install", wasm.clone(), "()", T0).unwrap());
    reply(node.update(&id, "inc", "()", T0).unwrap());
    reply(node.install_code(&id, "upgrade", wasm, "()", T0).unwrap());
    assert_eq!(reply(node.query(&id, "get", "()", T0).unwrap()), "(1 : nat64)");
}

#[wasm_bindgen_test]
fn errors_carry_the_ic_codes() {
    let mut node = TabNode::new(T0);
    let id = node.create_canister(T0).expect("created");
    let bad = node.install_code(&id, "install", tabnet_test_canisters::wasm("invalid").to_vec(), "()", T0).unwrap();
    assert_eq!(field(&bad, "error_code").as_string().as_deref(), Some("IC0505"));
    reply(node.install_code(&id, "install", tabnet_test_canisters::wasm("trap").to_vec(), "()", T0).unwrap());
    let trapped = node.update(&id, "boom", "()", T0).unwrap();
    assert_eq!(field(&trapped, "error_code").as_string().as_deref(), Some("IC0503"));
    assert_eq!(field(&trapped, "reject_code").as_f64(), Some(5.0));
    let missing = node.update(&id, "no_such_method", "()", T0).unwrap();
    assert_eq!(field(&missing, "error_code").as_string().as_deref(), Some("IC0536"));
}

#[wasm_bindgen_test]
fn the_benchmark_canister_counts_the_same_fuel_as_natively() {
    let run = tabnet_web::bench::run_fuel(1_000, &|| 0.0).expect("runs");
    // Deterministic: the same instructions on every platform (the native test checks the same number).
    assert_eq!(run.fuel, tabnet_web::bench::expected_fuel(1_000));
}
