//! The Wasm loader and instrumentation: `CanisterModule::new` on arbitrary bytes (gzip
//! decoding with its size cap, structure validation, the IC's module rules, the export
//! rewriting of embedder/instrument.rs, wasmi compilation), as `install_code` does.

use crate::Seed;
use std::io::Write;
use tabnet_execution::embedder::CanisterModule;

pub fn run(data: &[u8]) {
    if let Ok(module) = CanisterModule::new(data.to_vec()) {
        // What a loaded module reports is read by the node on every message; it must not panic.
        let _ = module.is_wasm64();
        let _ = module.exported_functions().count();
        let _ = module.methods("canister_update ").count();
        let _ = module.metadata_sections().count();
        let _ = module.metadata("candid:service");
        assert_eq!(module.bytes(), data, "the module keeps the bytes it was installed with");
    }
}

pub fn check(seed: &Seed) -> Result<(), String> {
    CanisterModule::new(seed.bytes.clone()).map(|_| ()).map_err(|e| e.message)
}

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).unwrap_or_else(|e| panic!("seed WAT does not parse: {e}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).and_then(|_| e.finish()).expect("gzip into a Vec cannot fail")
}

/// Modules that use what the instrumentation rewrites: mutable globals, memory, table, a start
/// function, the system entry points, custom sections, 64-bit memory. (scripts/fuzz.sh adds
/// the real canisters of target/canisters/ to the working corpus when they are built.)
pub fn seeds() -> Vec<Seed> {
    let counter = wat(
        r#"(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (memory (export "memory") 1 16)
  (table 2 funcref)
  (elem (i32.const 0) $inc $read)
  (global $count (mut i64) (i64.const 0))
  (global $limit i32 (i32.const 10))
  (data (i32.const 16) "hello")
  (func $start (call $print (i32.const 16) (i32.const 5)))
  (start $start)
  (func $inc (export "canister_update inc")
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (i64.store (i32.const 0) (global.get $count))
    (call $append (i32.const 0) (i32.const 8))
    (call $reply))
  (func $read (export "canister_query read")
    (i64.store (i32.const 0) (global.get $count))
    (call $append (i32.const 0) (i32.const 8))
    (call $reply))
  (func (export "canister_init"))
  (func (export "canister_pre_upgrade"))
  (func (export "canister_post_upgrade"))
  (func (export "canister_heartbeat"))
  (func (export "canister_global_timer"))
  (func (export "canister_inspect_message"))
  (func (export "canister_composite_query cq") (call $reply))
  (@custom "icp:public candid:service" "service : { inc : () -> (nat64) }")
  (@custom "icp:private git" "abc"))"#,
    );
    let memory64 = wat(
        r#"(module
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
  (memory i64 1 4)
  (global (mut i32) (i32.const 0))
  (global (mut f64) (f64.const 1.5))
  (func (export "canister_update grow") (drop (call $grow (i64.const 1))) (call $reply))
  (func (export "canister_update loop") (loop $l (br $l))))"#,
    );
    let bulk = wat(
        r#"(module
  (memory 1)
  (data $d "abcdef")
  (func (export "canister_update copy")
    (memory.init $d (i32.const 0) (i32.const 0) (i32.const 6))
    (data.drop $d)
    (memory.copy (i32.const 8) (i32.const 0) (i32.const 6))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))))"#,
    );
    let empty = wat("(module)");
    vec![
        Seed::new("counter.wasm", counter.clone()),
        Seed::new("counter.wasm.gz", gzip(&counter)),
        Seed::new("memory64.wasm", memory64),
        Seed::new("bulk-memory.wasm", bulk),
        Seed::new("empty.wasm", empty),
    ]
}
