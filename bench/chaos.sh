#!/usr/bin/env bash
# Chaos soak: a private cluster (its own PostgreSQL, Redis and tansu broker on free loopback ports
# under .tmp/chaos, two `tally serve` nodes, two `tally collector`s), N ingest events at a steady
# rate with chat turns and gateway calls (keys with and without budgets) alongside, and faults
# spaced through the run: SIGKILL a node (twice, restarted), broker restart, Redis stopped,
# collector SIGKILL + restart, PostgreSQL restart. At the end the database is checked against the
# driver's ledger (bench/chaos.py); any failed check exits non-zero.
#   bench/chaos.sh [N]            N events (default 1,000,000), Redis down 30 s
#   bench/chaos.sh --short [N]    the test-suite run: N events (default 20,000), Redis down 8 s
# Knobs: TALLY_CHAOS_RATE (events/s; 4000, short 250), TALLY_CHAOS_KEEP=1 keeps the logs and data,
# TALLY_BENCH_BIN (a tally binary to use instead of this tree's release build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SHORT=0
if [ "${1:-}" = "--short" ]; then SHORT=1; shift; fi
if [ $SHORT = 1 ]; then
  N=${1:-20000}; RATE=${TALLY_CHAOS_RATE:-250}; PAUSE=8; BATCH=100; CHAT=0.5; GW=0.1
else
  N=${1:-1000000}; RATE=${TALLY_CHAOS_RATE:-4000}; PAUSE=30; BATCH=500; CHAT=1; GW=0.1
fi

echo "== building (release)" >&2
cargo build --release --quiet -p tally --bin tally
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TALLY="${TALLY_BENCH_BIN:-$TARGET_DIR/release/tally}"
scripts/tansu.sh install
eval "$(scripts/tansu.sh env)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
  [ -x "$tool" ] || { echo "chaos: $tool missing (scripts/services.sh start installs PostgreSQL)" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "chaos: redis-server missing (scripts/services.sh start installs it)" >&2; exit 1; }
mkdir -p "$ROOT/.tmp/chaos"
chmod 755 "$ROOT/.tmp" "$ROOT/.tmp/chaos"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== chaos: $N events at $RATE/s, Redis down $PAUSE s"
KEEP=()
[ -n "${TALLY_CHAOS_KEEP:-}" ] && KEEP=(--keep)
exec python3 -u bench/chaos.py --events "$N" --rate "$RATE" --batch "$BATCH" --redis-pause "$PAUSE" \
  --chat-interval "$CHAT" --gateway-interval "$GW" \
  --tally "$TALLY" --tansu "$TALLY_TEST_TANSU_BIN" --pg-bin "$PG_BIN" --base-catalog "$ROOT/catalog/prices.json" \
  --work "$ROOT/.tmp/chaos" "${KEEP[@]}"
