//! A real Anthropic wire-format server on loopback that breaks mid-stream: usage received so far is billed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{dec, Node};
use rust_decimal_macros::dec;
use serde_json::json;
use tally_llm::{AnthropicConfig, AnthropicProvider, Provider, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one Anthropic streaming reply that sends usage and text, then an `error` event.
async fn fake_anthropic_breaking_mid_stream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head and the body (by content-length).
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let events = [
                    ("message_start", json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}}})),
                    ("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})),
                    ("ping", json!({"type":"ping"})),
                    ("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial answ"}})),
                    ("message_delta", json!({"type":"message_delta","delta":{"stop_reason":null,"stop_sequence":null},"usage":{"output_tokens":7}})),
                    ("error", json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
                ];
                let mut body = String::new();
                for (name, data) in events {
                    body.push_str(&format!("event: {name}\ndata: {data}\n\n"));
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[actix_rt::test]
async fn mid_stream_provider_error_bills_usage_received_so_far() {
    let base = fake_anthropic_breaking_mid_stream().await;
    let mut config = AnthropicConfig::new("test-key");
    config.base_url = base;
    config.retry = RetryPolicy::no_retry();
    let anthropic: Arc<dyn Provider> = Arc::new(AnthropicProvider::new(config).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(&dir, Some(anthropic)).await;
    let thread = node.user_and_thread("gina", None).await;

    let (s, turn) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "hi", "user_id": "gina" })).await;
    assert_eq!(s, 200, "a broken stream still completes the turn: {turn}");
    let a = &turn["assistant_message"];
    assert_eq!(a["status"], "interrupted", "the reply is marked interrupted");
    assert_eq!(a["simulated"], false, "a real provider answered");
    assert_eq!(a["content"], "Partial answ", "the partial text is kept");
    assert_eq!(dec(&a["usage"]["input_tokens"]), dec!(25), "input tokens from message_start");
    assert_eq!(dec(&a["usage"]["output_tokens"]), dec!(7), "output tokens from the last message_delta");
    assert_eq!(dec(&a["usage"]["cache_read_tokens"]), dec!(100), "cache reads billed");
    let expected = dec!(25) * dec!(0.80) / dec!(1000000) + dec!(7) * dec!(4) / dec!(1000000) + dec!(100) * dec!(0.08) / dec!(1000000);
    assert_eq!(dec(&a["cost_total"]), expected, "usage so far billed at Haiku prices");
    assert!(turn["error"].as_str().is_some(), "the turn reports the provider error");
    let (_, m) = node.get(&format!("/api/billing/metrics/thread/{thread}")).await;
    assert_eq!(dec(&m["metrics"]["total_cost"]), expected, "and it is in the thread's billing");
    node.stop().await;
}
