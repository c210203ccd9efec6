//! The real binary in cluster mode: a tansu broker, two `tally serve` nodes (one PostgreSQL database,
//! one consumer group) and two `tally collector`s. Events go in through both collectors with
//! duplicates (idempotency keys, retried batches) and malformed or unpriceable events, while one
//! node is killed with SIGKILL and restarted and the broker is killed and restarted. At the end every
//! accepted event is billed exactly once (per-user totals equal the exact sums from catalogue
//! prices), and the bad events are dead letters with their reasons (`tally dlq list`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};

const OCCURRED_AT: &str = "2025-06-01T00:00:00Z";
const CATALOG: &str = include_str!("../catalog/prices.json");
const MODELS: [&str; 2] = ["claude-3-5-haiku-20241022", "claude-3-haiku-20240307"];
const USERS: usize = 6;
const BATCHES: usize = 30;
const BATCH: usize = 100;
/// Pause between batches, so the crashes below happen mid-stream rather than after it.
const BATCH_PAUSE: Duration = Duration::from_millis(150);
/// How long the broker stays dead.
const BROKER_DOWNTIME: Duration = Duration::from_secs(3);

fn required_env(var: &str, how: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run `{how}` first"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Broker {
    port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let mut b = Broker { port: free_port(), dir: dir.join("tansu"), proc: None };
        std::fs::create_dir_all(&b.dir).unwrap();
        b.restart();
        b
    }

    fn restart(&mut self) {
        let bin = required_env("TALLY_TEST_TANSU_BIN", "scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log")).unwrap();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.proc = Some(Proc { child });
        wait_port(self.port);
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

struct Cluster {
    dir: PathBuf,
    db: String,
    redis: String,
    brokers: String,
    prefix: String,
}

impl Cluster {
    fn kafka_args(&self, node: &str) -> Vec<String> {
        [
            "--kafka-brokers",
            &self.brokers,
            "--node-id",
            node,
            "--kafka-topic-prefix",
            &self.prefix,
            "--kafka-partitions",
            "4",
            "--kafka-session-timeout-ms",
            "6000",
            "--kafka-message-timeout-ms",
            "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Start `tally <role>` and read the address it prints.
    fn spawn(&self, name: &str, args: Vec<String>) -> (Proc, String) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(&args)
            .env("TALLY_SIM_TOKEN_DELAY_MS", "1")
            .env("RUST_LOG", "warn,tally_actors::kafka=info")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("TALLY_KAFKA_BROKERS")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .rsplit_once(" on ")
            .map(|(_, b)| b.to_string())
            .unwrap_or_else(|| panic!("{name} did not start ({line:?}); see {}", self.dir.join(format!("{name}.log")).display()));
        (Proc { child }, base)
    }

    fn node(&self, name: &str) -> (Proc, String) {
        // Both nodes share PostgreSQL and Redis (hot reads): either node answers with every node's billing.
        let mut args: Vec<String> = ["serve", "--bind", "127.0.0.1:0", "--database-url", &self.db, "--redis-url", &self.redis]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.kafka_args(name));
        self.spawn(name, args)
    }

    fn collector(&self, name: &str) -> (Proc, String) {
        let mut args: Vec<String> =
            ["collector", "--bind", "127.0.0.1:0", "--ingest-delivery-timeout-ms", "5000"].iter().map(|s| s.to_string()).collect();
        args.extend(self.kafka_args(name));
        self.spawn(name, args)
    }
}

/// Catalogue price of (model, kind) in force at `OCCURRED_AT`.
fn prices() -> HashMap<(String, String), Decimal> {
    let cat: Value = serde_json::from_str(CATALOG).unwrap();
    let mut best: HashMap<(String, String), (String, Decimal)> = HashMap::new();
    for m in cat["models"].as_array().unwrap() {
        for p in m["prices"].as_array().unwrap() {
            let from = p["effective_from"].as_str().unwrap().to_string();
            if from.as_str() > OCCURRED_AT {
                continue;
            }
            let key = (m["name"].as_str().unwrap().to_string(), p["kind"].as_str().unwrap().to_string());
            let price = Decimal::from_str(p["price"].as_str().unwrap()).unwrap();
            if best.get(&key).is_none_or(|(f, _)| *f < from) {
                best.insert(key, (from, price));
            }
        }
    }
    best.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

/// What one event is: good (billable), malformed (collector rejects), or unpriceable (consumer dead-letters).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Good,
    Malformed,
    Unpriceable,
}

fn make_event(i: usize) -> (Kind, String, Value) {
    // Unique per run: the shared Redis outlives test databases.
    let user = format!("cl{}-user-{}", std::process::id(), i % USERS);
    let key = format!("evt-{i}");
    let kind = match i % 97 {
        13 => Kind::Malformed,
        41 => Kind::Unpriceable,
        _ => Kind::Good,
    };
    let model = match kind {
        Kind::Unpriceable => "no-such-model",
        _ => MODELS[i % 2],
    };
    let input: i64 = if kind == Kind::Malformed { -5 } else { 100 + (i % 37) as i64 };
    let ev = json!({
        "user_id": user, "model": model, "event_type": "token_usage", "idempotency_key": key,
        "quantities": {"input_tokens": input.to_string(), "output_tokens": 10 + (i % 13), "cache_read_tokens": (i % 5).to_string()},
        "occurred_at": OCCURRED_AT,
    });
    (kind, key, ev)
}

fn cost(prices: &HashMap<(String, String), Decimal>, ev: &Value) -> Decimal {
    let model = ev["model"].as_str().unwrap();
    let mut total = Decimal::ZERO;
    for (kind, q) in ev["quantities"].as_object().unwrap() {
        let q = match q {
            Value::String(s) => Decimal::from_str(s).unwrap(),
            other => Decimal::from(other.as_u64().unwrap()),
        };
        total += q * prices[&(model.to_string(), kind.clone())] / Decimal::from(1_000_000);
    }
    total
}

/// Post a batch until a collector acknowledges it (503 while the broker is down: retry, same keys).
async fn post_until_acked(client: &reqwest::Client, bases: &[String], first: usize, batch: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempt = first;
    loop {
        let url = format!("{}/v1/events", bases[attempt % bases.len()]);
        match client.post(&url).json(batch).timeout(Duration::from_secs(20)).send().await {
            Ok(r) if r.status().as_u16() == 200 => return r.json().await.unwrap(),
            Ok(r) => {
                let status = r.status().as_u16();
                assert_eq!(status, 503, "only 503 may refuse a well-formed batch: {}", r.text().await.unwrap_or_default());
            }
            Err(e) => panic!("collector request failed: {e}"),
        }
        assert!(Instant::now() < deadline, "batch never acknowledged");
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_bills_every_accepted_event_exactly_once_through_crashes() {
    required_env("TALLY_TEST_KAFKA_BROKERS", "scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"");
    let admin = required_env("TALLY_TEST_POSTGRES_URL", "scripts/services.sh start && eval \"$(scripts/services.sh env)\"");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var("TALLY_TEST_KEEP_LOGS").is_ok();
    let dir = if keep { tmp.keep() } else { tmp.path().to_path_buf() };

    // A fresh database shared by both nodes.
    let db_name = format!("tally_cluster_{}_{}", std::process::id(), started.elapsed().as_nanos());
    let ok = Command::new("psql").args([admin.as_str(), "-q", "-c", &format!("CREATE DATABASE \"{db_name}\"")]).status().unwrap().success();
    assert!(ok, "CREATE DATABASE through TALLY_TEST_POSTGRES_URL");
    let db = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db_name}"),
        None => panic!("TALLY_TEST_POSTGRES_URL has no database part"),
    };

    let broker = Broker::start(&dir);
    let redis = required_env("TALLY_TEST_REDIS_URL", "scripts/services.sh start && eval \"$(scripts/services.sh env)\"");
    let cluster = Cluster { dir: dir.clone(), db: db.clone(), redis, brokers: broker.addr(), prefix: format!("cl{}.", std::process::id()) };
    let broker = std::sync::Arc::new(std::sync::Mutex::new(broker));
    let mut broker_restart = None;
    let migrated =
        Command::new(env!("CARGO_BIN_EXE_tally")).args(["migrate", "--database-url", &db]).stderr(Stdio::null()).status().unwrap();
    assert!(migrated.success(), "tally migrate");
    let (mut node_a, _) = cluster.node("node-a");
    let (_node_b, base_b) = cluster.node("node-b");
    let (_c1, base_c1) = cluster.collector("collector-1");
    let (_c2, base_c2) = cluster.collector("collector-2");
    let collectors = vec![base_c1, base_c2];
    let client = reqwest::Client::new();

    let prices = prices();
    let mut expected: BTreeMap<String, (Decimal, usize)> = BTreeMap::new();
    let mut bad: HashMap<String, Kind> = HashMap::new();
    let mut acked_keys: HashSet<String> = HashSet::new();
    for b in 0..BATCHES {
        // Chaos while ingesting: SIGKILL node A, restart it; SIGKILL the broker, restart it.
        match b {
            6 => node_a.kill9(),
            16 => node_a = cluster.node("node-a").0,
            20 => {
                broker.lock().unwrap().kill9();
                // Back after a while; meanwhile batches are refused (503) and retried with the same keys.
                let broker = broker.clone();
                broker_restart = Some(std::thread::spawn(move || {
                    std::thread::sleep(BROKER_DOWNTIME);
                    broker.lock().unwrap().restart();
                }));
            }
            _ => {}
        }
        tokio::time::sleep(BATCH_PAUSE).await;
        let events: Vec<(Kind, String, Value)> = (b * BATCH..(b + 1) * BATCH).map(make_event).collect();
        let batch = json!(events.iter().map(|(_, _, e)| e.clone()).collect::<Vec<_>>());
        let answer = post_until_acked(&client, &collectors, b, &batch).await;
        // Every fifth batch is sent again through the other collector: all duplicates by key.
        if b % 5 == 0 {
            let again = post_until_acked(&client, &collectors, b + 1, &batch).await;
            for (r1, r2) in answer["results"].as_array().unwrap().iter().zip(again["results"].as_array().unwrap()) {
                assert_eq!(r1["event_id"], r2["event_id"], "a retried key maps to the same event id");
            }
        }
        for ((kind, key, ev), r) in events.iter().zip(answer["results"].as_array().unwrap()) {
            let status = r["status"].as_str().unwrap();
            match kind {
                Kind::Malformed => {
                    assert_eq!((status, r["code"].as_str()), ("rejected", Some("negative_quantity")), "malformed rejected: {r}");
                    bad.insert(key.clone(), *kind);
                }
                Kind::Unpriceable => {
                    assert_eq!(status, "accepted", "the collector cannot price; the consumer dead-letters: {r}");
                    bad.insert(key.clone(), *kind);
                }
                Kind::Good => {
                    assert!(status == "accepted" || status == "duplicate", "good event taken: {r}");
                    if acked_keys.insert(key.clone()) {
                        let e = expected.entry(ev["user_id"].as_str().unwrap().to_string()).or_default();
                        e.0 += cost(&prices, ev);
                        e.1 += 1;
                    }
                }
            }
        }
    }
    broker_restart.take().unwrap().join().unwrap();
    let ingested_at = started.elapsed();

    // Every accepted event is billed exactly once: per-user totals and counts converge on the exact sums.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut mismatch = None;
        for (user, (total, count)) in &expected {
            let r = client.get(format!("{base_b}/api/billing/metrics/user/{user}")).send().await.unwrap();
            let m: Value = r.json().await.unwrap_or(Value::Null);
            let got_count = m["metrics"]["event_count"].as_u64().unwrap_or(0) as usize;
            let got_total = m["metrics"]["total_cost"].as_str().map(|s| Decimal::from_str(s).unwrap()).unwrap_or_default();
            assert!(got_count <= *count, "user {user}: {got_count} events billed, more than the {count} accepted (double billing)");
            if got_count != *count || got_total != *total {
                mismatch = Some(format!("{user}: {got_count}/{count} events, {got_total} vs {total}"));
                break;
            }
        }
        match mismatch {
            None => break,
            Some(m) => assert!(Instant::now() < deadline, "billing did not converge: {m} (logs in {})", dir.display()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The malformed and unpriceable events are dead letters with their reasons.
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["dlq", "list", "--topic", "inference-events", "--kafka-brokers", &cluster.brokers, "--kafka-topic-prefix", &cluster.prefix])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "tally dlq list");
    let letters: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (key, kind) in &bad {
        let needle = format!("\"idempotency_key\":\"{key}\"");
        let letter = letters.iter().find(|l| l["payload"].as_str().unwrap().contains(&needle));
        let letter = letter.unwrap_or_else(|| panic!("{key} ({kind:?}) is not in the dead-letter topic"));
        let want = if *kind == Kind::Malformed { "negative_quantity" } else { "no_price" };
        assert_eq!(letter["code"], want, "{key} dead-lettered with its reason");
        assert!(!letter["reason"].as_str().unwrap().is_empty(), "reason given");
    }
    assert!(bad.values().any(|k| *k == Kind::Malformed) && bad.values().any(|k| *k == Kind::Unpriceable), "both kinds exercised");

    // Replaying the unpriceable letters sends them through billing again: still unpriceable, so
    // they come back as dead letters, and nothing is billed twice.
    let no_price = letters.iter().filter(|l| l["code"] == "no_price").count();
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["dlq", "replay", "--topic", "inference-events", "--code", "no_price"])
        .args(["--kafka-brokers", &cluster.brokers, "--kafka-topic-prefix", &cluster.prefix])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"].as_u64(), Some(no_price as u64), "every no_price letter replayed: {report}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["dlq", "list", "--kafka-brokers", &cluster.brokers, "--kafka-topic-prefix", &cluster.prefix])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let again = String::from_utf8(out.stdout).unwrap().lines().filter(|l| l.contains("\"code\":\"no_price\"")).count();
        if again >= 2 * no_price {
            break;
        }
        assert!(Instant::now() < deadline, "replayed letters did not come back ({again} of {})", 2 * no_price);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (user, (total, count)) in &expected {
        let m: Value = client.get(format!("{base_b}/api/billing/metrics/user/{user}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(m["metrics"]["event_count"].as_u64(), Some(*count as u64), "{user}: replay billed nothing new");
        assert_eq!(m["metrics"]["total_cost"].as_str().map(|s| Decimal::from_str(s).unwrap()), Some(*total), "{user}: total unchanged");
    }
    eprintln!(
        "cluster: {} events billed exactly once across {} users, {} dead letters; ingest {:?}, total {:?}",
        acked_keys.len(),
        expected.len(),
        letters.len(),
        ingested_at,
        started.elapsed()
    );
    let _ =
        Command::new("psql").args([admin.as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")]).status();
}
