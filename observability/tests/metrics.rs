#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Scrape-render the registry and parse it with an OpenMetrics parser: names, types,
//! labels and values as Prometheus will read them.

use std::collections::HashMap;
use std::time::Duration;

use openmetrics_parser::{MetricFamily, MetricsExposition, OpenMetricsType, OpenMetricsValue, Sample};
use rust_decimal::Decimal;
use tally_observability::metrics;

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;
type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

fn scrape() -> Exposition {
    let text = metrics::render();
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("valid OpenMetrics: {e:?}\n{text}"))
}

fn family<'a>(scrape: &'a Exposition, name: &str) -> &'a Family {
    scrape.families.get(name).unwrap_or_else(|| panic!("family {name} is exposed"))
}

/// The sample of `family` whose labels are exactly `labels`.
fn sample<'a>(family: &'a Family, labels: &[(&str, &str)]) -> &'a Sample<OpenMetricsValue> {
    let want: HashMap<&str, &str> = labels.iter().copied().collect();
    family
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().unwrap();
            set.iter().count() == want.len() && want.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("{} has a sample labelled {labels:?}: {family:#?}", family.family_name))
}

fn counter(s: &Sample<OpenMetricsValue>) -> f64 {
    match &s.value {
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        other => panic!("expected a counter, got {other:?}"),
    }
}

fn gauge(s: &Sample<OpenMetricsValue>) -> f64 {
    match &s.value {
        OpenMetricsValue::Gauge(g) => g.as_f64(),
        other => panic!("expected a gauge, got {other:?}"),
    }
}

#[test]
fn every_metric_is_exposed_with_its_type() {
    // Labelled families appear with their first sample: record one of each (labels no
    // other test here uses, as the registry is process-wide).
    metrics::http_request("GET", "/probe", 200, Duration::from_millis(1));
    metrics::event_ingested("probe");
    metrics::usage_priced("probe-model", &Decimal::ONE);
    metrics::dead_lettered("probe.dlq", "probe");
    metrics::mailbox_depth("probe", 0);
    metrics::kafka_produce_error("probe");
    metrics::consumer_lag("probe", 0, 0);
    let s = scrape();
    let expected = [
        ("tally_http_requests", OpenMetricsType::Counter),
        ("tally_http_request_duration_seconds", OpenMetricsType::Histogram),
        ("tally_events_ingested", OpenMetricsType::Counter),
        ("tally_events_priced", OpenMetricsType::Counter),
        ("tally_cost_usd", OpenMetricsType::Counter),
        ("tally_persisted_ops", OpenMetricsType::Counter),
        ("tally_batch_size_ops", OpenMetricsType::Histogram),
        ("tally_batch_flush_duration_seconds", OpenMetricsType::Histogram),
        ("tally_batch_flush_failures", OpenMetricsType::Counter),
        ("tally_dead_lettered", OpenMetricsType::Counter),
        ("tally_sse_clients", OpenMetricsType::Gauge),
        ("tally_actor_mailbox_depth", OpenMetricsType::Gauge),
        ("tally_kafka_produce_errors", OpenMetricsType::Counter),
        ("tally_kafka_consumer_lag", OpenMetricsType::Gauge),
    ];
    for (name, kind) in expected {
        assert_eq!(family(&s, name).family_type, kind, "{name} has type {kind}");
    }
}

#[test]
fn http_requests_are_counted_and_timed_by_route_pattern() {
    let route = "/api/threads/{id}";
    metrics::http_request("GET", route, 200, Duration::from_millis(3));
    metrics::http_request("GET", route, 200, Duration::from_millis(40));
    metrics::http_request("GET", route, 404, Duration::from_micros(500));
    let s = scrape();
    let requests = family(&s, "tally_http_requests");
    assert_eq!(requests.get_label_names(), ["method", "route", "status"], "HTTP labels");
    assert_eq!(counter(sample(requests, &[("method", "GET"), ("route", route), ("status", "200")])), 2.0, "two 200s");
    assert_eq!(counter(sample(requests, &[("method", "GET"), ("route", route), ("status", "404")])), 1.0, "one 404");

    let latency = family(&s, "tally_http_request_duration_seconds");
    let OpenMetricsValue::Histogram(h) =
        &sample(latency, &[("method", "GET"), ("route", route), ("status", "200")]).value
    else {
        panic!("latency is a histogram")
    };
    assert_eq!(h.count, Some(2), "two observations");
    let sum = h.sum.unwrap().as_f64();
    assert!((sum - 0.043).abs() < 1e-9, "sum is 43 ms in seconds, got {sum}");
    let bucket = |le: f64| h.buckets.iter().find(|b| b.upper_bound == le).unwrap().count.as_f64();
    assert_eq!(bucket(0.0025), 0.0, "3 ms is above 2.5 ms");
    assert_eq!(bucket(0.005), 1.0, "3 ms is within 5 ms");
    assert_eq!(bucket(0.05), 2.0, "40 ms is within 50 ms (buckets are cumulative)");
    assert_eq!(bucket(f64::INFINITY), 2.0, "+Inf counts everything");
}

#[test]
fn usage_cost_is_summed_by_model_from_decimals() {
    let model = "test-model-cost";
    metrics::usage_priced(model, &Decimal::new(2672, 7)); // 0.0002672
    metrics::usage_priced(model, &Decimal::new(15, 1)); // 1.5
    metrics::usage_priced(model, &Decimal::new(-5, 1)); // a correction: counted, not subtracted
    let s = scrape();
    assert_eq!(counter(sample(family(&s, "tally_events_priced"), &[("model", model)])), 3.0, "three events priced");
    let cost = counter(sample(family(&s, "tally_cost_usd"), &[("model", model)]));
    assert!((cost - 1.5002672).abs() < 1e-12, "cost total is approximately 1.5002672, got {cost}");
}

#[test]
fn pipeline_counters_and_gauges_carry_their_labels() {
    metrics::event_ingested("accepted");
    metrics::events_ingested("accepted", 9);
    metrics::events_ingested("invalid", 2);
    metrics::dead_lettered("inference-events.dlq", "invalid_event");
    metrics::dead_lettered("inference-events.dlq", "invalid_event");
    metrics::kafka_produce_error("token-metrics");
    metrics::consumer_lag("inference-events", 3, 1500);
    metrics::consumer_lag("inference-events", 3, 1200);
    metrics::mailbox_depth("persister", 17);
    metrics::batch_flushed(50, Duration::from_millis(4));
    metrics::batch_flushed(2000, Duration::from_millis(30));
    metrics::batch_flush_failed();
    let s = scrape();
    assert_eq!(counter(sample(family(&s, "tally_events_ingested"), &[("status", "accepted")])), 10.0, "ten accepted");
    assert_eq!(counter(sample(family(&s, "tally_events_ingested"), &[("status", "invalid")])), 2.0, "two invalid");
    let dlq =
        sample(family(&s, "tally_dead_lettered"), &[("topic", "inference-events.dlq"), ("reason", "invalid_event")]);
    assert_eq!(counter(dlq), 2.0, "dead letters by topic and reason");
    assert_eq!(
        counter(sample(family(&s, "tally_kafka_produce_errors"), &[("topic", "token-metrics")])),
        1.0,
        "one error"
    );
    let lag = sample(family(&s, "tally_kafka_consumer_lag"), &[("topic", "inference-events"), ("partition", "3")]);
    assert_eq!(gauge(lag), 1200.0, "lag is the latest value");
    assert_eq!(
        gauge(sample(family(&s, "tally_actor_mailbox_depth"), &[("actor", "persister")])),
        17.0,
        "mailbox depth"
    );
    assert_eq!(counter(sample(family(&s, "tally_persisted_ops"), &[])), 2050.0, "ops persisted");
    assert_eq!(counter(sample(family(&s, "tally_batch_flush_failures"), &[])), 1.0, "one failed flush");
    let OpenMetricsValue::Histogram(sizes) = &sample(family(&s, "tally_batch_size_ops"), &[]).value else {
        panic!("batch sizes are a histogram")
    };
    assert_eq!(sizes.count, Some(2), "two batches");
    let le = |b: f64| sizes.buckets.iter().find(|x| x.upper_bound == b).unwrap().count.as_f64();
    assert_eq!((le(50.0), le(1000.0), le(2000.0)), (1.0, 1.0, 2.0), "batch sizes land in their buckets");
}

#[test]
fn sse_clients_go_up_and_down() {
    // The only test touching this gauge: it is process-wide.
    let before = gauge(sample(family(&scrape(), "tally_sse_clients"), &[]));
    let a = metrics::sse_client_connected();
    let b = metrics::sse_client_connected();
    metrics::sse_clients(1);
    assert_eq!(gauge(sample(family(&scrape(), "tally_sse_clients"), &[])), before + 3.0, "three clients connected");
    drop(a);
    metrics::sse_clients(-1);
    assert_eq!(gauge(sample(family(&scrape(), "tally_sse_clients"), &[])), before + 1.0, "guards decrement on drop");
    drop(b);
    assert_eq!(gauge(sample(family(&scrape(), "tally_sse_clients"), &[])), before, "back to where it was");
}

#[test]
fn label_values_are_escaped() {
    metrics::dead_lettered("odd\"topic", "line\nbreak\\slash");
    let s = scrape();
    let dlq = sample(family(&s, "tally_dead_lettered"), &[("topic", "odd\"topic"), ("reason", "line\nbreak\\slash")]);
    assert_eq!(counter(dlq), 1.0, "escaped label values round-trip through the text format");
}
