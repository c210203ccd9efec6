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
# A throwaway key for provider connections (the Reconciliation step adds one).
TALLY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64) TALLY_SIM_TOKEN_DELAY_MS=2 "$BIN" serve --bind 127.0.0.1:0 --database-url "sqlite://$WORK/e2e.db" >"$WORK/out" 2>"$WORK/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/out" 2>/dev/null && break
  kill -0 $PID 2>/dev/null || { cat "$WORK/log" >&2; echo "tally exited early" >&2; exit 1; }
  sleep 0.1
done
URL=$(sed -n 's/^tally listening on //p' "$WORK/out" | head -1)
[ -n "$URL" ] || { cat "$WORK/log" >&2; echo "tally did not start" >&2; exit 1; }
echo "e2e: tally at $URL"
# A second node in token mode, for the sign-in steps (its own database and a throwaway admin token).
ADMIN_TOKEN="e2e-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
TALLY_ADMIN_TOKEN="$ADMIN_TOKEN" TALLY_SIM_TOKEN_DELAY_MS=2 "$BIN" serve --auth token --bind 127.0.0.1:0 --database-url "sqlite://$WORK/e2e-token.db" >"$WORK/out-token" 2>"$WORK/log-token" &
PID_TOKEN=$!
trap 'kill $PID $PID_TOKEN 2>/dev/null || true; wait $PID $PID_TOKEN 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/out-token" 2>/dev/null && break
  kill -0 $PID_TOKEN 2>/dev/null || { cat "$WORK/log-token" >&2; echo "tally (token mode) exited early" >&2; exit 1; }
  sleep 0.1
done
AUTH_URL=$(sed -n 's/^tally listening on //p' "$WORK/out-token" | head -1)
[ -n "$AUTH_URL" ] || { cat "$WORK/log-token" >&2; echo "tally (token mode) did not start" >&2; exit 1; }
echo "e2e: tally (token mode) at $AUTH_URL"
cd web/ui
[ -d node_modules ] || npm ci --no-audit --no-fund
TALLY_URL="$URL" TALLY_AUTH_URL="$AUTH_URL" TALLY_ADMIN_TOKEN="$ADMIN_TOKEN" SCREENSHOT_DIR="$SHOTS" npm run --silent e2e
# The admin token and users' keys never reach the node's log.
if grep -qF "$ADMIN_TOKEN" "$WORK/log-token" "$WORK/out-token"; then echo "e2e: the admin token appears in the token node's log" >&2; exit 1; fi
