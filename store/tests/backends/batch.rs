//! The persister's batch write and the reads over it.

use chrono::{TimeZone, Utc};
use tally_domain::{Cost, CostLine, Unit, Usage, UsageKind};
use tally_store::{LineFilter, Role, StoreError, UsageRecord, UserRecord, WriteOp};
use uuid::Uuid;

use crate::common::{
    at, count, dec, message, on_both_backends, ops, price, seeded, tokens, uninvoiced, usage_for, TestDb, HAIKU,
};

on_both_backends!(
    write_batch_twice_is_idempotent,
    thread_messages_return_costs_as_written,
    mixed_token_and_resource_usage_is_split_into_line_tables,
    money_survives_exactly,
    timestamps_round_trip_to_the_microsecond,
    unknown_model_rolls_back_the_whole_batch,
    usage_of_an_unknown_user_creates_the_user,
    large_partly_stored_batch_reports_each_id_once,
);

fn write_batch_twice_is_idempotent(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let q = message(&thread, Role::User, "Hi", when);
    let a = message(&thread, Role::Assistant, "Hello!", when + chrono::Duration::seconds(1));
    let usage = usage_for(&store, &thread, Some(&a), &tokens(1234, 567), when);
    let batch = ops(&[&q, &a], &[&usage]);

    let first = store.write_batch(&batch).expect("first write");
    assert_eq!(first.inserted_messages, vec![q.message_id, a.message_id], "both messages inserted, in order");
    assert_eq!(first.inserted_events, vec![usage.event_id], "usage inserted");
    assert!(first.duplicate_messages.is_empty() && first.duplicate_events.is_empty(), "no duplicates the first time");
    let counts = store.row_counts().expect("counts");
    assert_eq!(count(&store, "api_events"), 1, "one event row");
    assert_eq!(count(&store, "message_tokens"), 2, "one token row per token kind");
    assert_eq!(count(&store, "user_invoice_line_item"), 2, "one line per token kind");

    let second = store.write_batch(&batch).expect("second write");
    assert!(second.inserted_messages.is_empty() && second.inserted_events.is_empty(), "nothing inserted again");
    assert_eq!(second.duplicate_messages, vec![q.message_id, a.message_id], "messages reported duplicate");
    assert_eq!(second.duplicate_events, vec![usage.event_id], "usage reported duplicate");
    assert_eq!(store.row_counts().expect("counts"), counts, "row counts unchanged");

    let repeated = vec![WriteOp::Usage(usage.clone()), WriteOp::Usage(usage.clone())];
    let third = store.write_batch(&repeated).expect("repeat within batch");
    assert_eq!(
        third.duplicate_events,
        vec![usage.event_id, usage.event_id],
        "every sighting of a stored id is a duplicate"
    );
    assert_eq!(store.write_batch(&[]).expect("empty batch"), Default::default(), "empty batch is a no-op");

    let thread_now = store.get_thread(thread.thread_id).expect("get").expect("thread");
    assert_eq!(thread_now.updated_at, a.created_at, "thread updated_at moved to the newest message");
}

fn thread_messages_return_costs_as_written(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let q = message(&thread, Role::User, "Hi", when);
    let a = message(&thread, Role::Assistant, "Hello!", when + chrono::Duration::seconds(1));
    let usage = usage_for(&store, &thread, Some(&a), &tokens(1234, 567), when);
    assert_eq!(usage.cost.lines[0].amount, dec("0.0009872"), "fixture: 1234 input tokens at $0.80/MTok");
    store.write_batch(&ops(&[&q, &a], &[&usage])).expect("write");

    let stored = store.thread_messages(thread.thread_id).expect("thread messages");
    assert_eq!(stored.len(), 2, "both messages");
    assert_eq!(stored[0].message, q, "user message round trips");
    assert_eq!(stored[0].cost, None, "user message has no usage");
    assert_eq!(stored[1].message, a, "assistant message round trips");
    assert_eq!(stored[1].usage_event_ids, vec![usage.event_id], "usage linked by message id");
    let cost = stored[1].cost.clone().expect("assistant cost");
    assert_eq!(cost, usage.cost, "cost equals what was written");
    assert_eq!(cost.lines[0].amount.to_string(), "0.0009872", "input amount exact, same digits");
    assert_eq!(cost.lines[1].amount, dec("0.002268"), "output amount exact");
    assert_eq!(cost.total, dec("0.0032552"), "total exact");

    let events = store
        .usage_events(&LineFilter { thread_id: Some(thread.thread_id), ..Default::default() }, 10)
        .expect("events");
    assert_eq!(events.len(), 1, "one usage event");
    assert_eq!(events[0].cost, usage.cost, "usage_events gives the same cost");
    assert_eq!(events[0].event_type, "token_usage", "token usage event type");
    assert_eq!(UsageRecord { event_type: String::new(), ..events[0].clone() }, usage, "usage record round trips");
}

fn mixed_token_and_resource_usage_is_split_into_line_tables(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-02T10:00:00Z");
    let search = UsageKind::Resource("web_search_requests".into());
    let mut mixed = tokens(100, 10);
    mixed.add(search.clone(), dec("3")).expect("resource quantity");
    let mixed = usage_for(&store, &thread, None, &mixed, when);
    let mut only_search = Usage::new();
    only_search.add(search.clone(), dec("2")).expect("resource quantity");
    let only_search = usage_for(&store, &thread, None, &only_search, when + chrono::Duration::seconds(5));
    store.write_batch(&ops(&[], &[&mixed, &only_search])).expect("write");

    assert_eq!(count(&store, "user_invoice_line_item"), 2, "token lines in the token table");
    assert_eq!(count(&store, "message_tokens"), 2, "token counts for token lines only");
    assert_eq!(count(&store, "resource_invoice_line_item"), 2, "resource lines in the resource table");
    let events = store.usage_events(&LineFilter::default(), 10).expect("events");
    assert_eq!(events.len(), 2, "two events");
    assert_eq!(events[0].event_id, only_search.event_id, "newest first");
    assert_eq!(events[0].event_type, "web_search_requests", "resource-only event is typed by its resource");
    assert_eq!(events[1].event_type, "token_usage", "any token line makes it token_usage");
    assert_eq!(events[1].cost, mixed.cost, "mixed cost round trips with tokens first, then resources");
    assert_eq!(events[0].cost.total, dec("0.02"), "2 searches at $0.01");

    let lines = store.usage_lines(&uninvoiced("alice")).expect("lines");
    assert_eq!(lines.len(), 4, "all four lines");
    let kinds: Vec<String> = lines.iter().map(|l| l.kind.to_string()).collect();
    assert_eq!(
        kinds,
        ["input_tokens", "output_tokens", "web_search_requests", "web_search_requests"],
        "ordered by occurred_at, then kind"
    );
    let window = LineFilter {
        from: Some(when + chrono::Duration::seconds(1)),
        to: Some(when + chrono::Duration::seconds(6)),
        ..Default::default()
    };
    assert_eq!(store.usage_lines(&window).expect("window").len(), 1, "from inclusive, to exclusive");
}

fn money_survives_exactly(db: &TestDb) {
    let (store, thread) = seeded(db);
    let search = UsageKind::Resource("web_search_requests".into());
    let version = store.price_history(HAIKU, &search).expect("history").pop().expect("search price");
    let input = store.price_history(HAIKU, &UsageKind::InputTokens).expect("history").pop().expect("input price");
    let tiny = dec("0.000000001");
    let big = dec("12345678.123456789");
    let lines = vec![
        CostLine {
            kind: UsageKind::InputTokens,
            unit: Unit::Tokens,
            quantity: dec("9007199254740993"),
            unit_price: dec("0.000000001"),
            price_version_id: input.id,
            amount: tiny,
        },
        CostLine {
            kind: search.clone(),
            unit: Unit::Units,
            quantity: dec("0.5"),
            unit_price: dec("24691356.246913578"),
            price_version_id: version.id,
            amount: big,
        },
    ];
    let usage = UsageRecord {
        event_id: Uuid::now_v7(),
        user_id: "alice".into(),
        thread_id: Some(thread.thread_id),
        message_id: None,
        model: HAIKU.into(),
        event_type: String::new(),
        source: "test".into(),
        idempotency_key: Some("k-1".into()),
        occurred_at: at("2025-03-03T00:00:00Z"),
        cost: Cost::from_lines(lines),
        key_id: None,
        task: None,
        successful: true,
    };
    store.write_batch(&ops(&[], &[&usage])).expect("write");
    let back = store.usage_events(&LineFilter::default(), 1).expect("events");
    assert_eq!(back[0].cost, usage.cost, "cost lines survive exactly");
    assert_eq!(back[0].cost.total, dec("12345678.123456790"), "exact total of tiny + big");
    assert_eq!(back[0].cost.lines[0].amount.to_string(), "0.000000001", "tiny amount keeps every digit");
    assert_eq!(back[0].cost.lines[1].amount.to_string(), "12345678.123456789", "big amount keeps every digit");
    assert_eq!(back[0].cost.lines[0].quantity, dec("9007199254740993"), "token counts beyond f64 precision survive");
    assert_eq!(back[0].idempotency_key.as_deref(), Some("k-1"), "idempotency key kept");

    let (_, new) = store
        .add_price_version(HAIKU, &UsageKind::CacheReadTokens, tiny, at("2026-02-01T00:00:00Z"))
        .expect("tiny price");
    let stored = store.price_history(HAIKU, &UsageKind::CacheReadTokens).expect("history").pop().expect("current");
    assert_eq!(stored, new, "a price of 0.000000001 survives");
    assert_eq!(stored.price.to_string(), "0.000000001", "price digits survive");
}

fn timestamps_round_trip_to_the_microsecond(db: &TestDb) {
    let (store, thread) = seeded(db);
    let precise = Utc.timestamp_opt(1_741_000_000, 123_456_000).single().expect("instant");
    let with_nanos = Utc.timestamp_opt(1_741_000_001, 987_654_321).single().expect("instant");
    let before_epoch = Utc.timestamp_opt(-1, 1_000).single().expect("instant");

    let user = UserRecord { user_id: "bob".into(), username: "Bob".into(), email: None, created_at: with_nanos };
    let created = store.create_user(&user).expect("create");
    let truncated = Utc.timestamp_opt(1_741_000_001, 987_654_000).single().expect("instant");
    assert_eq!(created.created_at, truncated, "create_user returns the instant as stored (microseconds)");
    assert_eq!(store.get_user("bob").expect("get").expect("bob").created_at, truncated, "stored to the microsecond");
    assert!(matches!(store.create_user(&user), Err(StoreError::Conflict(_))), "second create is a Conflict");

    let m = message(&thread, Role::User, "precise", precise);
    let old = message(&thread, Role::User, "old", before_epoch);
    let usage = usage_for(&store, &thread, Some(&m), &tokens(1, 1), precise);
    store.write_batch(&ops(&[&m, &old], &[&usage])).expect("write");
    let stored = store.thread_messages(thread.thread_id).expect("messages");
    assert_eq!(stored[0].message.created_at, before_epoch, "pre-1970 instant round trips and sorts first");
    assert_eq!(stored[1].message.created_at, precise, "message time exact to the microsecond");
    let lines = store.usage_lines(&LineFilter::default()).expect("lines");
    assert!(lines.iter().all(|l| l.occurred_at == precise), "line occurred_at exact to the microsecond");
    let events = store
        .usage_events(
            &LineFilter {
                from: Some(precise),
                to: Some(precise + chrono::Duration::microseconds(1)),
                ..Default::default()
            },
            10,
        )
        .expect("events");
    assert_eq!(events.len(), 1, "a one-microsecond window finds the event");
}

fn unknown_model_rolls_back_the_whole_batch(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let good = message(&thread, Role::User, "Hi", when);
    let priced = usage_for(&store, &thread, Some(&good), &tokens(10, 10), when);
    let bad = UsageRecord { event_id: Uuid::now_v7(), model: "no-such-model".into(), ..priced.clone() };
    let before = store.row_counts().expect("counts");
    let err = store.write_batch(&ops(&[&good], &[&priced, &bad])).expect_err("unknown model");
    assert!(matches!(err, StoreError::Invalid(_)), "unknown model is Invalid: {err:?}");
    assert_eq!(store.row_counts().expect("counts"), before, "nothing from the batch was written");

    let mut orphan = message(&thread, Role::User, "lost", when);
    orphan.thread_id = Uuid::now_v7();
    let err = store.write_batch(&ops(&[&orphan], &[])).expect_err("unknown thread");
    assert!(matches!(err, StoreError::Invalid(_)), "message in an unknown thread is Invalid: {err:?}");
    assert_eq!(store.row_counts().expect("counts"), before, "still nothing written");

    // A line priced at a version the database does not have (SQLite writes the batch
    // without foreign-key enforcement: the batch checks this itself).
    let mut unpriced = UsageRecord { event_id: Uuid::now_v7(), ..priced.clone() };
    let ghost = Uuid::now_v7();
    unpriced.cost.lines[1].price_version_id = ghost;
    let err = store.write_batch(&ops(&[&good], &[&priced, &unpriced])).expect_err("unknown price version");
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains(&ghost.to_string())),
        "an unknown price version is Invalid and named: {err:?}"
    );
    assert_eq!(store.row_counts().expect("counts"), before, "nothing from that batch either");
    assert!(store.foreign_keys_enforced().expect("pragma"), "enforcement is back on after a refused batch");
    store.write_batch(&ops(&[&good], &[&priced])).expect("the good part alone");
    assert!(store.foreign_keys_enforced().expect("pragma"), "and after a committed one");
}

fn usage_of_an_unknown_user_creates_the_user(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let external = UsageRecord {
        user_id: "carol".into(),
        thread_id: None,
        source: "ingest".into(),
        ..usage_for(&store, &thread, None, &tokens(5, 5), when)
    };
    assert!(store.get_user("carol").expect("get").is_none(), "carol does not exist yet");
    store.write_batch(&ops(&[], &[&external])).expect("write");
    let carol = store.get_user("carol").expect("get").expect("carol created");
    assert_eq!(carol.username, "carol", "created user is named after its id");
    store.ensure_user("carol").expect("ensure existing user");
    store.ensure_user("dave").expect("ensure new user");
    assert_eq!(store.list_users(10, 0).expect("users").len(), 3, "alice, carol, dave");
    let cost = price(&store, HAIKU, when, &tokens(5, 5));
    let lines = store.usage_lines(&uninvoiced("carol")).expect("lines");
    assert_eq!(
        lines.iter().map(|l| l.amount).sum::<rust_decimal::Decimal>(),
        cost.total,
        "carol's lines sum to the cost"
    );
}

fn large_partly_stored_batch_reports_each_id_once(db: &TestDb) {
    // 300 events x 2 token lines exercise every insert chunk size (256, 16, single rows).
    const EVENTS: usize = 300;
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let book = store.load_price_book().expect("book");
    let mut messages = Vec::new();
    let mut usages = Vec::new();
    for i in 0..EVENTS {
        let at_i = when + chrono::Duration::milliseconds(i as i64);
        let m = message(&thread, Role::Assistant, &format!("m{i}"), at_i);
        let cost = tally_domain::price_usage(&book, HAIKU, at_i, &tokens(100 + i as u64, 10)).expect("priced");
        usages.push(UsageRecord { cost, ..usage_for(&store, &thread, Some(&m), &tokens(1, 1), at_i) });
        messages.push(m);
    }
    let half: Vec<_> = messages.iter().step_by(2).collect();
    let half_usages: Vec<_> = usages.iter().step_by(2).collect();
    let first = store.write_batch(&ops(&half, &half_usages)).expect("first half");
    assert_eq!(first.inserted_events.len(), EVENTS / 2, "half the events stored first");

    let all_messages: Vec<_> = messages.iter().collect();
    let all_usages: Vec<_> = usages.iter().collect();
    let outcome = store.write_batch(&ops(&all_messages, &all_usages)).expect("whole batch");
    let expected_new: Vec<Uuid> = usages.iter().skip(1).step_by(2).map(|u| u.event_id).collect();
    let expected_dup: Vec<Uuid> = usages.iter().step_by(2).map(|u| u.event_id).collect();
    assert_eq!(outcome.inserted_events, expected_new, "only the unseen events are inserted, in input order");
    assert_eq!(outcome.duplicate_events, expected_dup, "the stored half is reported duplicate, in input order");
    assert_eq!(
        outcome.inserted_messages.len() + outcome.duplicate_messages.len(),
        EVENTS,
        "every message reported once"
    );
    assert_eq!(count(&store, "api_events"), EVENTS as i64, "one row per event");
    assert_eq!(count(&store, "user_invoice_line_item"), 2 * EVENTS as i64, "two lines per event, none twice");
    assert_eq!(count(&store, "message_tokens"), 2 * EVENTS as i64, "two token rows per event");
    let stored = store.thread_messages(thread.thread_id).expect("messages");
    assert_eq!(stored.len(), EVENTS, "every message stored");
    for (s, u) in stored.iter().zip(&usages) {
        assert_eq!(s.cost.as_ref(), Some(&u.cost), "message {} has exactly its usage's cost", s.message.content);
    }
}

/// SQLite writes the persister's batch with foreign keys off; the connection must enforce them
/// again afterwards. An in-memory store has exactly one connection, the one the batch used.
#[test]
fn sqlite_enforces_foreign_keys_again_after_a_batch() {
    let store = tally_store::Store::open("sqlite::memory:").expect("open");
    store.seed(&crate::common::catalog()).expect("seed");
    assert!(store.foreign_keys_enforced().expect("pragma"), "on from the start");
    // A thread of another database: only its ids are used, and they are dropped below.
    let db = TestDb::sqlite();
    let (_, thread) = seeded(&db);
    let when = at("2025-03-01T10:00:00Z");
    let mut usage = usage_for(&store, &thread, None, &tokens(10, 10), when);
    usage.thread_id = None;
    usage.user_id = "erin".into();
    store.write_batch(&ops(&[], &[&usage])).expect("write");
    assert_eq!(store.usage_lines(&uninvoiced("erin")).expect("lines").len(), 2, "written");
    assert!(store.foreign_keys_enforced().expect("pragma"), "on again after the batch");
}
