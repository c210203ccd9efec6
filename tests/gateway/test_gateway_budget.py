"""Budgets hold: 402 in the provider's shape that the SDKs do not retry; concurrent requests never spend
past the limit (one node, and two nodes sharing PostgreSQL and Redis); a killed node's holds come back
when their lease ends; a stream the client cuts is still billed."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from conftest import BILLING_WAIT, HTTP_TIMEOUT, redis_url
from gwhelpers import CLAUDE, GPT, cost, fake_input_tokens, fake_output_tokens, openai_quantities, wait_for

TINY = "0.000001"  # USD: less than any call's upper bound


def daily(max_budget: str) -> list[dict]:
    return [{"max_budget": max_budget, "period": "daily", "alert_threshold": "0.8", "timezone": "UTC"}]


def key_budget(node, key_id: str) -> dict:
    budgets = node.budgets(key_id)
    assert len(budgets) == 1, f"the key has one budget: {budgets}"
    return budgets[0]


def counting_client(module, attempts: list):
    """The SDK's own httpx client with a hook that counts every attempt it sends."""
    return module.DefaultHttpxClient(event_hooks={"request": [lambda request: attempts.append(str(request.url))]})


# ---------------------------------------------------------------------------------------------
# 402


def test_openai_sdk_gets_402_and_does_not_retry(gw, fake):
    key = gw.create_key(budgets=daily(TINY))
    hits = fake.hits()
    attempts: list[str] = []
    client = gw.openai(key["key"], max_retries=2, http_client=counting_client(openai, attempts))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=GPT, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    took = time.monotonic() - started
    e = err.value
    assert e.status_code == 402, f"over budget is 402, got {e.status_code}: {e.body}"
    assert len(attempts) == 1, f"the SDK sent the request once (402 is not retried): {attempts}"
    assert took < 1.0, f"no retry back-off: took {took:.2f}s"
    body = e.response.json()
    assert body["error"]["type"] == "budget_exceeded" and body["error"]["code"] == "budget_exceeded", \
        f"OpenAI's error shape with code budget_exceeded: {body}"
    assert body["error"]["message"] and "param" in body["error"], f"a message and param: {body}"
    assert "x-tally-budget-remaining" in e.response.headers, "the remaining budget is in a header"
    assert "x-tally-budget-reset" in e.response.headers, "the reset time is in a header"

    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=CLAUDE, max_tokens=100, stream=True,
                                       messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 402, "a stream over budget is refused before it starts"
    assert len(attempts) == 2, f"still one attempt per call: {attempts}"
    assert fake.hits() == hits, "the upstream was never called"
    assert Decimal(gw.spend(key["key_id"])["total_cost"]) == 0, "nothing is billed"


def test_anthropic_sdk_gets_402_and_does_not_retry(gw, fake):
    key = gw.create_key(budgets=daily(TINY))
    hits = fake.hits()
    attempts: list[str] = []
    client = gw.anthropic(key["key"], max_retries=2, http_client=counting_client(anthropic, attempts))
    with pytest.raises(anthropic.APIStatusError) as err:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    e = err.value
    assert e.status_code == 402, f"over budget is 402, got {e.status_code}: {e.body}"
    assert len(attempts) == 1, f"the SDK sent the request once: {attempts}"
    body = e.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "budget_exceeded", f"Anthropic's shape: {body}"
    assert body["error"]["message"], "a message says why"
    assert "x-tally-budget-remaining" in e.response.headers and "x-tally-budget-reset" in e.response.headers, \
        "budget headers on /v1/messages too"
    with pytest.raises(anthropic.APIStatusError) as err:
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
    assert err.value.status_code == 402 and len(attempts) == 2, "streams: 402, once"
    assert fake.hits() == hits, "the upstream was never called"


# ---------------------------------------------------------------------------------------------
# Concurrency


CONTENT = "Count to three, please."
ONE = [{"role": "user", "content": CONTENT}]


def one_call_cost(prices) -> Decimal:
    """Exact cost of one fake-upstream call with ONE and max_tokens=12."""
    return cost({"input_tokens": fake_input_tokens(ONE), "output_tokens": fake_output_tokens(12)}, prices)


async def _fire(targets: list[tuple[str, str]], concurrency: int) -> list[tuple[int, dict]]:
    """POST one chat completion per (base url, key), at most `concurrency` at once: (status, body) each."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT * 2, limits=limits) as client:
        async def one(url: str, key: str):
            async with sem:
                r = await client.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                      json={"model": GPT, "max_tokens": 12, "messages": ONE})
                try:
                    body = r.json()
                except ValueError:
                    body = {"raw": r.text}
                return r.status_code, body
        return await asyncio.gather(*(one(u, k) for u, k in targets))


def _hammer_budget(nodes, fake_prices, key: dict, max_budget: Decimal) -> None:
    """200 concurrent requests, then waves of 50 until the budget admits none; check nothing overspent."""
    targets = [(nodes[i % len(nodes)].url, key["key"]) for i in range(200)]
    results = asyncio.run(_fire(targets, 200))
    statuses = sorted({s for s, _ in results})
    ok = [b for s, b in results if s == 200]
    refused = [b for s, b in results if s == 402]
    assert set(statuses) <= {200, 402}, f"only 200 and 402 under load, got {statuses}: " \
        f"{[b for s, b in results if s not in (200, 402)][:3]}"
    assert ok, "the budget admits some of 200 concurrent requests"
    assert refused, "the budget refuses some of 200 concurrent requests"
    assert all(b["error"]["code"] == "budget_exceeded" for b in refused), "every refusal is budget_exceeded"

    for _ in range(30):  # use up the rest of the budget
        wave = asyncio.run(_fire(targets[:50], 50))
        assert {s for s, _ in wave} <= {200, 402}, f"only 200 and 402: {[s for s, _ in wave]}"
        ok += [b for s, b in wave if s == 200]
        if all(s == 402 for s, _ in wave):
            break
    billed = sum((cost(openai_quantities(b["usage"]), fake_prices) for b in ok), Decimal(0))
    assert billed <= max_budget, f"the admitted calls cost {billed} <= the budget {max_budget}"
    spend = nodes[0].wait_spend(key["key_id"], billed, timeout=BILLING_WAIT * 2)
    assert spend["total_requests"] == len(ok), f"every admitted call is billed once: {spend} vs {len(ok)}"

    def settled():
        b = key_budget(nodes[-1], key["key_id"])
        return b if Decimal(b["reserved"]) == 0 and Decimal(b["spent"]) == billed else None
    b = wait_for(settled, BILLING_WAIT, "every hold settled: reserved 0 and spent == billed")
    assert Decimal(b["spent"]) <= max_budget, f"spent {b['spent']} <= max_budget {max_budget}"
    assert Decimal(b["remaining"]) == max_budget - Decimal(b["spent"]), f"remaining = max - spent: {b}"
    assert billed >= max_budget / 4, f"the budget was used, not refused early: billed {billed} of {max_budget}"
    print(f"budget {max_budget}: first burst {len(results)} -> {len(results) - len(refused)} admitted; "
          f"{len(ok)} admitted in all, billed {billed} ({billed / max_budget:.1%} of the budget)")


def test_concurrent_requests_never_overspend(cluster, fake_slow):
    node = cluster.start(upstream=fake_slow, name="gw")
    prices = node.prices(GPT)
    max_budget = one_call_cost(prices) * 60 + one_call_cost(prices) / 3
    key = node.create_key(budgets=daily(str(max_budget)))
    _hammer_budget([node], prices, key, max_budget)


def test_two_nodes_sharing_postgres_and_redis_never_overspend(cluster, fake_slow):
    if not redis_url():
        pytest.skip("TALLY_TEST_REDIS_URL is not set: two nodes share budgets through Redis")
    db = cluster.postgres_database()
    a = cluster.start(upstream=fake_slow, db_url=db, args=["--redis-url", redis_url()], name="node-a")
    b = cluster.start(upstream=fake_slow, db_url=db, args=["--redis-url", redis_url()], name="node-b")
    prices = a.prices(GPT)
    max_budget = one_call_cost(prices) * 60 + one_call_cost(prices) / 3
    key = a.create_key(budgets=daily(str(max_budget)))
    _hammer_budget([a, b], prices, key, max_budget)


# ---------------------------------------------------------------------------------------------
# A killed node's holds


# Each slow stream reserves ~4000 output tokens of gpt-4o-mini (0.0024 USD); the budget holds two.
BIG = 4000
HOLD_BUDGET = "0.006"


class SlowStream:
    """A streaming request held open in a thread: `started` once the first byte arrived."""

    def __init__(self, url: str, key: str):
        self.status: int | None = None
        self.started = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, key), daemon=True)
        self.thread.start()

    def _run(self, url: str, key: str) -> None:
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": GPT, "max_tokens": BIG, "stream": True, "messages": ONE,
                                    "stream_options": {"include_usage": True}},
                              timeout=httpx.Timeout(HTTP_TIMEOUT, read=30)) as r:
                self.status = r.status_code
                for _ in r.iter_bytes():
                    self.started.set()
        except httpx.HTTPError:
            pass
        finally:
            self.started.set()
            self.done.set()


def _open_holds(node, key: dict) -> list[SlowStream]:
    streams = [SlowStream(node.url, key["key"]) for _ in range(2)]
    for s in streams:
        assert s.started.wait(HTTP_TIMEOUT), "a slow stream started"
        assert s.status == 200, f"the budget admits two slow streams, got {s.status}"
    r = httpx.post(f"{node.url}/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                   json={"model": GPT, "max_tokens": BIG, "messages": ONE}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 402, f"a third call does not fit next to two holds: {r.status_code} {r.text}"
    assert Decimal(key_budget(node, key["key_id"])["reserved"]) > 0, "the two streams hold part of the budget"
    return streams


def _admitted_again(node, key: dict, lease: float) -> None:
    def released():
        b = key_budget(node, key["key_id"])
        return b if Decimal(b["reserved"]) == 0 else None
    wait_for(released, lease + 15, "the killed node's holds to be released (reserved 0)", interval=0.25)
    r = httpx.post(f"{node.url}/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                   json={"model": GPT, "max_tokens": BIG, "messages": ONE}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"after the lease a new call is admitted: {r.status_code} {r.text}"


def test_killed_node_holds_return_after_the_lease_two_nodes(cluster, fake_slow_stream):
    if not redis_url():
        pytest.skip("TALLY_TEST_REDIS_URL is not set: holds outlive a node only in Redis")
    db = cluster.postgres_database()
    args = ["--redis-url", redis_url(), "--budget-lease-secs", "2"]
    a = cluster.start(upstream=fake_slow_stream, db_url=db, args=args, name="node-a")
    b = cluster.start(upstream=fake_slow_stream, db_url=db, args=args, name="node-b")
    key = a.create_key(budgets=daily(HOLD_BUDGET))
    streams = _open_holds(a, key)
    r = httpx.post(f"{b.url}/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                   json={"model": GPT, "max_tokens": BIG, "messages": ONE}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 402, f"the other node sees node A's holds: {r.status_code} {r.text}"
    a.kill()
    for s in streams:
        assert s.done.wait(HTTP_TIMEOUT), "the client sees the dead node's stream end"
    _admitted_again(b, key, lease=2)


def test_killed_node_holds_return_after_the_lease_restart(cluster, fake_slow_stream):
    if not redis_url():
        pytest.skip("TALLY_TEST_REDIS_URL is not set: holds outlive a node only in Redis")
    lease = 4
    node = cluster.start(upstream=fake_slow_stream, args=["--redis-url", redis_url(), "--budget-lease-secs",
                                                          str(lease)], name="gw")
    key = node.create_key(budgets=daily(HOLD_BUDGET))
    streams = _open_holds(node, key)
    node.kill()
    killed = time.monotonic()
    for s in streams:
        assert s.done.wait(HTTP_TIMEOUT), "the client sees the dead node's stream end"
    node.restart()  # same SQLite file, same Redis
    b = key_budget(node, key["key_id"])
    if time.monotonic() - killed < lease / 2:
        assert Decimal(b["reserved"]) > 0, f"holds in Redis outlive the node until their lease ends: {b}"
    else:
        print(f"restart took {time.monotonic() - killed:.1f}s: too long to see the holds before their lease ended")
    _admitted_again(node, key, lease=lease)


def test_killed_embedded_node_restarts_with_no_holds(cluster, fake_slow_stream):
    node = cluster.start(upstream=fake_slow_stream, args=["--budget-lease-secs", "2"], name="gw")
    key = node.create_key(budgets=daily(HOLD_BUDGET))
    streams = _open_holds(node, key)
    node.kill()
    for s in streams:
        assert s.done.wait(HTTP_TIMEOUT), "the client sees the dead node's stream end"
    node.restart()
    _admitted_again(node, key, lease=2)


# ---------------------------------------------------------------------------------------------
# A stream cut by its client


def test_stream_cut_by_the_client_is_still_billed(cluster, fake_slow_stream):
    node = cluster.start(upstream=fake_slow_stream, name="gw")
    oa_key, claude_key, msg_key = node.create_key(), node.create_key(), node.create_key()

    # OpenAI route, OpenAI model: read one delta, then hang up.
    stream = node.openai(oa_key["key"]).chat.completions.create(
        model=GPT, messages=ONE, max_tokens=12, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()

    # OpenAI route, Claude model (translated).
    stream = node.openai(claude_key["key"]).chat.completions.create(
        model=CLAUDE, messages=ONE, max_tokens=12, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()

    # Anthropic route.
    with node.anthropic(msg_key["key"]).messages.stream(model=CLAUDE, max_tokens=12, messages=ONE) as s:
        for _ in s.text_stream:
            break

    # The gateway reads the upstream to its final usage (the fake streams 12 tokens, ~8 s) and bills it all.
    full = {"input_tokens": fake_input_tokens(ONE), "output_tokens": fake_output_tokens(12)}
    node.wait_spend(oa_key["key_id"], cost(full, node.prices(GPT)), timeout=30)
    node.wait_spend(claude_key["key_id"], cost(full, node.prices(CLAUDE)), timeout=30)
    node.wait_spend(msg_key["key_id"], cost(full, node.prices(CLAUDE)), timeout=30)
