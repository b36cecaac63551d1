//! libFuzzer target: see `tabnet_fuzz::wasm`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("wasm_module", tabnet_fuzz::wasm::seeds, tabnet_fuzz::wasm::check),
    |data: &[u8]| tabnet_fuzz::wasm::run(data)
);
