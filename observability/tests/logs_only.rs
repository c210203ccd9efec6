#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Without an OTLP endpoint: logs only, propagation is a no-op, and a second init is refused.

use tally_observability::{init_with, LogFormat, ObservabilityError, TelemetryConfig, TraceContext};
use tracing::info_span;

#[test]
fn without_an_endpoint_nothing_is_exported_and_contexts_are_empty() {
    let config = TelemetryConfig {
        service: "tally-migrate".into(),
        format: LogFormat::Human,
        node_id: None,
        otlp_endpoint: None,
        export_interval: None,
    };
    let guard = init_with(config.clone()).unwrap();
    assert!(!guard.is_exporting(), "no endpoint: no exporter");

    let span = info_span!("thread_actor.run_turn", thread.id = "t-1");
    let cx = span.in_scope(TraceContext::current);
    assert!(cx.is_empty(), "no exported trace means no context to carry");
    assert!(cx.to_headers().is_empty(), "and no Kafka headers");
    // Incoming contexts are still parsed (and forwarded by whoever holds them) but attach is a no-op.
    let incoming = TraceContext::from_parts(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), None);
    incoming.attach(&span);
    incoming.link_to(&span);
    assert_eq!(incoming.trace_id(), Some("0af7651916cd43dd8448eb211c80319c"), "parsing does not need an exporter");

    match init_with(config) {
        Err(e @ ObservabilityError::AlreadySet(_)) => assert!(!e.is_retryable(), "set-up errors are not retryable"),
        other => panic!("a second init must be refused, got {other:?}"),
    }
    guard.shutdown().unwrap();
}
