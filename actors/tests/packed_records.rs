//! The billing consumer against a real broker (tansu, `TALLY_TEST_KAFKA_BROKERS`): a record that
//! packs several events bills the good ones once and dead-letters each bad one alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use rust_decimal_macros::dec;
use tally_actors::kafka::{
    dlq, ensure_topics, partition_for_user, start_billing_consumer, Envelope, InferenceBatch, InferenceEvent, KafkaConfig,
    KafkaProducer, Topic,
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
    };
    Envelope::new(new_id(), Utc::now(), "test-producer", payload)
}

#[actix_rt::test]
async fn a_packed_record_bills_its_good_events_once_and_dead_letters_each_bad_one() {
    let config = KafkaConfig {
        topic_prefix: format!("t-packed-{}.", new_id().simple()),
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

    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let c = config.clone();
        let letters = tokio::task::spawn_blocking(move || dlq::list(&c, Topic::InferenceEvents, 100)).await.unwrap().unwrap();
        let lines = store.usage_lines(&LineFilter { user_id: Some("pia".into()), ..LineFilter::default() }).unwrap();
        if letters.len() >= 2 && lines.len() >= 2 {
            break letters;
        }
        assert!(Instant::now() < deadline, "not billed and dead-lettered in time: {} letters, {} lines", letters.len(), lines.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let a wrongly repeated billing or letter show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let lines = store.usage_lines(&LineFilter { user_id: Some("pia".into()), ..LineFilter::default() }).unwrap();
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
