//! Virtual keys and their budgets: create (secret shown once), list, get, patch, revoke,
//! rotate; budgets per key or user and period; spend and daily usage per key.

use std::collections::BTreeMap;
use std::str::FromStr;

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_domain::budget::{parse_tz, window, BudgetPeriod, Tz};
use tally_store::{BudgetRecord, BudgetScope, KeyPatch, KeyRecord};
use uuid::Uuid;

use super::{blocking, validate_user_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::budgets::{view, BudgetView};
use crate::gateway::keys;
use crate::gateway::Gateway;

/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 200;
/// Most models in a key's allow-list.
pub const MAX_ALLOWED_MODELS: usize = 200;
/// Most budgets given with a new key (one per period).
const MAX_BUDGETS_PER_SCOPE: usize = 3;
/// Largest budget, USD: within the Redis ledger's exact range (2^53 units of 1e-10 USD, about
/// 900,719 USD per window), so a budget accepted here is enforceable in either mode.
pub const MAX_BUDGET_USD: i64 = 900_000;
/// Default and largest `days` of `GET /api/keys/{id}/usage`.
const DEFAULT_USAGE_DAYS: i64 = 30;
const MAX_USAGE_DAYS: i64 = 366;

/// A budget given with a new key or by `PUT /api/billing/budget/...`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// Limit per period, USD (decimal string or number).
    pub max_budget: Decimal,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Alert once the spend passes this fraction (0 < t <= 1) of the limit.
    pub alert_threshold: Option<Decimal>,
    /// Enforced unless false.
    pub enabled: Option<bool>,
    /// IANA time zone of the calendar (default UTC).
    pub timezone: Option<String>,
}

/// Body of `POST /api/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Owner.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// Models the key may call (absent or null: all).
    pub allowed_models: Option<Vec<String>>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rpm_limit: Option<i64>,
    /// Budgets of the key (one per period).
    #[serde(default)]
    pub budgets: Vec<BudgetInput>,
}

/// Body of `PATCH /api/keys/{key_id}`: absent fields stay; `null` clears an optional one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    /// New label.
    pub name: Option<String>,
    /// New allow-list (`null`: all models).
    #[serde(default, deserialize_with = "present")]
    pub allowed_models: Option<Option<Vec<String>>>,
    /// New expiry (`null`: never).
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New limit (`null`: none).
    #[serde(default, deserialize_with = "present")]
    pub rpm_limit: Option<Option<i64>>,
}

/// A field that is present (maybe null) becomes `Some(value)`; absent stays `None` (via default).
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `?user_id=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Only this user's keys.
    pub user_id: Option<String>,
}

/// `?period=` of the spend report, `?period=` to delete a budget.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// `daily`, `weekly` or `monthly`.
    pub period: Option<String>,
}

/// `?days=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DaysQuery {
    /// Days back from today (UTC), including today.
    pub days: Option<i64>,
}

/// A key as shown (never the secret).
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// Key id.
    pub key_id: Uuid,
    /// Public id (`tk-<public_id>-...`).
    pub public_id: String,
    /// Owner.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// Allowed models (null: all).
    pub allowed_models: Option<Vec<String>>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rpm_limit: Option<i64>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Revocation instant.
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// The key's own budgets with their current windows.
    pub budgets: Vec<BudgetView>,
    /// The secret, only in the answer to create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn status_of(k: &KeyRecord, now: DateTime<Utc>) -> &'static str {
    match keys::check_live(k, now) {
        Ok(()) => "active",
        Err(keys::KeyRefusal::Revoked) => "revoked",
        Err(_) => "expired",
    }
}

async fn key_view(gw: &Gateway, k: KeyRecord, secret: Option<String>) -> Result<KeyView, ApiError> {
    let scope = vec![BudgetScope::Key(k.key_id)];
    let records = blocking(&gw.store, move |s| s.budgets_for(&scope)).await?;
    let mut budgets = Vec::with_capacity(records.len());
    for b in &records {
        budgets.push(view(gw, b).await?);
    }
    Ok(KeyView {
        status: status_of(&k, Utc::now()),
        key_id: k.key_id,
        public_id: k.public_id,
        user_id: k.user_id,
        name: k.name,
        allowed_models: k.allowed_models,
        expires_at: k.expires_at,
        rpm_limit: k.rpm_limit,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
        budgets,
        key: secret,
    })
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_KEY_NAME_LEN || name.contains('\0') {
        return Err(ApiError::bad_request("invalid_key_name", format!("name must be 1-{MAX_KEY_NAME_LEN} characters")));
    }
    Ok(())
}

fn validate_models(gw: &Gateway, models: &Option<Vec<String>>) -> Result<(), ApiError> {
    if let Some(list) = models {
        if list.is_empty() || list.len() > MAX_ALLOWED_MODELS {
            return Err(ApiError::bad_request(
                "invalid_allowed_models",
                format!("allowed_models must list 1-{MAX_ALLOWED_MODELS} models, or be null for all"),
            ));
        }
        if let Some(unknown) = list.iter().find(|m| !gw.models.contains_key(*m)) {
            return Err(ApiError::bad_request("unknown_model", format!("{unknown:?} is not in the catalogue")));
        }
    }
    Ok(())
}

fn validate_rpm(rpm: Option<i64>) -> Result<(), ApiError> {
    if rpm.is_some_and(|r| r < 1) {
        return Err(ApiError::bad_request("invalid_rpm_limit", "rpm_limit must be a positive integer"));
    }
    Ok(())
}

/// A validated budget record for `scope` from its input.
fn budget_record(scope: BudgetScope, b: &BudgetInput, now: DateTime<Utc>) -> Result<BudgetRecord, ApiError> {
    let period = BudgetPeriod::from_str(&b.period)
        .map_err(|_| ApiError::bad_request("invalid_period", "period must be daily, weekly or monthly"))?;
    if b.max_budget <= Decimal::ZERO || b.max_budget > Decimal::from(MAX_BUDGET_USD) {
        return Err(ApiError::bad_request(
            "invalid_max_budget",
            format!("max_budget must be positive and at most {MAX_BUDGET_USD} USD"),
        ));
    }
    if b.alert_threshold.is_some_and(|t| t <= Decimal::ZERO || t > Decimal::ONE) {
        return Err(ApiError::bad_request("invalid_alert_threshold", "alert_threshold must be in (0, 1]"));
    }
    let timezone = b.timezone.clone().unwrap_or_else(|| "UTC".to_string());
    parse_tz(&timezone).map_err(|_| ApiError::bad_request("invalid_timezone", format!("unknown time zone {timezone:?}")))?;
    Ok(BudgetRecord {
        budget_id: Uuid::now_v7(),
        scope,
        period: period.as_str().to_string(),
        max_budget: b.max_budget.normalize(),
        alert_threshold: b.alert_threshold.map(|t| t.normalize()),
        timezone,
        enabled: b.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    })
}

fn parse_key_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("key_not_found", format!("no key {raw}")))
}

/// A key the caller may reach: another user's key answers 404 `key_not_found`, as a missing one does.
async fn load_key(gw: &Gateway, caller: &Caller, key_id: Uuid) -> Result<KeyRecord, ApiError> {
    let key = blocking(&gw.store, move |s| s.get_key(key_id))
        .await?
        .ok_or_else(|| ApiError::not_found("key_not_found", format!("no key {key_id}")))?;
    caller.owns(&key.user_id, "key_not_found", format!("no key {key_id}"))?;
    Ok(key)
}

fn key_not_found(e: ApiError) -> ApiError {
    match e {
        ApiError::NotFound { message, .. } => ApiError::NotFound { code: "key_not_found", message },
        other => other,
    }
}

/// Create a key; the answer carries the secret, once.
#[utoipa::path(tag = "keys", request_body = CreateKey, responses((status = 201, description = "The key with its secret (shown once)", body = Object)))]
#[post("/api/keys")]
pub async fn create_key(gw: web::Data<Gateway>, body: web::Json<CreateKey>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    validate_user_id(&body.user_id)?;
    validate_name(&body.name)?;
    validate_models(&gw, &body.allowed_models)?;
    validate_rpm(body.rpm_limit)?;
    let now = Utc::now();
    if body.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::bad_request("invalid_expires_at", "expires_at must be in the future"));
    }
    if body.budgets.len() > MAX_BUDGETS_PER_SCOPE {
        return Err(ApiError::bad_request("invalid_budgets", "at most one budget per period"));
    }
    let key_id = Uuid::now_v7();
    let mut budgets = Vec::with_capacity(body.budgets.len());
    for b in &body.budgets {
        let r = budget_record(BudgetScope::Key(key_id), b, now)?;
        if budgets.iter().any(|o: &BudgetRecord| o.period == r.period) {
            return Err(ApiError::bad_request("invalid_budgets", "at most one budget per period"));
        }
        budgets.push(r);
    }
    let new = keys::generate()?;
    let record = KeyRecord {
        key_id,
        public_id: new.public_id.clone(),
        secret_hash: new.hash.clone(),
        user_id: body.user_id,
        name: body.name,
        allowed_models: body.allowed_models,
        expires_at: body.expires_at,
        rpm_limit: body.rpm_limit,
        created_at: now,
        revoked_at: None,
    };
    let created = blocking(&gw.store, move |s| {
        let k = s.create_key(&record)?;
        for b in &budgets {
            s.upsert_budget(b)?;
        }
        Ok(k)
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::NotFound { code: "user_not_found", message },
        other => other,
    })?;
    gw.budgets.clear();
    tracing::info!(key.id = %created.key_id, user.id = %created.user_id, "Virtual key created.");
    Ok(HttpResponse::Created().json(key_view(&gw, created, Some(new.key)).await?))
}

/// Keys of a user (or all).
#[utoipa::path(tag = "keys", params(KeysQuery), responses((status = 200, description = "Keys (no secrets)", body = [Object])))]
#[get("/api/keys")]
pub async fn list_keys(
    gw: web::Data<Gateway>,
    q: web::Query<KeysQuery>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let user = q.into_inner().user_id;
    if let Some(u) = &user {
        validate_user_id(u)?;
    }
    let user = caller.scope(user.as_deref())?;
    let found = blocking(&gw.store, move |s| s.list_keys(user.as_deref())).await?;
    let mut out = Vec::with_capacity(found.len());
    for k in found {
        out.push(key_view(&gw, k, None).await?);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// One key.
#[utoipa::path(tag = "keys", responses((status = 200, description = "The key", body = Object)))]
#[get("/api/keys/{key_id}")]
pub async fn get_key(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(key_view(&gw, key, None).await?))
}

/// Change a key's name, models, expiry or rate limit.
#[utoipa::path(tag = "keys", request_body = PatchKey, responses((status = 200, description = "The key", body = Object)))]
#[patch("/api/keys/{key_id}")]
pub async fn patch_key(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    body: web::Json<PatchKey>,
) -> Result<HttpResponse, ApiError> {
    let key_id = parse_key_id(&path)?;
    let body = body.into_inner();
    if let Some(n) = &body.name {
        validate_name(n)?;
    }
    if let Some(m) = &body.allowed_models {
        validate_models(&gw, m)?;
    }
    if let Some(r) = body.rpm_limit {
        validate_rpm(r)?;
    }
    let patch = KeyPatch {
        name: body.name,
        allowed_models: body.allowed_models,
        expires_at: body.expires_at,
        rpm_limit: body.rpm_limit,
    };
    let k = blocking(&gw.store, move |s| s.update_key(key_id, &patch)).await.map_err(key_not_found)?;
    gw.keys.forget(&k.public_id);
    Ok(HttpResponse::Ok().json(key_view(&gw, k, None).await?))
}

/// Revoke a key: refused by the gateway from now on (every node within the key cache's TTL).
#[utoipa::path(tag = "keys", responses((status = 200, description = "The revoked key", body = Object)))]
#[post("/api/keys/{key_id}/revoke")]
pub async fn revoke_key(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key_id = parse_key_id(&path)?;
    load_key(&gw, &caller, key_id).await?;
    let k = blocking(&gw.store, move |s| s.revoke_key(key_id, Utc::now())).await.map_err(key_not_found)?;
    gw.keys.forget(&k.public_id);
    tracing::info!(key.id = %k.key_id, "Virtual key revoked.");
    Ok(HttpResponse::Ok().json(key_view(&gw, k, None).await?))
}

/// Give a key a new secret (same id, budgets and usage); the old secret stops working.
#[utoipa::path(tag = "keys", responses((status = 200, description = "The key with its new secret", body = Object), (status = 409, description = "key_revoked", body = crate::openapi::ErrorBody)))]
#[post("/api/keys/{key_id}/rotate")]
pub async fn rotate_key(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key_id = parse_key_id(&path)?;
    let old = load_key(&gw, &caller, key_id).await?;
    let new = keys::with_public_id(old.public_id.clone())?;
    let hash = new.hash.clone();
    let k = blocking(&gw.store, move |s| s.rotate_key(key_id, &hash)).await.map_err(|e| match e {
        ApiError::Conflict { .. } => {
            ApiError::Conflict { code: "key_revoked", message: format!("key {key_id} is revoked; it cannot be rotated") }
        }
        other => key_not_found(other),
    })?;
    gw.keys.forget(&k.public_id);
    tracing::info!(key.id = %k.key_id, "Virtual key rotated.");
    Ok(HttpResponse::Ok().json(key_view(&gw, k, Some(new.key)).await?))
}

/// Budgets of a scope with their current windows.
#[derive(Debug, Serialize)]
struct BudgetsOf {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    budgets: Vec<BudgetView>,
}

async fn put_budget(gw: &Gateway, scope: BudgetScope, input: BudgetInput) -> Result<HttpResponse, ApiError> {
    let record = budget_record(scope, &input, Utc::now())?;
    let stored = blocking(&gw.store, move |s| s.upsert_budget(&record)).await?;
    gw.budgets.clear();
    gw.ledger
        .invalidate(stored.budget_id)
        .await
        .map_err(|e| ApiError::Unavailable { code: e.code(), message: format!("budget ledger: {e}") })?;
    Ok(HttpResponse::Ok().json(view(gw, &stored).await?))
}

async fn budgets_of(gw: &Gateway, scope: BudgetScope) -> Result<Vec<BudgetView>, ApiError> {
    let scopes = vec![scope];
    let records = blocking(&gw.store, move |s| s.budgets_for(&scopes)).await?;
    let mut out = Vec::with_capacity(records.len());
    for b in &records {
        out.push(view(gw, b).await?);
    }
    Ok(out)
}

async fn delete_budget_of(gw: &Gateway, scope: BudgetScope, period: Option<String>) -> Result<HttpResponse, ApiError> {
    let period = period.ok_or_else(|| ApiError::bad_request("missing_period", "give ?period=daily|weekly|monthly"))?;
    let deleted = blocking(&gw.store, move |s| s.delete_budget(&scope, &period)).await.map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::NotFound { code: "budget_not_found", message },
        other => other,
    })?;
    gw.budgets.clear();
    gw.ledger
        .invalidate(deleted.budget_id)
        .await
        .map_err(|e| ApiError::Unavailable { code: e.code(), message: format!("budget ledger: {e}") })?;
    Ok(HttpResponse::NoContent().finish())
}

/// Set (insert or replace) the key's budget for one period.
#[utoipa::path(tag = "keys", request_body = BudgetInput, responses((status = 200, description = "The budget", body = Object)))]
#[put("/api/billing/budget/{key_id}")]
pub async fn put_key_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    body: web::Json<BudgetInput>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    put_budget(&gw, BudgetScope::Key(key.key_id), body.into_inner()).await
}

/// The key's budgets: spend, reserved, remaining, window and alert state.
#[utoipa::path(tag = "keys", responses((status = 200, description = "Budgets of the key", body = Object)))]
#[get("/api/billing/budget/{key_id}")]
pub async fn get_key_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    let budgets = budgets_of(&gw, BudgetScope::Key(key.key_id)).await?;
    Ok(HttpResponse::Ok().json(BudgetsOf { key_id: Some(key.key_id), user_id: None, budgets }))
}

/// Delete the key's budget of `?period=`.
#[utoipa::path(tag = "keys", params(PeriodQuery), responses((status = 204, description = "Deleted")))]
#[delete("/api/billing/budget/{key_id}")]
pub async fn delete_key_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<PeriodQuery>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    delete_budget_of(&gw, BudgetScope::Key(key.key_id), q.into_inner().period).await
}

/// Set the budget of all of a user's keys for one period.
#[utoipa::path(tag = "keys", request_body = BudgetInput, responses((status = 200, description = "The budget", body = Object)))]
#[put("/api/billing/budget/user/{user_id}")]
pub async fn put_user_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    body: web::Json<BudgetInput>,
) -> Result<HttpResponse, ApiError> {
    let user = path.into_inner();
    validate_user_id(&user)?;
    let u = user.clone();
    blocking(&gw.store, move |s| s.get_user(&u))
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", format!("no user {user}")))?;
    put_budget(&gw, BudgetScope::User(user), body.into_inner()).await
}

/// A user's budgets (over all their keys).
#[utoipa::path(tag = "keys", responses((status = 200, description = "Budgets of the user", body = Object)))]
#[get("/api/billing/budget/user/{user_id}")]
pub async fn get_user_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let user = path.into_inner();
    validate_user_id(&user)?;
    caller.may_act_as(&user)?;
    let budgets = budgets_of(&gw, BudgetScope::User(user.clone())).await?;
    Ok(HttpResponse::Ok().json(BudgetsOf { key_id: None, user_id: Some(user), budgets }))
}

/// Delete a user's budget of `?period=`.
#[utoipa::path(tag = "keys", params(PeriodQuery), responses((status = 204, description = "Deleted")))]
#[delete("/api/billing/budget/user/{user_id}")]
pub async fn delete_user_budget(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<PeriodQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = path.into_inner();
    validate_user_id(&user)?;
    delete_budget_of(&gw, BudgetScope::User(user), q.into_inner().period).await
}

/// Spend of a key over a calendar period (UTC).
#[derive(Debug, Serialize)]
pub struct SpendReport {
    /// Key.
    pub key_id: Uuid,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Window start.
    pub period_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub period_end: DateTime<Utc>,
    /// Exact sum of the calls' costs.
    pub total_cost: Decimal,
    /// Calls made.
    pub total_requests: u64,
    /// Tokens of every kind.
    pub total_tokens: i64,
    /// Cost per model.
    pub by_model: BTreeMap<String, Decimal>,
    /// Cost per provider.
    pub by_provider: BTreeMap<String, Decimal>,
}

/// `GET /api/billing/spend/{key_id}?period=daily|weekly|monthly` (default monthly).
#[utoipa::path(tag = "keys", params(PeriodQuery), responses((status = 200, description = "Spend per budget window", body = Object)))]
#[get("/api/billing/spend/{key_id}")]
pub async fn key_spend(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<PeriodQuery>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    let period = q.into_inner().period.unwrap_or_else(|| "monthly".to_string());
    let p = BudgetPeriod::from_str(&period)
        .map_err(|_| ApiError::bad_request("invalid_period", "period must be daily, weekly or monthly"))?;
    let w = window(p, Tz::UTC, Utc::now());
    let scope = BudgetScope::Key(key.key_id);
    let (from, to) = (w.start, w.end);
    let calls = blocking(&gw.store, move |s| s.gateway_costs(&scope, from, to)).await?;
    let mut report = SpendReport {
        key_id: key.key_id,
        period: p.as_str().to_string(),
        period_start: w.start,
        period_end: w.end,
        total_cost: Decimal::ZERO,
        total_requests: 0,
        total_tokens: 0,
        by_model: BTreeMap::new(),
        by_provider: BTreeMap::new(),
    };
    for c in calls {
        report.total_cost += c.cost;
        report.total_requests += 1;
        report.total_tokens = report.total_tokens.saturating_add(c.total_tokens);
        *report.by_model.entry(c.model).or_default() += c.cost;
        *report.by_provider.entry(c.provider).or_default() += c.cost;
    }
    Ok(HttpResponse::Ok().json(report))
}

/// One day of a key's usage.
#[derive(Debug, Serialize)]
pub struct UsageDay {
    /// UTC date.
    pub date: chrono::NaiveDate,
    /// Exact cost.
    pub cost: Decimal,
    /// Calls.
    pub requests: u64,
    /// Tokens of every kind.
    pub tokens: i64,
}

/// `GET /api/keys/{key_id}/usage?days=N`: per UTC day, zero-filled, oldest first.
#[utoipa::path(tag = "keys", params(DaysQuery), responses((status = 200, description = "Daily usage of a key", body = Object)))]
#[get("/api/keys/{key_id}/usage")]
pub async fn key_usage(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<DaysQuery>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let key = load_key(&gw, &caller, parse_key_id(&path)?).await?;
    let days = q.into_inner().days.unwrap_or(DEFAULT_USAGE_DAYS);
    if !(1..=MAX_USAGE_DAYS).contains(&days) {
        return Err(ApiError::bad_request("invalid_days", format!("days must be 1-{MAX_USAGE_DAYS}")));
    }
    let today = Utc::now().date_naive();
    let first = today - Duration::days(days - 1);
    let from = first.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
    let to = (today + Duration::days(1)).and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
    let scope = BudgetScope::Key(key.key_id);
    let calls = blocking(&gw.store, move |s| s.gateway_costs(&scope, from, to)).await?;
    let mut by_day: BTreeMap<chrono::NaiveDate, UsageDay> = BTreeMap::new();
    let mut d = first;
    while d <= today {
        by_day.insert(d, UsageDay { date: d, cost: Decimal::ZERO, requests: 0, tokens: 0 });
        d += Duration::days(1);
    }
    for c in calls {
        if let Some(day) = by_day.get_mut(&c.occurred_at.date_naive()) {
            day.cost += c.cost;
            day.requests += 1;
            day.tokens = day.tokens.saturating_add(c.total_tokens);
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "key_id": key.key_id,
        "days": by_day.into_values().collect::<Vec<_>>(),
    })))
}
