//! libFuzzer target: see `tabnet_fuzz::management`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("management_args", tabnet_fuzz::management::seeds, tabnet_fuzz::management::check),
    |data: &[u8]| tabnet_fuzz::management::run(data)
);
