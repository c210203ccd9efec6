// ops queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `ops` submodule, so every query is written once and type-checked
// against both backends.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use tally_domain::UsageKind;
use uuid::Uuid;

use super::{event_type_id, model_id, write_tx, Conn};
use crate::error::StoreError;
use crate::ops::{RunRecord, RunRow, RunStatus, VerifiedPrice};
use crate::rows::PriceRow;
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

/// A price row as selected here: [`PriceRow`]'s columns plus `verified_at`.
type VerifiedRow = (DbUuid, String, String, DbDecimal, DbTime, Option<DbTime>, bool, Option<DbTime>);

fn verified_from_row(r: VerifiedRow) -> Result<VerifiedPrice, StoreError> {
    let (id, model, kind, price, effective_from, effective_to, is_current, verified_at) = r;
    let version = super::super::price_version_from_row(PriceRow {
        id,
        model,
        kind,
        price,
        effective_from,
        effective_to,
        is_current,
    })?;
    Ok(VerifiedPrice { version, verified_at: verified_at.map(DbTime::get) })
}

/// Token and resource price versions with `verified_at`, optionally only the current ones.
fn load_verified(conn: &mut Conn, current_only: bool, id: Option<Uuid>) -> Result<Vec<VerifiedPrice>, StoreError> {
    let mut tokens = dim_token_pricing::table
        .inner_join(dim_models::table)
        .select((
            dim_token_pricing::pricing_id,
            dim_models::model_name,
            dim_token_pricing::token_type,
            dim_token_pricing::price_per_million,
            dim_token_pricing::effective_from,
            dim_token_pricing::effective_to,
            dim_token_pricing::is_current,
            dim_token_pricing::verified_at,
        ))
        .into_boxed();
    let mut resources = dim_resource_pricing::table
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
            dim_resource_pricing::verified_at,
        ))
        .into_boxed();
    if current_only {
        tokens = tokens.filter(dim_token_pricing::is_current.eq(true));
        resources = resources.filter(dim_resource_pricing::is_current.eq(true));
    }
    if let Some(id) = id {
        tokens = tokens.filter(dim_token_pricing::pricing_id.eq(DbUuid(id)));
        resources = resources.filter(dim_resource_pricing::resource_pricing_id.eq(DbUuid(id)));
    }
    let mut rows: Vec<VerifiedRow> = tokens.load(conn)?;
    rows.extend(resources.load::<VerifiedRow>(conn)?);
    let mut out = rows.into_iter().map(verified_from_row).collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| {
        (&a.version.model, &a.version.kind, a.version.effective_from).cmp(&(
            &b.version.model,
            &b.version.kind,
            b.version.effective_from,
        ))
    });
    Ok(out)
}

/// Every price version (or the current ones) with `verified_at`.
pub(crate) fn verified_prices(conn: &mut Conn, current_only: bool) -> Result<Vec<VerifiedPrice>, StoreError> {
    conn.transaction(|conn| load_verified(conn, current_only, None))
}

/// Mark one current version verified; `NotFound` / `Conflict` (closed) otherwise.
pub(crate) fn verify_price(conn: &mut Conn, pricing_id: Uuid, at: DateTime<Utc>) -> Result<VerifiedPrice, StoreError> {
    write_tx(conn, |conn| {
        let found = load_verified(conn, false, Some(pricing_id))?.into_iter().next();
        let Some(version) = found else {
            return Err(StoreError::NotFound(format!("price version {pricing_id}")));
        };
        if !version.version.is_current {
            return Err(StoreError::Conflict(format!(
                "price version {pricing_id} was closed at {}; only current prices can be verified",
                version.version.effective_to.map(|t| t.to_rfc3339()).unwrap_or_default()
            )));
        }
        let at = DbTime::new(at);
        let id = DbUuid(pricing_id);
        if version.version.kind.is_token() {
            diesel::update(dim_token_pricing::table.filter(dim_token_pricing::pricing_id.eq(id)))
                .set(dim_token_pricing::verified_at.eq(Some(at)))
                .execute(conn)?;
        } else {
            diesel::update(dim_resource_pricing::table.filter(dim_resource_pricing::resource_pricing_id.eq(id)))
                .set(dim_resource_pricing::verified_at.eq(Some(at)))
                .execute(conn)?;
        }
        Ok(VerifiedPrice { verified_at: Some(at.get()), ..version })
    })
}

/// Mark the current versions of `kinds` of `model` verified.
pub(crate) fn verify_current_prices(
    conn: &mut Conn,
    model: &str,
    kinds: &[UsageKind],
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    write_tx(conn, |conn| {
        let model_id = model_id(conn, model)?.ok_or_else(|| StoreError::NotFound(format!("model {model}")))?;
        let at = DbTime::new(at);
        let token_kinds: Vec<&str> = kinds.iter().filter(|k| k.is_token()).map(UsageKind::as_str).collect();
        let mut marked = diesel::update(
            dim_token_pricing::table
                .filter(dim_token_pricing::model_id.eq(model_id))
                .filter(dim_token_pricing::token_type.eq_any(&token_kinds))
                .filter(dim_token_pricing::is_current.eq(true)),
        )
        .set(dim_token_pricing::verified_at.eq(Some(at)))
        .execute(conn)?;
        for kind in kinds.iter().filter(|k| !k.is_token()) {
            // A resource without an event type has no price to verify.
            let Some(event_type_id) = event_type_id(conn, kind.as_str())? else { continue };
            marked += diesel::update(
                dim_resource_pricing::table
                    .filter(dim_resource_pricing::model_id.eq(model_id))
                    .filter(dim_resource_pricing::event_type_id.eq(event_type_id))
                    .filter(dim_resource_pricing::is_current.eq(true)),
            )
            .set(dim_resource_pricing::verified_at.eq(Some(at)))
            .execute(conn)?;
        }
        Ok(marked)
    })
}

/// One upsert: insert the lease, or take it over when expired or already ours. The
/// statement's row count says whether we hold it (0: the WHERE refused the update).
pub(crate) fn try_lease(
    conn: &mut Conn,
    job_id: &str,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    use crate::schema::scheduler_leases::dsl as l;
    // The upsert's `filter` (its `DO UPDATE ... WHERE`) comes from `FilterDsl`, not `QueryDsl`.
    use diesel::query_dsl::methods::FilterDsl;
    let until = DbTime::new(until);
    let now = DbTime::new(now);
    let changed = diesel::insert_into(l::scheduler_leases)
        .values((l::job_id.eq(job_id), l::holder.eq(holder), l::lease_until.eq(until)))
        .on_conflict(l::job_id)
        .do_update()
        .set((l::holder.eq(holder), l::lease_until.eq(until)))
        .filter(l::lease_until.le(now).or(l::holder.eq(holder)))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Delete `holder`'s lease on `job_id`.
pub(crate) fn release_lease(conn: &mut Conn, job_id: &str, holder: &str) -> Result<bool, StoreError> {
    use crate::schema::scheduler_leases::dsl as l;
    let deleted =
        diesel::delete(l::scheduler_leases.filter(l::job_id.eq(job_id)).filter(l::holder.eq(holder))).execute(conn)?;
    Ok(deleted == 1)
}

/// Insert a run.
pub(crate) fn start_run(conn: &mut Conn, run: &RunRecord) -> Result<(), StoreError> {
    diesel::insert_into(scheduler_runs::table).values(RunRow::from_record(run)).execute(conn)?;
    Ok(())
}

/// Finish a running run.
pub(crate) fn finish_run(
    conn: &mut Conn,
    run_id: Uuid,
    finished_at: DateTime<Utc>,
    status: RunStatus,
    message: Option<&str>,
) -> Result<(), StoreError> {
    let updated = diesel::update(
        scheduler_runs::table
            .filter(scheduler_runs::run_id.eq(DbUuid(run_id)))
            .filter(scheduler_runs::status.eq(RunStatus::Running.as_str())),
    )
    .set((
        scheduler_runs::finished_at.eq(Some(DbTime::new(finished_at))),
        scheduler_runs::status.eq(status.as_str()),
        scheduler_runs::message.eq(message),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!("running run {run_id}")));
    }
    Ok(())
}

/// Runs, newest first.
pub(crate) fn runs(conn: &mut Conn, job_id: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
    let mut q = scheduler_runs::table.select(RunRow::as_select()).into_boxed();
    if let Some(job) = job_id {
        q = q.filter(scheduler_runs::job_id.eq(job));
    }
    let rows: Vec<RunRow> = q
        .order((scheduler_runs::started_at.desc(), scheduler_runs::run_id.desc()))
        .limit(super::super::non_negative(limit))
        .load(conn)?;
    rows.into_iter().map(RunRow::into_record).collect()
}

/// The newest run of a job that was not skipped.
pub(crate) fn last_run(conn: &mut Conn, job_id: &str) -> Result<Option<RunRecord>, StoreError> {
    let row: Option<RunRow> = scheduler_runs::table
        .filter(scheduler_runs::job_id.eq(job_id))
        .filter(scheduler_runs::status.ne(RunStatus::Skipped.as_str()))
        .order((scheduler_runs::started_at.desc(), scheduler_runs::run_id.desc()))
        .select(RunRow::as_select())
        .first(conn)
        .optional()?;
    row.map(RunRow::into_record).transpose()
}

/// Fail a node's runs that are still running.
pub(crate) fn abandon_runs(conn: &mut Conn, node: &str, at: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(diesel::update(
        scheduler_runs::table
            .filter(scheduler_runs::node.eq(node))
            .filter(scheduler_runs::status.eq(RunStatus::Running.as_str())),
    )
    .set((
        scheduler_runs::finished_at.eq(Some(DbTime::new(at))),
        scheduler_runs::status.eq(RunStatus::Failed.as_str()),
        scheduler_runs::message.eq(Some("abandoned: the node restarted before the run finished")),
    ))
    .execute(conn)?)
}
