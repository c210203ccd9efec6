//! Repository queries, written once (`queries.rs`) and compiled once per backend.
//!
//! diesel checks every query against one concrete backend, and the two backends
//! differ in dialect details (IMMEDIATE transactions, bind limits, native types).
//! Rather than erase the backend (diesel's `MultiConnection` has no ON CONFLICT),
//! `sqlite.rs` and `postgres.rs` each set `Conn` and `write_tx` and `include!` the
//! same query file, so there is one text of every query and two type-checked copies.
//! Pure conversions between rows and records live here, outside the copies.

use std::collections::hash_map::RandomState;

use chrono::Datelike;
use std::hash::BuildHasher;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tally_domain::{CostLine, InvoiceLine, PriceVersion, UsageKind};
use uuid::Uuid;

use crate::error::StoreError;
use crate::records::{MessageRecord, MessageStatus, Role, ThreadRecord};
use crate::rows::{LineRow, MessageRow, PriceRow, ThreadRow};

pub(crate) mod postgres;
pub(crate) mod sqlite;

/// One rollup row's key: UTC day x user x model x key x task x kind (`""` for none; kind
/// `""` is the event-level row). Ordered, so concurrent writers touch rows in one order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RollupKey {
    pub grain: &'static str,
    pub span: &'static str,
    pub month: crate::sql_types::DbTime,
    pub day: crate::sql_types::DbTime,
    pub user_id: String,
    pub model_id: i64,
    pub key_id: String,
    pub task: String,
    pub kind: String,
}

/// What a set of events adds to one rollup row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RollupDelta {
    pub requests: i64,
    pub failed: i64,
    pub quantity: Decimal,
    pub amount: Decimal,
}

/// Rollup deltas of a set of events, by row.
pub(crate) type RollupDeltas = std::collections::BTreeMap<RollupKey, RollupDelta>;

/// Day rows of the rollups.
pub(crate) const SPAN_DAY: &str = "d";
/// Month rows of the rollups (`day` = the month's first day).
pub(crate) const SPAN_MONTH: &str = "m";

/// The first day of the UTC month `day` is in.
pub(crate) fn month_of(day: crate::sql_types::DbTime) -> crate::sql_types::DbTime {
    let d = day.get().date_naive();
    crate::sql_types::DbTime::new(d.with_day(1).unwrap_or(d).and_time(chrono::NaiveTime::MIN).and_utc())
}

/// The UTC day (midnight) an instant falls in: the rollups' bucket.
pub(crate) fn utc_day(at: chrono::DateTime<chrono::Utc>) -> crate::sql_types::DbTime {
    crate::sql_types::DbTime::new(at.date_naive().and_time(chrono::NaiveTime::MIN).and_utc())
}

/// A rollup grain: which of user, model, key and task its rows keep (the others masked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grain {
    pub name: &'static str,
    pub user: bool,
    pub model: bool,
    pub key: bool,
    pub task: bool,
}

/// The grains every event is rolled up at, smallest first: a query reads the first that keeps
/// every dimension it groups or filters by (provider comes with the model).
pub(crate) const GRAINS: [Grain; 5] = [
    Grain { name: "model", user: false, model: true, key: false, task: false },
    Grain { name: "user", user: true, model: false, key: false, task: false },
    Grain { name: "key", user: false, model: false, key: true, task: false },
    Grain { name: "task", user: false, model: false, key: false, task: true },
    Grain { name: "full", user: true, model: true, key: true, task: true },
];

/// A masked text dimension.
pub(crate) const MASKED: &str = "*";
/// A masked model id (ids start at 1).
pub(crate) const MASKED_MODEL: i64 = -1;

/// Add one event to `deltas` at every grain: its event-level row (kind `""`: one request,
/// failed or not, its exact total) and one row per kind of its lines (events with that kind,
/// quantity, amount).
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_event_to_rollups(
    deltas: &mut RollupDeltas,
    day: crate::sql_types::DbTime,
    user_id: &str,
    model_id: i64,
    key_id: Option<Uuid>,
    task: Option<&str>,
    successful: bool,
    lines: &[(String, Decimal, Decimal)],
    total: Decimal,
) {
    let key_text = key_id.map(|k| k.to_string()).unwrap_or_default();
    let failed = i64::from(!successful);
    let month = month_of(day);
    for (g, (span, bucket)) in GRAINS.iter().flat_map(|g| [(g, (SPAN_DAY, day)), (g, (SPAN_MONTH, month))]) {
        let key = |kind: &str| RollupKey {
            grain: g.name,
            span,
            month,
            day: bucket,
            user_id: if g.user { user_id.to_string() } else { MASKED.to_string() },
            model_id: if g.model { model_id } else { MASKED_MODEL },
            key_id: if g.key { key_text.clone() } else { MASKED.to_string() },
            task: if g.task { task.unwrap_or_default().to_string() } else { MASKED.to_string() },
            kind: kind.to_string(),
        };
        let row = deltas.entry(key("")).or_default();
        row.requests += 1;
        row.failed += failed;
        row.amount += total;
        for (i, (kind, quantity, amount)) in lines.iter().enumerate() {
            let row = deltas.entry(key(kind)).or_default();
            // An event counts once per kind even when it has several lines of that kind.
            if !lines[..i].iter().any(|(k, _, _)| k == kind) {
                row.requests += 1;
                row.failed += failed;
            }
            row.quantity += *quantity;
            row.amount += *amount;
        }
    }
}

/// The event type of every usage that has at least one token line.
pub const TOKEN_USAGE_EVENT: &str = "token_usage";

/// Unit of measure of [`TOKEN_USAGE_EVENT`].
const TOKEN_USAGE_UNIT: &str = "tokens";

/// Description of [`TOKEN_USAGE_EVENT`].
const TOKEN_USAGE_DESCRIPTION: &str = "LLM token usage (input, output and cache tokens)";

/// Ids per `IN (...)` list.
const ID_CHUNK: usize = 1_000;

/// The 62 random low bits (`rand_b`) of a UUIDv7.
const UUID_V7_RAND_B: u128 = (1 << 62) - 1;

/// Where a batch's counter starts: a random value below 2^61, so counting up through
/// any batch (far fewer than 2^61 ids) stays inside the 62-bit field without wrapping.
const ID_START_MASK: u64 = (1 << 61) - 1;

/// Ids for the rows one batch creates (lines).
///
/// `Uuid::now_v7()` costs a getrandom system call, several per usage event, which
/// showed up as a tenth of write_batch's time. Here every id shares one fresh
/// UUIDv7's time and version bits, and its 62 low bits count up from a random start
/// drawn once per batch: still UUIDv7, ordered by batch time, and distinct within
/// the batch. Ascending within the batch, so each line's primary-key entry lands at
/// the end of its index: with the low bits scrambled instead (splitmix64), the
/// entries landed at random among the batch's own and split pages all over the
/// index's tail, ~9% more writer instructions (`write_throughput` under callgrind).
/// Two batches in the same millisecond differ in their random starts (and in the
/// template's random `rand_a` bits), so their ranges overlap with negligible odds.
struct IdSequence {
    template: u128,
    state: u64,
}

impl IdSequence {
    fn new() -> Self {
        let template = Uuid::now_v7().as_u128();
        // RandomState is seeded from the OS once per process and differs per instance.
        let state = RandomState::new().hash_one(template) & ID_START_MASK;
        IdSequence { template, state }
    }

    fn next_id(&mut self) -> Uuid {
        self.state += 1;
        Uuid::from_u128((self.template & !UUID_V7_RAND_B) | u128::from(self.state))
    }
}

/// The token count of a token line: a whole, non-negative number that fits in i64.
fn token_count(line: &CostLine) -> Result<i64, StoreError> {
    let q = line.quantity;
    // The usual case, without decimal arithmetic: a whole, non-negative count at scale 0.
    if q.scale() == 0 && !q.is_sign_negative() {
        if let Ok(n) = i64::try_from(q.mantissa()) {
            return Ok(n);
        }
    }
    if q < Decimal::ZERO || !q.fract().is_zero() {
        return Err(StoreError::Invalid(format!("{} quantity {q} is not a whole token count", line.kind)));
    }
    q.to_i64().ok_or_else(|| StoreError::Invalid(format!("{} quantity {q} is too large", line.kind)))
}

fn parse_kind(name: &str) -> Result<UsageKind, StoreError> {
    Ok(UsageKind::from_str(name)?)
}

fn cost_line_from_row(row: &LineRow) -> Result<CostLine, StoreError> {
    let kind = parse_kind(&row.kind)?;
    Ok(CostLine {
        unit: kind.unit(),
        kind,
        quantity: row.quantity.0,
        unit_price: row.unit_price.0,
        price_version_id: row.price_version_id.0,
        amount: row.amount.0,
    })
}

fn invoice_line_from_row(row: &LineRow) -> Result<InvoiceLine, StoreError> {
    let kind = parse_kind(&row.kind)?;
    Ok(InvoiceLine {
        id: row.id.0,
        message_id: row.message_id.map(|id| id.0),
        event_id: row.event_id.0,
        thread_id: row.thread_id.map(|id| id.0),
        unit: kind.unit(),
        kind,
        quantity: row.quantity.0,
        unit_price: row.unit_price.0,
        price_version_id: row.price_version_id.0,
        amount: row.amount.0,
        occurred_at: row.occurred_at.get(),
    })
}

/// Order of usage lines everywhere: by time, then kind (then event and line id, for a total order).
fn sort_invoice_lines(lines: &mut [InvoiceLine]) {
    lines.sort_by(|a, b| (a.occurred_at, &a.kind, a.event_id, a.id).cmp(&(b.occurred_at, &b.kind, b.event_id, b.id)));
}

fn price_version_from_row(row: PriceRow) -> Result<PriceVersion, StoreError> {
    Ok(PriceVersion {
        id: row.id.0,
        kind: parse_kind(&row.kind)?,
        model: row.model,
        price: row.price.0,
        effective_from: row.effective_from.get(),
        effective_to: row.effective_to.map(|t| t.get()),
        is_current: row.is_current,
    })
}

fn thread_from_row(row: ThreadRow) -> ThreadRecord {
    ThreadRecord {
        thread_id: row.thread_id.0,
        user_id: row.user_id,
        title: row.title,
        model: row.model,
        created_at: row.created_at.get(),
        updated_at: row.updated_at.get(),
        is_active: row.is_active,
    }
}

fn message_from_row(row: MessageRow) -> Result<MessageRecord, StoreError> {
    let role = Role::parse(&row.role)
        .ok_or_else(|| StoreError::Database(format!("message {} has unknown role {:?}", row.message_id.0, row.role)))?;
    let status = MessageStatus::parse(&row.status).ok_or_else(|| {
        StoreError::Database(format!("message {} has unknown status {:?}", row.message_id.0, row.status))
    })?;
    Ok(MessageRecord {
        message_id: row.message_id.0,
        thread_id: row.thread_id.0,
        user_id: row.user_id,
        role,
        content: row.content,
        model: row.model,
        created_at: row.created_at.get(),
        simulated: row.simulated,
        status,
    })
}

/// Clamp a caller's limit or offset to a non-negative value.
fn non_negative(n: i64) -> i64 {
    n.max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn id_sequence_makes_distinct_v7_ids() {
        let mut ids = IdSequence::new();
        let mut other = IdSequence::new();
        let made: HashSet<Uuid> =
            (0..100_000).map(|_| ids.next_id()).chain((0..100_000).map(|_| other.next_id())).collect();
        assert_eq!(made.len(), 200_000, "every id is distinct, within and across batches");
        let mut batch = IdSequence::new();
        let ascending: Vec<Uuid> = (0..10_000).map(|_| batch.next_id()).collect();
        assert!(ascending.windows(2).all(|w| w[0] < w[1]), "a batch's ids ascend, so its index entries append");
        let id = ids.next_id();
        assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "RFC 4122 variant");
    }

    #[test]
    fn token_counts_are_whole_non_negative_and_fit() {
        let line = |quantity: Decimal| CostLine {
            kind: UsageKind::InputTokens,
            unit: tally_domain::Unit::Tokens,
            quantity,
            unit_price: Decimal::ONE,
            price_version_id: Uuid::nil(),
            amount: Decimal::ZERO,
        };
        let count = |q: Decimal| token_count(&line(q)).ok();
        assert_eq!(count(Decimal::new(520, 0)), Some(520), "a plain count");
        assert_eq!(count(Decimal::new(52_000, 2)), Some(520), "520.00 is a whole count");
        assert_eq!(count(Decimal::ZERO), Some(0), "zero");
        let mut negative_zero = Decimal::ZERO;
        negative_zero.set_sign_negative(true);
        assert_eq!(count(negative_zero), Some(0), "negative zero is zero");
        assert_eq!(count(Decimal::new(i64::MAX, 0)), Some(i64::MAX), "the largest");
        assert_eq!(count(Decimal::new(-5, 0)), None, "negative");
        assert_eq!(count(Decimal::new(55, 1)), None, "a fraction");
        assert_eq!(count(Decimal::from_i128_with_scale(i128::from(i64::MAX) + 1, 0)), None, "too large");
    }
}
