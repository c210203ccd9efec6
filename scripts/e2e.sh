#!/usr/bin/env bash
# Browser end-to-end tests: starts a real `tally serve` (simulator, fresh SQLite, free port)
# and drives the UI in Debian's Chromium with playwright-core (web/ui/e2e/run.mjs).
# Screenshots go to target/e2e-screenshots.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${TALLY_BIN:-${CARGO_TARGET_DIR:-target}/debug/tally}
[ -x "$BIN" ] || cargo build --quiet
WORK=$(mktemp -d)
SHOTS="$ROOT/target/e2e-screenshots"
mkdir -p "$SHOTS"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# Wait for the node writing to $WORK/out-$1 (pid $2) to print its banner; its URL goes to stdout.
wait_node() {
  local name=$1 pid=$2
  for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/out-$name" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/log-$name" >&2; echo "tally ($name) exited early" >&2; exit 1; }
    sleep 0.1
  done
  local url
  url=$(sed -n 's/^tally listening on //p' "$WORK/out-$name" | head -1)
  [ -n "$url" ] || { cat "$WORK/log-$name" >&2; echo "tally ($name) did not start" >&2; exit 1; }
  echo "$url"
}
# A throwaway key for provider connections (the Reconciliation step adds one).
TALLY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64) TALLY_SIM_TOKEN_DELAY_MS=2 "$BIN" serve --bind 127.0.0.1:0 --database-url "sqlite://$WORK/e2e.db" >"$WORK/out-open" 2>"$WORK/log-open" &
PIDS+=($!)
URL=$(wait_node open "${PIDS[0]}")
echo "e2e: tally at $URL"
# A second node in token mode, for the sign-in steps (its own database and a throwaway admin token).
ADMIN_TOKEN="e2e-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
TALLY_ADMIN_TOKEN="$ADMIN_TOKEN" TALLY_SIM_TOKEN_DELAY_MS=2 "$BIN" serve --auth token --bind 127.0.0.1:0 --database-url "sqlite://$WORK/e2e-token.db" >"$WORK/out-token" 2>"$WORK/log-token" &
PIDS+=($!)
AUTH_URL=$(wait_node token "${PIDS[1]}")
echo "e2e: tally (token mode) at $AUTH_URL"
cd web/ui
[ -d node_modules ] || npm ci --no-audit --no-fund
TALLY_URL="$URL" TALLY_AUTH_URL="$AUTH_URL" TALLY_ADMIN_TOKEN="$ADMIN_TOKEN" SCREENSHOT_DIR="$SHOTS" npm run --silent e2e
# The admin token and users' keys never reach the node's log.
if grep -qF "$ADMIN_TOKEN" "$WORK/log-token" "$WORK/out-token"; then echo "e2e: the admin token appears in the token node's log" >&2; exit 1; fi
