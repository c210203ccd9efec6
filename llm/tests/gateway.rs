//! Gateway pass-through upstreams against a local server speaking the Anthropic and OpenAI wire formats, and the simulator in both formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{fast_retry, frame, MockServer, Reply, TEST_TIMEOUT};
use futures::StreamExt;
use serde_json::{json, Value};
use tally_llm::gateway::{
    AnthropicUpstream, OpenAiUpstream, SimulatedUpstream, SseFrame, Upstream, UpstreamReply,
    UpstreamResponse, UpstreamRouter, UpstreamStream, UsageTracker, WireFormat,
};
use tally_llm::{
    count_input_tokens, count_tokens, AnthropicConfig, ChatMessage, ChatRequest, LlmError,
    OpenAiConfig, RetryPolicy, TokenUsage,
};

const ANTHROPIC_KEY: &str = "sk-ant-gateway-test";
const OPENAI_KEY: &str = "sk-openai-gateway-test";
/// The request id the mock server puts on every answer (Anthropic's header name).
const MOCK_REQUEST_ID: &str = "req_011CTestMockServer";
const OPENAI_REQUEST_ID: &str = "req_8f3c0openai";

fn anthropic(server: &MockServer, retry: RetryPolicy) -> AnthropicUpstream {
    let mut config = AnthropicConfig::new(ANTHROPIC_KEY);
    config.base_url = server.base_url();
    config.timeout = Duration::from_secs(10);
    config.retry = retry;
    AnthropicUpstream::new(config).expect("valid Anthropic config")
}

fn openai(server: &MockServer, retry: RetryPolicy) -> OpenAiUpstream {
    let mut config = OpenAiConfig::new(OPENAI_KEY);
    config.base_url = server.base_url();
    config.timeout = Duration::from_secs(10);
    config.retry = retry;
    OpenAiUpstream::new(config).expect("valid OpenAI config")
}

fn reply(response: UpstreamResponse) -> UpstreamReply {
    match response {
        UpstreamResponse::Reply(r) => r,
        UpstreamResponse::Stream(s) => panic!("expected a complete reply, got a stream: {s:?}"),
    }
}

fn stream(response: UpstreamResponse) -> UpstreamStream {
    match response {
        UpstreamResponse::Stream(s) => s,
        UpstreamResponse::Reply(r) => panic!("expected a stream, got a reply: {r:?}"),
    }
}

/// All items of a stream's frames (bounded by the test timeout).
async fn items(s: UpstreamStream) -> Vec<Result<SseFrame, LlmError>> {
    tokio::time::timeout(TEST_TIMEOUT, s.frames.collect::<Vec<_>>())
        .await
        .expect("frames end within the test timeout")
}

/// All frames of a stream that must not fail.
async fn frames(s: UpstreamStream) -> Vec<SseFrame> {
    items(s)
        .await
        .into_iter()
        .map(|f| f.expect("no frame fails"))
        .collect()
}

fn tracked(format: WireFormat, frames: &[SseFrame]) -> UsageTracker {
    let mut tracker = UsageTracker::new(format);
    for f in frames {
        tracker.observe(f);
    }
    tracker
}

fn data_json(f: &SseFrame) -> Value {
    serde_json::from_str(&f.data).unwrap_or_else(|e| panic!("frame data is JSON ({e}): {f:?}"))
}

// ---------------------------------------------------------------- Anthropic wire format

/// A Messages request using features the plain-text provider does not know.
fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "tools": [{
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]}
        ],
        "metadata": {"user_id": "u-42"}
    })
}

const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000},"output_tokens":46,"service_tier":"standard"}}"#;

fn anthropic_stream_frames() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01StreamTest","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":300,"cache_read_input_tokens":1024,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1,"service_tier":"standard"}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me "}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]
}

#[tokio::test]
async fn anthropic_reply_passes_body_through_and_parses_usage() {
    let server = MockServer::start(vec![Reply::json(200, ANTHROPIC_MESSAGE)]).await;
    let sent = anthropic_body(false);
    let r = reply(
        anthropic(&server, fast_retry(3))
            .send(sent.clone())
            .await
            .expect("reply"),
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one request is sent");
    let req = &requests[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/messages"),
        "Messages endpoint"
    );
    assert_eq!(
        req.header("x-api-key"),
        Some(ANTHROPIC_KEY),
        "key in x-api-key"
    );
    assert_eq!(
        req.header("anthropic-version"),
        Some("2023-06-01"),
        "anthropic-version header"
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/json"),
        "JSON body"
    );
    assert_eq!(
        req.json(),
        sent,
        "the body reaches the upstream unchanged (tools, content blocks, cache_control)"
    );

    assert_eq!(r.status, 200, "upstream status");
    assert_eq!(
        r.body,
        serde_json::from_str::<Value>(ANTHROPIC_MESSAGE).unwrap(),
        "the body is returned as received"
    );
    assert_eq!(
        r.usage,
        TokenUsage {
            input_tokens: 21,
            output_tokens: 46,
            cache_write_5m_tokens: 500,
            cache_write_1h_tokens: 1000,
            cache_read_tokens: 3000,
        },
        "usage maps input, the 5m/1h cache-write split and cache reads exactly"
    );
    assert_eq!(
        r.request_id.as_deref(),
        Some(MOCK_REQUEST_ID),
        "request-id header captured"
    );
    assert!(!r.simulated, "a real upstream is not simulated");
}

#[tokio::test]
async fn anthropic_stream_returns_frames_as_sent_with_exact_usage() {
    let recorded = anthropic_stream_frames();
    let chunks = recorded.iter().map(|(e, d)| frame(e, d)).collect();
    let server = MockServer::start(vec![Reply::sse(chunks)]).await;
    let sent = anthropic_body(true);
    let s = stream(
        anthropic(&server, fast_retry(1))
            .send(sent.clone())
            .await
            .expect("stream"),
    );
    assert_eq!(s.status, 200, "stream status");
    assert_eq!(
        s.request_id.as_deref(),
        Some(MOCK_REQUEST_ID),
        "request id of a stream"
    );
    assert!(!s.simulated, "a real stream is not simulated");
    let got = frames(s).await;

    assert_eq!(
        server.requests()[0].json(),
        sent,
        "the streaming body reaches the upstream unchanged"
    );
    assert_eq!(
        server.requests()[0].header("accept"),
        Some("text/event-stream"),
        "a stream accepts SSE"
    );
    let expected: Vec<SseFrame> = recorded
        .iter()
        .map(|(e, d)| SseFrame::named(*e, *d))
        .collect();
    assert_eq!(
        got, expected,
        "frames arrive exactly as sent, in order, tool-use blocks included"
    );
    let tracker = tracked(WireFormat::Anthropic, &got);
    assert!(tracker.finished(), "message_stop was seen");
    assert_eq!(
        tracker.usage(),
        TokenUsage {
            input_tokens: 472,
            output_tokens: 89,
            cache_write_5m_tokens: 100,
            cache_write_1h_tokens: 200,
            cache_read_tokens: 1024,
        },
        "stream usage is exact"
    );
    assert_eq!(
        tracker.model(),
        Some("claude-sonnet-4-5-20250929"),
        "model from message_start"
    );
}

#[tokio::test]
async fn anthropic_529_then_success_is_retried() {
    let overloaded =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let server = MockServer::start(vec![
        Reply::json(529, overloaded).with_header("retry-after", "0"),
        Reply::json(200, ANTHROPIC_MESSAGE),
    ])
    .await;
    let r = reply(
        anthropic(&server, fast_retry(3))
            .send(anthropic_body(false))
            .await
            .expect("reply"),
    );
    assert_eq!(server.requests().len(), 2, "the 529 is retried once");
    assert_eq!(r.status, 200, "the retry's success is returned");
    assert_eq!(r.usage.output_tokens, 46, "usage of the successful answer");
}

#[tokio::test]
async fn anthropic_400_is_passed_through_without_retry() {
    let error = r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0.content: Input should be a valid list"},"request_id":"req_011CBodyId"}"#;
    let server = MockServer::start(vec![Reply::json(400, error)]).await;
    let r = reply(
        anthropic(&server, fast_retry(3))
            .send(anthropic_body(true))
            .await
            .expect("reply"),
    );
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
    assert_eq!(r.status, 400, "the provider's status is passed through");
    assert_eq!(
        r.body,
        serde_json::from_str::<Value>(error).unwrap(),
        "the provider's error body is passed through"
    );
    assert!(r.usage.is_zero(), "an error carries no usage");
    assert_eq!(
        r.request_id.as_deref(),
        Some(MOCK_REQUEST_ID),
        "the header id wins over the body's"
    );
}

#[tokio::test]
async fn anthropic_stream_cut_before_message_stop_ends_with_interrupted() {
    let recorded = anthropic_stream_frames();
    let chunks = recorded[..4].iter().map(|(e, d)| frame(e, d)).collect();
    let server = MockServer::start(vec![Reply::sse_dropped(chunks)]).await;
    let s = stream(
        anthropic(&server, fast_retry(1))
            .send(anthropic_body(true))
            .await
            .expect("stream"),
    );
    let all = items(s).await;
    assert_eq!(all.len(), 5, "four frames then one error: {all:?}");
    assert!(
        matches!(all[4], Err(LlmError::Interrupted(_))),
        "the cut is reported: {:?}",
        all[4]
    );
    let got: Vec<SseFrame> = all.into_iter().filter_map(Result::ok).collect();
    let tracker = tracked(WireFormat::Anthropic, &got);
    assert!(!tracker.finished(), "no message_stop");
    assert_eq!(
        tracker.usage().input_tokens,
        472,
        "input read before the cut is known"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = AnthropicConfig::new(ANTHROPIC_KEY);
    config.base_url = format!("http://{addr}");
    config.retry = fast_retry(2);
    let upstream = AnthropicUpstream::new(config).unwrap();
    let result = upstream.send(anthropic_body(false)).await;
    assert!(
        matches!(result, Err(LlmError::Transport(_))),
        "connection refused is a transport error: {result:?}"
    );
}

// ---------------------------------------------------------------- OpenAI wire format

fn openai_body(stream: bool, stream_options: Option<Value>) -> Value {
    let mut body = json!({
        "model": "gpt-4o",
        "n": 2,
        "temperature": 0.2,
        "messages": [
            {"role": "developer", "content": "You are a weather bot."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "auto"
    });
    if stream {
        body["stream"] = json!(true);
    }
    if let Some(options) = stream_options {
        body["stream_options"] = options;
    }
    body
}

const OPENAI_COMPLETION: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"},{"index":1,"message":{"role":"assistant","content":"Sunny.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

const OPENAI_CHUNKS: [&str; 4] = [
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Sunny."},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
];

fn openai_sse() -> Reply {
    let mut chunks: Vec<String> = OPENAI_CHUNKS
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect();
    chunks.push("data: [DONE]\n\n".into());
    Reply::sse(chunks).with_header("x-request-id", OPENAI_REQUEST_ID)
}

const OPENAI_STREAM_USAGE: TokenUsage = TokenUsage {
    input_tokens: 86,
    output_tokens: 300,
    cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0,
    cache_read_tokens: 1920,
};

#[tokio::test]
async fn openai_reply_passes_body_through_and_parses_cached_usage() {
    let server = MockServer::start(vec![
        Reply::json(200, OPENAI_COMPLETION).with_header("x-request-id", OPENAI_REQUEST_ID)
    ])
    .await;
    let sent = openai_body(false, None);
    let r = reply(
        openai(&server, fast_retry(3))
            .send(sent.clone())
            .await
            .expect("reply"),
    );

    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions"),
        "Chat Completions endpoint"
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str()),
        "bearer key"
    );
    assert_eq!(
        req.json(),
        sent,
        "the body reaches the upstream unchanged (tools, content parts, n)"
    );
    assert_eq!(r.status, 200, "upstream status");
    assert_eq!(
        r.body,
        serde_json::from_str::<Value>(OPENAI_COMPLETION).unwrap(),
        "the body is returned as received"
    );
    assert_eq!(
        r.usage,
        TokenUsage {
            input_tokens: 93,
            output_tokens: 46,
            cache_read_tokens: 1024,
            ..TokenUsage::default()
        },
        "cached prompt tokens are cache reads, the rest input"
    );
    assert_eq!(
        r.request_id.as_deref(),
        Some(OPENAI_REQUEST_ID),
        "x-request-id captured"
    );
}

#[tokio::test]
async fn openai_stream_asks_for_usage_and_withholds_it_from_clients_that_did_not() {
    let server = MockServer::start(vec![openai_sse()]).await;
    let sent = openai_body(true, None);
    let s = stream(
        openai(&server, fast_retry(1))
            .send(sent.clone())
            .await
            .expect("stream"),
    );
    assert_eq!(
        s.request_id.as_deref(),
        Some(OPENAI_REQUEST_ID),
        "x-request-id of a stream"
    );
    let withheld = s.withheld_usage.clone();
    let got = frames(s).await;

    let mut expected_body = sent;
    expected_body["stream_options"] = json!({"include_usage": true});
    assert_eq!(
        server.requests()[0].json(),
        expected_body,
        "include_usage is added, nothing else changes"
    );
    let expected: Vec<SseFrame> = OPENAI_CHUNKS[..3]
        .iter()
        .map(|c| SseFrame::data(*c))
        .chain([SseFrame::data("[DONE]")])
        .collect();
    assert_eq!(
        got, expected,
        "the usage-only chunk is withheld; the rest arrives as sent"
    );
    assert!(
        got.iter().all(|f| f.event.is_none()),
        "OpenAI frames have no event name"
    );

    let mut tracker = tracked(WireFormat::OpenAi, &got);
    assert!(tracker.finished(), "[DONE] was seen");
    assert!(
        tracker.usage().is_zero(),
        "the client-visible frames carry no usage"
    );
    tracker.observe_withheld(&withheld);
    assert_eq!(
        tracker.usage(),
        OPENAI_STREAM_USAGE,
        "the withheld usage is exact"
    );
}

#[tokio::test]
async fn openai_stream_keeps_usage_chunk_for_clients_that_asked() {
    let server = MockServer::start(vec![openai_sse()]).await;
    let sent = openai_body(true, Some(json!({"include_usage": true})));
    let s = stream(
        openai(&server, fast_retry(1))
            .send(sent.clone())
            .await
            .expect("stream"),
    );
    let withheld = s.withheld_usage.clone();
    let got = frames(s).await;
    assert_eq!(
        server.requests()[0].json(),
        sent,
        "a body that asks for usage is unchanged"
    );
    assert_eq!(got.len(), 5, "all four chunks and [DONE]: {got:?}");
    assert_eq!(
        got[3],
        SseFrame::data(OPENAI_CHUNKS[3]),
        "the usage chunk is passed on"
    );
    assert_eq!(
        tracked(WireFormat::OpenAi, &got).usage(),
        OPENAI_STREAM_USAGE,
        "usage from the usage chunk"
    );
    assert_eq!(withheld.get(), None, "nothing was withheld");
}

#[tokio::test]
async fn openai_429_then_success_is_retried() {
    let limited = r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let server = MockServer::start(vec![
        Reply::json(429, limited).with_header("retry-after", "0.01"),
        openai_sse(),
    ])
    .await;
    let s = stream(
        openai(&server, fast_retry(3))
            .send(openai_body(true, Some(json!({"include_usage": true}))))
            .await
            .expect("stream after retry"),
    );
    let got = frames(s).await;
    assert_eq!(server.requests().len(), 2, "the 429 is retried once");
    assert_eq!(
        tracked(WireFormat::OpenAi, &got).usage(),
        OPENAI_STREAM_USAGE,
        "the retried stream's usage"
    );
}

#[tokio::test]
async fn openai_429_after_retries_is_passed_through() {
    let limited = r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let server = MockServer::start(vec![Reply::json(429, limited)
        .with_header("retry-after", "0")
        .with_header("x-request-id", OPENAI_REQUEST_ID)])
    .await;
    let r = reply(
        openai(&server, fast_retry(2))
            .send(openai_body(true, None))
            .await
            .expect("reply"),
    );
    assert_eq!(
        server.requests().len(),
        2,
        "the policy's attempts are used up"
    );
    assert_eq!(r.status, 429, "the last status is passed through");
    assert_eq!(
        r.body,
        serde_json::from_str::<Value>(limited).unwrap(),
        "the provider's body is passed through"
    );
    assert_eq!(
        r.request_id.as_deref(),
        Some(OPENAI_REQUEST_ID),
        "request id of the error"
    );
    assert!(r.usage.is_zero(), "no usage on errors");
}

#[tokio::test]
async fn non_json_error_page_is_wrapped_in_the_provider_shape() {
    let page = Reply {
        status: 503,
        headers: vec![("content-type".into(), "text/html".into())],
        body: common::Body::Full(b"<html>upstream connect error</html>".to_vec()),
    };
    let server = MockServer::start(vec![page]).await;
    let r = reply(
        openai(&server, fast_retry(1))
            .send(openai_body(false, None))
            .await
            .expect("reply"),
    );
    assert_eq!(r.status, 503, "status passed through");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream connect error"),
        "the page text is kept: {}",
        r.body
    );
}

// ---------------------------------------------------------------- simulator

fn sim(format: WireFormat) -> SimulatedUpstream {
    SimulatedUpstream::new(format, Duration::ZERO)
}

fn sim_anthropic_body(max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "stream": stream,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "user", "content": [{"type": "text", "text": "Tell me about the sea"}, {"type": "image", "source": {}}]}
        ]
    })
}

fn sim_openai_body(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Tell me about the sea"}]}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The plain-text request both simulator bodies above amount to.
fn equivalent_chat(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: Some("Be brief.".into()),
        messages: vec![
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
            ChatMessage::user("Tell me about the sea"),
        ],
        max_tokens: 1024,
    }
}

#[tokio::test]
async fn simulated_anthropic_reply_has_the_messages_shape() {
    let r = reply(
        sim(WireFormat::Anthropic)
            .send(sim_anthropic_body(1024, false))
            .await
            .unwrap(),
    );
    let b = &r.body;
    assert_eq!(r.status, 200, "success status");
    assert!(r.simulated, "marked simulated");
    assert!(
        b["id"].as_str().unwrap().starts_with("msg_"),
        "message id: {b}"
    );
    assert_eq!(
        (b["type"].as_str(), b["role"].as_str()),
        (Some("message"), Some("assistant")),
        "message shape"
    );
    assert_eq!(b["model"], "claude-haiku-4-5", "requested model echoed");
    assert_eq!(b["content"][0]["type"], "text", "one text block");
    assert_eq!(b["stop_reason"], "end_turn", "ran to the end");
    assert!(b["stop_sequence"].is_null(), "stop_sequence is null");
    let text = b["content"][0]["text"].as_str().unwrap();
    let input = count_input_tokens(&equivalent_chat("claude-haiku-4-5")).unwrap();
    assert_eq!(
        b["usage"],
        json!({"input_tokens": input, "output_tokens": count_tokens(text).unwrap(), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        "usage counts system, string and text-part contents"
    );
    assert_eq!(r.usage.input_tokens, input, "parsed usage matches the body");
    assert_eq!(
        r.request_id.as_deref(),
        b["id"].as_str(),
        "request id is the message id"
    );
}

#[tokio::test]
async fn simulated_anthropic_stops_at_max_tokens() {
    let r = reply(
        sim(WireFormat::Anthropic)
            .send(sim_anthropic_body(3, false))
            .await
            .unwrap(),
    );
    assert_eq!(r.body["stop_reason"], "max_tokens", "cut at the limit");
    assert_eq!(r.usage.output_tokens, 3, "exactly max_tokens generated");
}

#[tokio::test]
async fn simulated_anthropic_stream_has_the_event_sequence() {
    let full = reply(
        sim(WireFormat::Anthropic)
            .send(sim_anthropic_body(1024, false))
            .await
            .unwrap(),
    );
    let s = stream(
        sim(WireFormat::Anthropic)
            .send(sim_anthropic_body(1024, true))
            .await
            .unwrap(),
    );
    assert!(s.simulated && s.status == 200, "a simulated 200 stream");
    let got = frames(s).await;
    let names: Vec<&str> = got.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"],
        "stream opening: {names:?}"
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "stream closing: {names:?}"
    );
    for f in &got {
        assert_eq!(
            data_json(f)["type"].as_str(),
            f.event.as_deref(),
            "data type matches the event name"
        );
    }
    let text: String = got
        .iter()
        .filter(|f| f.event.as_deref() == Some("content_block_delta"))
        .map(|f| {
            let d = data_json(f);
            assert_eq!(d["delta"]["type"], "text_delta", "text deltas");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        text,
        full.body["content"][0]["text"].as_str().unwrap(),
        "deltas join into the reply text"
    );
    let start = data_json(&got[0]);
    assert_eq!(
        start["message"]["model"], "claude-haiku-4-5",
        "message_start carries the model"
    );
    let delta = data_json(&got[got.len() - 2]);
    assert_eq!(
        delta["delta"]["stop_reason"], "end_turn",
        "message_delta carries the stop reason"
    );
    let tracker = tracked(WireFormat::Anthropic, &got);
    assert!(tracker.finished(), "the stream ends with message_stop");
    assert_eq!(
        tracker.usage(),
        full.usage,
        "streamed usage equals the complete reply's"
    );
}

#[tokio::test]
async fn simulated_openai_reply_honours_n_and_limits() {
    let r = reply(
        sim(WireFormat::OpenAi)
            .send(sim_openai_body(json!({"n": 3})))
            .await
            .unwrap(),
    );
    let b = &r.body;
    assert!(
        b["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "completion id: {b}"
    );
    assert_eq!(b["object"], "chat.completion", "object type");
    assert!(
        b["created"].as_u64().unwrap() > 1_700_000_000,
        "created is a unix time"
    );
    assert_eq!(b["model"], "gpt-4o-mini", "requested model echoed");
    let choices = b["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "n choices");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "choice index");
        assert_eq!(c["message"]["role"], "assistant", "assistant message");
        assert!(
            c["message"]["refusal"].is_null() && c["logprobs"].is_null(),
            "refusal and logprobs are null"
        );
        assert_eq!(c["finish_reason"], "stop", "ran to the end");
    }
    let text = choices[0]["message"]["content"].as_str().unwrap();
    let per_choice = count_tokens(text).unwrap();
    let input = count_input_tokens(&equivalent_chat("gpt-4o-mini")).unwrap();
    assert_eq!(
        b["usage"],
        json!({
            "prompt_tokens": input,
            "completion_tokens": 3 * per_choice,
            "total_tokens": input + 3 * per_choice,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        }),
        "completion tokens are summed over the choices"
    );
    assert_eq!(
        r.usage.output_tokens,
        3 * per_choice,
        "parsed usage matches the body"
    );

    for limit in ["max_tokens", "max_completion_tokens"] {
        let mut extra = json!({});
        extra[limit] = json!(4);
        let r = reply(
            sim(WireFormat::OpenAi)
                .send(sim_openai_body(extra))
                .await
                .unwrap(),
        );
        assert_eq!(
            r.body["choices"][0]["finish_reason"], "length",
            "{limit} cuts the reply"
        );
        assert_eq!(r.usage.output_tokens, 4, "{limit} bounds the output");
    }
}

#[tokio::test]
async fn simulated_openai_stream_with_usage() {
    let full = reply(
        sim(WireFormat::OpenAi)
            .send(sim_openai_body(json!({"n": 2})))
            .await
            .unwrap(),
    );
    let body =
        sim_openai_body(json!({"n": 2, "stream": true, "stream_options": {"include_usage": true}}));
    let s = stream(sim(WireFormat::OpenAi).send(body).await.unwrap());
    let got = frames(s).await;
    assert_eq!(
        got.last(),
        Some(&SseFrame::data("[DONE]")),
        "ends with [DONE]"
    );
    let chunks: Vec<Value> = got[..got.len() - 1].iter().map(data_json).collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "chunk object type");
        assert!(
            c.get("usage").is_some(),
            "with include_usage every chunk has a usage field"
        );
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "the first chunk carries the role"
    );
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(
        usage_chunk["choices"],
        json!([]),
        "the usage chunk has no choices"
    );
    assert_eq!(
        usage_chunk["usage"], full.body["usage"],
        "streamed usage equals the complete reply's"
    );
    for index in 0..2 {
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"].as_array().and_then(|a| a.first()).cloned())
            .filter(|c| c["index"] == index)
            .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            text,
            full.body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap(),
            "choice {index} text"
        );
        let finishes = chunks
            .iter()
            .filter_map(|c| c["choices"].as_array().and_then(|a| a.first()).cloned())
            .filter(|c| c["index"] == index && !c["finish_reason"].is_null())
            .count();
        assert_eq!(finishes, 1, "choice {index} finishes once");
    }
    let tracker = tracked(WireFormat::OpenAi, &got);
    assert!(tracker.finished(), "[DONE] finishes the stream");
    assert_eq!(
        tracker.usage(),
        full.usage,
        "tracked usage equals the complete reply's"
    );
}

#[tokio::test]
async fn simulated_openai_stream_without_usage_withholds_it() {
    let full = reply(
        sim(WireFormat::OpenAi)
            .send(sim_openai_body(json!({})))
            .await
            .unwrap(),
    );
    let s = stream(
        sim(WireFormat::OpenAi)
            .send(sim_openai_body(json!({"stream": true})))
            .await
            .unwrap(),
    );
    let withheld = s.withheld_usage.clone();
    let got = frames(s).await;
    assert_eq!(
        got.last(),
        Some(&SseFrame::data("[DONE]")),
        "ends with [DONE]"
    );
    for f in &got[..got.len() - 1] {
        let c = data_json(f);
        assert!(c.get("usage").is_none(), "no usage field unless asked: {c}");
        assert_eq!(
            c["choices"].as_array().map(Vec::len),
            Some(1),
            "every chunk has a choice"
        );
    }
    let mut tracker = tracked(WireFormat::OpenAi, &got);
    tracker.observe_withheld(&withheld);
    assert_eq!(
        tracker.usage(),
        full.usage,
        "the withheld usage is still exact"
    );
}

#[tokio::test]
async fn simulated_stream_paces_deltas() {
    let delay = Duration::from_millis(5);
    let upstream = SimulatedUpstream::new(WireFormat::Anthropic, delay);
    let started = Instant::now();
    let s = stream(upstream.send(sim_anthropic_body(8, true)).await.unwrap());
    let got = frames(s).await;
    let deltas = got
        .iter()
        .filter(|f| f.event.as_deref() == Some("content_block_delta"))
        .count();
    assert!(deltas >= 2, "several deltas: {deltas}");
    let expected = delay * u32::try_from(deltas - 1).unwrap();
    assert!(
        started.elapsed() >= expected,
        "deltas are {delay:?} apart: {:?} < {expected:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn simulator_answers_garbage_with_a_400() {
    let r = reply(
        sim(WireFormat::Anthropic)
            .send(json!({"model": "claude-x", "messages": "hi"}))
            .await
            .unwrap(),
    );
    assert_eq!(r.status, 400, "bad request");
    assert_eq!(r.body["type"], "error", "Anthropic error shape");
    assert_eq!(
        r.body["error"]["type"], "invalid_request_error",
        "error kind"
    );
    let r = reply(sim(WireFormat::OpenAi).send(json!([1, 2])).await.unwrap());
    assert_eq!(r.status, 400, "bad request");
    assert_eq!(
        r.body["error"]["type"], "invalid_request_error",
        "OpenAI error shape"
    );
    assert!(
        r.simulated && r.usage.is_zero(),
        "simulated, nothing billed"
    );
}

// ---------------------------------------------------------------- router

#[tokio::test]
async fn router_sends_configured_families_upstream_and_simulates_the_rest() {
    let server = MockServer::start(vec![Reply::json(200, ANTHROPIC_MESSAGE)]).await;
    let claude =
        std::sync::Arc::new(anthropic(&server, fast_retry(1))) as std::sync::Arc<dyn Upstream>;
    let router = UpstreamRouter::new(Some(claude), None, Duration::ZERO);
    let up = router
        .for_model("claude-sonnet-4-5")
        .expect("claude is routed");
    assert_eq!(
        (up.name(), up.is_simulated()),
        ("anthropic", false),
        "claude goes to Anthropic"
    );
    let r = reply(up.send(anthropic_body(false)).await.unwrap());
    assert_eq!(
        r.usage.cache_read_tokens, 3000,
        "the real upstream answered"
    );
    let gpt = router.for_model("gpt-4o-mini").expect("gpt is routed");
    assert_eq!(
        (gpt.name(), gpt.format()),
        ("simulator", WireFormat::OpenAi),
        "gpt is simulated in OpenAI format"
    );
    assert!(
        router.for_model("mistral-large").is_none(),
        "unknown families have no upstream"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "only the claude call reached the server"
    );
}
