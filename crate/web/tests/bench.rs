//! The benchmark canister in headless Chromium: the nested interpreter counts the same fuel in a
//! tab as natively.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn the_benchmark_canister_counts_the_same_fuel_as_natively() {
    let run = tabnet_web::bench::run_fuel(1_000, &|| 0.0).expect("runs");
    // Deterministic: the same instructions on every platform (the native test checks the same number).
    assert_eq!(run.fuel, tabnet_web::bench::expected_fuel(1_000));
}
