//! Backtests: fit on all but the last days, compare with what happened and with seasonal-naive.

use std::fmt;

use chrono::NaiveDate;

use crate::baseline::seasonal_naive;
use crate::error::ForecastError;
use crate::model::{forecast_daily, MIN_HISTORY_DAYS, WEEKLY_PERIOD};
use crate::series::validate_history;

/// Days held out by `tally forecast backtest`.
pub const BACKTEST_HOLDOUT_DAYS: usize = 14;

/// How a model fit on the start of a series did on its last `holdout` days.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestReport {
    /// The model's method.
    pub method: String,
    /// Days fit on.
    pub train_days: usize,
    /// Days held out and predicted.
    pub holdout: usize,
    /// Held-out days with a non-zero actual: the days MAPE is taken over (a zero actual has
    /// no percentage error, so such days are skipped).
    pub mape_days: usize,
    /// Mean absolute percentage error of the model, in percent (`None`: every actual was 0).
    pub model_mape: Option<f64>,
    /// Mean absolute percentage error of seasonal-naive (period 7), in percent.
    pub naive_mape: Option<f64>,
    /// Share of held-out actuals inside the model's 80% interval (0-1).
    pub coverage_80: f64,
    /// Share of held-out actuals inside the model's 95% interval (0-1).
    pub coverage_95: f64,
}

/// Fit on all but the last `holdout` days of `history` and score the forecast of those days:
/// MAPE of the model and of seasonal-naive (days whose actual is 0 are skipped in MAPE), and
/// how many actuals fell inside the 80% and 95% intervals.
pub fn backtest(
    history: &[(NaiveDate, f64)],
    holdout: usize,
) -> Result<BacktestReport, ForecastError> {
    validate_history(history)?;
    let need = MIN_HISTORY_DAYS + holdout.max(1);
    if holdout == 0 || history.len() < need {
        return Err(ForecastError::InsufficientHistory {
            have: history.len(),
            need,
        });
    }
    let (train, test) = history.split_at(history.len() - holdout);
    let forecast = forecast_daily(train, holdout)?;
    let train_values: Vec<f64> = train.iter().map(|(_, v)| *v).collect();
    let naive = seasonal_naive(&train_values, holdout, WEEKLY_PERIOD);
    let model: Vec<f64> = forecast.points.iter().map(|p| p.mean).collect();
    let actual: Vec<f64> = test.iter().map(|(_, v)| *v).collect();
    let inside = |pick: fn(&crate::ForecastPoint) -> (f64, f64)| {
        let n = forecast.points.iter().zip(&actual).filter(|(p, a)| {
            let (lo, hi) = pick(p);
            lo <= **a && **a <= hi
        });
        n.count() as f64 / holdout as f64
    };
    Ok(BacktestReport {
        method: forecast.method.clone(),
        train_days: train.len(),
        holdout,
        mape_days: actual.iter().filter(|a| **a != 0.0).count(),
        model_mape: mape(&actual, &model),
        naive_mape: mape(&actual, &naive),
        coverage_80: inside(|p| (p.lower_80, p.upper_80)),
        coverage_95: inside(|p| (p.lower_95, p.upper_95)),
    })
}

/// Mean absolute percentage error in percent over the days whose actual is not 0.
fn mape(actual: &[f64], predicted: &[f64]) -> Option<f64> {
    let errors: Vec<f64> = actual
        .iter()
        .zip(predicted)
        .filter(|(a, _)| **a != 0.0)
        .map(|(a, p)| ((a - p) / a).abs())
        .collect();
    if errors.is_empty() {
        return None;
    }
    Some(100.0 * errors.iter().sum::<f64>() / errors.len() as f64)
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}%"));
        writeln!(f, "backtest: fit on {} days, {} held out ({} with non-zero cost; zero days are skipped in MAPE)", self.train_days, self.holdout, self.mape_days)?;
        writeln!(
            f,
            "{:<22} {:>10} {:>12} {:>12}",
            "model", "MAPE", "in 80% PI", "in 95% PI"
        )?;
        writeln!(
            f,
            "{:<22} {:>10} {:>11.0}% {:>11.0}%",
            self.method,
            pct(self.model_mape),
            100.0 * self.coverage_80,
            100.0 * self.coverage_95
        )?;
        write!(
            f,
            "{:<22} {:>10} {:>12} {:>12}",
            "seasonal_naive(7)",
            pct(self.naive_mape),
            "-",
            "-"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::generate_series;

    fn start() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default()
    }

    #[test]
    fn beats_seasonal_naive_on_a_trended_series() {
        let mut wins = 0;
        let mut covered_95 = 0.0;
        let seeds = [1u64, 2, 3, 4, 5];
        for seed in seeds {
            let series = generate_series(120, start(), 100.0, 1.0, 15.0, 4.0, seed);
            let r = backtest(&series, BACKTEST_HOLDOUT_DAYS)
                .unwrap_or_else(|e| panic!("backtest failed: {e}"));
            let (Some(m), Some(n)) = (r.model_mape, r.naive_mape) else {
                panic!("MAPE defined on positive data")
            };
            if m <= n {
                wins += 1;
            }
            covered_95 += r.coverage_95;
            println!("seed {seed}:\n{r}");
            assert_eq!(r.train_days, 106, "fit on all but the holdout");
            assert!(
                r.coverage_80 <= r.coverage_95,
                "the 95% interval covers at least what the 80% one does"
            );
        }
        assert!(
            wins >= 4,
            "the model beats or matches seasonal-naive on most trended series ({wins}/5)"
        );
        let mean_cov = covered_95 / seeds.len() as f64;
        assert!(
            mean_cov >= 0.75,
            "95% intervals cover most held-out days on average ({mean_cov:.2})"
        );
    }

    #[test]
    fn mape_skips_zero_actuals() {
        assert_eq!(
            mape(&[0.0, 10.0], &[5.0, 9.0]),
            Some(10.0),
            "the zero day is skipped"
        );
        assert_eq!(mape(&[0.0], &[5.0]), None, "nothing to score");
    }

    #[test]
    fn report_prints_a_table() {
        let series = generate_series(60, start(), 20.0, 0.2, 5.0, 1.0, 9);
        let r = backtest(&series, 14).unwrap_or_else(|e| panic!("backtest failed: {e}"));
        let text = r.to_string();
        assert!(
            text.contains("seasonal_naive(7)"),
            "the baseline row is printed: {text}"
        );
        assert!(text.contains(&r.method), "the model row is printed: {text}");
        let short = generate_series(20, start(), 20.0, 0.2, 5.0, 1.0, 9);
        assert!(
            matches!(
                backtest(&short, 14),
                Err(ForecastError::InsufficientHistory { need: 28, .. })
            ),
            "the training part needs 14 days too"
        );
    }
}
