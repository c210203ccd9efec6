#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Span export for real: a global subscriber exporting over OTLP/HTTP to a receiver on
//! 127.0.0.1, spans crossing "actor" hops (context carried in messages, attached on other
//! threads), Kafka-style record headers between two nodes, and links for batched events.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use tally_observability::testing::{OtlpReceiver, ReceivedSpan};
use tally_observability::{dispatch_with, init_with, Guard, LogFormat, TelemetryConfig, TraceContext};
use tracing::info_span;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    receiver: OtlpReceiver,
    guard: Guard,
}

/// One global subscriber per test binary (a process can install only one), shared by the
/// tests here, which each look only at their own trace.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let receiver = OtlpReceiver::start().expect("receiver starts");
        let config = TelemetryConfig {
            service: "tally-web".into(),
            format: LogFormat::Human,
            node_id: Some("node-a".into()),
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval: None,
        };
        let guard = init_with(config).expect("telemetry initialises");
        assert!(guard.is_exporting(), "an endpoint turns export on");
        Harness { receiver, guard }
    })
}

/// Flush and wait until the trace has `n` spans.
fn collect(h: &Harness, trace_id: &str, n: usize) -> Vec<ReceivedSpan> {
    h.guard.force_flush().expect("flush succeeds");
    h.receiver.wait_for(WAIT, |spans| spans.iter().filter(|s| s.trace_id == trace_id).count() >= n);
    h.receiver.trace(trace_id)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("span {name} was exported; got {spans:#?}"))
}

/// What an actor message looks like to the lead: the payload plus the sender's context.
struct Envelope<T> {
    trace: TraceContext,
    payload: T,
}

#[test]
fn a_chat_turn_across_actor_hops_is_one_trace_with_parent_links() {
    let h = harness();
    let (to_thread, thread_inbox) = mpsc::channel::<Envelope<String>>();
    let (to_billing, billing_inbox) = mpsc::channel::<Envelope<u64>>();
    let (to_persister, persister_inbox) = mpsc::channel::<Envelope<u64>>();

    // ThreadActor: runs the turn, calls the provider, sends usage to billing.
    let thread_actor = thread::spawn(move || {
        let msg = thread_inbox.recv().unwrap();
        let span = info_span!("thread_actor.run_turn", thread.id = %msg.payload, otel.kind = "internal");
        msg.trace.attach(&span);
        let _entered = span.enter();
        let provider =
            info_span!("provider.call", gen_ai.request.model = "claude-3-5-haiku-20241022", otel.kind = "client");
        provider.in_scope(|| thread::sleep(Duration::from_millis(2)));
        to_billing.send(Envelope { trace: TraceContext::current(), payload: 78 }).unwrap();
    });
    // BillingActor: prices, then hands the write to the persister.
    let billing_actor = thread::spawn(move || {
        let msg = billing_inbox.recv().unwrap();
        let span = info_span!("billing.price_usage", usage.tokens = msg.payload, cost_usd = "0.0002672");
        msg.trace.attach(&span);
        span.in_scope(|| to_persister.send(Envelope { trace: TraceContext::current(), payload: msg.payload }).unwrap());
    });
    // PersisterActor: commits.
    let persister_actor = thread::spawn(move || {
        let msg = persister_inbox.recv().unwrap();
        let span = info_span!("persister.persist", batch.ops = 2);
        msg.trace.attach(&span);
        span.in_scope(|| thread::sleep(Duration::from_millis(1)));
    });

    let root = info_span!(
        "http.request",
        otel.name = "POST /api/messages/",
        otel.kind = "server",
        http.route = "/api/messages/"
    );
    let sent = root.in_scope(TraceContext::current);
    assert!(!sent.is_empty(), "an exported span has a context");
    let trace_id = sent.trace_id().unwrap().to_string();
    to_thread.send(Envelope { trace: sent, payload: "thread-42".into() }).unwrap();
    for actor in [thread_actor, billing_actor, persister_actor] {
        actor.join().unwrap();
    }
    drop(root);

    let spans = collect(h, &trace_id, 5);
    assert_eq!(spans.len(), 5, "one trace holds the request and every hop: {spans:#?}");
    let http = named(&spans, "POST /api/messages/");
    let turn = named(&spans, "thread_actor.run_turn");
    let provider = named(&spans, "provider.call");
    let billing = named(&spans, "billing.price_usage");
    let persist = named(&spans, "persister.persist");
    assert_eq!(http.parent_span_id, None, "the HTTP request is the root");
    assert_eq!(turn.parent_span_id.as_deref(), Some(http.span_id.as_str()), "the turn is a child of the request");
    assert_eq!(
        provider.parent_span_id.as_deref(),
        Some(turn.span_id.as_str()),
        "the provider call is a child of the turn"
    );
    assert_eq!(billing.parent_span_id.as_deref(), Some(turn.span_id.as_str()), "billing continues the turn");
    assert_eq!(persist.parent_span_id.as_deref(), Some(billing.span_id.as_str()), "persisting continues billing");
    assert_eq!(http.kind, "server", "otel.kind sets the span kind");
    assert_eq!(provider.kind, "client", "the provider call is a client span");
    assert_eq!(turn.attr("thread.id"), Some("thread-42"), "the chat thread id is an attribute");
    assert_eq!(billing.attr("usage.tokens"), Some("78"), "integer fields are int attributes");
    assert_eq!(http.attr("http.route"), Some("/api/messages/"), "route attribute is exported");
    assert_eq!(http.service_name(), Some("tally-web"), "service.name is the role");
    assert_eq!(
        http.resource.get("service.instance.id").map(String::as_str),
        Some("node-a"),
        "node id is a resource attribute"
    );
    assert_eq!(
        h.receiver.span_tree(&trace_id),
        "POST /api/messages/\n  thread_actor.run_turn\n    provider.call\n    billing.price_usage\n      persister.persist\n",
        "the span tree reads like the turn"
    );
}

#[test]
fn kafka_headers_carry_the_trace_to_another_node() {
    let h = harness();
    // The trace starts upstream of this node (an incoming `traceparent` with vendor state).
    let upstream =
        TraceContext::from_parts(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), Some("vendor=abc"));
    let produce = info_span!("kafka.produce", otel.kind = "producer", messaging.destination.name = "inference-events");
    upstream.attach(&produce);
    let headers = produce.in_scope(|| TraceContext::current().to_headers());
    assert_eq!(
        headers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["traceparent", "tracestate"],
        "both headers are written"
    );
    // The record as a Kafka client holds it: owned names and byte values.
    let record: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(k, v)| (k.to_string(), v.into_bytes())).collect();
    drop(produce);

    // Node B: another process in real life; here another subscriber with its own exporter.
    let node_b = TelemetryConfig {
        service: "tally-collector".into(),
        format: LogFormat::Human,
        node_id: Some("node-b".into()),
        otlp_endpoint: Some(h.receiver.endpoint()),
        export_interval: None,
    };
    let consumer = thread::spawn(move || {
        let (dispatch, guard) = dispatch_with(&node_b).unwrap();
        let received = tracing::dispatcher::with_default(&dispatch, || {
            let cx = TraceContext::from_headers(record.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            let span =
                info_span!("kafka.consume", otel.kind = "consumer", messaging.destination.name = "inference-events");
            cx.attach(&span);
            let _entered = span.enter();
            TraceContext::current()
        });
        guard.shutdown().unwrap();
        received
    });
    let received = consumer.join().unwrap();

    assert_eq!(received.trace_id(), Some("0af7651916cd43dd8448eb211c80319c"), "the consumer continues the trace");
    assert_eq!(received.tracestate(), Some("vendor=abc"), "tracestate survives both hops");
    let spans = collect(h, "0af7651916cd43dd8448eb211c80319c", 2);
    let produce = named(&spans, "kafka.produce");
    let consume = named(&spans, "kafka.consume");
    assert_eq!(
        produce.parent_span_id.as_deref(),
        Some("b7ad6b7169203331"),
        "the producer is a child of the upstream span"
    );
    assert_eq!(
        consume.parent_span_id.as_deref(),
        Some(produce.span_id.as_str()),
        "the consumer is a child of the producer"
    );
    assert_eq!(consume.service_name(), Some("tally-collector"), "node B exports as its own role");
    assert_eq!(consume.resource.get("service.instance.id").map(String::as_str), Some("node-b"), "node B's id");
    assert_eq!(produce.resource.get("service.instance.id").map(String::as_str), Some("node-a"), "node A's id");
    assert_eq!((produce.kind, consume.kind), ("producer", "consumer"), "messaging span kinds");
}

#[test]
fn a_batch_links_to_the_spans_of_its_events() {
    let h = harness();
    let origins: Vec<(TraceContext, tracing::Span)> = (0..3)
        .map(|i| {
            let span = info_span!("collector.accept_event", event.index = i);
            (span.in_scope(TraceContext::current), span)
        })
        .collect();
    let flush = info_span!("persister.flush_batch", batch.ops = 3);
    for (cx, _) in &origins {
        cx.link_to(&flush);
    }
    let flush_cx = TraceContext::of(&flush);
    drop(flush);
    let expected: Vec<(String, String)> =
        origins.iter().map(|(cx, _)| (cx.trace_id().unwrap().to_string(), cx.span_id().unwrap().to_string())).collect();
    drop(origins);

    let flush_trace = flush_cx.trace_id().unwrap();
    assert!(expected.iter().all(|(t, _)| t != flush_trace), "the batch is its own trace, not any event's");
    let spans = collect(h, flush_trace, 1);
    let flush = named(&spans, "persister.flush_batch");
    let links: Vec<(String, String)> = flush.links.iter().map(|l| (l.trace_id.clone(), l.span_id.clone())).collect();
    assert_eq!(links, expected, "one link per batched event, to its origin span");
}

#[test]
fn attaching_to_a_started_span_links_instead() {
    let h = harness();
    let origin = info_span!("origin");
    let cx = origin.in_scope(TraceContext::current);
    drop(origin);
    let late = info_span!("late.attach");
    let own = TraceContext::of(&late); // starts the span
    cx.attach(&late);
    drop(late);
    let spans = collect(h, own.trace_id().unwrap(), 1);
    let late = named(&spans, "late.attach");
    assert_ne!(own.trace_id(), cx.trace_id(), "a started span keeps its own trace");
    assert_eq!(late.links.len(), 1, "the context becomes a link");
    assert_eq!(Some(late.links[0].span_id.as_str()), cx.span_id(), "linked to the origin span");
}
