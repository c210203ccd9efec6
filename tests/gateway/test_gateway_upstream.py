"""Stock SDKs through the gateway to the fake provider (OPENAI_BASE_URL / ANTHROPIC_BASE_URL): answers
pass through (or are translated for Claude models on the OpenAI route), tool calls reach the SDK, cache
reads are billed, streams work on both routes, and the spend is exactly the sum of the calls' costs.

Cache tokens are asked for with the `x-fake-cache-read`/`-write` headers (extra_headers) and the same
value as a `[[x-fake-cache-read:N]]` marker in the text, so the test holds whether or not the gateway
forwards custom headers upstream."""

from __future__ import annotations

import json
from decimal import Decimal

from conftest import FAKE_ANTHROPIC_KEY, FAKE_OPENAI_KEY
from gwhelpers import (CLAUDE, GPT, WEATHER_TOOL_ANTHROPIC, WEATHER_TOOL_OPENAI, anthropic_quantities, cost,
                       fake_input_tokens, fake_output_tokens, fake_reply, openai_quantities)

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}]


def test_openai_model_plain_and_stream(gw, fake):
    key = gw.create_key()
    oa = gw.openai(key["key"])
    hits = fake.stats()["chat_completions"]
    expected = Decimal(0)

    raw = oa.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES, max_tokens=7)
    assert raw.headers.get("x-tally-simulated") != "true", "the fake upstream answered, not the simulator"
    r = raw.parse()
    assert r.choices[0].message.content == fake_reply(7), "the upstream's reply passes through"
    assert r.choices[0].finish_reason == "length", "finish_reason passes through"
    assert r.usage.prompt_tokens == fake_input_tokens(MESSAGES), "prompt tokens are the upstream's"
    assert r.usage.completion_tokens == 7, "completion tokens are the upstream's"
    expected += cost(openai_quantities(r.usage), gw.prices(GPT))
    sent = fake.last()["chat_completions"]
    assert sent["headers"].get("authorization") == f"Bearer {FAKE_OPENAI_KEY}", \
        "the gateway calls upstream with the provider key, never the virtual key"
    assert sent["body"]["model"] == GPT and sent["body"]["max_tokens"] == 7, "the body is passed through"

    chunks = list(oa.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=9, stream=True,
                                             stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake_reply(9), \
        "the streamed reply passes through"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 9, f"one usage chunk with 9 tokens: {usage}"
    expected += cost(openai_quantities(usage[0]), gw.prices(GPT))
    assert fake.stats()["chat_completions"] == hits + 2, "one upstream call per request (no retries)"

    n2 = oa.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3, n=2)
    assert len(n2.choices) == 2 and n2.usage.completion_tokens == 6, "n=2 passes through and is billed x2"
    expected += cost(openai_quantities(n2.usage), gw.prices(GPT))

    spend = gw.wait_spend(key["key_id"], expected)
    assert spend["total_requests"] == 3, f"three calls: {spend}"
    assert set(spend["by_provider"]) == {"openai"}, f"billed to the openai provider: {spend['by_provider']}"


def test_claude_model_on_openai_route_is_translated(gw, fake):
    key = gw.create_key()
    oa = gw.openai(key["key"])
    expected = Decimal(0)
    r = oa.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_tokens=8)
    assert r.object == "chat.completion", "the answer is in OpenAI's format"
    assert r.choices[0].message.content == fake_reply(8), "Anthropic text comes back as message.content"
    assert r.choices[0].finish_reason == "length", "stop_reason max_tokens becomes finish_reason length"
    assert r.usage.prompt_tokens == fake_input_tokens(MESSAGES), "input tokens become prompt tokens"
    assert r.usage.completion_tokens == 8, "output tokens become completion tokens"
    expected += cost(openai_quantities(r.usage), gw.prices(CLAUDE))
    sent = fake.last()["messages"]
    assert sent["headers"].get("x-api-key") == FAKE_ANTHROPIC_KEY, "Anthropic is called with the provider key"
    assert sent["body"]["model"] == CLAUDE and sent["body"]["max_tokens"] == 8, "an Anthropic Messages request"
    assert "You are terse." in json.dumps(sent["body"].get("system")), "the system message became `system`"
    assert all(m["role"] in ("user", "assistant") for m in sent["body"]["messages"]), "only user/assistant turns"

    chunks = list(oa.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_tokens=20, stream=True,
                                             stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks), "a translated stream of chunks"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake_reply(20), \
        "the translated stream carries the reply"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], f"end_turn becomes stop: {finishes}"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == fake_output_tokens(20), f"usage chunk: {usage}"
    expected += cost(openai_quantities(usage[0]), gw.prices(CLAUDE))

    spend = gw.wait_spend(key["key_id"], expected)
    assert set(spend["by_provider"]) == {"anthropic"}, f"billed to anthropic: {spend['by_provider']}"


def test_tool_calls_pass_through_on_both_routes(gw, fake):
    key = gw.create_key()
    oa, an = gw.openai(key["key"]), gw.anthropic(key["key"])
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    expected = Decimal(0)

    for model in (GPT, CLAUDE):
        r = oa.chat.completions.create(model=model, messages=ask, tools=[WEATHER_TOOL_OPENAI], max_tokens=50)
        assert r.choices[0].finish_reason == "tool_calls", f"{model}: finish_reason tool_calls"
        calls = r.choices[0].message.tool_calls
        assert calls and calls[0].type == "function", f"{model}: the SDK sees tool_calls: {r.choices[0].message}"
        assert calls[0].function.name == "get_weather", f"{model}: the first tool is called"
        assert json.loads(calls[0].function.arguments) == {}, f"{model}: arguments are JSON text"
        assert calls[0].id, f"{model}: the call has an id"
        expected += cost(openai_quantities(r.usage), gw.prices(model))
        if model == CLAUDE:
            tools = fake.last()["messages"]["body"].get("tools") or []
            assert [t.get("name") for t in tools] == ["get_weather"], f"tools translated to Anthropic's: {tools}"
            assert "input_schema" in tools[0], "an Anthropic tool has input_schema"

        with oa.chat.completions.stream(model=model, messages=ask, tools=[WEATHER_TOOL_OPENAI], max_tokens=50,
                                        stream_options={"include_usage": True}) as stream:
            for _ in stream:
                pass
            final = stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {}, \
            f"{model}: streamed tool_calls deltas assemble into the call"
        assert final.choices[0].finish_reason == "tool_calls", f"{model}: streamed finish_reason tool_calls"
        assert final.usage is not None, f"{model}: the stream carries usage"
        expected += cost(openai_quantities(final.usage), gw.prices(model))

        # The tool's result goes back; the model answers in text.
        follow = ask + [{"role": "assistant", "content": None,
                         "tool_calls": [{"id": call.id, "type": "function",
                                         "function": {"name": "get_weather", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
        r = oa.chat.completions.create(model=model, messages=follow, tools=[WEATHER_TOOL_OPENAI], max_tokens=50)
        assert r.choices[0].message.content == fake_reply(50), f"{model}: a text answer after the tool result"
        assert r.usage.prompt_tokens == fake_input_tokens(follow), f"{model}: the tool result is sent as input"
        expected += cost(openai_quantities(r.usage), gw.prices(model))

    m = an.messages.create(model=CLAUDE, max_tokens=50, messages=ask, tools=[WEATHER_TOOL_ANTHROPIC])
    assert m.stop_reason == "tool_use", "/v1/messages: stop_reason tool_use"
    assert m.content[0].type == "tool_use" and m.content[0].name == "get_weather", "the SDK sees a tool_use block"
    assert m.content[0].input == {}, "the tool input passes through"
    expected += cost(anthropic_quantities(m.usage), gw.prices(CLAUDE))
    with an.messages.stream(model=CLAUDE, max_tokens=50, messages=ask, tools=[WEATHER_TOOL_ANTHROPIC]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.stop_reason == "tool_use", "streamed tool_use"
    expected += cost(anthropic_quantities(final.usage), gw.prices(CLAUDE))

    gw.wait_spend(key["key_id"], expected)


def test_cache_tokens_are_billed(gw, fake):
    key = gw.create_key()
    oa, an = gw.openai(key["key"]), gw.anthropic(key["key"])
    expected = Decimal(0)

    for model, n in ((GPT, 1024), (CLAUDE, 2048)):
        msgs = [{"role": "user", "content": f"Summarise the cached document. [[x-fake-cache-read:{n}]]"}]
        r = oa.chat.completions.create(model=model, messages=msgs, max_tokens=5,
                                       extra_headers={"x-fake-cache-read": str(n)})
        assert r.usage.prompt_tokens_details.cached_tokens == n, f"{model}: cached tokens reported: {r.usage}"
        assert r.usage.prompt_tokens == fake_input_tokens(msgs) + n, f"{model}: prompt tokens include the cached"
        c = cost(openai_quantities(r.usage), gw.prices(model))
        assert c < cost({"input_tokens": r.usage.prompt_tokens, "output_tokens": 5}, gw.prices(model)), \
            f"{model}: cached tokens are cheaper than input"
        expected += c

    msgs = [{"role": "user", "content": "Use the cache. [[x-fake-cache-read:3000]] [[x-fake-cache-write:500]]"}]
    m = an.messages.create(model=CLAUDE, max_tokens=5, messages=msgs,
                           extra_headers={"x-fake-cache-read": "3000", "x-fake-cache-write": "500"})
    assert m.usage.cache_read_input_tokens == 3000, f"Anthropic cache reads pass through: {m.usage}"
    assert m.usage.cache_creation_input_tokens == 500, f"Anthropic cache writes pass through: {m.usage}"
    assert m.usage.input_tokens == fake_input_tokens(msgs), "input tokens exclude the cache"
    expected += cost(anthropic_quantities(m.usage), gw.prices(CLAUDE))

    with an.messages.stream(model=CLAUDE, max_tokens=5, messages=msgs,
                            extra_headers={"x-fake-cache-read": "3000", "x-fake-cache-write": "500"}) as s:
        final = s.get_final_message()
    assert final.usage.cache_read_input_tokens == 3000, "streamed cache reads (message_start)"
    expected += cost(anthropic_quantities(final.usage), gw.prices(CLAUDE))

    spend = gw.wait_spend(key["key_id"], expected)
    assert spend["total_requests"] == 4, f"four calls: {spend}"


def test_anthropic_route_plain_and_stream_pass_through(gw, fake):
    key = gw.create_key()
    an = gw.anthropic(key["key"])
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Hello, Claude"}]}]
    raw = an.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, system="Be kind.", messages=msgs)
    m = raw.parse()
    assert m.id.startswith("msg_") and m.content[0].text == fake_reply(100), "the upstream message passes through"
    assert m.usage.input_tokens == fake_input_tokens(msgs, "Be kind."), "usage passes through"
    sent = fake.last()["messages"]
    assert sent["headers"].get("x-api-key") == FAKE_ANTHROPIC_KEY, "upstream gets the provider key"
    assert sent["body"].get("system") == "Be kind.", "system passes through"
    expected = cost(anthropic_quantities(m.usage), gw.prices(CLAUDE))
    with an.messages.stream(model=CLAUDE, max_tokens=4, messages=msgs) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == fake_reply(4) and final.stop_reason == "max_tokens", "the stream passes through"
    assert final.usage.output_tokens == 4, "message_delta usage passes through"
    expected += cost(anthropic_quantities(final.usage), gw.prices(CLAUDE))
    gw.wait_spend(key["key_id"], expected)
