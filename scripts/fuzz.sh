#!/usr/bin/env bash
# Fuzzing of every hostile input path with libFuzzer (fuzz/, targets in fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh                       build the targets (once; cargo rebuilds what changed)
#   scripts/fuzz.sh --brief               each target for 30 s (CI): exits non-zero on a crash,
#                                         a hang (-timeout) or an allocation over the caps
#   scripts/fuzz.sh --seconds S [T...]    each named target (default: all) for S seconds
#   scripts/fuzz.sh --hours H [T...]      the same for H hours each (one after the other)
#   scripts/fuzz.sh --seeds               rewrite the seed corpus fuzz/corpus/<target>/ from the
#                                         targets' own seed builders (fuzz/src/*.rs `seeds`)
#
# Stable Rust only: no cargo-fuzz, no -Z flags. The targets are built with the same
# instrumentation cargo-fuzz asks for, through stable `-C passes=sancov-module` and
# `-C llvm-args=-sanitizer-coverage-*` (no AddressSanitizer: that needs nightly's
# -Zsanitizer; Rust code is memory-safe and panics, overflow checks and debug assertions,
# which the fuzz profile turns on, are what a crash is here). libFuzzer is compiled from the
# source vendored in the pinned libfuzzer-sys crate by the system C++ compiler; nothing is
# downloaded at run time. Per target: new inputs go to target/fuzz/corpus/<target>/, crashes
# to target/fuzz/artifacts/<target>/, logs to target/fuzz/logs/<target>.log. Reproduce a
# crash with `target/fuzz/<host>/release/<target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(envelope management_args wasm_module gossip_codec handshake log_reader)
BRIEF_SECONDS=30
OUT=target/fuzz
export CARGO_INCREMENTAL=0

step() { printf '\n== fuzz: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
die() { echo "fuzz.sh: $*" >&2; exit 2; }

# Per target: the largest input, the memory caps (a single allocation over -malloc_limit_mb,
# or a process over -rss_limit_mb, is a crash) and the time one input may take (a hang).
max_len() {
  case "$1" in
    # The real canisters of target/canisters/ are 0.2 to 0.5 MiB.
    wasm_module) echo 1048576 ;;
    gossip_codec) echo 65536 ;;
    # A role byte and at most two fixed-size messages (longer inputs are the same inputs).
    handshake) echo 256 ;;
    management_args) echo 8192 ;;
    *) echo 16384 ;;
  esac
}
malloc_limit_mb() {
  case "$1" in
    # A canister's memories and a module of up to 100 MiB are legitimate allocations.
    management_args | wasm_module) echo 2048 ;;
    # A frame, an envelope or a log of at most 64 KiB must never need 256 MiB at once.
    *) echo 256 ;;
  esac
}
RSS_LIMIT_MB=3072
TIMEOUT_SECONDS=10

build() {
  if ! command -v c++ >/dev/null; then
    step "apt-get install g++ (libfuzzer-sys compiles libFuzzer)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
  fi
  HOST=$(rustc -vV | sed -n 's/^host: //p')
  step "build ${TARGETS[*]} (release, debug assertions and overflow checks on)"
  # The flags cargo-fuzz passes, minus its -Z ones. `--target` keeps them off build scripts
  # and proc macros. fuzz/Cargo.toml's release profile adds the assertions.
  RUSTFLAGS="-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cllvm-args=-sanitizer-coverage-stack-depth \
    --cfg fuzzing" \
    cargo build --release --manifest-path fuzz/Cargo.toml --target "$HOST" --target-dir "$OUT" --bins
  BIN="$OUT/$HOST/release"
}

is_target() { local t; for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

# run TARGET SECONDS: fuzzes one target; prints one summary line; returns non-zero on a finding.
SUMMARY=()
run() {
  local t=$1 seconds=$2 log="$OUT/logs/$1.log" status=0
  local corpus="$OUT/corpus/$t" artifacts="$OUT/artifacts/$t"
  mkdir -p "$corpus" "$artifacts" "$OUT/logs"
  local dirs=("$corpus" "fuzz/corpus/$t")
  # The Wasm loader also starts from the project's real canisters when they are built
  # (scripts/build-canisters.sh); only their modules, not the .did files beside them.
  if [ "$t" = wasm_module ] && compgen -G 'target/canisters/*.wasm' >/dev/null; then
    mkdir -p "$OUT/canisters" && cp target/canisters/*.wasm "$OUT/canisters/" && dirs+=("$OUT/canisters")
  fi
  step "$t for ${seconds}s (log: $log)"
  "$BIN/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout="$TIMEOUT_SECONDS" \
    -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$(malloc_limit_mb "$t")" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 ${SEED:+-seed="$SEED"} "${dirs[@]}" >"$log" 2>&1 || status=$?
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" != 0 ]; then
    grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20 || true
    tail -5 "$log"
  fi
  SUMMARY+=("$(printf '%-16s %8ss %14s executions %10s/s  %s' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
    "$([ "$status" = 0 ] && echo ok || echo "FAILED (exit $status, see $log and $artifacts/)")")")
  return "$status"
}

mode=build seconds=0 names=() SEED=${FUZZ_SEED:-}
case "${1:-}" in
  "") ;;
  # CI's brief runs start from a fixed seed, so that what they try is the same each time (a
  # finding there is a bug to reproduce, not a roll of the dice); long runs explore anew.
  --brief) mode=run seconds=$BRIEF_SECONDS SEED=${FUZZ_SEED:-1} ;;
  --seconds) [ $# -ge 2 ] || die "--seconds S [target...]"; mode=run seconds=$2; shift; names=("${@:2}") ;;
  --hours) [ $# -ge 2 ] || die "--hours H [target...]"; mode=run seconds=$(awk "BEGIN { printf \"%d\", $2 * 3600 }"); shift; names=("${@:2}") ;;
  --seeds) mode=seeds ;;
  *) die "unknown option $1 (see the head of this script)" ;;
esac
[ "${#names[@]}" -gt 0 ] || names=("${TARGETS[@]}")
for t in "${names[@]}"; do is_target "$t" || die "no target $t (targets: ${TARGETS[*]})"; done
[ "$mode" = run ] && { [ "$seconds" -gt 0 ] 2>/dev/null || die "the run time must be a positive number of seconds"; }

build
case "$mode" in
  build) ;;
  seeds)
    for t in "${TARGETS[@]}"; do
      rm -rf "fuzz/corpus/$t"
      TABNET_FUZZ_WRITE_SEEDS="fuzz/corpus/$t" "$BIN/$t"
    done
    ;;
  run)
    failed=0
    for t in "${names[@]}"; do run "$t" "$seconds" || failed=1; done
    step "summary"
    printf '%s\n' "${SUMMARY[@]}"
    exit "$failed"
    ;;
esac
