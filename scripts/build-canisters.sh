#!/usr/bin/env bash
# Builds every test canister into target/canisters/:
#   <name>.wasm (+ <name>.did)  the Rust ic-cdk canisters of canisters/ (their own workspace)
#   motoko_<name>.wasm (+ .did) the Motoko canisters of canisters/motoko/ (npm `motoko`)
#   invalid.wasm                bytes that are not a valid Wasm module
# Assumes `rustup target add wasm32-unknown-unknown` and `npm ci` were done (the set-up script
# does both). Safe to run again: cargo and build.mjs skip work whose outputs are up to date.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/target/canisters"
# Kept apart from the main workspace's target dir: different workspace, profile and lock file.
cargo_target="$root/target/canister-build"
rust_canisters=(counter caller trap stable timer loop membomb)

mkdir -p "$out"

cargo build --release --locked --target wasm32-unknown-unknown \
  --manifest-path "$root/canisters/Cargo.toml" --target-dir "$cargo_target"

for name in "${rust_canisters[@]}"; do
  built="$cargo_target/wasm32-unknown-unknown/release/$name.wasm"
  cp -p "$built" "$out/$name.wasm"
  cp -p "$root/canisters/$name/$name.did" "$out/$name.did"
  echo "$name.wasm $(stat -c %s "$out/$name.wasm") bytes"
done

node "$root/canisters/motoko/build.mjs"
