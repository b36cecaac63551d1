//! Fails early, with the command to run, when the canisters were not built.
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/canisters");
    for name in include_str!("src/names.txt").split_whitespace() {
        let file = dir.join(format!("{name}.wasm"));
        if !file.exists() {
            panic!("{} is missing: run scripts/build-canisters.sh first", file.display());
        }
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=src/names.txt");
}
