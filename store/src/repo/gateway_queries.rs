// Gateway queries (virtual keys, budgets, gateway calls). Like `queries.rs`, not a module
// of its own: `sqlite.rs` and `postgres.rs` each include it in a `gateway` submodule, so
// every query is written once and type-checked against both backends.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{write_tx, Conn};
use crate::error::StoreError;
use crate::gateway::{BudgetRecord, BudgetScope, GatewayCallCost, KeyPatch, KeyRecord};
use crate::rows::{BudgetAlertRow, BudgetRow, KeyRow};
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

fn models_to_text(models: &Option<Vec<String>>) -> Result<Option<String>, StoreError> {
    models
        .as_ref()
        .map(|m| serde_json::to_string(m).map_err(|e| StoreError::Invalid(format!("allowed models: {e}"))))
        .transpose()
}

fn key_from_row(r: KeyRow) -> Result<KeyRecord, StoreError> {
    let allowed_models = r
        .allowed_models
        .as_deref()
        .map(|t| {
            serde_json::from_str::<Vec<String>>(t)
                .map_err(|e| StoreError::Database(format!("stored allowed_models of key {} is not a list: {e}", r.key_id.0)))
        })
        .transpose()?;
    Ok(KeyRecord {
        key_id: r.key_id.0,
        public_id: r.public_id,
        secret_hash: r.secret_hash,
        user_id: r.user_id,
        name: r.name,
        allowed_models,
        expires_at: r.expires_at.map(DbTime::get),
        rpm_limit: r.rpm_limit,
        created_at: r.created_at.get(),
        revoked_at: r.revoked_at.map(DbTime::get),
    })
}

fn budget_from_row(r: BudgetRow) -> Result<BudgetRecord, StoreError> {
    let scope = BudgetScope::parse(&r.scope, &r.scope_id)
        .ok_or_else(|| StoreError::Database(format!("budget {} has a bad scope {}:{}", r.budget_id.0, r.scope, r.scope_id)))?;
    Ok(BudgetRecord {
        budget_id: r.budget_id.0,
        scope,
        period: r.period,
        max_budget: r.max_budget.0,
        alert_threshold: r.alert_threshold.map(|d| d.0),
        timezone: r.timezone,
        enabled: r.enabled,
        created_at: r.created_at.get(),
        updated_at: r.updated_at.get(),
    })
}

/// Insert a key; its user must exist (`NotFound`), a taken public id is a `Conflict`.
pub(crate) fn create_key(conn: &mut Conn, key: &KeyRecord) -> Result<KeyRecord, StoreError> {
    let row = KeyRow {
        key_id: DbUuid(key.key_id),
        public_id: key.public_id.clone(),
        secret_hash: key.secret_hash.clone(),
        user_id: key.user_id.clone(),
        name: key.name.clone(),
        allowed_models: models_to_text(&key.allowed_models)?,
        expires_at: key.expires_at.map(DbTime::new),
        rpm_limit: key.rpm_limit,
        created_at: DbTime::new(key.created_at),
        revoked_at: key.revoked_at.map(DbTime::new),
    };
    write_tx(conn, |conn| {
        let user: Option<String> =
            dim_users::table.find(&key.user_id).select(dim_users::user_id).first(conn).optional()?;
        if user.is_none() {
            return Err(StoreError::NotFound(format!("user {}", key.user_id)));
        }
        diesel::insert_into(virtual_keys::table).values(&row).execute(conn)?;
        Ok(())
    })?;
    key_from_row(row)
}

/// One key by id.
pub(crate) fn get_key(conn: &mut Conn, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
    let row: Option<KeyRow> =
        virtual_keys::table.find(DbUuid(key_id)).select(KeyRow::as_select()).first(conn).optional()?;
    row.map(key_from_row).transpose()
}

/// One key by its public id (the gateway's lookup).
pub(crate) fn key_by_public_id(conn: &mut Conn, public_id: &str) -> Result<Option<KeyRecord>, StoreError> {
    let row: Option<KeyRow> = virtual_keys::table
        .filter(virtual_keys::public_id.eq(public_id))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?;
    row.map(key_from_row).transpose()
}

/// Keys of one user (or all), oldest first.
pub(crate) fn list_keys(conn: &mut Conn, user_id: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
    let mut q = virtual_keys::table.select(KeyRow::as_select()).into_boxed();
    if let Some(u) = user_id {
        q = q.filter(virtual_keys::user_id.eq(u));
    }
    let rows: Vec<KeyRow> = q.order((virtual_keys::created_at.asc(), virtual_keys::key_id.asc())).load(conn)?;
    rows.into_iter().map(key_from_row).collect()
}

/// Apply a patch; `NotFound` for an unknown key. Returns the key as stored.
pub(crate) fn update_key(conn: &mut Conn, key_id: Uuid, patch: &KeyPatch) -> Result<KeyRecord, StoreError> {
    write_tx(conn, |conn| {
        let id = DbUuid(key_id);
        let mut row: KeyRow = virtual_keys::table
            .find(id)
            .select(KeyRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("key {key_id}")))?;
        if let Some(name) = &patch.name {
            row.name = name.clone();
        }
        if let Some(models) = &patch.allowed_models {
            row.allowed_models = models_to_text(models)?;
        }
        if let Some(expires) = patch.expires_at {
            row.expires_at = expires.map(DbTime::new);
        }
        if let Some(rpm) = patch.rpm_limit {
            row.rpm_limit = rpm;
        }
        diesel::update(virtual_keys::table.find(id))
            .set((
                virtual_keys::name.eq(&row.name),
                virtual_keys::allowed_models.eq(&row.allowed_models),
                virtual_keys::expires_at.eq(row.expires_at),
                virtual_keys::rpm_limit.eq(row.rpm_limit),
            ))
            .execute(conn)?;
        key_from_row(row)
    })
}

/// Revoke a key (idempotent: the first revocation instant is kept). `NotFound` for an unknown key.
pub(crate) fn revoke_key(conn: &mut Conn, key_id: Uuid, at: DateTime<Utc>) -> Result<KeyRecord, StoreError> {
    write_tx(conn, |conn| {
        let id = DbUuid(key_id);
        diesel::update(virtual_keys::table.find(id).filter(virtual_keys::revoked_at.is_null()))
            .set(virtual_keys::revoked_at.eq(Some(DbTime::new(at))))
            .execute(conn)?;
        let row: KeyRow = virtual_keys::table
            .find(id)
            .select(KeyRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("key {key_id}")))?;
        key_from_row(row)
    })
}

/// Replace a live key's secret hash (rotation). Revoked or unknown key: `Conflict` / `NotFound`.
pub(crate) fn rotate_key(conn: &mut Conn, key_id: Uuid, secret_hash: &str) -> Result<KeyRecord, StoreError> {
    write_tx(conn, |conn| {
        let id = DbUuid(key_id);
        let row: KeyRow = virtual_keys::table
            .find(id)
            .select(KeyRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("key {key_id}")))?;
        if row.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!("key {key_id} is revoked")));
        }
        diesel::update(virtual_keys::table.find(id)).set(virtual_keys::secret_hash.eq(secret_hash)).execute(conn)?;
        key_from_row(KeyRow { secret_hash: secret_hash.to_string(), ..row })
    })
}

/// Insert or update the budget of `(scope, period)`; an update keeps the stored id and
/// creation instant. Returns the budget as stored.
pub(crate) fn upsert_budget(conn: &mut Conn, b: &BudgetRecord) -> Result<BudgetRecord, StoreError> {
    write_tx(conn, |conn| {
        let scope = b.scope.kind();
        let scope_id = b.scope.id();
        let existing: Option<BudgetRow> = budgets::table
            .filter(budgets::scope.eq(scope))
            .filter(budgets::scope_id.eq(&scope_id))
            .filter(budgets::period.eq(&b.period))
            .select(BudgetRow::as_select())
            .first(conn)
            .optional()?;
        let row = BudgetRow {
            budget_id: DbUuid(existing.as_ref().map_or(b.budget_id, |e| e.budget_id.0)),
            scope: scope.to_string(),
            scope_id,
            period: b.period.clone(),
            max_budget: DbDecimal(b.max_budget),
            alert_threshold: b.alert_threshold.map(DbDecimal),
            timezone: b.timezone.clone(),
            enabled: b.enabled,
            created_at: existing.as_ref().map_or(DbTime::new(b.created_at), |e| e.created_at),
            updated_at: DbTime::new(b.updated_at),
        };
        if existing.is_some() {
            diesel::update(budgets::table.find(row.budget_id))
                .set((
                    budgets::max_budget.eq(row.max_budget),
                    budgets::alert_threshold.eq(row.alert_threshold),
                    budgets::timezone.eq(&row.timezone),
                    budgets::enabled.eq(row.enabled),
                    budgets::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
        } else {
            diesel::insert_into(budgets::table).values(&row).execute(conn)?;
        }
        budget_from_row(row)
    })
}

/// Budgets of the given scopes, by scope then period.
pub(crate) fn budgets_for(conn: &mut Conn, scopes: &[BudgetScope]) -> Result<Vec<BudgetRecord>, StoreError> {
    let mut out = Vec::new();
    for s in scopes {
        let rows: Vec<BudgetRow> = budgets::table
            .filter(budgets::scope.eq(s.kind()))
            .filter(budgets::scope_id.eq(s.id()))
            .order(budgets::period.asc())
            .select(BudgetRow::as_select())
            .load(conn)?;
        for r in rows {
            out.push(budget_from_row(r)?);
        }
    }
    Ok(out)
}

/// One budget by id.
pub(crate) fn get_budget(conn: &mut Conn, budget_id: Uuid) -> Result<Option<BudgetRecord>, StoreError> {
    let row: Option<BudgetRow> =
        budgets::table.find(DbUuid(budget_id)).select(BudgetRow::as_select()).first(conn).optional()?;
    row.map(budget_from_row).transpose()
}

/// Delete the budget of `(scope, period)`; returns it, `NotFound` when there is none.
pub(crate) fn delete_budget(conn: &mut Conn, scope: &BudgetScope, period: &str) -> Result<BudgetRecord, StoreError> {
    write_tx(conn, |conn| {
        let row: BudgetRow = budgets::table
            .filter(budgets::scope.eq(scope.kind()))
            .filter(budgets::scope_id.eq(scope.id()))
            .filter(budgets::period.eq(period))
            .select(BudgetRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("{} budget of {} {}", period, scope.kind(), scope.id())))?;
        diesel::delete(budgets::table.find(row.budget_id)).execute(conn)?;
        budget_from_row(row)
    })
}

/// Gateway calls of a scope in `[from, to)` with their exact costs (from `api_events`).
pub(crate) fn gateway_costs(
    conn: &mut Conn,
    scope: &BudgetScope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<GatewayCallCost>, StoreError> {
    let mut q = gateway_requests::table
        .left_join(api_events::table.on(api_events::event_id.eq(gateway_requests::event_id)))
        .filter(gateway_requests::occurred_at.ge(DbTime::new(from)))
        .filter(gateway_requests::occurred_at.lt(DbTime::new(to)))
        .select((
            gateway_requests::key_id,
            gateway_requests::model,
            gateway_requests::provider,
            gateway_requests::total_tokens,
            api_events::cost_total.nullable(),
            gateway_requests::occurred_at,
        ))
        .into_boxed();
    q = match scope {
        BudgetScope::Key(k) => q.filter(gateway_requests::key_id.eq(DbUuid(*k))),
        BudgetScope::User(u) => q.filter(gateway_requests::user_id.eq(u.clone())),
    };
    let rows: Vec<(DbUuid, String, String, i64, Option<DbDecimal>, DbTime)> = q.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(key_id, model, provider, total_tokens, cost, at)| GatewayCallCost {
            key_id: key_id.0,
            model,
            provider,
            total_tokens,
            cost: cost.map_or(Decimal::ZERO, |c| c.0),
            occurred_at: at.get(),
        })
        .collect())
}

/// Exact spend of a scope in `[from, to)`: the sum of its gateway calls' costs.
pub(crate) fn gateway_spend(
    conn: &mut Conn,
    scope: &BudgetScope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Decimal, StoreError> {
    // Summed here, not with SQL SUM: SQLite would sum the decimal text as floats.
    Ok(gateway_costs(conn, scope, from, to)?.iter().map(|c| c.cost).sum())
}

/// Record that a budget window's alert was sent; false when it already was (the mark is durable).
pub(crate) fn mark_alert_sent(
    conn: &mut Conn,
    budget_id: Uuid,
    window_start: DateTime<Utc>,
    spent: Decimal,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let row = BudgetAlertRow {
        budget_id: DbUuid(budget_id),
        window_start: DbTime::new(window_start),
        spent: DbDecimal(spent),
        sent_at: DbTime::new(at),
    };
    write_tx(conn, |conn| {
        Ok(diesel::insert_into(budget_alerts::table).values(&row).on_conflict_do_nothing().execute(conn)? == 1)
    })
}

/// Whether a budget window's alert was sent.
pub(crate) fn alert_sent(conn: &mut Conn, budget_id: Uuid, window_start: DateTime<Utc>) -> Result<bool, StoreError> {
    let n: i64 = budget_alerts::table
        .filter(budget_alerts::budget_id.eq(DbUuid(budget_id)))
        .filter(budget_alerts::window_start.eq(DbTime::new(window_start)))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The key of every gateway call with usage, by event id (the live dashboard's start-up load).
pub(crate) fn gateway_event_keys(conn: &mut Conn) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let rows: Vec<(DbUuid, DbUuid)> =
        gateway_requests::table.select((gateway_requests::event_id, gateway_requests::key_id)).load(conn)?;
    Ok(rows.into_iter().map(|(e, k)| (e.0, k.0)).collect())
}
