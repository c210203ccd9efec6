//! Shared harness: the broker from `scripts/tansu.sh`, private brokers a test may kill, a collector on port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::{web, App, HttpServer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tally_actors::kafka::KafkaConfig;
use tally_collector::http::{health_routes, routes};
use tally_collector::{CollectorActor, CollectorConfig, IngestState, Sink};

pub const HAIKU: &str = "claude-3-5-haiku-20241022";

/// Logs for a test run (`RUST_LOG=...`), once.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// The shared broker. Missing is a failure, not a skip.
pub fn brokers() -> String {
    init_logs();
    std::env::var("TALLY_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("TALLY_TEST_KAFKA_BROKERS is not set: run `scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"` first")
    })
}

/// The tansu binary, for tests that must stop and restart a broker of their own.
pub fn tansu_bin() -> PathBuf {
    let p = std::env::var("TALLY_TEST_TANSU_BIN").unwrap_or_else(|_| {
        panic!("TALLY_TEST_TANSU_BIN is not set: run `scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"` first")
    });
    let p = PathBuf::from(p);
    assert!(p.exists(), "tansu binary {} missing: run `scripts/tansu.sh start`", p.display());
    p
}

/// A unique topic prefix so tests sharing a broker never see each other's records.
pub fn unique_prefix(name: &str) -> String {
    format!("t-{name}-{}.", uuid::Uuid::now_v7().simple())
}

pub fn kafka_config(brokers: &str, prefix: &str, node: &str) -> KafkaConfig {
    KafkaConfig {
        topic_prefix: prefix.into(),
        node_id: node.into(),
        partitions: 3,
        session_timeout: Duration::from_secs(6),
        message_timeout: Duration::from_millis(1_500),
        ..KafkaConfig::new(brokers)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Collector {
    pub base: String,
    pub handle: actix_web::dev::ServerHandle,
    pub client: reqwest::Client,
}

impl Collector {
    /// A collector role on port 0 (topics created first).
    pub async fn start(kafka: KafkaConfig, config: CollectorConfig) -> Collector {
        tally_actors::kafka::ensure_topics(&kafka).await.unwrap();
        let addr = CollectorActor::new(kafka, config.clone()).unwrap().start();
        let state = web::Data::new(IngestState { sink: Sink::Cluster(addr), config });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let server = HttpServer::new(move || App::new().configure(routes(state.clone())).configure(health_routes(state.clone())))
            .listen(listener)
            .unwrap()
            .workers(2)
            .disable_signals()
            .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Collector { base: format!("http://{local}"), handle, client: reqwest::Client::new() }
    }

    pub async fn post_json(&self, body: &Value) -> (u16, Option<String>, Value) {
        let r = self.client.post(format!("{}/v1/events", self.base)).json(body).send().await.unwrap();
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (status, retry_after, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let r = self.client.post(format!("{}/v1/events", self.base)).header("content-type", content_type).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// One ingest event: `tokens` input tokens for `user`, with an idempotency key when given.
pub fn event(user: &str, key: Option<&str>, tokens: u64) -> Value {
    let mut e = json!({
        "user_id": user, "model": HAIKU, "event_type": "token_usage",
        "quantities": {"input_tokens": tokens.to_string(), "output_tokens": tokens * 2},
        "occurred_at": chrono::Utc::now().to_rfc3339(),
    });
    if let Some(k) = key {
        e["idempotency_key"] = json!(k);
    }
    e
}

/// Every record of `topic` (full name) as of now, read from the start without a group.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = meta.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    let mut ends = std::collections::HashMap::new();
    for p in parts {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo)).unwrap();
            remaining += 1;
            ends.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            if ends.get(&m.partition()).is_some_and(|e| m.offset() + 1 >= *e) {
                ends.remove(&m.partition());
            }
            out.push(m.detach());
        }
    }
    out
}

/// A tansu broker of the test's own, on a free port, that the test may kill and restart.
pub struct PrivateBroker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        init_logs();
        let mut b = PrivateBroker { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        b.restart();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)start on the same port and database.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", std::env::var("TALLY_TEST_TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("tansu.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- private broker log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
