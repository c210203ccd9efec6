//! ForecastError: every way fitting or reading a series can fail, each with a stable `code`.

use chrono::NaiveDate;

/// A forecasting failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// Fewer days of history than a weekly model needs.
    #[error("{have} days of history, at least {need} are needed")]
    InsufficientHistory {
        /// Days given.
        have: usize,
        /// Days needed.
        need: usize,
    },
    /// The history skips or repeats a day (it must be contiguous and zero-filled).
    #[error("history is not contiguous: expected {expected}, found {found}")]
    NotContiguous {
        /// The day that should come next.
        expected: NaiveDate,
        /// The day that came.
        found: NaiveDate,
    },
    /// A day's cost is negative, NaN or infinite.
    #[error("cost {value} on {date} is not a finite non-negative number")]
    InvalidCost {
        /// The day.
        date: NaiveDate,
        /// The value given.
        value: f64,
    },
    /// The horizon is outside `1..=MAX_HORIZON_DAYS`.
    #[error("horizon {horizon} is outside 1-{max} days")]
    InvalidHorizon {
        /// The horizon asked.
        horizon: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A CSV line could not be read as `date,cost`.
    #[error("line {line}: {message}")]
    InvalidCsv {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The model could not be fit or could not predict.
    #[error("model failed: {0}")]
    Model(String),
}

impl ForecastError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ForecastError::InsufficientHistory { .. } => "insufficient_history",
            ForecastError::NotContiguous { .. } => "history_not_contiguous",
            ForecastError::InvalidCost { .. } => "invalid_cost",
            ForecastError::InvalidHorizon { .. } => "invalid_horizon",
            ForecastError::InvalidCsv { .. } => "invalid_csv",
            ForecastError::Model(_) => "model_failed",
        }
    }

    /// Whether trying again could succeed: never, the same input gives the same result.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
