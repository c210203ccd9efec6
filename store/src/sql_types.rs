//! Column types that differ per backend: exact decimals, UUIDs and UTC instants.
//!
//! One schema serves both backends, so each of these is a custom SQL type with a
//! `ToSql`/`FromSql` pair per backend:
//!
//! | type           | SQLite                                   | PostgreSQL    |
//! |----------------|------------------------------------------|---------------|
//! | `ExactDecimal` | TEXT, `Decimal`'s exact string           | NUMERIC       |
//! | `UuidKey`      | BLOB, the UUID's 16 bytes                | UUID          |
//! | `UtcInstant`   | INTEGER, microseconds since the epoch    | TIMESTAMPTZ   |
//!
//! Instants are truncated to the microsecond on the way in ([`DbTime::new`]), the
//! precision PostgreSQL keeps, so both backends give back exactly what they were given.
//! On SQLite, UUID bytes sort like their text and microseconds like the instants, so
//! comparing and ordering the stored values is comparing and ordering ids and instants.
//! (Until migration `2026-11-24-000001` SQLite stored both as text; the binary forms
//! make rows and index entries about half as long.)

use std::io::Write;
use std::str::FromStr;

use chrono::{DateTime, Timelike, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Nanoseconds per microsecond, for truncating instants.
const NANOS_PER_MICRO: u32 = 1_000;

/// Length in bytes of a binary UUID.
const UUID_BYTES: usize = 16;

/// Exact decimal: TEXT on SQLite, NUMERIC on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 1700, array_oid = 1231))]
pub struct ExactDecimal;

/// UUID: BLOB (16 bytes) on SQLite, UUID on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Binary"))]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
pub struct UuidKey;

/// UTC instant: INTEGER microseconds since the Unix epoch on SQLite, TIMESTAMPTZ on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(sqlite_type(name = "Long"))]
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
        out.set_value(decimal_text(&self.0));
        Ok(IsNull::No)
    }
}

/// `d` as text, the same as its `Display` (a sign when negative, every digit of its scale
/// after the point), without the formatter and without dividing the 96-bit mantissa by ten
/// per digit: it is split once into two `u64` halves. The persister writes ~8 of these per
/// usage event.
fn decimal_text(d: &Decimal) -> String {
    /// Write `v` right-aligned ending at `*end`, at least `width` digits (zero-padded).
    fn put(buf: &mut [u8; 40], end: &mut usize, mut v: u64, width: usize) {
        let stop = end.saturating_sub(width);
        loop {
            *end -= 1;
            buf[*end] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 && *end <= stop {
                break;
            }
        }
    }
    const TEN_19: u128 = 10_000_000_000_000_000_000;
    let m = d.mantissa().unsigned_abs();
    let (hi, lo) = ((m / TEN_19) as u64, (m % TEN_19) as u64);
    let mut buf = [0u8; 40];
    let mut start = buf.len();
    if hi > 0 {
        put(&mut buf, &mut start, lo, 19);
        put(&mut buf, &mut start, hi, 1);
    } else {
        put(&mut buf, &mut start, lo, 1);
    }
    // ASCII digits, so always UTF-8.
    let digits = std::str::from_utf8(&buf[start..]).unwrap_or_default();
    let scale = d.scale() as usize;
    // Exactly the length it will have: diesel turns it into a `Box<str>`, which would
    // otherwise reallocate to shrink it.
    let len = usize::from(d.is_sign_negative())
        + match scale {
            0 => digits.len(),
            s if digits.len() > s => digits.len() + 1,
            s => 2 + s,
        };
    let mut out = String::with_capacity(len);
    if d.is_sign_negative() {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
    out
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
        out.set_value(self.0.as_bytes().as_slice());
        Ok(IsNull::No)
    }
}

impl FromSql<UuidKey, Sqlite> for DbUuid {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let bytes = value.read_blob();
        if bytes.len() != UUID_BYTES {
            return Err(format!("a stored id is {UUID_BYTES} bytes, got {}", bytes.len()).into());
        }
        Uuid::from_slice(bytes).map(DbUuid).map_err(Into::into)
    }
}

/// The SQLite form of `at`: microseconds since the Unix epoch (`at` is already whole
/// microseconds, see [`DbTime::new`]; a leap second counts as the next second's start).
pub fn sqlite_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl ToSql<UtcInstant, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_micros(self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<UtcInstant, Sqlite> for DbTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let micros = value.read_long();
        DateTime::from_timestamp_micros(micros)
            .map(DbTime)
            .ok_or_else(|| format!("stored instant {micros} is out of range").into())
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
    fn sqlite_micros_order_like_the_instants_and_round_trip() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_789).single().unwrap_or_default();
        let stored = DbTime::new(at);
        assert_eq!(sqlite_micros(stored.get()), 1_700_000_000_123_456, "whole microseconds since the epoch");
        assert_eq!(DateTime::from_timestamp_micros(sqlite_micros(stored.get())), Some(stored.get()), "round trips");
        let before = Utc.timestamp_opt(-1, 999_999_000).single().unwrap_or_default();
        assert!(sqlite_micros(before) < sqlite_micros(stored.get()), "instants before the epoch sort first");
        assert_eq!(sqlite_micros(before), -1, "one microsecond before the epoch");
    }

    #[test]
    fn decimal_text_is_the_display_text() {
        let mut mantissas: Vec<i128> = vec![0, 1, 9, 10, 99, 100, 123, 520, 800_000];
        let ten_19: i128 = 10_000_000_000_000_000_000;
        mantissas.extend([u64::MAX as i128, ten_19 - 1, ten_19, ten_19 + 1, ten_19 * 10 + 7, (1 << 96) - 1]);
        // Pseudo-random 96-bit and small mantissas (an LCG), so both halves vary.
        let mut x: u128 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            mantissas.push((x % (1 << 96)) as i128);
            mantissas.push(((x >> 17) % 1_000_000_000) as i128);
        }
        for m in mantissas {
            for scale in 0..=28 {
                for sign in [1, -1] {
                    let d = Decimal::from_i128_with_scale(sign * m, scale);
                    assert_eq!(decimal_text(&d), d.to_string(), "mantissa {m}, scale {scale}, sign {sign}");
                }
            }
        }
        let mut negative_zero = Decimal::from_i128_with_scale(0, 2);
        negative_zero.set_sign_negative(true);
        assert_eq!(decimal_text(&negative_zero), negative_zero.to_string(), "negative zero");
        for d in [Decimal::new(-8, 7), Decimal::new(520, 0), Decimal::new(123_456, 2), negative_zero] {
            let text = decimal_text(&d);
            assert_eq!(text.capacity(), text.len(), "allocated to size: {text}");
        }
    }

    #[test]
    fn truncation_drops_only_sub_microseconds() {
        let at = Utc.timestamp_opt(10, 999_999_999).single().unwrap_or_default();
        assert_eq!(truncate_to_micros(at).nanosecond(), 999_999_000, "nanoseconds are truncated, not rounded");
    }
}
