//! Prometheus metrics: one process-wide registry, the typed recording API the other crates
//! call, and [`render`] for `GET /metrics` (OpenMetrics text, which Prometheus scrapes natively).
//!
//! A labelled family appears in the output with its first sample.
//! Label values should come from small, closed sets (route patterns, model names, topic
//! names, reason codes): every distinct value is a new time series.
//!
//! Cost totals are exported as `f64` and are approximate. Billing never reads a metric:
//! money stays `rust_decimal::Decimal` everywhere else and is converted only here.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prefix of every metric name.
pub const PREFIX: &str = "tally";
/// Route label for requests that matched no route pattern (keeps unknown paths from
/// creating one series each).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// HTTP latency buckets, in seconds (1 ms .. 30 s; SSE streams count until headers are sent).
pub const HTTP_LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Batch flush duration buckets, in seconds (0.5 ms .. 10 s).
pub const FLUSH_DURATION_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Batch size buckets, in operations (up to the persister's largest batch and beyond).
pub const BATCH_SIZE_BUCKETS: [f64; 12] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    topic: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    actor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_latency_histogram() -> Histogram {
    Histogram::new(HTTP_LATENCY_BUCKETS_SECONDS)
}

struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
    events_ingested: Family<StatusLabels, Counter>,
    events_priced: Family<ModelLabels, Counter>,
    cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    persisted_ops: Counter,
    batch_size: Histogram,
    batch_flush_duration: Histogram,
    batch_flush_failures: Counter,
    dead_lettered: Family<DeadLetterLabels, Counter>,
    sse_clients: Gauge,
    mailbox_depth: Family<ActorLabels, Gauge>,
    kafka_produce_errors: Family<TopicLabels, Counter>,
    consumer_lag: Family<PartitionLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Registry::with_prefix(PREFIX),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_latency_histogram),
            events_ingested: Family::default(),
            events_priced: Family::default(),
            cost_usd: Family::default(),
            persisted_ops: Counter::default(),
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            batch_flush_duration: Histogram::new(FLUSH_DURATION_BUCKETS_SECONDS),
            batch_flush_failures: Counter::default(),
            dead_lettered: Family::default(),
            sse_clients: Gauge::default(),
            mailbox_depth: Family::default(),
            kafka_produce_errors: Family::default(),
            consumer_lag: Family::default(),
        };
        m.register_all()
    }

    /// Metrics are shared handles: the registry keeps one clone of each for encoding.
    fn register_all(mut self) -> Self {
        let r = &mut self.registry;
        // Counters are registered without `_total`; the encoder appends it.
        r.register("http_requests", "HTTP requests by method, route pattern and status", self.http_requests.clone());
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency until the response head",
            self.http_duration.clone(),
        );
        r.register("events_ingested", "Usage events received, by outcome", self.events_ingested.clone());
        r.register("events_priced", "Usage events priced, by model", self.events_priced.clone());
        r.register(
            "cost_usd",
            "Cost priced, by model, USD (approximate: float; billing never reads it)",
            self.cost_usd.clone(),
        );
        r.register("persisted_ops", "Write operations committed by the persister", self.persisted_ops.clone());
        r.register("batch_size_ops", "Operations per committed write batch", self.batch_size.clone());
        r.register("batch_flush_duration_seconds", "Time to commit one write batch", self.batch_flush_duration.clone());
        r.register("batch_flush_failures", "Write batches that failed to commit", self.batch_flush_failures.clone());
        r.register(
            "dead_lettered",
            "Events sent to a dead-letter topic, by topic and reason code",
            self.dead_lettered.clone(),
        );
        r.register("sse_clients", "Connected SSE clients (chat streams and dashboard feeds)", self.sse_clients.clone());
        r.register("actor_mailbox_depth", "Messages waiting in an actor's mailbox", self.mailbox_depth.clone());
        r.register(
            "kafka_produce_errors",
            "Kafka records that failed to produce, by topic",
            self.kafka_produce_errors.clone(),
        );
        r.register("kafka_consumer_lag", "Records behind the partition's high watermark", self.consumer_lag.clone());
        self
    }
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Record one finished HTTP request. `route` is the matched pattern (`/api/threads/{id}`),
/// never the raw path; pass [`UNMATCHED_ROUTE`] when nothing matched.
pub fn http_request(method: &str, route: &str, status: u16, duration: Duration) {
    let labels = HttpLabels { method: method.to_string(), route: route.to_string(), status: status.to_string() };
    let m = metrics();
    m.http_requests.get_or_create(&labels).inc();
    m.http_duration.get_or_create(&labels).observe(duration.as_secs_f64());
}

/// One usage event received by ingest, with its outcome (`accepted`, `duplicate`, `invalid`, ...).
pub fn event_ingested(status: &str) {
    events_ingested(status, 1);
}

/// `count` usage events received by ingest with the same outcome (one batch request).
pub fn events_ingested(status: &str, count: u64) {
    metrics().events_ingested.get_or_create(&StatusLabels { status: status.to_string() }).inc_by(count);
}

/// One usage event priced for `model` at `cost` USD. The cost is converted to `f64` for
/// the metric only; negative amounts (corrections) are not added, a counter cannot go down.
pub fn usage_priced(model: &str, cost: &Decimal) {
    let labels = ModelLabels { model: model.to_string() };
    let m = metrics();
    m.events_priced.get_or_create(&labels).inc();
    if cost.is_sign_positive() {
        if let Some(usd) = cost.to_f64() {
            m.cost_usd.get_or_create(&labels).inc_by(usd);
        }
    }
}

/// One write batch of `ops` operations committed in `duration`.
pub fn batch_flushed(ops: usize, duration: Duration) {
    let m = metrics();
    m.persisted_ops.inc_by(ops as u64);
    m.batch_size.observe(ops as f64);
    m.batch_flush_duration.observe(duration.as_secs_f64());
}

/// One write batch failed to commit (it will be retried or its callers told).
pub fn batch_flush_failed() {
    metrics().batch_flush_failures.inc();
}

/// One event sent to the dead-letter `topic` for `reason_code` (a stable error code).
pub fn dead_lettered(topic: &str, reason_code: &str) {
    let labels = DeadLetterLabels { topic: topic.to_string(), reason: reason_code.to_string() };
    metrics().dead_lettered.get_or_create(&labels).inc();
}

/// Change the connected SSE client count by `delta` (+1 on connect, -1 on disconnect).
/// Prefer [`sse_client_connected`], which cannot forget the decrement.
pub fn sse_clients(delta: i64) {
    metrics().sse_clients.inc_by(delta);
}

/// Count one SSE client until the returned guard is dropped (keep it inside the stream).
pub fn sse_client_connected() -> SseClientGuard {
    sse_clients(1);
    SseClientGuard { _private: () }
}

/// Counts one SSE client while alive; see [`sse_client_connected`].
#[derive(Debug)]
#[must_use = "the client is counted only while the guard is alive"]
pub struct SseClientGuard {
    _private: (),
}

impl Drop for SseClientGuard {
    fn drop(&mut self) {
        sse_clients(-1);
    }
}

/// Messages currently waiting in `actor`'s mailbox (an actor kind, not one per instance).
pub fn mailbox_depth(actor: &str, depth: usize) {
    let labels = ActorLabels { actor: actor.to_string() };
    metrics().mailbox_depth.get_or_create(&labels).set(i64::try_from(depth).unwrap_or(i64::MAX));
}

/// One Kafka record on `topic` failed to produce (after the producer's own retries).
pub fn kafka_produce_error(topic: &str) {
    metrics().kafka_produce_errors.get_or_create(&TopicLabels { topic: topic.to_string() }).inc();
}

/// The consumer group is `lag` records behind the high watermark on `topic`/`partition`.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    let labels = PartitionLabels { topic: topic.to_string(), partition: partition.to_string() };
    metrics().consumer_lag.get_or_create(&labels).set(lag);
}

/// Every metric in OpenMetrics text format (serve with [`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an error here would come from a metric's own
    // encoder, and a partial scrape is better than none.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics().registry) {
        tracing::warn!(error = %e, "Encoding metrics failed; the scrape is partial.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_ends_with_eof_and_lists_every_family() {
        let text = render();
        assert!(text.ends_with("# EOF\n"), "OpenMetrics output ends with # EOF");
        // Unlabelled metrics are always exposed; a labelled family appears with its first sample.
        for name in ["tally_persisted_ops", "tally_batch_size_ops", "tally_sse_clients"] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} is declared even before any sample");
        }
    }
}
