"""Bad input is refused in the provider's error shape with a stable code, never reaches the upstream,
and bills nothing."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from conftest import HTTP_TIMEOUT
from gwhelpers import CLAUDE, GPT

USER = [{"role": "user", "content": "hi"}]


def post(node, path: str, key: str | None, body=None, raw: bytes | None = None, header: str = "authorization"):
    headers = {"content-type": "application/json"}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return httpx.post(f"{node.url}{path}", headers=headers, timeout=HTTP_TIMEOUT,
                      content=raw if raw is not None else None, json=body if raw is None else None)


def openai_error(r: httpx.Response, status: int, what: str) -> dict:
    assert r.status_code == status, f"{what}: {status}, got {r.status_code}: {r.text}"
    body = r.json()
    err = body.get("error")
    assert isinstance(err, dict), f"{what}: OpenAI's shape {{\"error\": {{...}}}}: {body}"
    assert err.get("message"), f"{what}: a message says what is wrong: {body}"
    assert {"type", "param", "code"} <= set(err), f"{what}: type, param and code present: {body}"
    return err


def anthropic_error(r: httpx.Response, status: int, what: str) -> dict:
    assert r.status_code == status, f"{what}: {status}, got {r.status_code}: {r.text}"
    body = r.json()
    assert body.get("type") == "error" and isinstance(body.get("error"), dict), \
        f"{what}: Anthropic's shape {{\"type\":\"error\",\"error\":{{...}}}}: {body}"
    assert body["error"].get("type") and body["error"].get("message"), f"{what}: type and message: {body}"
    return body["error"]


@pytest.fixture
def keyed(gw):
    """A key with a budget (so holds would show) on a gateway over the fake upstream."""
    return gw.create_key(budgets=[{"max_budget": "5.00", "period": "daily"}])


def test_bad_bodies_are_400_in_the_provider_shape_and_bill_nothing(gw, fake, keyed):
    hits = fake.hits()
    k = keyed["key"]

    err = openai_error(post(gw, "/v1/chat/completions", k, raw=b'{"model": "gpt-4o-mini", "messages": ['), 400,
                       "malformed JSON on /v1/chat/completions")
    assert err["code"] == "invalid_json", f"code invalid_json: {err}"
    err = anthropic_error(post(gw, "/v1/messages", k, raw=b"{nope"), 400, "malformed JSON on /v1/messages")
    assert err["type"] == "invalid_json", f"type invalid_json: {err}"

    err = anthropic_error(post(gw, "/v1/messages", k, {"model": CLAUDE, "messages": USER}), 400,
                          "missing max_tokens on /v1/messages")
    assert err["type"] == "missing_max_tokens", f"type missing_max_tokens: {err}"

    err = openai_error(post(gw, "/v1/chat/completions", k, {"model": GPT, "messages": USER, "max_tokens": 10**9}),
                       400, "max_tokens = 10**9 on /v1/chat/completions")
    assert err["code"] == "max_tokens_too_large" and err["param"] == "max_tokens", f"max_tokens_too_large: {err}"
    err = anthropic_error(post(gw, "/v1/messages", k, {"model": CLAUDE, "messages": USER, "max_tokens": 10**9}),
                          400, "max_tokens = 10**9 on /v1/messages")
    assert err["type"] == "max_tokens_too_large", f"max_tokens_too_large: {err}"

    err = openai_error(post(gw, "/v1/chat/completions", k, {"model": GPT, "messages": []}), 400, "empty messages")
    assert err["code"] == "invalid_messages", f"invalid_messages: {err}"

    err = openai_error(post(gw, "/v1/chat/completions", k, {"model": "gpt-unknown-9", "messages": USER}), 404,
                       "unknown model on /v1/chat/completions")
    assert "gpt-unknown-9" in err["message"], f"the message names the model: {err}"
    anthropic_error(post(gw, "/v1/messages", k, {"model": "claude-unknown-9", "messages": USER, "max_tokens": 5}),
                    404, "unknown model on /v1/messages")

    with pytest.raises(openai.BadRequestError) as e:
        gw.openai(k).chat.completions.create(model=GPT, messages=USER, max_tokens=10**9)
    assert e.value.status_code == 400 and e.value.code == "max_tokens_too_large", "the SDK surfaces the code"
    with pytest.raises(anthropic.BadRequestError) as e:
        gw.anthropic(k).messages.create(model=CLAUDE, messages=USER, max_tokens=10**9)
    assert e.value.status_code == 400, "the Anthropic SDK raises BadRequestError"

    assert fake.hits() == hits, "no bad request reached the upstream"
    _nothing_billed(gw, keyed)


def test_bad_revoked_and_expired_keys_are_401(gw, fake):
    hits = fake.hits()
    body = {"model": GPT, "messages": USER, "max_tokens": 5}
    err = openai_error(post(gw, "/v1/chat/completions", None, body), 401, "no key")
    err = openai_error(post(gw, "/v1/chat/completions", "tk-nope-nope", body), 401, "an unknown key")
    anthropic_error(post(gw, "/v1/messages", "tk-nope-nope", {**body, "model": CLAUDE}, header="x-api-key"), 401,
                    "an unknown key on /v1/messages (x-api-key)")
    with pytest.raises(openai.AuthenticationError):
        gw.openai("tk-nope-nope").chat.completions.create(**body)
    with pytest.raises(anthropic.AuthenticationError):
        gw.anthropic("tk-nope-nope").messages.create(model=CLAUDE, messages=USER, max_tokens=5)

    key = gw.create_key()
    r = post(gw, "/v1/chat/completions", key["key"], body)
    assert r.status_code == 200, f"the key works before it is revoked: {r.text}"
    gw.post(f"/api/keys/{key['key_id']}/revoke", {})
    openai_error(post(gw, "/v1/chat/completions", key["key"], body), 401, "a revoked key")
    anthropic_error(post(gw, "/v1/messages", key["key"], {**body, "model": CLAUDE}), 401, "a revoked key (Anthropic)")
    assert gw.get(f"/api/keys/{key['key_id']}")["status"] == "revoked", "the key shows as revoked"

    rotated = gw.create_key()
    new = gw.post(f"/api/keys/{rotated['key_id']}/rotate", {})
    assert new["key"] != rotated["key"], "rotate returns a new secret"
    openai_error(post(gw, "/v1/chat/completions", rotated["key"], body), 401, "the old secret after rotate")
    r = post(gw, "/v1/chat/completions", new["key"], body)
    assert r.status_code == 200, f"the new secret works: {r.text}"

    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    expiring = gw.create_key(expires_at=soon)
    time.sleep(3)
    openai_error(post(gw, "/v1/chat/completions", expiring["key"], body), 401, "an expired key")
    assert gw.get(f"/api/keys/{expiring['key_id']}")["status"] == "expired", "the key shows as expired"
    assert fake.hits() == hits + 2, "only the two good calls reached the upstream"


def test_disallowed_model_is_403(gw, fake):
    hits = fake.hits()
    key = gw.create_key(allowed_models=[GPT], budgets=[{"max_budget": "5.00", "period": "daily"}])
    err = openai_error(post(gw, "/v1/chat/completions", key["key"], {"model": CLAUDE, "messages": USER,
                                                                      "max_tokens": 5}), 403, "a model off the list")
    assert err["code"] == "model_not_allowed", f"code model_not_allowed: {err}"
    anthropic_error(post(gw, "/v1/messages", key["key"], {"model": CLAUDE, "messages": USER, "max_tokens": 5}), 403,
                    "a model off the list on /v1/messages")
    with pytest.raises(openai.PermissionDeniedError):
        gw.openai(key["key"]).chat.completions.create(model=CLAUDE, messages=USER, max_tokens=5)
    assert fake.hits() == hits, "refused calls never reach the upstream"
    _nothing_billed(gw, key)


def _nothing_billed(gw, key: dict) -> None:
    time.sleep(1.0)  # billing is asynchronous: give a wrong charge the time to land
    spend = gw.spend(key["key_id"])
    assert Decimal(spend["total_cost"]) == 0 and spend["total_requests"] == 0, f"nothing billed: {spend}"
    for b in gw.budgets(key["key_id"]):
        assert Decimal(b["spent"]) == 0 and Decimal(b["reserved"]) == 0, f"no spend, no hold left: {b}"
