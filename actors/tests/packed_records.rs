//! The billing consumer against a real broker (tansu, `TALLY_TEST_KAFKA_BROKERS`): a record that
//! packs several events bills the good ones once and dead-letters each bad one alone, and a
//! compressed record (LZ4 frame) is billed like its JSON, its letters holding that JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use rust_decimal_macros::dec;
use tally_actors::kafka::{
    dlq, ensure_topics, pack, partition_for_user, start_billing_consumer, ConsumerHandle, Envelope, InferenceBatch,
    InferenceEvent, KafkaConfig, KafkaProducer, Topic, COMPRESS_MIN_BYTES, LZ4_FRAME_MAGIC,
};
use tally_actors::{BillingActor, PersisterActor, PersisterConfig, UsageFeed};
use tally_domain::{new_id, Catalog, Usage, UsageKind};
use tally_observability::TraceContext;
use tally_store::{LineFilter, Store};

const HAIKU: &str = "claude-3-5-haiku-20241022";

fn brokers() -> String {
    std::env::var("TALLY_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("TALLY_TEST_KAFKA_BROKERS is not set: run `scripts/tansu.sh start && eval \"$(scripts/tansu.sh env)\"` first")
    })
}

fn event(user: &str, model: &str, input: u64) -> Envelope<InferenceEvent> {
    let mut usage = Usage::new();
    usage.add_tokens(UsageKind::InputTokens, input);
    let payload = InferenceEvent {
        user_id: user.into(),
        model: model.into(),
        provider: None,
        event_type: "token_usage".into(),
        usage,
        thread_id: None,
        message_id: None,
        source: "test".into(),
        idempotency_key: None,
        task: None,
        was_successful: None,
    };
    Envelope::new(new_id(), Utc::now(), "test-producer", payload)
}

/// A node (store, persister, billing, consumer) on fresh topics named after `name`.
async fn node(name: &str) -> (KafkaConfig, Store, ConsumerHandle, tempfile::TempDir) {
    let config = KafkaConfig {
        topic_prefix: format!("t-{name}-{}.", new_id().simple()),
        node_id: "packed-node".into(),
        partitions: 2,
        session_timeout: Duration::from_secs(6),
        message_timeout: Duration::from_millis(3_000),
        ..KafkaConfig::new(brokers())
    };
    ensure_topics(&config).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).unwrap();
    store.seed(&Catalog::parse(include_str!("../../catalog/prices.json")).unwrap()).unwrap();
    let persister = {
        let s = store.clone();
        Supervisor::start(move |_| PersisterActor::new(s, PersisterConfig::default()))
    };
    let billing = {
        let s = store.clone();
        let book = store.load_price_book().unwrap();
        let r = persister.recipient();
        Supervisor::start(move |_| BillingActor::new(s, book, r, UsageFeed::default()))
    };
    let consumer = start_billing_consumer(config.clone(), billing).await.unwrap();
    (config, store, consumer, dir)
}

/// Dead letters of `inference-events` once there are `n`, and the lines billed to `user` then.
async fn letters_and_lines(config: &KafkaConfig, store: &Store, user: &str, n: usize, lines_wanted: usize) -> (Vec<dlq::DeadLetterRecord>, Vec<tally_domain::InvoiceLine>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = config.clone();
        let letters = tokio::task::spawn_blocking(move || dlq::list(&c, Topic::InferenceEvents, 100)).await.unwrap().unwrap();
        let lines = store.usage_lines(&LineFilter { user_id: Some(user.into()), ..LineFilter::default() }).unwrap();
        if letters.len() >= n && lines.len() >= lines_wanted {
            // Let a wrongly repeated billing or letter show up before counting.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let c = config.clone();
            let letters = tokio::task::spawn_blocking(move || dlq::list(&c, Topic::InferenceEvents, 100)).await.unwrap().unwrap();
            let lines = store.usage_lines(&LineFilter { user_id: Some(user.into()), ..LineFilter::default() }).unwrap();
            return (letters, lines);
        }
        assert!(Instant::now() < deadline, "not billed and dead-lettered in time: {} letters, {} lines", letters.len(), lines.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn a_packed_record_bills_its_good_events_once_and_dead_letters_each_bad_one() {
    let (config, store, consumer, _dir) = node("packed").await;

    // One record, as a collector would pack it; two of its events are bad in different ways,
    // and one good event appears twice.
    let good = event("pia", HAIKU, 1_000);
    let other = event("pia", HAIKU, 2_000);
    let bad_user = event("no spaces allowed", HAIKU, 5);
    let no_price = event("pia", "no-such-model", 5);
    let events = vec![good.clone(), bad_user.clone(), other.clone(), no_price.clone(), good.clone()];
    let record = Envelope::new(new_id(), Utc::now(), "test-producer", InferenceBatch { events });
    let producer = KafkaProducer::new(&config).unwrap();
    let partition = partition_for_user("pia", config.partitions);
    producer.publish_to(Topic::InferenceEvents, "pia", partition, &record, &TraceContext::none()).await.unwrap();

    let (letters, lines) = letters_and_lines(&config, &store, "pia", 2, 2).await;
    let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount).sum();
    assert_eq!(total, dec!(0.0024), "the two good events once each: (1000 + 2000) x 0.80/1e6");
    let mut got: Vec<(Option<uuid::Uuid>, String)> = letters.iter().map(|l| (l.letter.event_id, l.letter.code.clone())).collect();
    got.sort();
    let mut expected = vec![(Some(bad_user.event_id), "invalid_user_id".to_string()), (Some(no_price.event_id), "no_price".to_string())];
    expected.sort();
    assert_eq!(got, expected, "each bad event dead-lettered alone, with its code");
    for l in &letters {
        let body: Envelope<InferenceEvent> = Envelope::decode(l.letter.payload.as_bytes()).expect("the letter holds the event's own envelope");
        assert_eq!(Some(body.event_id), l.letter.event_id, "the letter's body is its event");
        assert!(!l.letter.reason.is_empty(), "a reason");
    }
    consumer.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_compressed_record_is_billed_like_its_json_and_its_letters_hold_json() {
    let (config, store, consumer, _dir) = node("lz4").await;
    let producer = KafkaProducer::new(&config).unwrap();
    let partition = partition_for_user("kim", config.partitions);

    // 40 good events and a bad one: a body past the threshold, so `publish_to` compresses it.
    let mut events: Vec<_> = (1..=40).map(|i| event("kim", HAIKU, 1_000 * i)).collect();
    let bad = event("kim", "no-such-model", 5);
    events.insert(7, bad.clone());
    let record = Envelope::new(new_id(), Utc::now(), "test-producer", InferenceBatch { events });
    let json = record.encode().unwrap();
    assert!(json.len() >= COMPRESS_MIN_BYTES, "{} bytes", json.len());
    producer.publish_to(Topic::InferenceEvents, "kim", partition, &record, &TraceContext::none()).await.unwrap();

    // A frame that breaks off, and a valid frame of a record without events (padded past the
    // threshold): each dead-lettered whole, the second with its JSON as the letter's body.
    let packed = pack(json);
    assert!(packed.starts_with(&LZ4_FRAME_MAGIC), "publish_to sends this frame");
    let topic = config.topic(Topic::InferenceEvents);
    producer.send_to(&topic, "kim", Some(partition), &packed[..packed.len() / 2], Default::default()).await.unwrap();
    let empty = format!(
        r#"{{"schema_version":1,"event_id":"{}","occurred_at":"2025-06-01T00:00:00Z","producer":"{}","payload":{{"events":[]}}}}"#,
        new_id(),
        "p".repeat(COMPRESS_MIN_BYTES)
    );
    let empty_frame = pack(empty.clone().into_bytes());
    assert!(empty_frame.starts_with(&LZ4_FRAME_MAGIC), "padded past the threshold");
    producer.send_to(&topic, "kim", Some(partition), &empty_frame, Default::default()).await.unwrap();

    let (letters, lines) = letters_and_lines(&config, &store, "kim", 3, 40).await;
    let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount).sum();
    // (1 + ... + 40) x 1000 tokens x $0.80 per million = 820,000 x 0.0000008.
    assert_eq!(total, dec!(0.656), "the 40 good events once each");
    assert_eq!(lines.len(), 40, "one input line each");
    let mut codes: Vec<&str> = letters.iter().map(|l| l.letter.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["empty_batch", "invalid_compression", "no_price"], "{letters:?}");
    let by_code = |c: &str| letters.iter().find(|l| l.letter.code == c).map(|l| l.letter.payload.clone()).unwrap_or_default();
    let inner: Envelope<InferenceEvent> = Envelope::decode(by_code("no_price").as_bytes()).expect("the bad event's own JSON");
    assert_eq!(inner.event_id, bad.event_id, "the letter's body is its event");
    assert_eq!(by_code("empty_batch"), empty, "a whole-record letter holds the record's JSON, not its frame");
    consumer.shutdown().await.unwrap();
}
