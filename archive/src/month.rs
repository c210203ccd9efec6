//! UTC months: parsing `YYYY-MM`, their instant ranges, and which months are closed.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use tally_store::archive::MonthRange;

use crate::error::ArchiveError;

/// The first day of `d`'s month.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The first day of the month after `d`'s.
pub fn next_month(d: NaiveDate) -> NaiveDate {
    let first = first_of_month(d);
    first.checked_add_months(chrono::Months::new(1)).unwrap_or(first)
}

/// The month starting `n` months before `d`'s month.
pub fn months_back(d: NaiveDate, n: u32) -> NaiveDate {
    let first = first_of_month(d);
    first.checked_sub_months(chrono::Months::new(n)).unwrap_or(first)
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

/// The range of the month whose first day is `first`.
pub fn range_of(first: NaiveDate) -> MonthRange {
    let first = first_of_month(first);
    MonthRange { key: first.format("%Y-%m").to_string(), from: midnight(first), to: midnight(next_month(first)) }
}

/// Parse `YYYY-MM`.
pub fn parse_month(text: &str) -> Result<MonthRange, ArchiveError> {
    let bad = || ArchiveError::Invalid(format!("month {text:?} is not YYYY-MM"));
    if text.len() != 7 || text.as_bytes().get(4) != Some(&b'-') {
        return Err(bad());
    }
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    Ok(range_of(first))
}

/// Parse `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, ArchiveError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ArchiveError::Invalid(format!("date {text:?} is not YYYY-MM-DD")))
}

/// Where archiving stops: the first instant not archived for `--before DATE` on `today`.
/// Only whole months that ended on or before `before` and before the current month qualify.
pub fn cutoff(before: NaiveDate, today: NaiveDate) -> DateTime<Utc> {
    // A month qualifies when its end (the next month's first day) is <= before.
    let by_date = if before == first_of_month(before) { before } else { first_of_month(before) };
    midnight(by_date.min(first_of_month(today)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn months_parse_strictly() {
        let m = parse_month("2026-02").ok();
        assert_eq!(m.as_ref().map(|m| m.key.as_str()), Some("2026-02"), "a plain month parses");
        assert_eq!(m.map(|m| (m.to - m.from).num_days()), Some(28), "February 2026 has 28 days");
        for bad in ["2026-2", "2026-13", "26-02", "2026/02", "2026-02-01", ""] {
            assert!(parse_month(bad).is_err(), "{bad:?} is refused");
        }
        assert!(parse_date("2026-02-30").is_err(), "an impossible date is refused");
    }

    #[test]
    fn only_closed_months_before_the_date_qualify() {
        assert_eq!(cutoff(day("2026-03-01"), day("2026-12-04")), midnight(day("2026-03-01")), "before March 1: up to February");
        assert_eq!(cutoff(day("2026-03-15"), day("2026-12-04")), midnight(day("2026-03-01")), "mid-March: March is not whole");
        assert_eq!(cutoff(day("2027-06-01"), day("2026-12-04")), midnight(day("2026-12-01")), "never the current month");
        assert_eq!(months_back(day("2026-12-04"), 3), day("2026-09-01"), "three months back");
        assert_eq!(next_month(day("2026-12-31")), day("2027-01-01"), "December rolls over");
    }
}
