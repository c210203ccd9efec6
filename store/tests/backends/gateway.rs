//! Virtual keys, budgets and gateway calls on both backends.

use tally_store::{BudgetRecord, BudgetScope, GatewayCallRecord, KeyPatch, KeyRecord, StoreError, UsageRecord, WriteOp};
use uuid::Uuid;

use crate::common::{at, dec, on_both_backends, seeded, tokens, usage_for, TestDb};

on_both_backends!(
    keys_round_trip_and_revoke_once,
    budgets_upsert_per_scope_and_period,
    gateway_spend_is_the_exact_sum_of_billed_calls,
    alerts_are_marked_once_per_window,
);

fn key(user: &str) -> KeyRecord {
    KeyRecord {
        key_id: Uuid::now_v7(),
        public_id: Uuid::now_v7().simple().to_string()[20..].to_string(),
        secret_hash: "ab".repeat(32),
        user_id: user.into(),
        name: "ci".into(),
        allowed_models: Some(vec!["claude-3-5-haiku-20241022".into()]),
        expires_at: None,
        rpm_limit: Some(60),
        created_at: at("2026-12-01T00:00:00Z"),
        revoked_at: None,
    }
}

fn keys_round_trip_and_revoke_once(db: &TestDb) {
    let (store, _) = seeded(db);
    let k = key("alice");
    let stored = store.create_key(&k).expect("create");
    assert_eq!(stored, k, "stored as given");
    assert_eq!(store.key_by_public_id(&k.public_id).expect("read"), Some(k.clone()), "found by public id");
    assert!(
        matches!(store.create_key(&key("nobody")), Err(StoreError::NotFound(_))),
        "a key of an unknown user is refused"
    );
    let patched = store
        .update_key(k.key_id, &KeyPatch { allowed_models: Some(None), rpm_limit: Some(None), ..Default::default() })
        .expect("patch");
    assert_eq!((patched.allowed_models, patched.rpm_limit), (None, None), "null clears optional fields");
    let first = store.revoke_key(k.key_id, at("2026-12-02T00:00:00Z")).expect("revoke");
    let again = store.revoke_key(k.key_id, at("2026-12-03T00:00:00Z")).expect("revoke again");
    assert_eq!(first.revoked_at, again.revoked_at, "the first revocation instant is kept");
    assert!(matches!(store.rotate_key(k.key_id, "cd"), Err(StoreError::Conflict(_))), "a revoked key cannot rotate");
    assert_eq!(store.list_keys(Some("alice")).expect("list").len(), 1, "one key for alice");
}

fn budget(scope: BudgetScope, period: &str, max: &str) -> BudgetRecord {
    BudgetRecord {
        budget_id: Uuid::now_v7(),
        scope,
        period: period.into(),
        max_budget: dec(max),
        alert_threshold: Some(dec("0.8")),
        timezone: "UTC".into(),
        enabled: true,
        created_at: at("2026-12-01T00:00:00Z"),
        updated_at: at("2026-12-01T00:00:00Z"),
    }
}

fn budgets_upsert_per_scope_and_period(db: &TestDb) {
    let (store, _) = seeded(db);
    let k = store.create_key(&key("alice")).expect("key");
    let daily = store.upsert_budget(&budget(BudgetScope::Key(k.key_id), "daily", "5")).expect("daily");
    let replaced = store.upsert_budget(&budget(BudgetScope::Key(k.key_id), "daily", "7.25")).expect("replace");
    assert_eq!(replaced.budget_id, daily.budget_id, "an update keeps the budget's id");
    assert_eq!(replaced.max_budget, dec("7.25"), "and takes the new limit exactly");
    store.upsert_budget(&budget(BudgetScope::Key(k.key_id), "monthly", "100")).expect("monthly");
    store.upsert_budget(&budget(BudgetScope::User("alice".into()), "monthly", "300")).expect("user");
    let all = store.budgets_for(&[BudgetScope::Key(k.key_id), BudgetScope::User("alice".into())]).expect("read");
    assert_eq!(all.len(), 3, "two key windows and one user window");
    store.delete_budget(&BudgetScope::Key(k.key_id), "daily").expect("delete");
    assert!(
        matches!(store.delete_budget(&BudgetScope::Key(k.key_id), "daily"), Err(StoreError::NotFound(_))),
        "deleting twice is NotFound"
    );
}

fn call(k: &KeyRecord, u: &UsageRecord) -> GatewayCallRecord {
    GatewayCallRecord {
        event_id: u.event_id,
        key_id: k.key_id,
        user_id: k.user_id.clone(),
        provider: "anthropic".into(),
        model: u.model.clone(),
        route: "messages".into(),
        status: "ok".into(),
        http_status: 200,
        latency_ms: 12,
        upstream_request_id: Some("req_1".into()),
        simulated: false,
        total_tokens: 30,
        occurred_at: u.occurred_at,
    }
}

fn gateway_spend_is_the_exact_sum_of_billed_calls(db: &TestDb) {
    let (store, thread) = seeded(db);
    let k = store.create_key(&key("alice")).expect("key");
    let t = thread.clone();
    let mut ops = Vec::new();
    let mut expected = rust_decimal::Decimal::ZERO;
    for (i, when) in ["2026-12-01T00:00:00Z", "2026-12-01T23:59:59.999999Z", "2026-12-02T00:00:00Z"].iter().enumerate() {
        let mut u = usage_for(&store, &t, None, &tokens(1000 + i as u64, 333), at(when));
        u.thread_id = None;
        if i < 2 {
            expected += u.cost.total;
        }
        ops.push(WriteOp::Gateway(call(&k, &u)));
        ops.push(WriteOp::Usage(u));
    }
    // A call that produced no usage (upstream error): recorded, costs nothing.
    let failed = GatewayCallRecord { event_id: Uuid::now_v7(), status: "upstream_error".into(), ..call(&k, &usage_for(&store, &t, None, &tokens(1, 1), at("2026-12-01T12:00:00Z"))) };
    ops.push(WriteOp::Gateway(failed));
    store.write_batch(&ops).expect("write");
    store.write_batch(&ops).expect("replay changes nothing");
    let day = store
        .gateway_spend(&BudgetScope::Key(k.key_id), at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z"))
        .expect("spend");
    assert_eq!(day, expected, "the day's spend is the exact sum of its calls (boundary instants included once)");
    let by_user = store
        .gateway_spend(&BudgetScope::User("alice".into()), at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z"))
        .expect("spend");
    assert_eq!(by_user, expected, "the user's spend over its keys is the same");
    let calls = store
        .gateway_costs(&BudgetScope::Key(k.key_id), at("2026-12-01T00:00:00Z"), at("2026-12-03T00:00:00Z"))
        .expect("calls");
    assert_eq!(calls.len(), 4, "every call, billed or not, once (the replay was skipped)");
}

fn alerts_are_marked_once_per_window(db: &TestDb) {
    let (store, _) = seeded(db);
    let b = Uuid::now_v7();
    let w = at("2026-12-01T00:00:00Z");
    assert!(!store.alert_sent(b, w).expect("read"), "not sent yet");
    assert!(store.mark_alert_sent(b, w, dec("4.5"), w).expect("mark"), "first mark wins");
    assert!(!store.mark_alert_sent(b, w, dec("4.9"), w).expect("mark again"), "second mark is refused");
    assert!(store.alert_sent(b, w).expect("read"), "sent");
    assert!(store.mark_alert_sent(b, at("2026-12-02T00:00:00Z"), dec("1"), w).expect("next window"), "next window alerts again");
}
