#!/usr/bin/env bash
# The whole test suite: installs and starts what the tests need (PostgreSQL from
# Debian, on loopback), then runs lint checks and every test in the workspace.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/services.sh start
eval "$(scripts/services.sh env)"
trap 'scripts/services.sh stop' EXIT

echo "== clippy (unwrap/expect denied outside tests)"
cargo clippy --workspace --all-targets --quiet

echo "== tests"
cargo test --workspace --no-fail-fast -- --test-threads="${TALLY_TEST_THREADS:-4}"
