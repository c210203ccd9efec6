#!/usr/bin/env bash
# Ingest benchmark: drives POST /v1/events with N events (release build) and prints events/s from
# acceptance to priced-and-persisted, and p50/p99 acceptance-to-priced latency.
#   bench/ingest.sh [embedded|cluster|all] [N]
# embedded: one `tally serve` on SQLite, no Kafka (the answer comes after the commit).
# cluster:  tansu (scripts/tansu.sh) + one `tally collector` + one `tally serve` consuming into SQLite
#           (TALLY_BENCH_DB=postgres://... to bill into PostgreSQL instead).
# Knobs: TALLY_BENCH_BATCH (1000), TALLY_BENCH_CONCURRENCY (8), TALLY_BENCH_USERS (1000),
# TALLY_BENCH_BIN (a tally binary to measure instead of this tree's release build),
# TALLY_BENCH_KAFKA_ARGS (more flags for the cluster's node and collector, e.g. `--kafka-linger-ms 2`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-all}
N=${2:-100000}
BATCH=${TALLY_BENCH_BATCH:-1000}
CONC=${TALLY_BENCH_CONCURRENCY:-8}
USERS=${TALLY_BENCH_USERS:-1000}
WORK="$ROOT/.tmp/bench"
rm -rf "$WORK"; mkdir -p "$WORK"

echo "== building (release)" >&2
cargo build --release --quiet -p tally --bin tally
cargo build --release --quiet -p tally-collector --example ingest_bench
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TALLY="${TALLY_BENCH_BIN:-$TARGET_DIR/release/tally}"
DRIVER="$TARGET_DIR/release/examples/ingest_bench"
. "$ROOT/bench/lib.sh"
# cpu NAME...: CPU seconds (user+system) each started process has used so far, one line.
TICKS=$(getconf CLK_TCK)
cpu() {
  local line="cpu (s):" i=0
  for name in "$@"; do
    local pid=${PIDS[$i]}
    line+=" $name $(awk -v t="$TICKS" '{printf "%.2f", ($14+$15)/t}' "/proc/$pid/stat" 2>/dev/null || echo '?')"
    i=$((i + 1))
  done
  echo "$line"
}
TIMEFORMAT='cpu (s): driver %U user + %S sys'

# start NAME ARGS...: run the binary in the background; sets URL to the address it prints.
start() {
  local name=$1; shift
  "$TALLY" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$WORK/$name.out" 2>/dev/null; then URL=$(sed -n 's/.* on //p' "$WORK/$name.out" | head -1); return; fi
    sleep 0.05
  done
  echo "bench: $name did not start; see $WORK/$name.log" >&2; exit 1
}

export RUST_LOG=${RUST_LOG:-warn} TALLY_SIM_TOKEN_DELAY_MS=1
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if [ "$MODE" = embedded ] || [ "$MODE" = all ]; then
  echo "== embedded: tally serve (SQLite), $N events" >&2
  start node serve --bind 127.0.0.1:0 --database-url "sqlite://$WORK/embedded.db"
  time "$DRIVER" --mode embedded --url "$URL" --events "$N" --batch "$BATCH" --concurrency "$CONC" --users "$USERS"
  cpu node
  cleanup; PIDS=()
fi

if [ "$MODE" = cluster ] || [ "$MODE" = all ]; then
  # A broker of its own with fresh state (a long-lived test broker's database slows it down).
  scripts/tansu.sh install
  eval "$(scripts/tansu.sh env)"
  BPORT=${TALLY_BENCH_KAFKA_PORT:-59192}
  mkdir -p "$WORK/tansu"
  (cd "$WORK/tansu" && exec "$TALLY_TEST_TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$BPORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BPORT" --storage-engine sqlite://tansu.db >log 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break; sleep 0.1; done
  TALLY_TEST_KAFKA_BROKERS=127.0.0.1:$BPORT
  PREFIX="bench$(date +%s)."
  DB=${TALLY_BENCH_DB:-sqlite://$WORK/cluster.db}
  KAFKA=(--kafka-brokers "$TALLY_TEST_KAFKA_BROKERS" --kafka-topic-prefix "$PREFIX" ${TALLY_BENCH_KAFKA_ARGS:-})
  echo "== cluster: tansu + tally collector + tally serve ($DB), $N events" >&2
  start node serve --bind 127.0.0.1:0 --database-url "$DB" --node-id bench-node "${KAFKA[@]}"
  NODE_URL=$URL
  start collector collector --bind 127.0.0.1:0 --node-id bench-collector "${KAFKA[@]}"
  time "$DRIVER" --mode cluster --url "$URL" --events "$N" --batch "$BATCH" --concurrency "$CONC" --users "$USERS" \
    --kafka-brokers "$TALLY_TEST_KAFKA_BROKERS" --kafka-topic-prefix "$PREFIX" --node-url "$NODE_URL"
  cpu tansu node collector
fi
