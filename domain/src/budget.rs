//! Budget rules: calendar-aligned budget windows in a time zone, and the upper bound
//! reserved for a request before it is sent upstream.
//!
//! Windows are half-open `[start, end)` in UTC, aligned to the local calendar of the
//! budget's time zone: a day starts at local 00:00, a week on Monday 00:00, a month
//! on the 1st at 00:00. Where local midnight does not exist (a daylight-saving jump
//! at 00:00, as in America/Santiago or Asia/Beirut) the window starts at the first
//! instant after it; where it happens twice, at the first one.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
/// IANA time zone (re-exported so callers need not depend on `chrono-tz`).
pub use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::money::{Money, TOKENS_PER_PRICE_UNIT};
use crate::pricing::PriceBook;
use crate::usage::UsageKind;

/// Tokens added per chat message for the role markers and separators a chat template
/// wraps around each message (they are not in the request body).
pub const PER_MESSAGE_TOKEN_OVERHEAD: u64 = 16;

/// Tokens added once per request for the template's framing (start/end markers,
/// the assistant turn prefix) that is not in the request body.
pub const REQUEST_TOKEN_OVERHEAD: u64 = 64;

/// Input-side token kinds: every kind a prompt token may be billed as.
pub const INPUT_TOKEN_KINDS: [UsageKind; 4] = [
    UsageKind::InputTokens,
    UsageKind::CacheWrite5mTokens,
    UsageKind::CacheWrite1hTokens,
    UsageKind::CacheReadTokens,
];

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// Every day at local midnight.
    Daily,
    /// Every Monday at local midnight.
    Weekly,
    /// On the 1st of every month at local midnight.
    Monthly,
}

impl BudgetPeriod {
    /// Every period, shortest first.
    pub const ALL: [BudgetPeriod; 3] = [BudgetPeriod::Daily, BudgetPeriod::Weekly, BudgetPeriod::Monthly];

    /// The stable wire/storage name: `daily`, `weekly` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Weekly => "weekly",
            BudgetPeriod::Monthly => "monthly",
        }
    }

    /// First local date of the period containing `date`.
    fn first_date(self, date: NaiveDate) -> NaiveDate {
        match self {
            BudgetPeriod::Daily => date,
            BudgetPeriod::Weekly => date
                .checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))
                .unwrap_or(NaiveDate::MIN),
            BudgetPeriod::Monthly => date.with_day(1).unwrap_or(date),
        }
    }

    /// First local date of the next period, for `first` the first date of a period.
    fn next_first(self, first: NaiveDate) -> NaiveDate {
        let next = match self {
            BudgetPeriod::Daily => first.checked_add_days(Days::new(1)),
            BudgetPeriod::Weekly => first.checked_add_days(Days::new(7)),
            BudgetPeriod::Monthly => first.checked_add_months(Months::new(1)),
        };
        next.unwrap_or(NaiveDate::MAX)
    }

    /// First local date of the previous period, for `first` the first date of a period.
    fn prev_first(self, first: NaiveDate) -> NaiveDate {
        let prev = match self {
            BudgetPeriod::Daily => first.checked_sub_days(Days::new(1)),
            BudgetPeriod::Weekly => first.checked_sub_days(Days::new(7)),
            BudgetPeriod::Monthly => first.checked_sub_months(Months::new(1)),
        };
        prev.unwrap_or(NaiveDate::MIN)
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPeriod {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "daily" => Ok(BudgetPeriod::Daily),
            "weekly" => Ok(BudgetPeriod::Weekly),
            "monthly" => Ok(BudgetPeriod::Monthly),
            other => Err(DomainError::InvalidBudgetPeriod(other.to_string())),
        }
    }
}

/// Parse an IANA time zone name (`UTC`, `Europe/Berlin`, ...). Names are case-sensitive,
/// as in the tz database; surrounding whitespace is ignored.
pub fn parse_tz(name: &str) -> Result<Tz, DomainError> {
    let trimmed = name.trim();
    Tz::from_str(trimmed).map_err(|_| DomainError::InvalidTimeZone(trimmed.to_string()))
}

/// One budget window: spend in `[start, end)` counts against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BudgetWindow {
    /// First instant in the window (inclusive).
    pub start: DateTime<Utc>,
    /// First instant after the window (exclusive); the next window starts here.
    pub end: DateTime<Utc>,
}

impl BudgetWindow {
    /// Whether `at` falls in this window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// Length of the window (23 or 25 hours on a daylight-saving day).
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// The window of `period` in time zone `tz` that contains `at`.
///
/// An instant exactly at a boundary belongs to the window that starts there.
pub fn window(period: BudgetPeriod, tz: Tz, at: DateTime<Utc>) -> BudgetWindow {
    let local_date = at.with_timezone(&tz).date_naive();
    let mut first = period.first_date(local_date);
    let mut start = local_midnight(tz, first);
    let mut end = local_midnight(tz, period.next_first(first));
    // The local date of `at` names the right period except in the hour a clock turned
    // back across midnight repeats: that hour has the old date but lies after the new
    // period's start. A step or two settles it; the bound only guards the calendar's ends.
    for _ in 0..MAX_WINDOW_STEPS {
        if at < start {
            first = period.prev_first(first);
            end = start;
            start = local_midnight(tz, first);
        } else if at >= end {
            first = period.next_first(first);
            start = end;
            end = local_midnight(tz, period.next_first(first));
        } else {
            break;
        }
    }
    BudgetWindow { start, end }
}

/// Most corrections [`window`] makes to the window named by the local date.
const MAX_WINDOW_STEPS: usize = 4;

/// Widest distance between a local wall-clock time and UTC: UTC offsets have stayed
/// within ±15:57 in the tz database (local mean times included); a day of margin.
const MAX_OFFSET_SECONDS: i64 = 27 * 3600;

/// The first instant whose local time in `tz` is at or after `date` 00:00.
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = NaiveDateTime::new(date, NaiveTime::MIN);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        // Midnight happens twice (the clock turned back to or across it): the first.
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => first_instant_at_or_after(tz, naive),
    }
}

/// The first instant whose local time is at or after `naive`, for a `naive` that falls
/// in a gap (the clock jumped over it): the instant of the jump.
///
/// Local time is non-decreasing around a gap, so a binary search over whole seconds is
/// exact: every tz transition happens at a whole second, and the answer is a transition.
fn first_instant_at_or_after(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let target = naive.and_utc().timestamp();
    let reaches = |secs: i64| {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .is_some_and(|t| t.with_timezone(&tz).naive_local() >= naive)
    };
    // Invariant: `lo` is before the answer, `hi` is at or after it.
    let mut lo = target.saturating_sub(MAX_OFFSET_SECONDS);
    let mut hi = target.saturating_add(MAX_OFFSET_SECONDS);
    if reaches(lo) || !reaches(hi) {
        // Outside the range the tz database can describe: read the wall clock as UTC.
        return naive.and_utc();
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::<Utc>::from_timestamp(hi, 0).unwrap_or_else(|| naive.and_utc())
}

/// A safe upper bound on the input tokens of a request whose JSON body is `body_bytes`
/// long and holds `messages` chat messages.
///
/// Why it is an upper bound: every token a byte-level BPE (or SentencePiece with byte
/// fallback) tokenizer emits covers at least one byte of the text it encodes, and the
/// text a model sees is the decoded string content of the body, which is never longer
/// than the body (JSON escapes only shrink when decoded: `\n` is 2 bytes for 1,
/// `\u00e9` is 6 bytes for 2). What the body does not contain is the chat template's
/// markup (role markers, separators, turn prefixes): [`PER_MESSAGE_TOKEN_OVERHEAD`] per
/// message and [`REQUEST_TOKEN_OVERHEAD`] per request cover it.
///
/// Where it does not hold: content referenced rather than inlined (an image or file
/// by URL or file id is billed from its pixels or pages, not its reference's bytes),
/// and text a provider injects (Anthropic's tool-use system prompt is hundreds of
/// tokens). The caller must add an allowance for those (LiteLLM reserves the model's
/// whole context window when a request has file blocks).
///
/// Where it is loose: prose averages about 4 bytes per token, and the JSON syntax
/// (keys, quotes, the model name) is counted as if it were text, so the bound is
/// typically 4-5 times the real count. A base64 image inlined in the body is far
/// looser still (its bytes dwarf its tokens).
pub fn input_token_upper_bound(body_bytes: usize, messages: usize) -> u64 {
    let body = u64::try_from(body_bytes).unwrap_or(u64::MAX);
    let messages = u64::try_from(messages).unwrap_or(u64::MAX);
    body.saturating_add(messages.saturating_mul(PER_MESSAGE_TOKEN_OVERHEAD))
        .saturating_add(REQUEST_TOKEN_OVERHEAD)
}

/// The most a request to `model` at `at` can cost when it has at most
/// `input_token_bound` prompt tokens and at most `output_tokens` generated tokens:
/// `input_token_bound x (highest input-side price) + output_tokens x output price`,
/// prices per million, exact.
///
/// The highest input-side price is the largest of the input, 5-minute cache write,
/// 1-hour cache write and cache read prices in force at `at` (the provider decides how
/// prompt tokens split among them, so each may be billed at the dearest). Kinds the
/// model has no price for are skipped; the input price itself is required, and the
/// output price is required whenever `output_tokens > 0` (a model with no output price,
/// such as an embedding model, can be reserved for with `output_tokens = 0`).
///
/// The result never undercounts: an amount too large for `Decimal` saturates at
/// `Decimal::MAX`, which no budget admits.
pub fn reservation_bound(
    book: &PriceBook,
    model: &str,
    at: DateTime<Utc>,
    input_token_bound: u64,
    output_tokens: u64,
) -> Result<Money, DomainError> {
    let mut input_price = book.lookup(model, &UsageKind::InputTokens, at)?.price;
    for kind in &INPUT_TOKEN_KINDS[1..] {
        match book.lookup(model, kind, at) {
            Ok(v) => input_price = input_price.max(v.price),
            Err(DomainError::NoPrice { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let output_price = if output_tokens > 0 {
        book.lookup(model, &UsageKind::OutputTokens, at)?.price
    } else {
        Decimal::ZERO
    };
    let basis = Decimal::from(TOKENS_PER_PRICE_UNIT);
    let side = |tokens: u64, price: Decimal| {
        Decimal::from(tokens).checked_mul(price).map_or(Decimal::MAX, |v| v / basis)
    };
    Ok(side(input_token_bound, input_price)
        .checked_add(side(output_tokens, output_price))
        .unwrap_or(Decimal::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::price_usage;
    use crate::usage::Usage;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use uuid::Uuid;

    const MICRO: Duration = Duration::microseconds(1);

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap_or_else(|| panic!("bad test instant {y}-{mo}-{d} {h}:{mi}"))
    }

    fn tz(name: &str) -> Tz {
        parse_tz(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks that `start` opens a window: it and later instants up to `end` map to
    /// `[start, end)`, and 1 µs before `start` maps to a window ending at `start`.
    fn assert_boundary(period: BudgetPeriod, zone: Tz, start: DateTime<Utc>, end: DateTime<Utc>) {
        let w = window(period, zone, start);
        assert_eq!(w, BudgetWindow { start, end }, "{period} window at its start {start} in {zone}");
        let w = window(period, zone, end - MICRO);
        assert_eq!(w, BudgetWindow { start, end }, "{period} window 1µs before its end {end} in {zone}");
        let before = window(period, zone, start - MICRO);
        assert_eq!(before.end, start, "1µs before {start} belongs to the previous {period} window in {zone}");
        assert!(before.start < before.end, "previous window is not empty");
        let after = window(period, zone, end);
        assert_eq!(after.start, end, "the instant {end} belongs to the next {period} window in {zone}");
    }

    #[test]
    fn periods_round_trip_through_their_names() {
        for p in BudgetPeriod::ALL {
            assert_eq!(p.as_str().parse::<BudgetPeriod>().ok(), Some(p), "{p} parses back");
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.as_str()), "serde uses the snake_case name");
            let back: Option<BudgetPeriod> = serde_json::from_str(&json).ok();
            assert_eq!(back, Some(p), "serde round trip");
        }
        let bad = "Daily".parse::<BudgetPeriod>();
        assert_eq!(bad.map_err(|e| e.code()), Err("invalid_budget_period"), "names are lowercase");
        assert!("yearly".parse::<BudgetPeriod>().is_err(), "unknown period rejected");
    }

    #[test]
    fn parses_iana_zones() {
        assert_eq!(parse_tz("UTC").ok(), Some(chrono_tz::UTC), "UTC is known");
        assert_eq!(parse_tz(" Europe/Berlin ").ok(), Some(chrono_tz::Europe::Berlin), "whitespace ignored");
        assert_eq!(parse_tz("Mars/Olympus").map_err(|e| e.code()), Err("invalid_time_zone"), "unknown zone rejected");
        assert!(parse_tz("").is_err(), "empty name rejected");
    }

    #[test]
    fn utc_days_weeks_and_months() {
        let z = chrono_tz::UTC;
        assert_boundary(BudgetPeriod::Daily, z, utc(2025, 3, 14, 0, 0), utc(2025, 3, 15, 0, 0));
        assert_boundary(BudgetPeriod::Daily, z, utc(2024, 12, 31, 0, 0), utc(2025, 1, 1, 0, 0));
        let w = window(BudgetPeriod::Daily, z, utc(2025, 3, 14, 13, 37));
        assert_eq!(w.duration(), Duration::hours(24), "a UTC day is 24 h");
        // 2025-03-10 is a Monday.
        assert_boundary(BudgetPeriod::Weekly, z, utc(2025, 3, 10, 0, 0), utc(2025, 3, 17, 0, 0));
        let w = window(BudgetPeriod::Weekly, z, utc(2025, 3, 16, 23, 59));
        assert_eq!(w.start, utc(2025, 3, 10, 0, 0), "Sunday belongs to the week that began on Monday");
        assert_boundary(BudgetPeriod::Monthly, z, utc(2025, 3, 1, 0, 0), utc(2025, 4, 1, 0, 0));
    }

    #[test]
    fn month_ends() {
        let z = chrono_tz::UTC;
        assert_boundary(BudgetPeriod::Monthly, z, utc(2024, 2, 1, 0, 0), utc(2024, 3, 1, 0, 0));
        assert_eq!(
            window(BudgetPeriod::Monthly, z, utc(2024, 2, 29, 23, 59)).duration(),
            Duration::days(29),
            "February of a leap year has 29 days"
        );
        assert_boundary(BudgetPeriod::Monthly, z, utc(2025, 2, 1, 0, 0), utc(2025, 3, 1, 0, 0));
        assert_eq!(
            window(BudgetPeriod::Monthly, z, utc(2025, 2, 28, 12, 0)).duration(),
            Duration::days(28),
            "February of a common year has 28 days"
        );
        assert_eq!(
            window(BudgetPeriod::Monthly, z, utc(2100, 2, 28, 12, 0)).duration(),
            Duration::days(28),
            "2100 is not a leap year"
        );
        assert_boundary(BudgetPeriod::Monthly, z, utc(2024, 12, 1, 0, 0), utc(2025, 1, 1, 0, 0));
        assert_boundary(BudgetPeriod::Monthly, z, utc(2025, 1, 1, 0, 0), utc(2025, 2, 1, 0, 0));
        assert_boundary(BudgetPeriod::Monthly, z, utc(2025, 4, 1, 0, 0), utc(2025, 5, 1, 0, 0));
        // Local months: Tokyo's month starts at 15:00 UTC the day before.
        let tokyo = tz("Asia/Tokyo");
        assert_boundary(BudgetPeriod::Monthly, tokyo, utc(2024, 12, 31, 15, 0), utc(2025, 1, 31, 15, 0));
        let w = window(BudgetPeriod::Monthly, tokyo, utc(2024, 12, 31, 16, 0));
        assert_eq!(w.start, utc(2024, 12, 31, 15, 0), "already January in Tokyo");
    }

    #[test]
    fn monday_weeks_across_year_boundaries() {
        let z = chrono_tz::UTC;
        // 2024-12-30 is a Monday: the week spans the new year.
        assert_boundary(BudgetPeriod::Weekly, z, utc(2024, 12, 30, 0, 0), utc(2025, 1, 6, 0, 0));
        let w = window(BudgetPeriod::Weekly, z, utc(2025, 1, 1, 0, 0));
        assert_eq!(w.start, utc(2024, 12, 30, 0, 0), "new year's day is in the week begun in December");
        // 2020-12-28 is a Monday; 2020 is a leap year and week 53 of ISO 2020.
        assert_boundary(BudgetPeriod::Weekly, z, utc(2020, 12, 28, 0, 0), utc(2021, 1, 4, 0, 0));
        // 2018-01-01 is itself a Monday.
        assert_boundary(BudgetPeriod::Weekly, z, utc(2018, 1, 1, 0, 0), utc(2018, 1, 8, 0, 0));
        // Local weeks: New York (UTC-5 in winter).
        let ny = tz("America/New_York");
        assert_boundary(BudgetPeriod::Weekly, ny, utc(2024, 12, 30, 5, 0), utc(2025, 1, 6, 5, 0));
    }

    #[test]
    fn berlin_daylight_saving_days() {
        let berlin = tz("Europe/Berlin");
        // 2024-03-31: 02:00 CET -> 03:00 CEST, a 23-hour day.
        assert_boundary(BudgetPeriod::Daily, berlin, utc(2024, 3, 30, 23, 0), utc(2024, 3, 31, 22, 0));
        let w = window(BudgetPeriod::Daily, berlin, utc(2024, 3, 31, 1, 30));
        assert_eq!(w.duration(), Duration::hours(23), "spring-forward day is 23 h");
        // 2024-10-27: 03:00 CEST -> 02:00 CET, a 25-hour day.
        assert_boundary(BudgetPeriod::Daily, berlin, utc(2024, 10, 26, 22, 0), utc(2024, 10, 27, 23, 0));
        let w = window(BudgetPeriod::Daily, berlin, utc(2024, 10, 27, 0, 30));
        assert_eq!(w.duration(), Duration::hours(25), "fall-back day is 25 h");
        let w = window(BudgetPeriod::Daily, berlin, utc(2024, 10, 27, 1, 30));
        assert_eq!(w.start, utc(2024, 10, 26, 22, 0), "the repeated 02:xx hour is in the same day");
        // The weeks and months containing them are an hour short or long too.
        let w = window(BudgetPeriod::Weekly, berlin, utc(2024, 3, 28, 12, 0));
        assert_eq!(w, BudgetWindow { start: utc(2024, 3, 24, 23, 0), end: utc(2024, 3, 31, 22, 0) }, "week ending on the DST day");
        let w = window(BudgetPeriod::Monthly, berlin, utc(2024, 10, 15, 12, 0));
        assert_eq!(w, BudgetWindow { start: utc(2024, 9, 30, 22, 0), end: utc(2024, 10, 31, 23, 0) }, "October is 31 days and 1 hour");
    }

    #[test]
    fn midnight_that_does_not_exist_starts_at_the_jump() {
        // America/Santiago, 2024-09-08: 00:00 -04 -> 01:00 -03; local midnight never happens.
        let santiago = tz("America/Santiago");
        let jump = utc(2024, 9, 8, 4, 0);
        assert_boundary(BudgetPeriod::Daily, santiago, jump, utc(2024, 9, 9, 3, 0));
        assert_eq!(window(BudgetPeriod::Daily, santiago, jump).duration(), Duration::hours(23), "Santiago's spring day is 23 h");
        assert_eq!(
            window(BudgetPeriod::Daily, santiago, jump - MICRO),
            BudgetWindow { start: utc(2024, 9, 7, 4, 0), end: jump },
            "Saturday runs until the jump"
        );
        // Asia/Beirut, 2024-03-31: 00:00 EET -> 01:00 EEST.
        let beirut = tz("Asia/Beirut");
        let jump = utc(2024, 3, 30, 22, 0);
        assert_boundary(BudgetPeriod::Daily, beirut, jump, utc(2024, 3, 31, 21, 0));
        // The week containing the short Sunday is an hour short: Monday 03-25 to Monday 04-01.
        let w = window(BudgetPeriod::Weekly, beirut, jump - MICRO);
        assert_eq!(
            w,
            BudgetWindow { start: utc(2024, 3, 24, 22, 0), end: utc(2024, 3, 31, 21, 0) },
            "Beirut week from Monday 00:00 +02 to Monday 00:00 +03"
        );
    }

    #[test]
    fn midnight_that_happens_twice_starts_at_the_first() {
        // America/Havana, 2024-11-03: 01:00 CDT -> 00:00 CST, so local 00:00-00:59 of the
        // 3rd happens twice (04:00Z and 05:00Z); the day starts at the first.
        let havana = tz("America/Havana");
        let first_midnight = utc(2024, 11, 3, 4, 0);
        assert_boundary(BudgetPeriod::Daily, havana, first_midnight, utc(2024, 11, 4, 5, 0));
        assert_eq!(window(BudgetPeriod::Daily, havana, first_midnight).duration(), Duration::hours(25), "the 3rd is 25 h long");
        let w = window(BudgetPeriod::Daily, havana, utc(2024, 11, 3, 5, 30));
        assert_eq!(w.start, first_midnight, "the second 00:30 is in the same day");
        assert_eq!(
            window(BudgetPeriod::Daily, havana, first_midnight - MICRO),
            BudgetWindow { start: utc(2024, 11, 2, 4, 0), end: first_midnight },
            "the 2nd ends at the first midnight"
        );
    }

    #[test]
    fn clock_turned_back_before_midnight() {
        // Asia/Beirut, 2024-10-27: at 00:00 EEST the clock turns back to 23:00 EET on the
        // 26th; midnight of the 27th then happens once, at 22:00Z, and the 26th is 25 h.
        let beirut = tz("Asia/Beirut");
        assert_boundary(BudgetPeriod::Daily, beirut, utc(2024, 10, 25, 21, 0), utc(2024, 10, 26, 22, 0));
        assert_eq!(
            window(BudgetPeriod::Daily, beirut, utc(2024, 10, 26, 21, 30)).duration(),
            Duration::hours(25),
            "the 26th is 25 h long"
        );
        assert_boundary(BudgetPeriod::Daily, beirut, utc(2024, 10, 26, 22, 0), utc(2024, 10, 27, 22, 0));
    }

    #[test]
    fn clock_turned_back_across_midnight() {
        // America/St_Johns, 2005-10-30: at 00:01 NDT (-02:30) the clock turned back to
        // 23:01 NST (-03:30) of the 29th. Midnight of the 30th first happened at 02:30Z;
        // 03:00Z reads 23:30 on the 29th again but is already in the 30th's window.
        let st_johns = tz("America/St_Johns");
        let first_midnight = Utc.with_ymd_and_hms(2005, 10, 30, 2, 30, 0).single().unwrap_or_default();
        let w = window(BudgetPeriod::Daily, st_johns, utc(2005, 10, 30, 3, 0));
        assert_eq!(w.start, first_midnight, "the repeated hour after midnight belongs to the new day");
        assert_eq!(window(BudgetPeriod::Daily, st_johns, first_midnight - MICRO).end, first_midnight, "the 29th ends at the first midnight");
        let w = window(BudgetPeriod::Weekly, st_johns, utc(2005, 10, 30, 3, 0));
        assert_eq!(w.end.with_timezone(&st_johns).weekday(), chrono::Weekday::Mon, "weeks still end on a Monday");
        assert!(w.contains(utc(2005, 10, 30, 3, 0)), "and contain the instant");
    }

    #[test]
    fn every_instant_is_in_exactly_its_window() {
        // Walk a year in 7-hour steps through zones with odd rules; each window contains
        // the instant, and consecutive windows tile the timeline.
        for name in ["UTC", "Europe/Berlin", "America/Santiago", "America/Havana", "Asia/Beirut", "Australia/Lord_Howe", "Pacific/Apia"] {
            let zone = tz(name);
            for period in BudgetPeriod::ALL {
                let mut at = utc(2011, 1, 1, 0, 0);
                while at < utc(2012, 3, 1, 0, 0) {
                    let w = window(period, zone, at);
                    assert!(w.contains(at), "{period} window {w:?} contains {at} in {name}");
                    assert_eq!(window(period, zone, w.end).start, w.end, "next {period} window starts at {} in {name}", w.end);
                    assert_eq!(window(period, zone, w.start - MICRO).end, w.start, "previous {period} window ends at {} in {name}", w.start);
                    at += Duration::hours(7);
                }
            }
        }
    }

    #[test]
    fn samoa_skipped_a_whole_day() {
        // Pacific/Apia skipped 2011-12-30 entirely: 29th 23:59:59 -10 -> 31st 00:00 +14.
        let apia = tz("Pacific/Apia");
        let w = window(BudgetPeriod::Daily, apia, utc(2011, 12, 30, 9, 59));
        assert_eq!(w.end, utc(2011, 12, 30, 10, 0), "the 29th ends at the jump");
        let w = window(BudgetPeriod::Daily, apia, utc(2011, 12, 30, 10, 0));
        assert_eq!(w, BudgetWindow { start: utc(2011, 12, 30, 10, 0), end: utc(2011, 12, 31, 10, 0) }, "the 31st follows the 29th");
    }

    #[test]
    fn input_bound_adds_overheads() {
        assert_eq!(input_token_upper_bound(0, 0), REQUEST_TOKEN_OVERHEAD, "empty request costs the framing");
        assert_eq!(input_token_upper_bound(1000, 3), 1000 + 3 * 16 + 64, "bytes plus per-message and request overhead");
        assert_eq!(input_token_upper_bound(usize::MAX, usize::MAX), u64::MAX, "saturates");
    }

    fn book(prices: &[(UsageKind, Decimal)], at: DateTime<Utc>) -> PriceBook {
        let mut book = PriceBook::default();
        for (kind, price) in prices {
            let (c, n) = book.plan_new_version(Uuid::now_v7(), "m", kind, *price, at).unwrap_or_else(|e| panic!("{e}"));
            book.apply(c, n).unwrap_or_else(|e| panic!("{e}"));
        }
        book
    }

    fn sonnet_like(at: DateTime<Utc>) -> PriceBook {
        book(
            &[
                (UsageKind::InputTokens, dec!(3)),
                (UsageKind::OutputTokens, dec!(15)),
                (UsageKind::CacheWrite5mTokens, dec!(3.75)),
                (UsageKind::CacheWrite1hTokens, dec!(6)),
                (UsageKind::CacheReadTokens, dec!(0.30)),
            ],
            at,
        )
    }

    #[test]
    fn bound_uses_the_dearest_input_kind() {
        let at = utc(2025, 1, 1, 0, 0);
        let b = sonnet_like(at);
        let r = reservation_bound(&b, "m", at, 1000, 500).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, dec!(0.0135), "1000 x 6 / 1e6 + 500 x 15 / 1e6");
        let plain = book(&[(UsageKind::InputTokens, dec!(0.80)), (UsageKind::OutputTokens, dec!(4))], at);
        let r = reservation_bound(&plain, "m", at, 1234, 567).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, dec!(0.0032552), "without cache prices the input price is used");
    }

    #[test]
    fn bound_uses_prices_in_force_at_the_instant() {
        let at = utc(2025, 1, 1, 0, 0);
        let mut b = book(&[(UsageKind::InputTokens, dec!(1)), (UsageKind::OutputTokens, dec!(2))], at);
        let later = utc(2025, 2, 1, 0, 0);
        let (c, n) = b.plan_new_version(Uuid::now_v7(), "m", &UsageKind::OutputTokens, dec!(10), later).unwrap_or_else(|e| panic!("{e}"));
        b.apply(c, n).unwrap_or_else(|e| panic!("{e}"));
        let r = |t| reservation_bound(&b, "m", t, 1_000_000, 1_000_000).ok();
        assert_eq!(r(later - MICRO), Some(dec!(3)), "old output price before the change");
        assert_eq!(r(later), Some(dec!(11)), "new output price from the change instant");
    }

    #[test]
    fn bound_needs_prices() {
        let at = utc(2025, 1, 1, 0, 0);
        let no_output = book(&[(UsageKind::InputTokens, dec!(1))], at);
        let r = reservation_bound(&no_output, "m", at, 10, 10);
        assert_eq!(r.map_err(|e| e.code()), Err("no_price"), "output tokens need an output price");
        assert_eq!(
            reservation_bound(&no_output, "m", at, 1_000_000, 0).ok(),
            Some(dec!(1)),
            "no output tokens need no output price (embeddings)"
        );
        let no_input = book(&[(UsageKind::OutputTokens, dec!(1)), (UsageKind::CacheReadTokens, dec!(1))], at);
        let r = reservation_bound(&no_input, "m", at, 10, 10);
        assert_eq!(r.map_err(|e| e.code()), Err("no_price"), "the input price is required");
        let r = reservation_bound(&sonnet_like(at), "m", at - MICRO, 10, 10);
        assert_eq!(r.map_err(|e| e.code()), Err("no_price"), "no price before the first version");
        let r = reservation_bound(&sonnet_like(at), "other", at, 10, 10);
        assert_eq!(r.map_err(|e| e.code()), Err("no_price"), "unknown model");
    }

    #[test]
    fn bound_saturates_instead_of_overflowing() {
        let at = utc(2025, 1, 1, 0, 0);
        let b = book(&[(UsageKind::InputTokens, Decimal::MAX), (UsageKind::OutputTokens, Decimal::MAX)], at);
        let r = reservation_bound(&b, "m", at, u64::MAX, u64::MAX);
        assert_eq!(r.ok(), Some(Decimal::MAX), "an unrepresentable bound saturates upwards");
    }

    proptest! {
        #[test]
        fn bound_covers_every_split(
            input_bound in 0u64..5_000_000,
            output_bound in 0u64..1_000_000,
            shares in proptest::array::uniform4(0u32..1000),
            used in 0u32..=1000,
            out_used in 0u32..=1000,
            prices in proptest::array::uniform5(0u32..100_000),
            present in proptest::array::uniform3(any::<bool>()),
        ) {
            let at = utc(2025, 1, 1, 0, 0);
            // Prices in 1/1000 USD per million, some cache kinds absent.
            let price = |i: usize| Decimal::new(i64::from(prices[i]), 3);
            let mut listed = vec![(UsageKind::InputTokens, price(0)), (UsageKind::OutputTokens, price(1))];
            for (i, kind) in INPUT_TOKEN_KINDS[1..].iter().enumerate() {
                if present[i] {
                    listed.push((kind.clone(), price(i + 2)));
                }
            }
            let b = book(&listed, at);
            // Use `used`/1000 of the input bound, split by `shares` among the priced kinds.
            let input_used = input_bound * u64::from(used) / 1000;
            let kinds: Vec<&UsageKind> = INPUT_TOKEN_KINDS.iter().enumerate()
                .filter(|(i, _)| *i == 0 || present[i - 1])
                .map(|(_, k)| k)
                .collect();
            let total_share: u64 = kinds.iter().enumerate().map(|(i, _)| u64::from(shares[i])).sum::<u64>().max(1);
            let mut usage = Usage::new();
            let mut assigned = 0u64;
            for (i, kind) in kinds.iter().enumerate() {
                let n = if i + 1 == kinds.len() {
                    input_used - assigned
                } else {
                    input_used * u64::from(shares[i]) / total_share
                };
                assigned += n;
                usage.add_tokens((*kind).clone(), n);
            }
            usage.add_tokens(UsageKind::OutputTokens, output_bound * u64::from(out_used) / 1000);
            let actual = price_usage(&b, "m", at, &usage).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let bound = reservation_bound(&b, "m", at, input_bound, output_bound).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(actual.total <= bound, "actual {} must not exceed the reservation {}", actual.total, bound);
            prop_assert!(!bound.is_sign_negative(), "bounds are never negative");
        }
    }
}
