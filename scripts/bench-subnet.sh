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
cargo build -q --release -p tabnet-sim --example simulate

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
echo "blocks finalized and certified per second when idle: $(python3 -c "print(f'{($h1 - $h0) / 10:.1f}')") ($h0 → $h1 in 10 s)"

echo; echo "== one caller: update latency, submission to certified reply (through node 0)"
target/release/tabnet-load --url "$url" --callers 1 --seconds 10

echo; echo "== saturation: ${CALLERS:-1024} callers (through node 0)"
h0=$(height)
target/release/tabnet-load --url "$url" --callers "${CALLERS:-1024}" --seconds "${SECONDS_PER_RUN:-15}"
h1=$(height)
echo "heights certified meanwhile: $((h1 - h0))"
curl -sf "$url/_/metrics"

echo; echo "== state sync: node 3 of a fresh 4-node subnet (a catch-up package every 20 heights) is down"
echo "   while ${SYNC_CANISTERS:-16} canisters with 2 MiB of heap each are made, then restarted"
kill $pids 2>/dev/null; wait 2>/dev/null || true
pids=""
port=$((port + 2 * nodes))
target/release/tabnet init-subnet --nodes 4 --port "$port" --dir "$work/sync" --dkg-interval 20 >/dev/null
start_node() {
  target/release/tabnet node --dir "$work/sync" --index "$1" >> "$work/sync-$1.log" 2>&1 &
  pids="$pids $!"
  eval "pid_$1=$!"
}
for k in 0 1 2 3; do start_node "$k"; done
url="http://127.0.0.1:$port"
url3="http://127.0.0.1:$((port + 3))"
for _ in $(seq 200); do [ -n "$(height 2>/dev/null)" ] && [ "$(height)" -gt 0 ] && break; sleep 0.1; done
kill -9 "$pid_3"
python3 scripts/make-big-module.py "$work/big.wasm" $((2 * 1024 * 1024))
target/release/tabnet-load --url "$url" --wasm "$work/big.wasm" --create "${SYNC_CANISTERS:-16}"
h=$(height)
until [ "$(height)" -gt $((h + 60)) ]; do sleep 0.5; done
started=$(date +%s%N)
start_node 3
for _ in $(seq 600); do grep -q "state sync brought" "$work/sync-3.log" && break; sleep 0.5; done
grep "state sync brought" "$work/sync-3.log" || { echo "node 3 did not sync:"; tail -20 "$work/sync-3.log"; exit 1; }
h3() { curl -sf "$url3/_/metrics" | sed -n 's/certified height: //p'; }
for _ in $(seq 600); do [ -n "$(h3 2>/dev/null)" ] && [ "$(h3)" -ge "$(height)" ] && break; sleep 0.1; done
echo "from process start to serving the subnet's latest certified height: $(( ($(date +%s%N) - started) / 1000000 )) ms"
du -sh "$work/sync/node-0/checkpoints" | sed 's/^/checkpoints kept on disk by node 0: /'
