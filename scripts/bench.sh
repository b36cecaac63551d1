#!/usr/bin/env bash
# Prints the figures of the local replica: execution speed natively and in headless Chromium,
# node throughput and latency under the project's load generator, install time of a 2 MiB
# module, resident memory with 100 canisters. Numbers, not assertions: machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh >/dev/null
scripts/build-canisters.sh >/dev/null
cargo build -q --release -p tabnet -p tabnet-load -p tabnet-web --examples --bins
scripts/build-web.sh >/dev/null

echo "== execution speed (compute-bound canister, wasmi fuel)"
target/release/examples/bench_fuel
node scripts/bench-browser.mjs

echo; echo "== node throughput and latency (tabnet-load, signed ingress, v3 calls)"
state=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
target/release/tabnet --port "$port" --state-dir "$state" > "$state/node.log" 2>&1 &
node_pid=$!
trap 'kill $node_pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v2/status" >/dev/null && break; sleep 0.1; done
target/release/tabnet-load --url "http://127.0.0.1:$port" --callers "${CALLERS:-64}" --seconds "${SECONDS_PER_RUN:-10}"
echo; echo "== one update as agent-js sees it, end to end"
TABNET_URL="http://127.0.0.1:$port" node scripts/bench-agent-js.mjs

echo; echo "== install time of a 2 MiB module"
python3 scripts/make-big-module.py "$state/big.wasm" $((2 * 1024 * 1024))
target/release/tabnet-load --url "http://127.0.0.1:$port" --wasm "$state/big.wasm" --install-only

echo; echo "== resident memory with 100 small canisters"
echo "before: $(grep VmRSS /proc/$node_pid/status)"
target/release/tabnet-load --url "http://127.0.0.1:$port" --create 100
echo "after:  $(grep VmRSS /proc/$node_pid/status)"
echo; echo "== latency inside the node (request received → certified reply sent)"
curl -sf "http://127.0.0.1:$port/_/metrics" || echo "(node metrics not available)"
