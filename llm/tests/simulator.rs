//! Simulator: determinism, token-by-token streaming and exact tiktoken usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_single_terminal_last, collect, joined_deltas};
use tally_llm::{
    ChatMessage, ChatRequest, Provider, SimulatorConfig, SimulatorProvider, StreamEvent,
    TokenUsage, MESSAGE_OVERHEAD_TOKENS,
};

fn sim(delay_ms: u64) -> SimulatorProvider {
    SimulatorProvider::new(SimulatorConfig {
        token_delay: Duration::from_millis(delay_ms),
    })
}

fn request(last: &str) -> ChatRequest {
    ChatRequest {
        model: "llama-3-70b".into(),
        system: Some("You are a helpful assistant.".into()),
        messages: vec![
            ChatMessage::user("First question?"),
            ChatMessage::assistant("First answer."),
            ChatMessage::user(last),
        ],
        max_tokens: 1024,
    }
}

fn tiktoken_len(text: &str) -> u64 {
    tiktoken_rs::cl100k_base()
        .unwrap()
        .encode_ordinary(text)
        .len() as u64
}

#[tokio::test]
async fn same_request_same_reply() {
    let p = sim(0);
    let a = p
        .complete(&request("What is the capital of France?"))
        .await
        .unwrap();
    let b = p
        .complete(&request("What is the capital of France?"))
        .await
        .unwrap();
    assert_eq!(a, b, "the same request yields the same completion");
    assert!(a.simulated, "simulator replies are marked simulated");
    assert!(
        a.text.contains("What is the capital of France?"),
        "the reply quotes the user: {}",
        a.text
    );
    let c = p
        .complete(&request("Something else entirely"))
        .await
        .unwrap();
    assert_ne!(
        a.text, c.text,
        "a different last message yields a different reply"
    );
    assert_eq!(
        a.usage.cache_read_tokens + a.usage.cache_write_5m_tokens + a.usage.cache_write_1h_tokens,
        0,
        "no cache tokens"
    );
}

#[tokio::test]
async fn usage_equals_tiktoken_counts() {
    let req = request("Explain tokenization in one paragraph, s'il vous plaît 🙂");
    let c = sim(0).complete(&req).await.unwrap();
    let expected_input = tiktoken_len("You are a helpful assistant.")
        + tiktoken_len("First question?")
        + tiktoken_len("First answer.")
        + tiktoken_len("Explain tokenization in one paragraph, s'il vous plaît 🙂")
        + 4 * MESSAGE_OVERHEAD_TOKENS;
    assert_eq!(
        c.usage,
        TokenUsage {
            input_tokens: expected_input,
            output_tokens: tiktoken_len(&c.text),
            ..TokenUsage::default()
        },
        "input = content tokens + per-message overhead; output = reply tokens"
    );
}

#[tokio::test]
async fn stream_deltas_concatenate_to_text_with_token_delay() {
    let req = request("Tell me about crabs 🦀 and naïve café owners");
    let delay = 2;
    let started = Instant::now();
    let events = collect(sim(delay).stream(&req).await.unwrap()).await;
    let elapsed = started.elapsed();

    assert_single_terminal_last(&events);
    let Some(StreamEvent::Finished(done)) = events.last() else {
        panic!("expected Finished: {events:?}")
    };
    let deltas = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Delta(_)))
        .count();
    assert_eq!(
        joined_deltas(&events),
        done.text,
        "concatenated deltas equal the full text exactly"
    );
    assert!(
        deltas as u64 >= done.usage.output_tokens - 2,
        "roughly one delta per token"
    );
    assert!(deltas > 10, "the reply is streamed in many deltas, not one");
    assert!(
        elapsed >= Duration::from_millis(delay * (deltas as u64 - 1)),
        "token_delay separates deltas ({elapsed:?} for {deltas} deltas)"
    );
    assert!(
        matches!(&events[events.len() - 2], StreamEvent::Usage(u) if *u == done.usage),
        "a Usage event precedes Finished"
    );
    assert!(
        done.simulated,
        "streamed simulator replies are marked simulated"
    );
    let completed = sim(0).complete(&req).await.unwrap();
    assert_eq!(&completed, done, "stream and complete agree");
}

#[tokio::test]
async fn max_tokens_truncates_reply() {
    let mut req = request("Short please");
    req.max_tokens = 5;
    let c = sim(0).complete(&req).await.unwrap();
    assert_eq!(c.usage.output_tokens, 5, "output is capped at max_tokens");
    assert_eq!(
        c.stop_reason.as_deref(),
        Some("max_tokens"),
        "stop reason says why"
    );
}
