#!/usr/bin/env python3
"""Chaos soak driver (bench/chaos.sh runs it): a private cluster, steady traffic, faults, exact checks.

It starts its own PostgreSQL (initdb/pg_ctl), redis-server and tansu broker on free loopback
ports under a temp dir, two `tally serve` billing nodes and two `tally collector`s, installs a
price catalogue of its own, and then, while it ingests N events at a steady rate (with chat turns
and gateway calls alongside), kills and restarts processes on a schedule. Every batch is retried
with the same idempotency keys until a collector answers, so a duplicate would show as double
billing. At the end it checks the database against its own ledger (exact decimals, computed from
the catalogue it wrote) and exits non-zero on any failure.

Only the standard library: http.client, json, decimal, subprocess (psql for the database).
"""

import argparse
import collections
import copy
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal, getcontext

getcontext().prec = 60

OCCURRED_AT = "2026-11-30T12:00:00Z"
MODELS = ["claude-3-5-haiku-20241022", "claude-3-haiku-20240307"]
GATEWAY_MODEL = "claude-3-5-haiku-20241022"
# The price table this run installs (USD per million tokens): odd digits, so a price taken
# from anywhere else (the built-in catalogue) shows up as a wrong total.
PRICES = {
    "claude-3-5-haiku-20241022": {
        "input_tokens": "0.8137", "output_tokens": "4.0291", "cache_read_tokens": "0.08173",
        "cache_write_5m_tokens": "1.01939", "cache_write_1h_tokens": "1.61117",
    },
    "claude-3-haiku-20240307": {
        "input_tokens": "0.25031", "output_tokens": "1.25077", "cache_read_tokens": "0.03011",
        "cache_write_5m_tokens": "0.30013", "cache_write_1h_tokens": "0.50021",
    },
}
PRICE_FROM = "2024-01-01T00:00:00Z"
MILLION = Decimal(1_000_000)
SMALL_BUDGET = Decimal("0.02")
BIG_BUDGET = Decimal("500")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise SystemExit(f"chaos: {what} did not open port {port}")


# ---------------------------------------------------------------- the events


def price(model, kind):
    return Decimal(PRICES[model][kind])


def event_kind(i):
    """good | negative (rejected by the collector) | badqty (rejected) | noprice (dead-lettered by billing)."""
    r = i % 97
    if r == 13:
        return "negative"
    if r == 71:
        return "badqty"
    if r == 41:
        return "noprice"
    return "good"


def event_user(i, users):
    return f"u{(i * 7919) % users:04d}"


def event_quantities(i):
    return {
        "input_tokens": 100 + (i % 37) * 13,
        "output_tokens": 10 + (i % 13) * 7,
        "cache_read_tokens": 1 + (i % 5) * 101,
    }


def make_event(i, users):
    kind = event_kind(i)
    model = MODELS[i % 2] if kind != "noprice" else "no-such-model"
    q = {k: str(v) for k, v in event_quantities(i).items()}
    if kind == "negative":
        q["input_tokens"] = "-5"
    elif kind == "badqty":
        q["output_tokens"] = "12x"
    return {
        "user_id": event_user(i, users), "model": model, "event_type": "token_usage",
        "idempotency_key": f"e{i}", "quantities": q, "occurred_at": OCCURRED_AT,
    }


def event_cost(i):
    model = MODELS[i % 2]
    return sum((Decimal(v) * price(model, k) / MILLION for k, v in event_quantities(i).items()), Decimal(0))


EXPECTED_REJECT = {"negative": "negative_quantity", "badqty": "invalid_quantity"}

# ---------------------------------------------------------------- HTTP


def http_call(base_port, method, path, body=None, headers=None, timeout=30):
    """(status, headers dict, body bytes); raises OSError/http.client errors on transport failure."""
    conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=timeout)
    try:
        h = {"content-type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- processes


class Cluster:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.tally = args.tally
        self.pg_port, self.redis_port, self.kafka_port = free_port(), free_port(), free_port()
        self.node_ports = {"node-a": free_port(), "node-b": free_port()}
        self.collector_ports = {"collector-1": free_port(), "collector-2": free_port()}
        self.procs = {}
        self.pg_bin = args.pg_bin
        self.db = f"postgres://tally@127.0.0.1:{self.pg_port}/chaos"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.brokers = f"127.0.0.1:{self.kafka_port}"
        self.prefix = "chaos."
        self.catalog = os.path.join(work, "catalog.json")
        self.env = dict(os.environ, TALLY_SIM_TOKEN_DELAY_MS="1", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        for k in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TALLY_KAFKA_BROKERS", "TALLY_DATABASE_URL", "TALLY_REDIS_URL"):
            self.env.pop(k, None)

    # PostgreSQL refuses to run as root: run its tools as 'postgres' then.
    def as_pg(self, cmd):
        if os.geteuid() == 0:
            return subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", cmd], capture_output=True, text=True)
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)

    def pg_start(self):
        data = os.path.join(self.work, "pg", "data")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {self.work}/pg -c fsync=off -c max_connections=200"
        r = self.as_pg(f"{self.pg_bin}/pg_ctl -D '{data}' -l '{self.work}/pg/log' -w -o \"{opts}\" start")
        if r.returncode != 0:
            raise SystemExit(f"chaos: pg_ctl start failed: {r.stderr}{r.stdout}")

    def pg_init(self):
        pg = os.path.join(self.work, "pg")
        os.makedirs(pg)
        if os.geteuid() == 0:
            if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--home", pg, "postgres"], check=True)
            shutil.chown(pg, "postgres")
        r = self.as_pg(f"{self.pg_bin}/initdb -D '{pg}/data' -U tally --auth=trust -E UTF8")
        if r.returncode != 0:
            raise SystemExit(f"chaos: initdb failed: {r.stderr}")
        self.pg_start()
        self.psql("CREATE DATABASE chaos", db="postgres")

    def pg_restart(self):
        data = os.path.join(self.work, "pg", "data")
        # Immediate: a crash as far as PostgreSQL knows (WAL recovery on start).
        self.as_pg(f"{self.pg_bin}/pg_ctl -D '{data}' -m immediate stop")
        self.pg_start()

    def pg_stop(self):
        data = os.path.join(self.work, "pg", "data")
        self.as_pg(f"{self.pg_bin}/pg_ctl -D '{data}' -m fast stop")

    def psql(self, sql, db="chaos", timeout=600):
        url = f"postgres://tally@127.0.0.1:{self.pg_port}/{db}"
        r = subprocess.run(["psql", url, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def spawn(self, name, argv, cwd=None):
        logf = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=cwd, env=self.env,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def kill9(self, name):
        p = self.procs.pop(name, None)
        if p is not None:
            p.kill()
            p.wait()

    def redis_start(self):
        os.makedirs(os.path.join(self.work, "redis"), exist_ok=True)
        # The same memory bound and policy as docker-compose.yml (see docs/durability.md).
        self.spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                             "--appendonly", "no", "--dir", os.path.join(self.work, "redis"),
                             "--maxmemory", "256mb", "--maxmemory-policy", "noeviction"])
        wait_port(self.redis_port, "redis")

    def broker_start(self):
        d = os.path.join(self.work, "tansu")
        os.makedirs(d, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        self.spawn("tansu", [self.args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "sqlite://tansu.db"], cwd=d)
        wait_port(self.kafka_port, "tansu")
        # tansu's SQLite engine has no index for its header lookups (see scripts/tansu_index.py).
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "tansu_index.py"), os.path.join(d, "tansu.db")],
                       check=True)

    def kafka_args(self, node_id):
        return ["--kafka-brokers", self.brokers, "--node-id", node_id, "--kafka-topic-prefix", self.prefix,
                "--kafka-partitions", "4", "--kafka-session-timeout-ms", "6000", "--kafka-message-timeout-ms", "2000"]

    def node_start(self, name):
        port = self.node_ports[name]
        self.spawn(name, [self.tally, "serve", "--bind", f"127.0.0.1:{port}", "--database-url", self.db,
                          "--redis-url", self.redis_url, "--catalog", self.catalog] + self.kafka_args(name))
        wait_port(port, name, timeout=120)

    def collector_start(self, name):
        port = self.collector_ports[name]
        self.spawn(name, [self.tally, "collector", "--bind", f"127.0.0.1:{port}",
                          "--ingest-delivery-timeout-ms", "5000"] + self.kafka_args(name))
        wait_port(port, name)

    def write_catalog(self):
        with open(self.args.base_catalog) as f:
            cat = json.load(f)
        for m in cat["models"]:
            if m["name"] in PRICES:
                m["prices"] = [{"kind": k, "price": v, "effective_from": PRICE_FROM} for k, v in PRICES[m["name"]].items()]
        with open(self.catalog, "w") as f:
            json.dump(cat, f, indent=1)

    def start(self):
        self.write_catalog()
        log(f"postgres :{self.pg_port}, redis :{self.redis_port}, tansu :{self.kafka_port} under {self.work}")
        self.pg_init()
        self.redis_start()
        self.broker_start()
        r = subprocess.run([self.tally, "migrate", "--database-url", self.db, "--catalog", self.catalog],
                           capture_output=True, text=True, env=self.env)
        if r.returncode != 0:
            raise SystemExit(f"chaos: tally migrate failed: {r.stderr}")
        for n in self.node_ports:
            self.node_start(n)
        for c in self.collector_ports:
            self.collector_start(c)

    def stop_all(self):
        for name in list(self.procs):
            p = self.procs.pop(name)
            try:
                p.terminate()
                p.wait(timeout=5)
            except Exception:
                p.kill()
        self.pg_stop()


# ---------------------------------------------------------------- the driver


class Ledger:
    """What the driver was told, and what it therefore expects in the database."""

    def __init__(self, n):
        self.lock = threading.Lock()
        self.status = bytearray(n)  # 0 unsent/unanswered, 1 accepted good, 2 rejected as expected, 3 accepted no-price
        self.user_total = collections.defaultdict(Decimal)
        self.user_count = collections.Counter()
        self.accepted = 0  # events with an accepted answer (good + no-price), for throughput
        self.errors = []
        self.batches_retried = 0
        self.sends = 0

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(msg)


class Timeline:
    """Per-second samples of accepted (driver) and billed (database) counts, and fault marks."""

    def __init__(self):
        self.samples = []  # (t, accepted, billed or None)
        self.faults = []  # dicts: name, inject, restored


def ingest_worker(cl, args, ledger, next_batch, t0, stop):
    ports = list(cl.collector_ports.values())
    while not stop.is_set():
        with next_batch["lock"]:
            b = next_batch["i"]
            next_batch["i"] += 1
        first = b * args.batch
        if first >= args.events:
            return
        last = min(args.events, first + args.batch)
        due = t0 + first / args.rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        events = [make_event(i, args.users) for i in range(first, last)]
        body = json.dumps(events).encode()
        attempt = b
        deadline = time.time() + 600
        answer = None
        while answer is None:
            port = ports[attempt % len(ports)]
            attempt += 1
            try:
                ledger.sends += 1
                status, _, data = http_call(port, "POST", "/v1/events", body, timeout=30)
                if status == 200:
                    answer = json.loads(data)
                    break
                if status != 503:
                    ledger.error(f"batch {b}: collector answered {status}: {data[:300]!r}")
            except (OSError, http.client.HTTPException):
                pass
            if time.time() > deadline:
                ledger.error(f"batch {b}: never acknowledged")
                return
            ledger.batches_retried += 1
            time.sleep(0.3)
        results = answer.get("results", [])
        if len(results) != len(events):
            ledger.error(f"batch {b}: {len(results)} results for {len(events)} events")
            continue
        with ledger.lock:
            for i, r in zip(range(first, last), results):
                kind, st = event_kind(i), r.get("status")
                if kind == "good":
                    if st not in ("accepted", "duplicate"):
                        ledger.errors.append(f"e{i}: good event answered {r}")
                    elif ledger.status[i] == 0:
                        ledger.status[i] = 1
                        u = event_user(i, args.users)
                        ledger.user_total[u] += event_cost(i)
                        ledger.user_count[u] += 1
                        ledger.accepted += 1
                elif kind == "noprice":
                    if st not in ("accepted", "duplicate"):
                        ledger.errors.append(f"e{i}: unpriceable event answered {r} (the collector does not price)")
                    elif ledger.status[i] == 0:
                        ledger.status[i] = 3
                        ledger.accepted += 1
                else:
                    if st != "rejected" or r.get("code") != EXPECTED_REJECT[kind]:
                        ledger.errors.append(f"e{i}: malformed ({kind}) answered {r}")
                    else:
                        ledger.status[i] = 2


class SideTraffic:
    """Chat turns and gateway calls alongside ingest, each outcome logged with its time."""

    def __init__(self, cl, stop):
        self.cl, self.stop = cl, stop
        self.chat_ok = {}  # assistant message id -> (user, expected cost)
        self.chat_failed = collections.Counter()  # user -> turns without a 200 (may or may not be billed)
        self.gw_ok = {}  # event id -> (key name, user, expected cost)
        self.gw_unknown = collections.Counter()  # key name -> calls without an answer (may be billed)
        self.gw_log = []  # (sent, done, key name, status, code)
        self.keys = {}  # name -> (key id, secret, user)
        self.threads = {}  # user -> thread id
        self.errors = []
        self.lock = threading.Lock()

    def nodes(self):
        return list(self.cl.node_ports.values())

    def setup(self):
        port = self.nodes()[0]
        for user in ("chat-a", "chat-b", "gw-small", "gw-big", "gw-free"):
            st, _, data = http_call(port, "POST", "/api/users/", {"user_id": user})
            assert st in (200, 201), f"create user {user}: {st} {data[:200]!r}"
        for user in ("chat-a", "chat-b"):
            st, _, data = http_call(port, "POST", "/api/threads/", {"user_id": user, "title": "chaos"})
            assert st == 201, f"thread for {user}: {st} {data[:200]!r}"
            self.threads[user] = json.loads(data)["thread_id"]
        for name, budget in (("gw-small", SMALL_BUDGET), ("gw-big", BIG_BUDGET), ("gw-free", None)):
            body = {"user_id": name, "name": name, "allowed_models": None, "rpm_limit": 100000}
            if budget is not None:
                body["budgets"] = [{"max_budget": str(budget), "period": "monthly"}]
            st, _, data = http_call(port, "POST", "/api/keys", body)
            assert st in (200, 201), f"create key {name}: {st} {data[:300]!r}"
            k = json.loads(data)
            self.keys[name] = (k.get("key_id") or k["id"], k["key"], name)

    def chat_loop(self, interval):
        i = 0
        while not self.stop.is_set():
            user = ("chat-a", "chat-b")[i % 2]
            port = self.nodes()[(i // 2) % 2]
            i += 1
            try:
                st, _, data = http_call(port, "POST", "/api/messages/",
                                        {"thread_id": self.threads[user], "user_id": user, "content": f"turn {i}"}, timeout=60)
                if st == 200:
                    turn = json.loads(data)
                    a = turn["assistant_message"]
                    usage = a["usage"]
                    model = a.get("model") or GATEWAY_MODEL
                    cost = sum((Decimal(str(v)) * price(model, k) / MILLION for k, v in usage.items() if k in PRICES[model]), Decimal(0))
                    if cost != Decimal(a["cost_total"]):
                        self.errors.append(f"chat turn cost {a['cost_total']} != {cost} from usage {usage}")
                    with self.lock:
                        self.chat_ok[a["message_id"]] = (user, cost)
                else:
                    with self.lock:
                        self.chat_failed[user] += 1
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                with self.lock:
                    self.chat_failed[user] += 1
            self.stop.wait(interval)

    def gateway_loop(self, interval):
        i = 0
        names = ("gw-small", "gw-big", "gw-free")
        while not self.stop.is_set():
            name = names[i % 3]
            port = self.nodes()[(i // 3) % 2]
            i += 1
            key_id, secret, user = self.keys[name]
            body = {"model": GATEWAY_MODEL, "max_tokens": 48, "messages": [{"role": "user", "content": f"call {i}"}]}
            sent = time.time()
            status, code = None, None
            try:
                st, h, data = http_call(port, "POST", "/v1/messages", body,
                                        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}, timeout=60)
                status = st
                if st == 200:
                    m = json.loads(data)
                    u = m["usage"]
                    for k in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                        if u.get(k):
                            self.errors.append(f"gateway usage has {k}={u[k]}; the driver prices only input/output")
                    cost = (Decimal(u["input_tokens"]) * price(GATEWAY_MODEL, "input_tokens")
                            + Decimal(u["output_tokens"]) * price(GATEWAY_MODEL, "output_tokens")) / MILLION
                    with self.lock:
                        self.gw_ok[h["x-tally-request-id"]] = (name, user, cost)
                else:
                    try:
                        err = json.loads(data).get("error", {})
                        code = err.get("type") or err.get("code")
                    except ValueError:
                        code = None
                    if st >= 500 and code != "budget_unavailable":
                        with self.lock:
                            self.gw_unknown[name] += 1
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                with self.lock:
                    self.gw_unknown[name] += 1
            with self.lock:
                self.gw_log.append((sent, time.time(), name, status, code))
            self.stop.wait(interval)


def sampler(cl, ledger, timeline, stop):
    while not stop.is_set():
        t = time.time()
        try:
            billed = int(cl.psql("SELECT count(*) FROM api_events", timeout=3)[0][0])
        except Exception:
            billed = None
        timeline.samples.append((t, ledger.accepted, billed))
        stop.wait(max(0.0, 1.0 - (time.time() - t)))


def run_faults(cl, args, ledger, timeline, stop, short):
    """SIGKILL node twice, broker restart, Redis stopped, collector SIGKILL, PostgreSQL restart: spaced through the run."""
    redis_down = args.redis_pause
    schedule = [
        (0.10, "SIGKILL node-a (restart after 5 s)", lambda: (cl.kill9("node-a"), time.sleep(5), cl.node_start("node-a"))),
        (0.25, "broker SIGKILL + restart after 3 s", lambda: (cl.kill9("tansu"), time.sleep(3), cl.broker_start())),
        (0.40, f"Redis stopped for {redis_down:g} s", lambda: (cl.kill9("redis"), mark_redis(timeline, "down"), time.sleep(redis_down),
                                                          # "up" is when the restart begins: a call answered after it may
                                                          # have reached the new Redis (within wait_port's polling gap).
                                                          mark_redis(timeline, "up"), cl.redis_start())),
        (0.55, "SIGKILL collector-1 (restart after 3 s)", lambda: (cl.kill9("collector-1"), time.sleep(3), cl.collector_start("collector-1"))),
        (0.70, "PostgreSQL restart (immediate stop, start)", lambda: cl.pg_restart()),
        (0.85, "SIGKILL node-b (restart after 5 s)", lambda: (cl.kill9("node-b"), time.sleep(5), cl.node_start("node-b"))),
    ]
    for frac, name, act in schedule:
        while not stop.is_set() and ledger.accepted < frac * args.events * 0.97:
            time.sleep(0.2)
        if stop.is_set():
            return
        log(f"fault: {name}")
        f = {"name": name, "inject": time.time()}
        act()
        f["restored"] = time.time()
        timeline.faults.append(f)
        log(f"fault over: {name} ({f['restored'] - f['inject']:.1f} s)")


def mark_redis(timeline, state):
    timeline.__dict__.setdefault("redis", {})[state] = time.time()


# ---------------------------------------------------------------- checks


class Checks:
    def __init__(self):
        self.failed = []

    def check(self, ok, what):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.failed.append(what)


def recovery_report(args, timeline):
    """Per fault: seconds from injection until a 1 s window has accepted and billed >= half the target rate again."""
    s = timeline.samples
    rows = []
    for f in timeline.faults:
        rec = None
        for (t1, a1, b1), (t2, a2, b2) in zip(s, s[1:]):
            if t1 < f["restored"] or b1 is None or b2 is None:
                continue
            dt = t2 - t1
            if (a2 - a1) / dt >= 0.5 * args.rate and (b2 - b1) / dt >= 0.5 * args.rate:
                rec = t1 - f["inject"]
                break
        rows.append((f["name"], f["restored"] - f["inject"], rec))
    return rows


def throughput_windows(timeline, t0, width=10):
    out = []
    s = [x for x in timeline.samples if x[2] is not None]
    if not s:
        return out
    start = t0
    while start < s[-1][0]:
        inside = [x for x in s if start <= x[0] < start + width]
        if len(inside) >= 2:
            (ta, aa, ba), (tb, ab, bb) = inside[0], inside[-1]
            out.append((start - t0, (ab - aa) / (tb - ta), (bb - ba) / (tb - ta)))
        start += width
    return out


def final_checks(cl, args, ledger, side, timeline, t0):
    c = Checks()
    n = args.events
    # Wait until billing has taken every accepted event (or stalls).
    want = sum(1 for x in ledger.status if x == 1) + len(side.chat_ok) + len(side.gw_ok)
    deadline, last, last_change = time.time() + args.drain_timeout, -1, time.time()
    while time.time() < deadline:
        try:
            billed = int(cl.psql("SELECT count(*) FROM api_events")[0][0])
        except RuntimeError:
            billed = -1
        if billed != last:
            last, last_change = billed, time.time()
        if billed >= want or time.time() - last_change > 120:
            break
        time.sleep(1)
    drained_at = time.time()
    log(f"billing drained {drained_at - t0:.0f} s after the start ({last} events in the database)")

    print("== checks (database against the driver's ledger)")
    rows = cl.psql("SELECT idempotency_key, user_id, cost_total FROM api_events WHERE source = 'ingest'")
    seen = bytearray(n)
    wrong_cost, unexpected = 0, []
    db_user_total = collections.defaultdict(Decimal)
    for key, user, cost in rows:
        m = re.fullmatch(r"e(\d+)", key or "")
        if not m or int(m.group(1)) >= n:
            unexpected.append(key)
            continue
        i = int(m.group(1))
        seen[i] = min(255, seen[i] + 1)
        if ledger.status[i] != 1:
            unexpected.append(f"{key} ({event_kind(i)}, ledger status {ledger.status[i]})")
            continue
        if Decimal(cost) != event_cost(i) or user != event_user(i, args.users):
            wrong_cost += 1
        db_user_total[user] += Decimal(cost)
    accepted = sum(1 for x in ledger.status if x in (1, 3))
    good = sum(1 for x in ledger.status if x == 1)
    billed = sum(1 for i in range(n) if ledger.status[i] == 1 and seen[i] >= 1)
    lost = sum(1 for i in range(n) if ledger.status[i] == 1 and seen[i] == 0)
    duplicated = sum(seen[i] - 1 for i in range(n) if seen[i] > 1)
    unanswered = sum(1 for x in ledger.status if x == 0)
    rejected = sum(1 for x in ledger.status if x == 2)
    print(f"  events sent {n}: accepted {accepted} (billable {good}, unpriceable {accepted - good}), "
          f"rejected {rejected}, unanswered {unanswered}")
    print(f"  billed {billed}, lost {lost}, duplicated {duplicated}")
    c.check(unanswered == 0, f"every batch was answered ({unanswered} events without an answer)")
    c.check(not ledger.errors, f"every answer as expected ({len(ledger.errors)} wrong: {ledger.errors[:3]})")
    c.check(lost == 0, f"lost: {lost} (must be 0)")
    c.check(duplicated == 0, f"duplicated: {duplicated} (must be 0)")
    c.check(not unexpected, f"nothing billed that was not accepted as billable ({len(unexpected)}: {unexpected[:3]})")
    c.check(wrong_cost == 0, f"every event's cost equals the driver's exact cost ({wrong_cost} differ)")
    # Per-user totals, from the events and independently from the invoice lines.
    lines = {u: Decimal(s) for u, s in cl.psql(
        "SELECT e.user_id, sum(l.amount) FROM user_invoice_line_item l JOIN api_events e ON e.event_seq = l.event_seq "
        "WHERE e.source = 'ingest' GROUP BY e.user_id")}
    bad_users = [u for u in set(ledger.user_total) | set(db_user_total)
                 if ledger.user_total.get(u, Decimal(0)) != db_user_total.get(u, Decimal(0))
                 or ledger.user_total.get(u, Decimal(0)) != lines.get(u, Decimal(0))]
    truth = sum(ledger.user_total.values(), Decimal(0))
    print(f"  ingest ground truth: {len(ledger.user_total)} users, {truth} USD")
    c.check(not bad_users, f"per-user decimal totals (events and invoice lines) equal the ground truth ({len(bad_users)} differ: {bad_users[:3]})")
    nlines = int(cl.psql("SELECT count(*) FROM user_invoice_line_item l JOIN api_events e ON e.event_seq = l.event_seq WHERE e.source = 'ingest'")[0][0])
    c.check(nlines == 3 * good, f"invoice lines: {nlines}, 3 per billed event = {3 * good}")

    # Dead letters: every rejected or unpriceable event, with its reason, and nothing else of ours billed.
    r = subprocess.run([cl.tally, "dlq", "list", "--topic", "inference-events", "--limit", str(10 * n + 1000),
                        "--kafka-brokers", cl.brokers, "--kafka-topic-prefix", cl.prefix],
                       capture_output=True, text=True, env=cl.env, timeout=600)
    c.check(r.returncode == 0, "tally dlq list")
    letters = collections.defaultdict(set)
    reasons = collections.Counter()
    for line in r.stdout.splitlines():
        try:
            l = json.loads(line)
        except ValueError:
            continue
        if not l.get("reason"):
            continue
        for m in re.finditer(r'"idempotency_key"\s*:\s*"e(\d+)"', l.get("payload", "")):
            letters[int(m.group(1))].add(l["code"])
    for i, codes in letters.items():
        for code in codes:
            reasons[code] += 1
    want_code = {"negative": "negative_quantity", "badqty": "invalid_quantity", "noprice": "no_price"}
    missing = [i for i in range(n) if ledger.status[i] in (2, 3) and want_code[event_kind(i)] not in letters.get(i, ())]
    stray = [i for i in letters if ledger.status[i] == 1]
    print(f"  dead letters: {len(letters)} events, by reason: {dict(reasons)}")
    c.check(not missing, f"every rejected/unpriceable event is in the DLQ with its reason ({len(missing)} missing: {missing[:5]})")
    c.check(not stray, f"no billed event is in the DLQ ({len(stray)}: {stray[:5]})")

    # Chat turns and gateway calls: each answered one billed exactly once at the exact cost.
    side_rows = cl.psql("SELECT e.event_id, e.message_id, e.user_id, e.cost_total, e.source FROM api_events e WHERE e.source IN ('chat', 'gateway')")
    by_msg = collections.Counter(r[1] for r in side_rows if r[4] == "chat")
    by_evt = {r[0]: r for r in side_rows if r[4] == "gateway"}
    chat_cost = {r[1]: Decimal(r[3]) for r in side_rows if r[4] == "chat"}
    bad_chat = [m for m, (u, cost) in side.chat_ok.items() if by_msg.get(m) != 1 or chat_cost.get(m) != cost]
    extra_chat = collections.Counter(r[2] for r in side_rows if r[4] == "chat" and r[1] not in side.chat_ok)
    c.check(bool(side.chat_ok) and not bad_chat, f"chat: {len(side.chat_ok)} answered turns billed once at their exact cost ({len(bad_chat)} not)")
    c.check(all(extra_chat[u] <= side.chat_failed[u] for u in extra_chat),
            f"chat: turns billed without an answer {dict(extra_chat)} <= failed turns {dict(side.chat_failed)}")
    bad_gw = [e for e, (_, _, cost) in side.gw_ok.items() if e not in by_evt or Decimal(by_evt[e][3]) != cost]
    c.check(bool(side.gw_ok) and not bad_gw, f"gateway: {len(side.gw_ok)} answered calls billed once at their exact cost ({len(bad_gw)} not: {bad_gw[:5]})")
    key_spend = {name: Decimal(s) for name, s in cl.psql(
        "SELECT e.user_id, sum(e.cost_total) FROM api_events e WHERE e.source = 'gateway' GROUP BY e.user_id")}
    small = key_spend.get("gw-small", Decimal(0))
    codes = collections.Counter((n_, st, cd) for _, _, n_, st, cd in side.gw_log)
    shown = sorted((" ".join(str(x) for x in k if x is not None), v) for k, v in codes.items())
    print(f"  gateway answers: {dict(shown)}")
    c.check(small <= SMALL_BUDGET, f"budget held: gw-small spent {small} of {SMALL_BUDGET}")
    c.check(codes.get(("gw-small", 402, "budget_exceeded"), 0) > 0, "gw-small reached its budget (402 budget_exceeded seen)")
    redis = getattr(timeline, "redis", {})
    if "down" in redis and "up" in redis:
        down, up = redis["down"] + 1.5, redis["up"]
        during = [(n_, st, cd) for s, d, n_, st, cd in side.gw_log if s >= down and d <= up]
        leaks = [x for x in during if x[0] != "gw-free" and x[1] == 200]
        closed = [x for x in during if x[0] == "gw-big" and x[2] == "budget_unavailable"]
        free_ok = [x for x in during if x[0] == "gw-free" and x[1] == 200]
        c.check(not leaks, f"budgeted calls fail closed while Redis is down ({len(leaks)} answered 200)")
        c.check(bool(closed), f"budgeted calls answered 503 budget_unavailable while Redis was down ({len(closed)})")
        c.check(bool(free_ok), f"calls of the key without a budget went on while Redis was down ({len(free_ok)} answered 200)")

    # Dashboards and the cached per-user metrics converge on the database on both nodes.
    total_db, count_db = cl.psql("SELECT coalesce(sum(cost_total), 0), count(*) FROM api_events")[0]
    total_db, count_db = Decimal(total_db), int(count_db)
    sample_users = sorted(ledger.user_total)[:: max(1, len(ledger.user_total) // 20)] + ["chat-a", "gw-free"]
    user_db = {u: (Decimal(t), int(k)) for u, t, k in cl.psql(
        "SELECT user_id, sum(cost_total), count(*) FROM api_events WHERE user_id IN (%s) GROUP BY user_id"
        % ",".join(f"'{u}'" for u in sample_users))}
    for name, port in cl.node_ports.items():
        deadline, got = time.time() + 120, None
        while time.time() < deadline:
            try:
                st, _, data = http_call(port, "GET", "/api/dashboard/snapshot")
                snap = json.loads(data)
                got = (Decimal(snap["total_cost"]), snap["event_count"])
                if got == (total_db, count_db):
                    break
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                pass
            time.sleep(1)
        c.check(got == (total_db, count_db), f"dashboard on {name} converged: {got} vs database ({total_db}, {count_db})")
        bad = []
        for u in sample_users:
            st, _, data = http_call(port, "GET", f"/api/billing/metrics/user/{u}")
            m = json.loads(data).get("metrics", {}) if st == 200 else {}
            if (Decimal(m.get("total_cost", "-1")), m.get("event_count")) != user_db.get(u):
                bad.append(f"{u}: {m.get('total_cost')}/{m.get('event_count')} vs {user_db.get(u)}")
        c.check(not bad, f"user metrics on {name} (Redis cache) equal the database for {len(sample_users)} users ({bad[:3]})")
    c.check(not side.errors, f"side traffic consistent ({side.errors[:3]})")
    return c, dict(accepted=accepted, billed=billed, lost=lost, duplicated=duplicated, dlq=len(letters), reasons=dict(reasons))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=4000, help="ingest events per second")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--redis-pause", type=float, default=30)
    ap.add_argument("--chat-interval", type=float, default=1.0)
    ap.add_argument("--gateway-interval", type=float, default=0.1)
    ap.add_argument("--drain-timeout", type=float, default=900)
    ap.add_argument("--tally", required=True)
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--pg-bin", required=True)
    ap.add_argument("--base-catalog", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="chaos-", dir=args.work)
    os.chmod(work, 0o755)
    cl = Cluster(args, work)
    started = time.time()
    code = 1
    try:
        cl.start()
        log(f"cluster up in {time.time() - started:.1f} s; {args.events} events at {args.rate:g}/s, batches of {args.batch}")
        stop, side_stop = threading.Event(), threading.Event()
        ledger, timeline = Ledger(args.events), Timeline()
        side = SideTraffic(cl, side_stop)
        side.setup()
        t0 = time.time()
        nb = {"i": 0, "lock": threading.Lock()}
        threads = [threading.Thread(target=ingest_worker, args=(cl, args, ledger, nb, t0, stop), daemon=True) for _ in range(args.workers)]
        aux = [threading.Thread(target=sampler, args=(cl, ledger, timeline, side_stop), daemon=True),
               threading.Thread(target=side.chat_loop, args=(args.chat_interval,), daemon=True),
               threading.Thread(target=side.gateway_loop, args=(args.gateway_interval,), daemon=True)]
        faults = threading.Thread(target=run_faults, args=(cl, args, ledger, timeline, stop, False), daemon=True)
        for t in threads + aux + [faults]:
            t.start()
        for t in threads:
            t.join()
        ingest_s = time.time() - t0
        faults.join()
        log(f"ingest done in {ingest_s:.0f} s ({ledger.batches_retried} batch retries)")
        time.sleep(3)
        side_stop.set()
        for t in aux:
            t.join(timeout=90)
        checks, figures = final_checks(cl, args, ledger, side, timeline, t0)

        print("== recovery after each fault (s from injection until accepted and billed are both >= half the target rate in a 1 s window)")
        for name, outage, rec in recovery_report(args, timeline):
            print(f"  {name:48s} fault lasted {outage:5.1f} s, recovered after {'never' if rec is None else f'{rec:5.1f} s'}")
            checks.check(rec is not None, f"throughput resumed after: {name}")
        print("== throughput per 10 s window (events/s: accepted by collectors, billed into the database)")
        for start, acc, bil in throughput_windows(timeline, t0):
            print(f"  t={start:5.0f} s  accepted {acc:8.0f}/s  billed {bil:8.0f}/s")
        print("== summary")
        print(f"  events accepted {figures['accepted']}, billed {figures['billed']}, lost {figures['lost']}, "
              f"duplicated {figures['duplicated']}, dead letters {figures['dlq']} {figures['reasons']}")
        print(f"  ingest {ingest_s:.0f} s at a target of {args.rate:g}/s; whole run {time.time() - started:.0f} s")
        if checks.failed:
            print(f"CHAOS FAILED: {len(checks.failed)} checks failed; logs in {work}")
            args.keep = True
        else:
            print("CHAOS PASSED")
            code = 0
    finally:
        cl.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
