#!/usr/bin/env bash
# The API contract against a live node: Schemathesis (pinned, from PyPI) generates requests from
# /openapi.json for every operation and checks that no answer is a 5xx and that every answer
# conforms to the spec (status code, content type, body schema). Four passes, each a fresh node:
# both access modes (open; token, calling as the admin) on SQLite and on PostgreSQL
# (scripts/services.sh). Each pass is bounded in time.
#   scripts/schemathesis.sh                  all four passes
#   TALLY_SCHEMATHESIS_PASSES="sqlite:token" ...  chosen passes
#   TALLY_SCHEMATHESIS_BACKENDS=sqlite ...   one pass
#   TALLY_SCHEMATHESIS_TOKEN=<admin token>   sent as `Authorization: Bearer` (token mode)
#   TALLY_SCHEMATHESIS_ARGS="--seed 1 ..."   extra `schemathesis run` arguments
# Schemathesis lives in a venv under ~/.cache/tally, reused. TALLY_BIN: a tally binary to test
# instead of building this tree's debug build. Reports (JUnit, failing cases) go to .tmp/schemathesis.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=4.32.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/tally/schemathesis-$VERSION"
# Per pass: at most this many seconds of generated requests, and cases per operation.
MAX_TIME=${TALLY_SCHEMATHESIS_MAX_TIME:-45}
MAX_EXAMPLES=${TALLY_SCHEMATHESIS_MAX_EXAMPLES:-15}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OUT="$ROOT/.tmp/schemathesis"
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "== schemathesis $VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
if [ -z "${TALLY_BIN:-}" ]; then
  echo "== building tally (debug)" >&2
  cargo build --quiet
  TALLY_BIN="$TARGET_DIR/debug/tally"
fi

NODE_PID=
stop_node() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=
  fi
}
trap stop_node EXIT

# Start a node on a free loopback port (simulated LLM); sets BASE.
start_node() {
  local db_url=$1 log=$2 mode=$3
  : >"$log.out"
  TALLY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64) TALLY_SIM_TOKEN_DELAY_MS=1 TALLY_ADMIN_TOKEN="$ADMIN_TOKEN" \
    "$TALLY_BIN" serve --auth "$mode" --bind 127.0.0.1:0 --database-url "$db_url" >"$log.out" 2>"$log" &
  NODE_PID=$!
  BASE=
  for _ in $(seq 1 300); do
    BASE=$(sed -n 's/^tally listening on \(http:[^ ]*\).*/\1/p' "$log.out" | head -1)
    [ -n "$BASE" ] && return 0
    kill -0 "$NODE_PID" 2>/dev/null || { echo "tally serve exited; log: $log" >&2; tail -20 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "tally serve did not start in 30s; log: $log" >&2
  return 1
}

run_pass() {
  local name=$1 db_url=$2 mode=$3
  local log="$OUT/$name.log"
  echo "== schemathesis: $name, $mode mode ($MAX_TIME s at most)" >&2
  start_node "$db_url" "$log" "$mode"
  local auth=()
  if [ "$mode" = token ]; then
    # Token mode: the whole API as the admin (the refusals of other callers are tests/access.rs's).
    auth=(-H "Authorization: Bearer ${TALLY_SCHEMATHESIS_TOKEN:-$ADMIN_TOKEN}")
  elif [ -n "${TALLY_SCHEMATHESIS_TOKEN:-}" ]; then
    auth=(-H "Authorization: Bearer $TALLY_SCHEMATHESIS_TOKEN")
  fi
  # Excluded: the dashboard's SSE stream never ends (a feed), and the SPA's catch-all answers
  # whatever its tail names (an asset, index.html, or another route such as /openapi.json).
  # Both have their own tests (web/tests/dashboard.rs, web/tests/openapi.rs).
  local rc=0
  # From $OUT: Schemathesis keeps its example database in ./.schemathesis.
  # shellcheck disable=SC2086
  (cd "$OUT" && "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path /api/dashboard/stream --exclude-path '/{tail}' \
    --phases examples,coverage,fuzzing \
    --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --request-timeout 20 --workers 2 \
    --seed "${TALLY_SCHEMATHESIS_SEED:-20261204}" --no-color \
    --report junit --report-junit-path "$OUT/$name.junit.xml" --suppress-health-check all \
    "${auth[@]}" ${TALLY_SCHEMATHESIS_ARGS:-}) || rc=$?
  stop_node
  if grep -q -E 'panicked|Request failed with an internal error' "$log"; then
    echo "schemathesis ($name): the node logged a panic or an internal error; see $log" >&2
    grep -E 'panicked|internal error' "$log" | head -5 >&2
    rc=1
  fi
  return $rc
}

status=0
ADMIN_TOKEN="schemathesis-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
# Both modes on both backends: open on SQLite and token on PostgreSQL, then the other way round.
for pass in ${TALLY_SCHEMATHESIS_PASSES:-sqlite:open postgres:token sqlite:token postgres:open}; do
  backend=${pass%%:*}
  mode=${pass#*:}
  case " ${TALLY_SCHEMATHESIS_BACKENDS:-sqlite postgres} " in *" $backend "*) ;; *) continue ;; esac
  case "$backend" in
    sqlite)
      rm -f "$OUT/sqlite.db"*
      run_pass "sqlite-$mode" "sqlite://$OUT/sqlite.db" "$mode" || status=1
      ;;
    postgres)
      admin=${TALLY_TEST_POSTGRES_URL:?TALLY_TEST_POSTGRES_URL is not set: scripts/services.sh start && eval "\$(scripts/services.sh env)"}
      db="tally_schemathesis_$$_$(date +%s)"
      psql "$admin" -q -c "CREATE DATABASE \"$db\"" >/dev/null
      run_pass "postgres-$mode" "${admin%/*}/$db" "$mode" || status=1
      psql "$admin" -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
      ;;
    *) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
  esac
done
exit $status
