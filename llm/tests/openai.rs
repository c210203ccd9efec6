//! OpenAI provider against a local server speaking the Chat Completions wire format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{assert_single_terminal_last, collect, fast_retry, joined_deltas, MockServer, Reply};
use tally_llm::{
    ChatMessage, ChatRequest, LlmError, OpenAiConfig, OpenAiProvider, Provider, RetryPolicy,
    StreamEvent, TokenUsage,
};

const KEY: &str = "sk-proj-test-key";

fn provider(server: &MockServer, retry: RetryPolicy) -> OpenAiProvider {
    let mut config = OpenAiConfig::new(KEY);
    config.base_url = format!("{}/", server.base_url());
    config.timeout = Duration::from_secs(10);
    config.retry = retry;
    OpenAiProvider::new(config).expect("valid config")
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        system: Some("Be brief.".into()),
        messages: vec![ChatMessage::user("Count to three")],
        max_tokens: 64,
    }
}

fn chunk(content: Option<&str>, finish: Option<&str>) -> String {
    let delta = match content {
        Some(c) => format!(r#"{{"content":{}}}"#, serde_json::to_string(c).unwrap()),
        None => "{}".to_owned(),
    };
    let finish = finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
    format!(
        "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    )
}

const USAGE_CHUNK: &str = "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":7,\"total_tokens\":1207,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n";

#[tokio::test]
async fn stream_with_include_usage_maps_cached_tokens() {
    let chunks = vec![
        chunk(Some(""), None).replace(
            r#""delta":{"content":""}"#,
            r#""delta":{"role":"assistant","content":"","refusal":null}"#,
        ),
        chunk(Some("One"), None),
        ": keep-alive\n\n".to_owned(),
        chunk(Some(", two"), None),
        chunk(Some(", three."), None),
        chunk(None, Some("stop")),
        USAGE_CHUNK.to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ];
    let server = MockServer::start(vec![Reply::sse(chunks)]).await;

    let events = collect(
        provider(&server, fast_retry(3))
            .stream(&request())
            .await
            .expect("stream starts"),
    )
    .await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one request");
    let req = &requests[0];
    assert_eq!(req.method, "POST", "Chat Completions is a POST");
    assert_eq!(
        req.path, "/v1/chat/completions",
        "Chat Completions path (trailing slash in base URL is fine)"
    );
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-proj-test-key"),
        "bearer auth"
    );
    assert_eq!(
        req.json(),
        serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Count to three"}
            ],
            "max_completion_tokens": 64,
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
        "system prompt is a system message and usage is requested"
    );

    assert_single_terminal_last(&events);
    let Some(StreamEvent::Finished(done)) = events.last() else {
        panic!("expected Finished: {events:?}")
    };
    assert_eq!(
        joined_deltas(&events),
        "One, two, three.",
        "deltas in order"
    );
    assert_eq!(
        done.text, "One, two, three.",
        "final text equals joined deltas"
    );
    assert_eq!(
        done.stop_reason.as_deref(),
        Some("stop"),
        "finish_reason kept"
    );
    assert_eq!(done.model, "gpt-4o-mini-2024-07-18", "model as reported");
    assert_eq!(
        done.usage,
        TokenUsage {
            input_tokens: 176,
            output_tokens: 7,
            cache_read_tokens: 1024,
            ..TokenUsage::default()
        },
        "cached tokens become cache reads and are subtracted from input"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Usage(u) if u.output_tokens == 7)),
        "the usage chunk emits a Usage event"
    );
}

#[tokio::test]
async fn stream_without_done_fails_with_partial() {
    let chunks = vec![chunk(Some("Half"), None), chunk(Some(" way"), None)];
    let server = MockServer::start(vec![Reply::sse_dropped(chunks)]).await;
    let events = collect(
        provider(&server, fast_retry(3))
            .stream(&request())
            .await
            .expect("stream starts"),
    )
    .await;
    assert_single_terminal_last(&events);
    let Some(StreamEvent::Failed { error, partial }) = events.last() else {
        panic!("expected Failed: {events:?}")
    };
    assert!(
        matches!(error, LlmError::Interrupted(_)),
        "dropped stream is Interrupted: {error:?}"
    );
    assert_eq!(partial.text, "Half way", "partial text kept");
}

#[tokio::test]
async fn complete_maps_usage_and_retries_503() {
    let body = r#"{"id":"chatcmpl-123","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"1, 2, 3.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#;
    let server = MockServer::start(vec![
        Reply::json(503, r#"{"error":{"message":"The server is overloaded","type":"server_error","param":null,"code":null}}"#),
        Reply::json(200, body),
    ])
    .await;
    let c = provider(&server, fast_retry(3))
        .complete(&request())
        .await
        .expect("completion after retry");
    assert_eq!(server.requests().len(), 2, "the 503 is retried once");
    assert!(
        server.requests()[0].json().get("stream").is_none(),
        "no stream flag when not streaming"
    );
    assert_eq!(c.text, "1, 2, 3.", "text from the first choice");
    assert_eq!(
        c.usage,
        TokenUsage {
            input_tokens: 19,
            output_tokens: 10,
            ..TokenUsage::default()
        },
        "usage maps prompt/completion tokens"
    );
    assert_eq!(
        c.provider_message_id.as_deref(),
        Some("chatcmpl-123"),
        "id kept"
    );
}

#[tokio::test]
async fn unauthorized_401_is_not_retried() {
    let server = MockServer::start(vec![Reply::json(
        401,
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    )])
    .await;
    let err = provider(&server, fast_retry(3))
        .complete(&request())
        .await
        .expect_err("401 fails");
    assert_eq!(server.requests().len(), 1, "a 401 is sent once");
    assert!(
        matches!(&err, LlmError::Api { kind, .. } if kind == "invalid_request_error"),
        "mapped to Api: {err:?}"
    );
}
