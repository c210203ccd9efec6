//! Daily rollups and the usage log on both backends: exact, written once per event, equal to a
//! rebuild from the events, correct under concurrent writers, and paged without gaps.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use tally_domain::{Usage, UsageKind};
use tally_store::analytics::{AnalyticsFilter, Dim, EventQuery, Figures};
use tally_store::{Store, UsageRecord, WriteOp};
use uuid::Uuid;

use crate::common::{at, on_both_backends, seeded, usage_for, TestDb};

on_both_backends!(
    rollups_are_exact_once_per_event_and_equal_a_rebuild,
    concurrent_writers_add_up_exactly,
    the_usage_log_pages_without_gaps_or_repeats,
);

const SONNET: &str = "claude-sonnet-4-20250514";

/// Events over 5 days: 3 users, 2 models, a key on some, tasks, failures, a resource line.
fn events(store: &Store, thread: &tally_store::ThreadRecord, n: usize, salt: u64) -> Vec<UsageRecord> {
    let key = Uuid::from_u128(0x1234);
    (0..n)
        .map(|i| {
            let i64i = i as i64;
            let when = at("2026-11-01T00:00:00Z") + Duration::days(i64i % 5) + Duration::minutes(i64i);
            let mut usage = Usage::new();
            usage.add_tokens(UsageKind::InputTokens, 1_000 + i as u64 * 3 + salt);
            usage.add_tokens(UsageKind::OutputTokens, 10 + i as u64 % 7);
            if i % 6 == 0 {
                usage.add_tokens(UsageKind::CacheReadTokens, 77);
            }
            let model = if i % 2 == 0 { thread.model.clone() } else { SONNET.to_string() };
            let mut u = usage_for(store, thread, None, &usage, when);
            if model != thread.model {
                u.cost = tally_domain::price_usage(&store.load_price_book().expect("book"), &model, when, &usage)
                    .expect("priced");
            }
            UsageRecord {
                user_id: ["ana", "ben", "cleo"][i % 3].to_string(),
                thread_id: None,
                model,
                key_id: (i % 4 == 0).then_some(key),
                task: [Some("summarize".to_string()), None][i % 2].clone(),
                successful: i % 9 != 0,
                ..u
            }
        })
        .collect()
}

fn write(store: &Store, events: &[UsageRecord]) {
    let ops: Vec<WriteOp> = events.iter().cloned().map(WriteOp::Usage).collect();
    store.write_batch(&ops).expect("batch written");
}

fn all_days() -> AnalyticsFilter {
    AnalyticsFilter {
        from_day: NaiveDate::from_ymd_opt(2026, 10, 1).expect("day"),
        to_day: NaiveDate::from_ymd_opt(2026, 12, 31).expect("day"),
        user_id: None,
        provider: None,
        model: None,
        key_id: None,
        task: None,
    }
}

fn by(store: &Store, filter: &AnalyticsFilter, dims: &[Dim]) -> BTreeMap<Vec<String>, Figures> {
    store.analytics(filter, dims).expect("analytics").into_iter().map(|g| (g.key, g.figures)).collect()
}

fn total(store: &Store) -> Figures {
    by(store, &all_days(), &[]).into_values().next().unwrap_or_default()
}

fn rollups_are_exact_once_per_event_and_equal_a_rebuild(db: &TestDb) {
    let (store, thread) = seeded(db);
    let evs = events(&store, &thread, 60, 0);
    write(&store, &evs);
    let expected: Decimal = evs.iter().map(|e| e.cost.total).sum();
    let t = total(&store);
    assert_eq!(t.cost, expected, "total cost is the exact sum of the events");
    assert_eq!(t.requests, 60, "every event counted");
    assert_eq!(t.failed, evs.iter().filter(|e| !e.successful).count() as i64, "failures counted");
    let input: Decimal = evs
        .iter()
        .flat_map(|e| &e.cost.lines)
        .filter(|l| l.kind == UsageKind::InputTokens)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(t.kinds["input_tokens"].quantity, input, "input tokens summed");

    // Every grain agrees with the events, whatever the grouping.
    let mut by_user: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_task: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_key_model: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for e in &evs {
        *by_user.entry(e.user_id.clone()).or_default() += e.cost.total;
        *by_task.entry(e.task.clone().unwrap_or_default()).or_default() += e.cost.total;
        let key = e.key_id.map(|k| k.to_string()).unwrap_or_default();
        *by_key_model.entry((key, e.model.clone())).or_default() += e.cost.total;
    }
    let users = by(&store, &all_days(), &[Dim::User]);
    for (user, cost) in &by_user {
        assert_eq!(users[&vec![user.clone()]].cost, *cost, "user {user}");
    }
    let tasks = by(&store, &all_days(), &[Dim::Task]);
    for (task, cost) in &by_task {
        assert_eq!(tasks[&vec![task.clone()]].cost, *cost, "task {task:?}");
    }
    let key_model = by(&store, &all_days(), &[Dim::Key, Dim::Model]);
    for ((key, model), cost) in &by_key_model {
        assert_eq!(key_model[&vec![key.clone(), model.clone()]].cost, *cost, "key {key:?} x model {model}");
    }
    let providers = by(&store, &all_days(), &[Dim::Provider]);
    assert_eq!(providers[&vec!["anthropic".to_string()]].cost, expected, "one provider has it all");
    let filtered = AnalyticsFilter { user_id: Some("ana".into()), task: Some("summarize".into()), ..all_days() };
    let ana: Decimal = evs
        .iter()
        .filter(|e| e.user_id == "ana" && e.task.as_deref() == Some("summarize"))
        .map(|e| e.cost.total)
        .sum();
    assert_eq!(total_of(&store, &filtered), ana, "filters narrow exactly");
    // Ranges that cut months (day rows at the ends, month rows inside) sum the same events.
    for (from, to) in [("2026-11-03", "2026-12-15"), ("2026-10-15", "2026-11-30"), ("2026-11-02", "2026-11-04")] {
        let (f, t) = (from.parse::<NaiveDate>().expect("day"), to.parse::<NaiveDate>().expect("day"));
        let want: Decimal = evs
            .iter()
            .filter(|e| (f..=t).contains(&e.occurred_at.date_naive()))
            .map(|e| e.cost.total)
            .sum();
        let range = AnalyticsFilter { from_day: f, to_day: t, ..all_days() };
        assert_eq!(total_of(&store, &range), want, "range {from}..{to}");
        let users: Decimal = by(&store, &range, &[Dim::User]).values().map(|g| g.cost).sum();
        assert_eq!(users, want, "range {from}..{to} by user");
    }
    let days = by(&store, &all_days(), &[Dim::Day]);
    assert_eq!(days.len(), 5, "five days of usage");
    assert_eq!(days.values().map(|f| f.cost).sum::<Decimal>(), expected, "days add up");

    // A replay adds nothing; a rebuild from the events gives the same figures.
    write(&store, &evs);
    assert_eq!(total(&store), t, "a replayed batch changes no rollup");
    let before = by(&store, &all_days(), &[Dim::User, Dim::Model, Dim::Key, Dim::Task, Dim::Day]);
    assert_eq!(store.rebuild_rollups().expect("rebuilt"), 60, "the rebuild read every event");
    assert_eq!(
        by(&store, &all_days(), &[Dim::User, Dim::Model, Dim::Key, Dim::Task, Dim::Day]),
        before,
        "incremental rollups equal a rebuild from the events"
    );
    assert_eq!(total(&store), t, "and so do the totals");
}

fn total_of(store: &Store, filter: &AnalyticsFilter) -> Decimal {
    by(store, filter, &[]).into_values().map(|f| f.cost).sum()
}

fn concurrent_writers_add_up_exactly(db: &TestDb) {
    let (store, thread) = seeded(db);
    // Four writers, each its own events over the same users, days and models: the same rollup rows.
    let batches: Vec<Vec<UsageRecord>> = (0..4).map(|w| events(&store, &thread, 40, w * 1_000)).collect();
    let expected: Decimal = batches.iter().flatten().map(|e| e.cost.total).sum();
    std::thread::scope(|s| {
        for batch in &batches {
            let store = store.clone();
            s.spawn(move || {
                for chunk in batch.chunks(10) {
                    write(&store, chunk);
                }
            });
        }
    });
    let t = total(&store);
    assert_eq!(t.cost, expected, "concurrent writers' rollups add up exactly");
    assert_eq!(t.requests, 160, "no event lost or counted twice");
}

fn the_usage_log_pages_without_gaps_or_repeats(db: &TestDb) {
    let (store, thread) = seeded(db);
    let evs = events(&store, &thread, 45, 0);
    write(&store, &evs);
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    loop {
        let page = store.event_page(&EventQuery { after, limit: 8, ..EventQuery::default() }).expect("page");
        for e in &page.events {
            assert!(seen.insert(e.usage.event_id), "no event twice");
            assert_eq!(e.provider, "anthropic", "provider read with the event");
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45, "every event reached");
    let failed = store
        .event_page(&EventQuery { successful: Some(false), limit: 100, ..EventQuery::default() })
        .expect("failed page");
    assert_eq!(failed.events.len(), evs.iter().filter(|e| !e.successful).count(), "status filter");
    let keyed = store
        .event_page(&EventQuery { key_id: Some(Uuid::from_u128(0x1234)), model: Some(SONNET.into()), limit: 100, ..EventQuery::default() })
        .expect("keyed page");
    assert!(
        keyed.events.iter().all(|e| e.usage.key_id == Some(Uuid::from_u128(0x1234)) && e.usage.model == SONNET),
        "key and model filters hold"
    );
    let one = &evs[7];
    let detail = store.event_detail(one.event_id).expect("detail").expect("found");
    assert_eq!(detail.event.usage.cost.total, one.cost.total, "detail has the event's cost");
    assert_eq!(detail.event.usage.task, one.task, "and its task");
    assert!(store.event_detail(Uuid::now_v7()).expect("detail").is_none(), "unknown event: none");
}
