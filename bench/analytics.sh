#!/usr/bin/env bash
# Analytics benchmark: query latency over a large generated history.
#   bench/analytics.sh [EVENTS]            (default 10,000,000)
# Loads EVENTS generated usage events (store/examples/analytics_load.rs: 120 days ending
# yesterday, 200 users on two models each, one in two with a gateway key, six task labels,
# one call in fifty failed) through the persister's own write path (Store::write_batch, so the
# daily rollups are built as in production) into a fresh SQLite file, starts `tally serve`
# (release build) on it, and measures every analytics endpoint over a 90-day range ending
# yesterday with oha: BENCH_REQUESTS (200) sequential requests each (-c 1, latency per
# request), printing p50/p99 per endpoint. The goal: p99 < 50 ms.
# Knobs: BENCH_REQUESTS, BENCH_DAYS (120), BENCH_USERS (200), BENCH_REUSE=1 (keep an existing
# database of the same size instead of loading again), TALLY_BENCH_BIN, OHA_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source bench/lib.sh
EVENTS=${1:-10000000}
REQS=${BENCH_REQUESTS:-200}
DAYS=${BENCH_DAYS:-120}
USERS=${BENCH_USERS:-200}
OHA_VERSION=1.16.0
WORK="$ROOT/.tmp/bench-analytics"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
mkdir -p "$WORK"
DB="$WORK/analytics-$EVENTS-$DAYS-$USERS.db"

echo "== machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + local changes'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"

OHA=${OHA_BIN:-$HOME/.cache/tally/oha/bin/oha}
if [ ! -x "$OHA" ]; then
  echo "== installing oha $OHA_VERSION from crates.io into ~/.cache/tally/oha (once; ~10 min on 2 cores)" >&2
  cargo install oha --version "$OHA_VERSION" --locked --quiet --root "$HOME/.cache/tally/oha"
fi
echo "== building (release)"
cargo build --release --quiet -p tally-store --example analytics_load
BIN=${TALLY_BENCH_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet --bin tally
  BIN="$TARGET_DIR/release/tally"
fi

if [ "${BENCH_REUSE:-0}" = 1 ] && [ -f "$DB" ]; then
  echo "== reusing $DB"
else
  rm -f "$DB" "$DB-wal" "$DB-shm"
  echo "== loading $EVENTS events over $DAYS days for $USERS users"
  "$TARGET_DIR/release/examples/analytics_load" "sqlite://$DB" "$EVENTS" "$DAYS" "$USERS"
fi
echo "== database: $(du -h "$DB" | cut -f1), rollup rows per grain:"
python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for grain, n in c.execute("SELECT grain, COUNT(*) FROM usage_rollups GROUP BY grain ORDER BY 2"):
    print(f"   {grain:>6}: {n:>9,}")
print(f"   events: {c.execute('SELECT COUNT(*) FROM api_events').fetchone()[0]:,}")
PY

"$BIN" serve --bind 127.0.0.1:0 --database-url "sqlite://$DB" >"$WORK/out" 2>"$WORK/log" &
PIDS+=($!)
for _ in $(seq 1 300); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^tally listening on //p' "$WORK/out" | head -1)
[ -n "$URL" ] || { cat "$WORK/log" >&2; echo "tally did not start" >&2; exit 1; }

TO=$(date -u -d yesterday +%F)
FROM=$(date -u -d "$TO - 89 days" +%F)
R="date_from=$FROM&date_to=$TO"
echo "== $REQS sequential requests per endpoint, range $FROM..$TO (90 days)"
printf '   %-58s %9s %9s %9s\n' endpoint p50_ms p99_ms max_ms
worst=0
for path in \
  "/api/analytics/summary?$R" \
  "/api/analytics/by-user?$R" \
  "/api/analytics/by-model?$R" \
  "/api/analytics/by-provider?$R" \
  "/api/analytics/by-key?$R" \
  "/api/analytics/top-tasks?$R" \
  "/api/analytics/trends?$R&period=daily" \
  "/api/analytics/trends?$R&period=weekly&split=model" \
  "/api/analytics/summary?$R&user_id=user-0042" \
  "/api/analytics/summary?$R&user_id=user-0042&task=summarize" \
  "/api/usage/events?limit=100&from=${FROM}T00:00:00Z" \
  "/api/usage/events?limit=100&user_id=user-0042&status=failed"; do
  curl -sf -o /dev/null "$URL$path" || { echo "   $path answered an error" >&2; curl -s "$URL$path" >&2; exit 1; }
  "$OHA" -n "$REQS" -c 1 --no-tui --output-format json "$URL$path" >"$WORK/oha.json" 2>/dev/null
  line=$(python3 - "$WORK/oha.json" "$path" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
label = sys.argv[2].split("?")[0] + ("?" + "&".join(a for a in sys.argv[2].split("?")[1].split("&") if not a.startswith(("date_", "from="))) if "?" in sys.argv[2] else "")
label = label.rstrip("?")
print(f"   {label:<58} {p['p50']*1000:9.2f} {p['p99']*1000:9.2f} {d['summary']['slowest']*1000:9.2f}{'  ERRORS: ' + str(bad) if bad else ''}|{p['p99']*1000:.2f}")
PY
)
  echo "${line%|*}"
  p99=${line##*|}
  worst=$(python3 -c "print(max($worst, $p99))")
done
echo "== slowest p99: $worst ms (goal < 50 ms)"
