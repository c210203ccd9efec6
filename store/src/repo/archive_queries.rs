// archive queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in an `archive` submodule, so every query is written once and type-checked
// against both backends.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;

use super::{write_tx, Conn};
use crate::archive::{
    ArchiveMonth, ArchiveMonthRow, ArchiveStatus, ArchivedEventRow, BeforeCommit, EventFullRow, MonthRange,
    MonthRows, PayloadFullRow, ResourceLineFullRow, RowsCheck, TokenLineFullRow,
};
use crate::error::StoreError;
use crate::schema::*;
use crate::sql_types::{DbTime, DbUuid};

/// Rows per INSERT while moving rows (16 binds per event row: far under either backend's limit).
const MOVE_CHUNK: usize = 500;

/// Every archivable row of the events in `[from, to)`.
pub(crate) fn month_rows(conn: &mut Conn, from: DbTime, to: DbTime) -> Result<MonthRows, StoreError> {
    conn.transaction(|conn| month_rows_in(conn, from, to))
}

fn month_rows_in(conn: &mut Conn, from: DbTime, to: DbTime) -> Result<MonthRows, StoreError> {
    let in_month = || {
        api_events::table
            .filter(api_events::occurred_at.ge(from))
            .filter(api_events::occurred_at.lt(to))
    };
    let events: Vec<EventFullRow> =
        in_month().order(api_events::event_seq.asc()).select(EventFullRow::as_select()).load(conn)?;
    let token_lines: Vec<TokenLineFullRow> = user_invoice_line_item::table
        .filter(user_invoice_line_item::event_seq.eq_any(in_month().select(api_events::event_seq)))
        .order(user_invoice_line_item::line_item_id.asc())
        .select(TokenLineFullRow::as_select())
        .load(conn)?;
    let resource_lines: Vec<ResourceLineFullRow> = resource_invoice_line_item::table
        .filter(resource_invoice_line_item::event_seq.eq_any(in_month().select(api_events::event_seq)))
        .order(resource_invoice_line_item::resource_line_item_id.asc())
        .select(ResourceLineFullRow::as_select())
        .load(conn)?;
    let payloads: Vec<PayloadFullRow> = event_payloads::table
        .filter(event_payloads::event_id.eq_any(in_month().select(api_events::event_id)))
        .order(event_payloads::event_id.asc())
        .select(PayloadFullRow::as_select())
        .load(conn)?;
    Ok(MonthRows {
        events: events.into_iter().map(Into::into).collect(),
        token_lines: token_lines.into_iter().map(Into::into).collect(),
        resource_lines: resource_lines.into_iter().map(Into::into).collect(),
        payloads: payloads.into_iter().map(Into::into).collect(),
    })
}

/// When the oldest hot event before `before` occurred.
pub(crate) fn oldest_hot_event_before(
    conn: &mut Conn,
    before: DbTime,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    let first: Option<DbTime> = api_events::table
        .filter(api_events::occurred_at.lt(before))
        .order(api_events::occurred_at.asc())
        .select(api_events::occurred_at)
        .first(conn)
        .optional()?;
    Ok(first.map(DbTime::get))
}

/// Hot events in `[from, to)`.
pub(crate) fn hot_event_count(conn: &mut Conn, from: DbTime, to: DbTime) -> Result<i64, StoreError> {
    Ok(api_events::table
        .filter(api_events::occurred_at.ge(from))
        .filter(api_events::occurred_at.lt(to))
        .count()
        .get_result(conn)?)
}

/// Usage lines of events in `[from, to)` not on an invoice yet.
pub(crate) fn uninvoiced_line_count(conn: &mut Conn, from: DbTime, to: DbTime) -> Result<i64, StoreError> {
    let in_month = || {
        api_events::table
            .filter(api_events::occurred_at.ge(from))
            .filter(api_events::occurred_at.lt(to))
            .select(api_events::event_seq)
    };
    let tokens: i64 = user_invoice_line_item::table
        .filter(user_invoice_line_item::invoice_id.is_null())
        .filter(user_invoice_line_item::event_seq.eq_any(in_month()))
        .count()
        .get_result(conn)?;
    let resources: i64 = resource_invoice_line_item::table
        .filter(resource_invoice_line_item::invoice_id.is_null())
        .filter(resource_invoice_line_item::event_seq.eq_any(in_month()))
        .count()
        .get_result(conn)?;
    Ok(tokens + resources)
}

/// Archived events of a month in the hot index.
pub(crate) fn archived_event_count(conn: &mut Conn, month: &str) -> Result<i64, StoreError> {
    Ok(archived_events::table.filter(archived_events::month.eq(month)).count().get_result(conn)?)
}

/// Every archive month, oldest first.
pub(crate) fn months(conn: &mut Conn) -> Result<Vec<ArchiveMonth>, StoreError> {
    let rows: Vec<ArchiveMonthRow> =
        archive_months::table.order(archive_months::month.asc()).select(ArchiveMonthRow::as_select()).load(conn)?;
    rows.into_iter().map(ArchiveMonth::try_from).collect()
}

/// One archive month.
pub(crate) fn month(conn: &mut Conn, month: &str) -> Result<Option<ArchiveMonth>, StoreError> {
    month_in(conn, month)
}

fn month_in(conn: &mut Conn, month: &str) -> Result<Option<ArchiveMonth>, StoreError> {
    let row: Option<ArchiveMonthRow> = archive_months::table
        .filter(archive_months::month.eq(month))
        .select(ArchiveMonthRow::as_select())
        .first(conn)
        .optional()?;
    row.map(ArchiveMonth::try_from).transpose()
}

/// Record `Writing` or `Written` for a month whose rows are hot.
pub(crate) fn set_progress(
    conn: &mut Conn,
    month: &str,
    status: ArchiveStatus,
    location: &str,
    manifest: Option<&str>,
    now: DbTime,
) -> Result<(), StoreError> {
    if !matches!(status, ArchiveStatus::Writing | ArchiveStatus::Written) {
        return Err(StoreError::Invalid(format!(
            "archive month {month}: {} is only set by the moving transaction",
            status.as_str()
        )));
    }
    write_tx(conn, |conn| {
        if let Some(current) = month_in(conn, month)? {
            if current.status == ArchiveStatus::Archived {
                return Err(StoreError::Conflict(format!("archive month {month} is already archived")));
            }
        }
        let row = ArchiveMonthRow {
            month: month.to_string(),
            status: status.as_str().to_string(),
            location: location.to_string(),
            manifest: manifest.map(str::to_string),
            updated_at: now,
            archived_at: None,
            verified_at: None,
        };
        diesel::delete(archive_months::table.filter(archive_months::month.eq(month))).execute(conn)?;
        diesel::insert_into(archive_months::table).values(&row).execute(conn)?;
        Ok(())
    })
}

/// Mark a month verified.
pub(crate) fn mark_verified(conn: &mut Conn, month: &str, at: DbTime) -> Result<(), StoreError> {
    let n = diesel::update(archive_months::table.filter(archive_months::month.eq(month)))
        .set(archive_months::verified_at.eq(Some(at)))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("archive month {month}")));
    }
    Ok(())
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Move a `Written` month's rows out of the hot tables and mark it `Archived`, atomically.
pub(crate) fn commit_archive(
    conn: &mut Conn,
    range: &MonthRange,
    check: RowsCheck<'_>,
    before_commit: BeforeCommit<'_>,
    now: DbTime,
) -> Result<BTreeMap<String, u64>, StoreError> {
    write_tx(conn, |conn| {
        let state = month_in(conn, &range.key)?
            .ok_or_else(|| StoreError::NotFound(format!("archive month {}", range.key)))?;
        if state.status != ArchiveStatus::Written {
            return Err(StoreError::Conflict(format!(
                "archive month {} is {}, not written",
                range.key,
                state.status.as_str()
            )));
        }
        let (from, to) = (DbTime::new(range.from), DbTime::new(range.to));
        let rows = month_rows_in(conn, from, to)?;
        check(&rows)?;
        // Usage leaves the hot tables only once it is on an invoice: invoicing reads hot lines.
        let uninvoiced = rows.token_lines.iter().filter(|l| l.invoice_id.is_none()).count()
            + rows.resource_lines.iter().filter(|l| l.invoice_id.is_none()).count();
        if uninvoiced > 0 {
            return Err(StoreError::Conflict(format!(
                "month {} has {uninvoiced} usage lines not invoiced yet; invoice them before archiving",
                range.key
            )));
        }
        // Each archived event keeps its model and cost lines in the hot index: metrics of
        // archived months stay exact per kind, model, thread and message.
        let filter = crate::LineFilter { from: Some(range.from), to: Some(range.to), ..Default::default() };
        let mut lines: HashMap<uuid::Uuid, Vec<tally_domain::InvoiceLine>> = HashMap::new();
        for l in super::usage_lines(conn, &filter)? {
            lines.entry(l.event_id).or_default().push(l);
        }
        // The invoice of each event's lines (one per event: invoicing takes all of an event's lines).
        let mut invoice_of_seq: HashMap<i64, uuid::Uuid> = HashMap::new();
        let line_invoices = rows
            .token_lines
            .iter()
            .map(|l| (l.event_seq, l.invoice_id))
            .chain(rows.resource_lines.iter().map(|l| (l.event_seq, l.invoice_id)));
        for (seq, invoice) in line_invoices {
            let Some(invoice) = invoice else { continue };
            if *invoice_of_seq.entry(seq).or_insert(invoice) != invoice {
                return Err(StoreError::Conflict(format!(
                    "month {}: an event's lines are on two invoices; not archived",
                    range.key
                )));
            }
        }
        let models: HashMap<uuid::Uuid, String> =
            super::usage_events(conn, &filter, i64::MAX)?.into_iter().map(|e| (e.event_id, e.model)).collect();
        let index = rows
            .events
            .iter()
            .map(|e| {
                let event_lines = lines.remove(&e.event_id).unwrap_or_default();
                Ok(ArchivedEventRow {
                    event_id: DbUuid(e.event_id),
                    month: range.key.clone(),
                    user_id: e.user_id.clone(),
                    thread_id: e.thread_id.map(DbUuid),
                    message_id: e.message_id.map(DbUuid),
                    cost_total: crate::sql_types::DbDecimal(e.cost_total),
                    occurred_at: DbTime::new(e.occurred_at),
                    model: models.get(&e.event_id).cloned().ok_or_else(|| {
                        StoreError::Database(format!("archive month {}: event {} has no model", range.key, e.event_id))
                    })?,
                    invoice_id: invoice_of_seq.get(&e.event_seq).copied().map(DbUuid),
                    lines: serde_json::to_string(&event_lines)
                        .map_err(|e| StoreError::Invalid(format!("archived lines: {e}")))?,
                })
            })
            .collect::<Result<Vec<ArchivedEventRow>, StoreError>>()?;
        // From now on, ids in archived_events are duplicates (idempotent; see SKIP_ARCHIVED_TRIGGER).
        diesel::sql_query(super::SKIP_ARCHIVED_TRIGGER).execute(conn)?;
        for chunk in index.chunks(MOVE_CHUNK) {
            insert_skipping_existing!(archived_events::table, chunk).execute(conn)?;
        }
        let in_month = || {
            api_events::table
                .filter(api_events::occurred_at.ge(from))
                .filter(api_events::occurred_at.lt(to))
        };
        let payloads = diesel::delete(
            event_payloads::table.filter(event_payloads::event_id.eq_any(in_month().select(api_events::event_id))),
        )
        .execute(conn)?;
        let tokens = diesel::delete(
            user_invoice_line_item::table
                .filter(user_invoice_line_item::event_seq.eq_any(in_month().select(api_events::event_seq))),
        )
        .execute(conn)?;
        let resources = diesel::delete(
            resource_invoice_line_item::table
                .filter(resource_invoice_line_item::event_seq.eq_any(in_month().select(api_events::event_seq))),
        )
        .execute(conn)?;
        let events = diesel::delete(in_month()).execute(conn)?;
        let moved = BTreeMap::from([
            ("api_events".to_string(), count(events)),
            ("user_invoice_line_item".to_string(), count(tokens)),
            ("resource_invoice_line_item".to_string(), count(resources)),
            ("event_payloads".to_string(), count(payloads)),
        ]);
        if moved != rows.counts() {
            return Err(StoreError::Conflict(format!(
                "archive month {}: deleted {moved:?}, read {:?}",
                range.key,
                rows.counts()
            )));
        }
        diesel::update(archive_months::table.filter(archive_months::month.eq(&range.key)))
            .set((
                archive_months::status.eq(ArchiveStatus::Archived.as_str()),
                archive_months::updated_at.eq(now),
                archive_months::archived_at.eq(Some(now)),
            ))
            .execute(conn)?;
        before_commit();
        Ok(moved)
    })
}

/// Put an `Archived` month's rows back and mark it `Restored`, atomically.
pub(crate) fn commit_restore(
    conn: &mut Conn,
    month: &str,
    rows: &MonthRows,
    before_commit: BeforeCommit<'_>,
    now: DbTime,
) -> Result<BTreeMap<String, u64>, StoreError> {
    write_tx(conn, |conn| {
        let state =
            month_in(conn, month)?.ok_or_else(|| StoreError::NotFound(format!("archive month {month}")))?;
        if state.status != ArchiveStatus::Archived {
            return Err(StoreError::Conflict(format!("archive month {month} is {}, not archived", state.status.as_str())));
        }
        // First out of the index, or the trigger would skip every event as a duplicate.
        diesel::delete(archived_events::table.filter(archived_events::month.eq(month))).execute(conn)?;
        let mut new_seq: HashMap<DbUuid, i64> = HashMap::with_capacity(rows.events.len());
        let new_events: Vec<crate::rows::NewEvent> = rows.events.iter().map(crate::rows::NewEvent::from).collect();
        for chunk in new_events.chunks(MOVE_CHUNK) {
            let ids: Vec<(DbUuid, i64)> = insert_skipping_existing!(api_events::table, chunk)
                .returning((api_events::event_id, api_events::event_seq))
                .get_results(conn)?;
            new_seq.extend(ids);
        }
        // Lines follow their event to its new key; an event that was already hot keeps its own.
        let old_to_new: HashMap<i64, i64> = rows
            .events
            .iter()
            .filter_map(|e| new_seq.get(&DbUuid(e.event_id)).map(|seq| (e.event_seq, *seq)))
            .collect();
        let token_rows: Vec<TokenLineFullRow> = rows
            .token_lines
            .iter()
            .filter_map(|l| old_to_new.get(&l.event_seq).map(|seq| l.to_row(*seq)))
            .collect();
        let resource_rows: Vec<ResourceLineFullRow> = rows
            .resource_lines
            .iter()
            .filter_map(|l| old_to_new.get(&l.event_seq).map(|seq| l.to_row(*seq)))
            .collect();
        let payload_rows: Vec<PayloadFullRow> = rows.payloads.iter().map(PayloadFullRow::from).collect();
        let mut inserted = [0_usize; 3];
        for chunk in token_rows.chunks(MOVE_CHUNK) {
            inserted[0] += insert_skipping_existing!(user_invoice_line_item::table, chunk).execute(conn)?;
        }
        for chunk in resource_rows.chunks(MOVE_CHUNK) {
            inserted[1] += insert_skipping_existing!(resource_invoice_line_item::table, chunk).execute(conn)?;
        }
        for chunk in payload_rows.chunks(MOVE_CHUNK) {
            inserted[2] += insert_skipping_existing!(event_payloads::table, chunk).execute(conn)?;
        }
        diesel::update(archive_months::table.filter(archive_months::month.eq(month)))
            .set((archive_months::status.eq(ArchiveStatus::Restored.as_str()), archive_months::updated_at.eq(now)))
            .execute(conn)?;
        before_commit();
        Ok(BTreeMap::from([
            ("api_events".to_string(), count(new_seq.len())),
            ("user_invoice_line_item".to_string(), count(inserted[0])),
            ("resource_invoice_line_item".to_string(), count(inserted[1])),
            ("event_payloads".to_string(), count(inserted[2])),
        ]))
    })
}

/// Archived events of a user and/or thread: (message id, event id, cost), oldest first.
pub(crate) fn archived_costs(
    conn: &mut Conn,
    user_id: Option<&str>,
    thread_id: Option<uuid::Uuid>,
) -> Result<Vec<crate::archive::ArchivedCost>, StoreError> {
    let mut q = archived_events::table.into_boxed();
    if let Some(u) = user_id {
        q = q.filter(archived_events::user_id.eq(u.to_string()));
    }
    if let Some(t) = thread_id {
        q = q.filter(archived_events::thread_id.eq(DbUuid(t)));
    }
    let rows: Vec<crate::archive::ArchivedEventRow> = q
        .order((archived_events::occurred_at.asc(), archived_events::event_id.asc()))
        .select(crate::archive::ArchivedEventRow::as_select())
        .load(conn)?;
    rows.into_iter().map(TryInto::try_into).collect()
}
