#!/usr/bin/env bash
# The gateway's SDK-compatibility tests (tests/gateway, pytest): the stock `openai` and `anthropic`
# Python SDKs against a real `tally serve` (simulator, or the fake provider of
# web/examples/fake_upstream.rs), budgets under concurrency, a killed node's holds, cut streams.
#   scripts/gateway-tests.sh [pytest args...]      e.g. -k budget -x
# Python packages (pinned in tests/gateway/requirements.txt) go into .tmp/gateway-venv, reused.
# TALLY_BIN: a tally binary to test instead of building this tree's debug build.
# FAKE_UPSTREAM_BIN: a fake_upstream binary instead of building the example.
# Cluster tests use TALLY_TEST_REDIS_URL and TALLY_TEST_POSTGRES_URL when set (scripts/test.sh sets
# them from scripts/services.sh env; standalone: scripts/services.sh start && eval "$(scripts/services.sh env)")
# and are skipped, saying why, when not.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.tmp/gateway-venv"
REQS="$ROOT/tests/gateway/requirements.txt"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

# The venv is rebuilt only when requirements.txt changed (its hash is stamped inside).
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "== python venv for the gateway tests ($VENV)" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$WANT" >"$STAMP"
fi

if [ -z "${TALLY_BIN:-}" ]; then
  echo "== building tally (debug)" >&2
  cargo build --quiet
  export TALLY_BIN="$TARGET_DIR/debug/tally"
fi
if [ -z "${FAKE_UPSTREAM_BIN:-}" ]; then
  echo "== building the fake upstream (web/examples/fake_upstream.rs)" >&2
  cargo build --quiet -p tally-web --example fake_upstream
  export FAKE_UPSTREAM_BIN="$TARGET_DIR/debug/examples/fake_upstream"
fi

echo "== gateway tests (pytest)" >&2
cd tests/gateway
exec "$VENV/bin/python" -m pytest "$@"
