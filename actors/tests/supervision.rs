//! Supervision and idempotency of the actors against real SQLite storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use rust_decimal_macros::dec;
use tally_actors::{BillBatch, BillUsage, BillingActor, FlushBatch, InjectPanic, Persist, PersisterActor, PersisterConfig, UsageEvent, UsageFeed};
use tally_domain::{new_id, Catalog, Usage, UsageKind};
use tally_store::{LineFilter, MessageRecord, MessageStatus, Role, Store, ThreadRecord, UserRecord, WriteOp};

const HAIKU: &str = "claude-3-5-haiku-20241022";

fn store_with_thread(dir: &tempfile::TempDir) -> (Store, ThreadRecord) {
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).unwrap();
    store.seed(&Catalog::parse(include_str!("../../catalog/prices.json")).unwrap()).unwrap();
    store.create_user(&UserRecord { user_id: "u1".into(), username: "u1".into(), email: None, created_at: Utc::now() }).unwrap();
    let thread = ThreadRecord {
        thread_id: new_id(),
        user_id: "u1".into(),
        title: "t".into(),
        model: HAIKU.into(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        is_active: true,
    };
    store.create_thread(&thread).unwrap();
    (store, thread)
}

fn message(thread: &ThreadRecord, text: &str) -> MessageRecord {
    MessageRecord {
        message_id: new_id(),
        thread_id: thread.thread_id,
        user_id: thread.user_id.clone(),
        role: Role::User,
        content: text.into(),
        model: thread.model.clone(),
        created_at: Utc::now(),
        simulated: false,
        status: MessageStatus::Complete,
    }
}

#[actix_rt::test]
async fn persister_restarts_after_a_panic_without_losing_accepted_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, thread) = store_with_thread(&dir);
    // A long interval: the write stays buffered until the explicit flush below.
    let config = PersisterConfig { max_ops: 10_000, flush_interval: Duration::from_secs(60) };
    let s = store.clone();
    let persister = Supervisor::start(move |_| PersisterActor::new(s, config));

    let m1 = message(&thread, "accepted before the crash");
    let pending = persister.send(Persist { ops: vec![WriteOp::Message(m1.clone())], trace: Default::default() });
    let pending = actix_rt::spawn(pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.thread_messages(thread.thread_id).unwrap().is_empty(), "write is still buffered before the crash");

    let crash = persister.send(InjectPanic).await.unwrap();
    assert!(crash.is_err(), "the panicking handler reports an error instead of unwinding");
    persister.send(FlushBatch).await.unwrap().unwrap();

    let outcome = pending.await.unwrap().unwrap().unwrap();
    assert_eq!(outcome.inserted_messages, vec![m1.message_id], "the buffered write was committed and acknowledged");
    let stored = store.thread_messages(thread.thread_id).unwrap();
    assert_eq!(stored.len(), 1, "the write survived the restart");

    let m2 = message(&thread, "after the restart");
    let again = persister.send(Persist { ops: vec![WriteOp::Message(m2)], trace: Default::default() });
    persister.send(FlushBatch).await.unwrap().unwrap();
    assert_eq!(again.await.unwrap().unwrap().inserted_messages.len(), 1, "the restarted actor keeps working");
}

#[actix_rt::test]
async fn billing_the_same_event_twice_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, thread) = store_with_thread(&dir);
    let persister = {
        let s = store.clone();
        Supervisor::start(move |_| PersisterActor::new(s, PersisterConfig::default()))
    };
    let feed = UsageFeed::default();
    let mut rx = feed.subscribe();
    let billing = {
        let s = store.clone();
        let book = store.load_price_book().unwrap();
        let r = persister.clone().recipient();
        let f = feed.clone();
        Supervisor::start(move |_| BillingActor::new(s, book, r, f))
    };
    let mut usage = Usage::new();
    usage.add_tokens(UsageKind::InputTokens, 1234);
    usage.add_tokens(UsageKind::OutputTokens, 567);
    let event = UsageEvent {
        event_id: new_id(),
        user_id: "u1".into(),
        thread_id: Some(thread.thread_id),
        message_id: None,
        model: HAIKU.into(),
        occurred_at: Utc::now(),
        usage,
        source: "test".into(),
        idempotency_key: None,
        key_id: None,
        task: None,
        successful: true,
    };
    let first_id = event.event_id;
    let first = billing.send(BillUsage { event: event.clone(), with: vec![], trace: Default::default() }).await.unwrap().unwrap();
    let second = billing.send(BillUsage { event, with: vec![], trace: Default::default() }).await.unwrap().unwrap();
    assert!(!first.duplicate, "first delivery is billed");
    assert!(second.duplicate, "replay is recognised");
    assert_eq!(first.cost.total, dec!(0.0032552), "1234 x 0.80/1e6 + 567 x 4/1e6");
    let lines = store.usage_lines(&LineFilter { thread_id: Some(thread.thread_id), ..LineFilter::default() }).unwrap();
    let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount).sum();
    assert_eq!(total, dec!(0.0032552), "stored once");
    let announced = rx.try_recv().expect("the first delivery is published to the live feed");
    // A replay is announced again (it may be the retry of a commit whose answer was lost);
    // every receiver counts an event id once.
    let again = rx.try_recv().expect("the replay is announced with the same id");
    let ids = |b: &[tally_actors::UsagePriced]| b.iter().map(|u| u.event_id).collect::<Vec<_>>();
    assert_eq!((ids(&announced), ids(&again)), (vec![first_id], vec![first_id]), "both carry the event's id");
    assert!(rx.try_recv().is_err(), "nothing else announced");
}

#[actix_rt::test]
async fn unpriced_usage_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, thread) = store_with_thread(&dir);
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
    let mut usage = Usage::new();
    usage.add(UsageKind::Resource("images".into()), dec!(2)).unwrap();
    let event = UsageEvent {
        event_id: new_id(),
        user_id: "u1".into(),
        thread_id: Some(thread.thread_id),
        message_id: None,
        model: HAIKU.into(),
        occurred_at: Utc::now(),
        usage,
        source: "test".into(),
        idempotency_key: None,
        key_id: None,
        task: None,
        successful: true,
    };
    let r = billing.send(BillUsage { event, with: vec![], trace: Default::default() }).await.unwrap();
    assert_eq!(r.map(|_| ()).map_err(|e| e.code()), Err("no_price"), "Haiku has no image price");
    assert!(store.usage_lines(&LineFilter::default()).unwrap().is_empty(), "nothing stored");
}

fn tokens_event(thread: &ThreadRecord, input: u64) -> UsageEvent {
    let mut usage = Usage::new();
    usage.add_tokens(UsageKind::InputTokens, input);
    UsageEvent {
        event_id: new_id(),
        user_id: "u1".into(),
        thread_id: Some(thread.thread_id),
        message_id: None,
        model: HAIKU.into(),
        occurred_at: Utc::now(),
        usage,
        source: "test".into(),
        idempotency_key: None,
        key_id: None,
        task: None,
        successful: true,
    }
}

#[actix_rt::test]
async fn a_batch_gives_each_event_its_own_outcome_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, thread) = store_with_thread(&dir);
    let persister = {
        let s = store.clone();
        Supervisor::start(move |_| PersisterActor::new(s, PersisterConfig::default()))
    };
    let feed = UsageFeed::default();
    let mut rx = feed.subscribe();
    let billing = {
        let s = store.clone();
        let book = store.load_price_book().unwrap();
        let r = persister.recipient();
        let f = feed.clone();
        Supervisor::start(move |_| BillingActor::new(s, book, r, f))
    };
    let earlier = tokens_event(&thread, 1_000);
    billing.send(BillUsage { event: earlier.clone(), with: vec![], trace: Default::default() }).await.unwrap().unwrap();
    assert!(rx.try_recv().is_ok(), "the earlier event was published");

    let new = tokens_event(&thread, 2_000);
    let mut unpriced = tokens_event(&thread, 5);
    unpriced.model = "no-such-model".into();
    // Priced (it is only tokens) but refused by the store (more than a BIGINT of tokens): the
    // batch's transaction fails, and the other events must still be stored, each on its own.
    let refused = tokens_event(&thread, u64::MAX);
    let earlier_id = earlier.event_id;
    let events = vec![new.clone(), unpriced, new.clone(), earlier, refused];
    let results = billing.send(BillBatch { events, trace: Default::default() }).await.unwrap().unwrap();
    let got: Vec<Result<bool, &str>> = results.iter().map(|r| r.as_ref().map(|b| b.duplicate).map_err(|e| e.code())).collect();
    assert_eq!(got[0], Ok(false), "a new event is billed");
    assert_eq!(got[1], Err("no_price"), "an unknown model is refused alone");
    assert_eq!(got[2], Ok(true), "its repeat in the same batch is a duplicate");
    assert_eq!(got[3], Ok(true), "an event billed before is a duplicate");
    assert_eq!(got[4], Err("invalid"), "the store's refusal is the refused event's alone");
    assert_eq!(results[0].as_ref().unwrap().cost.total, dec!(0.0016), "2000 x 0.80/1e6");

    let lines = store.usage_lines(&LineFilter { thread_id: Some(thread.thread_id), ..LineFilter::default() }).unwrap();
    let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount).sum();
    assert_eq!(total, dec!(0.0024), "the earlier event and the new one, once each");
    let published = rx.try_recv().expect("the new event is published");
    let ids: Vec<_> = published.iter().map(|p| p.event_id).collect();
    // The earlier event is announced again (a duplicate may be a commit whose answer was lost;
    // the feed's receivers count each id once), and each id only once per batch.
    assert_eq!(ids, vec![new.event_id, earlier_id], "the new event once, the repeat of the earlier one once");
    assert!(rx.try_recv().is_err(), "nothing else is published");
}

#[actix_rt::test]
async fn the_shared_price_book_follows_price_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_thread(&dir);
    let book = store.load_price_book().unwrap();
    let persister = PersisterActor::new(store.clone(), PersisterConfig::default()).start();
    let actor = BillingActor::new(store, book, persister.recipient(), UsageFeed::default());
    let handle = actor.price_book();
    let billing = actor.start();
    let now = Utc::now();
    let before = handle.current().lookup(HAIKU, &UsageKind::OutputTokens, now).unwrap().price;
    let from = now + chrono::Duration::seconds(1);
    billing
        .send(tally_actors::AddPriceVersion { model: HAIKU.into(), kind: UsageKind::OutputTokens, price: dec!(9.75), effective_from: from })
        .await
        .unwrap()
        .unwrap();
    let after = handle.current();
    assert_eq!(after.lookup(HAIKU, &UsageKind::OutputTokens, now).unwrap().price, before, "the old version still covers the past");
    assert_eq!(after.lookup(HAIKU, &UsageKind::OutputTokens, from).unwrap().price, dec!(9.75), "readers see the new version as soon as it commits");
}
