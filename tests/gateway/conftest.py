"""Fixtures for the gateway tests: real processes on port 0 (`tally serve` on a fresh SQLite file or
PostgreSQL database, the fake upstream), stopped on teardown; SDK clients pointed at them.

Binaries: TALLY_BIN (default target/debug/tally) and FAKE_UPSTREAM_BIN (default
target/debug/examples/fake_upstream); scripts/gateway-tests.sh builds both. Services for the
cluster tests come from scripts/services.sh env: TALLY_TEST_REDIS_URL, TALLY_TEST_POSTGRES_URL
(TALLY_TEST_PG_URL is read too). TALLY_TEST_KEEP_LOGS=1 keeps the processes' logs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gwhelpers import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET

# Seconds. A debug build migrating a fresh database needs a few seconds; allow a loaded machine.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 20.0
# Billing runs after the answer is sent: how long a test waits for spend to show up.
BILLING_WAIT = 15.0

FAKE_OPENAI_KEY = "sk-fake-upstream-openai"
FAKE_ANTHROPIC_KEY = "sk-ant-fake-upstream"

_LIVE: list["Proc"] = []


def tally_bin() -> Path:
    return Path(os.environ.get("TALLY_BIN") or TARGET / "debug" / "tally")


def fake_bin() -> Path:
    return Path(os.environ.get("FAKE_UPSTREAM_BIN") or TARGET / "debug" / "examples" / "fake_upstream")


def redis_url() -> str | None:
    return os.environ.get("TALLY_TEST_REDIS_URL") or None


def postgres_url() -> str | None:
    return os.environ.get("TALLY_TEST_POSTGRES_URL") or os.environ.get("TALLY_TEST_PG_URL") or None


class Proc:
    """A child process whose stdout announces `... listening on http://ADDR`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path):
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.out_path = logdir / f"{name}.out"
        self.log_path = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.url = ""

    def start(self, banner: str) -> str:
        assert Path(self.argv[0]).exists(), f"{self.argv[0]} exists (build it: scripts/gateway-tests.sh)"
        with open(self.out_path, "wb") as out, open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                          env=self.env, cwd=self.logdir)
        _LIVE.append(self)
        pattern = re.compile(re.escape(banner) + r" (http://\S+)")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self.out_path.read_text(errors="replace")
            m = pattern.search(text)
            if m:
                self.url = m.group(1).rstrip("/")
                return self.url
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode} before listening:\n"
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} did not print '{banner}' within {START_TIMEOUT}s:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after STOP_TIMEOUT."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        if self in _LIVE:
            _LIVE.remove(self)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _logdir(tmp: Path) -> Path:
    if os.environ.get("TALLY_TEST_KEEP_LOGS"):
        keep = Path(tempfile.mkdtemp(prefix="tally-gateway-logs-"))
        print(f"logs kept in {keep}", file=sys.stderr)
        return keep
    return tmp


# ---------------------------------------------------------------------------------------------
# The fake upstream


class FakeUpstream:
    """A running fake provider (web/examples/fake_upstream.rs)."""

    def __init__(self, proc: Proc):
        self.proc = proc
        self.url = proc.url
        self.http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT)

    def stats(self) -> dict[str, int]:
        """Requests it received per route."""
        r = self.http.get("/_fake/stats")
        assert r.status_code == 200, f"fake stats: {r.status_code} {r.text}"
        return r.json()

    def hits(self) -> int:
        s = self.stats()
        return s["chat_completions"] + s["messages"]

    def last(self) -> dict[str, Any]:
        """The last request per route: {"chat_completions"|"messages": {"headers", "body"}}."""
        return self.http.get("/_fake/last").json()

    def openai(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=FAKE_OPENAI_KEY,
                             max_retries=kw.pop("max_retries", 0), timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)

    def anthropic(self, **kw) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=FAKE_ANTHROPIC_KEY,
                                   max_retries=kw.pop("max_retries", 0), timeout=kw.pop("timeout", HTTP_TIMEOUT),
                                   **kw)


def _start_fake(tmp: Path, name: str, *flags: str) -> FakeUpstream:
    env = dict(os.environ)
    proc = Proc(name, [str(fake_bin()), "--bind", "127.0.0.1:0", *flags], env, tmp)
    proc.start("fake upstream listening on")
    return FakeUpstream(proc)


@pytest.fixture(scope="session")
def _session_tmp(tmp_path_factory) -> Path:
    return _logdir(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="session")
def fake(_session_tmp) -> FakeUpstream:
    """The fake upstream answering at once."""
    f = _start_fake(_session_tmp, "fake")
    yield f
    f.proc.stop()


@pytest.fixture(scope="session")
def fake_slow(_session_tmp) -> FakeUpstream:
    """The fake upstream answering after 150 ms (so concurrent requests overlap)."""
    f = _start_fake(_session_tmp, "fake-slow", "--latency-ms", "150")
    yield f
    f.proc.stop()


@pytest.fixture(scope="session")
def fake_slow_stream(_session_tmp) -> FakeUpstream:
    """The fake upstream streaming one token every 700 ms (a 12-token stream takes ~8 s)."""
    f = _start_fake(_session_tmp, "fake-slow-stream", "--token-delay-ms", "700")
    yield f
    f.proc.stop()


# ---------------------------------------------------------------------------------------------
# tally serve


class Node:
    """A running `tally serve` and a client of its management API."""

    def __init__(self, name: str, tmp: Path, db_url: str, upstream: FakeUpstream | None, args: list[str],
                 env: dict[str, str]):
        self.name, self.tmp, self.db_url, self.upstream, self.args, self.extra_env = (
            name, tmp, db_url, upstream, args, env)
        self.proc: Proc | None = None
        self.url = ""
        self.http: httpx.Client | None = None
        self._prices: dict[str, dict[str, Decimal]] = {}
        self.restarts = 0

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith(("OPENAI_", "ANTHROPIC_")) or (k.startswith("TALLY_") and not k.startswith("TALLY_TEST_")))}
        env.update({"RUST_LOG": os.environ.get("TALLY_TEST_RUST_LOG", "info"), "TALLY_SIM_TOKEN_DELAY_MS": "1",
                    "TALLY_HTTP_WORKERS": "2", "NO_COLOR": "1"})
        if self.upstream is not None:
            env.update({"OPENAI_API_KEY": FAKE_OPENAI_KEY, "OPENAI_BASE_URL": self.upstream.url,
                        "ANTHROPIC_API_KEY": FAKE_ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": self.upstream.url})
        env.update(self.extra_env)
        return env

    def start(self) -> "Node":
        name = self.name if not self.restarts else f"{self.name}-restart{self.restarts}"
        argv = [str(tally_bin()), "serve", "--bind", "127.0.0.1:0", "--database-url", self.db_url, *self.args]
        self.proc = Proc(name, argv, self._env(), self.tmp)
        self.url = self.proc.start("tally listening on")
        self.http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT)
        return self

    def restart(self) -> "Node":
        """Start again on the same database and flags (a new port)."""
        if self.proc is not None:
            self.proc.stop()
        self.restarts += 1
        return self.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.proc is not None:
            self.proc.stop()

    # -- management API ------------------------------------------------------------------------

    def post(self, path: str, body: Any, expect: int | tuple[int, ...] = (200, 201, 204)) -> Any:
        r = self.http.post(path, json=body)
        expect = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in expect, f"POST {path} answers {expect}, got {r.status_code}: {r.text}"
        return r.json() if r.content else None

    def get(self, path: str, **params) -> Any:
        r = self.http.get(path, params=params or None)
        assert r.status_code == 200, f"GET {path} answers 200, got {r.status_code}: {r.text}"
        return r.json()

    def create_user(self, user_id: str | None = None) -> str:
        user_id = user_id or f"u-{uuid.uuid4().hex[:12]}"
        self.post("/api/users/", {"user_id": user_id, "email": f"{user_id}@example.com"})
        return user_id

    def create_key(self, user_id: str | None = None, budgets: list[dict] | None = None,
                   allowed_models: list[str] | None = None, rpm_limit: int | None = None,
                   expires_at: str | None = None, name: str = "gateway-test") -> dict:
        """A fresh key (for a fresh user unless one is given): the create answer, with "key"."""
        user_id = user_id or self.create_user()
        body = {"user_id": user_id, "name": name, "allowed_models": allowed_models, "expires_at": expires_at,
                "rpm_limit": rpm_limit, "budgets": budgets or []}
        r = self.http.post("/api/keys", json=body)
        assert r.status_code == 201, f"POST /api/keys answers 201, got {r.status_code}: {r.text}"
        key = r.json()
        assert key.get("key", "").startswith("tk-"), f"the create answer carries the secret tk-...: {key}"
        return key

    def spend(self, key_id: str, period: str = "daily") -> dict:
        return self.get(f"/api/billing/spend/{key_id}", period=period)

    def budgets(self, key_id: str) -> list[dict]:
        return self.get(f"/api/billing/budget/{key_id}")["budgets"]

    def prices(self, model: str) -> dict[str, Decimal]:
        """Current prices of a model by kind (per million tokens)."""
        if model not in self._prices:
            versions = self.get("/api/prices", model=model)
            assert versions, f"the catalogue prices {model}"
            self._prices[model] = {v["kind"]: Decimal(v["price"]) for v in versions if v.get("is_current", True)}
        return self._prices[model]

    def wait_spend(self, key_id: str, expected: Decimal, timeout: float = BILLING_WAIT) -> dict:
        """Poll the key's spend until total_cost equals `expected` exactly; fail after `timeout`."""
        def probe():
            s = self.spend(key_id)
            return s if Decimal(s["total_cost"]) == expected else None
        try:
            return wait_for(probe, timeout, f"spend of {key_id} to reach {expected}", interval=0.2)
        except AssertionError:
            got = self.spend(key_id)
            raise AssertionError(f"spend of key {key_id} equals the sum of the calls' costs {expected} "
                                 f"within {timeout}s; got {got}") from None

    # -- SDK clients ---------------------------------------------------------------------------

    def openai(self, key: str, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=kw.pop("max_retries", 0),
                             timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)

    def anthropic(self, key: str, **kw) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=kw.pop("max_retries", 0),
                                   timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)


class Cluster:
    """Starts nodes for one test and stops them all on teardown."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.nodes: list[Node] = []
        self.databases: list[str] = []

    def start(self, upstream: FakeUpstream | None = None, args: list[str] | tuple[str, ...] = (),
              env: dict[str, str] | None = None, db_url: str | None = None, name: str | None = None) -> Node:
        """A `tally serve` on a fresh SQLite file unless `db_url` is given; upstream=None: the simulator."""
        name = name or f"tally{len(self.nodes)}"
        db_url = db_url or f"sqlite://{self.tmp / (name + '.db')}"
        node = Node(name, self.tmp, db_url, upstream, list(args), env or {})
        self.nodes.append(node)
        return node.start()

    def postgres_database(self) -> str:
        """A fresh, migrated PostgreSQL database (skips the test without TALLY_TEST_POSTGRES_URL)."""
        admin = postgres_url()
        if not admin:
            pytest.skip("TALLY_TEST_POSTGRES_URL is not set: two nodes need one shared PostgreSQL "
                        "(scripts/services.sh start && eval \"$(scripts/services.sh env)\")")
        if not shutil.which("psql"):
            pytest.skip("psql is not installed (scripts/services.sh start installs PostgreSQL)")
        name = f"tally_gw_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        r = subprocess.run(["psql", admin, "-q", "-c", f'CREATE DATABASE "{name}"'], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"CREATE DATABASE through TALLY_TEST_POSTGRES_URL: {r.stderr}"
        self.databases.append(name)
        server, _, _ = admin.rpartition("/")
        url = f"{server}/{name}"
        r = subprocess.run([str(tally_bin()), "migrate", "--database-url", url], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"tally migrate on {url}: {r.stderr[-2000:]}"
        return url

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        admin = postgres_url()
        for name in self.databases:
            if admin:
                subprocess.run(["psql", admin, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                               capture_output=True, timeout=60)


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    """Start `tally serve` nodes with cluster.start(...); all are stopped after the test."""
    c = Cluster(_logdir(tmp_path))
    yield c
    c.close()


@pytest.fixture
def sim(cluster) -> Node:
    """A fresh `tally serve` with no provider keys: the built-in simulator answers."""
    return cluster.start(name="sim")


@pytest.fixture
def gw(cluster, fake) -> Node:
    """A fresh `tally serve` whose upstreams are the fake provider."""
    return cluster.start(upstream=fake, name="gw")


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_processes():
    yield
    for p in list(_LIVE):
        p.kill()


def pytest_sessionfinish(session, exitstatus):
    for p in list(_LIVE):
        p.kill()
