//! Archiving support (issue 16): a month's usage rows as plain records, the archive state rows,
//! and the two atomic steps that move a month out of (and back into) the hot tables.
//!
//! What moves: `api_events`, their token and resource lines, and their payloads. What stays hot:
//! invoices (headers and totals), `usage_rollups`, `gateway_requests`, `imported_buckets`, and a
//! slim index of every archived event (`archived_events`: id, user, thread, message, cost, time)
//! that keeps re-sent events duplicates (a trigger skips their insert) and keeps per-user,
//! per-thread and per-message totals answerable. The Parquet files themselves are written by
//! the `tally-archive` crate; this module only reads and moves rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::rows::{NewEvent, NewResourceLine, NewTokenLine};
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};
use crate::store::{run, Store};

/// An `api_events` row in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEvent {
    /// The key lines point at (reassigned when the event is restored).
    pub event_seq: i64,
    /// The event id (UUIDv7).
    pub event_id: Uuid,
    /// Owner.
    pub user_id: String,
    /// Thread, if any.
    pub thread_id: Option<Uuid>,
    /// Message, if any.
    pub message_id: Option<Uuid>,
    /// `dim_models` key.
    pub model_id: i64,
    /// `dim_event_types` key.
    pub event_type_id: i64,
    /// Quantity of the event's kind.
    pub quantity: Decimal,
    /// Exact cost of the event.
    pub cost_total: Decimal,
    /// Where it came from.
    pub source: String,
    /// Caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Gateway key, if any.
    pub key_id: Option<Uuid>,
    /// Task label.
    pub task: Option<String>,
    /// Whether the call succeeded.
    pub successful: bool,
}

/// A `user_invoice_line_item` row in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveTokenLine {
    /// Line id.
    pub line_item_id: Uuid,
    /// Its event's `event_seq` (as of the archive).
    pub event_seq: i64,
    /// Token kind.
    pub token_type: String,
    /// Token count.
    pub token_count: i64,
    /// Price version.
    pub pricing_id: Uuid,
    /// Quantity.
    pub quantity: Decimal,
    /// Unit price.
    pub unit_price: Decimal,
    /// Exact amount.
    pub amount: Decimal,
    /// When stored.
    pub created_at: DateTime<Utc>,
    /// The invoice that claimed it, if any (invoices stay hot).
    pub invoice_id: Option<Uuid>,
}

/// A `resource_invoice_line_item` row in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveResourceLine {
    /// Line id.
    pub resource_line_item_id: Uuid,
    /// Its event's `event_seq` (as of the archive).
    pub event_seq: i64,
    /// Price version.
    pub resource_pricing_id: Uuid,
    /// `dim_event_types` key.
    pub event_type_id: i64,
    /// Quantity.
    pub quantity: Decimal,
    /// Unit price.
    pub unit_price: Decimal,
    /// Exact amount.
    pub amount: Decimal,
    /// When stored.
    pub created_at: DateTime<Utc>,
    /// The invoice that claimed it, if any.
    pub invoice_id: Option<Uuid>,
}

/// An `event_payloads` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePayload {
    /// The event.
    pub event_id: Uuid,
    /// Request body or prompt.
    pub request: Option<String>,
    /// Response body or text.
    pub response: Option<String>,
    /// When stored.
    pub created_at: DateTime<Utc>,
}

/// Every archivable row of one month, each table ordered by its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthRows {
    /// Events, by `event_seq`.
    pub events: Vec<ArchiveEvent>,
    /// Token lines, by line id.
    pub token_lines: Vec<ArchiveTokenLine>,
    /// Resource lines, by line id.
    pub resource_lines: Vec<ArchiveResourceLine>,
    /// Payloads, by event id.
    pub payloads: Vec<ArchivePayload>,
}

impl MonthRows {
    /// The rows in a canonical order (events by id, lines by id): two copies of the same rows
    /// compare equal whatever order they were read in and whatever `event_seq` they carry.
    pub fn canonical(&self) -> MonthRows {
        let seq_to_id: BTreeMap<i64, Uuid> = self.events.iter().map(|e| (e.event_seq, e.event_id)).collect();
        let id_of = |seq: i64| seq_to_id.get(&seq).copied().unwrap_or(Uuid::nil());
        let mut events = self.events.clone();
        events.sort_by_key(|e| e.event_id);
        // event_seq is storage-internal (reassigned on restore): compare by event id instead.
        let rank: BTreeMap<Uuid, i64> = events.iter().zip(0_i64..).map(|(e, i)| (e.event_id, i)).collect();
        let reseq = |seq: i64| rank.get(&id_of(seq)).copied().unwrap_or(-1);
        for e in &mut events {
            e.event_seq = rank.get(&e.event_id).copied().unwrap_or(-1);
        }
        let mut token_lines = self.token_lines.clone();
        for l in &mut token_lines {
            l.event_seq = reseq(l.event_seq);
        }
        token_lines.sort_by_key(|l| l.line_item_id);
        let mut resource_lines = self.resource_lines.clone();
        for l in &mut resource_lines {
            l.event_seq = reseq(l.event_seq);
        }
        resource_lines.sort_by_key(|l| l.resource_line_item_id);
        let mut payloads = self.payloads.clone();
        payloads.sort_by_key(|p| p.event_id);
        MonthRows { events, token_lines, resource_lines, payloads }
    }

    /// Rows per table, by table name.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        BTreeMap::from([
            ("api_events".to_string(), n(self.events.len())),
            ("user_invoice_line_item".to_string(), n(self.token_lines.len())),
            ("resource_invoice_line_item".to_string(), n(self.resource_lines.len())),
            ("event_payloads".to_string(), n(self.payloads.len())),
        ])
    }
}

/// Where a month is in the archive state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveStatus {
    /// Files are being written; the rows are all still hot.
    Writing,
    /// Files written, synced and read back; the rows are all still hot.
    Written,
    /// Rows moved out of the hot tables (in one transaction with this mark).
    Archived,
    /// Rows moved back into the hot tables (in one transaction with this mark); files kept.
    Restored,
}

impl ArchiveStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveStatus::Writing => "writing",
            ArchiveStatus::Written => "written",
            ArchiveStatus::Archived => "archived",
            ArchiveStatus::Restored => "restored",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "writing" => Some(ArchiveStatus::Writing),
            "written" => Some(ArchiveStatus::Written),
            "archived" => Some(ArchiveStatus::Archived),
            "restored" => Some(ArchiveStatus::Restored),
            _ => None,
        }
    }
}

/// One archived (or being archived) month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMonth {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// State.
    pub status: ArchiveStatus,
    /// Directory of the month's files.
    pub location: String,
    /// The manifest (JSON), once the files are written.
    pub manifest: Option<String>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// When the rows left the hot tables.
    pub archived_at: Option<DateTime<Utc>>,
    /// Last successful `archive verify`.
    pub verified_at: Option<DateTime<Utc>>,
}

/// A UTC month as a half-open range of instants, with its `YYYY-MM` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRange {
    /// `YYYY-MM`.
    pub key: String,
    /// First instant (inclusive).
    pub from: DateTime<Utc>,
    /// First instant of the next month (exclusive).
    pub to: DateTime<Utc>,
}

// ---------------------------------------------------------------- rows (crate-private)

/// An `api_events` row as stored: its `event_seq` and the columns a write inserts.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_events)]
pub(crate) struct EventFullRow {
    pub event_seq: i64,
    #[diesel(embed)]
    pub event: NewEvent,
}

/// A `user_invoice_line_item` row as stored: the columns a write inserts and its invoice.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_invoice_line_item, treat_none_as_default_value = false)]
pub(crate) struct TokenLineFullRow {
    #[diesel(embed)]
    pub line: NewTokenLine,
    pub invoice_id: Option<DbUuid>,
}

/// A `resource_invoice_line_item` row as stored: the columns a write inserts and its invoice.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = resource_invoice_line_item, treat_none_as_default_value = false)]
pub(crate) struct ResourceLineFullRow {
    #[diesel(embed)]
    pub line: NewResourceLine,
    pub invoice_id: Option<DbUuid>,
}

/// An `event_payloads` row as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = event_payloads, treat_none_as_default_value = false)]
pub(crate) struct PayloadFullRow {
    pub event_id: DbUuid,
    pub request: Option<String>,
    pub response: Option<String>,
    pub created_at: DbTime,
}

/// An `archive_months` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = archive_months, treat_none_as_default_value = false)]
pub(crate) struct ArchiveMonthRow {
    pub month: String,
    pub status: String,
    pub location: String,
    pub manifest: Option<String>,
    pub updated_at: DbTime,
    pub archived_at: Option<DbTime>,
    pub verified_at: Option<DbTime>,
}

impl From<EventFullRow> for ArchiveEvent {
    fn from(r: EventFullRow) -> Self {
        let e = r.event;
        ArchiveEvent {
            event_seq: r.event_seq,
            event_id: e.event_id.0,
            user_id: e.user_id,
            thread_id: e.thread_id.map(|x| x.0),
            message_id: e.message_id.map(|x| x.0),
            model_id: e.model_id,
            event_type_id: e.event_type_id,
            quantity: e.quantity.0,
            cost_total: e.cost_total.0,
            source: e.source,
            idempotency_key: e.idempotency_key,
            occurred_at: e.occurred_at.get(),
            created_at: e.created_at.get(),
            key_id: e.key_id.map(|x| x.0),
            task: e.task,
            successful: e.successful,
        }
    }
}

impl From<&ArchiveEvent> for NewEvent {
    /// The row a restore inserts (the database assigns a new `event_seq`).
    fn from(e: &ArchiveEvent) -> Self {
        NewEvent {
            event_id: DbUuid(e.event_id),
            user_id: e.user_id.clone(),
            thread_id: e.thread_id.map(DbUuid),
            message_id: e.message_id.map(DbUuid),
            model_id: e.model_id,
            event_type_id: e.event_type_id,
            quantity: DbDecimal(e.quantity),
            cost_total: DbDecimal(e.cost_total),
            source: e.source.clone(),
            idempotency_key: e.idempotency_key.clone(),
            occurred_at: DbTime::new(e.occurred_at),
            created_at: DbTime::new(e.created_at),
            key_id: e.key_id.map(DbUuid),
            task: e.task.clone(),
            successful: e.successful,
        }
    }
}

impl From<TokenLineFullRow> for ArchiveTokenLine {
    fn from(r: TokenLineFullRow) -> Self {
        let l = r.line;
        ArchiveTokenLine {
            line_item_id: l.line_item_id.0,
            event_seq: l.event_seq,
            token_type: l.token_type,
            token_count: l.token_count,
            pricing_id: l.pricing_id.0,
            quantity: l.quantity.0,
            unit_price: l.unit_price.0,
            amount: l.amount.0,
            created_at: l.created_at.get(),
            invoice_id: r.invoice_id.map(|x| x.0),
        }
    }
}

impl ArchiveTokenLine {
    pub(crate) fn to_row(&self, event_seq: i64) -> TokenLineFullRow {
        TokenLineFullRow {
            line: NewTokenLine {
                line_item_id: DbUuid(self.line_item_id),
                event_seq,
                token_type: self.token_type.clone(),
                token_count: self.token_count,
                pricing_id: DbUuid(self.pricing_id),
                quantity: DbDecimal(self.quantity),
                unit_price: DbDecimal(self.unit_price),
                amount: DbDecimal(self.amount),
                created_at: DbTime::new(self.created_at),
            },
            invoice_id: self.invoice_id.map(DbUuid),
        }
    }
}

impl From<ResourceLineFullRow> for ArchiveResourceLine {
    fn from(r: ResourceLineFullRow) -> Self {
        let l = r.line;
        ArchiveResourceLine {
            resource_line_item_id: l.resource_line_item_id.0,
            event_seq: l.event_seq,
            resource_pricing_id: l.resource_pricing_id.0,
            event_type_id: l.event_type_id,
            quantity: l.quantity.0,
            unit_price: l.unit_price.0,
            amount: l.amount.0,
            created_at: l.created_at.get(),
            invoice_id: r.invoice_id.map(|x| x.0),
        }
    }
}

impl ArchiveResourceLine {
    pub(crate) fn to_row(&self, event_seq: i64) -> ResourceLineFullRow {
        ResourceLineFullRow {
            line: NewResourceLine {
                resource_line_item_id: DbUuid(self.resource_line_item_id),
                event_seq,
                resource_pricing_id: DbUuid(self.resource_pricing_id),
                event_type_id: self.event_type_id,
                quantity: DbDecimal(self.quantity),
                unit_price: DbDecimal(self.unit_price),
                amount: DbDecimal(self.amount),
                created_at: DbTime::new(self.created_at),
            },
            invoice_id: self.invoice_id.map(DbUuid),
        }
    }
}

impl From<PayloadFullRow> for ArchivePayload {
    fn from(r: PayloadFullRow) -> Self {
        ArchivePayload { event_id: r.event_id.0, request: r.request, response: r.response, created_at: r.created_at.get() }
    }
}

impl From<&ArchivePayload> for PayloadFullRow {
    fn from(p: &ArchivePayload) -> Self {
        PayloadFullRow {
            event_id: DbUuid(p.event_id),
            request: p.request.clone(),
            response: p.response.clone(),
            created_at: DbTime::new(p.created_at),
        }
    }
}

impl TryFrom<ArchiveMonthRow> for ArchiveMonth {
    type Error = StoreError;

    fn try_from(r: ArchiveMonthRow) -> Result<Self, StoreError> {
        let status = ArchiveStatus::parse(&r.status)
            .ok_or_else(|| StoreError::Database(format!("archive month {} has unknown status {:?}", r.month, r.status)))?;
        Ok(ArchiveMonth {
            month: r.month,
            status,
            location: r.location,
            manifest: r.manifest,
            updated_at: r.updated_at.get(),
            archived_at: r.archived_at.map(DbTime::get),
            verified_at: r.verified_at.map(DbTime::get),
        })
    }
}

/// A check the archiver runs on the month's hot rows inside the moving transaction: an error
/// rolls the transaction back (e.g. the rows no longer match the file that was written).
pub type RowsCheck<'a> = &'a dyn Fn(&MonthRows) -> Result<(), StoreError>;

/// Called just before the moving transaction commits (the archiver's crash-test failpoint).
pub type BeforeCommit<'a> = &'a dyn Fn();

impl Store {
    /// Every archivable row of events that occurred in `[from, to)`.
    pub fn archive_month_rows(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<MonthRows, StoreError> {
        run!(self, read, archive::month_rows(DbTime::new(from), DbTime::new(to)))
    }

    /// When the oldest hot event before `before` occurred (none: nothing to archive).
    pub fn oldest_hot_event_before(&self, before: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        run!(self, read, archive::oldest_hot_event_before(DbTime::new(before)))
    }

    /// Hot events that occurred in `[from, to)`.
    pub fn hot_event_count(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, StoreError> {
        run!(self, read, archive::hot_event_count(DbTime::new(from), DbTime::new(to)))
    }

    /// Usage lines of events in `[from, to)` not on an invoice yet (a month with any is not archived).
    pub fn uninvoiced_line_count(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, StoreError> {
        run!(self, read, archive::uninvoiced_line_count(DbTime::new(from), DbTime::new(to)))
    }

    /// Archived events of a month in the hot index.
    pub fn archived_event_count(&self, month: &str) -> Result<i64, StoreError> {
        run!(self, read, archive::archived_event_count(month))
    }

    /// Every month in the archive, oldest first.
    pub fn archive_months(&self) -> Result<Vec<ArchiveMonth>, StoreError> {
        run!(self, read, archive::months())
    }

    /// One month's archive state.
    pub fn archive_month(&self, month: &str) -> Result<Option<ArchiveMonth>, StoreError> {
        run!(self, read, archive::month(month))
    }

    /// Record that a month's files are being written (`Writing`) or were written (`Written`,
    /// with the manifest). Refused for a month whose rows are archived.
    pub fn set_archive_progress(
        &self,
        month: &str,
        status: ArchiveStatus,
        location: &str,
        manifest: Option<&str>,
    ) -> Result<(), StoreError> {
        run!(self, write, archive::set_progress(month, status, location, manifest, DbTime::now()))
    }

    /// Mark a month's files verified at `at`.
    pub fn mark_archive_verified(&self, month: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        run!(self, write, archive::mark_verified(month, DbTime::new(at)))
    }

    /// Move a `Written` month's rows out of the hot tables, in one transaction: read them,
    /// `check` them (against the file), index the events in `archived_events`, delete
    /// payloads, lines and events, and mark the month `Archived`. Returns what was moved.
    pub fn commit_archive(
        &self,
        range: &MonthRange,
        check: RowsCheck<'_>,
        before_commit: BeforeCommit<'_>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        run!(self, write, archive::commit_archive(range, check, before_commit, DbTime::now()))
    }

    /// Put an `Archived` month's rows (read back from its files) into the hot tables again, in
    /// one transaction, and mark it `Restored`. Events get new `event_seq` keys; rows already
    /// hot are skipped. Returns the rows inserted per table.
    pub fn commit_restore(
        &self,
        month: &str,
        rows: &MonthRows,
        before_commit: BeforeCommit<'_>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        run!(self, write, archive::commit_restore(month, rows, before_commit, DbTime::now()))
    }
}

/// One archived event as the hot index keeps it: enough for exact per-user, per-thread and
/// per-message cost totals of archived months (line detail needs `tally archive restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedCost {
    /// The event.
    pub event_id: Uuid,
    /// Owner.
    pub user_id: String,
    /// Thread, if any.
    pub thread_id: Option<Uuid>,
    /// Message, if any.
    pub message_id: Option<Uuid>,
    /// Exact cost.
    pub cost_total: Decimal,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// `YYYY-MM` of its archive.
    pub month: String,
    /// Its model.
    pub model: String,
    /// Its cost lines, all invoiced.
    pub lines: Vec<tally_domain::InvoiceLine>,
    /// The invoice its lines are on.
    pub invoice_id: Option<Uuid>,
}

/// An `archived_events` row (the hot index of an archived event).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = archived_events, treat_none_as_default_value = false)]
pub(crate) struct ArchivedEventRow {
    pub event_id: DbUuid,
    pub month: String,
    pub user_id: String,
    pub thread_id: Option<DbUuid>,
    pub message_id: Option<DbUuid>,
    pub cost_total: DbDecimal,
    pub occurred_at: DbTime,
    pub model: String,
    /// The event's invoice lines as JSON (see [`archived_lines`]).
    pub lines: String,
    pub invoice_id: Option<DbUuid>,
}

/// The invoice lines an `archived_events` row keeps (JSON written by the archive step).
pub(crate) fn archived_lines(event_id: Uuid, text: &str) -> Result<Vec<tally_domain::InvoiceLine>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(format!("archived lines of event {event_id}: {e}")))
}

impl TryFrom<ArchivedEventRow> for ArchivedCost {
    type Error = StoreError;

    fn try_from(r: ArchivedEventRow) -> Result<Self, StoreError> {
        let lines = archived_lines(r.event_id.0, &r.lines)?;
        Ok(ArchivedCost {
            model: r.model,
            lines,
            invoice_id: r.invoice_id.map(|i| i.0),
            event_id: r.event_id.0,
            user_id: r.user_id,
            thread_id: r.thread_id.map(|x| x.0),
            message_id: r.message_id.map(|x| x.0),
            cost_total: r.cost_total.0,
            occurred_at: r.occurred_at.get(),
            month: r.month,
        })
    }
}

impl Store {
    /// Archived events of a user and/or thread (both `None`: all), oldest first: what the hot
    /// totals of a user or thread must add for months whose events were archived.
    pub fn archived_costs(&self, user_id: Option<&str>, thread_id: Option<Uuid>) -> Result<Vec<ArchivedCost>, StoreError> {
        run!(self, read, archive::archived_costs(user_id, thread_id))
    }
}
