#!/usr/bin/env bash
# Installs (cargo, into ~/.cache/tally) and runs the tansu Kafka-protocol broker with its
# SQLite storage engine, on loopback only. State lives in .tmp/tansu (the broker's
# database survives restarts, so committed offsets do too).
# Usage: scripts/tansu.sh start|stop|restart|status|env
#   env prints: export TALLY_TEST_KAFKA_BROKERS=127.0.0.1:PORT  and  TALLY_TEST_TANSU_BIN
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE="$ROOT/.tmp/tansu"
PORT=${TALLY_TEST_KAFKA_PORT:-59092}
TANSU_VERSION=0.6.0
PREFIX="${TALLY_TANSU_ROOT:-$HOME/.cache/tally/tansu-$TANSU_VERSION}"
BIN="$PREFIX/bin/tansu"
mkdir -p "$STATE"

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  # librdkafka (bundled by the rdkafka crate) builds with gcc, make, perl, pkg-config.
  local missing=()
  for tool in gcc g++ make perl pkg-config; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    local pkgs=(build-essential perl pkg-config)
    echo "tansu: installing ${pkgs[*]} from Debian" >&2
    need_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${pkgs[@]}" >&2
  fi
  if [ ! -x "$BIN" ]; then
    echo "tansu: building tansu $TANSU_VERSION into $PREFIX (takes 10+ minutes once)" >&2
    mkdir -p "$PREFIX"
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$PREFIX" >&2
  fi
}

running() { [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  install
  if running; then echo "tansu: already running on 127.0.0.1:$PORT" >&2; return; fi
  if port_open; then echo "tansu: port $PORT is taken by another process" >&2; exit 1; fi
  # tansu resolves sqlite:// paths against its working directory.
  (cd "$STATE" && exec nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine "sqlite://tansu.db" \
    --silent >"$STATE/log" 2>&1) &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 100); do port_open && break; sleep 0.1; done
  if ! port_open; then echo "tansu: did not start; see $STATE/log" >&2; exit 1; fi
  # tansu's SQLite engine has no index for its header lookups (see scripts/tansu_index.py).
  python3 "$ROOT/scripts/tansu_index.py" "$STATE/tansu.db"
  echo "tansu: broker on 127.0.0.1:$PORT (sqlite://$STATE/tansu.db)" >&2
}

stop() {
  if running; then
    local pid; pid=$(cat "$STATE/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "running on 127.0.0.1:$PORT"; else echo "stopped"; exit 1; fi ;;
  install) install ;;
  env)
    echo "export TALLY_TEST_KAFKA_BROKERS=127.0.0.1:$PORT"
    echo "export TALLY_TEST_TANSU_BIN=$BIN"
    ;;
  *) echo "usage: $0 start|stop|restart|status|install|env" >&2; exit 2 ;;
esac
