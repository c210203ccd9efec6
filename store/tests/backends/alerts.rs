//! alerts on both backends.

use std::sync::{Arc, Barrier};

use chrono::{Duration, NaiveDate};
use tally_store::alerts::{AlertBudget, AlertPeriod, AlertScope, DeliveryRecord, DeliveryStatus};
use tally_store::{StoreError, WriteOp};
use uuid::Uuid;

use crate::common::{at, dec, on_both_backends, seeded, tokens, usage_for, TestDb};

on_both_backends!(
    alert_budgets_round_trip,
    thresholds_fire_once_per_window_under_concurrency,
    deliveries_are_logged_and_updated,
    scope_spend_is_exact_over_calendar_windows,
);

fn budget(scope: AlertScope) -> AlertBudget {
    AlertBudget {
        budget_id: Uuid::now_v7(),
        name: "Monthly OpenAI".into(),
        amount: dec("100.0000000001"),
        period: AlertPeriod::Monthly,
        scope,
        thresholds: vec![50, 80, 100],
        emails: vec!["team@example.com".into()],
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        enabled: true,
        created_at: at("2026-12-01T00:00:00.1234567Z"),
        updated_at: at("2026-12-01T00:00:00Z"),
    }
}

fn alert_budgets_round_trip(db: &TestDb) {
    let (store, _) = seeded(db);
    let b = budget(AlertScope::Provider("openai".into()));
    let stored = store.create_alert_budget(&b).expect("create");
    assert_eq!(
        stored.amount,
        dec("100.0000000001"),
        "the amount is kept exactly"
    );
    assert_eq!(
        stored.created_at,
        at("2026-12-01T00:00:00.123456Z"),
        "instants are kept to the microsecond"
    );
    assert_eq!(
        store.get_alert_budget(b.budget_id).expect("get"),
        Some(stored.clone()),
        "read back as stored"
    );
    assert!(
        matches!(store.create_alert_budget(&b), Err(StoreError::Conflict(_))),
        "a taken id is a conflict"
    );
    let key = Uuid::now_v7();
    let other = store
        .create_alert_budget(&budget(AlertScope::Key(key)))
        .expect("second");
    let mut changed = stored.clone();
    changed.name = "Weekly key".into();
    changed.period = AlertPeriod::Weekly;
    changed.scope = AlertScope::All;
    changed.thresholds = vec![90];
    changed.emails = vec![];
    changed.webhook_url = None;
    changed.enabled = false;
    changed.created_at = at("2030-01-01T00:00:00Z");
    let updated = store.update_alert_budget(&changed).expect("update");
    assert_eq!(
        updated.created_at, stored.created_at,
        "an update keeps the creation instant"
    );
    assert_eq!(
        (
            updated.period,
            updated.scope.clone(),
            updated.thresholds.clone(),
            updated.webhook_url.clone(),
            updated.enabled
        ),
        (AlertPeriod::Weekly, AlertScope::All, vec![90], None, false),
        "every field is replaced"
    );
    let listed = store.list_alert_budgets().expect("list");
    assert_eq!(
        listed.iter().map(|b| b.budget_id).collect::<Vec<_>>(),
        vec![b.budget_id, other.budget_id],
        "listed oldest first"
    );
    assert_eq!(
        listed[1].scope,
        AlertScope::Key(key),
        "a key scope round-trips"
    );
    store
        .mark_fired(b.budget_id, at("2026-12-01T00:00:00Z"), "50", dec("51"))
        .expect("mark");
    store.delete_alert_budget(b.budget_id).expect("delete");
    assert!(
        matches!(
            store.delete_alert_budget(b.budget_id),
            Err(StoreError::NotFound(_))
        ),
        "deleting twice is NotFound"
    );
    assert!(
        store
            .fired(b.budget_id, at("2026-12-01T00:00:00Z"))
            .expect("fired")
            .is_empty(),
        "a deleted budget's marks go with it"
    );
    let mut ghost = budget(AlertScope::All);
    ghost.budget_id = Uuid::now_v7();
    assert!(
        matches!(
            store.update_alert_budget(&ghost),
            Err(StoreError::NotFound(_))
        ),
        "updating nothing is NotFound"
    );
}

fn thresholds_fire_once_per_window_under_concurrency(db: &TestDb) {
    let (store, _) = seeded(db);
    let b = store
        .create_alert_budget(&budget(AlertScope::All))
        .expect("create");
    let window = at("2026-12-01T00:00:00Z");
    // Four stores (as four nodes would) race for each threshold: exactly one insert wins.
    let stores: Vec<_> = (0..4).map(|_| db.open()).collect();
    let barrier = Arc::new(Barrier::new(stores.len()));
    let wins: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .map(|st| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    ["50", "80", "100", "projected"]
                        .iter()
                        .filter(|t| {
                            st.mark_fired(b.budget_id, window, t, dec("120"))
                                .expect("mark")
                        })
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        wins.iter().sum::<usize>(),
        4,
        "each of four thresholds is won exactly once: {wins:?}"
    );
    assert!(
        !store
            .mark_fired(b.budget_id, window, "50", dec("130"))
            .expect("again"),
        "a later mark loses"
    );
    let mut fired = store.fired(b.budget_id, window).expect("fired");
    fired.sort();
    assert_eq!(
        fired,
        vec!["100", "50", "80", "projected"],
        "the window's marks"
    );
    assert!(
        store
            .mark_fired(b.budget_id, at("2027-01-01T00:00:00Z"), "50", dec("60"))
            .expect("next window"),
        "a new window fires again"
    );
    assert!(
        store
            .fired(b.budget_id, at("2027-02-01T00:00:00Z"))
            .expect("empty")
            .is_empty(),
        "another window has no marks"
    );
}

fn delivery(subject: &str, channel: &str, created: &str) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: Uuid::now_v7(),
        source: "budget".into(),
        subject_id: Some(subject.into()),
        alert_kind: "threshold_50".into(),
        channel: channel.into(),
        target: "team@example.com".into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        payload: "{\"kind\":\"threshold_50\"}".into(),
        created_at: at(created),
        updated_at: at(created),
    }
}

fn deliveries_are_logged_and_updated(db: &TestDb) {
    let (store, _) = seeded(db);
    let first = delivery("b1", "email", "2026-12-01T10:00:00Z");
    let second = delivery("b1", "webhook", "2026-12-01T10:00:01Z");
    let other = delivery("b2", "log", "2026-12-01T10:00:02Z");
    for d in [&first, &second, &other] {
        store.record_delivery(d).expect("record");
    }
    let done = store
        .update_delivery(
            second.delivery_id,
            DeliveryStatus::Failed,
            5,
            Some("HTTP 500"),
        )
        .expect("update");
    assert_eq!(
        (done.status, done.attempts, done.last_error.as_deref()),
        (DeliveryStatus::Failed, 5, Some("HTTP 500")),
        "the outcome is stored"
    );
    assert!(
        done.updated_at >= done.created_at,
        "updated after it was created"
    );
    let all = store.list_deliveries(None, 10).expect("all");
    assert_eq!(
        all.iter().map(|d| d.delivery_id).collect::<Vec<_>>(),
        vec![other.delivery_id, second.delivery_id, first.delivery_id],
        "newest first"
    );
    let b1 = store.list_deliveries(Some("b1"), 1).expect("b1");
    assert_eq!(b1.len(), 1, "the limit holds");
    assert_eq!(
        b1[0].delivery_id, second.delivery_id,
        "only the subject's, newest first"
    );
    assert_eq!(b1[0].payload, second.payload, "the payload is kept");
    assert!(
        matches!(
            store.update_delivery(Uuid::now_v7(), DeliveryStatus::Delivered, 1, None),
            Err(StoreError::NotFound(_))
        ),
        "updating an unknown delivery is NotFound"
    );
}

fn scope_spend_is_exact_over_calendar_windows(db: &TestDb) {
    let (store, thread) = seeded(db);
    let start = at("2026-12-07T12:00:00Z"); // a Monday
    let mut ops = Vec::new();
    let mut expected = rust_decimal::Decimal::ZERO;
    for d in 0..9 {
        let usage = usage_for(
            &store,
            &thread,
            None,
            &tokens(1_000 + d * 10, 500),
            start + Duration::days(d as i64),
        );
        if d < 7 {
            expected += usage.cost.total;
        }
        ops.push(WriteOp::Usage(usage));
    }
    store.write_batch(&ops).expect("write usage");
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
    let (from, to) = AlertPeriod::Weekly.window_days(day("2026-12-09"));
    let week = store
        .scope_spend(&AlertScope::All, from, to - Duration::days(1))
        .expect("spend");
    assert_eq!(
        week, expected,
        "the week's spend is the exact sum of its events"
    );
    let user = store
        .scope_spend(
            &AlertScope::User("alice".into()),
            from,
            to - Duration::days(1),
        )
        .expect("user");
    assert_eq!(user, expected, "alice made all of it");
    let nobody = store
        .scope_spend(
            &AlertScope::User("bob".into()),
            from,
            to - Duration::days(1),
        )
        .expect("bob");
    assert!(nobody.is_zero(), "bob spent nothing");
    let daily = store
        .scope_daily_spend(&AlertScope::All, from, to - Duration::days(1))
        .expect("daily");
    assert_eq!(daily.len(), 7, "one entry per day with usage");
    assert_eq!(
        daily.iter().map(|(_, c)| *c).sum::<rust_decimal::Decimal>(),
        expected,
        "days add up to the week"
    );
    assert!(
        store
            .scope_spend(&AlertScope::All, to, from)
            .expect("empty range")
            .is_zero(),
        "an empty range spends nothing"
    );
}
