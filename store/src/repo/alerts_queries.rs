// alerts queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `alerts` submodule, so every query is written once and type-checked
// against both backends.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{write_tx, Conn};
use crate::alerts::{AlertBudget, AlertPeriod, AlertScope, DeliveryRecord, DeliveryStatus};
use crate::error::StoreError;
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

/// An `alert_budgets` row: id, name, amount, period, scope kind, scope value, thresholds
/// (JSON), emails (JSON), webhook URL, enabled, created, updated.
type BudgetTuple = (
    DbUuid,
    String,
    DbDecimal,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    bool,
    DbTime,
    DbTime,
);

/// An `alert_deliveries` row in column order.
type DeliveryTuple = (
    DbUuid,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    i32,
    Option<String>,
    String,
    DbTime,
    DbTime,
);

fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("alert budget {what}: {e}")))
}

fn budget_from_tuple(t: BudgetTuple) -> Result<AlertBudget, StoreError> {
    let (
        id,
        name,
        amount,
        period,
        scope_kind,
        scope_value,
        thresholds,
        emails,
        webhook_url,
        enabled,
        created,
        updated,
    ) = t;
    let bad = |what: &str| StoreError::Database(format!("alert budget {} has a bad {what}", id.0));
    Ok(AlertBudget {
        budget_id: id.0,
        name,
        amount: amount.0,
        period: AlertPeriod::parse(&period).ok_or_else(|| bad("period"))?,
        scope: AlertScope::parse(&scope_kind, scope_value.as_deref())
            .ok_or_else(|| bad("scope"))?,
        thresholds: serde_json::from_str(&thresholds).map_err(|_| bad("thresholds"))?,
        emails: serde_json::from_str(&emails).map_err(|_| bad("emails"))?,
        webhook_url,
        enabled,
        created_at: created.get(),
        updated_at: updated.get(),
    })
}

fn delivery_from_tuple(t: DeliveryTuple) -> Result<DeliveryRecord, StoreError> {
    let (
        id,
        source,
        subject_id,
        alert_kind,
        channel,
        target,
        status,
        attempts,
        last_error,
        payload,
        created,
        updated,
    ) = t;
    Ok(DeliveryRecord {
        delivery_id: id.0,
        source,
        subject_id,
        alert_kind,
        channel,
        target,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(format!("delivery {} has a bad status {status:?}", id.0))
        })?,
        attempts,
        last_error,
        payload,
        created_at: created.get(),
        updated_at: updated.get(),
    })
}

/// The columns of `alert_budgets`, in [`BudgetTuple`] order.
macro_rules! budget_columns {
    () => {
        (
            alert_budgets::budget_id,
            alert_budgets::name,
            alert_budgets::amount,
            alert_budgets::period,
            alert_budgets::scope_kind,
            alert_budgets::scope_value,
            alert_budgets::thresholds,
            alert_budgets::emails,
            alert_budgets::webhook_url,
            alert_budgets::enabled,
            alert_budgets::created_at,
            alert_budgets::updated_at,
        )
    };
}

/// The columns of `alert_deliveries`, in [`DeliveryTuple`] order.
macro_rules! delivery_columns {
    () => {
        (
            alert_deliveries::delivery_id,
            alert_deliveries::source,
            alert_deliveries::subject_id,
            alert_deliveries::alert_kind,
            alert_deliveries::channel,
            alert_deliveries::target,
            alert_deliveries::status,
            alert_deliveries::attempts,
            alert_deliveries::last_error,
            alert_deliveries::payload,
            alert_deliveries::created_at,
            alert_deliveries::updated_at,
        )
    };
}

/// Insert a budget; returns it as stored (instants to the microsecond).
pub(crate) fn insert_budget(conn: &mut Conn, b: &AlertBudget) -> Result<AlertBudget, StoreError> {
    let thresholds = to_json("thresholds", &b.thresholds)?;
    let emails = to_json("emails", &b.emails)?;
    write_tx(conn, |conn| {
        diesel::insert_into(alert_budgets::table)
            .values((
                alert_budgets::budget_id.eq(DbUuid(b.budget_id)),
                alert_budgets::name.eq(&b.name),
                alert_budgets::amount.eq(DbDecimal(b.amount)),
                alert_budgets::period.eq(b.period.as_str()),
                alert_budgets::scope_kind.eq(b.scope.kind()),
                alert_budgets::scope_value.eq(b.scope.value()),
                alert_budgets::thresholds.eq(&thresholds),
                alert_budgets::emails.eq(&emails),
                alert_budgets::webhook_url.eq(&b.webhook_url),
                alert_budgets::enabled.eq(b.enabled),
                alert_budgets::created_at.eq(DbTime::new(b.created_at)),
                alert_budgets::updated_at.eq(DbTime::new(b.updated_at)),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    get_budget(conn, b.budget_id)?
        .ok_or_else(|| StoreError::NotFound(format!("alert budget {}", b.budget_id)))
}

/// One budget by id.
pub(crate) fn get_budget(
    conn: &mut Conn,
    budget_id: Uuid,
) -> Result<Option<AlertBudget>, StoreError> {
    let row: Option<BudgetTuple> = alert_budgets::table
        .find(DbUuid(budget_id))
        .select(budget_columns!())
        .first(conn)
        .optional()?;
    row.map(budget_from_tuple).transpose()
}

/// Every budget, oldest first (UUIDv7 ids break ties in creation order).
pub(crate) fn list_budgets(conn: &mut Conn) -> Result<Vec<AlertBudget>, StoreError> {
    let rows: Vec<BudgetTuple> = alert_budgets::table
        .select(budget_columns!())
        .order((
            alert_budgets::created_at.asc(),
            alert_budgets::budget_id.asc(),
        ))
        .load(conn)?;
    rows.into_iter().map(budget_from_tuple).collect()
}

/// Replace a budget's fields, keeping its creation instant; `NotFound` for an unknown id.
pub(crate) fn update_budget(conn: &mut Conn, b: &AlertBudget) -> Result<AlertBudget, StoreError> {
    let thresholds = to_json("thresholds", &b.thresholds)?;
    let emails = to_json("emails", &b.emails)?;
    write_tx(conn, |conn| {
        let n = diesel::update(alert_budgets::table.find(DbUuid(b.budget_id)))
            .set((
                alert_budgets::name.eq(&b.name),
                alert_budgets::amount.eq(DbDecimal(b.amount)),
                alert_budgets::period.eq(b.period.as_str()),
                alert_budgets::scope_kind.eq(b.scope.kind()),
                alert_budgets::scope_value.eq(b.scope.value()),
                alert_budgets::thresholds.eq(&thresholds),
                alert_budgets::emails.eq(&emails),
                alert_budgets::webhook_url.eq(&b.webhook_url),
                alert_budgets::enabled.eq(b.enabled),
                alert_budgets::updated_at.eq(DbTime::new(b.updated_at)),
            ))
            .execute(conn)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "alert budget {}",
                b.budget_id
            )));
        }
        Ok(())
    })?;
    get_budget(conn, b.budget_id)?
        .ok_or_else(|| StoreError::NotFound(format!("alert budget {}", b.budget_id)))
}

/// Delete a budget and its marks; returns it. `NotFound` for an unknown id.
pub(crate) fn delete_budget(conn: &mut Conn, budget_id: Uuid) -> Result<AlertBudget, StoreError> {
    write_tx(conn, |conn| {
        let budget = get_budget(conn, budget_id)?
            .ok_or_else(|| StoreError::NotFound(format!("alert budget {budget_id}")))?;
        diesel::delete(alert_marks::table.filter(alert_marks::budget_id.eq(DbUuid(budget_id))))
            .execute(conn)?;
        diesel::delete(alert_budgets::table.find(DbUuid(budget_id))).execute(conn)?;
        Ok(budget)
    })
}

/// Insert a fired mark unless one exists; true when this insert made it.
pub(crate) fn mark_fired(
    conn: &mut Conn,
    budget_id: Uuid,
    window_start: DateTime<Utc>,
    threshold: &str,
    spent: Decimal,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let inserted = insert_skipping_existing!(
            alert_marks::table,
            (
                alert_marks::budget_id.eq(DbUuid(budget_id)),
                alert_marks::window_start.eq(DbTime::new(window_start)),
                alert_marks::threshold.eq(threshold),
                alert_marks::spent.eq(DbDecimal(spent)),
                alert_marks::fired_at.eq(DbTime::new(at)),
            )
        )
        .execute(conn)?;
        Ok(inserted == 1)
    })
}

/// Thresholds fired in a budget's window, in firing order.
pub(crate) fn fired(
    conn: &mut Conn,
    budget_id: Uuid,
    window_start: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    Ok(alert_marks::table
        .filter(alert_marks::budget_id.eq(DbUuid(budget_id)))
        .filter(alert_marks::window_start.eq(DbTime::new(window_start)))
        .order((alert_marks::fired_at.asc(), alert_marks::threshold.asc()))
        .select(alert_marks::threshold)
        .load(conn)?)
}

/// Log one delivery.
pub(crate) fn insert_delivery(conn: &mut Conn, d: &DeliveryRecord) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        diesel::insert_into(alert_deliveries::table)
            .values((
                alert_deliveries::delivery_id.eq(DbUuid(d.delivery_id)),
                alert_deliveries::source.eq(&d.source),
                alert_deliveries::subject_id.eq(&d.subject_id),
                alert_deliveries::alert_kind.eq(&d.alert_kind),
                alert_deliveries::channel.eq(&d.channel),
                alert_deliveries::target.eq(&d.target),
                alert_deliveries::status.eq(d.status.as_str()),
                alert_deliveries::attempts.eq(d.attempts),
                alert_deliveries::last_error.eq(&d.last_error),
                alert_deliveries::payload.eq(&d.payload),
                alert_deliveries::created_at.eq(DbTime::new(d.created_at)),
                alert_deliveries::updated_at.eq(DbTime::new(d.updated_at)),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Set a delivery's outcome; returns the row as stored. `NotFound` for an unknown id.
pub(crate) fn update_delivery(
    conn: &mut Conn,
    delivery_id: Uuid,
    status: DeliveryStatus,
    attempts: i32,
    last_error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<DeliveryRecord, StoreError> {
    write_tx(conn, |conn| {
        let n = diesel::update(alert_deliveries::table.find(DbUuid(delivery_id)))
            .set((
                alert_deliveries::status.eq(status.as_str()),
                alert_deliveries::attempts.eq(attempts),
                alert_deliveries::last_error.eq(last_error),
                alert_deliveries::updated_at.eq(DbTime::new(at)),
            ))
            .execute(conn)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "alert delivery {delivery_id}"
            )));
        }
        let row: DeliveryTuple = alert_deliveries::table
            .find(DbUuid(delivery_id))
            .select(delivery_columns!())
            .first(conn)?;
        delivery_from_tuple(row)
    })
}

/// Deliveries newest first (all, or about one subject).
pub(crate) fn list_deliveries(
    conn: &mut Conn,
    subject_id: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut q = alert_deliveries::table
        .select(delivery_columns!())
        .into_boxed();
    if let Some(s) = subject_id {
        q = q.filter(alert_deliveries::subject_id.eq(s));
    }
    let rows: Vec<DeliveryTuple> = q
        .order((
            alert_deliveries::created_at.desc(),
            alert_deliveries::delivery_id.desc(),
        ))
        .limit(limit.max(0))
        .load(conn)?;
    rows.into_iter().map(delivery_from_tuple).collect()
}
