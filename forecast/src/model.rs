//! The forecast model: MSTL (weekly season) over an AutoETS trend, with 80% and 95% intervals.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use chrono::{Days, NaiveDate};

use crate::error::ForecastError;
use crate::series::validate_history;

/// Fewest days of history a forecast is fit on: two weekly periods, which MSTL needs to
/// separate the weekly pattern from the trend.
pub const MIN_HISTORY_DAYS: usize = 14;

/// Longest horizon, in days.
pub const MAX_HORIZON_DAYS: usize = 90;

/// The seasonal period: usage follows the working week.
pub const WEEKLY_PERIOD: usize = 7;

/// The method name stored with every forecast this model makes.
pub const METHOD: &str = "mstl(7)+autoets";

/// Level of the inner prediction interval.
const LEVEL_80: f64 = 0.80;

/// Level of the outer prediction interval.
const LEVEL_95: f64 = 0.95;

/// One forecast day. Clamped at 0 (costs are never negative) and always ordered
/// `lower_95 <= lower_80 <= mean <= upper_80 <= upper_95`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastPoint {
    /// The UTC day.
    pub date: NaiveDate,
    /// Point forecast of the day's cost.
    pub mean: f64,
    /// Lower bound of the 80% prediction interval.
    pub lower_80: f64,
    /// Upper bound of the 80% prediction interval.
    pub upper_80: f64,
    /// Lower bound of the 95% prediction interval.
    pub lower_95: f64,
    /// Upper bound of the 95% prediction interval.
    pub upper_95: f64,
}

/// A fitted forecast: how it was made and the predicted days after the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The model (see [`METHOD`]).
    pub method: String,
    /// One point per day, starting the day after the history's last.
    pub points: Vec<ForecastPoint>,
}

/// Forecast `horizon` days after `history`, which must be contiguous, zero-filled days with
/// finite non-negative costs, at least [`MIN_HISTORY_DAYS`] of them.
///
/// The series is decomposed by MSTL into trend, weekly season and remainder; AutoETS (chosen
/// by AICc among additive/multiplicative error, none/additive trend, damped or not) forecasts
/// the deseasonalised series and the last weekly pattern is added back. The intervals are the
/// ETS model's prediction intervals at 80% and 95%.
pub fn forecast_daily(
    history: &[(NaiveDate, f64)],
    horizon: usize,
) -> Result<Forecast, ForecastError> {
    if horizon == 0 || horizon > MAX_HORIZON_DAYS {
        return Err(ForecastError::InvalidHorizon {
            horizon,
            max: MAX_HORIZON_DAYS,
        });
    }
    validate_history(history)?;
    if history.len() < MIN_HISTORY_DAYS {
        return Err(ForecastError::InsufficientHistory {
            have: history.len(),
            need: MIN_HISTORY_DAYS,
        });
    }
    let values: Vec<f64> = history.iter().map(|(_, v)| *v).collect();
    let model = MSTLModel::new(
        vec![WEEKLY_PERIOD],
        AutoETS::non_seasonal().into_trend_model(),
    );
    let fitted = model
        .fit(&values)
        .map_err(|e| ForecastError::Model(e.to_string()))?;
    let inner = fitted
        .predict(horizon, LEVEL_80)
        .map_err(|e| ForecastError::Model(e.to_string()))?;
    let outer = fitted
        .predict(horizon, LEVEL_95)
        .map_err(|e| ForecastError::Model(e.to_string()))?;
    let (Some(i80), Some(i95)) = (inner.intervals.as_ref(), outer.intervals.as_ref()) else {
        return Err(ForecastError::Model(
            "the model returned no prediction intervals".into(),
        ));
    };
    let last = history
        .last()
        .map(|(d, _)| *d)
        .ok_or(ForecastError::InsufficientHistory {
            have: 0,
            need: MIN_HISTORY_DAYS,
        })?;
    let mut points = Vec::with_capacity(horizon);
    for i in 0..horizon {
        let raw = [
            inner.point.get(i),
            i80.lower.get(i),
            i80.upper.get(i),
            i95.lower.get(i),
            i95.upper.get(i),
        ];
        let [Some(&mean), Some(&l80), Some(&u80), Some(&l95), Some(&u95)] = raw else {
            return Err(ForecastError::Model(format!(
                "the model returned fewer than {horizon} points"
            )));
        };
        if [mean, l80, u80, l95, u95].iter().any(|v| !v.is_finite()) {
            return Err(ForecastError::Model(format!(
                "the model returned a non-finite value for day {}",
                i + 1
            )));
        }
        let date = last
            .checked_add_days(Days::new(i as u64 + 1))
            .ok_or_else(|| ForecastError::Model("forecast date out of range".into()))?;
        points.push(ordered_point(date, mean, l80, u80, l95, u95));
    }
    Ok(Forecast {
        method: METHOD.to_string(),
        points,
    })
}

/// A point clamped at 0 and nested: the 95% interval holds the 80% one, which holds the mean.
fn ordered_point(
    date: NaiveDate,
    mean: f64,
    l80: f64,
    u80: f64,
    l95: f64,
    u95: f64,
) -> ForecastPoint {
    let mean = mean.max(0.0);
    let lower_80 = l80.min(mean).max(0.0);
    let lower_95 = l95.min(lower_80).max(0.0);
    let upper_80 = u80.max(mean);
    let upper_95 = u95.max(upper_80);
    ForecastPoint {
        date,
        mean,
        lower_80,
        upper_80,
        lower_95,
        upper_95,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::generate_series;

    fn start() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default()
    }

    fn assert_ordered(points: &[ForecastPoint]) {
        for p in points {
            assert!(p.lower_95 >= 0.0, "lower_95 is clamped at 0 on {}", p.date);
            assert!(
                p.lower_95 <= p.lower_80,
                "lower_95 <= lower_80 on {}",
                p.date
            );
            assert!(p.lower_80 <= p.mean, "lower_80 <= mean on {}", p.date);
            assert!(p.mean <= p.upper_80, "mean <= upper_80 on {}", p.date);
            assert!(
                p.upper_80 <= p.upper_95,
                "upper_80 <= upper_95 on {}",
                p.date
            );
        }
    }

    #[test]
    fn follows_trend_and_weekly_shape() {
        // 120 days: base 100, +0.5/day, weekly amplitude 20, noise sd 3.
        let all = generate_series(150, start(), 100.0, 0.5, 20.0, 3.0, 7);
        let truth = generate_series(150, start(), 100.0, 0.5, 20.0, 0.0, 7);
        let (history, _) = all.split_at(120);
        let f = forecast_daily(history, 30).unwrap_or_else(|e| panic!("fit failed: {e}"));
        assert_eq!(f.points.len(), 30, "one point per horizon day");
        assert_eq!(f.method, METHOD, "method is recorded");
        assert_eq!(
            f.points[0].date, truth[120].0,
            "points start the day after the history"
        );
        assert_ordered(&f.points);
        let mean_forecast: f64 = f.points.iter().map(|p| p.mean).sum::<f64>() / 30.0;
        let mean_truth: f64 = truth[120..].iter().map(|(_, v)| v).sum::<f64>() / 30.0;
        assert!(
            (mean_forecast - mean_truth).abs() / mean_truth < 0.05,
            "forecast mean {mean_forecast:.2} within 5% of the true continuation {mean_truth:.2}"
        );
        // Weekly shape: the forecast's high and low weekdays match the true ones.
        let argmax = |v: &[f64]| {
            v.iter()
                .enumerate()
                .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
        };
        let argmin = |v: &[f64]| {
            v.iter()
                .enumerate()
                .fold(0, |b, (i, x)| if *x < v[b] { i } else { b })
        };
        let fw: Vec<f64> = f.points[..7].iter().map(|p| p.mean).collect();
        let tw: Vec<f64> = truth[120..127].iter().map(|(_, v)| *v).collect();
        assert_eq!(
            argmax(&fw),
            argmax(&tw),
            "the busiest forecast weekday is the true busiest: {fw:?} vs {tw:?}"
        );
        assert_eq!(
            argmin(&fw),
            argmin(&tw),
            "the quietest forecast weekday is the true quietest: {fw:?} vs {tw:?}"
        );
        let last = &f.points[29];
        assert!(last.upper_95 - last.lower_95 > 0.0, "intervals have width");
    }

    #[test]
    fn intervals_ordered_and_clamped_near_zero() {
        // A small, noisy, falling series: raw lower bounds go negative and must be clamped.
        let history = generate_series(30, start(), 2.0, -0.05, 1.0, 1.0, 3);
        let f = forecast_daily(&history, 60).unwrap_or_else(|e| panic!("fit failed: {e}"));
        assert_eq!(f.points.len(), 60, "one point per horizon day");
        assert_ordered(&f.points);
    }

    #[test]
    fn too_little_history_is_refused() {
        let history = generate_series(13, start(), 10.0, 0.0, 1.0, 0.5, 1);
        assert_eq!(
            forecast_daily(&history, 30),
            Err(ForecastError::InsufficientHistory {
                have: 13,
                need: MIN_HISTORY_DAYS
            }),
            "13 days are too few"
        );
        let e = ForecastError::InsufficientHistory { have: 13, need: 14 };
        assert_eq!(e.code(), "insufficient_history", "stable code");
        let history = generate_series(14, start(), 10.0, 0.0, 1.0, 0.5, 1);
        assert!(forecast_daily(&history, 30).is_ok(), "14 days are enough");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut history = generate_series(20, start(), 10.0, 0.0, 1.0, 0.5, 1);
        assert!(
            matches!(
                forecast_daily(&history, 0),
                Err(ForecastError::InvalidHorizon { .. })
            ),
            "horizon 0 is invalid"
        );
        assert!(
            matches!(
                forecast_daily(&history, 91),
                Err(ForecastError::InvalidHorizon { .. })
            ),
            "horizon 91 is invalid"
        );
        history[5].1 = -1.0;
        assert!(
            matches!(
                forecast_daily(&history, 7),
                Err(ForecastError::InvalidCost { .. })
            ),
            "negative cost"
        );
        history[5].1 = f64::NAN;
        assert!(
            matches!(
                forecast_daily(&history, 7),
                Err(ForecastError::InvalidCost { .. })
            ),
            "NaN cost"
        );
        history[5].1 = 1.0;
        history.remove(8);
        assert!(
            matches!(
                forecast_daily(&history, 7),
                Err(ForecastError::NotContiguous { .. })
            ),
            "a missing day"
        );
    }

    #[test]
    fn flat_and_zero_series_do_not_break() {
        let zeros: Vec<(NaiveDate, f64)> = generate_series(21, start(), 0.0, 0.0, 0.0, 0.0, 1);
        let result = forecast_daily(&zeros, 10);
        match result {
            Ok(f) => {
                assert_ordered(&f.points);
                assert!(
                    f.points.iter().all(|p| p.mean.abs() < 1e-6),
                    "all-zero history forecasts zero"
                );
            }
            Err(e) => assert_eq!(
                e.code(),
                "model_failed",
                "a degenerate series fails cleanly: {e}"
            ),
        }
    }
}
