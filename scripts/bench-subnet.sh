#!/usr/bin/env bash
# Prints the figures of the subnet: consensus in the deterministic simulator (finality latency in
# message delays, simulator speed, bytes per block, crypto cost per height), then a native
# 4-process subnet on loopback driven by the project's load generator (blocks per second when
# idle, updates per second at saturation, update latency). Numbers, not assertions.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/build-canisters.sh >/dev/null
cargo build -q --release -p tabnet -p tabnet-load
cargo build -q --release -p tabnet-consensus --example simulate

echo "== consensus in the simulator"
target/release/examples/simulate --figures

nodes=${NODES:-4}
work=$(mktemp -d)
pids=""
trap 'kill $pids 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
target/release/tabnet init-subnet --nodes "$nodes" --port "$port" --dir "$work/subnet" >/dev/null
for k in $(seq 0 $((nodes - 1))); do
  target/release/tabnet node --dir "$work/subnet" --index "$k" > "$work/node-$k.log" 2>&1 &
  pids="$pids $!"
done
url="http://127.0.0.1:$port"
height() { curl -sf "$url/_/metrics" | sed -n 's/certified height: //p'; }
for _ in $(seq 200); do [ -n "$(height 2>/dev/null)" ] && [ "$(height)" -gt 0 ] && break; sleep 0.1; done

echo; echo "== native subnet of $nodes processes on loopback: idle"
h0=$(height); sleep 10; h1=$(height)
echo "blocks finalized and certified per second when idle: $(( (h1 - h0) / 10 )) ($h0 → $h1 in 10 s)"

echo; echo "== one caller: update latency, submission to certified reply (through node 0)"
target/release/tabnet-load --url "$url" --callers 1 --seconds 10

echo; echo "== saturation: ${CALLERS:-1024} callers (through node 0)"
h0=$(height)
target/release/tabnet-load --url "$url" --callers "${CALLERS:-1024}" --seconds "${SECONDS_PER_RUN:-15}"
h1=$(height)
echo "heights certified meanwhile: $((h1 - h0))"
curl -sf "$url/_/metrics"
