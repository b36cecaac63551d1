#!/usr/bin/env bash
# Builds the browser node (crate/web → pkg/ with wasm-pack) and bundles the web app (www/dist).
set -euo pipefail
cd "$(dirname "$0")/.."
# wasm-pack's `cargo metadata` wants every platform's crates; fetch them once, quietly.
cargo fetch -q
# The simulated subnet (pkg-sim) runs the counter test canister, built here (quick when built).
scripts/build-canisters.sh > /dev/null
wasm-pack build --mode no-install --release --target bundler --out-dir ../../pkg crate/web
[ -n "${TABNET_WASM_NAMES:-}" ] || node scripts/strip-wasm-names.mjs pkg/tabnet_web_bg.wasm
# The front page's subnet simulated in one tab (crate/web's `sim` feature: the simulator and its
# Byzantine behaviours, which the node build above must not carry).
wasm-pack build --mode no-install --release --target bundler --out-dir ../../pkg-sim crate/web -- --features sim
[ -n "${TABNET_WASM_NAMES:-}" ] || node scripts/strip-wasm-names.mjs pkg-sim/tabnet_web_bg.wasm
# The playground's Candid tooling (a .did parser and type checker), fetched only with the playground.
wasm-pack build --mode no-install --release --target bundler --out-dir ../../pkg-candid crate/candid-ui
[ -n "${TABNET_WASM_NAMES:-}" ] || node scripts/strip-wasm-names.mjs pkg-candid/tabnet_candid_ui_bg.wasm
npx webpack --no-stats
echo "web app in www/dist ($(du -sh www/dist | cut -f1)), wasm $(du -h pkg/*_bg.wasm | cut -f1) ($(gzip -9 -c pkg/*_bg.wasm | wc -c) bytes gzipped)"
echo "playground Candid wasm $(du -h pkg-candid/*_bg.wasm | cut -f1) ($(gzip -9 -c pkg-candid/*_bg.wasm | wc -c) bytes gzipped)"
echo "simulated subnet wasm $(du -h pkg-sim/*_bg.wasm | cut -f1) ($(gzip -9 -c pkg-sim/*_bg.wasm | wc -c) bytes gzipped)"
