//! libFuzzer target: see `tabnet_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("envelope", tabnet_fuzz::envelope::seeds, tabnet_fuzz::envelope::check),
    |data: &[u8]| tabnet_fuzz::envelope::run(data)
);
