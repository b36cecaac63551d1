//! libFuzzer target: see `tabnet_fuzz::log_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("log_reader", tabnet_fuzz::log_reader::seeds, tabnet_fuzz::log_reader::check),
    |data: &[u8]| tabnet_fuzz::log_reader::run(data)
);
