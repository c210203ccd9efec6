#!/usr/bin/env bash
# Gateway overhead benchmark: Tally's gateway against LiteLLM's proxy, side by side.
#   bench/gateway.sh
# Non-streaming OpenAI-format chat completions (gpt-4o-mini, max_tokens 12) at fixed rates against
# the fake provider (web/examples/fake_upstream.rs) answering after 0 or 60 ms; for each rate and
# upstream latency it measures the fake directly, then through `tally serve` (release build, a
# virtual key with a large daily budget: every call is reserved, billed and settled), then through
# LiteLLM's proxy (bench/gateway/litellm.yaml, no database). Overhead p50/p99 = the proxy's latency
# percentile minus the direct one (percentiles of separate runs at the same rate). LiteLLM's own
# `x-litellm-overhead-duration-ms` header is sampled at 10 requests/s next to the load
# (bench/gateway/sample_overhead.py) since the load generator keeps no headers.
# Load generator: oha (crates.io), fixed rate (-q) with latency correction (latency counted from
# when a request was due, so a proxy that falls behind shows it); installed once into ~/.cache/tally/oha.
# With 2+ CPUs the proxy under test runs alone on CPU 1, the fake upstream and oha on CPU 0.
# What "budgets on" means for LiteLLM without a database: see bench/gateway/README.md.
# Knobs: BENCH_SECONDS (10, measured per cell), BENCH_WARMUP_SECONDS (3, same rate, not measured),
# BENCH_RATES ("500 1000"), BENCH_LATENCIES_MS ("0 60"), BENCH_TARGETS ("tally litellm"),
# BENCH_CONNECTIONS (256, oha's connections), LITELLM_WORKERS (1), TALLY_BENCH_BIN,
# FAKE_UPSTREAM_BIN, OHA_BIN (binaries to use instead of building/installing them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP_SECONDS:-3}
RATES=${BENCH_RATES:-"500 1000"}
LATENCIES=${BENCH_LATENCIES_MS:-"0 60"}
TARGETS=${BENCH_TARGETS:-"tally litellm"}
CONNS=${BENCH_CONNECTIONS:-256}
LITELLM_VERSION=1.108.7
OHA_VERSION=1.16.0
WORK="$ROOT/.tmp/bench-gateway"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
rm -rf "$WORK"; mkdir -p "$WORK"
has() { case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

echo "== machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + local changes'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"

# -- tools -------------------------------------------------------------------------------------
OHA=${OHA_BIN:-$HOME/.cache/tally/oha/bin/oha}
if [ ! -x "$OHA" ]; then
  echo "== installing oha $OHA_VERSION from crates.io into ~/.cache/tally/oha (once; ~10 min on 2 cores)" >&2
  cargo install oha --version "$OHA_VERSION" --locked --quiet --root "$HOME/.cache/tally/oha"
fi
if has litellm; then
  VENV="$ROOT/.tmp/litellm-venv"
  if [ "$(cat "$VENV/.litellm-version" 2>/dev/null)" != "$LITELLM_VERSION" ]; then
    echo "== installing litellm[proxy]==$LITELLM_VERSION into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
    echo "$LITELLM_VERSION" >"$VENV/.litellm-version"
  fi
fi
if [ -z "${FAKE_UPSTREAM_BIN:-}" ]; then
  echo "== building the fake upstream (release)" >&2
  cargo build --release --quiet -p tally-web --example fake_upstream
  FAKE_UPSTREAM_BIN="$TARGET_DIR/release/examples/fake_upstream"
fi
TALLY="${TALLY_BENCH_BIN:-$TARGET_DIR/release/tally}"
if has tally && [ -z "${TALLY_BENCH_BIN:-}" ]; then
  echo "== building tally (release)" >&2
  cargo build --release --quiet -p tally --bin tally
fi

# -- processes -----------------------------------------------------------------------------------
PROXY_CPU=(); LOAD_CPU=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
  echo "== pinning: proxy under test on CPU 1; fake upstream, oha and the header sampler on CPU 0"
fi
. "$ROOT/bench/lib.sh"
stop() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

# wait_for FILE REGEX SECONDS PID: until FILE has a line matching REGEX; prints the first URL on it.
wait_for() {
  local file=$1 re=$2 secs=$3 pid=$4
  for _ in $(seq 1 $((secs * 10))); do
    if grep -qE "$re" "$file" 2>/dev/null; then grep -oE 'http://[0-9.:]+' "$file" | head -1; return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "bench: process $pid exited; see ${file%.*}.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: nothing matched /$re/ in $file within ${secs}s" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
TICKS=$(getconf CLK_TCK)
# cpu PID: CPU seconds used so far by PID and its children.
cpu() {
  local total=0 p
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    total=$(awk -v t="$TICKS" -v acc="$total" '{printf "%.3f", acc + ($14 + $15) / t}' "/proc/$p/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}

BODY='{"model":"gpt-4o-mini","max_tokens":12,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
oha() {
  local secs=$1 rate=$2 url=$3 key=$4; shift 4
  "${LOAD_CPU[@]}" "$OHA" -z "${secs}s" -q "$rate" -c "$CONNS" --latency-correction --no-tui "$@" \
    -m POST -T application/json -H "authorization: Bearer $key" -d "$BODY" "$url/v1/chat/completions"
}

# cell LAT RATE TARGET URL KEY [PID]: warm up, then measure; PID's CPU use is recorded.
cell() {
  local lat=$1 rate=$2 target=$3 url=$4 key=$5 pid=${6:-} out="$WORK/L$1_R$2_$3" sampler=""
  oha "$WARMUP" "$rate" "$url" "$key" --output-format quiet >/dev/null 2>&1 || true
  drain "$url" "$key"  # a proxy that fell behind during the warm-up starts the measure with no backlog
  local c0=0; [ -n "$pid" ] && c0=$(cpu "$pid")
  if [ "$target" = litellm ]; then
    "${LOAD_CPU[@]}" "$VENV/bin/python" bench/gateway/sample_overhead.py "$url" "$key" "$SECS" "$out.hdr.json" &
    sampler=$!
  fi
  oha "$SECS" "$rate" "$url" "$key" --output-format json >"$out.json" 2>"$out.err" || true
  [ -n "$pid" ] && awk -v a="$c0" -v b="$(cpu "$pid")" 'BEGIN {printf "%.3f\n", b - a}' >"$out.cpu"
  [ -n "$sampler" ] && { wait "$sampler" || true; }
  python3 - "$out.json" "$target" "$lat" "$rate" >&2 <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"   {sys.argv[2]:8} upstream {sys.argv[3]:>3} ms, {sys.argv[4]:>5}/s: no result ({e})"); sys.exit()
p, codes = d["latencyPercentiles"], d.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
print(f"   {sys.argv[2]:8} upstream {sys.argv[3]:>3} ms, {sys.argv[4]:>5}/s: p50 {p['p50']*1000:8.2f} ms, "
      f"p99 {p['p99']*1000:8.2f} ms, {ok/d['summary']['total']:7.1f} ok/s, statuses {codes}, "
      f"errors {d.get('errorDistribution', {})}")
EOF
}

# prime URL KEY: 300 unpaced requests, 8 at a time, so that a fresh process has warmed its paths.
prime() {
  "${LOAD_CPU[@]}" "$OHA" -n 300 -c 8 --no-tui --output-format quiet -m POST -T application/json \
    -H "authorization: Bearer $2" -d "$BODY" "$1/v1/chat/completions" >/dev/null 2>&1 || true
}

# drain URL KEY: wait (up to 90 s) until a saturated proxy has worked off its backlog.
drain() {
  local t
  for _ in $(seq 1 90); do
    t=$(curl -s -o /dev/null -m 5 -w '%{time_total}' -H "authorization: Bearer $2" -H 'content-type: application/json' \
      -d "$BODY" "$1/v1/chat/completions" || echo 9)
    awk -v t="$t" 'BEGIN {exit !(t < 0.5)}' && return 0
    sleep 1
  done
}

for LAT in $LATENCIES; do
  echo "== upstream latency $LAT ms" >&2
  "${LOAD_CPU[@]}" "$FAKE_UPSTREAM_BIN" --bind 127.0.0.1:0 --latency-ms "$LAT" >"$WORK/fake$LAT.out" 2>"$WORK/fake$LAT.log" &
  FAKE_PID=$!; PIDS+=("$FAKE_PID")
  FAKE=$(wait_for "$WORK/fake$LAT.out" "listening on" 30 "$FAKE_PID")
  for RATE in $RATES; do cell "$LAT" "$RATE" direct "$FAKE" sk-direct; done

  if has tally; then
    env -u ANTHROPIC_API_KEY -u ANTHROPIC_BASE_URL RUST_LOG=warn OPENAI_API_KEY=sk-fake-upstream OPENAI_BASE_URL="$FAKE" \
      "${PROXY_CPU[@]}" "$TALLY" serve --bind 127.0.0.1:0 --database-url "sqlite://$WORK/tally$LAT.db" \
      >"$WORK/tally$LAT.out" 2>"$WORK/tally$LAT.log" &
    TALLY_PID=$!; PIDS+=("$TALLY_PID")
    TURL=$(wait_for "$WORK/tally$LAT.out" "listening on" 120 "$TALLY_PID")
    curl -sf -XPOST "$TURL/api/users/" -H 'content-type: application/json' -d '{"user_id":"bench","email":"bench@example.com"}' >/dev/null
    TKEY=$(curl -sf -XPOST "$TURL/api/keys" -H 'content-type: application/json' -d '{"user_id":"bench","name":"bench",
      "allowed_models":null,"expires_at":null,"rpm_limit":null,
      "budgets":[{"max_budget":"100000","period":"daily","alert_threshold":"0.8","timezone":"UTC"}]}' |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
    prime "$TURL" "$TKEY"
    for RATE in $RATES; do cell "$LAT" "$RATE" tally "$TURL" "$TKEY" "$TALLY_PID"; done
    SPEND=$(curl -sf "$TURL/api/billing/budget/$(curl -sf "$TURL/api/keys?user_id=bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["key_id"])')" |
      python3 -c 'import json,sys; b=json.load(sys.stdin)["budgets"][0]; print("spent", b["spent"], "USD, reserved", b["reserved"])' || echo '?')
    echo "   tally: the key's daily budget after the runs: $SPEND" >&2
    stop "$TALLY_PID"
  fi

  if has litellm; then
    PORT=$(free_port)
    env -u DATABASE_URL FAKE_UPSTREAM_V1="$FAKE/v1" LITELLM_MASTER_KEY=sk-bench LITELLM_LOCAL_MODEL_COST_MAP=True \
      LITELLM_LOG=ERROR "${PROXY_CPU[@]}" "$VENV/bin/litellm" --config bench/gateway/litellm.yaml \
      --host 127.0.0.1 --port "$PORT" --num_workers "${LITELLM_WORKERS:-1}" >"$WORK/litellm$LAT.log" 2>&1 &
    LITELLM_PID=$!; PIDS+=("$LITELLM_PID")
    LURL="http://127.0.0.1:$PORT"
    for _ in $(seq 1 900); do
      curl -sf -o /dev/null "$LURL/health/liveliness" && break
      kill -0 "$LITELLM_PID" 2>/dev/null || { echo "bench: litellm exited; see $WORK/litellm$LAT.log" >&2; exit 1; }
      sleep 0.2
    done
    prime "$LURL" sk-bench
    for RATE in $RATES; do
      cell "$LAT" "$RATE" litellm "$LURL" sk-bench "$LITELLM_PID"
      drain "$LURL" sk-bench
    done
    stop "$LITELLM_PID"
  fi
  stop "$FAKE_PID"
done

echo
echo "Gateway overhead (through the proxy minus direct), non-streaming OpenAI-format, budgets on;"
echo "${SECS} s measured per cell after ${WARMUP} s of warm-up at the same rate; $CONNS connections; raw results in $WORK"
python3 bench/gateway/summarize.py "$WORK"
