//! The collector role against a real broker: per-event results, NDJSON, limits, dead letters, broker outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::message::Message;
use serde_json::{json, Value};
use tally_actors::kafka::dlq;
use tally_actors::kafka::{Envelope, InferenceEvent, InferenceRecord, Topic};
use tally_collector::CollectorConfig;

fn statuses(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_string()).collect()
}

#[actix_rt::test]
async fn results_say_accepted_duplicate_rejected_and_rejects_are_dead_lettered() {
    let brokers = brokers();
    let prefix = unique_prefix("results");
    let kafka = kafka_config(&brokers, &prefix, "collector-results");
    let c = Collector::start(kafka.clone(), CollectorConfig::default()).await;

    let mut bad = event("alice", None, 5);
    bad["quantities"]["input_tokens"] = json!("-5");
    let batch = json!([event("alice", Some("k1"), 10), event("alice", Some("k1"), 10), bad, event("bob", None, 7), {"user_id": "x"}]);
    let (status, _, body) = c.post_json(&batch).await;
    assert_eq!(status, 200, "batch answered: {body}");
    assert_eq!(statuses(&body), ["accepted", "duplicate", "rejected", "accepted", "rejected"], "per-event results: {body}");
    assert_eq!(body["results"][2]["code"], "negative_quantity", "the rejection says why");
    assert_eq!(body["results"][4]["code"], "invalid_event", "malformed event named");
    assert_eq!(body["results"][0]["event_id"], body["results"][1]["event_id"], "same key, same event id");
    assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64(), body["rejected"].as_u64()), (Some(2), Some(1), Some(2)), "counts");

    // A retry of the same key is a duplicate and is not published again.
    let (status, _, again) = c.post_json(&json!([event("alice", Some("k1"), 10)])).await;
    assert_eq!(status, 200, "retry answered");
    assert_eq!(statuses(&again), ["duplicate"], "retried key is a duplicate");
    assert_eq!(again["results"][0]["event_id"], body["results"][0]["event_id"], "retry maps to the same id");

    // Exactly the two accepted events are on the topic, keyed by user, as versioned envelopes.
    let records = read_topic(&brokers, &kafka.topic(Topic::InferenceEvents));
    assert_eq!(records.len(), 2, "accepted events published once each");
    let mut users = HashSet::new();
    for r in &records {
        let env = Envelope::<InferenceEvent>::decode(r.payload().unwrap()).unwrap();
        assert_eq!(r.key().map(|k| String::from_utf8_lossy(k).into_owned()), Some(env.payload.user_id.clone()), "keyed by user id");
        assert_eq!(env.producer, "collector-results", "producer named");
        users.insert(env.payload.user_id);
    }
    assert_eq!(users, HashSet::from(["alice".to_string(), "bob".to_string()]), "both users' events");

    // Rejected events are on the dead-letter topic with their reasons.
    let cfg = kafka.clone();
    let letters = tokio::task::spawn_blocking(move || dlq::list(&cfg, Topic::InferenceEvents, 100)).await.unwrap().unwrap();
    let mut codes: Vec<String> = letters.iter().map(|l| l.letter.code.clone()).collect();
    codes.sort();
    assert_eq!(codes, ["invalid_event", "negative_quantity"], "both rejects dead-lettered");
    let neg = letters.iter().find(|l| l.letter.code == "negative_quantity").unwrap();
    assert!(neg.letter.reason.contains("negative"), "reason in the body: {}", neg.letter.reason);
    assert!(neg.letter.payload.contains("\"-5\""), "original event kept: {}", neg.letter.payload);
    c.handle.stop(true).await;
}

#[actix_rt::test]
async fn ndjson_batches_and_limits() {
    let brokers = brokers();
    let prefix = unique_prefix("ndjson");
    let kafka = kafka_config(&brokers, &prefix, "collector-ndjson");
    let config = CollectorConfig { max_batch_events: 5, max_batch_bytes: 4096, max_in_flight: 100, ..CollectorConfig::default() };
    let c = Collector::start(kafka.clone(), config).await;

    let lines = [event("carol", Some("n1"), 1).to_string(), "{not json".to_string(), event("carol", Some("n2"), 2).to_string()];
    let (status, body) = c.post_raw(format!("{}\n\n{}\n", lines.join("\n"), "").into_bytes(), "application/x-ndjson").await;
    assert_eq!(status, 200, "ndjson answered: {body}");
    assert_eq!(statuses(&body), ["accepted", "rejected", "accepted"], "a broken line is rejected alone");

    let six: Vec<Value> = (0..6).map(|i| event("carol", Some(&format!("m{i}")), 1)).collect();
    let (status, _, body) = c.post_json(&json!(six)).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("too_many_events")), "count limit: {body}");
    let (status, body) = c.post_raw(vec![b' '; 5000], "application/json").await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "byte limit: {body}");
    let (status, body) = c.post_raw(b"42".to_vec(), "application/json").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")), "not a batch: {body}");

    let records = read_topic(&brokers, &kafka.topic(Topic::InferenceEvents));
    let events: Vec<_> = records.iter().flat_map(|r| InferenceRecord::decode(r.payload().unwrap()).unwrap().into_events()).collect();
    assert_eq!(events.len(), 2, "refused batches published nothing");
    assert_eq!(records.len(), 1, "carol's two events travel in one record");
    c.handle.stop(true).await;
}

#[actix_rt::test]
async fn broker_down_answers_503_never_acks_and_recovers() {
    let mut broker = PrivateBroker::start();
    let prefix = unique_prefix("outage");
    let kafka = kafka_config(&broker.brokers(), &prefix, "collector-outage");
    let config =
        CollectorConfig { max_batch_events: 10, max_in_flight: 20, delivery_timeout: Duration::from_secs(3), ..CollectorConfig::default() };
    let c = Collector::start(kafka.clone(), config).await;
    let (status, _, body) = c.post_json(&json!([event("dave", Some("before"), 1)])).await;
    assert_eq!(status, 200, "healthy broker accepts: {body}");

    broker.kill();
    let a: Vec<Value> = (0..10).map(|i| event("dave", Some(&format!("a{i}")), 1)).collect();
    let b: Vec<Value> = (0..10).map(|i| event("erin", Some(&format!("b{i}")), 1)).collect();
    let (ja, jb) = (json!(a), json!(b));
    let (ra, rb, rc) = futures::join!(c.post_json(&ja), c.post_json(&jb), async {
        // Both batches above now hold the whole in-flight budget: the next one is refused at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let r = c.post_json(&json!([event("frank", None, 1)])).await;
        (r, t.elapsed())
    });
    let ((status_c, retry_c, body_c), took_c) = rc;
    assert_eq!((status_c, body_c["code"].as_str()), (503, Some("overloaded")), "full buffer refuses: {body_c}");
    assert!(took_c < Duration::from_secs(2), "refused at once, not after the delivery timeout ({took_c:?})");
    assert!(retry_c.is_some(), "Retry-After on overload");
    for (status, retry, body) in [ra, rb] {
        assert_eq!((status, body["code"].as_str()), (503, Some("broker_unavailable")), "nothing acknowledged while down: {body}");
        assert!(retry.is_some(), "Retry-After while the broker is down");
        assert_eq!(body["event_ids"].as_array().map(|a| a.len()), Some(10), "event ids returned for a safe retry");
    }

    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let (status, _, body) = c.post_json(&json!(a)).await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "collector did not recover after the broker came back: {status} {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(statuses(&accepted).iter().all(|s| s == "accepted"), "retried batch accepted: {accepted}");
    let ids: HashSet<String> =
        accepted["results"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    let records = read_topic(&broker.brokers(), &kafka.topic(Topic::InferenceEvents));
    let on_topic: HashSet<String> = records
        .iter()
        .flat_map(|r| InferenceRecord::decode(r.payload().unwrap()).unwrap().into_events())
        .map(|e| e.event_id.to_string())
        .collect();
    assert!(ids.is_subset(&on_topic), "every acknowledged event is on the topic after the outage");
    c.handle.stop(true).await;
}
