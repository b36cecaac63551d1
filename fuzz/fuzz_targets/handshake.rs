//! libFuzzer target: see `tabnet_fuzz::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("handshake", tabnet_fuzz::handshake::seeds, tabnet_fuzz::handshake::check),
    |data: &[u8]| tabnet_fuzz::handshake::run(data)
);
