//! Daily cost series: validation, a deterministic generator for tests and backtests, and CSV.

use chrono::{Datelike, Days, NaiveDate};

use crate::error::ForecastError;

/// Check that `history` is contiguous days (each the day after the one before) with finite,
/// non-negative costs. An empty history is valid here (too short is the caller's check).
pub fn validate_history(history: &[(NaiveDate, f64)]) -> Result<(), ForecastError> {
    for (i, &(date, value)) in history.iter().enumerate() {
        if !value.is_finite() || value < 0.0 {
            return Err(ForecastError::InvalidCost { date, value });
        }
        if i > 0 {
            let prev = history[i - 1].0;
            match prev.succ_opt() {
                Some(expected) if expected == date => {}
                Some(expected) => {
                    return Err(ForecastError::NotContiguous {
                        expected,
                        found: date,
                    })
                }
                None => {
                    return Err(ForecastError::NotContiguous {
                        expected: prev,
                        found: date,
                    })
                }
            }
        }
    }
    Ok(())
}

/// splitmix64: a small, well-mixed PRNG, so generated series are the same on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn next_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_unit(), self.next_unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Relative weekday load, Monday first: busy mid-week, quiet at the weekend (mean 0).
const WEEKDAY_SHAPE: [f64; 7] = [0.6, 0.9, 1.0, 0.8, 0.4, -1.6, -2.1];

/// `days` days of cost from `start`: `base + trend_per_day * t + weekly_amplitude * shape(weekday)
/// + noise`, with Gaussian noise of standard deviation `noise_sd`, clamped at 0. Deterministic
/// for a given `seed`; the weekly shape follows calendar weekdays (quiet weekends).
pub fn generate_series(
    days: usize,
    start: NaiveDate,
    base: f64,
    trend_per_day: f64,
    weekly_amplitude: f64,
    noise_sd: f64,
    seed: u64,
) -> Vec<(NaiveDate, f64)> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(days);
    let mut date = start;
    for t in 0..days {
        let weekday = date.weekday().num_days_from_monday() as usize;
        let noise = if noise_sd > 0.0 {
            noise_sd * rng.next_normal()
        } else {
            0.0
        };
        let value =
            base + trend_per_day * t as f64 + weekly_amplitude * WEEKDAY_SHAPE[weekday] + noise;
        out.push((date, value.max(0.0)));
        match date.checked_add_days(Days::new(1)) {
            Some(next) => date = next,
            None => break,
        }
    }
    out
}

/// The series `tally forecast backtest --generate` uses: 120 days from 2026-01-05, base 100,
/// +1 a day, weekly amplitude 15, noise sd 4.
pub fn demo_series(seed: u64) -> Vec<(NaiveDate, f64)> {
    // 2026-01-05 is a valid date; the fallback is never taken.
    let start = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
    generate_series(120, start, 100.0, 1.0, 15.0, 4.0, seed)
}

/// Read `date,cost` lines (`YYYY-MM-DD`, a decimal number). A first line that does not start
/// with a date is a header and skipped, as are blank lines and lines starting with `#`.
/// The days are returned as given (not sorted or checked for gaps: [`crate::forecast_daily`]
/// checks that).
pub fn read_series_csv(text: &str) -> Result<Vec<(NaiveDate, f64)>, ForecastError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| ForecastError::InvalidCsv {
            line: i + 1,
            message,
        };
        let mut fields = line.split(',').map(str::trim);
        let (Some(date_text), Some(cost_text), None) =
            (fields.next(), fields.next(), fields.next())
        else {
            if i == 0 {
                continue;
            }
            return Err(bad(format!("expected 2 fields `date,cost`, got {line:?}")));
        };
        let date = match NaiveDate::parse_from_str(date_text.trim_matches('"'), "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) if i == 0 && out.is_empty() => continue,
            Err(e) => return Err(bad(format!("date {date_text:?}: {e}"))),
        };
        // Money is read as an exact decimal; the model works in f64, so the conversion
        // happens only here, at its boundary.
        let text = cost_text.trim_matches('"');
        let exact = text
            .parse::<rust_decimal::Decimal>()
            .or_else(|_| rust_decimal::Decimal::from_scientific(text))
            .map_err(|e| bad(format!("cost {cost_text:?}: {e}")))?;
        if exact.is_sign_negative() {
            return Err(bad(format!(
                "cost {cost_text:?} is not a finite non-negative number"
            )));
        }
        let cost = rust_decimal::prelude::ToPrimitive::to_f64(&exact)
            .ok_or_else(|| bad(format!("cost {cost_text:?} is out of range")))?;
        out.push((date, cost));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn generated_series_is_deterministic_and_shaped() {
        let a = generate_series(28, day(2026, 3, 2), 50.0, 1.0, 10.0, 2.0, 42);
        let b = generate_series(28, day(2026, 3, 2), 50.0, 1.0, 10.0, 2.0, 42);
        let c = generate_series(28, day(2026, 3, 2), 50.0, 1.0, 10.0, 2.0, 43);
        assert_eq!(a, b, "same seed, same series");
        assert_ne!(a, c, "another seed, another series");
        assert_eq!(a.len(), 28, "one value per day");
        assert_eq!(a[27].0, day(2026, 3, 29), "contiguous days");
        assert!(
            validate_history(&a).is_ok(),
            "a generated series is a valid history"
        );
        let clean = generate_series(7, day(2026, 3, 2), 50.0, 0.0, 10.0, 0.0, 1);
        assert_eq!(clean[0].1, 56.0, "Monday is base + 0.6 x amplitude");
        assert_eq!(clean[6].1, 29.0, "Sunday is base - 2.1 x amplitude");
        let mean: f64 = clean.iter().map(|(_, v)| v).sum::<f64>() / 7.0;
        assert!(
            (mean - 50.0).abs() < 1e-9,
            "the weekly shape averages out to the base"
        );
    }

    #[test]
    fn reads_csv_with_header_and_comments() {
        let text = "date,cost\n2026-01-01,1.5\n# a comment\n\n2026-01-02, 0\n2026-01-03,\"2.25\"\n";
        let series = read_series_csv(text).unwrap_or_else(|e| panic!("read failed: {e}"));
        assert_eq!(
            series,
            vec![
                (day(2026, 1, 1), 1.5),
                (day(2026, 1, 2), 0.0),
                (day(2026, 1, 3), 2.25)
            ],
            "header, comments and blank lines skipped"
        );
        let err = read_series_csv("2026-01-01,1\n2026-01-02,x\n");
        assert!(
            matches!(err, Err(ForecastError::InvalidCsv { line: 2, .. })),
            "a bad cost names its line: {err:?}"
        );
        let err = read_series_csv("2026-01-01,1\nnot-a-date,2\n");
        assert!(
            matches!(err, Err(ForecastError::InvalidCsv { line: 2, .. })),
            "a bad date names its line"
        );
        let err = read_series_csv("2026-01-01,-1\n");
        assert!(
            matches!(err, Err(ForecastError::InvalidCsv { line: 1, .. })),
            "a negative cost is refused"
        );
    }
}
