//! Forecast routes over a real SQLite store: served with ordered intervals, cached for the day,
//! trained in bulk, and refused with 422 on too little history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::{test, App};
use chrono::{Duration, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_domain::{price_usage, Catalog, Usage, UsageKind};
use tally_store::{Store, UsageRecord, WriteOp};
use tally_web::routes::forecasts::{configure, retrain_all};
use uuid::Uuid;

const CATALOG: &str = include_str!("../../catalog/prices.json");
const HAIKU: &str = "claude-3-5-haiku-20241022";

/// A seeded store with one Haiku usage a day for the `days` complete days before today,
/// tokens following a generated series (trend and weekly pattern).
fn store_with_days(dir: &tempfile::TempDir, days: usize) -> Store {
    let store =
        Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).expect("open");
    store
        .seed(&Catalog::parse(CATALOG).expect("catalogue"))
        .expect("seed");
    let book = store.load_price_book().expect("price book");
    let today = Utc::now().date_naive();
    let start = today - Duration::days(days as i64);
    let series = tally_forecast::generate_series(days, start, 200.0, 2.0, 40.0, 8.0, 11);
    let ops: Vec<WriteOp> = series
        .iter()
        .map(|(day, v)| {
            let when = day
                .and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap())
                .and_utc();
            let mut usage = Usage::new();
            usage.add_tokens(UsageKind::InputTokens, (v * 1_000.0) as u64);
            usage.add_tokens(UsageKind::OutputTokens, (v * 100.0) as u64);
            WriteOp::Usage(UsageRecord {
                event_id: Uuid::now_v7(),
                user_id: "ana".into(),
                thread_id: None,
                message_id: None,
                model: HAIKU.into(),
                event_type: String::new(),
                source: "test".into(),
                idempotency_key: None,
                occurred_at: when,
                cost: price_usage(&book, HAIKU, when, &usage).expect("priced"),
                key_id: None,
                task: None,
                successful: true,
            })
        })
        .collect();
    store.write_batch(&ops).expect("write usage");
    store
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is a decimal string"))
        .parse()
        .expect("decimal")
}

fn six_places(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.split_once('.'))
        .is_some_and(|(_, frac)| frac.len() == 6)
}

#[actix_web::test]
async fn forecasts_are_served_cached_and_trained() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_days(&dir, 40);
    let app = test::init_service(App::new().configure(configure(store.clone()))).await;
    let yesterday = Utc::now().date_naive() - Duration::days(1);

    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/forecasts?scope=total&horizon=30")
            .to_request(),
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "a scope with 40 days of history is forecast"
    );
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["scope"], "total", "scope echoed");
    assert_eq!(body["horizon"], 30, "horizon echoed");
    assert_eq!(body["history_days"], 40, "40 complete days of history");
    assert_eq!(
        body["history"].as_array().map(Vec::len),
        Some(40),
        "the history is served"
    );
    assert_eq!(body["data_to"], json!(yesterday), "history ends yesterday");
    assert_eq!(body["method"], "mstl(7)+autoets", "the model is named");
    let points = body["points"].as_array().expect("points");
    assert_eq!(points.len(), 30, "30 points");
    assert_eq!(
        points[0]["date"],
        json!(yesterday + Duration::days(1)),
        "points start today"
    );
    for p in points {
        let [l95, l80, m, u80, u95] =
            ["lower_95", "lower_80", "mean", "upper_80", "upper_95"].map(|k| dec(&p[k]));
        assert!(
            Decimal::ZERO <= l95 && l95 <= l80 && l80 <= m && m <= u80 && u80 <= u95,
            "ordered, non-negative: {p}"
        );
        assert!(six_places(&p["mean"]), "decimal strings with 6 places: {p}");
    }
    let sum: Decimal = points.iter().map(|p| dec(&p["mean"])).sum();
    assert_eq!(
        dec(&body["total_mean"]),
        sum,
        "total_mean adds up the points"
    );
    let last_week: Decimal = body["history"].as_array().unwrap()[33..]
        .iter()
        .map(|h| dec(&h["cost"]))
        .sum();
    let first_week: Decimal = points[..7].iter().map(|p| dec(&p["mean"])).sum();
    assert!(
        first_week > last_week * Decimal::new(8, 1) && first_week < last_week * Decimal::new(14, 1),
        "the first forecast week ({first_week}) is near the last actual week ({last_week}) on a rising series"
    );

    let again = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/forecasts?horizon=7")
            .to_request(),
    )
    .await;
    assert_eq!(again.status(), 200, "served again");
    let again: Value = test::read_body_json(again).await;
    assert_eq!(
        again["trained_at"], body["trained_at"],
        "today's stored forecast is served, not refit"
    );
    assert_eq!(
        again["points"].as_array().map(Vec::len),
        Some(7),
        "truncated to the horizon asked"
    );
    assert_eq!(again["points"][0], body["points"][0], "the same points");

    for (uri, code) in [
        ("/api/forecasts?horizon=0", "invalid_horizon"),
        ("/api/forecasts?horizon=91", "invalid_horizon"),
        ("/api/forecasts?horizon=x", "invalid_horizon"),
        ("/api/forecasts?scope=bogus", "invalid_scope"),
        ("/api/forecasts?scope=key:not-a-uuid", "invalid_scope"),
        ("/api/forecasts?scope=provider:", "invalid_scope"),
    ] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(resp.status(), 400, "{uri} is a bad request");
        let err: Value = test::read_body_json(resp).await;
        assert_eq!(err["code"], code, "{uri} has code {code}");
    }

    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/forecasts?scope=provider:anthropic")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200, "a provider scope is forecast");

    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/forecasts/train")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200, "bulk training succeeds");
    let out: Value = test::read_body_json(resp).await;
    let trained: Vec<&str> = out["trained"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["scope"].as_str())
        .collect();
    assert_eq!(
        trained,
        vec!["total", "provider:anthropic", &format!("model:{HAIKU}")],
        "default scopes: total, providers, models"
    );

    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/forecasts/train")
            .set_json(json!({"scopes": ["model:unused", "user:ana"]}))
            .to_request(),
    )
    .await;
    let out: Value = test::read_body_json(resp).await;
    assert_eq!(
        out["skipped"][0]["scope"], "model:unused",
        "a scope without usage is skipped"
    );
    assert_eq!(
        out["skipped"][0]["code"], "insufficient_history",
        "with its code"
    );
    assert_eq!(
        out["trained"][0]["scope"], "user:ana",
        "a user scope is trained"
    );

    let summary = retrain_all(store.clone()).await.expect("retrain");
    assert!(
        summary.starts_with("trained 3 of 3"),
        "the scheduler job trains every scope: {summary}"
    );
    assert!(
        store
            .latest_forecast("provider:anthropic")
            .expect("read")
            .is_some(),
        "forecasts are stored"
    );
}

#[actix_web::test]
async fn ten_days_are_too_few() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_days(&dir, 10);
    let app = test::init_service(App::new().configure(configure(store))).await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/forecasts?scope=total")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 422, "10 days of history cannot be forecast");
    let err: Value = test::read_body_json(resp).await;
    assert_eq!(err["code"], "insufficient_history", "stable code");
}
