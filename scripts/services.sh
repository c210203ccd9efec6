#!/usr/bin/env bash
# Installs (from Debian) and starts the services the test suite needs, on loopback only.
# Usage: scripts/services.sh start|stop|env   (state lives in .tmp/services)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE="$ROOT/.tmp/services"
PG_PORT=${TALLY_TEST_PG_PORT:-55432}
REDIS_PORT=${TALLY_TEST_REDIS_PORT:-56379}
mkdir -p "$STATE"

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_pkgs() {
  local missing=()
  [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # The alert tests' SMTP sink (tests/smtp/sink.py) runs on Debian's python3.
  /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "services: installing ${missing[*]} from Debian" >&2
    need_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${missing[@]}" >&2
  fi
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  echo "${d:-/usr/lib/postgresql/15/bin}"
}

# PostgreSQL refuses to run as root: run it as the 'postgres' system user when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$STATE" postgres
    chown -R postgres "$STATE/pg" 2>/dev/null || true
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

start_pg() {
  local bin; bin=$(pg_bin)
  mkdir -p "$STATE/pg"
  if [ "$(id -u)" -eq 0 ]; then id postgres >/dev/null 2>&1 || useradd --system --home "$STATE" postgres; chown -R postgres "$STATE/pg"; chmod 755 "$ROOT/.tmp" "$STATE"; fi
  if [ ! -f "$STATE/pg/data/PG_VERSION" ]; then
    as_pg "$bin/initdb -D '$STATE/pg/data' -U tally --auth=trust -E UTF8 >/dev/null"
  fi
  if ! as_pg "$bin/pg_ctl -D '$STATE/pg/data' status" >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl -D '$STATE/pg/data' -l '$STATE/pg/log' -w -o \"-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$STATE/pg' -c fsync=off -c max_connections=200\" start" >/dev/null
  fi
  echo "services: postgres on 127.0.0.1:$PG_PORT" >&2
}

stop_pg() {
  local bin; bin=$(pg_bin)
  [ -f "$STATE/pg/data/PG_VERSION" ] && as_pg "$bin/pg_ctl -D '$STATE/pg/data' -m fast stop" >/dev/null 2>&1 || true
}

start_redis() {
  mkdir -p "$STATE/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --save "" --appendonly no \
      --daemonize yes --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/log"
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  echo "services: redis on 127.0.0.1:$REDIS_PORT" >&2
}

stop_redis() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) install_pkgs; start_pg; start_redis ;;
  stop) stop_pg; stop_redis ;;
  env)
    echo "export TALLY_TEST_POSTGRES_URL=postgres://tally@127.0.0.1:$PG_PORT/postgres"
    echo "export TALLY_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "export TALLY_TEST_REDIS_PORT=$REDIS_PORT"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
