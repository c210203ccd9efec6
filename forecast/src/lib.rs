//! tally-forecast: daily cost forecasts (MSTL with a weekly season and an AutoETS trend),
//! a seasonal-naive baseline, backtests, and generated or CSV series to try them on.
//!
//! Costs are `f64` here on purpose: a forecast is a statistical estimate, not money that is
//! billed. Callers convert to `Decimal` (6 places) at the edge, where it is stored or served.

pub mod backtest;
pub mod baseline;
pub mod error;
pub mod model;
pub mod series;

pub use backtest::{backtest, BacktestReport, BACKTEST_HOLDOUT_DAYS};
pub use baseline::seasonal_naive;
pub use error::ForecastError;
pub use model::{
    forecast_daily, Forecast, ForecastPoint, MAX_HORIZON_DAYS, METHOD, MIN_HISTORY_DAYS,
    WEEKLY_PERIOD,
};
pub use series::{demo_series, generate_series, read_series_csv, validate_history};
