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

echo "== execution speed (compute-bound canister, wasmi fuel; native and headless Chromium calls alternate)"
node scripts/bench-browser.mjs

start_node() { # start_node DIR: a fresh node on a free port; sets $url and $node_pid
  local port=$((20000 + RANDOM % 20000))
  target/release/tabnet --port "$port" --state-dir "$1" > "$1.log" 2>&1 &
  node_pid=$!
  pids="$pids $node_pid"
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "$url/api/v2/status" >/dev/null && return; sleep 0.1; done
  echo "the node did not start: $(cat "$1.log")"; exit 1
}
work=$(mktemp -d)
pids=""
trap 'kill $pids 2>/dev/null; rm -rf "$work"' EXIT

echo; echo "== one caller at a time: update latency inside the node (request received → certified reply sent)"
start_node "$work/alone"
target/release/tabnet-load --url "$url" --callers 1 --seconds 5
curl -sf "$url/_/metrics"

echo; echo "== node throughput and latency under load (tabnet-load, signed ingress, v3 calls)"
start_node "$work/loaded"
target/release/tabnet-load --url "$url" --callers "${CALLERS:-64}" --seconds "${SECONDS_PER_RUN:-10}"
curl -sf "$url/_/metrics"

echo; echo "== one update as agent-js sees it, end to end"
TABNET_URL="$url" node scripts/bench-agent-js.mjs

echo; echo "== install time of a 2 MiB module"
python3 scripts/make-big-module.py "$work/big.wasm" $((2 * 1024 * 1024))
target/release/tabnet-load --url "$url" --wasm "$work/big.wasm" --install-only

echo; echo "== resident memory with 100 small canisters (a fresh node)"
start_node "$work/many"
echo "before: $(grep VmRSS /proc/$node_pid/status)"
target/release/tabnet-load --url "$url" --create 100 | grep -v '^install_code'
echo "after:  $(grep VmRSS /proc/$node_pid/status)"

echo; echo "== hostile input: /api/v2/status latency and resident memory while each attack runs"
node scripts/bench-attacks.mjs
