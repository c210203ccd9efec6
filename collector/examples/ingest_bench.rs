//! Ingest benchmark driver (run by `bench/ingest.sh`): posts N events to `POST /v1/events` and measures
//! events/s and latency from acceptance to priced-and-persisted.
//!
//! Embedded mode (`--mode embedded`, a `tally serve` without Kafka): the answer comes after the
//! events are priced and committed, so acceptance is pricing; latency is the request latency.
//! Cluster mode (`--mode cluster`, a `tally collector` + `tally serve` nodes): acceptance is the
//! collector's answer (the broker acknowledged), pricing is the node's `processed-events` record
//! (`priced_at`, written after the commit); the driver reads that topic until it saw every event.
//! With `--node-url`, it first waits until the nodes' `tally_events_priced_total` (GET /metrics)
//! reaches N, so its reading does not take CPU from the nodes while they bill (the latencies come
//! from the records' `priced_at` either way).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use futures::stream::{self, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tally_actors::kafka::ProcessedRecord;

#[derive(Parser, Debug)]
struct Args {
    /// `embedded` or `cluster`.
    #[arg(long)]
    mode: String,
    /// Base URL of the ingest API (node in embedded mode, collector in cluster mode); comma-separated for several.
    #[arg(long)]
    url: String,
    /// Events to send.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Users the events are spread over.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Cluster mode: brokers and topic prefix to read `processed-events` from.
    #[arg(long)]
    kafka_brokers: Option<String>,
    #[arg(long, default_value = "")]
    kafka_topic_prefix: String,
    /// Cluster mode: base URLs of the billing nodes (comma-separated); the driver waits until
    /// their `/metrics` count every event as priced before it reads `processed-events`.
    #[arg(long)]
    node_url: Option<String>,
}

/// Sum of `tally_events_priced_total` over the nodes' `/metrics`.
async fn priced_count(client: &reqwest::Client, nodes: &[String]) -> u64 {
    let mut sum = 0;
    for node in nodes {
        let Ok(r) = client.get(format!("{}/metrics", node.trim_end_matches('/'))).send().await else { continue };
        let text = r.text().await.unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with("tally_events_priced_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    sum
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Read `processed-events` until `n` distinct event ids were seen; returns event id -> priced_at.
fn read_priced(brokers: &str, topic: &str, n: usize, stop: Duration) -> HashMap<String, DateTime<Utc>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = HashMap::with_capacity(n);
    let deadline = Instant::now() + stop;
    while seen.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(Ok(record)) = m.payload().map(ProcessedRecord::decode) {
                for env in record.into_events() {
                    seen.entry(env.event_id.to_string()).or_insert(env.payload.priced_at);
                }
            }
        }
    }
    seen
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let urls: Vec<String> = args.url.split(',').map(|u| format!("{}/v1/events", u.trim_end_matches('/'))).collect();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build().unwrap();
    let run = Utc::now().timestamp_millis();
    let batches: Vec<Vec<Value>> = (0..args.events)
        .map(|i| {
            json!({
                "user_id": format!("bench-{run}-{}", i % args.users),
                "model": "claude-3-5-haiku-20241022", "event_type": "token_usage",
                "idempotency_key": format!("{run}-{i}"),
                "quantities": {"input_tokens": (100 + i % 900).to_string(), "output_tokens": 20 + i % 400},
                "occurred_at": "2025-06-01T00:00:00Z",
            })
        })
        .collect::<Vec<_>>()
        .chunks(args.batch)
        .map(<[Value]>::to_vec)
        .collect();
    let bodies: Vec<String> = batches.iter().map(|b| serde_json::to_string(b).unwrap()).collect();

    let accepted_at: Arc<Mutex<HashMap<String, DateTime<Utc>>>> = Arc::new(Mutex::new(HashMap::with_capacity(args.events)));
    // Cluster mode reads `processed-events` once every event was accepted: the records carry their
    // own `priced_at`, so reading late does not change the latencies and keeps the broker free meanwhile.
    let reader = match (args.mode.as_str(), &args.kafka_brokers) {
        ("cluster", Some(b)) => Some((b.clone(), format!("{}processed-events", args.kafka_topic_prefix), args.events)),
        ("cluster", None) => panic!("--kafka-brokers is required in cluster mode"),
        _ => None,
    };

    let started = Instant::now();
    let start_wall = Utc::now();
    let mut request_ms: Vec<f64> = stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let client = client.clone();
            let url = urls[i % urls.len()].clone();
            let accepted_at = accepted_at.clone();
            async move {
                loop {
                    let t = Instant::now();
                    let r = client.post(&url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
                    let status = r.status().as_u16();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    assert_eq!(status, 200, "ingest failed: {v}");
                    let now = Utc::now();
                    let mut acc = accepted_at.lock().unwrap();
                    for res in v["results"].as_array().unwrap() {
                        assert_eq!(res["status"], "accepted", "bench events are all new and valid: {res}");
                        acc.insert(res["event_id"].as_str().unwrap().to_string(), now);
                    }
                    return t.elapsed().as_secs_f64() * 1000.0;
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let accept_secs = started.elapsed().as_secs_f64();
    request_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = args.events as f64;
    println!("mode: {}  events: {}  batch: {}  concurrency: {}", args.mode, args.events, args.batch, args.concurrency);
    println!(
        "accepted: {:.0} events/s ({:.2}s); request latency p50 {:.1} ms, p99 {:.1} ms",
        n / accept_secs,
        accept_secs,
        percentile(&request_ms, 0.5),
        percentile(&request_ms, 0.99)
    );
    match reader {
        None => {
            // Embedded: answered = priced and committed.
            println!(
                "priced+persisted: {:.0} events/s; acceptance-to-priced latency = request latency (p50 {:.1} ms, p99 {:.1} ms)",
                n / accept_secs,
                percentile(&request_ms, 0.5),
                percentile(&request_ms, 0.99)
            );
        }
        Some((brokers, topic, n)) => {
            if let Some(nodes) = &args.node_url {
                let nodes: Vec<String> = nodes.split(',').map(str::to_string).collect();
                let deadline = Instant::now() + Duration::from_secs(600);
                while priced_count(&client, &nodes).await < n as u64 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let priced = tokio::task::spawn_blocking(move || read_priced(&brokers, &topic, n, Duration::from_secs(600))).await.unwrap();
            let acc = accepted_at.lock().unwrap();
            let mut lat: Vec<f64> = Vec::with_capacity(priced.len());
            let mut last = start_wall;
            for (id, p) in &priced {
                if let Some(a) = acc.get(id) {
                    lat.push((*p - *a).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
                last = last.max(*p);
            }
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let secs = (last - start_wall).num_milliseconds() as f64 / 1000.0;
            println!(
                "priced+persisted: {} of {} events, {:.0} events/s end to end ({:.2}s); acceptance-to-priced p50 {:.1} ms, p99 {:.1} ms",
                priced.len(),
                args.events,
                priced.len() as f64 / secs,
                secs,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
    }
}
