//! The span tree of a real chat turn, exported over OTLP to a receiver on loopback:
//! HTTP request -> ThreadActor turn -> provider call -> BillingActor -> PersisterActor, one trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{dec, Node};
use serde_json::json;
use tally_observability::testing::OtlpReceiver;
use tally_observability::{init_with, LogFormat, TelemetryConfig};

#[actix_rt::test]
async fn chat_turn_is_one_trace_through_every_actor() {
    let receiver = OtlpReceiver::start().unwrap();
    let guard = init_with(TelemetryConfig {
        service: "tally-web".into(),
        format: LogFormat::Human,
        node_id: Some("node-test".into()),
        otlp_endpoint: Some(receiver.endpoint()),
        export_interval: Some(Duration::from_millis(200)),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("tracy", None).await;
    let (s, turn) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "trace me", "user_id": "tracy" })).await;
    assert_eq!(s, 200, "turn");
    node.stop().await;
    guard.shutdown().unwrap();

    let turn_span = receiver.span_named("chat.turn").expect("a chat.turn span was exported");
    let trace = receiver.trace(&turn_span.trace_id);
    let tree = receiver.span_tree(&turn_span.trace_id);
    let named = |name: &str| trace.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    let one = |name: &str| {
        let v = named(name);
        assert_eq!(v.len(), 1, "exactly one {name} span in the turn's trace:\n{tree}");
        v.into_iter().next().unwrap()
    };
    let http = trace.iter().find(|s| s.kind == "server" && s.name.starts_with("POST /api/messages")).cloned().unwrap_or_else(|| panic!("server span:\n{tree}"));
    let send = one("http.send_message");
    let llm = one("llm.stream");
    let billing = one("billing.price_usage");
    assert_eq!(send.parent_span_id.as_deref(), Some(http.span_id.as_str()), "handler span under the server span:\n{tree}");
    assert_eq!(turn_span.parent_span_id.as_deref(), Some(send.span_id.as_str()), "turn continues the request's trace:\n{tree}");
    assert_eq!(llm.parent_span_id.as_deref(), Some(turn_span.span_id.as_str()), "provider call inside the turn:\n{tree}");
    assert_eq!(billing.parent_span_id.as_deref(), Some(turn_span.span_id.as_str()), "billing inside the turn:\n{tree}");
    let commits = named("persister.commit");
    assert!(
        commits.iter().any(|c| c.parent_span_id.as_deref() == Some(billing.span_id.as_str())),
        "the usage commit joins the billing span:\n{tree}"
    );
    assert!(
        commits.iter().any(|c| c.parent_span_id.as_deref() == Some(turn_span.span_id.as_str())),
        "the user message commit joins the turn:\n{tree}"
    );
    let assistant = &turn["assistant_message"];
    assert_eq!(llm.attr("llm.output_tokens").map(|v| v.to_string()), assistant["usage"]["output_tokens"].as_str().map(String::from), "tokens on the provider span");
    assert_eq!(billing.attr("cost_usd").map(|v| v.parse::<rust_decimal::Decimal>().unwrap()), Some(dec(&assistant["cost_total"])), "cost on the billing span");
    assert!(billing.attr("price_versions").is_some_and(|v| v.contains("output_tokens=")), "price versions on the billing span");
    assert_eq!(http.resource.get("service.name").map(String::as_str), Some("tally-web"), "service name");
    assert_eq!(http.resource.get("service.instance.id").map(String::as_str), Some("node-test"), "node id");
    let flushes: Vec<_> = receiver.spans().into_iter().filter(|s| s.name == "persister.flush").collect();
    assert!(
        flushes.iter().any(|f| f.links.iter().any(|l| l.span_id == billing.span_id)),
        "the batch flush links to the billing span it committed for"
    );
}
