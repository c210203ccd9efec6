//! One event's trace across the cluster, from the real binary: a client posts a batch to a
//! `tally collector` with a W3C `traceparent`, the record crosses a private tansu broker, and a
//! `tally serve` node bills it. Both processes export spans over OTLP to a receiver on loopback,
//! and the test asserts the span tree: one trace from the client's span through the collector's
//! request, publish and produce spans, the node's consume span (parented on the producer span
//! named in the record's header), pricing and the commit, with the expected attributes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_observability::testing::{OtlpReceiver, ReceivedSpan};

use common::{free_port, required_env, wait_port};

/// The trace the test's client starts, and the client's own span in it.
const TRACE_ID: &str = "7a11e7ace0c1057e2b5e4a1d0c0ffee1";
const CLIENT_SPAN_ID: &str = "c11e47c11e47c11e";
const COLLECTOR_ID: &str = "collector-trace";
const NODE_ID: &str = "node-trace";
const USER: &str = "trace-user";
const MODEL: &str = "claude-3-5-haiku-20241022";
const OCCURRED_AT: &str = "2025-06-01T00:00:00Z";
/// Export interval of the processes under test (the SDK reads it from the environment).
const EXPORT_INTERVAL_MS: &str = "200";
/// How long each wait below may take before the test fails.
const BILLING_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const SPANS_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A child process, killed (SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// SIGTERM, then wait for the exit: the process flushes its spans on the way out.
    fn terminate(&mut self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM {}", self.name);
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status} after SIGTERM", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM", self.name);
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private tansu broker on a free port.
fn start_broker(dir: &Path) -> (Proc, String) {
    let bin = required_env("TALLY_TEST_TANSU_BIN", "scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"");
    let dir = dir.join("tansu");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let proc = Proc { name: "tansu".into(), child };
    wait_port(port);
    (proc, format!("127.0.0.1:{port}"))
}

/// Start `tally <args>` exporting spans to `otlp`, and read the address it prints.
fn spawn_tally(dir: &Path, name: &str, otlp: &str, args: &[&str]) -> (Proc, String) {
    let log_path = dir.join(format!("{name}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", EXPORT_INTERVAL_MS)
        .env("RUST_LOG", "warn")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TALLY_KAFKA_BROKERS")
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_REDIS_URL")
        .env_remove("TALLY_NODE_ID")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .rsplit_once(" on ")
        .map(|(_, b)| b.to_string())
        .unwrap_or_else(|| panic!("{name} did not start ({line:?}); see {}", log_path.display()));
    (Proc { name: name.into(), child }, base)
}

fn kafka_args<'a>(brokers: &'a str, prefix: &'a str, node: &'a str) -> Vec<&'a str> {
    vec![
        "--kafka-brokers",
        brokers,
        "--node-id",
        node,
        "--kafka-topic-prefix",
        prefix,
        "--kafka-partitions",
        "1",
        "--kafka-session-timeout-ms",
        "6000",
    ]
}

/// The one span of `trace` named `name` exported by `service`.
fn one<'a>(trace: &'a [ReceivedSpan], service: &str, name: &str, tree: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = trace.iter().filter(|s| s.name == name && s.service_name() == Some(service)).collect();
    assert_eq!(found.len(), 1, "exactly one {name} span from {service} in the trace:\n{tree}");
    found[0]
}

fn child_of(span: &ReceivedSpan, parent: &ReceivedSpan) -> bool {
    span.parent_span_id.as_deref() == Some(parent.span_id.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_one_trace_from_the_collector_through_the_broker_to_billing() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = if std::env::var("TALLY_TEST_KEEP_LOGS").is_ok() { tmp.keep() } else { tmp.path().to_path_buf() };
    let receiver = OtlpReceiver::start().unwrap();
    let otlp = receiver.endpoint();
    let (_broker, brokers) = start_broker(&dir);
    let prefix = format!("tr{}.", std::process::id());
    let db = format!("sqlite://{}", dir.join("node.db").display());

    let mut node_args = vec!["serve", "--bind", "127.0.0.1:0", "--database-url", &db];
    node_args.extend(kafka_args(&brokers, &prefix, NODE_ID));
    let (mut node, node_base) = spawn_tally(&dir, "node", &otlp, &node_args);
    let mut collector_args = vec!["collector", "--bind", "127.0.0.1:0"];
    collector_args.extend(kafka_args(&brokers, &prefix, COLLECTOR_ID));
    let (mut collector, collector_base) = spawn_tally(&dir, "collector", &otlp, &collector_args);

    // One batch of one event, sent inside the client's span.
    let client = reqwest::Client::new();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01");
    let batch = json!([{
        "user_id": USER, "model": MODEL, "event_type": "token_usage", "idempotency_key": "trace-1",
        "quantities": {"input_tokens": "1200", "output_tokens": 340},
        "occurred_at": OCCURRED_AT,
    }]);
    let r = client.post(format!("{collector_base}/v1/events")).header("traceparent", &traceparent).json(&batch).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the collector takes the batch");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["results"][0]["status"], "accepted", "the event is accepted: {answer}");
    let event_id = answer["results"][0]["event_id"].as_str().unwrap().to_string();

    // Billed on the node (through the broker): poll until it shows.
    let deadline = Instant::now() + BILLING_TIMEOUT;
    let billed_cost = loop {
        let m: Value =
            client.get(format!("{node_base}/api/billing/metrics/user/{USER}")).send().await.unwrap().json().await.unwrap_or(Value::Null);
        if m["metrics"]["event_count"].as_u64() == Some(1) {
            break Decimal::from_str(m["metrics"]["total_cost"].as_str().unwrap()).unwrap();
        }
        assert!(Instant::now() < deadline, "the event was not billed within {BILLING_TIMEOUT:?} (logs in {}): {m}", dir.display());
        tokio::time::sleep(POLL).await;
    };
    assert!(billed_cost > Decimal::ZERO, "the event has a cost");
    let billed_at = started.elapsed();

    // Stop both with SIGTERM: each flushes its spans before exiting. Idle keep-alive
    // connections would hold the HTTP servers' graceful shutdown, so close them first.
    drop(client);
    collector.terminate();
    node.terminate();

    // Both have exited, so their exports are in; the wait only covers a slow receiver.
    let chain = ["POST /v1/events", "collector.publish", "kafka.produce", "kafka.consume", "billing.price_usage", "persister.commit"];
    receiver.wait_for(SPANS_TIMEOUT, |spans| {
        chain.iter().all(|name| spans.iter().any(|s| s.trace_id == TRACE_ID && s.name == *name))
            && spans.iter().any(|s| s.name == "persister.flush")
            && spans.iter().any(|s| s.name == "kafka.batch")
    });
    let trace = receiver.trace(TRACE_ID);
    let tree = receiver.span_tree(TRACE_ID);
    eprintln!("span tree of trace {TRACE_ID}:\n{tree}");
    assert!(receiver.rejected().is_empty(), "every export was accepted: {:?}", receiver.rejected());

    // One tree: every span of the trace hangs off the client's span or another span of the trace.
    for s in &trace {
        let parent = s.parent_span_id.as_deref();
        assert!(
            parent == Some(CLIENT_SPAN_ID) || trace.iter().any(|p| Some(p.span_id.as_str()) == parent),
            "{} ({:?}) has a parent outside the trace:\n{tree}",
            s.name,
            s.service_name()
        );
    }
    for (service, node_id) in [("tally-collector", COLLECTOR_ID), ("tally-web", NODE_ID)] {
        let mine: Vec<&ReceivedSpan> = trace.iter().filter(|s| s.service_name() == Some(service)).collect();
        assert!(!mine.is_empty(), "{service} exported spans in the trace:\n{tree}");
        for s in mine {
            assert_eq!(s.resource.get("service.instance.id").map(String::as_str), Some(node_id), "{service}: instance id is the node id");
            assert_eq!(s.resource.get("service.namespace").map(String::as_str), Some("tally"), "{service}: namespace");
        }
    }
    // The consumer side of this event's record was exported at all only in this trace: a
    // record whose header was lost would start a trace of its own.
    let everything = receiver.spans();
    for name in ["kafka.consume", "billing.price_usage", "persister.commit"] {
        let elsewhere: Vec<&ReceivedSpan> = everything.iter().filter(|s| s.name == name && s.trace_id != TRACE_ID).collect();
        assert!(elsewhere.is_empty(), "{name} spans outside the client's trace: {elsewhere:?}\n{tree}");
    }

    // Collector: request -> publish -> produce, the request under the client's span.
    let server = trace
        .iter()
        .find(|s| s.kind == "server" && s.service_name() == Some("tally-collector"))
        .unwrap_or_else(|| panic!("the collector's server span:\n{tree}"));
    assert_eq!(server.name, "POST /v1/events", "server span named by route:\n{tree}");
    assert_eq!(server.parent_span_id.as_deref(), Some(CLIENT_SPAN_ID), "the request continues the client's span:\n{tree}");
    assert_eq!(server.attr("http.response.status_code"), Some("200"), "status on the server span");
    let publish = one(&trace, "tally-collector", "collector.publish", &tree);
    assert!(child_of(publish, server), "publish under the request:\n{tree}");
    assert_eq!(publish.attr("events.accepted"), Some("1"), "accepted count on the publish span");
    let produce = one(&trace, "tally-collector", "kafka.produce", &tree);
    assert!(child_of(produce, publish), "produce under publish:\n{tree}");
    assert_eq!(produce.kind, "producer", "produce span kind");
    let topic = format!("{prefix}inference-events");
    assert_eq!(produce.attr("messaging.destination.name"), Some(topic.as_str()), "topic on the produce span");
    assert_eq!(produce.attr("event.id"), Some(event_id.as_str()), "event id on the produce span");
    let (partition, offset) = (produce.attr("messaging.destination.partition.id"), produce.attr("messaging.kafka.offset"));
    assert!(partition.is_some() && offset.is_some(), "the broker's answer (partition, offset) on the produce span:\n{produce:?}");

    // Node: consume (parent: the producer span from the record header) -> billing -> commit.
    let consume = one(&trace, "tally-web", "kafka.consume", &tree);
    assert!(child_of(consume, produce), "the consume span's parent is the producer span whose id the record carried:\n{tree}");
    assert_eq!(consume.kind, "consumer", "consume span kind");
    assert_eq!(
        (consume.attr("messaging.destination.partition.id"), consume.attr("messaging.kafka.offset")),
        (partition, offset),
        "the consumed record is the one produced (partition, offset)"
    );
    assert_eq!(consume.attr("messaging.destination.name"), Some(topic.as_str()), "topic on the consume span");
    assert_eq!(consume.attr("event.id"), Some(event_id.as_str()), "event id on the consume span");
    assert_eq!(consume.attr("outcome"), Some("billed"), "outcome on the consume span");
    let billing = one(&trace, "tally-web", "billing.price_usage", &tree);
    assert!(child_of(billing, consume), "pricing under the consume span:\n{tree}");
    assert_eq!(billing.attr("event.id"), Some(event_id.as_str()), "event id on the billing span");
    assert_eq!(billing.attr("user.id"), Some(USER), "user on the billing span");
    assert_eq!(
        billing.attr("cost_usd").map(|c| Decimal::from_str(c).unwrap()),
        Some(billed_cost),
        "cost on the billing span is what was billed"
    );
    assert_eq!(billing.attr("duplicate"), Some("false"), "billed once");
    let commit = one(&trace, "tally-web", "persister.commit", &tree);
    assert!(child_of(commit, billing), "the commit joins billing:\n{tree}");
    assert_eq!(commit.attr("ok"), Some("true"), "the commit succeeded");
    let processed = trace
        .iter()
        .find(|s| s.name == "kafka.produce" && s.service_name() == Some("tally-web"))
        .unwrap_or_else(|| panic!("the node's processed-events produce span:\n{tree}"));
    let feed = one(&trace, "tally-web", "feed.publish", &tree);
    assert!(child_of(feed, billing), "the feed bridge publishes under the billing span that priced it:\n{tree}");
    assert!(child_of(processed, feed), "processed-events produce under the feed bridge's publish:\n{tree}");
    assert_eq!(processed.attr("messaging.destination.name"), Some(format!("{prefix}processed-events").as_str()), "processed topic");

    // Spans covering several records link to this one's origins.
    let linked = |name: &str, target: &ReceivedSpan| {
        everything.iter().any(|s| s.name == name && s.links.iter().any(|l| l.trace_id == TRACE_ID && l.span_id == target.span_id))
    };
    assert!(linked("kafka.batch", produce), "the consumer batch span links to the record's producer span:\n{tree}");
    assert!(linked("persister.flush", billing), "the persister flush links to the billing span it committed for:\n{tree}");
    eprintln!("trace_cluster: billed after {billed_at:?}, total {:?}", started.elapsed());
}
