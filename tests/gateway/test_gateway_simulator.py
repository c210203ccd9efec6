"""Stock SDKs against a fresh `tally serve` with no provider keys: the built-in simulator answers in
each provider's wire format, and the key's spend is exactly the sum of the calls' costs."""

from __future__ import annotations

from decimal import Decimal

import httpx

from conftest import HTTP_TIMEOUT
from gwhelpers import CLAUDE, GPT, anthropic_quantities, cost, openai_quantities

MESSAGES = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name three primary colours."}]
USER_ONLY = [{"role": "user", "content": "Name three primary colours."}]


def test_openai_and_anthropic_sdks_on_the_simulator_bill_exactly(sim):
    key = sim.create_key()
    oa = sim.openai(key["key"])
    expected = Decimal(0)
    by_model: dict[str, Decimal] = {CLAUDE: Decimal(0), GPT: Decimal(0)}

    for model in (CLAUDE, GPT):
        raw = oa.chat.completions.with_raw_response.create(model=model, max_tokens=40, messages=MESSAGES)
        assert raw.headers.get("x-tally-simulated") == "true", f"{model}: the simulator answered, and says so"
        r = raw.parse()
        assert r.object == "chat.completion", f"{model}: an OpenAI chat.completion"
        assert r.choices and r.choices[0].message.content, f"{model}: a reply with text"
        assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, \
            f"{model}: usage with input and output tokens: {r.usage}"
        c = cost(openai_quantities(r.usage), sim.prices(model))
        expected += c
        by_model[model] += c

        stream = oa.chat.completions.create(model=model, max_tokens=40, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text, f"{model}: the stream carries text"
        usage = [ch.usage for ch in chunks if ch.usage is not None]
        assert len(usage) == 1, f"{model}: exactly one usage chunk when include_usage is set"
        assert usage[0].completion_tokens > 0, f"{model}: streamed usage counts the output"
        c = cost(openai_quantities(usage[0]), sim.prices(model))
        expected += c
        by_model[model] += c

    an = sim.anthropic(key["key"])
    raw = an.messages.with_raw_response.create(model=CLAUDE, max_tokens=40, messages=USER_ONLY, system="Be brief.")
    assert raw.headers.get("x-tally-simulated") == "true", "/v1/messages: the simulator answered"
    m = raw.parse()
    assert m.type == "message" and m.content and m.content[0].type == "text", "an Anthropic message with text"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"Anthropic usage: {m.usage}"
    c = cost(anthropic_quantities(m.usage), sim.prices(CLAUDE))
    expected += c
    by_model[CLAUDE] += c

    with an.messages.stream(model=CLAUDE, max_tokens=40, messages=USER_ONLY) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text, "messages.stream yields text"
    assert final.usage.output_tokens > 0, "the streamed message has usage"
    c = cost(anthropic_quantities(final.usage), sim.prices(CLAUDE))
    expected += c
    by_model[CLAUDE] += c

    spend = sim.wait_spend(key["key_id"], expected)
    assert spend["total_requests"] == 6, f"six calls counted: {spend}"
    assert {m: Decimal(v) for m, v in spend["by_model"].items()} == by_model, \
        f"spend by model is exact: {spend['by_model']} vs {by_model}"
    assert spend["total_tokens"] > 0, "tokens counted"


def test_x_api_key_header_and_bearer_both_authenticate(sim):
    key = sim.create_key()
    body = {"model": CLAUDE, "max_tokens": 20, "messages": USER_ONLY}
    r = httpx.post(f"{sim.url}/v1/messages", json=body, headers={"x-api-key": key["key"]}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"x-api-key authenticates on /v1/messages: {r.status_code} {r.text}"
    assert r.json()["type"] == "message", "an Anthropic message"
    r = httpx.post(f"{sim.url}/v1/chat/completions", json=body, timeout=HTTP_TIMEOUT,
                   headers={"authorization": f"Bearer {key['key']}"})
    assert r.status_code == 200, f"Bearer authenticates on /v1/chat/completions: {r.status_code} {r.text}"
    r = httpx.post(f"{sim.url}/v1/chat/completions", json=body, headers={"x-api-key": key["key"]},
                   timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"x-api-key authenticates on /v1/chat/completions too: {r.status_code} {r.text}"


def test_models_lists_what_the_key_may_use(sim):
    everything = sim.create_key()
    ids = {m.id for m in sim.openai(everything["key"]).models.list()}
    assert {CLAUDE, GPT} <= ids, f"a key without a list may use every catalogue model: {sorted(ids)}"
    only = sim.create_key(allowed_models=[CLAUDE])
    page = sim.openai(only["key"]).models.list()
    assert [m.id for m in page] == [CLAUDE], f"a key's list limits /v1/models: {[m.id for m in page]}"
    assert all(m.object == "model" for m in page), "OpenAI model objects"
