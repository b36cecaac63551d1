//! Turns the benchmark canister's WAT into a module at build time (the wasm32 build would
//! otherwise carry a WAT parser, about 0.1 MB of its gzipped size).

fn main() {
    println!("cargo:rerun-if-changed=src/compute.wat");
    let wat = std::fs::read_to_string("src/compute.wat").expect("src/compute.wat");
    let wasm = wat::parse_str(&wat).expect("src/compute.wat is valid WAT");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("compute.wasm"), wasm).expect("OUT_DIR is writable");
}
