#!/usr/bin/env bash
# Builds tabnet (native node, browser bundle) and serves it; prints the URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-web.sh
cargo build --release -p tabnet
exec target/release/tabnet --www www/dist "$@"
