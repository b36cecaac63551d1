//! The test canisters, embedded: `wasm("counter")`. Rust canisters are built with ic-cdk,
//! `motoko_*` with the `motoko` compiler, `invalid` is not a module. The list is `names.txt`.

/// The module bytes of canister `name`; panics on a name that is not in `names.txt`.
pub fn wasm(name: &str) -> &'static [u8] {
    match name {
        "caller" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/caller.wasm")),
        "counter" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/counter.wasm")),
        "invalid" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/invalid.wasm")),
        "loop" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/loop.wasm")),
        "membomb" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/membomb.wasm")),
        "motoko_caller" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/motoko_caller.wasm")),
        "motoko_counter" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/motoko_counter.wasm")),
        "stable" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/stable.wasm")),
        "timer" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/timer.wasm")),
        "trap" => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/canisters/trap.wasm")),
        other => panic!("no test canister named {other} (see crate/test-canisters/src/names.txt)"),
    }
}
