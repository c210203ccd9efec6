#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The "flush traces" shutdown phase: `Guard::shutdown` returns only once the collector
//! has every pending span (own process: the subscriber is global).

use std::time::Duration;

use tally_observability::testing::OtlpReceiver;
use tally_observability::{init_with, LogFormat, TelemetryConfig, TraceContext};
use tracing::info_span;

#[test]
fn guard_shutdown_flushes_pending_spans() {
    let receiver = OtlpReceiver::start().unwrap();
    let config = TelemetryConfig {
        service: "tally-web".into(),
        format: LogFormat::Json,
        node_id: Some("node-a".into()),
        otlp_endpoint: Some(receiver.endpoint()),
        // Long enough that only the shutdown flush can deliver the spans below.
        export_interval: Some(Duration::from_secs(600)),
    };
    let guard = init_with(config).unwrap();

    let mut trace_ids = Vec::new();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let span = info_span!("persister.flush_batch", batch.index = i);
                let cx = span.in_scope(TraceContext::current);
                span.in_scope(|| info_span!("store.commit").in_scope(|| ()));
                cx.trace_id().unwrap().to_string()
            })
        })
        .collect();
    for w in workers {
        trace_ids.push(w.join().unwrap());
    }
    assert!(receiver.spans().is_empty(), "nothing is exported before the interval or a flush");

    guard.shutdown().expect("shutdown flushes without error");

    // No waiting: the spans must already be there when shutdown returns.
    let spans = receiver.spans();
    assert_eq!(spans.len(), 8, "every finished span is delivered by shutdown: {spans:#?}");
    for id in &trace_ids {
        let names: Vec<_> = receiver.trace(id).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["persister.flush_batch", "store.commit"], "trace {id} is complete");
    }
    let requests = receiver.export_requests();
    assert!(receiver.rejected().is_empty(), "every export was accepted: {:?}", receiver.rejected());

    // After shutdown spans are dropped quietly, never exported, never a panic.
    info_span!("after.shutdown").in_scope(|| ());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(receiver.export_requests(), requests, "nothing is exported after shutdown");
}
