#!/usr/bin/env bash
# Fuzzing: runs every fuzz target of fuzz/ (the parsers of outside bytes) for SECONDS each and
# prints, per target, executions, exec/s, coverage (libFuzzer) and findings (crash, hang/timeout,
# slow or out-of-memory inputs, with the file that reproduces each). Exits 1 on any finding.
#   bench/fuzz.sh [SECONDS_PER_TARGET] [--engine libfuzzer|std] [--targets "a b"]
# SECONDS_PER_TARGET defaults to 600 (the recorded run, docs/fuzzing.md).
# Engines:
#   libfuzzer (default): coverage-guided, `cargo fuzz` on the stable toolchain with `-s none` (no
#     sanitizer; Rust's own checks, debug assertions and overflow checks on). cargo-fuzz is
#     installed once into ~/.cache/tally (about 75 s). The instrumented build rebuilds every
#     dependency once (~23 min on 2 cores), then only what changed.
#   std: the built-in mutational driver (`tally-fuzz`, no coverage feedback) on the ordinary dev
#     build, which the test suite has already built: what scripts/test.sh runs (15 s per target).
# Work files: .tmp/fuzz/{corpus,artifacts}/<target> (the corpus grows there; the committed seeds in
# fuzz/corpus/<target> are only read). Reproduce a finding:
#   cargo run -p tally-fuzz --bin tally-fuzz -- replay <target> <file>
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SECONDS_PER_TARGET=600
ENGINE=libfuzzer
TARGETS="ingest envelope sse gateway_request import_report"
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE=${2:?--engine needs libfuzzer or std}; shift 2 ;;
    --targets) TARGETS=${2:?--targets needs names}; shift 2 ;;
    [0-9]*) SECONDS_PER_TARGET=$1; shift ;;
    *) echo "usage: bench/fuzz.sh [SECONDS_PER_TARGET] [--engine libfuzzer|std] [--targets \"a b\"]" >&2; exit 2 ;;
  esac
done
case "$ENGINE" in libfuzzer|std) ;; *) echo "fuzz: unknown engine $ENGINE (libfuzzer or std)" >&2; exit 2 ;; esac

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK="$ROOT/.tmp/fuzz"
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT="${TALLY_CARGO_FUZZ_ROOT:-$HOME/.cache/tally/cargo-fuzz-$CARGO_FUZZ_VERSION}"
# libFuzzer: an input running longer than this many seconds is a hang (timeout-<hash>).
HANG_SECONDS=10
# libFuzzer: generated inputs up to this many bytes (the seeds are up to ~1.7 KB).
MAX_LEN=16384

if [ "$ENGINE" = libfuzzer ]; then
  if [ ! -x "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CARGO_FUZZ_ROOT" >&2
  fi
  export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"
  echo "== building the fuzz targets (cargo fuzz, stable, instrumented, no sanitizer)" >&2
  # Its own directory under the shared target dir: the instrumentation flags differ from every
  # other build, so nothing is shared with target/debug or target/release anyway.
  # One target at a time: `cargo fuzz build` alone builds every bin, and the `tally-fuzz` driver
  # does not link without libFuzzer's runtime.
  for t in $TARGETS; do
    cargo +stable fuzz build -s none --features libfuzzer --target-dir "$TARGET_DIR/fuzz" "$t" >&2
  done
  BIN_DIR="$TARGET_DIR/fuzz/x86_64-unknown-linux-gnu/release"
else
  echo "== building the fuzz driver (dev profile, as the test suite builds it)" >&2
  # The test build's feature set, so that after `cargo test --workspace` this builds nothing
  # (`cargo build -p tally-fuzz` would unify features differently and rebuild shared crates).
  cargo test --workspace --no-run --quiet
  DRIVER="$TARGET_DIR/debug/tally-fuzz"
fi

printf '%-16s %-9s %6s %12s %9s %10s %s\n' target engine secs execs exec/s coverage findings
total_findings=0
for t in $TARGETS; do
  corpus="$WORK/corpus/$t"; artifacts="$WORK/artifacts/$t"; log="$WORK/$t.log"
  mkdir -p "$corpus"; rm -rf "$artifacts"; mkdir -p "$artifacts"
  status=0
  if [ "$ENGINE" = libfuzzer ]; then
    "$BIN_DIR/$t" "$corpus" "fuzz/corpus/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout="$HANG_SECONDS" \
      -rss_limit_mb=2048 -max_len="$MAX_LEN" -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) | sort)
  else
    "$DRIVER" run "$t" "$SECONDS_PER_TARGET" "fuzz/corpus/$t" "$artifacts" >"$log" 2>&1 || status=$?
    execs=$(grep -oE 'execs=[0-9]+' "$log" | cut -d= -f2)
    rate=$(grep -oE 'exec_per_s=[0-9]+' "$log" | cut -d= -f2)
    cov="n/a"
    found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'hang-*' -o -name 'slow-*' \) | sort)
  fi
  n=$(printf '%s' "$found" | grep -c . || true)
  if [ "$status" -ne 0 ] && [ "$n" -eq 0 ]; then
    # The run failed without leaving an input behind (a build or start-up problem): say so.
    echo "fuzz: $t exited with status $status; see $log" >&2
    n=1
  fi
  printf '%-16s %-9s %6s %12s %9s %10s %s\n' "$t" "$ENGINE" "$SECONDS_PER_TARGET" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$n"
  if [ -n "$found" ]; then
    printf '%s\n' "$found" | while read -r f; do echo "  finding: $f"; done
    grep -E '^finding:|panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 | sed 's/^/  /' || true
  fi
  total_findings=$((total_findings + n))
done
echo "findings: $total_findings"
[ "$total_findings" -eq 0 ]
