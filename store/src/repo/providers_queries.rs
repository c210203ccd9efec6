// Provider import queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and
// `postgres.rs` each include it in a `providers` submodule, so every query is written once
// and type-checked against both backends.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{add_rollup_deltas, write_batch_tx, write_tx, Conn};
use crate::error::StoreError;
use crate::providers::{
    BucketRevision, ConnectionRecord, ImportRunRecord, ImportedBucket, ProviderCostRecord, ReconciliationRow,
    RevisionOutcome, RevisionRecord, PROVIDER_IMPORT_SOURCE,
};
use crate::records::WriteOp;
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

/// Ids per `IN (...)` list.
const IDS_PER_QUERY: usize = 1_000;

/// A `provider_connections` row in column order.
type ConnectionTuple = (
    DbUuid,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    DbTime,
    Option<DbTime>,
    Option<String>,
    Option<String>,
    bool,
);

/// An `import_runs` row in column order.
type RunTuple = (
    DbUuid,
    DbUuid,
    String,
    DbTime,
    DbTime,
    DbTime,
    Option<DbTime>,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

/// An `imported_buckets` row in column order.
type BucketTuple = (DbUuid, DbUuid, DbTime, String, String, i64, DbUuid, DbTime);

/// An `import_revisions` row in column order.
type RevisionTuple = (
    DbUuid,
    Option<DbUuid>,
    DbUuid,
    DbUuid,
    DbUuid,
    i64,
    DbTime,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    DbTime,
);

/// A `provider_costs` row in column order.
type CostTuple = (DbUuid, DbTime, DbTime, String, String, String, DbDecimal, String, DbTime);

fn connection_from_tuple(t: ConnectionTuple) -> ConnectionRecord {
    let (id, provider, name, base_url, ct, nonce, hint, created, last_run, last_status, last_error, enabled) = t;
    ConnectionRecord {
        connection_id: id.0,
        provider,
        name,
        base_url,
        key_ciphertext: ct,
        key_nonce: nonce,
        key_hint: hint,
        created_at: created.get(),
        last_run_at: last_run.map(DbTime::get),
        last_status,
        last_error,
        enabled,
    }
}

fn run_from_tuple(t: RunTuple) -> ImportRunRecord {
    let (
        run_id,
        connection_id,
        trigger,
        range_from,
        range_to,
        started_at,
        finished_at,
        status,
        pages,
        buckets,
        events_new,
        events_revised,
        events_unchanged,
        skipped,
        costs,
        error,
    ) = t;
    ImportRunRecord {
        run_id: run_id.0,
        connection_id: connection_id.0,
        trigger,
        range_from: range_from.get(),
        range_to: range_to.get(),
        started_at: started_at.get(),
        finished_at: finished_at.map(DbTime::get),
        status,
        pages,
        buckets,
        events_new,
        events_revised,
        events_unchanged,
        skipped,
        costs,
        error,
    }
}

fn bucket_from_tuple(t: BucketTuple) -> ImportedBucket {
    let (event_id, connection_id, starting_at, group_key, content_hash, revision, current, imported_at) = t;
    ImportedBucket {
        event_id: event_id.0,
        connection_id: connection_id.0,
        starting_at: starting_at.get(),
        group_key,
        content_hash,
        revision,
        current_event_id: current.0,
        imported_at: imported_at.get(),
    }
}

fn revision_from_tuple(t: RevisionTuple) -> RevisionRecord {
    let (id, run_id, bucket, old_id, new_id, revision, start, group, old_hash, new_hash, old_q, new_q, status, reason, at) =
        t;
    RevisionRecord {
        revision_id: id.0,
        run_id: run_id.map(|r| r.0),
        bucket_event_id: bucket.0,
        old_event_id: old_id.0,
        new_event_id: new_id.0,
        revision,
        starting_at: start.get(),
        group_key: group,
        old_hash,
        new_hash,
        old_quantities: old_q,
        new_quantities: new_q,
        status,
        reason,
        at: at.get(),
    }
}

/// The stored text of an optional natural-key part (`''` for none).
fn key_text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// An optional natural-key part from its stored text.
fn key_value(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

fn cost_from_tuple(t: CostTuple) -> ProviderCostRecord {
    let (connection_id, start, end, model, description, workspace_id, amount, currency, imported_at) = t;
    ProviderCostRecord {
        connection_id: connection_id.0,
        starting_at: start.get(),
        ending_at: end.get(),
        model: key_value(model),
        description: key_value(description),
        workspace_id: key_value(workspace_id),
        amount: amount.0,
        currency,
        imported_at: imported_at.get(),
    }
}

/// The columns of `provider_connections`, in [`ConnectionTuple`] order.
macro_rules! connection_columns {
    () => {
        (
            provider_connections::connection_id,
            provider_connections::provider,
            provider_connections::name,
            provider_connections::base_url,
            provider_connections::key_ciphertext,
            provider_connections::key_nonce,
            provider_connections::key_hint,
            provider_connections::created_at,
            provider_connections::last_run_at,
            provider_connections::last_status,
            provider_connections::last_error,
            provider_connections::enabled,
        )
    };
}

/// The columns of `import_runs`, in [`RunTuple`] order.
macro_rules! run_columns {
    () => {
        (
            import_runs::run_id,
            import_runs::connection_id,
            import_runs::run_trigger,
            import_runs::range_from,
            import_runs::range_to,
            import_runs::started_at,
            import_runs::finished_at,
            import_runs::status,
            import_runs::pages,
            import_runs::buckets,
            import_runs::events_new,
            import_runs::events_revised,
            import_runs::events_unchanged,
            import_runs::skipped,
            import_runs::costs,
            import_runs::error,
        )
    };
}

/// The columns of `imported_buckets`, in [`BucketTuple`] order.
macro_rules! bucket_columns {
    () => {
        (
            imported_buckets::event_id,
            imported_buckets::connection_id,
            imported_buckets::starting_at,
            imported_buckets::group_key,
            imported_buckets::content_hash,
            imported_buckets::revision,
            imported_buckets::current_event_id,
            imported_buckets::imported_at,
        )
    };
}

// ---------------------------------------------------------------- connections

/// Insert a connection; `Conflict` when the name is taken.
pub(crate) fn create_connection(conn: &mut Conn, c: &ConnectionRecord) -> Result<ConnectionRecord, StoreError> {
    write_tx(conn, |conn| {
        let taken = provider_connections::table
            .filter(provider_connections::name.eq(&c.name))
            .count()
            .get_result::<i64>(conn)?;
        if taken > 0 {
            return Err(StoreError::Conflict(format!("a provider connection named {:?} exists", c.name)));
        }
        diesel::insert_into(provider_connections::table)
            .values((
                provider_connections::connection_id.eq(DbUuid(c.connection_id)),
                provider_connections::provider.eq(&c.provider),
                provider_connections::name.eq(&c.name),
                provider_connections::base_url.eq(&c.base_url),
                provider_connections::key_ciphertext.eq(&c.key_ciphertext),
                provider_connections::key_nonce.eq(&c.key_nonce),
                provider_connections::key_hint.eq(&c.key_hint),
                provider_connections::created_at.eq(DbTime::new(c.created_at)),
                provider_connections::last_run_at.eq(c.last_run_at.map(DbTime::new)),
                provider_connections::last_status.eq(&c.last_status),
                provider_connections::last_error.eq(&c.last_error),
                provider_connections::enabled.eq(c.enabled),
            ))
            .execute(conn)?;
        get_connection(conn, c.connection_id)?
            .ok_or_else(|| StoreError::NotFound(format!("provider connection {}", c.connection_id)))
    })
}

/// One connection.
pub(crate) fn get_connection(conn: &mut Conn, id: Uuid) -> Result<Option<ConnectionRecord>, StoreError> {
    let row: Option<ConnectionTuple> =
        provider_connections::table.find(DbUuid(id)).select(connection_columns!()).first(conn).optional()?;
    Ok(row.map(connection_from_tuple))
}

/// Every connection, oldest first.
pub(crate) fn list_connections(conn: &mut Conn) -> Result<Vec<ConnectionRecord>, StoreError> {
    let rows: Vec<ConnectionTuple> = provider_connections::table
        .select(connection_columns!())
        .order((provider_connections::created_at.asc(), provider_connections::connection_id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(connection_from_tuple).collect())
}

/// Delete a connection, its runs and its costs.
pub(crate) fn delete_connection(conn: &mut Conn, id: Uuid) -> Result<ConnectionRecord, StoreError> {
    write_tx(conn, |conn| {
        let c = get_connection(conn, id)?.ok_or_else(|| StoreError::NotFound(format!("provider connection {id}")))?;
        // Explicit, not only ON DELETE CASCADE: the persister's SQLite connection does not
        // enforce foreign keys, and other connections may not either.
        diesel::delete(provider_costs::table.filter(provider_costs::connection_id.eq(DbUuid(id)))).execute(conn)?;
        diesel::delete(import_runs::table.filter(import_runs::connection_id.eq(DbUuid(id)))).execute(conn)?;
        diesel::delete(provider_connections::table.find(DbUuid(id))).execute(conn)?;
        Ok(c)
    })
}

/// Replace encrypted keys, all or nothing.
pub(crate) fn replace_connection_keys(conn: &mut Conn, keys: &[(Uuid, Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        for (id, ct, nonce) in keys {
            let n = diesel::update(provider_connections::table.find(DbUuid(*id)))
                .set((provider_connections::key_ciphertext.eq(ct), provider_connections::key_nonce.eq(nonce)))
                .execute(conn)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("provider connection {id}")));
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- runs

/// Insert a run (as started).
pub(crate) fn insert_run(conn: &mut Conn, r: &ImportRunRecord) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        diesel::insert_into(import_runs::table)
            .values((
                import_runs::run_id.eq(DbUuid(r.run_id)),
                import_runs::connection_id.eq(DbUuid(r.connection_id)),
                import_runs::run_trigger.eq(&r.trigger),
                import_runs::range_from.eq(DbTime::new(r.range_from)),
                import_runs::range_to.eq(DbTime::new(r.range_to)),
                import_runs::started_at.eq(DbTime::new(r.started_at)),
                import_runs::finished_at.eq(r.finished_at.map(DbTime::new)),
                import_runs::status.eq(&r.status),
                import_runs::pages.eq(r.pages),
                import_runs::buckets.eq(r.buckets),
                import_runs::events_new.eq(r.events_new),
                import_runs::events_revised.eq(r.events_revised),
                import_runs::events_unchanged.eq(r.events_unchanged),
                import_runs::skipped.eq(r.skipped),
                import_runs::costs.eq(r.costs),
                import_runs::error.eq(&r.error),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Update a run's outcome and its connection's last run.
pub(crate) fn finish_run(conn: &mut Conn, r: &ImportRunRecord) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        let n = diesel::update(import_runs::table.find(DbUuid(r.run_id)))
            .set((
                import_runs::finished_at.eq(r.finished_at.map(DbTime::new)),
                import_runs::status.eq(&r.status),
                import_runs::pages.eq(r.pages),
                import_runs::buckets.eq(r.buckets),
                import_runs::events_new.eq(r.events_new),
                import_runs::events_revised.eq(r.events_revised),
                import_runs::events_unchanged.eq(r.events_unchanged),
                import_runs::skipped.eq(r.skipped),
                import_runs::costs.eq(r.costs),
                import_runs::error.eq(&r.error),
            ))
            .execute(conn)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("import run {}", r.run_id)));
        }
        diesel::update(provider_connections::table.find(DbUuid(r.connection_id)))
            .set((
                provider_connections::last_run_at.eq(r.finished_at.map(DbTime::new)),
                provider_connections::last_status.eq(Some(&r.status)),
                provider_connections::last_error.eq(&r.error),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// A connection's runs, newest first.
pub(crate) fn list_runs(conn: &mut Conn, connection_id: Uuid, limit: i64) -> Result<Vec<ImportRunRecord>, StoreError> {
    let rows: Vec<RunTuple> = import_runs::table
        .filter(import_runs::connection_id.eq(DbUuid(connection_id)))
        .select(run_columns!())
        .order((import_runs::started_at.desc(), import_runs::run_id.desc()))
        .limit(limit.max(0))
        .load(conn)?;
    Ok(rows.into_iter().map(run_from_tuple).collect())
}

// ---------------------------------------------------------------- buckets and costs

/// Stored buckets among `event_ids`.
pub(crate) fn imported_buckets(conn: &mut Conn, event_ids: &[Uuid]) -> Result<Vec<ImportedBucket>, StoreError> {
    let mut out = Vec::new();
    for chunk in event_ids.chunks(IDS_PER_QUERY) {
        let ids: Vec<DbUuid> = chunk.iter().copied().map(DbUuid).collect();
        let rows: Vec<BucketTuple> =
            imported_buckets::table.filter(imported_buckets::event_id.eq_any(ids)).select(bucket_columns!()).load(conn)?;
        out.extend(rows.into_iter().map(bucket_from_tuple));
    }
    Ok(out)
}

/// Insert buckets, skipping those already recorded.
pub(crate) fn record_imported_buckets(conn: &mut Conn, buckets: &[ImportedBucket]) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        for b in buckets {
            insert_skipping_existing!(
                imported_buckets::table,
                (
                    imported_buckets::event_id.eq(DbUuid(b.event_id)),
                    imported_buckets::connection_id.eq(DbUuid(b.connection_id)),
                    imported_buckets::starting_at.eq(DbTime::new(b.starting_at)),
                    imported_buckets::group_key.eq(&b.group_key),
                    imported_buckets::content_hash.eq(&b.content_hash),
                    imported_buckets::revision.eq(b.revision),
                    imported_buckets::current_event_id.eq(DbUuid(b.current_event_id)),
                    imported_buckets::imported_at.eq(DbTime::new(b.imported_at)),
                )
            )
            .execute(conn)?;
        }
        Ok(())
    })
}

/// Insert or replace costs by natural key.
pub(crate) fn upsert_costs(conn: &mut Conn, costs: &[ProviderCostRecord]) -> Result<usize, StoreError> {
    write_tx(conn, |conn| {
        for c in costs {
            diesel::insert_into(provider_costs::table)
                .values((
                    provider_costs::connection_id.eq(DbUuid(c.connection_id)),
                    provider_costs::starting_at.eq(DbTime::new(c.starting_at)),
                    provider_costs::ending_at.eq(DbTime::new(c.ending_at)),
                    provider_costs::model.eq(key_text(&c.model)),
                    provider_costs::description.eq(key_text(&c.description)),
                    provider_costs::workspace_id.eq(key_text(&c.workspace_id)),
                    provider_costs::amount.eq(DbDecimal(c.amount)),
                    provider_costs::currency.eq(&c.currency),
                    provider_costs::imported_at.eq(DbTime::new(c.imported_at)),
                ))
                .on_conflict((
                    provider_costs::connection_id,
                    provider_costs::starting_at,
                    provider_costs::model,
                    provider_costs::description,
                    provider_costs::workspace_id,
                ))
                .do_update()
                .set((
                    provider_costs::ending_at.eq(DbTime::new(c.ending_at)),
                    provider_costs::amount.eq(DbDecimal(c.amount)),
                    provider_costs::currency.eq(&c.currency),
                    provider_costs::imported_at.eq(DbTime::new(c.imported_at)),
                ))
                .execute(conn)?;
        }
        Ok(costs.len())
    })
}

/// Costs of a connection starting in `[from, to)`.
pub(crate) fn costs(
    conn: &mut Conn,
    connection_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ProviderCostRecord>, StoreError> {
    let rows: Vec<CostTuple> = provider_costs::table
        .filter(provider_costs::connection_id.eq(DbUuid(connection_id)))
        .filter(provider_costs::starting_at.ge(DbTime::new(from)))
        .filter(provider_costs::starting_at.lt(DbTime::new(to)))
        .order((
            provider_costs::starting_at.asc(),
            provider_costs::model.asc(),
            provider_costs::description.asc(),
            provider_costs::workspace_id.asc(),
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(cost_from_tuple).collect())
}

// ---------------------------------------------------------------- revisions

/// The stored event a bucket currently stands for: seq, user, model id, key, task,
/// successful, occurred at, cost total.
type OldEvent = (i64, String, i64, Option<DbUuid>, Option<String>, bool, DbTime, DbDecimal);

/// Replace a bucket's current event by its revision (see `Store::revise_imported_bucket`).
pub(crate) fn revise_bucket(conn: &mut Conn, rev: &BucketRevision) -> Result<RevisionOutcome, StoreError> {
    write_tx(conn, |conn| {
        let bucket_id = rev.bucket.event_id;
        let stored: BucketTuple = imported_buckets::table
            .find(DbUuid(bucket_id))
            .select(bucket_columns!())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("imported bucket {bucket_id}")))?;
        let stored = bucket_from_tuple(stored);
        if stored.content_hash == rev.bucket.content_hash {
            return Ok(RevisionOutcome::Unchanged);
        }
        let old_event: Option<OldEvent> = api_events::table
            .filter(api_events::event_id.eq(DbUuid(stored.current_event_id)))
            .select((
                api_events::event_seq,
                api_events::user_id,
                api_events::model_id,
                api_events::key_id,
                api_events::task,
                api_events::successful,
                api_events::occurred_at,
                api_events::cost_total,
            ))
            .first(conn)
            .optional()?;
        let audit = |status: &str, reason: Option<String>| RevisionRecord {
            revision_id: Uuid::now_v7(),
            run_id: rev.run_id,
            bucket_event_id: bucket_id,
            old_event_id: stored.current_event_id,
            new_event_id: rev.usage.event_id,
            revision: rev.bucket.revision,
            starting_at: rev.bucket.starting_at,
            group_key: rev.bucket.group_key.clone(),
            old_hash: stored.content_hash.clone(),
            new_hash: rev.bucket.content_hash.clone(),
            old_quantities: rev.old_quantities.clone(),
            new_quantities: rev.new_quantities.clone(),
            status: status.to_string(),
            reason,
            at: Utc::now(),
        };
        if let Some((seq, ..)) = &old_event {
            let invoiced = user_invoice_line_item::table
                .filter(user_invoice_line_item::event_seq.eq(*seq))
                .filter(user_invoice_line_item::invoice_id.is_not_null())
                .count()
                .get_result::<i64>(conn)?
                + resource_invoice_line_item::table
                    .filter(resource_invoice_line_item::event_seq.eq(*seq))
                    .filter(resource_invoice_line_item::invoice_id.is_not_null())
                    .count()
                    .get_result::<i64>(conn)?;
            if invoiced > 0 {
                let reason = format!(
                    "event {} of bucket {bucket_id} is invoiced; its revision (content {}) was not applied",
                    stored.current_event_id, rev.bucket.content_hash
                );
                // Once per revised content: later runs that see the same content add nothing.
                let already = import_revisions::table
                    .filter(import_revisions::bucket_event_id.eq(DbUuid(bucket_id)))
                    .filter(import_revisions::new_hash.eq(&rev.bucket.content_hash))
                    .filter(import_revisions::status.eq("refused"))
                    .count()
                    .get_result::<i64>(conn)?;
                if already == 0 {
                    insert_revision(conn, &audit("refused", Some(reason.clone())))?;
                }
                return Ok(RevisionOutcome::Refused(reason));
            }
        }
        if let Some((seq, user_id, model_id, key_id, task, successful, occurred_at, total)) = old_event {
            remove_event(conn, seq, &user_id, model_id, key_id, task.as_deref(), successful, occurred_at, total.0)?;
        }
        let outcome = write_batch_tx(conn, &[WriteOp::Usage(rev.usage.clone())])?;
        if !outcome.inserted_events.contains(&rev.usage.event_id) {
            return Err(StoreError::Conflict(format!(
                "revised event {} of bucket {bucket_id} already exists",
                rev.usage.event_id
            )));
        }
        let n = diesel::update(imported_buckets::table.find(DbUuid(bucket_id)))
            .set((
                imported_buckets::connection_id.eq(DbUuid(rev.bucket.connection_id)),
                imported_buckets::content_hash.eq(&rev.bucket.content_hash),
                imported_buckets::revision.eq(rev.bucket.revision),
                imported_buckets::current_event_id.eq(DbUuid(rev.usage.event_id)),
                imported_buckets::imported_at.eq(DbTime::new(rev.bucket.imported_at)),
            ))
            .execute(conn)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!("imported bucket {bucket_id} changed concurrently")));
        }
        insert_revision(conn, &audit("applied", None))?;
        Ok(RevisionOutcome::Applied)
    })
}

/// Remove a stored event exactly: subtract it from the rollups (its own figures, negated),
/// then delete its lines and its row.
#[allow(clippy::too_many_arguments)]
fn remove_event(
    conn: &mut Conn,
    seq: i64,
    user_id: &str,
    model_id: i64,
    key_id: Option<DbUuid>,
    task: Option<&str>,
    successful: bool,
    occurred_at: DbTime,
    total: Decimal,
) -> Result<(), StoreError> {
    let mut lines: Vec<(String, Decimal, Decimal)> = user_invoice_line_item::table
        .filter(user_invoice_line_item::event_seq.eq(seq))
        .select((user_invoice_line_item::token_type, user_invoice_line_item::quantity, user_invoice_line_item::amount))
        .load::<(String, DbDecimal, DbDecimal)>(conn)?
        .into_iter()
        .map(|(k, q, a)| (k, q.0, a.0))
        .collect();
    lines.extend(
        resource_invoice_line_item::table
            .inner_join(dim_event_types::table)
            .filter(resource_invoice_line_item::event_seq.eq(seq))
            .select((
                dim_event_types::event_name,
                resource_invoice_line_item::quantity,
                resource_invoice_line_item::amount,
            ))
            .load::<(String, DbDecimal, DbDecimal)>(conn)?
            .into_iter()
            .map(|(k, q, a)| (k, q.0, a.0)),
    );
    let day = super::super::utc_day(occurred_at.get());
    let mut deltas = super::super::RollupDeltas::new();
    super::super::add_event_to_rollups(
        &mut deltas,
        day,
        user_id,
        model_id,
        key_id.map(|k| k.0),
        task,
        successful,
        &lines,
        total,
    );
    for d in deltas.values_mut() {
        d.requests = -d.requests;
        d.failed = -d.failed;
        d.quantity = -d.quantity;
        d.amount = -d.amount;
    }
    add_rollup_deltas(conn, &deltas)?;
    // Rows the event alone made are now all zero: drop them, so the rollups equal a rebuild.
    for month in deltas.keys().map(|k| k.month).collect::<std::collections::BTreeSet<_>>() {
        diesel::delete(
            usage_rollups::table.filter(usage_rollups::month.eq(month)).filter(usage_rollups::requests.eq(0i64)),
        )
        .execute(conn)?;
    }
    diesel::delete(user_invoice_line_item::table.filter(user_invoice_line_item::event_seq.eq(seq))).execute(conn)?;
    diesel::delete(resource_invoice_line_item::table.filter(resource_invoice_line_item::event_seq.eq(seq)))
        .execute(conn)?;
    diesel::delete(api_events::table.filter(api_events::event_seq.eq(seq))).execute(conn)?;
    Ok(())
}

fn insert_revision(conn: &mut Conn, r: &RevisionRecord) -> Result<(), StoreError> {
    diesel::insert_into(import_revisions::table)
        .values((
            import_revisions::revision_id.eq(DbUuid(r.revision_id)),
            import_revisions::run_id.eq(r.run_id.map(DbUuid)),
            import_revisions::bucket_event_id.eq(DbUuid(r.bucket_event_id)),
            import_revisions::old_event_id.eq(DbUuid(r.old_event_id)),
            import_revisions::new_event_id.eq(DbUuid(r.new_event_id)),
            import_revisions::revision.eq(r.revision),
            import_revisions::starting_at.eq(DbTime::new(r.starting_at)),
            import_revisions::group_key.eq(&r.group_key),
            import_revisions::old_hash.eq(&r.old_hash),
            import_revisions::new_hash.eq(&r.new_hash),
            import_revisions::old_quantities.eq(&r.old_quantities),
            import_revisions::new_quantities.eq(&r.new_quantities),
            import_revisions::status.eq(&r.status),
            import_revisions::reason.eq(&r.reason),
            import_revisions::at.eq(DbTime::new(r.at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Audit rows, oldest first.
pub(crate) fn revisions(conn: &mut Conn, bucket: Option<Uuid>) -> Result<Vec<RevisionRecord>, StoreError> {
    let mut q = import_revisions::table.into_boxed();
    if let Some(b) = bucket {
        q = q.filter(import_revisions::bucket_event_id.eq(DbUuid(b)));
    }
    let rows: Vec<RevisionTuple> = q.order((import_revisions::at.asc(), import_revisions::revision_id.asc())).load(conn)?;
    Ok(rows.into_iter().map(revision_from_tuple).collect())
}

// ---------------------------------------------------------------- reconciliation

/// Reconciliation rows (see `Store::reconciliation`). Sums in Rust over the range's events of
/// the provider's models: exact on both backends, and UTC days cut the same way.
pub(crate) fn reconciliation(
    conn: &mut Conn,
    provider: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ReconciliationRow>, StoreError> {
    conn.transaction(|conn| {
        let models: HashMap<i64, String> = dim_models::table
            .filter(dim_models::provider.eq(provider))
            .select((dim_models::model_id, dim_models::model_name))
            .load::<(i64, String)>(conn)?
            .into_iter()
            .collect();
        let model_ids: Vec<i64> = models.keys().copied().collect();
        let (from_t, to_t) = (DbTime::new(from), DbTime::new(to));
        let mut rows: BTreeMap<(chrono::NaiveDate, Option<String>), ReconciliationRow> = BTreeMap::new();

        let events: Vec<(i64, DbTime, String, DbDecimal)> = api_events::table
            .filter(api_events::model_id.eq_any(&model_ids))
            .filter(api_events::occurred_at.ge(from_t))
            .filter(api_events::occurred_at.lt(to_t))
            .select((api_events::model_id, api_events::occurred_at, api_events::source, api_events::cost_total))
            .load(conn)?;
        for (model_id, at, source, total) in events {
            let model = models.get(&model_id).cloned();
            let r = rows
                .entry((at.get().date_naive(), model.clone()))
                .or_insert_with(|| ReconciliationRow { day: Some(at.get().date_naive()), model, ..Default::default() });
            if source == PROVIDER_IMPORT_SOURCE {
                r.reported_events += 1;
                r.tally_priced_cost += total.0;
            } else {
                r.metered_events += 1;
                r.metered_cost += total.0;
            }
        }
        let mut lines: Vec<(i64, DbTime, String, String, DbDecimal)> = user_invoice_line_item::table
            .inner_join(api_events::table)
            .filter(api_events::model_id.eq_any(&model_ids))
            .filter(api_events::occurred_at.ge(from_t))
            .filter(api_events::occurred_at.lt(to_t))
            .select((
                api_events::model_id,
                api_events::occurred_at,
                api_events::source,
                user_invoice_line_item::token_type,
                user_invoice_line_item::quantity,
            ))
            .load(conn)?;
        lines.extend(
            resource_invoice_line_item::table
                .inner_join(api_events::table)
                .inner_join(dim_event_types::table)
                .filter(api_events::model_id.eq_any(&model_ids))
                .filter(api_events::occurred_at.ge(from_t))
                .filter(api_events::occurred_at.lt(to_t))
                .select((
                    api_events::model_id,
                    api_events::occurred_at,
                    api_events::source,
                    dim_event_types::event_name,
                    resource_invoice_line_item::quantity,
                ))
                .load::<(i64, DbTime, String, String, DbDecimal)>(conn)?,
        );
        for (model_id, at, source, kind, quantity) in lines {
            let model = models.get(&model_id).cloned();
            let r = rows
                .entry((at.get().date_naive(), model.clone()))
                .or_insert_with(|| ReconciliationRow { day: Some(at.get().date_naive()), model, ..Default::default() });
            let side = if source == PROVIDER_IMPORT_SOURCE { &mut r.reported } else { &mut r.metered };
            *side.entry(kind).or_default() += quantity.0;
        }

        let connections: Vec<DbUuid> = provider_connections::table
            .filter(provider_connections::provider.eq(provider))
            .select(provider_connections::connection_id)
            .load(conn)?;
        let costs: Vec<(DbTime, String, DbDecimal)> = provider_costs::table
            .filter(provider_costs::connection_id.eq_any(&connections))
            .filter(provider_costs::starting_at.ge(from_t))
            .filter(provider_costs::starting_at.lt(to_t))
            .select((provider_costs::starting_at, provider_costs::model, provider_costs::amount))
            .load(conn)?;
        for (at, model, amount) in costs {
            let model = key_value(model);
            let r = rows
                .entry((at.get().date_naive(), model.clone()))
                .or_insert_with(|| ReconciliationRow { day: Some(at.get().date_naive()), model, ..Default::default() });
            *r.reported_cost.get_or_insert(Decimal::ZERO) += amount.0;
        }
        // Model None sorts first in the map's key order; the contract lists it last in its day.
        let mut out: Vec<ReconciliationRow> = rows.into_values().collect();
        out.sort_by(|a, b| (a.day, a.model.is_none(), &a.model).cmp(&(b.day, b.model.is_none(), &b.model)));
        Ok(out)
    })
}
