"""Helpers shared by the gateway tests: exact costs, the fake upstream's usage formula, waits."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any, Callable

MILLION = Decimal(1_000_000)

# The fake upstream's fixed reply (web/examples/fake_upstream.rs, REPLY_WORDS): one token per word.
REPLY_WORDS = ["Hello", " from", " the", " fake", " upstream", ",", " a", " deterministic", " reply", " for",
               " tests", "."]
FAKE_DEFAULT_MAX_TOKENS = 16

CLAUDE = "claude-3-5-haiku-20241022"
GPT = "gpt-4o-mini"

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `probe` until it returns something truthy; fail with `what` and the last value after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as e:  # a probe that raises counts as "not yet"; its error is reported
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def cost(quantities: dict[str, int], prices: dict[str, Decimal]) -> Decimal:
    """Exact cost of token quantities by kind at per-million prices (kinds with no tokens are skipped)."""
    total = Decimal(0)
    for kind, qty in quantities.items():
        if not qty:
            continue
        assert kind in prices, f"a price for {kind} (have {sorted(prices)})"
        total += Decimal(qty) * prices[kind] / MILLION
    return total


def as_dict(usage: Any) -> dict:
    """An SDK usage object (pydantic) or a dict, as a plain dict."""
    if usage is None:
        return {}
    if isinstance(usage, dict):
        return usage
    return usage.model_dump()


def openai_quantities(usage: Any) -> dict[str, int]:
    """Token kinds of an OpenAI `usage`: cached prompt tokens are cache reads, the rest is input.

    For a Claude model answered through the OpenAI route the gateway reports
    prompt_tokens = input + cache writes + cache reads; tests that use this never ask for cache
    writes there, so the rest is plain input."""
    u = as_dict(usage)
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": u["prompt_tokens"] - cached,
        "cache_read_tokens": cached,
        "output_tokens": u["completion_tokens"],
    }


def anthropic_quantities(usage: Any) -> dict[str, int]:
    """Token kinds of an Anthropic `usage` (cache writes split 5m/1h when the split is given)."""
    u = as_dict(usage)
    creation = u.get("cache_creation_input_tokens") or 0
    split = u.get("cache_creation") or {}
    one_hour = split.get("ephemeral_1h_input_tokens") or 0
    return {
        "input_tokens": u.get("input_tokens") or 0,
        "cache_write_5m_tokens": creation - one_hour,
        "cache_write_1h_tokens": one_hour,
        "cache_read_tokens": u.get("cache_read_input_tokens") or 0,
        "output_tokens": u.get("output_tokens") or 0,
    }


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        n = 0
        for item in content:
            if isinstance(item, dict):
                if isinstance(item.get("text"), str):
                    n += len(item["text"])
                if item.get("type") == "tool_result":
                    n += _text_chars(item.get("content"))
        return n
    return 0


def fake_input_tokens(messages: list[dict], system: Any = None) -> int:
    """Input tokens the fake upstream reports: ceil(characters of all message text / 4), at least 1."""
    chars = _text_chars(system) + sum(_text_chars(m.get("content")) for m in messages)
    return max(1, math.ceil(chars / 4))


def fake_output_tokens(max_tokens: int | None) -> int:
    """Output tokens per choice the fake upstream reports."""
    limit = FAKE_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    return min(limit, len(REPLY_WORDS))


def fake_reply(max_tokens: int | None) -> str:
    """The text the fake upstream answers."""
    return "".join(REPLY_WORDS[: fake_output_tokens(max_tokens)])


def parse_sse(raw: str) -> list[tuple[str | None, str]]:
    """(event, data) of each SSE frame in `raw`."""
    frames = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        frames.append((event, "\n".join(data)))
    return frames
