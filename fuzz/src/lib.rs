//! The fuzz targets' code: one module per hostile input path, each with `run` (one input, as
//! the node handles it) and `seeds` (valid inputs that reach deep into that path). The
//! binaries in `fuzz_targets/` only hand libFuzzer's inputs to `run`.
//!
//! Every target checks its seeds when it starts (`check_seeds`): a seed that no longer reaches
//! the code it was made for (a signature that stops verifying, a module that stops loading) is
//! a failure, so a target cannot silently decay into fuzzing the first `return Err`.
//! `TABNET_FUZZ_WRITE_SEEDS=DIR` makes a target write its seeds into DIR and exit instead
//! (`scripts/fuzz.sh --seeds` regenerates `fuzz/corpus/` this way).

pub mod envelope;
pub mod gossip;
pub mod handshake;
pub mod log_reader;
pub mod management;
pub mod wasm;

use std::path::Path;

/// A named seed input.
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Seed {
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Seed { name: name.into(), bytes }
    }
}

/// Called from each target's `init`: writes the seeds and exits if asked to, otherwise runs
/// `check` on every seed and panics (a crash, to libFuzzer) if one fails it.
pub fn init(target: &str, seeds: fn() -> Vec<Seed>, check: fn(&Seed) -> Result<(), String>) {
    let seeds = seeds();
    if let Some(dir) = std::env::var_os("TABNET_FUZZ_WRITE_SEEDS") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        for seed in &seeds {
            let path = dir.join(&seed.name);
            std::fs::write(&path, &seed.bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        eprintln!("{target}: wrote {} seeds to {}", seeds.len(), dir.display());
        std::process::exit(0);
    }
    for seed in &seeds {
        if let Err(e) = check(seed) {
            panic!("{target}: seed {} no longer reaches its code: {e}", seed.name);
        }
    }
}
