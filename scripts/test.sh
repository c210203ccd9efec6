#!/usr/bin/env bash
# The whole test suite: installs and starts what the tests need (PostgreSQL and
# Chromium from Debian; PostgreSQL, Redis and the tansu Kafka broker on loopback), then clippy, every Rust test
# (unit, property, integration), the gateway's SDK tests, the UI's vitest tests and the browser e2e tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/services.sh start
eval "$(scripts/services.sh env)"
# The Kafka-protocol broker (tansu, SQLite engine); built once into ~/.cache/tally (10+ min).
scripts/tansu.sh start
eval "$(scripts/tansu.sh env)"
trap 'scripts/tansu.sh stop; scripts/services.sh stop' EXIT

echo "== clippy (unwrap/expect denied outside tests)"
cargo clippy --workspace --all-targets --quiet

echo "== rust tests"
cargo test --workspace --no-fail-fast -- --test-threads="${TALLY_TEST_THREADS:-4}"

echo "== fuzzing: every fuzz target for 15 s (built-in driver on the dev build; bench/fuzz.sh 600 for the coverage-guided record)"
bench/fuzz.sh 15 --engine std

echo "== gateway: the stock openai/anthropic SDKs against tally serve (pytest; budgets across nodes on Redis + PostgreSQL)"
scripts/gateway-tests.sh

echo "== API contract: schemathesis against a live node, SQLite then PostgreSQL (bounded, ~3 min)"
scripts/schemathesis.sh

echo "== ui unit tests (vitest)"
(cd web/ui && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test --silent)

echo "== browser end-to-end tests (chromium)"
cargo build --quiet
scripts/e2e.sh

echo "== chaos soak, short: 20,000 events through 2 nodes + 2 collectors while each fault strikes once (bench/chaos.sh)"
bench/chaos.sh --short 20000

echo "== docker-compose file matches the binary's commands and flags"
scripts/check-compose.sh --strict
