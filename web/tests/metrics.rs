//! `/metrics` answers in Prometheus/OpenMetrics text with request, pricing and batch metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Node;
use serde_json::json;

#[actix_rt::test]
async fn metrics_endpoint_reports_requests_pricing_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("mia", None).await;
    let (s, _) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "count me", "user_id": "mia" })).await;
    assert_eq!(s, 200, "turn");
    let r = node.client.get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "/metrics answers");
    let text = r.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(has("tally_http_requests_total{"), "request counter:\n{text}");
    assert!(text.contains("route=\"/api/messages/\""), "labelled by route pattern, not raw path:\n{text}");
    assert!(!text.contains(&thread), "no ids in labels");
    assert!(has("tally_cost_usd_total{model=\"claude-3-5-haiku-20241022\"}"), "cost by model:\n{text}");
    assert!(text.contains("tally_batch_flush_duration_seconds"), "batch flush durations:\n{text}");
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    node.stop().await;
}
