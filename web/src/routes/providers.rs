//! Provider connections, import runs and reconciliation (issue 14).
//!
//! `POST/GET /api/providers`, `DELETE /api/providers/{id}`, `POST /api/providers/{id}/import`,
//! `GET /api/providers/{id}/runs`, `GET /api/reconciliation`. Admin keys are never returned:
//! responses show `sk-...abcd`. A provider failure answers 502 `provider_error` with the
//! failed run.

use std::collections::HashMap;

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::providers::{ImportsError, ProviderImports, Trigger};

/// Default tolerance of the reconciliation, in percent.
pub const DEFAULT_TOLERANCE_PCT: Decimal = Decimal::ONE;
/// Longest reconciliation range in days.
pub const MAX_RECONCILIATION_DAYS: i64 = 366;
/// Default number of runs listed.
pub const DEFAULT_RUNS: i64 = 50;

/// Register the provider routes with their own state.
pub fn configure(imports: ProviderImports) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(imports.clone()))
            .service(create)
            .service(list)
            .service(remove)
            .service(import)
            .service(runs)
            .service(reconciliation);
    }
}

/// Map a service error to the HTTP answer (502 for provider failures, with the run).
fn respond(e: ImportsError) -> Result<HttpResponse, ApiError> {
    let message = e.to_string();
    match e {
        ImportsError::Invalid { code, .. } => Err(ApiError::bad_request(code, message)),
        ImportsError::NotFound(_) => Err(ApiError::not_found("connection_not_found", message)),
        ImportsError::Exists(_) => Err(ApiError::Conflict { code: "connection_exists", message }),
        ImportsError::Provider { run, .. } => Ok(HttpResponse::BadGateway().json(serde_json::json!({
            "code": "provider_error",
            "message": message,
            "run": *run,
        }))),
        ImportsError::MissingKey(_) | ImportsError::Crypto(_) => {
            Err(ApiError::Unavailable { code: "encryption_key", message })
        }
        ImportsError::Store(s) => Err(ApiError::from(s)),
        ImportsError::Billing(_) => Err(ApiError::Unavailable { code: "billing_unavailable", message }),
    }
}

/// `POST /api/providers` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `anthropic` or `openai`.
    pub provider: String,
    /// Unique name.
    pub name: String,
    /// The admin key (stored encrypted, never returned).
    pub admin_key: String,
    /// API base URL (default: the provider's).
    pub base_url: Option<String>,
}

#[utoipa::path(tag = "providers", request_body = CreateBody, responses((status = 201, description = "The connection (key masked)", body = Object), (status = 409, description = "connection_exists", body = crate::openapi::ErrorBody)))]
#[post("/api/providers")]
async fn create(imports: web::Data<ProviderImports>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    // Parsed by hand: serde's message for a bad body could quote the admin key.
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("body must be {{provider, name, admin_key, base_url?}} (line {}, column {})", e.line(), e.column()))
    })?;
    match imports.create_connection(&body.provider, &body.name, &body.admin_key, body.base_url.as_deref()).await {
        Ok(view) => Ok(HttpResponse::Created().json(view)),
        Err(e) => respond(e),
    }
}

#[utoipa::path(tag = "providers", responses((status = 200, description = "Connections", body = Object)))]
#[get("/api/providers")]
async fn list(imports: web::Data<ProviderImports>) -> Result<HttpResponse, ApiError> {
    match imports.list_connections().await {
        Ok(all) => Ok(HttpResponse::Ok().json(serde_json::json!({ "providers": all }))),
        Err(e) => respond(e),
    }
}

fn connection_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("connection_not_found", format!("no provider connection {raw:?}")))
}

#[utoipa::path(tag = "providers", responses((status = 200, description = "The removed connection", body = Object)))]
#[delete("/api/providers/{id}")]
async fn remove(imports: web::Data<ProviderImports>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = connection_id(&id)?;
    match imports.delete_connection(id).await {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        Err(e) => respond(e),
    }
}

fn instant(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| ApiError::bad_request("invalid_range", format!("{field} must be an RFC 3339 instant or YYYY-MM-DD")))
}

#[utoipa::path(tag = "providers", params(crate::openapi::ImportQuery), responses((status = 200, description = "The import run", body = Object), (status = 502, description = "The provider failed; the run is recorded", body = Object)))]
#[post("/api/providers/{id}/import")]
async fn import(
    imports: web::Data<ProviderImports>,
    id: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = connection_id(&id)?;
    let now = Utc::now();
    let to = q.get("to").map(|t| instant("to", t)).transpose()?.unwrap_or(now);
    let from = q.get("from").map(|f| instant("from", f)).transpose()?.unwrap_or(to - TimeDelta::days(1));
    let trigger = match q.get("trigger").map(String::as_str) {
        None | Some("manual") => Trigger::Manual,
        Some("backfill") => Trigger::Backfill,
        Some(other) => {
            return Err(ApiError::bad_request("invalid_trigger", format!("trigger must be manual or backfill (got {other:?})")))
        }
    };
    match imports.run(id, from, to, trigger).await {
        Ok(run) => Ok(HttpResponse::Ok().json(run)),
        Err(e) => respond(e),
    }
}

#[utoipa::path(tag = "providers", params(crate::openapi::RunsQuery), responses((status = 200, description = "Import runs, newest first", body = Object)))]
#[get("/api/providers/{id}/runs")]
async fn runs(
    imports: web::Data<ProviderImports>,
    id: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = connection_id(&id)?;
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=super::MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::bad_request("invalid_limit", format!("limit must be 1-{}", super::MAX_LIMIT)))?,
        None => DEFAULT_RUNS,
    };
    match imports.runs(id, limit).await {
        Ok(runs) => Ok(HttpResponse::Ok().json(serde_json::json!({ "runs": runs }))),
        Err(e) => respond(e),
    }
}

fn day(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request("invalid_date", format!("{field} must be a day, YYYY-MM-DD (got {raw:?})")))
}

#[utoipa::path(tag = "providers", params(crate::openapi::ReconciliationQuery), responses((status = 200, description = "Daily drift between provider and Tally", body = Object)))]
#[get("/api/reconciliation")]
async fn reconciliation(
    imports: web::Data<ProviderImports>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let provider = q.get("provider").map(String::as_str).unwrap_or_default();
    if !matches!(provider, "anthropic" | "openai") {
        return Err(ApiError::bad_request("invalid_provider", "provider must be anthropic or openai"));
    }
    if q.get("granularity").is_some_and(|g| g != "day") {
        return Err(ApiError::bad_request("invalid_granularity", "granularity must be day"));
    }
    let today = Utc::now().date_naive();
    let to = q.get("to").map(|t| day("to", t)).transpose()?.unwrap_or(today);
    let from = q.get("from").map(|f| day("from", f)).transpose()?.unwrap_or(to - TimeDelta::days(29));
    if from > to || (to - from).num_days() >= MAX_RECONCILIATION_DAYS {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("from must not be after to, and the range at most {MAX_RECONCILIATION_DAYS} days"),
        ));
    }
    let tolerance = match q.get("tolerance_pct") {
        Some(t) => t
            .parse::<Decimal>()
            .ok()
            .filter(|t| !t.is_sign_negative())
            .ok_or_else(|| ApiError::bad_request("invalid_tolerance", "tolerance_pct must be a non-negative decimal"))?,
        None => DEFAULT_TOLERANCE_PCT,
    };
    match imports.reconciliation(provider, from, to, tolerance).await {
        Ok(rows) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "provider": provider,
            "from": from.to_string(),
            "to": to.to_string(),
            "granularity": "day",
            "tolerance_pct": tolerance.normalize().to_string(),
            "rows": rows,
        }))),
        Err(e) => respond(e),
    }
}

/// The spec entries of this module (its handlers stay private); merged by [`crate::openapi::spec`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, remove, import, runs, reconciliation))]
pub struct ApiDoc;
