//! The dashboard SSE feed: snapshot on connect, then the priced event and an updated snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{dec, parse_frame, Node};
use futures::StreamExt;
use serde_json::{json, Value};

#[actix_rt::test]
async fn dashboard_pushes_snapshot_then_updates_after_usage() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("hana", None).await;
    let r = node.client.get(node.url("/api/dashboard/stream")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "dashboard stream opens");
    assert_eq!(r.headers()["content-type"], "text/event-stream", "it is SSE");
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let mut frames: Vec<(String, Value)> = Vec::new();
    let mut sent = false;
    let mut turn_cost = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
        if let Ok(Some(chunk)) = next {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(f) = parse_frame(&frame) {
                    frames.push(f);
                }
            }
        }
        if !sent && !frames.is_empty() {
            assert_eq!(frames[0].0, "snapshot", "first frame is a snapshot");
            assert_eq!(dec(&frames[0].1["total_cost"]), rust_decimal::Decimal::ZERO, "nothing billed yet");
            let (s, t) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "dashboard me", "user_id": "hana" })).await;
            assert_eq!(s, 200, "send");
            turn_cost = Some(dec(&t["assistant_message"]["cost_total"]));
            sent = true;
        }
        let cost = match turn_cost { Some(c) => c, None => continue };
        let usage_seen = frames.iter().any(|f| f.0 == "usage" && dec(&f.1["cost"]["total"]) == cost);
        let snap = frames.iter().rev().find(|f| f.0 == "snapshot").map(|f| f.1.clone()).unwrap();
        if usage_seen && dec(&snap["total_cost"]) == cost {
            assert_eq!(snap["by_user"][0]["user_id"], "hana", "top user");
            assert_eq!(dec(&snap["by_thread"][0]["cost"]), cost, "thread cost");
            drop(body);
            node.stop().await;
            return;
        }
    }
    panic!("dashboard never showed the new usage; frames: {frames:?}");
}
