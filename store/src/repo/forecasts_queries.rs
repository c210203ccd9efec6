// forecasts queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `forecasts` submodule, so every query is written once and type-checked
// against both backends.

use chrono::{NaiveDate, NaiveTime};
use diesel::prelude::*;

use super::{write_tx, Conn};
use crate::error::StoreError;
use crate::forecasts::{StoredForecast, StoredPoint};
use crate::schema::*;
use crate::sql_types::{DbTime, DbUuid};

/// A `forecasts` row: id, scope, trained_at, data_from, data_to, history_days, horizon,
/// method, points (JSON).
type ForecastTuple = (
    DbUuid,
    String,
    DbTime,
    DbTime,
    DbTime,
    i32,
    i32,
    String,
    String,
);

/// A UTC day as its midnight instant (how `data_from`/`data_to` are stored).
fn day_start(day: NaiveDate) -> DbTime {
    DbTime::new(day.and_time(NaiveTime::MIN).and_utc())
}

fn count_to_db(what: &str, n: u32) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Invalid(format!("forecast {what} {n} is too large")))
}

fn count_from_db(what: &str, n: i32) -> Result<u32, StoreError> {
    u32::try_from(n)
        .map_err(|_| StoreError::Database(format!("stored forecast {what} {n} is negative")))
}

/// Store one forecast.
pub(crate) fn insert_forecast(conn: &mut Conn, f: &StoredForecast) -> Result<(), StoreError> {
    let points = serde_json::to_string(&f.points)
        .map_err(|e| StoreError::Invalid(format!("forecast points: {e}")))?;
    let history_days = count_to_db("history_days", f.history_days)?;
    let horizon = count_to_db("horizon", f.horizon)?;
    write_tx(conn, |conn| {
        diesel::insert_into(forecasts::table)
            .values((
                forecasts::forecast_id.eq(DbUuid(f.forecast_id)),
                forecasts::scope.eq(&f.scope),
                forecasts::trained_at.eq(DbTime::new(f.trained_at)),
                forecasts::data_from.eq(day_start(f.data_from)),
                forecasts::data_to.eq(day_start(f.data_to)),
                forecasts::history_days.eq(history_days),
                forecasts::horizon.eq(horizon),
                forecasts::method.eq(&f.method),
                forecasts::points.eq(&points),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// The latest forecast of a scope (by training time, then id: UUIDv7 ids ascend with time).
pub(crate) fn latest_forecast(
    conn: &mut Conn,
    scope: &str,
) -> Result<Option<StoredForecast>, StoreError> {
    let row: Option<ForecastTuple> = forecasts::table
        .filter(forecasts::scope.eq(scope))
        .order((forecasts::trained_at.desc(), forecasts::forecast_id.desc()))
        .select((
            forecasts::forecast_id,
            forecasts::scope,
            forecasts::trained_at,
            forecasts::data_from,
            forecasts::data_to,
            forecasts::history_days,
            forecasts::horizon,
            forecasts::method,
            forecasts::points,
        ))
        .first(conn)
        .optional()?;
    let Some((id, scope, trained_at, data_from, data_to, history_days, horizon, method, points)) =
        row
    else {
        return Ok(None);
    };
    let points: Vec<StoredPoint> = serde_json::from_str(&points).map_err(|e| {
        StoreError::Database(format!(
            "stored points of forecast {} are not valid: {e}",
            id.0
        ))
    })?;
    Ok(Some(StoredForecast {
        forecast_id: id.0,
        scope,
        trained_at: trained_at.get(),
        data_from: data_from.get().date_naive(),
        data_to: data_to.get().date_naive(),
        history_days: count_from_db("history_days", history_days)?,
        horizon: count_from_db("horizon", horizon)?,
        method,
        points,
    }))
}
