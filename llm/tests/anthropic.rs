//! Anthropic provider against a local server speaking the Messages API wire format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_single_terminal_last, collect, fast_retry, frame, joined_deltas, MockServer, Reply,
};
use tally_llm::{
    AnthropicConfig, AnthropicProvider, ChatMessage, ChatRequest, LlmError, Provider, RetryPolicy,
    StreamEvent, TokenUsage,
};

const KEY: &str = "sk-ant-test-key";

fn provider(server: &MockServer, retry: RetryPolicy) -> AnthropicProvider {
    let mut config = AnthropicConfig::new(KEY);
    config.base_url = server.base_url();
    config.timeout = Duration::from_secs(10);
    config.retry = retry;
    AnthropicProvider::new(config).expect("valid config")
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        system: Some("You are terse.".into()),
        messages: vec![
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
            ChatMessage::user("Say hello to the world"),
        ],
        max_tokens: 256,
    }
}

const MESSAGE_OK: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello, world!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000},"output_tokens":6,"service_tier":"standard"}}"#;

const MESSAGE_START: &str = r#"{"type":"message_start","message":{"id":"msg_01StreamTest","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":200,"cache_read_input_tokens":1024,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#;

fn delta(text: &str) -> String {
    frame(
        "content_block_delta",
        &format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
            serde_json::to_string(text).unwrap()
        ),
    )
}

fn message_delta(stop: Option<&str>, output_tokens: u64) -> String {
    let stop = stop.map_or("null".to_owned(), |s| format!("\"{s}\""));
    frame(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":{stop},"stop_sequence":null}},"usage":{{"output_tokens":{output_tokens}}}}}"#
        ),
    )
}

fn stream_head() -> Vec<String> {
    vec![
        frame("message_start", MESSAGE_START),
        frame(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        frame("ping", r#"{"type": "ping"}"#),
    ]
}

fn error_body(kind: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011CTest"}}"#
    )
}

fn finished(events: &[StreamEvent]) -> &tally_llm::Completion {
    match events.last() {
        Some(StreamEvent::Finished(c)) => c,
        other => panic!("expected Finished last, got {other:?}"),
    }
}

fn failed(events: &[StreamEvent]) -> (&LlmError, &tally_llm::Completion) {
    match events.last() {
        Some(StreamEvent::Failed { error, partial }) => (error, partial),
        other => panic!("expected Failed last, got {other:?}"),
    }
}

#[tokio::test]
async fn complete_sends_wire_format_and_maps_cache_split_usage() {
    let server = MockServer::start(vec![Reply::json(200, MESSAGE_OK)]).await;
    let completion = provider(&server, fast_retry(3))
        .complete(&request())
        .await
        .expect("completion");

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "exactly one request is sent");
    let req = &requests[0];
    assert_eq!(req.method, "POST", "Messages API is a POST");
    assert_eq!(req.path, "/v1/messages", "Messages API path");
    assert_eq!(
        req.header("x-api-key"),
        Some(KEY),
        "API key goes in x-api-key"
    );
    assert_eq!(
        req.header("anthropic-version"),
        Some("2023-06-01"),
        "anthropic-version header is set"
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/json"),
        "body is JSON"
    );
    assert_eq!(
        req.json(),
        serde_json::json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Say hello to the world"}
            ]
        }),
        "request body matches the Messages API shape (no stream flag when not streaming)"
    );

    assert_eq!(
        completion.text, "Hello, world!",
        "text from the content blocks"
    );
    assert_eq!(
        completion.model, "claude-sonnet-4-5-20250929",
        "model as reported by the provider"
    );
    assert_eq!(
        completion.stop_reason.as_deref(),
        Some("end_turn"),
        "stop reason"
    );
    assert_eq!(
        completion.provider_message_id.as_deref(),
        Some("msg_01XFDUDYJgAACzvnptvVoYEL"),
        "provider message id"
    );
    assert!(
        !completion.simulated,
        "a real provider reply is not simulated"
    );
    assert_eq!(
        completion.usage,
        TokenUsage {
            input_tokens: 21,
            output_tokens: 6,
            cache_write_5m_tokens: 500,
            cache_write_1h_tokens: 1000,
            cache_read_tokens: 3000,
        },
        "usage maps the 5m/1h cache-creation split exactly"
    );
}

#[tokio::test]
async fn complete_without_cache_split_counts_creation_as_5m() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":700,"cache_read_input_tokens":0,"output_tokens":1}}"#;
    let server = MockServer::start(vec![Reply::json(200, body)]).await;
    let completion = provider(&server, fast_retry(1))
        .complete(&request())
        .await
        .expect("completion");
    assert_eq!(
        completion.usage.cache_write_5m_tokens, 700,
        "unsplit cache creation is billed as 5m"
    );
    assert_eq!(
        completion.usage.cache_write_1h_tokens, 0,
        "no 1h writes without a split"
    );
}

#[tokio::test]
async fn stream_joins_deltas_and_takes_cumulative_output_tokens() {
    let mut chunks = stream_head();
    chunks.push(delta("Hello"));
    chunks.push(frame("ping", r#"{"type": "ping"}"#));
    chunks.push(delta(", wör"));
    // An event type this client has never heard of must be ignored.
    chunks.push(frame(
        "content_block_citation",
        r#"{"type":"content_block_citation","index":0,"citation":{"url":"x"}}"#,
    ));
    chunks.push(delta("ld!"));
    chunks.push(message_delta(None, 4));
    chunks.push(frame(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    chunks.push(message_delta(Some("end_turn"), 15));
    // Split a frame across two TCP chunks, mid-line, as real networks do.
    let stop = frame("message_stop", r#"{"type":"message_stop"}"#);
    let (a, b) = stop.split_at(17);
    chunks.push(a.to_owned());
    chunks.push(b.to_owned());
    let server = MockServer::start(vec![Reply::sse(chunks)]).await;

    let stream = provider(&server, fast_retry(3))
        .stream(&request())
        .await
        .expect("stream starts");
    let events = collect(stream).await;

    let body = server.requests()[0].json();
    assert_eq!(body["stream"], true, "streaming requests set stream: true");
    assert_eq!(
        server.requests()[0].header("x-api-key"),
        Some(KEY),
        "streaming sends x-api-key"
    );
    assert_single_terminal_last(&events);
    let done = finished(&events);
    assert_eq!(
        joined_deltas(&events),
        "Hello, wörld!",
        "deltas arrive in order"
    );
    assert_eq!(
        done.text,
        joined_deltas(&events),
        "joined deltas equal the final text"
    );
    assert_eq!(
        done.usage,
        TokenUsage {
            input_tokens: 472,
            output_tokens: 15,
            cache_write_5m_tokens: 200,
            cache_write_1h_tokens: 0,
            cache_read_tokens: 1024,
        },
        "final usage: input/cache from message_start, output from the last message_delta (not summed)"
    );
    assert_eq!(
        done.stop_reason.as_deref(),
        Some("end_turn"),
        "stop reason from message_delta"
    );
    let usage_events: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Usage(u) => Some(u.output_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(
        usage_events,
        vec![1, 4, 15],
        "Usage after message_start and each message_delta, cumulative"
    );
}

#[tokio::test]
async fn stream_error_event_fails_with_usage_so_far() {
    let mut chunks = stream_head();
    chunks.push(delta("Partial "));
    chunks.push(delta("answer"));
    chunks.push(message_delta(None, 9));
    chunks.push(frame(
        "error",
        &error_body("overloaded_error", "Overloaded"),
    ));
    let server = MockServer::start(vec![Reply::sse(chunks)]).await;

    let events = collect(
        provider(&server, fast_retry(3))
            .stream(&request())
            .await
            .expect("stream starts"),
    )
    .await;

    assert_single_terminal_last(&events);
    let (error, partial) = failed(&events);
    assert_eq!(
        error,
        &LlmError::Api {
            kind: "overloaded_error".into(),
            message: "Overloaded".into()
        },
        "the mid-stream error event is reported"
    );
    assert_eq!(
        partial.text, "Partial answer",
        "partial text is kept for billing"
    );
    assert_eq!(
        partial.usage.input_tokens, 472,
        "input tokens from message_start"
    );
    assert_eq!(
        partial.usage.cache_read_tokens, 1024,
        "cache reads from message_start"
    );
    assert_eq!(
        partial.usage.output_tokens, 9,
        "output tokens from the last message_delta"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "a started stream is never retried"
    );
}

#[tokio::test]
async fn dropped_connection_fails_with_partial_usage() {
    let mut chunks = stream_head();
    chunks.push(delta("Cut "));
    chunks.push(delta("off"));
    let server = MockServer::start(vec![Reply::sse_dropped(chunks)]).await;

    let events = collect(
        provider(&server, fast_retry(3))
            .stream(&request())
            .await
            .expect("stream starts"),
    )
    .await;

    assert_single_terminal_last(&events);
    let (error, partial) = failed(&events);
    assert!(
        matches!(error, LlmError::Interrupted(_)),
        "a dropped connection is Interrupted: {error:?}"
    );
    assert_eq!(
        partial.text, "Cut off",
        "text received before the drop is kept"
    );
    assert_eq!(
        partial.usage.input_tokens, 472,
        "input tokens from message_start survive the drop"
    );
    assert_eq!(
        partial.usage.output_tokens, 1,
        "output tokens: the last reported count"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "a started stream is never retried"
    );
}

#[tokio::test]
async fn clean_close_before_message_stop_fails() {
    let mut chunks = stream_head();
    chunks.push(delta("Almost"));
    chunks.push(message_delta(Some("end_turn"), 2));
    let server = MockServer::start(vec![Reply::sse_until_close(chunks)]).await;

    let events = collect(
        provider(&server, fast_retry(3))
            .stream(&request())
            .await
            .expect("stream starts"),
    )
    .await;

    assert_single_terminal_last(&events);
    let (error, partial) = failed(&events);
    assert!(
        matches!(error, LlmError::Interrupted(_)),
        "EOF before message_stop is Interrupted: {error:?}"
    );
    assert_eq!(
        partial.usage.output_tokens, 2,
        "usage received before the close is kept"
    );
}

#[tokio::test]
async fn rate_limited_429_honors_retry_after_then_succeeds() {
    let server = MockServer::start(vec![
        Reply::json(
            429,
            &error_body(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
        )
        .with_header("retry-after", "0"),
        Reply::json(200, MESSAGE_OK),
    ])
    .await;
    // A slow backoff proves the zero retry-after was used instead.
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_secs(5),
        max_delay: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(5),
        jitter: false,
    };
    let started = Instant::now();
    let completion = provider(&server, retry)
        .complete(&request())
        .await
        .expect("second attempt succeeds");
    assert_eq!(
        server.requests().len(),
        2,
        "the server sees the 429 and the retry"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "retry-after: 0 replaces the 5 s backoff"
    );
    assert_eq!(
        completion.usage.output_tokens, 6,
        "the successful reply is returned"
    );
}

#[tokio::test]
async fn overloaded_529_is_retried_before_stream_starts() {
    let mut chunks = stream_head();
    chunks.push(delta("ok"));
    chunks.push(message_delta(Some("end_turn"), 2));
    chunks.push(frame("message_stop", r#"{"type":"message_stop"}"#));
    let overloaded = Reply::json(529, &error_body("overloaded_error", "Overloaded"));
    let server = MockServer::start(vec![overloaded.clone(), overloaded, Reply::sse(chunks)]).await;

    let stream = provider(&server, fast_retry(4))
        .stream(&request())
        .await
        .expect("third attempt streams");
    let events = collect(stream).await;
    assert_eq!(
        server.requests().len(),
        3,
        "two 529s are retried, the third request streams"
    );
    assert_eq!(
        finished(&events).text,
        "ok",
        "the stream after the retries completes"
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let server = MockServer::start(vec![Reply::json(
        500,
        &error_body("api_error", "Internal server error"),
    )])
    .await;
    let err = provider(&server, fast_retry(3))
        .complete(&request())
        .await
        .expect_err("all attempts fail");
    assert_eq!(
        server.requests().len(),
        3,
        "max_attempts bounds the number of requests"
    );
    assert!(
        matches!(err, LlmError::Status { status: 500, .. }),
        "the last 5xx is returned: {err:?}"
    );
}

#[tokio::test]
async fn bad_request_400_is_not_retried_and_maps_to_api() {
    let server = MockServer::start(vec![Reply::json(
        400,
        &error_body("invalid_request_error", "max_tokens: Field required"),
    )])
    .await;
    let err = provider(&server, fast_retry(4))
        .stream(&request())
        .await
        .err()
        .expect("400 is an error");
    assert_eq!(server.requests().len(), 1, "a 400 is sent exactly once");
    assert_eq!(
        err,
        LlmError::Api {
            kind: "invalid_request_error".into(),
            message: "max_tokens: Field required".into()
        },
        "Anthropic's error JSON maps to Api"
    );
    assert!(!err.is_retryable(), "invalid requests are not retryable");
}
