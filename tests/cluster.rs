//! The real binary in cluster mode: a tansu broker, two `tally serve` nodes (one PostgreSQL database,
//! one consumer group) and two `tally collector`s. Events go in through both collectors with
//! duplicates (idempotency keys, retried batches) and malformed or unpriceable events, and people
//! chat on both nodes (one thread on each, and a thread of one node continued on the other), while
//! one node is killed with SIGKILL and restarted and the broker is killed and restarted. At the end
//! every accepted event and every chat turn is billed exactly once (per-user totals equal the exact
//! sums from catalogue prices and from the turns' own costs), the bad events are dead letters with
//! their reasons (`tally dlq list`), each node's live dashboard shows the chat billed on the other
//! node (`processed-events`), and the chat topics carry the turns' messages and token metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{free_port, required_env, wait_port};

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

/// Chat turns of one user, with what they cost according to the API.
#[derive(Default)]
struct ChatLog {
    total: Decimal,
    turns: usize,
    /// (thread id, user message id, assistant message id, assistant cost) of turns made while no node was down.
    checked: Vec<(String, String, String, Decimal)>,
}

async fn create_thread(client: &reqwest::Client, base: &str, user: &str) -> String {
    let r = client.post(format!("{base}/api/users/")).json(&json!({ "user_id": user })).send().await.unwrap();
    assert!(r.status().as_u16() == 201 || r.status().as_u16() == 409, "user {user} created");
    let r = client.post(format!("{base}/api/threads/")).json(&json!({ "user_id": user, "title": "cluster chat" })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "thread created");
    r.json::<Value>().await.unwrap()["thread_id"].as_str().unwrap().to_string()
}

/// One chat turn on `base`; records its cost in `log` (and its ids when `check_topics`).
async fn chat(client: &reqwest::Client, base: &str, user: &str, thread: &str, text: &str, log: &mut ChatLog, check_topics: bool) {
    let r = client
        .post(format!("{base}/api/messages/"))
        .json(&json!({ "thread_id": thread, "content": text, "user_id": user }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "chat turn on {base}");
    let turn: Value = r.json().await.unwrap();
    let cost = Decimal::from_str(turn["assistant_message"]["cost_total"].as_str().unwrap()).unwrap();
    assert!(cost > Decimal::ZERO, "a turn costs something: {turn}");
    log.total += cost;
    log.turns += 1;
    if check_topics {
        let id = |m: &str| turn[m]["message_id"].as_str().unwrap().to_string();
        log.checked.push((thread.to_string(), id("user_message"), id("assistant_message"), cost));
    }
}

/// Every record of a topic so far: (key, envelope).
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("cluster-test-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
        open += 1;
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while open > 0 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                out.push((key, serde_json::from_slice(m.payload().unwrap_or_default()).unwrap()));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(_)) | None => {}
        }
    }
    out
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
    let (mut node_a, mut base_a) = cluster.node("node-a");
    let (_node_b, base_b) = cluster.node("node-b");
    let (_c1, base_c1) = cluster.collector("collector-1");
    let (_c2, base_c2) = cluster.collector("collector-2");
    let collectors = vec![base_c1, base_c2];
    let client = reqwest::Client::new();
    // One chat user per node; the thread of A's user is later continued on B as well.
    let chat_a = format!("cl{}-chat-a", std::process::id());
    let chat_b = format!("cl{}-chat-b", std::process::id());
    let thread_a = create_thread(&client, &base_a, &chat_a).await;
    let thread_b = create_thread(&client, &base_b, &chat_b).await;
    let mut chats: BTreeMap<String, ChatLog> = BTreeMap::new();

    let prices = prices();
    let mut expected: BTreeMap<String, (Decimal, usize)> = BTreeMap::new();
    let mut bad: HashMap<String, Kind> = HashMap::new();
    let mut acked_keys: HashSet<String> = HashSet::new();
    for b in 0..BATCHES {
        // Chaos while ingesting: SIGKILL node A, restart it; SIGKILL the broker, restart it.
        match b {
            1 => {
                // Chat on both nodes while events stream in (early: node A lives on for five
                // more batches, time enough to publish its processed event for B's dashboard).
                chat(&client, &base_a, &chat_a, &thread_a, "hello from node A", chats.entry(chat_a.clone()).or_default(), false).await;
                chat(&client, &base_b, &chat_b, &thread_b, "hello from node B", chats.entry(chat_b.clone()).or_default(), false).await;
            }
            6 => node_a.kill9(),
            16 => (node_a, base_a) = cluster.node("node-a"),
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

    // Chat again with every process up: on each node's own thread, and A's thread continued on B.
    let turns: [(&str, &String, &String); 3] = [(&base_a, &chat_a, &thread_a), (&base_b, &chat_b, &thread_b), (&base_b, &chat_a, &thread_a)];
    for (i, (base, user, thread)) in turns.into_iter().enumerate() {
        chat(&client, base, user, thread, &format!("after the crashes, turn {i}"), chats.entry(user.clone()).or_default(), true).await;
    }
    for (user, log) in &chats {
        expected.insert(user.clone(), (log.total, log.turns));
    }

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
    // Each node's live dashboard shows the chat billed on the other node (processed-events).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (base, other_user) in [(&base_a, &chat_b), (&base_b, &chat_a)] {
        let want = chats[other_user].total;
        loop {
            let snap: Value = client.get(format!("{base}/api/dashboard/snapshot")).send().await.unwrap().json().await.unwrap();
            let got = snap["by_user"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["user_id"].as_str() == Some(other_user.as_str()))
                .map(|r| Decimal::from_str(r["cost"].as_str().unwrap()).unwrap());
            if got == Some(want) {
                break;
            }
            assert!(Instant::now() < deadline, "dashboard on {base} shows {other_user} at {got:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // The chat topics carry the turns made with every process up, keyed by thread.
    let raw = read_topic(&cluster.brokers, &format!("{}raw-messages", cluster.prefix));
    let replies = read_topic(&cluster.brokers, &format!("{}llm-responses", cluster.prefix));
    let metrics = read_topic(&cluster.brokers, &format!("{}token-metrics", cluster.prefix));
    for log in chats.values() {
        for (thread, user_msg, assistant_msg, cost) in &log.checked {
            let on = |records: &[(String, Value)], id: &str| records.iter().find(|(_, e)| e["event_id"].as_str() == Some(id)).cloned();
            let (key, env) = on(&raw, user_msg).unwrap_or_else(|| panic!("user message {user_msg} not on raw-messages"));
            assert_eq!((key.as_str(), env["payload"]["role"].as_str()), (thread.as_str(), Some("user")), "raw-messages keyed by thread");
            let (key, env) = on(&replies, assistant_msg).unwrap_or_else(|| panic!("reply {assistant_msg} not on llm-responses"));
            assert_eq!((key.as_str(), env["payload"]["role"].as_str()), (thread.as_str(), Some("assistant")), "llm-responses keyed by thread");
            let m = metrics
                .iter()
                .find(|(_, e)| e["payload"]["message_id"].as_str() == Some(assistant_msg.as_str()))
                .unwrap_or_else(|| panic!("no token-metrics for {assistant_msg}"));
            assert_eq!(m.0, *thread, "token-metrics keyed by thread");
            let metric_cost = Decimal::from_str(m.1["payload"]["cost"]["total"].as_str().unwrap()).unwrap();
            assert_eq!(metric_cost, *cost, "token-metrics cost equals the turn's cost");
        }
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
