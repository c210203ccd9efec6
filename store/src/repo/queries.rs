// Shared repository queries. Not a module of its own: `sqlite.rs` and `postgres.rs`
// each `include!` this file after defining `Conn` (the connection type) and
// `write_tx` (how a write transaction begins on that backend), so every query is
// written once and type-checked against both backends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use tally_domain::{
    Catalog, Cost, CostLine, DomainError, Invoice, InvoiceLine, InvoiceStatus, PriceBook, PriceHistory, PriceVersion,
    UsageKind,
};
use uuid::Uuid;

use super::{
    cost_line_from_row, invoice_line_from_row, message_from_row, non_negative, price_version_from_row,
    sort_invoice_lines, thread_from_row, token_count, IdSequence, ID_CHUNK, TOKEN_USAGE_DESCRIPTION, TOKEN_USAGE_EVENT,
    TOKEN_USAGE_UNIT,
};
use crate::error::StoreError;
use crate::records::{
    BatchOutcome, LineFilter, MessageRecord, ModelRecord, SeedReport, StoredMessage, ThreadRecord, UsageRecord,
    UserRecord, WriteOp,
};
use crate::rows::*;
use crate::schema::*;
use crate::sql_types::{truncate_to_micros, DbDecimal, DbTime, DbUuid};

/// Rows per multi-row INSERT in the persister's path. A fixed-size array of rows
/// has a static query id, so diesel prepares each such statement once per
/// connection and reuses it (parsing a fresh multi-row INSERT per chunk cost ~10%).
const INSERT_ROWS: usize = 256;

/// Rows per INSERT for what is left after the [`INSERT_ROWS`] chunks.
const INSERT_ROWS_TAIL: usize = 16;

/// Add to `$out` those of `$ids` (a slice of ids) that `$table` has in its id column `$col`,
/// asking [`ID_CHUNK`] at a time.
macro_rules! stored_ids {
    ($conn:expr, $table:expr, $col:expr, $ids:expr, into $out:expr) => {
        for chunk in $ids.chunks(ID_CHUNK) {
            let found: Vec<DbUuid> = $table.filter($col.eq_any(chunk)).select($col).load($conn)?;
            $out.extend(found);
        }
    };
}

/// Insert `$rows` (a slice of insertable rows) into `$table` with cached statements:
/// chunks of [`INSERT_ROWS`], then of [`INSERT_ROWS_TAIL`], then row by row. With
/// `returning $col => $ty, into $out`, adds to `$out` the values returned for rows that were
/// inserted (`insert_skipping_existing!` skips the others).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let mut big = $rows.chunks_exact(INSERT_ROWS);
        for chunk in &mut big {
            diesel::insert_into($table).values(full_chunk::<_, INSERT_ROWS>(chunk)?).execute($conn)?;
        }
        let mut small = big.remainder().chunks_exact(INSERT_ROWS_TAIL);
        for chunk in &mut small {
            diesel::insert_into($table).values(full_chunk::<_, INSERT_ROWS_TAIL>(chunk)?).execute($conn)?;
        }
        for row in small.remainder() {
            diesel::insert_into($table).values(row).execute($conn)?;
        }
    }};
    ($conn:expr, $table:expr, $rows:expr, returning $col:expr => $ty:ty, into $out:expr) => {{
        let mut big = $rows.chunks_exact(INSERT_ROWS);
        for chunk in &mut big {
            let ids: Vec<$ty> = insert_skipping_existing!($table, full_chunk::<_, INSERT_ROWS>(chunk)?)
                .returning($col)
                .get_results($conn)?;
            $out.extend(ids);
        }
        let mut small = big.remainder().chunks_exact(INSERT_ROWS_TAIL);
        for chunk in &mut small {
            let ids: Vec<$ty> = insert_skipping_existing!($table, full_chunk::<_, INSERT_ROWS_TAIL>(chunk)?)
                .returning($col)
                .get_results($conn)?;
            $out.extend(ids);
        }
        for row in small.remainder() {
            let ids: Vec<$ty> = insert_skipping_existing!($table, row).returning($col).get_results($conn)?;
            $out.extend(ids);
        }
    }};
}

/// A chunk from `chunks_exact(N)` as an array reference (never fails for those).
fn full_chunk<T, const N: usize>(chunk: &[T]) -> Result<&[T; N], StoreError> {
    chunk.try_into().map_err(|_| StoreError::Database(format!("internal: chunk of {} rows, not {N}", chunk.len())))
}

/// The select list of a token line joined to its event, read back as a [`LineRow`].
macro_rules! token_line_columns {
    () => {
        (
            user_invoice_line_item::line_item_id,
            api_events::event_id,
            api_events::message_id,
            api_events::thread_id,
            user_invoice_line_item::token_type,
            user_invoice_line_item::quantity,
            user_invoice_line_item::unit_price,
            user_invoice_line_item::pricing_id,
            user_invoice_line_item::amount,
            api_events::occurred_at,
        )
    };
}

/// The select list of a resource line joined to its event and event type, read back as a [`LineRow`].
macro_rules! resource_line_columns {
    () => {
        (
            resource_invoice_line_item::resource_line_item_id,
            api_events::event_id,
            api_events::message_id,
            api_events::thread_id,
            dim_event_types::event_name,
            resource_invoice_line_item::quantity,
            resource_invoice_line_item::unit_price,
            resource_invoice_line_item::resource_pricing_id,
            resource_invoice_line_item::amount,
            api_events::occurred_at,
        )
    };
}

/// `$query` (a boxed query that includes `api_events`) narrowed to the events
/// matching `$filter`'s user, thread and time window.
macro_rules! filter_events {
    ($query:expr, $filter:expr) => {{
        let mut query = $query;
        if let Some(user_id) = &$filter.user_id {
            query = query.filter(api_events::user_id.eq(user_id.as_str()));
        }
        if let Some(thread_id) = $filter.thread_id {
            query = query.filter(api_events::thread_id.eq(DbUuid(thread_id)));
        }
        if let Some(from) = $filter.from {
            query = query.filter(api_events::occurred_at.ge(DbTime::new(from)));
        }
        if let Some(to) = $filter.to {
            query = query.filter(api_events::occurred_at.lt(DbTime::new(to)));
        }
        query
    }};
}

// ---------------------------------------------------------------- health

/// A trivial round trip.
pub(crate) fn ping(conn: &mut Conn) -> Result<(), StoreError> {
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}

/// Rows per table, for diagnostics and tests.
pub(crate) fn row_counts(conn: &mut Conn) -> Result<Vec<(&'static str, i64)>, StoreError> {
    conn.transaction(|conn| {
        Ok(vec![
            ("dim_users", dim_users::table.count().get_result(conn)?),
            ("dim_models", dim_models::table.count().get_result(conn)?),
            ("dim_event_types", dim_event_types::table.count().get_result(conn)?),
            ("dim_token_pricing", dim_token_pricing::table.count().get_result(conn)?),
            ("dim_resource_pricing", dim_resource_pricing::table.count().get_result(conn)?),
            ("user_threads", user_threads::table.count().get_result(conn)?),
            ("user_thread_messages", user_thread_messages::table.count().get_result(conn)?),
            ("api_events", api_events::table.count().get_result(conn)?),
            ("message_tokens", message_tokens::table.count().get_result(conn)?),
            ("user_invoice_line_item", user_invoice_line_item::table.count().get_result(conn)?),
            ("resource_invoice_line_item", resource_invoice_line_item::table.count().get_result(conn)?),
            ("user_invoices", user_invoices::table.count().get_result(conn)?),
        ])
    })
}

// ---------------------------------------------------------------- lookups

fn model_id(conn: &mut Conn, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(dim_models::table.filter(dim_models::model_name.eq(name)).select(dim_models::model_id).first(conn).optional()?)
}

fn model_ids(conn: &mut Conn) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> =
        dim_models::table.select((dim_models::model_name, dim_models::model_id)).load(conn)?;
    Ok(rows.into_iter().collect())
}

fn event_type_id(conn: &mut Conn, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(dim_event_types::table
        .filter(dim_event_types::event_name.eq(name))
        .select(dim_event_types::event_type_id)
        .first(conn)
        .optional()?)
}

fn event_type_ids(conn: &mut Conn) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> =
        dim_event_types::table.select((dim_event_types::event_name, dim_event_types::event_type_id)).load(conn)?;
    Ok(rows.into_iter().collect())
}

fn user_exists(conn: &mut Conn, user_id: &str) -> Result<bool, StoreError> {
    Ok(dim_users::table.find(user_id).select(dim_users::user_id).first::<String>(conn).optional()?.is_some())
}

/// Insert the users that are missing, named after their id.
fn ensure_users(conn: &mut Conn, user_ids: &BTreeSet<&str>, now: DbTime) -> Result<(), StoreError> {
    let rows: Vec<UserRow> = user_ids
        .iter()
        .map(|id| UserRow { user_id: (*id).to_string(), username: (*id).to_string(), email: None, created_at: now })
        .collect();
    for row in &rows {
        insert_skipping_existing!(dim_users::table, row).execute(conn)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- seed and prices

/// Models, event types and price versions from the catalogue, skipping what exists.
pub(crate) fn seed(conn: &mut Conn, catalog: &Catalog) -> Result<SeedReport, StoreError> {
    write_tx(conn, |conn| {
        let mut report = SeedReport::default();
        let models: Vec<NewModel<'_>> = catalog
            .models
            .iter()
            .map(|m| NewModel {
                model_name: &m.name,
                provider: &m.provider,
                description: &m.description,
                is_active: true,
            })
            .collect();
        if !models.is_empty() {
            report.models =
                diesel::insert_into(dim_models::table).values(&models).on_conflict_do_nothing().execute(conn)?;
        }
        let mut types = vec![NewEventType {
            event_name: TOKEN_USAGE_EVENT,
            description: TOKEN_USAGE_DESCRIPTION,
            unit_of_measure: TOKEN_USAGE_UNIT,
            is_active: true,
        }];
        types.extend(catalog.resources.iter().map(|r| NewEventType {
            event_name: &r.name,
            description: &r.description,
            unit_of_measure: &r.unit_of_measure,
            is_active: true,
        }));
        report.event_types =
            diesel::insert_into(dim_event_types::table).values(&types).on_conflict_do_nothing().execute(conn)?;

        let models = model_ids(conn)?;
        let event_types = event_type_ids(conn)?;
        for (model, kind, price, from) in catalog.prices() {
            let model_id = *models.get(&model).ok_or_else(|| StoreError::NotFound(format!("model {model}")))?;
            let event_type_id = match &kind {
                UsageKind::Resource(name) => {
                    Some(*event_types.get(name).ok_or_else(|| StoreError::NotFound(format!("event type {name}")))?)
                }
                _ => None,
            };
            let from = truncate_to_micros(from);
            let history = load_history(conn, model_id, &model, &kind, event_type_id)?;
            if history.versions().iter().any(|v| v.effective_from == from) {
                continue;
            }
            match history.plan_new_version(tally_domain::new_id(), &model, &kind, price, from) {
                Ok((closed, new)) => {
                    apply_version(conn, model_id, event_type_id, closed.as_ref(), &new)?;
                    report.price_versions += 1;
                }
                // A stored version (added through the API) starts after this catalogue
                // entry: the stored history wins, the catalogue entry is stale.
                Err(DomainError::RewritesHistory { .. }) => {
                    tracing::warn!(model = %model, kind = %kind, effective_from = %from, "Catalogue price predates the stored current version; skipped.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    })
}

/// The stored versions of one price, as a validated chain.
fn load_history(
    conn: &mut Conn,
    model_id: i64,
    model: &str,
    kind: &UsageKind,
    event_type_id: Option<i64>,
) -> Result<PriceHistory, StoreError> {
    let rows: Vec<(DbUuid, DbDecimal, DbTime, Option<DbTime>, bool)> = match event_type_id {
        None => dim_token_pricing::table
            .filter(dim_token_pricing::model_id.eq(model_id))
            .filter(dim_token_pricing::token_type.eq(kind.as_str()))
            .select((
                dim_token_pricing::pricing_id,
                dim_token_pricing::price_per_million,
                dim_token_pricing::effective_from,
                dim_token_pricing::effective_to,
                dim_token_pricing::is_current,
            ))
            .load(conn)?,
        Some(event_type_id) => dim_resource_pricing::table
            .filter(dim_resource_pricing::model_id.eq(model_id))
            .filter(dim_resource_pricing::event_type_id.eq(event_type_id))
            .select((
                dim_resource_pricing::resource_pricing_id,
                dim_resource_pricing::unit_price,
                dim_resource_pricing::effective_from,
                dim_resource_pricing::effective_to,
                dim_resource_pricing::is_current,
            ))
            .load(conn)?,
    };
    let versions = rows
        .into_iter()
        .map(|(id, price, from, to, is_current)| PriceVersion {
            id: id.0,
            model: model.to_string(),
            kind: kind.clone(),
            price: price.0,
            effective_from: from.get(),
            effective_to: to.map(DbTime::get),
            is_current,
        })
        .collect();
    Ok(PriceHistory::from_versions(versions)?)
}

/// Write a planned SCD2 change: close the current version (if any), insert the new one.
fn apply_version(
    conn: &mut Conn,
    model_id: i64,
    event_type_id: Option<i64>,
    closed: Option<&PriceVersion>,
    new: &PriceVersion,
) -> Result<(), StoreError> {
    if let Some(closed) = closed {
        let end = closed.effective_to.map(DbTime::new);
        // `is_current = true` in the filter: a concurrent writer that closed it first
        // makes this update match nothing, and we refuse instead of forking the chain.
        let updated = match event_type_id {
            None => diesel::update(
                dim_token_pricing::table
                    .filter(dim_token_pricing::pricing_id.eq(DbUuid(closed.id)))
                    .filter(dim_token_pricing::is_current.eq(true)),
            )
            .set((dim_token_pricing::effective_to.eq(end), dim_token_pricing::is_current.eq(false)))
            .execute(conn)?,
            Some(_) => diesel::update(
                dim_resource_pricing::table
                    .filter(dim_resource_pricing::resource_pricing_id.eq(DbUuid(closed.id)))
                    .filter(dim_resource_pricing::is_current.eq(true)),
            )
            .set((dim_resource_pricing::effective_to.eq(end), dim_resource_pricing::is_current.eq(false)))
            .execute(conn)?,
        };
        if updated != 1 {
            return Err(StoreError::Conflict(format!(
                "price {}/{} was changed concurrently; reload and retry",
                closed.model, closed.kind
            )));
        }
    }
    match event_type_id {
        None => {
            diesel::insert_into(dim_token_pricing::table)
                .values(TokenPriceRow {
                    pricing_id: DbUuid(new.id),
                    model_id,
                    token_type: new.kind.as_str(),
                    price_per_million: DbDecimal(new.price),
                    effective_from: DbTime::new(new.effective_from),
                    effective_to: None,
                    is_current: true,
                })
                .execute(conn)?;
        }
        Some(event_type_id) => {
            diesel::insert_into(dim_resource_pricing::table)
                .values(ResourcePriceRow {
                    resource_pricing_id: DbUuid(new.id),
                    model_id,
                    event_type_id,
                    unit_price: DbDecimal(new.price),
                    effective_from: DbTime::new(new.effective_from),
                    effective_to: None,
                    is_current: true,
                })
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Every price version, token and resource.
pub(crate) fn load_price_book(conn: &mut Conn) -> Result<PriceBook, StoreError> {
    conn.transaction(|conn| {
        let mut rows: Vec<PriceRow> = dim_token_pricing::table
            .inner_join(dim_models::table)
            .select((
                dim_token_pricing::pricing_id,
                dim_models::model_name,
                dim_token_pricing::token_type,
                dim_token_pricing::price_per_million,
                dim_token_pricing::effective_from,
                dim_token_pricing::effective_to,
                dim_token_pricing::is_current,
            ))
            .load(conn)?;
        rows.extend(
            dim_resource_pricing::table
                .inner_join(dim_models::table)
                .inner_join(dim_event_types::table)
                .select((
                    dim_resource_pricing::resource_pricing_id,
                    dim_models::model_name,
                    dim_event_types::event_name,
                    dim_resource_pricing::unit_price,
                    dim_resource_pricing::effective_from,
                    dim_resource_pricing::effective_to,
                    dim_resource_pricing::is_current,
                ))
                .load::<PriceRow>(conn)?,
        );
        let versions = rows.into_iter().map(price_version_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(PriceBook::from_versions(versions)?)
    })
}

/// Add a price version through SCD2 close-and-insert, in one transaction.
pub(crate) fn add_price_version(
    conn: &mut Conn,
    model: &str,
    kind: &UsageKind,
    price: Decimal,
    effective_from: DateTime<Utc>,
) -> Result<(Option<PriceVersion>, PriceVersion), StoreError> {
    write_tx(conn, |conn| {
        let model_id = model_id(conn, model)?.ok_or_else(|| StoreError::NotFound(format!("model {model}")))?;
        let event_type_id = match kind {
            UsageKind::Resource(name) => {
                Some(event_type_id(conn, name)?.ok_or_else(|| StoreError::NotFound(format!("event type {name}")))?)
            }
            _ => None,
        };
        let history = load_history(conn, model_id, model, kind, event_type_id)?;
        let (closed, new) =
            history.plan_new_version(tally_domain::new_id(), model, kind, price, truncate_to_micros(effective_from))?;
        apply_version(conn, model_id, event_type_id, closed.as_ref(), &new)?;
        Ok((closed, new))
    })
}

/// The versions of one price, oldest first (empty for a resource with no event type).
pub(crate) fn price_history(conn: &mut Conn, model: &str, kind: &UsageKind) -> Result<Vec<PriceVersion>, StoreError> {
    conn.transaction(|conn| {
        let model_id = model_id(conn, model)?.ok_or_else(|| StoreError::NotFound(format!("model {model}")))?;
        let event_type_id = match kind {
            UsageKind::Resource(name) => match event_type_id(conn, name)? {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
            _ => None,
        };
        Ok(load_history(conn, model_id, model, kind, event_type_id)?.versions().to_vec())
    })
}

// ---------------------------------------------------------------- users and models

/// Insert a user; `Conflict` when the id is taken.
pub(crate) fn create_user(conn: &mut Conn, user: &UserRecord) -> Result<UserRecord, StoreError> {
    let row = UserRow {
        user_id: user.user_id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        created_at: DbTime::new(user.created_at),
    };
    write_tx(conn, |conn| {
        let inserted = diesel::insert_into(dim_users::table).values(&row).on_conflict_do_nothing().execute(conn)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("user {} already exists", user.user_id)));
        }
        Ok(())
    })?;
    Ok(UserRecord { user_id: row.user_id, username: row.username, email: row.email, created_at: row.created_at.get() })
}

/// One user.
pub(crate) fn get_user(conn: &mut Conn, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
    let row: Option<UserRow> = dim_users::table.find(user_id).select(UserRow::as_select()).first(conn).optional()?;
    Ok(row.map(|r| UserRecord {
        user_id: r.user_id,
        username: r.username,
        email: r.email,
        created_at: r.created_at.get(),
    }))
}

/// Users, oldest first.
pub(crate) fn list_users(conn: &mut Conn, limit: i64, offset: i64) -> Result<Vec<UserRecord>, StoreError> {
    let rows: Vec<UserRow> = dim_users::table
        .order((dim_users::created_at.asc(), dim_users::user_id.asc()))
        .limit(non_negative(limit))
        .offset(non_negative(offset))
        .select(UserRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| UserRecord {
            user_id: r.user_id,
            username: r.username,
            email: r.email,
            created_at: r.created_at.get(),
        })
        .collect())
}

/// Insert the user, named after its id, unless it exists.
pub(crate) fn ensure_user(conn: &mut Conn, user_id: &str) -> Result<(), StoreError> {
    write_tx(conn, |conn| ensure_users(conn, &BTreeSet::from([user_id]), DbTime::now()))
}

fn model_from_row(r: ModelRow) -> ModelRecord {
    ModelRecord {
        model_id: r.model_id,
        name: r.model_name,
        provider: r.provider,
        description: r.description,
        is_active: r.is_active,
    }
}

/// Models by name.
pub(crate) fn list_models(conn: &mut Conn) -> Result<Vec<ModelRecord>, StoreError> {
    let rows: Vec<ModelRow> =
        dim_models::table.order(dim_models::model_name.asc()).select(ModelRow::as_select()).load(conn)?;
    Ok(rows.into_iter().map(model_from_row).collect())
}

/// One model by name.
pub(crate) fn get_model(conn: &mut Conn, name: &str) -> Result<Option<ModelRecord>, StoreError> {
    let row: Option<ModelRow> = dim_models::table
        .filter(dim_models::model_name.eq(name))
        .select(ModelRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(model_from_row))
}

// ---------------------------------------------------------------- threads

/// Insert a thread; its user and model must exist.
pub(crate) fn create_thread(conn: &mut Conn, t: &ThreadRecord) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        if !user_exists(conn, &t.user_id)? {
            return Err(StoreError::NotFound(format!("user {}", t.user_id)));
        }
        let model_id = model_id(conn, &t.model)?.ok_or_else(|| StoreError::NotFound(format!("model {}", t.model)))?;
        let inserted = diesel::insert_into(user_threads::table)
            .values(NewThread {
                thread_id: DbUuid(t.thread_id),
                user_id: &t.user_id,
                title: &t.title,
                model_id,
                created_at: DbTime::new(t.created_at),
                updated_at: DbTime::new(t.updated_at),
                is_active: t.is_active,
            })
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("thread {} already exists", t.thread_id)));
        }
        Ok(())
    })
}

/// The select list of a thread read back as a [`ThreadRow`].
macro_rules! thread_columns {
    () => {
        (
            user_threads::thread_id,
            user_threads::user_id,
            user_threads::title,
            dim_models::model_name,
            user_threads::created_at,
            user_threads::updated_at,
            user_threads::is_active,
        )
    };
}

/// One thread.
pub(crate) fn get_thread(conn: &mut Conn, thread_id: Uuid) -> Result<Option<ThreadRecord>, StoreError> {
    let row: Option<ThreadRow> = user_threads::table
        .inner_join(dim_models::table)
        .filter(user_threads::thread_id.eq(DbUuid(thread_id)))
        .select(thread_columns!())
        .first(conn)
        .optional()?;
    Ok(row.map(thread_from_row))
}

/// Threads, most recently updated first.
pub(crate) fn list_threads(
    conn: &mut Conn,
    user_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ThreadRecord>, StoreError> {
    let mut query = user_threads::table.inner_join(dim_models::table).select(thread_columns!()).into_boxed();
    if let Some(user_id) = user_id {
        query = query.filter(user_threads::user_id.eq(user_id));
    }
    let rows: Vec<ThreadRow> = query
        .order((user_threads::updated_at.desc(), user_threads::thread_id.desc()))
        .limit(non_negative(limit))
        .offset(non_negative(offset))
        .load(conn)?;
    Ok(rows.into_iter().map(thread_from_row).collect())
}

// ---------------------------------------------------------------- the persister's batch

/// Store a batch of messages and priced usage in one transaction, skipping what exists.
pub(crate) fn write_batch(conn: &mut Conn, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
    if ops.is_empty() {
        return Ok(BatchOutcome::default());
    }
    bulk_write_tx(conn, |conn| write_batch_tx(conn, ops))
}

fn write_batch_tx(conn: &mut Conn, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
    let now = DbTime::now();
    // First occurrence of each id; later repeats in the same batch are duplicates.
    // Sized up front: a batch holds up to tens of thousands of events, and growing these
    // rehashes or copies what they hold.
    let usage_count = ops.iter().filter(|op| matches!(op, WriteOp::Usage(_))).count();
    let mut messages: Vec<&MessageRecord> = Vec::with_capacity(ops.len() - usage_count);
    let mut usages: Vec<&UsageRecord> = Vec::with_capacity(usage_count);
    let mut gateway_calls: Vec<GatewayRequestRow> = Vec::new();
    {
        let mut seen_messages = HashSet::with_capacity(ops.len() - usage_count);
        let mut seen_events = HashSet::with_capacity(usage_count);
        let mut seen_calls = HashSet::new();
        for op in ops {
            match op {
                WriteOp::Message(m) if seen_messages.insert(m.message_id) => messages.push(m),
                WriteOp::Usage(u) if seen_events.insert(u.event_id) => usages.push(u),
                WriteOp::Gateway(g) if seen_calls.insert(g.event_id) => gateway_calls.push(gateway_row(g)),
                WriteOp::Message(_) | WriteOp::Usage(_) | WriteOp::Gateway(_) => {}
            }
        }
    }
    // Gateway calls are keyed by their event id: a replayed call is skipped like its event.
    for row in &gateway_calls {
        insert_skipping_existing!(gateway_requests::table, row).execute(conn)?;
    }

    // Validate everything before the first write, so errors name the culprit.
    let models = model_ids(conn)?;
    let event_types = event_type_ids(conn)?;
    let model_of =
        |name: &str| models.get(name).copied().ok_or_else(|| StoreError::Invalid(format!("unknown model {name}")));
    let event_type_of = |name: &str| {
        event_types.get(name).copied().ok_or_else(|| StoreError::Invalid(format!("unknown event type {name}")))
    };
    let token_usage_id = event_type_of(TOKEN_USAGE_EVENT)?;
    for m in &messages {
        model_of(&m.model)?;
    }
    for u in &usages {
        model_of(&u.model)?;
        for line in &u.cost.lines {
            match &line.kind {
                UsageKind::Resource(name) => {
                    event_type_of(name)?;
                }
                _ => {
                    token_count(line)?;
                }
            }
        }
    }
    // Price versions the lines name (a handful per batch): all must exist.
    let mut token_prices: BTreeSet<DbUuid> = BTreeSet::new();
    let mut resource_prices: BTreeSet<DbUuid> = BTreeSet::new();
    for line in usages.iter().flat_map(|u| &u.cost.lines) {
        match line.kind {
            UsageKind::Resource(_) => resource_prices.insert(DbUuid(line.price_version_id)),
            _ => token_prices.insert(DbUuid(line.price_version_id)),
        };
    }
    let token_prices: Vec<DbUuid> = token_prices.into_iter().collect();
    let resource_prices: Vec<DbUuid> = resource_prices.into_iter().collect();
    let mut known_prices: HashSet<DbUuid> = HashSet::new();
    stored_ids!(conn, dim_token_pricing::table, dim_token_pricing::pricing_id, &token_prices, into known_prices);
    stored_ids!(
        conn,
        dim_resource_pricing::table,
        dim_resource_pricing::resource_pricing_id,
        &resource_prices,
        into known_prices
    );
    if let Some(missing) = token_prices.iter().chain(&resource_prices).find(|p| !known_prices.contains(*p)) {
        return Err(StoreError::Invalid(format!("price version {} does not exist", missing.0)));
    }

    let thread_ids: BTreeSet<DbUuid> = messages.iter().map(|m| DbUuid(m.thread_id)).collect();
    let thread_ids: Vec<DbUuid> = thread_ids.into_iter().collect();
    let mut known_threads = HashSet::new();
    stored_ids!(conn, user_threads::table, user_threads::thread_id, &thread_ids, into known_threads);
    if let Some(missing) = thread_ids.iter().find(|t| !known_threads.contains(*t)) {
        return Err(StoreError::Invalid(format!("thread {} does not exist", missing.0)));
    }

    let users: BTreeSet<&str> =
        messages.iter().map(|m| m.user_id.as_str()).chain(usages.iter().map(|u| u.user_id.as_str())).collect();
    ensure_users(conn, &users, now)?;

    // Messages. ON CONFLICT DO NOTHING + RETURNING tells exactly which rows are new,
    // even when another writer stores the same ids concurrently (PostgreSQL).
    let new_messages = messages
        .iter()
        .map(|m| {
            Ok(NewMessage {
                message_id: DbUuid(m.message_id),
                thread_id: DbUuid(m.thread_id),
                user_id: m.user_id.clone(),
                content: m.content.clone(),
                role: m.role.as_str().to_string(),
                model_id: model_of(&m.model)?,
                created_at: DbTime::new(m.created_at),
                simulated: m.simulated,
                status: m.status.as_str().to_string(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut inserted_messages: HashSet<DbUuid> = HashSet::new();
    insert_rows!(
        conn,
        user_thread_messages::table,
        new_messages,
        returning user_thread_messages::message_id => DbUuid,
        into inserted_messages
    );

    // Usage events, each user's together (stable: a user's events keep their order). The
    // (user_id, occurred_at) index then takes its inserts in key order, page after page.
    usages.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let mut new_events = Vec::with_capacity(usages.len());
    for u in &usages {
        let token_total: Decimal = u.cost.lines.iter().filter(|l| l.kind.is_token()).map(|l| l.quantity).sum();
        let (event_type_id, quantity) = if u.cost.lines.iter().any(|l| l.kind.is_token()) {
            (token_usage_id, token_total)
        } else if let Some(first) = u.cost.lines.first() {
            let same_kind: Decimal = u.cost.lines.iter().filter(|l| l.kind == first.kind).map(|l| l.quantity).sum();
            (event_type_of(first.kind.as_str())?, same_kind)
        } else {
            (token_usage_id, Decimal::ZERO)
        };
        new_events.push(NewEvent {
            event_id: DbUuid(u.event_id),
            user_id: u.user_id.clone(),
            thread_id: u.thread_id.map(DbUuid),
            message_id: u.message_id.map(DbUuid),
            model_id: model_of(&u.model)?,
            event_type_id,
            quantity: DbDecimal(quantity),
            cost_total: DbDecimal(u.cost.total),
            source: u.source.clone(),
            idempotency_key: u.idempotency_key.clone(),
            occurred_at: DbTime::new(u.occurred_at),
            created_at: now,
            key_id: u.key_id.map(DbUuid),
            task: u.task.clone(),
            successful: u.successful,
        });
    }
    // The key each new event's lines point at; events already stored are absent.
    let mut inserted_events: HashMap<DbUuid, i64> = HashMap::with_capacity(usages.len());
    insert_rows!(
        conn,
        api_events::table,
        new_events,
        returning (api_events::event_id, api_events::event_seq) => (DbUuid, i64),
        into inserted_events
    );

    // Lines of the new events only: a duplicate event keeps the lines it was stored with.
    let mut ids = IdSequence::new();
    let mut token_lines = Vec::with_capacity(usages.iter().map(|u| u.cost.lines.len()).sum());
    let mut resource_lines = Vec::new();
    for u in &usages {
        let Some(&event_seq) = inserted_events.get(&DbUuid(u.event_id)) else { continue };
        for line in &u.cost.lines {
            match &line.kind {
                UsageKind::Resource(name) => resource_lines.push(NewResourceLine {
                    resource_line_item_id: DbUuid(ids.next_id()),
                    event_seq,
                    resource_pricing_id: DbUuid(line.price_version_id),
                    event_type_id: event_type_of(name)?,
                    quantity: DbDecimal(line.quantity),
                    unit_price: DbDecimal(line.unit_price),
                    amount: DbDecimal(line.amount),
                    created_at: now,
                }),
                _ => token_lines.push(NewTokenLine {
                    line_item_id: DbUuid(ids.next_id()),
                    event_seq,
                    token_type: line.kind.as_str().to_string(),
                    token_count: token_count(line)?,
                    pricing_id: DbUuid(line.price_version_id),
                    quantity: DbDecimal(line.quantity),
                    unit_price: DbDecimal(line.unit_price),
                    amount: DbDecimal(line.amount),
                    created_at: now,
                }),
            }
        }
    }
    insert_rows!(conn, user_invoice_line_item::table, token_lines);
    insert_rows!(conn, resource_invoice_line_item::table, resource_lines);

    // Daily rollups of the new events only, in the same transaction: a replayed event adds
    // nothing, and a query over a range reads O(rows of the range), not O(events).
    let mut deltas = super::RollupDeltas::new();
    for u in &usages {
        if !inserted_events.contains_key(&DbUuid(u.event_id)) {
            continue;
        }
        super::add_event_to_rollups(
            &mut deltas,
            super::utc_day(u.occurred_at),
            &u.user_id,
            model_of(&u.model)?,
            u.key_id,
            u.task.as_deref(),
            u.successful,
            &u.cost.lines.iter().map(|l| (l.kind.as_str().to_string(), l.quantity, l.amount)).collect::<Vec<_>>(),
            u.cost.total,
        );
    }
    add_rollup_deltas(conn, &deltas)?;

    // Threads move forward to their latest new message or usage (never backward).
    let mut bumps: BTreeMap<DbUuid, DbTime> = BTreeMap::new();
    let mut bump = |thread: DbUuid, at: DbTime| {
        let entry = bumps.entry(thread).or_insert(at);
        *entry = (*entry).max(at);
    };
    for m in messages.iter().filter(|m| inserted_messages.contains(&DbUuid(m.message_id))) {
        bump(DbUuid(m.thread_id), DbTime::new(m.created_at));
    }
    for u in usages.iter().filter(|u| inserted_events.contains_key(&DbUuid(u.event_id))) {
        if let Some(thread_id) = u.thread_id {
            bump(DbUuid(thread_id), DbTime::new(u.occurred_at));
        }
    }
    for (thread_id, at) in bumps {
        diesel::update(
            user_threads::table.filter(user_threads::thread_id.eq(thread_id)).filter(user_threads::updated_at.lt(at)),
        )
        .set(user_threads::updated_at.eq(at))
        .execute(conn)?;
    }

    // Report in input order: an id counts as inserted once, every other sighting is a duplicate.
    let mut outcome = BatchOutcome::default();
    outcome.inserted_events.reserve(inserted_events.len());
    let mut reported_messages = HashSet::with_capacity(inserted_messages.len());
    let mut reported_events = HashSet::with_capacity(inserted_events.len());
    for op in ops {
        match op {
            WriteOp::Message(m) => {
                if inserted_messages.contains(&DbUuid(m.message_id)) && reported_messages.insert(m.message_id) {
                    outcome.inserted_messages.push(m.message_id);
                } else {
                    outcome.duplicate_messages.push(m.message_id);
                }
            }
            WriteOp::Usage(u) => {
                if inserted_events.contains_key(&DbUuid(u.event_id)) && reported_events.insert(u.event_id) {
                    outcome.inserted_events.push(u.event_id);
                } else {
                    outcome.duplicate_events.push(u.event_id);
                }
            }
            WriteOp::Gateway(_) => {}
        }
    }
    Ok(outcome)
}

/// The row of a gateway call.
fn gateway_row(g: &crate::gateway::GatewayCallRecord) -> GatewayRequestRow {
    GatewayRequestRow {
        event_id: DbUuid(g.event_id),
        key_id: DbUuid(g.key_id),
        user_id: g.user_id.clone(),
        provider: g.provider.clone(),
        model: g.model.clone(),
        route: g.route.clone(),
        status: g.status.clone(),
        http_status: g.http_status,
        latency_ms: g.latency_ms,
        upstream_request_id: g.upstream_request_id.clone(),
        simulated: g.simulated,
        total_tokens: g.total_tokens,
        occurred_at: DbTime::new(g.occurred_at),
    }
}

// ---------------------------------------------------------------- reading usage

/// Cost lines of the given events, each event's lines in kind order.
fn lines_by_event(conn: &mut Conn, event_ids: &[DbUuid]) -> Result<HashMap<Uuid, Vec<CostLine>>, StoreError> {
    let mut rows: Vec<LineRow> = Vec::new();
    for chunk in event_ids.chunks(ID_CHUNK) {
        rows.extend(
            user_invoice_line_item::table
                .inner_join(api_events::table)
                .filter(api_events::event_id.eq_any(chunk))
                .select(token_line_columns!())
                .load::<LineRow>(conn)?,
        );
        rows.extend(
            resource_invoice_line_item::table
                .inner_join(api_events::table)
                .inner_join(dim_event_types::table)
                .filter(api_events::event_id.eq_any(chunk))
                .select(resource_line_columns!())
                .load::<LineRow>(conn)?,
        );
    }
    let mut by_event: HashMap<Uuid, Vec<CostLine>> = HashMap::new();
    for row in &rows {
        by_event.entry(row.event_id.0).or_default().push(cost_line_from_row(row)?);
    }
    for lines in by_event.values_mut() {
        lines.sort_by(|a, b| a.kind.cmp(&b.kind));
    }
    Ok(by_event)
}

/// A thread's messages, oldest first, each with the cost of its usage.
pub(crate) fn thread_messages(conn: &mut Conn, thread_id: Uuid) -> Result<Vec<StoredMessage>, StoreError> {
    conn.transaction(|conn| {
        let rows: Vec<MessageRow> = user_thread_messages::table
            .inner_join(dim_models::table)
            .filter(user_thread_messages::thread_id.eq(DbUuid(thread_id)))
            .order((user_thread_messages::created_at.asc(), user_thread_messages::message_id.asc()))
            .select((
                user_thread_messages::message_id,
                user_thread_messages::thread_id,
                user_thread_messages::user_id,
                user_thread_messages::role,
                user_thread_messages::content,
                dim_models::model_name,
                user_thread_messages::created_at,
                user_thread_messages::simulated,
                user_thread_messages::status,
            ))
            .load(conn)?;
        let message_ids: Vec<DbUuid> = rows.iter().map(|r| r.message_id).collect();
        let mut events: Vec<(DbUuid, Option<DbUuid>, DbDecimal, DbTime)> = Vec::new();
        for chunk in message_ids.chunks(ID_CHUNK) {
            events.extend(
                api_events::table
                    .filter(api_events::message_id.eq_any(chunk))
                    .select((
                        api_events::event_id,
                        api_events::message_id,
                        api_events::cost_total,
                        api_events::occurred_at,
                    ))
                    .load::<(DbUuid, Option<DbUuid>, DbDecimal, DbTime)>(conn)?,
            );
        }
        let event_ids: Vec<DbUuid> = events.iter().map(|e| e.0).collect();
        let mut lines = lines_by_event(conn, &event_ids)?;
        // Events of archived months: their costs and lines stay in the hot index.
        for chunk in message_ids.chunks(ID_CHUNK) {
            let archived = archived_events::table
                .filter(archived_events::message_id.eq_any(chunk))
                .select((
                    archived_events::event_id,
                    archived_events::message_id,
                    archived_events::cost_total,
                    archived_events::occurred_at,
                    archived_events::lines,
                ))
                .load::<(DbUuid, Option<DbUuid>, DbDecimal, DbTime, String)>(conn)?;
            for (event_id, message_id, total, at, text) in archived {
                let cost_lines = crate::archive::archived_lines(event_id.0, &text)?
                    .into_iter()
                    .map(|l| CostLine {
                        kind: l.kind,
                        unit: l.unit,
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        price_version_id: l.price_version_id,
                        amount: l.amount,
                    })
                    .collect();
                lines.insert(event_id.0, cost_lines);
                events.push((event_id, message_id, total, at));
            }
        }
        events.sort_by_key(|e| (e.3, e.0));
        let mut per_message: HashMap<Uuid, (Vec<Uuid>, Vec<CostLine>, Decimal)> = HashMap::new();
        for (event_id, message_id, total, _) in events {
            let Some(message_id) = message_id else { continue };
            let entry = per_message.entry(message_id.0).or_default();
            entry.0.push(event_id.0);
            entry.1.extend(lines.remove(&event_id.0).unwrap_or_default());
            entry.2 += total.0;
        }
        rows.into_iter()
            .map(|row| {
                let message = message_from_row(row)?;
                let (usage_event_ids, cost) = match per_message.remove(&message.message_id) {
                    Some((ids, lines, total)) => (ids, Some(Cost { lines, total })),
                    None => (Vec::new(), None),
                };
                Ok(StoredMessage { message, cost, usage_event_ids })
            })
            .collect()
    })
}

/// Token and resource lines matching the filter, by time then kind.
///
/// User, thread and time select events through `api_events`' indexes; lines are
/// then found by their event's `event_seq`.
pub(crate) fn usage_lines(conn: &mut Conn, filter: &LineFilter) -> Result<Vec<InvoiceLine>, StoreError> {
    conn.transaction(|conn| {
        let mut tokens = filter_events!(
            user_invoice_line_item::table.inner_join(api_events::table).select(token_line_columns!()).into_boxed(),
            filter
        );
        let mut resources = filter_events!(
            resource_invoice_line_item::table
                .inner_join(api_events::table)
                .inner_join(dim_event_types::table)
                .select(resource_line_columns!())
                .into_boxed(),
            filter
        );
        if filter.uninvoiced_only {
            tokens = tokens.filter(user_invoice_line_item::invoice_id.is_null());
            resources = resources.filter(resource_invoice_line_item::invoice_id.is_null());
        }
        let mut rows: Vec<LineRow> = tokens.load(conn)?;
        rows.extend(resources.load::<LineRow>(conn)?);
        let mut lines = rows.iter().map(invoice_line_from_row).collect::<Result<Vec<_>, _>>()?;
        sort_invoice_lines(&mut lines);
        Ok(lines)
    })
}

/// Usage events matching the filter, newest first, with their cost lines.
pub(crate) fn usage_events(conn: &mut Conn, filter: &LineFilter, limit: i64) -> Result<Vec<UsageRecord>, StoreError> {
    conn.transaction(|conn| {
        let mut query = api_events::table
            .inner_join(dim_models::table)
            .inner_join(dim_event_types::table)
            .select((
                api_events::event_id,
                api_events::user_id,
                api_events::thread_id,
                api_events::message_id,
                dim_models::model_name,
                dim_event_types::event_name,
                api_events::cost_total,
                api_events::source,
                api_events::idempotency_key,
                api_events::occurred_at,
                api_events::key_id,
                api_events::task,
                api_events::successful,
            ))
            .into_boxed();
        query = filter_events!(query, filter);
        if filter.uninvoiced_only {
            query = query.filter(
                api_events::event_seq
                    .eq_any(
                        user_invoice_line_item::table
                            .filter(user_invoice_line_item::invoice_id.is_null())
                            .select(user_invoice_line_item::event_seq),
                    )
                    .or(api_events::event_seq.eq_any(
                        resource_invoice_line_item::table
                            .filter(resource_invoice_line_item::invoice_id.is_null())
                            .select(resource_invoice_line_item::event_seq),
                    )),
            );
        }
        let rows: Vec<EventRow> = query
            .order((api_events::occurred_at.desc(), api_events::event_id.desc()))
            .limit(non_negative(limit))
            .load(conn)?;
        let event_ids: Vec<DbUuid> = rows.iter().map(|r| r.event_id).collect();
        let mut lines = lines_by_event(conn, &event_ids)?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRecord {
                event_id: r.event_id.0,
                user_id: r.user_id,
                thread_id: r.thread_id.map(|id| id.0),
                message_id: r.message_id.map(|id| id.0),
                model: r.model,
                event_type: r.event_type,
                source: r.source,
                idempotency_key: r.idempotency_key,
                occurred_at: r.occurred_at.get(),
                cost: Cost { lines: lines.remove(&r.event_id.0).unwrap_or_default(), total: r.cost_total.0 },
                key_id: r.key_id.map(|id| id.0),
                task: r.task,
                successful: r.successful,
            })
            .collect())
    })
}

// ---------------------------------------------------------------- invoices

/// Insert an invoice and claim exactly its lines; any line already claimed refuses the whole invoice.
pub(crate) fn create_invoice(conn: &mut Conn, invoice: &Invoice) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    if let Some(line) = invoice.lines.iter().find(|l| !seen.insert(l.id)) {
        return Err(StoreError::Invalid(format!("invoice line {} is listed twice", line.id)));
    }
    write_tx(conn, |conn| {
        if !user_exists(conn, &invoice.user_id)? {
            return Err(StoreError::NotFound(format!("user {}", invoice.user_id)));
        }
        let inserted = diesel::insert_into(user_invoices::table)
            .values(InvoiceRow {
                invoice_id: DbUuid(invoice.id),
                user_id: invoice.user_id.clone(),
                thread_id: invoice.thread_id.map(DbUuid),
                period_start: invoice.period_start.map(DbTime::new),
                period_end: invoice.period_end.map(DbTime::new),
                subtotal: DbDecimal(invoice.subtotal),
                total_amount: DbDecimal(invoice.total),
                invoice_date: DbTime::new(invoice.created_at),
                status: invoice.status.as_str().to_string(),
            })
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("invoice {} already exists", invoice.id)));
        }
        let claim = Some(DbUuid(invoice.id));
        let token_ids: Vec<DbUuid> = invoice.lines.iter().filter(|l| l.kind.is_token()).map(|l| DbUuid(l.id)).collect();
        let resource_ids: Vec<DbUuid> =
            invoice.lines.iter().filter(|l| !l.kind.is_token()).map(|l| DbUuid(l.id)).collect();
        let mut claimed = 0;
        for chunk in token_ids.chunks(ID_CHUNK) {
            claimed += diesel::update(
                user_invoice_line_item::table
                    .filter(user_invoice_line_item::line_item_id.eq_any(chunk))
                    .filter(user_invoice_line_item::invoice_id.is_null()),
            )
            .set(user_invoice_line_item::invoice_id.eq(claim))
            .execute(conn)?;
        }
        for chunk in resource_ids.chunks(ID_CHUNK) {
            claimed += diesel::update(
                resource_invoice_line_item::table
                    .filter(resource_invoice_line_item::resource_line_item_id.eq_any(chunk))
                    .filter(resource_invoice_line_item::invoice_id.is_null()),
            )
            .set(resource_invoice_line_item::invoice_id.eq(claim))
            .execute(conn)?;
        }
        // Lines name their user through their event: a claimed line of another user
        // refuses the invoice (the transaction rolls back).
        macro_rules! claimed_for_others {
            ($lines:ident) => {
                $lines::table
                    .inner_join(api_events::table)
                    .filter($lines::invoice_id.eq(claim))
                    .filter(api_events::user_id.ne(&invoice.user_id))
                    .count()
                    .get_result::<i64>(conn)?
            };
        }
        let foreign = claimed_for_others!(user_invoice_line_item) + claimed_for_others!(resource_invoice_line_item);
        if claimed != invoice.lines.len() || foreign > 0 {
            return Err(unclaimable_line(conn, invoice, &token_ids, &resource_ids));
        }
        Ok(())
    })
}

/// Why some line of `invoice` could not be claimed (the transaction is rolled back after this).
fn unclaimable_line(conn: &mut Conn, invoice: &Invoice, token_ids: &[DbUuid], resource_ids: &[DbUuid]) -> StoreError {
    let mut found: HashMap<DbUuid, (String, Option<DbUuid>)> = HashMap::new();
    for chunk in token_ids.chunks(ID_CHUNK) {
        match user_invoice_line_item::table
            .inner_join(api_events::table)
            .filter(user_invoice_line_item::line_item_id.eq_any(chunk))
            .select((user_invoice_line_item::line_item_id, api_events::user_id, user_invoice_line_item::invoice_id))
            .load::<(DbUuid, String, Option<DbUuid>)>(conn)
        {
            Ok(rows) => found.extend(rows.into_iter().map(|(id, user, inv)| (id, (user, inv)))),
            Err(e) => return e.into(),
        }
    }
    for chunk in resource_ids.chunks(ID_CHUNK) {
        match resource_invoice_line_item::table
            .inner_join(api_events::table)
            .filter(resource_invoice_line_item::resource_line_item_id.eq_any(chunk))
            .select((
                resource_invoice_line_item::resource_line_item_id,
                api_events::user_id,
                resource_invoice_line_item::invoice_id,
            ))
            .load::<(DbUuid, String, Option<DbUuid>)>(conn)
        {
            Ok(rows) => found.extend(rows.into_iter().map(|(id, user, inv)| (id, (user, inv)))),
            Err(e) => return e.into(),
        }
    }
    for id in token_ids.iter().chain(resource_ids) {
        match found.get(id) {
            None => return StoreError::NotFound(format!("invoice line {}", id.0)),
            Some((user, _)) if *user != invoice.user_id => {
                return StoreError::Invalid(format!("invoice line {} belongs to user {user}", id.0));
            }
            Some((_, Some(other))) if other.0 != invoice.id => {
                return StoreError::Conflict(format!("invoice line {} is already on invoice {}", id.0, other.0));
            }
            Some(_) => {}
        }
    }
    StoreError::Conflict(format!("the lines of invoice {} changed concurrently", invoice.id))
}

/// Lines of the given invoices, by invoice, each in usage order.
fn lines_by_invoice(conn: &mut Conn, invoice_ids: &[DbUuid]) -> Result<HashMap<Uuid, Vec<InvoiceLine>>, StoreError> {
    let mut rows: Vec<(LineRow, Option<DbUuid>)> = Vec::new();
    for chunk in invoice_ids.chunks(ID_CHUNK) {
        rows.extend(
            user_invoice_line_item::table
                .inner_join(api_events::table)
                .filter(user_invoice_line_item::invoice_id.eq_any(chunk))
                .select((token_line_columns!(), user_invoice_line_item::invoice_id))
                .load::<(LineRow, Option<DbUuid>)>(conn)?,
        );
        rows.extend(
            resource_invoice_line_item::table
                .inner_join(api_events::table)
                .inner_join(dim_event_types::table)
                .filter(resource_invoice_line_item::invoice_id.eq_any(chunk))
                .select((resource_line_columns!(), resource_invoice_line_item::invoice_id))
                .load::<(LineRow, Option<DbUuid>)>(conn)?,
        );
    }
    let mut by_invoice: HashMap<Uuid, Vec<InvoiceLine>> = HashMap::new();
    for (row, invoice_id) in &rows {
        if let Some(invoice_id) = invoice_id {
            by_invoice.entry(invoice_id.0).or_default().push(invoice_line_from_row(row)?);
        }
    }
    // Lines of archived months stay on their invoices (kept in the hot index).
    for chunk in invoice_ids.chunks(ID_CHUNK) {
        let archived = archived_events::table
            .filter(archived_events::invoice_id.eq_any(chunk))
            .select((archived_events::event_id, archived_events::invoice_id, archived_events::lines))
            .load::<(DbUuid, Option<DbUuid>, String)>(conn)?;
        for (event_id, invoice_id, text) in archived {
            let Some(invoice_id) = invoice_id else { continue };
            by_invoice.entry(invoice_id.0).or_default().extend(crate::archive::archived_lines(event_id.0, &text)?);
        }
    }
    for lines in by_invoice.values_mut() {
        sort_invoice_lines(lines);
    }
    Ok(by_invoice)
}

fn invoice_from_row(row: InvoiceRow, lines: Vec<InvoiceLine>) -> Result<Invoice, StoreError> {
    let status = InvoiceStatus::parse(&row.status).ok_or_else(|| {
        StoreError::Database(format!("invoice {} has unknown status {:?}", row.invoice_id.0, row.status))
    })?;
    Ok(Invoice {
        id: row.invoice_id.0,
        user_id: row.user_id,
        thread_id: row.thread_id.map(|id| id.0),
        period_start: row.period_start.map(DbTime::get),
        period_end: row.period_end.map(DbTime::get),
        lines,
        subtotal: row.subtotal.0,
        total: row.total_amount.0,
        status,
        created_at: row.invoice_date.get(),
    })
}

fn get_invoice_in(conn: &mut Conn, invoice_id: Uuid) -> Result<Option<Invoice>, StoreError> {
    let row: Option<InvoiceRow> =
        user_invoices::table.find(DbUuid(invoice_id)).select(InvoiceRow::as_select()).first(conn).optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut lines = lines_by_invoice(conn, &[row.invoice_id])?;
    let lines = lines.remove(&invoice_id).unwrap_or_default();
    invoice_from_row(row, lines).map(Some)
}

/// One invoice with its lines.
pub(crate) fn get_invoice(conn: &mut Conn, invoice_id: Uuid) -> Result<Option<Invoice>, StoreError> {
    conn.transaction(|conn| get_invoice_in(conn, invoice_id))
}

/// A user's invoices, newest first, with their lines.
pub(crate) fn list_invoices(conn: &mut Conn, user_id: &str) -> Result<Vec<Invoice>, StoreError> {
    conn.transaction(|conn| {
        let rows: Vec<InvoiceRow> = user_invoices::table
            .filter(user_invoices::user_id.eq(user_id))
            .order((user_invoices::invoice_date.desc(), user_invoices::invoice_id.desc()))
            .select(InvoiceRow::as_select())
            .load(conn)?;
        let ids: Vec<DbUuid> = rows.iter().map(|r| r.invoice_id).collect();
        let mut lines = lines_by_invoice(conn, &ids)?;
        rows.into_iter()
            .map(|row| {
                let own = lines.remove(&row.invoice_id.0).unwrap_or_default();
                invoice_from_row(row, own)
            })
            .collect()
    })
}

/// Set an invoice's status and return it.
pub(crate) fn set_invoice_status(
    conn: &mut Conn,
    invoice_id: Uuid,
    status: InvoiceStatus,
) -> Result<Invoice, StoreError> {
    write_tx(conn, |conn| {
        let updated = diesel::update(user_invoices::table.find(DbUuid(invoice_id)))
            .set(user_invoices::status.eq(status.as_str()))
            .execute(conn)?;
        if updated == 0 {
            return Err(StoreError::NotFound(format!("invoice {invoice_id}")));
        }
        get_invoice_in(conn, invoice_id)?.ok_or_else(|| StoreError::NotFound(format!("invoice {invoice_id}")))
    })
}
