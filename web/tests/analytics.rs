//! Analytics and the usage log over a real node: exact sums that equal the metrics and the
//! invoices, zero-filled trends, filters, and keyset paging through every event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_actors::billing::{BillUsage, UsageEvent};
use tally_domain::{Usage, UsageKind};
use uuid::Uuid;

use common::{dec, Node, HAIKU};

const SONNET: &str = "claude-sonnet-4-20250514";
const USERS: [&str; 3] = ["ana", "ben", "cleo"];
const TASKS: [Option<&str>; 3] = [Some("summarize"), Some("classify"), None];
const DAYS: i64 = 10;

/// What the test billed, by user (exact), with the total event count and failures.
struct Ground {
    by_user: BTreeMap<String, Decimal>,
    by_task: BTreeMap<Option<String>, Decimal>,
    by_key: BTreeMap<Option<Uuid>, Decimal>,
    by_day: BTreeMap<chrono::NaiveDate, Decimal>,
    total: Decimal,
    events: usize,
    failed: usize,
    input_tokens: u64,
}

/// Bill events over the last DAYS days through the real BillingActor: users x models x tasks,
/// a key on some, a failure now and then, every event at a distinct time of day.
async fn bill(node: &Node, key: Uuid) -> Ground {
    let mut g = Ground {
        by_user: BTreeMap::new(),
        by_task: BTreeMap::new(),
        by_key: BTreeMap::new(),
        by_day: BTreeMap::new(),
        total: Decimal::ZERO,
        events: 0,
        failed: 0,
        input_tokens: 0,
    };
    let today = Utc::now().date_naive();
    let mut i: u64 = 0;
    for day in 0..DAYS {
        let date = today - Duration::days(day);
        for user in USERS {
            for model in [HAIKU, SONNET] {
                for task in TASKS {
                    i += 1;
                    let at = date.and_time(NaiveTime::from_hms_opt(1, 0, 0).unwrap()).and_utc()
                        + Duration::seconds(i as i64);
                    let at = at.min(Utc::now());
                    let mut usage = Usage::new();
                    usage.add_tokens(UsageKind::InputTokens, 1_000 + i * 7);
                    usage.add_tokens(UsageKind::OutputTokens, 100 + i % 13);
                    if i % 4 == 0 {
                        usage.add_tokens(UsageKind::CacheReadTokens, 333);
                    }
                    let with_key = (i % 2 == 0).then_some(key);
                    let successful = i % 5 != 0;
                    let event = UsageEvent {
                        event_id: Uuid::now_v7(),
                        user_id: user.into(),
                        thread_id: None,
                        message_id: None,
                        model: model.into(),
                        occurred_at: at,
                        usage,
                        source: "test".into(),
                        idempotency_key: None,
                        key_id: with_key,
                        task: task.map(String::from),
                        successful,
                    };
                    let billed = node
                        .actors
                        .billing
                        .send(BillUsage { event, with: vec![], trace: Default::default() })
                        .await
                        .unwrap()
                        .unwrap();
                    let cost = billed.cost.total;
                    *g.by_user.entry(user.into()).or_default() += cost;
                    *g.by_task.entry(task.map(String::from)).or_default() += cost;
                    *g.by_key.entry(with_key).or_default() += cost;
                    *g.by_day.entry(at.date_naive()).or_default() += cost;
                    g.total += cost;
                    g.events += 1;
                    g.failed += usize::from(!successful);
                    g.input_tokens += 1_000 + i * 7;
                }
            }
        }
    }
    g
}

fn range() -> String {
    let today = Utc::now().date_naive();
    format!("date_from={}&date_to={}", today - Duration::days(DAYS - 1), today)
}

fn cost(v: &Value) -> Decimal {
    dec(&v["cost"])
}

#[actix_rt::test]
async fn analytics_are_exact_and_equal_metrics_and_invoices() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let key = Uuid::now_v7();
    let g = bill(&node, key).await;

    let (s, summary) = node.get(&format!("/api/analytics/summary?{}", range())).await;
    assert_eq!(s, 200, "summary answers: {summary}");
    let f = &summary["figures"];
    assert_eq!(cost(f), g.total, "summary cost is the exact sum of every billed event");
    assert_eq!(f["requests"], json!(g.events), "every event counted once");
    assert_eq!(f["failed"], json!(g.failed), "failures counted");
    assert_eq!(dec(&f["tokens"]["input_tokens"]), Decimal::from(g.input_tokens), "input tokens summed");

    // By user: equal to each user's metrics and to the invoice of everything they used.
    let (_, by_user) = node.get(&format!("/api/analytics/by-user?{}", range())).await;
    let groups = by_user["groups"].as_array().unwrap();
    assert_eq!(groups.len(), USERS.len(), "one group per user");
    let highest = groups.iter().map(|r| cost(&r["figures"])).collect::<Vec<_>>();
    assert!(highest.windows(2).all(|w| w[0] >= w[1]), "groups sorted by cost, highest first");
    for row in groups {
        let user = row["user_id"].as_str().unwrap();
        assert_eq!(cost(&row["figures"]), g.by_user[user], "{user}: analytics equal the billed sum");
        let (_, metrics) = node.get(&format!("/api/billing/metrics/user/{user}")).await;
        assert_eq!(dec(&metrics["metrics"]["total_cost"]), g.by_user[user], "{user}: analytics equal the metrics");
        let (s, invoice) = node.post(&format!("/api/billing/generate-invoice/user/{user}"), json!({})).await;
        assert_eq!(s, 201, "invoice generated: {invoice}");
        assert_eq!(dec(&invoice["subtotal"]), g.by_user[user], "{user}: analytics equal the invoice subtotal");
    }

    // By task (null: unlabelled), by key (null: not through the gateway), by provider, by model.
    let (_, tasks) = node.get(&format!("/api/analytics/top-tasks?{}", range())).await;
    for row in tasks["groups"].as_array().unwrap() {
        let task = row["task"].as_str().map(String::from);
        assert_eq!(cost(&row["figures"]), g.by_task[&task], "task {task:?} sum");
    }
    let (_, keys) = node.get(&format!("/api/analytics/by-key?{}", range())).await;
    for row in keys["groups"].as_array().unwrap() {
        let k = row["key_id"].as_str().map(|k| Uuid::parse_str(k).unwrap());
        assert_eq!(cost(&row["figures"]), g.by_key[&k], "key {k:?} sum");
    }
    let (_, providers) = node.get(&format!("/api/analytics/by-provider?{}", range())).await;
    let p = providers["groups"].as_array().unwrap();
    assert_eq!(p.len(), 1, "one provider: {providers}");
    assert_eq!(cost(&p[0]["figures"]), g.total, "the provider has everything");
    let (_, models) = node.get(&format!("/api/analytics/by-model?{}", range())).await;
    let model_sum: Decimal = models["groups"].as_array().unwrap().iter().map(|r| cost(&r["figures"])).sum();
    assert_eq!(model_sum, g.total, "models add up to the total");

    // Filters narrow exactly.
    let (_, ana) = node.get(&format!("/api/analytics/summary?{}&user_id=ana&task=summarize", range())).await;
    assert!(cost(&ana["figures"]) > Decimal::ZERO, "ana summarized something");
    assert!(cost(&ana["figures"]) < g.by_user["ana"], "a task filter narrows");
    let (_, none) = node.get(&format!("/api/analytics/summary?{}&provider=openai", range())).await;
    assert_eq!(none["figures"]["requests"], json!(0), "no OpenAI usage");

    // Trends: zero-filled buckets whose sums equal the summary.
    let (_, daily) = node.get(&format!("/api/analytics/trends?{}&period=daily&split=model", range())).await;
    let buckets = daily["buckets"].as_array().unwrap();
    assert_eq!(buckets.len() as i64, DAYS, "one bucket per day of the range");
    for b in buckets {
        let day = chrono::NaiveDate::parse_from_str(b["start"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        assert_eq!(cost(&b["figures"]), g.by_day.get(&day).copied().unwrap_or_default(), "day {day} sum");
        let split: Decimal = b["split"].as_object().unwrap().values().map(cost).sum();
        assert_eq!(split, cost(&b["figures"]), "day {day}: the split adds up to the bucket");
    }
    let (_, weekly) = node.get(&format!("/api/analytics/trends?{}&period=weekly", range())).await;
    let weekly_sum: Decimal = weekly["buckets"].as_array().unwrap().iter().map(|b| cost(&b["figures"])).sum();
    assert_eq!(weekly_sum, g.total, "weekly buckets add up to the total");
    let today = Utc::now().date_naive();
    let (_, empty) = node
        .get(&format!(
            "/api/analytics/trends?date_from={}&date_to={}&period=daily",
            today + Duration::days(1),
            today + Duration::days(3)
        ))
        .await;
    let eb = empty["buckets"].as_array().unwrap();
    assert_eq!(eb.len(), 3, "empty days are still buckets");
    assert!(eb.iter().all(|b| cost(&b["figures"]) == Decimal::ZERO), "zero-filled");

    // Bad input: clear codes.
    for (q, code) in [
        ("date_from=2026-13-01", "invalid_date"),
        ("date_from=2026-02-01&date_to=2026-01-01", "invalid_range"),
        ("key_id=nope", "invalid_key_id"),
        ("period=hourly", "invalid_period"),
        ("bogus=1", "invalid_query"),
    ] {
        let (s, body) = node.get(&format!("/api/analytics/trends?{q}")).await;
        assert_eq!((s, body["code"].as_str()), (400, Some(code)), "{q} is refused with {code}: {body}");
    }
    node.stop().await;
}

#[actix_rt::test]
async fn the_usage_log_pages_through_every_event_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let key = Uuid::now_v7();
    let g = bill(&node, key).await;

    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut last: Option<(String, i64)> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/usage/events?limit=7&cursor={c}"),
            None => "/api/usage/events?limit=7".to_string(),
        };
        let (s, page) = node.get(&q).await;
        assert_eq!(s, 200, "page answers: {page}");
        pages += 1;
        for e in page["events"].as_array().unwrap() {
            assert!(seen.insert(e["event_id"].as_str().unwrap().to_string()), "no event twice: {e}");
            let here = (e["occurred_at"].as_str().unwrap().to_string(), e["event_seq"].as_i64().unwrap());
            if let Some(prev) = &last {
                let (a, b) = (
                    chrono::DateTime::parse_from_rfc3339(&prev.0).unwrap(),
                    chrono::DateTime::parse_from_rfc3339(&here.0).unwrap(),
                );
                assert!(a > b || (a == b && prev.1 > here.1), "newest first");
            }
            last = Some(here);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), g.events, "paging reaches every event exactly once");
    assert_eq!(pages, g.events.div_ceil(7), "pages of 7");

    let (_, failed) = node.get("/api/usage/events?status=failed&limit=1000").await;
    assert_eq!(failed["events"].as_array().unwrap().len(), g.failed, "status=failed lists the failures");
    assert!(failed["events"].as_array().unwrap().iter().all(|e| e["was_successful"] == json!(false)), "only failures");
    let (_, keyed) = node.get(&format!("/api/usage/events?key_id={key}&task=classify&limit=1000")).await;
    let keyed = keyed["events"].as_array().unwrap();
    assert!(!keyed.is_empty(), "some keyed classify events");
    assert!(
        keyed.iter().all(|e| e["key_id"] == json!(key.to_string()) && e["task"] == json!("classify")),
        "filters hold"
    );

    let first = keyed[0]["event_id"].as_str().unwrap();
    let (s, detail) = node.get(&format!("/api/usage/events/{first}")).await;
    assert_eq!(s, 200, "detail answers");
    assert_eq!(detail["event_id"], json!(first), "the asked event");
    let line_sum: Decimal = detail["lines"].as_array().unwrap().iter().map(|l| dec(&l["amount"])).sum();
    assert_eq!(line_sum, dec(&detail["cost"]), "lines add up to the event's cost");
    assert_eq!(detail["payload"], Value::Null, "no payload stored by default");
    let (s, _) = node.get(&format!("/api/usage/events/{}", Uuid::now_v7())).await;
    assert_eq!(s, 404, "unknown event");
    let (s, body) = node.get("/api/usage/events?cursor=zzz").await;
    assert_eq!((s, body["code"].as_str()), (400, Some("invalid_cursor")), "bad cursor: {body}");
    let (s, body) = node.get("/api/usage/events?status=maybe").await;
    assert_eq!((s, body["code"].as_str()), (400, Some("invalid_status")), "bad status: {body}");
    node.stop().await;
}
