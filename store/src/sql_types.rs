//! Column types that differ per backend: exact decimals, UUIDs and UTC instants.
//!
//! One schema serves both backends, so each of these is a custom SQL type with a
//! `ToSql`/`FromSql` pair per backend:
//!
//! | type           | SQLite                                   | PostgreSQL    |
//! |----------------|------------------------------------------|---------------|
//! | `ExactDecimal` | TEXT, `Decimal`'s exact string           | NUMERIC       |
//! | `UuidKey`      | TEXT, hyphenated lowercase               | UUID          |
//! | `UtcInstant`   | TEXT, `2025-01-01T00:00:00.000000Z`      | TIMESTAMPTZ   |
//!
//! Instants are truncated to the microsecond on the way in ([`DbTime::new`]), the
//! precision PostgreSQL keeps, so both backends give back exactly what they were given.
//! The SQLite text form is fixed width, so comparing and ordering the text is
//! comparing and ordering the instants.

use std::io::Write;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Text layout of an instant on SQLite: fixed width, microseconds, UTC.
pub const SQLITE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Years that fit the fixed-width four-digit text form.
const FOUR_DIGIT_YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// Nanoseconds per microsecond, for truncating instants.
const NANOS_PER_MICRO: u32 = 1_000;

/// Nanoseconds per second (chrono marks a leap second with more).
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Length in bytes of a binary UUID.
const UUID_BYTES: usize = 16;

/// Exact decimal: TEXT on SQLite, NUMERIC on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 1700, array_oid = 1231))]
pub struct ExactDecimal;

/// UUID: TEXT on SQLite, UUID on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
pub struct UuidKey;

/// UTC instant: fixed-width TEXT on SQLite, TIMESTAMPTZ on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
pub struct UtcInstant;

/// A decimal as stored (money, prices, quantities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = ExactDecimal)]
pub struct DbDecimal(pub Decimal);

/// A UUID as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = UuidKey)]
pub struct DbUuid(pub Uuid);

/// An instant as stored, always whole microseconds (build it with [`DbTime::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = UtcInstant)]
pub struct DbTime(DateTime<Utc>);

/// `at` truncated to the microsecond: what either backend stores and gives back.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.nanosecond();
    // Truncating nanoseconds within the same second always yields a valid instant.
    at.with_nanosecond(nanos - nanos % NANOS_PER_MICRO).unwrap_or(at)
}

/// The SQLite text form of `at` ([`SQLITE_TIME_FORMAT`]), without strftime parsing:
/// this runs for every timestamp of every row the persister writes.
pub fn sqlite_time_text(at: DateTime<Utc>) -> String {
    let (date, time) = (at.date_naive(), at.time());
    let nanos = time.nanosecond();
    if !FOUR_DIGIT_YEARS.contains(&date.year()) || nanos >= NANOS_PER_SECOND {
        // Out-of-range years and leap seconds: rare, let chrono lay them out.
        return at.format(SQLITE_TIME_FORMAT).to_string();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second(),
        nanos / NANOS_PER_MICRO
    )
}

impl DbTime {
    /// The stored form of `at` (truncated to the microsecond).
    pub fn new(at: DateTime<Utc>) -> Self {
        DbTime(truncate_to_micros(at))
    }

    /// Now, truncated to the microsecond.
    pub fn now() -> Self {
        DbTime::new(Utc::now())
    }

    /// The instant.
    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for DbTime {
    fn from(at: DateTime<Utc>) -> Self {
        DbTime::new(at)
    }
}

impl From<DbTime> for DateTime<Utc> {
    fn from(t: DbTime) -> Self {
        t.0
    }
}

impl From<Uuid> for DbUuid {
    fn from(id: Uuid) -> Self {
        DbUuid(id)
    }
}

impl From<DbUuid> for Uuid {
    fn from(id: DbUuid) -> Self {
        id.0
    }
}

impl From<Decimal> for DbDecimal {
    fn from(d: Decimal) -> Self {
        DbDecimal(d)
    }
}

impl From<DbDecimal> for Decimal {
    fn from(d: DbDecimal) -> Self {
        d.0
    }
}

// ---- SQLite: everything is TEXT ----

impl ToSql<ExactDecimal, Sqlite> for DbDecimal {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<ExactDecimal, Sqlite> for DbDecimal {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        Decimal::from_str(text)
            .map(DbDecimal)
            .map_err(|e| format!("stored decimal {text:?} is not a decimal: {e}").into())
    }
}

impl ToSql<UuidKey, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<UuidKey, Sqlite> for DbUuid {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        Uuid::parse_str(text).map(DbUuid).map_err(|e| format!("stored id {text:?} is not a UUID: {e}").into())
    }
}

impl ToSql<UtcInstant, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_time_text(self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<UtcInstant, Sqlite> for DbTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        DateTime::parse_from_rfc3339(text)
            .map(|t| DbTime::new(t.with_timezone(&Utc)))
            .map_err(|e| format!("stored instant {text:?} is not RFC 3339: {e}").into())
    }
}

// ---- PostgreSQL: native NUMERIC, UUID and TIMESTAMPTZ ----

impl ToSql<ExactDecimal, Pg> for DbDecimal {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<diesel::sql_types::Numeric, Pg>::to_sql(&self.0, out)
    }
}

impl FromSql<ExactDecimal, Pg> for DbDecimal {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <Decimal as FromSql<diesel::sql_types::Numeric, Pg>>::from_sql(value).map(DbDecimal)
    }
}

impl ToSql<UuidKey, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<UuidKey, Pg> for DbUuid {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let bytes = value.as_bytes();
        if bytes.len() != UUID_BYTES {
            return Err(format!("a UUID is {UUID_BYTES} bytes, got {}", bytes.len()).into());
        }
        Uuid::from_slice(bytes).map(DbUuid).map_err(Into::into)
    }
}

impl ToSql<UtcInstant, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<diesel::sql_types::Timestamptz, Pg>::to_sql(&self.0, out)
    }
}

impl FromSql<UtcInstant, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, Pg>>::from_sql(value).map(DbTime::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_time_text_is_fixed_width_and_round_trips() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_789).single().unwrap_or_default();
        let stored = DbTime::new(at);
        let text = sqlite_time_text(stored.get());
        assert_eq!(text, "2023-11-14T22:13:20.123456Z", "six fractional digits, UTC");
        assert_eq!(text, stored.get().format(SQLITE_TIME_FORMAT).to_string(), "same text as the strftime layout");
        let back = DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).ok();
        assert_eq!(back, Some(stored.get()), "text parses back to the same instant");
        let whole = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default();
        assert_eq!(
            sqlite_time_text(DbTime::new(whole).get()).len(),
            text.len(),
            "whole seconds keep the same width, so text order is time order"
        );
    }

    #[test]
    fn truncation_drops_only_sub_microseconds() {
        let at = Utc.timestamp_opt(10, 999_999_999).single().unwrap_or_default();
        assert_eq!(truncate_to_micros(at).nanosecond(), 999_999_000, "nanoseconds are truncated, not rounded");
    }
}
