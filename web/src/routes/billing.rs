//! Billing: cost metrics per user and thread, invoices (generate, list, show, pay).

use std::collections::BTreeMap;

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_store::cache::{keys, Cache};
use tally_domain::{Invoice, InvoiceLine, InvoiceStatus, Money};
use tally_store::{LineFilter, StoreError};
use uuid::Uuid;

use super::{blocking, blocking_cached, validate_user_id};
use crate::error::ApiError;
use crate::state::AppState;

/// Quantity and cost of one kind.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KindTotal {
    /// Quantity (tokens or units).
    pub quantity: rust_decimal::Decimal,
    /// Exact cost.
    pub amount: Money,
}

/// Aggregated cost of a set of usage lines.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CostSummary {
    /// Exact total.
    pub total_cost: Money,
    /// Part already on an invoice.
    pub invoiced_cost: Money,
    /// Part not yet invoiced.
    pub uninvoiced_cost: Money,
    /// By usage kind.
    pub by_kind: BTreeMap<String, KindTotal>,
    /// By model.
    pub by_model: BTreeMap<String, Money>,
    /// By thread (usage outside threads under `none`).
    pub by_thread: BTreeMap<String, Money>,
    /// By billed message.
    pub by_message: BTreeMap<String, Money>,
    /// Number of distinct usage events.
    pub event_count: usize,
}

fn summarize(lines: &[InvoiceLine], uninvoiced: &[InvoiceLine], models: &BTreeMap<Uuid, String>) -> CostSummary {
    let mut s = CostSummary::default();
    let mut events = std::collections::BTreeSet::new();
    for l in lines {
        s.total_cost += l.amount;
        events.insert(l.event_id);
        let k = s.by_kind.entry(l.kind.to_string()).or_default();
        k.quantity += l.quantity;
        k.amount += l.amount;
        let model = models.get(&l.event_id).cloned().unwrap_or_else(|| "unknown".into());
        *s.by_model.entry(model).or_default() += l.amount;
        *s.by_thread.entry(l.thread_id.map(|t| t.to_string()).unwrap_or_else(|| "none".into())).or_default() += l.amount;
        if let Some(m) = l.message_id {
            *s.by_message.entry(m.to_string()).or_default() += l.amount;
        }
    }
    s.uninvoiced_cost = uninvoiced.iter().map(|l| l.amount).sum();
    s.invoiced_cost = s.total_cost - s.uninvoiced_cost;
    s.event_count = events.len();
    s
}

/// Summary of a user's or a thread's usage: hot lines plus those of archived months (kept,
/// all invoiced, in the hot index: archiving changes no total).
fn load_summary(s: &tally_store::Store, filter: LineFilter) -> Result<CostSummary, StoreError> {
    let mut lines = s.usage_lines(&filter)?;
    let uninvoiced = s.usage_lines(&LineFilter { uninvoiced_only: true, ..filter.clone() })?;
    let events = s.usage_events(&filter, i64::MAX)?;
    let mut models: BTreeMap<Uuid, String> = events.into_iter().map(|e| (e.event_id, e.model)).collect();
    for c in s.archived_costs(filter.user_id.as_deref(), filter.thread_id)? {
        models.insert(c.event_id, c.model);
        lines.extend(c.lines);
    }
    Ok(summarize(&lines, &uninvoiced, &models))
}

/// Invoicing moves cost from uninvoiced to invoiced: drop the cached metrics it touches.
fn invalidate_invoiced(cache: &Cache, invoice: &Invoice) {
    cache.delete(&keys::user_metrics(&invoice.user_id));
    let threads: std::collections::BTreeSet<Uuid> = invoice.lines.iter().filter_map(|l| l.thread_id).collect();
    for t in threads {
        cache.delete(&keys::thread_total(t));
    }
}

/// Cost metrics of a user.
#[utoipa::path(tag = "billing", responses((status = 200, description = "Cost summary of a user", body = Object)))]
#[get("/api/billing/metrics/user/{user_id}")]
pub async fn user_metrics(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    validate_user_id(&user_id)?;
    caller.may_act_as(&user_id)?;
    let id = user_id.clone();
    let summary = blocking_cached(&state, move |s, cache| {
        cache.get_or_load(&keys::user_metrics(&id), || {
            if s.get_user(&id)?.is_none() {
                return Err(StoreError::NotFound(format!("user {id}")));
            }
            load_summary(s, LineFilter { user_id: Some(id.clone()), ..LineFilter::default() })
        })
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::not_found("user_not_found", message),
        other => other,
    })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user_id": user_id, "metrics": summary })))
}

/// Cost metrics of a thread.
#[utoipa::path(tag = "billing", responses((status = 200, description = "Cost summary of a thread", body = Object)))]
#[get("/api/billing/metrics/thread/{thread_id}")]
pub async fn thread_metrics(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let thread_id = path.into_inner();
    crate::routes::threads::check_thread_owner(&state, &caller, thread_id).await?;
    let found = blocking_cached(&state, move |s, cache| {
        let Some(thread) = s.get_thread(thread_id)? else { return Ok(None) };
        let summary = cache.get_or_load(&keys::thread_total(thread_id), || {
            load_summary(s, LineFilter { thread_id: Some(thread_id), ..LineFilter::default() })
        })?;
        Ok(Some((thread, summary)))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("thread_not_found", format!("thread {thread_id} not found")))?;
    let (thread, summary) = found;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "thread_id": thread_id, "user_id": thread.user_id, "model": thread.model, "metrics": summary
    })))
}

/// Generate an invoice for a thread's usage not yet invoiced (409 when there is none).
#[utoipa::path(tag = "billing", responses((status = 201, description = "The invoice", body = Object), (status = 409, description = "nothing_to_invoice", body = crate::openapi::ErrorBody), (status = 422, description = "Not billable", body = crate::openapi::ErrorBody)))]
#[post("/api/billing/generate-invoice/thread/{thread_id}")]
pub async fn invoice_thread(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let thread_id = path.into_inner();
    crate::routes::threads::check_thread_owner(&state, &caller, thread_id).await?;
    let invoice = blocking_cached(&state, move |s, cache| {
        let thread = s.get_thread(thread_id)?.ok_or_else(|| StoreError::NotFound(format!("thread {thread_id}")))?;
        let lines = s.usage_lines(&LineFilter {
            thread_id: Some(thread_id),
            uninvoiced_only: true,
            ..LineFilter::default()
        })?;
        if lines.is_empty() {
            return Ok(None);
        }
        let invoice = Invoice::new(thread.user_id, Some(thread_id), None, lines, Utc::now());
        s.create_invoice(&invoice)?;
        invalidate_invoiced(cache, &invoice);
        Ok(Some(invoice))
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::not_found("thread_not_found", message),
        other => other,
    })?;
    match invoice {
        Some(i) => Ok(HttpResponse::Created().json(i)),
        None => Err(ApiError::Conflict { code: "nothing_to_invoice", message: "all usage of this thread is already invoiced".into() }),
    }
}

/// Query of the user invoice generator.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Period start (inclusive); default: the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Period end (exclusive); default: now.
    pub to: Option<DateTime<Utc>>,
}

/// Generate an invoice for a user's uninvoiced usage in a period.
#[utoipa::path(tag = "billing", params(PeriodQuery), responses((status = 201, description = "The invoice", body = Object), (status = 409, description = "nothing_to_invoice", body = crate::openapi::ErrorBody), (status = 422, description = "Not billable", body = crate::openapi::ErrorBody)))]
#[post("/api/billing/generate-invoice/user/{user_id}")]
pub async fn invoice_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<PeriodQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    validate_user_id(&user_id)?;
    caller.may_act_as(&user_id)?;
    let now = Utc::now();
    let from = q.from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let to = q.to.unwrap_or(now);
    if to <= from {
        return Err(ApiError::bad_request("invalid_period", "`to` must be after `from`"));
    }
    let id = user_id.clone();
    let invoice = blocking_cached(&state, move |s, cache| {
        if s.get_user(&id)?.is_none() {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        let lines = s.usage_lines(&LineFilter {
            user_id: Some(id.clone()),
            uninvoiced_only: true,
            from: Some(from),
            to: Some(to),
            ..LineFilter::default()
        })?;
        if lines.is_empty() {
            return Ok(None);
        }
        let invoice = Invoice::new(id, None, Some((from, to)), lines, now);
        s.create_invoice(&invoice)?;
        invalidate_invoiced(cache, &invoice);
        Ok(Some(invoice))
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::not_found("user_not_found", message),
        other => other,
    })?;
    match invoice {
        Some(i) => Ok(HttpResponse::Created().json(i)),
        None => Err(ApiError::Conflict { code: "nothing_to_invoice", message: "no uninvoiced usage in that period".into() }),
    }
}

/// A user's invoices, newest first.
#[utoipa::path(tag = "billing", responses((status = 200, description = "Invoices of a user", body = [Object])))]
#[get("/api/billing/invoices/user/{user_id}")]
pub async fn user_invoices(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    validate_user_id(&user_id)?;
    caller.may_act_as(&user_id)?;
    let invoices = blocking(&state.store, move |s| s.list_invoices(&user_id)).await?;
    Ok(HttpResponse::Ok().json(invoices))
}

/// One invoice with its lines.
#[utoipa::path(tag = "billing", responses((status = 200, description = "The invoice with its lines", body = Object)))]
#[get("/api/billing/invoices/{invoice_id}")]
pub async fn get_invoice(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let invoice = blocking(&state.store, move |s| s.get_invoice(id))
        .await?
        .ok_or_else(|| ApiError::not_found("invoice_not_found", format!("invoice {id} not found")))?;
    caller.owns(&invoice.user_id, "invoice_not_found", format!("invoice {id} not found"))?;
    Ok(HttpResponse::Ok().json(invoice))
}

/// Body of the status change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// `pending` or `paid`.
    #[schema(value_type = String, examples("paid"))]
    pub status: InvoiceStatus,
}

/// Set an invoice's status (mark paid).
#[utoipa::path(tag = "billing", request_body = StatusBody, responses((status = 200, description = "The invoice", body = Object), (status = 409, description = "Status change not allowed", body = crate::openapi::ErrorBody)))]
#[post("/api/billing/invoices/{invoice_id}/status")]
pub async fn set_invoice_status(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<StatusBody>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let status = body.status;
    let invoice = blocking_cached(&state, move |s, cache| {
        let invoice = s.set_invoice_status(id, status)?;
        invalidate_invoiced(cache, &invoice);
        Ok(invoice)
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::not_found("invoice_not_found", message),
        other => other,
    })?;
    Ok(HttpResponse::Ok().json(invoice))
}

