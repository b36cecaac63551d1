//! libFuzzer target: see `tabnet_fuzz::gossip`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: tabnet_fuzz::init("gossip_codec", tabnet_fuzz::gossip::seeds, tabnet_fuzz::gossip::check),
    |data: &[u8]| tabnet_fuzz::gossip::run(data)
);
