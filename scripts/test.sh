#!/usr/bin/env bash
# Runs every test of tabnet: native Rust tests, the same execution tests as wasm32 in headless
# Chromium, the end-to-end tests with DFINITY's agent-js and ic-agent against the native node,
# and the web app in headless Chromium, and every fuzz target briefly.
# Sets up what it needs first (scripts/setup.sh), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# A test run builds once; incremental caches would only double the target dir's size.
export CARGO_INCREMENTAL=0

scripts/setup.sh
scripts/build-canisters.sh

echo; echo "== test: native (cargo test --workspace)"
cargo build --workspace --bins
cargo test --workspace

echo; echo "== test: wasm32 in headless Chromium"
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$root/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=300
cargo test --target wasm32-unknown-unknown -p tabnet-execution -p tabnet-web

echo; echo "== test: agent-js and the web app, end to end"
scripts/build-web.sh
TABNET_BIN="$root/target/debug/tabnet" node --test --test-concurrency=1 tests/agent-js/ tests/web/

echo; echo "== test: the end-to-end tests again, against a 4-process subnet (ic-agent through node 2, agent-js through node 1)"
TABNET_NODES=4 TABNET_NODE_INDEX=2 cargo test -p tabnet-agent-tests
TABNET_NODES=4 TABNET_BIN="$root/target/debug/tabnet" node --test --test-concurrency=1 tests/agent-js/

echo; echo "== fuzz: every target briefly (scripts/fuzz.sh --brief; for hours: see the README)"
scripts/fuzz.sh --brief
