//! forecasts on both backends.

use chrono::{Duration, NaiveDate};
use tally_store::forecasts::{StoredForecast, StoredPoint};
use tally_store::{truncate_to_micros, StoreError};
use uuid::Uuid;

use crate::common::{at, dec, on_both_backends, TestDb};

on_both_backends!(forecasts_round_trip_and_latest_wins,);

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn forecast(scope: &str, trained_at: &str, mean: &str) -> StoredForecast {
    let points = (1..=3)
        .map(|i| StoredPoint {
            date: day("2026-12-03") + Duration::days(i),
            mean: dec(mean),
            lower_80: dec("1.000000"),
            upper_80: dec("3.500000"),
            lower_95: dec("0"),
            upper_95: dec("4.123456"),
        })
        .collect();
    StoredForecast {
        forecast_id: Uuid::now_v7(),
        scope: scope.into(),
        trained_at: truncate_to_micros(at(trained_at)),
        data_from: day("2026-10-01"),
        data_to: day("2026-12-03"),
        history_days: 64,
        horizon: 3,
        method: "mstl(7)+autoets".into(),
        points,
    }
}

fn forecasts_round_trip_and_latest_wins(db: &TestDb) {
    let store = db.open();
    assert_eq!(
        store.latest_forecast("total").expect("read"),
        None,
        "no forecast yet"
    );
    let older = forecast("total", "2026-12-03T06:00:00.123456Z", "2.000001");
    let newer = forecast("total", "2026-12-04T06:00:00Z", "2.500000");
    let other = forecast("provider:anthropic", "2026-12-05T06:00:00Z", "9.999999");
    store.save_forecast(&newer).expect("save newer");
    store.save_forecast(&older).expect("save older");
    store.save_forecast(&other).expect("save other scope");
    let latest = store.latest_forecast("total").expect("read");
    assert_eq!(
        latest.as_ref(),
        Some(&newer),
        "the latest trained forecast of the scope comes back exactly"
    );
    let latest = latest.expect("present");
    assert_eq!(
        latest.points[0].upper_95,
        dec("4.123456"),
        "decimals keep their 6 places"
    );
    assert_eq!(latest.data_to, day("2026-12-03"), "days round-trip as days");
    assert_eq!(
        store.latest_forecast("provider:anthropic").expect("read"),
        Some(other),
        "scopes are kept apart"
    );
    assert_eq!(
        store.latest_forecast("model:none").expect("read"),
        None,
        "an unknown scope has none"
    );
    assert!(
        matches!(store.save_forecast(&newer), Err(StoreError::Conflict(_))),
        "saving the same forecast id twice is a conflict"
    );
}
