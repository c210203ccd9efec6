"""The fake upstream speaks the providers' wire formats well enough for the stock SDKs: pointed at it
directly, the openai and anthropic SDKs parse every answer (plain, streamed, tool calls, usage)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import FAKE_ANTHROPIC_KEY, HTTP_TIMEOUT, _start_fake
from gwhelpers import (CLAUDE, GPT, REPLY_WORDS, WEATHER_TOOL_ANTHROPIC, WEATHER_TOOL_OPENAI, fake_input_tokens,
                       fake_output_tokens, fake_reply, parse_sse)

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_openai_sdk_plain_with_n_and_usage(fake):
    client = fake.openai()
    raw = client.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES, n=2, max_tokens=5)
    assert raw.headers.get("x-request-id", "").startswith("req_"), "OpenAI answers carry x-request-id"
    r = raw.parse()
    assert r.object == "chat.completion", "object is chat.completion"
    assert r.model == GPT, "the model is echoed"
    assert [c.index for c in r.choices] == [0, 1], "n=2 gives two choices"
    for c in r.choices:
        assert c.message.role == "assistant", "assistant message"
        assert c.message.content == fake_reply(5), "the reply is the first max_tokens words"
        assert c.message.refusal is None, "refusal is null"
        assert c.finish_reason == "length", "a reply cut by max_tokens ends with length"
    assert r.usage.prompt_tokens == fake_input_tokens(MESSAGES), "prompt tokens follow the documented formula"
    assert r.usage.completion_tokens == 2 * 5, "completion tokens are max_tokens x n"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total = prompt + completion"
    assert r.usage.prompt_tokens_details.cached_tokens == 0, "no cached tokens unless asked"
    assert r.usage.completion_tokens_details.reasoning_tokens == 0, "reasoning tokens reported as 0"


def test_openai_sdk_natural_end_and_max_completion_tokens(fake):
    client = fake.openai()
    r = client.chat.completions.create(model=GPT, messages=MESSAGES)
    assert r.choices[0].message.content == fake_reply(None), "the whole sentence without a limit"
    assert r.choices[0].finish_reason == "stop", "a natural end is stop"
    assert r.usage.completion_tokens == len(REPLY_WORDS), "12 output tokens by default"
    r = client.chat.completions.create(model=GPT, messages=MESSAGES, max_completion_tokens=3, max_tokens=7)
    assert r.usage.completion_tokens == 3, "max_completion_tokens wins over max_tokens"


def test_openai_sdk_cached_tokens_header(fake):
    client = fake.openai()
    r = client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=4,
                                       extra_headers={"x-fake-cache-read": "1000"})
    assert r.usage.prompt_tokens_details.cached_tokens == 1000, "cached tokens from x-fake-cache-read"
    assert r.usage.prompt_tokens == fake_input_tokens(MESSAGES) + 1000, "cached tokens are part of prompt tokens"


def test_openai_sdk_stream_with_usage(fake):
    client = fake.openai()
    stream = client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=6, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_reply(6), "the streamed deltas make the reply"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"], "one finish_reason, length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None, "the last chunk carries usage and no choices"
    assert chunks[-1].usage.completion_tokens == 6, "streamed usage counts the output"
    assert all(c.object == "chat.completion.chunk" for c in chunks), "every frame is a chat.completion.chunk"


def test_openai_stream_without_include_usage_has_no_usage_and_ends_with_done(fake):
    r = httpx.post(f"{fake.url}/v1/chat/completions", headers={"authorization": "Bearer x"}, timeout=HTTP_TIMEOUT,
                   json={"model": GPT, "messages": MESSAGES, "stream": True, "n": 2, "max_tokens": 2})
    assert r.headers["content-type"].startswith("text/event-stream"), "streams are SSE"
    frames = parse_sse(r.text)
    assert frames[-1] == (None, "[DONE]"), "the stream ends with data: [DONE]"
    chunks = [json.loads(d) for _, d in frames[:-1]]
    assert all("usage" not in c for c in chunks), "no usage field without include_usage"
    indexes = {c["choices"][0]["index"] for c in chunks}
    assert indexes == {0, 1}, "n=2 streams both choices"


def test_openai_sdk_tool_call_plain_and_streamed(fake):
    client = fake.openai()
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model=GPT, messages=msgs, tools=[WEATHER_TOOL_OPENAI])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls", "a tool call ends with tool_calls"
    assert call.id.startswith("call_") and call.type == "function", "an OpenAI function call"
    assert call.function.name == "get_weather" and call.function.arguments == "{}", "the first tool, arguments {}"
    assert r.choices[0].message.content is None, "no text next to the tool call"

    with client.chat.completions.stream(model=GPT, messages=msgs, tools=[WEATHER_TOOL_OPENAI],
                                        stream_options={"include_usage": True}) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == "{}", "streamed tool call assembles"
    assert final.choices[0].finish_reason == "tool_calls", "streamed finish_reason tool_calls"
    assert final.usage is not None and final.usage.completion_tokens == len(REPLY_WORDS), "usage on the stream"

    # After the tool's result the model answers in text.
    follow = msgs + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude={"parsed_arguments", "index"}, exclude_none=True)]},
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r = client.chat.completions.create(model=GPT, messages=follow, tools=[WEATHER_TOOL_OPENAI])
    assert r.choices[0].message.content == fake_reply(None), "no tool call once the last message is a tool result"


def test_openai_auth_and_bad_body_errors(fake):
    r = httpx.post(f"{fake.url}/v1/chat/completions", json={"model": GPT, "messages": MESSAGES}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401, "no bearer: 401"
    assert r.json()["error"]["code"] == "invalid_api_key", "OpenAI's error body"
    r = httpx.post(f"{fake.url}/v1/chat/completions", content=b"{not json", timeout=HTTP_TIMEOUT,
                   headers={"authorization": "Bearer x"})
    assert r.status_code == 400 and "message" in r.json()["error"], "malformed JSON: 400 in OpenAI's shape"


def test_anthropic_sdk_plain_with_cache_tokens(fake):
    client = fake.anthropic()
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    raw = client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, system="Be brief.", messages=msgs,
        extra_headers={"x-fake-cache-read": "300", "x-fake-cache-write": "200"})
    assert raw.headers.get("request-id", "").startswith("req_"), "Anthropic answers carry request-id"
    m = raw.parse()
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant", "an Anthropic message"
    assert m.content[0].type == "text" and m.content[0].text == fake_reply(100), "one text block"
    assert m.stop_reason == "end_turn" and m.stop_sequence is None, "natural end is end_turn"
    assert m.usage.input_tokens == fake_input_tokens(msgs, "Be brief."), "input counts system and messages"
    assert m.usage.output_tokens == len(REPLY_WORDS), "12 output tokens"
    assert m.usage.cache_read_input_tokens == 300, "cache reads from x-fake-cache-read, apart from input"
    assert m.usage.cache_creation_input_tokens == 200, "cache writes from x-fake-cache-write"


def test_anthropic_sdk_stream_text_and_usage(fake):
    client = fake.anthropic()
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
    with client.messages.stream(model=CLAUDE, max_tokens=5, messages=msgs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == fake_reply(5), "text deltas make the reply"
    assert final.stop_reason == "max_tokens", "a cut reply ends with max_tokens"
    assert final.usage.output_tokens == 5, "message_delta carries the output tokens"
    assert final.usage.input_tokens == fake_input_tokens(msgs), "message_start carries the input tokens"


def test_anthropic_stream_event_sequence_with_x_api_key(fake):
    r = httpx.post(f"{fake.url}/v1/messages", headers={"x-api-key": FAKE_ANTHROPIC_KEY}, timeout=HTTP_TIMEOUT,
                   json={"model": CLAUDE, "max_tokens": 3, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, f"x-api-key is accepted: {r.text}"
    events = [e for e, _ in parse_sse(r.text)]
    assert events == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                      "content_block_delta", "content_block_stop", "message_delta", "message_stop"], \
        f"Anthropic's event sequence: {events}"
    for e, d in parse_sse(r.text):
        assert json.loads(d)["type"] == e, "each data's type names its event"


def test_anthropic_sdk_tool_use_plain_and_streamed(fake):
    client = fake.anthropic()
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    m = client.messages.create(model=CLAUDE, max_tokens=200, messages=msgs, tools=[WEATHER_TOOL_ANTHROPIC])
    assert m.stop_reason == "tool_use", "a tool call ends with tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {}, "a tool_use block"
    assert block.id.startswith("toolu_"), "tool_use ids start with toolu_"

    with client.messages.stream(model=CLAUDE, max_tokens=200, messages=msgs, tools=[WEATHER_TOOL_ANTHROPIC]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {}, "input_json_delta assembles"
    assert final.stop_reason == "tool_use", "streamed stop_reason tool_use"

    follow = msgs + [{"role": "assistant", "content": [block.model_dump()]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]}]
    m = client.messages.create(model=CLAUDE, max_tokens=200, messages=follow, tools=[WEATHER_TOOL_ANTHROPIC])
    assert m.content[0].type == "text", "after a tool_result the model answers in text"
    assert m.usage.input_tokens == fake_input_tokens(follow), "tool_result text counts as input"


def test_anthropic_errors(fake):
    r = httpx.post(f"{fake.url}/v1/messages", headers={"x-api-key": "k"}, timeout=HTTP_TIMEOUT,
                   json={"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400, "missing max_tokens: 400"
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", "Anthropic's error body"
    assert "max_tokens" in body["error"]["message"], "the message names max_tokens"
    r = httpx.post(f"{fake.url}/v1/messages", timeout=HTTP_TIMEOUT,
                   json={"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", "no key: 401"


def test_slow_stream_header_spaces_deltas(fake):
    client = fake.openai()
    started = time.monotonic()
    stamps = []
    for chunk in client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=4, stream=True,
                                                extra_headers={"x-fake-slow-stream-ms": "150"}):
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.monotonic() - started)
    assert len(stamps) == 4, "four deltas"
    assert stamps[-1] - stamps[0] >= 0.4, f"three gaps of 150 ms between deltas: {stamps}"


@pytest.fixture(scope="module")
def fake_latency(_session_tmp):
    f = _start_fake(_session_tmp, "fake-latency", "--latency-ms", "200", "--workers", "2")
    yield f
    f.proc.stop()


def test_latency_flag_delays_the_answer(fake_latency):
    client = fake_latency.openai()
    started = time.monotonic()
    client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    took = time.monotonic() - started
    assert 0.2 <= took < 2.0, f"--latency-ms 200 delays the answer by ~200 ms, took {took:.3f}s"


def test_stats_count_requests(fake):
    before = fake.stats()
    fake.openai().chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    after = fake.stats()
    assert after["chat_completions"] == before["chat_completions"] + 1, "stats count each request"
    assert fake.last()["chat_completions"]["body"]["max_tokens"] == 1, "last shows the last request's body"


def test_text_markers_work_like_the_headers(fake):
    msgs = [{"role": "user", "content": "hi [[x-fake-cache-read:50]]"}]
    r = fake.openai().chat.completions.create(model=GPT, messages=msgs, max_tokens=2)
    assert r.usage.prompt_tokens_details.cached_tokens == 50, "a [[x-fake-cache-read:N]] marker reads N cached tokens"
    assert r.usage.prompt_tokens == fake_input_tokens(msgs) + 50, "the marker is ordinary input text"
    r = fake.openai().chat.completions.create(model=GPT, messages=msgs, max_tokens=2,
                                              extra_headers={"x-fake-cache-read": "9"})
    assert r.usage.prompt_tokens_details.cached_tokens == 9, "the header wins over the marker"
    msgs = [{"role": "user", "content": "hi [[x-fake-cache-write:7]] [[x-fake-cache-read:3]]"}]
    m = fake.anthropic().messages.create(model=CLAUDE, max_tokens=2, messages=msgs)
    assert (m.usage.cache_creation_input_tokens, m.usage.cache_read_input_tokens) == (7, 3), "Anthropic markers"
