//! Stored forecasts: what was fit, when, on which data, and the predicted points.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::{run, Store};

/// Decimal places of stored forecast values.
pub const FORECAST_DECIMALS: u32 = 6;

/// One forecast day as stored and served: decimals (6 places), strings in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPoint {
    /// The UTC day.
    pub date: NaiveDate,
    /// Point forecast of the day's cost.
    pub mean: Decimal,
    /// Lower bound of the 80% interval.
    pub lower_80: Decimal,
    /// Upper bound of the 80% interval.
    pub upper_80: Decimal,
    /// Lower bound of the 95% interval.
    pub lower_95: Decimal,
    /// Upper bound of the 95% interval.
    pub upper_95: Decimal,
}

/// A fitted forecast of one scope (`total`, `provider:NAME`, `model:NAME`, `user:ID`, `key:UUID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredForecast {
    /// Id (UUIDv7).
    pub forecast_id: Uuid,
    /// What was forecast, as the API spells it.
    pub scope: String,
    /// When it was fit.
    pub trained_at: DateTime<Utc>,
    /// First day of the history it was fit on (UTC).
    pub data_from: NaiveDate,
    /// Last day of the history it was fit on (UTC).
    pub data_to: NaiveDate,
    /// Days of history.
    pub history_days: u32,
    /// Days forecast (the number of points).
    pub horizon: u32,
    /// The model that made it.
    pub method: String,
    /// One point per day after `data_to`.
    pub points: Vec<StoredPoint>,
}

impl Store {
    /// Keep a fitted forecast (a forecast id already stored is a conflict).
    pub fn save_forecast(&self, forecast: &StoredForecast) -> Result<(), StoreError> {
        run!(self, write, forecasts::insert_forecast(forecast))
    }

    /// The most recently trained forecast of `scope`, if any.
    pub fn latest_forecast(&self, scope: &str) -> Result<Option<StoredForecast>, StoreError> {
        run!(self, read, forecasts::latest_forecast(scope))
    }
}
