//! Models and prices: list models with current prices, version history with verification and
//! staleness, add a version (SCD2), verify a version, sync from LiteLLM's price list.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_actors::{AddPriceVersion, GetPriceBook};
use tally_domain::price_sync::diff_price_list;
use tally_domain::{PriceVersion, UsageKind};
use tally_store::ops::VerifiedPrice;
use tally_store::{ModelRecord, Store};
use uuid::Uuid;

use super::blocking;
use crate::error::ApiError;
use crate::state::AppState;

/// How far in the past a new version may start (clock skew between client and server).
pub const MAX_BACKDATE: Duration = Duration::seconds(5);

/// A model with the prices in force now.
#[derive(Debug, Serialize)]
pub struct ModelView {
    /// The model.
    #[serde(flatten)]
    pub model: ModelRecord,
    /// True for the default model of new threads.
    pub is_default: bool,
    /// True when replies for this model come from the simulator (no provider key configured).
    pub simulated: bool,
    /// Current price versions, one per kind.
    pub prices: Vec<PriceVersion>,
}

/// Models with their current prices.
#[utoipa::path(tag = "prices", responses((status = 200, description = "Catalogue models", body = [Object])))]
#[get("/api/models")]
pub async fn list_models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let models = blocking(&state.store, |s| s.list_models()).await?;
    let book = state.actors.billing.send(GetPriceBook).await.map_err(tally_actors::ActorError::from)?;
    let views: Vec<ModelView> = models
        .into_iter()
        .map(|m| {
            let prices = book.all_versions().filter(|v| v.model == m.name && v.is_current).cloned().collect();
            ModelView {
                is_default: m.name == state.default_model,
                simulated: state.actors.provider.is_simulated_for(&m.name),
                model: m,
                prices,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Query of the price listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PriceQuery {
    /// Only this model.
    pub model: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Include closed versions (history), not just current ones.
    #[serde(default)]
    pub history: bool,
}

/// Days a price may go unverified before it is stale ([`PriceSettings::stale_days`]).
pub const DEFAULT_PRICE_STALE_DAYS: i64 = 30;

/// Environment variable overriding [`DEFAULT_PRICE_STALE_DAYS`].
pub const PRICE_STALE_DAYS_VAR: &str = "TALLY_PRICE_STALE_DAYS";

/// Largest price list `POST /api/prices/sync` accepts (LiteLLM's file is ~3 MB).
pub const MAX_PRICE_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Where price alerts go (changes applied by a sync, stale prices). The lead adapts the
/// node's alert channels (`Notifier`) to it.
pub trait PriceAlerts: Send + Sync {
    /// Send one alert: `kind` is `price_changes` or `stale_prices`; `data` the details as JSON.
    fn price_alert(&self, kind: &str, title: String, text: String, data: serde_json::Value);
}

/// Price settings of the HTTP handlers, registered as `web::Data<PriceSettings>`; without
/// it the handlers use [`PriceSettings::from_env`] and send no alerts.
#[derive(Clone)]
pub struct PriceSettings {
    /// Days a current price may go unverified (counting from `effective_from` when never verified).
    pub stale_days: i64,
    /// Where alerts about applied changes go.
    pub alerts: Option<Arc<dyn PriceAlerts>>,
}

impl std::fmt::Debug for PriceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceSettings")
            .field("stale_days", &self.stale_days)
            .field("alerts", &self.alerts.is_some())
            .finish()
    }
}

impl PriceSettings {
    /// `TALLY_PRICE_STALE_DAYS` (default 30; a value that is not a positive whole number is
    /// ignored with a warning), no alerts.
    pub fn from_env() -> Self {
        let stale_days = match std::env::var(PRICE_STALE_DAYS_VAR) {
            Ok(v) => match v.trim().parse::<i64>() {
                Ok(days) if days > 0 => days,
                _ => {
                    tracing::warn!(value = %v, "{PRICE_STALE_DAYS_VAR} is not a positive number of days; using {DEFAULT_PRICE_STALE_DAYS}.");
                    DEFAULT_PRICE_STALE_DAYS
                }
            },
            Err(_) => DEFAULT_PRICE_STALE_DAYS,
        };
        PriceSettings { stale_days, alerts: None }
    }
}

fn settings(data: Option<web::Data<PriceSettings>>) -> PriceSettings {
    data.map(|d| d.get_ref().clone()).unwrap_or_else(PriceSettings::from_env)
}

/// Whether a price is stale at `now`: current, in force, and not verified (or, never
/// verified, not in force) for more than `stale_days`. Closed and future versions are not.
pub fn is_stale(price: &VerifiedPrice, now: DateTime<Utc>, stale_days: i64) -> bool {
    let v = &price.version;
    if !v.is_current || v.effective_from > now {
        return false;
    }
    let since = price.verified_at.unwrap_or(v.effective_from);
    now - since > Duration::days(stale_days)
}

/// A price version as listed: the version, `verified_at` and `stale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceListing {
    /// The version and its `verified_at`.
    #[serde(flatten)]
    pub price: VerifiedPrice,
    /// Not verified for the stale threshold (see [`is_stale`]).
    pub stale: bool,
}

/// Price versions: current ones, or the full history with `history=true`; each with
/// `verified_at` and `stale`.
#[utoipa::path(tag = "prices", params(PriceQuery), responses((status = 200, description = "Price versions", body = [Object])))]
#[get("/api/prices")]
pub async fn list_prices(
    state: web::Data<AppState>,
    q: web::Query<PriceQuery>,
    price_settings: Option<web::Data<PriceSettings>>,
) -> Result<HttpResponse, ApiError> {
    let kind = q.kind.as_deref().map(UsageKind::from_str).transpose()?;
    let current_only = !q.history;
    let prices = blocking(&state.store, move |s| s.verified_prices(current_only)).await?;
    let stale_days = settings(price_settings).stale_days;
    let now = Utc::now();
    let listed: Vec<PriceListing> = prices
        .into_iter()
        .filter(|p| q.model.as_ref().is_none_or(|m| &p.version.model == m))
        .filter(|p| kind.as_ref().is_none_or(|k| &p.version.kind == k))
        .map(|price| PriceListing { stale: is_stale(&price, now, stale_days), price })
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}

/// Mark a current price version verified now; returns it as listed.
#[utoipa::path(tag = "prices", responses((status = 200, description = "The version, verified now", body = Object)))]
#[post("/api/prices/{id}/verify")]
pub async fn verify_price(
    state: web::Data<AppState>,
    path: web::Path<String>,
    price_settings: Option<web::Data<PriceSettings>>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path.into_inner())
        .map_err(|_| ApiError::bad_request("invalid_pricing_id", "the price version id must be a UUID"))?;
    let now = Utc::now();
    let price = blocking(&state.store, move |s| s.verify_price(id, now)).await?;
    let stale_days = settings(price_settings).stale_days;
    Ok(HttpResponse::Ok().json(PriceListing { stale: is_stale(&price, now, stale_days), price }))
}

/// Query of `POST /api/prices/sync`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// Report without changing anything (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// One price the sync changed (or would change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncChange {
    /// Model name.
    pub model: String,
    /// Usage kind.
    #[schema(value_type = String)]
    pub kind: UsageKind,
    /// Price per million before (`null`: no version of this kind).
    pub old: Option<Decimal>,
    /// Price per million from the list.
    pub new: Decimal,
    /// The new version's id (`null` in a dry run).
    pub pricing_id: Option<Uuid>,
}

/// Body of the sync's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncResponse {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Prices that differ from the list.
    pub changes: Vec<SyncChange>,
    /// Current prices the list confirms.
    pub unchanged: usize,
    /// Of those, versions marked verified now (0 in a dry run).
    pub verified: usize,
    /// Entries of the list that are no Tally model.
    pub unknown_models: usize,
}

/// `POST /api/prices/sync` with its own body limit (LiteLLM's file is larger than the
/// JSON limit of the other routes). Register with `.service(prices::sync_resource())`.
pub fn sync_resource() -> actix_web::Resource {
    web::resource("/api/prices/sync")
        .app_data(web::PayloadConfig::new(MAX_PRICE_LIST_BYTES))
        .route(web::post().to(sync_prices))
}

/// Diff LiteLLM's `model_prices_and_context_window.json` (the body) against the current
/// prices; unless `dry_run`, add a version (effective now, through the BillingActor so the
/// in-memory price book follows) for each change and mark the unchanged versions verified.
#[utoipa::path(post, path = "/api/prices/sync", tag = "prices", params(SyncQuery), request_body = crate::openapi::PriceList, responses((status = 200, description = "What changed (or would)", body = SyncResponse), (status = 409, description = "price_rewrites_history or price_not_contiguous", body = crate::openapi::ErrorBody)))]
pub async fn sync_prices(
    state: web::Data<AppState>,
    q: web::Query<SyncQuery>,
    body: web::Bytes,
    price_settings: Option<web::Data<PriceSettings>>,
) -> Result<HttpResponse, ApiError> {
    let json = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_price_list", "the price list must be UTF-8 JSON"))?;
    let models = blocking(&state.store, |s| s.list_models()).await?;
    let providers: BTreeMap<String, String> = models.into_iter().map(|m| (m.name, m.provider)).collect();
    let book = state.actors.billing.send(GetPriceBook).await.map_err(tally_actors::ActorError::from)?;
    let report = diff_price_list(json, &book, &providers)?;
    let dry_run = q.dry_run;
    let now = Utc::now();
    let mut changes = Vec::with_capacity(report.changes.len());
    for c in report.changes {
        let pricing_id = if dry_run {
            None
        } else {
            let (_, created) = state
                .actors
                .billing
                .send(AddPriceVersion {
                    model: c.model.clone(),
                    kind: c.kind.clone(),
                    price: c.new,
                    effective_from: now,
                })
                .await
                .map_err(tally_actors::ActorError::from)??;
            Some(created.id)
        };
        changes.push(SyncChange { model: c.model, kind: c.kind, old: c.old, new: c.new, pricing_id });
    }
    let unchanged = report.unchanged.len();
    let verified = if dry_run {
        0
    } else {
        let mut by_model: BTreeMap<String, Vec<UsageKind>> = BTreeMap::new();
        for u in report.unchanged {
            by_model.entry(u.model).or_default().push(u.kind);
        }
        blocking(&state.store, move |s| {
            by_model.iter().try_fold(0, |n, (model, kinds)| Ok(n + s.verify_current_prices(model, kinds, now)?))
        })
        .await?
    };
    let response = SyncResponse { dry_run, changes, unchanged, verified, unknown_models: report.unknown_models };
    tracing::info!(
        dry_run,
        changes = response.changes.len(),
        unchanged,
        verified,
        unknown_models = response.unknown_models,
        "Price list synced."
    );
    if !dry_run && !response.changes.is_empty() {
        if let Some(alerts) = settings(price_settings).alerts {
            let lines: Vec<String> = response
                .changes
                .iter()
                .map(|c| {
                    let old = c.old.map(|o| o.to_string()).unwrap_or_else(|| "none".into());
                    format!("{} {}: {} -> {} per {}", c.model, c.kind, old, c.new, unit_label(&c.kind))
                })
                .collect();
            let data = serde_json::to_value(&response.changes).unwrap_or(serde_json::Value::Null);
            alerts.price_alert(
                "price_changes",
                format!("{} price change(s) applied from LiteLLM's list", response.changes.len()),
                lines.join("\n"),
                data,
            );
        }
    }
    Ok(HttpResponse::Ok().json(response))
}

fn unit_label(kind: &UsageKind) -> &'static str {
    if kind.is_token() {
        "million tokens"
    } else {
        "unit"
    }
}

/// The daily stale-price reminder (a scheduler job): finds current prices not verified for
/// `stale_days` and, when there are any, sends one `stale_prices` alert listing them.
/// Returns a one-line summary for the run history.
pub async fn stale_price_job(
    store: Store,
    alerts: Option<Arc<dyn PriceAlerts>>,
    stale_days: i64,
) -> Result<String, String> {
    let prices = tokio::task::spawn_blocking(move || store.verified_prices(true))
        .await
        .map_err(|e| format!("price listing task failed: {e}"))?
        .map_err(|e| format!("prices could not be read: {e}"))?;
    let now = Utc::now();
    let stale: Vec<&VerifiedPrice> = prices.iter().filter(|p| is_stale(p, now, stale_days)).collect();
    if stale.is_empty() {
        return Ok(format!("no stale prices ({} current, threshold {stale_days} days)", prices.len()));
    }
    let summary = format!("{} of {} current prices not verified for {stale_days} days", stale.len(), prices.len());
    match alerts {
        Some(alerts) => {
            let lines: Vec<String> = stale
                .iter()
                .map(|p| {
                    let since = p.verified_at.map(|t| format!("verified {}", t.date_naive())).unwrap_or_else(|| {
                        format!("never verified, in force since {}", p.version.effective_from.date_naive())
                    });
                    format!("{} {} = {} ({since})", p.version.model, p.version.kind, p.version.price)
                })
                .collect();
            let data = serde_json::to_value(&stale).unwrap_or(serde_json::Value::Null);
            alerts.price_alert("stale_prices", summary.clone(), lines.join("\n"), data);
            Ok(format!("{summary}; alert sent"))
        }
        None => Ok(format!("{summary}; no alert channel")),
    }
}

/// Body of `POST /api/prices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrice {
    /// Model name.
    pub model: String,
    /// Usage kind (`input_tokens`, ..., or a resource such as `images`).
    pub kind: String,
    /// USD per million tokens (per unit for resources), as a decimal string.
    pub price: String,
    /// When it takes effect; default now. Must not be in the past.
    pub effective_from: Option<DateTime<Utc>>,
}

/// Result of adding a version.
#[derive(Debug, Serialize)]
pub struct PriceChange {
    /// The version that was closed, if there was one.
    pub closed: Option<PriceVersion>,
    /// The new current version.
    pub created: PriceVersion,
}

/// Add a price version: closes the current version at `effective_from`.
#[utoipa::path(tag = "prices", request_body = NewPrice, responses((status = 201, description = "The closed and created versions", body = Object), (status = 409, description = "price_rewrites_history or price_not_contiguous", body = crate::openapi::ErrorBody)))]
#[post("/api/prices")]
pub async fn add_price(state: web::Data<AppState>, body: web::Json<NewPrice>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let kind = UsageKind::from_str(&body.kind)?;
    let price = Decimal::from_str(body.price.trim())
        .map_err(|e| ApiError::bad_request("invalid_price", format!("price must be a decimal string: {e}")))?;
    if price.is_sign_negative() && !price.is_zero() {
        return Err(ApiError::bad_request("negative_price", "price must not be negative"));
    }
    let now = Utc::now();
    let effective_from = body.effective_from.unwrap_or(now);
    // Usage already billed was priced at the versions then in force; a version
    // starting in the past would silently change what those events cost.
    if effective_from < now - MAX_BACKDATE {
        return Err(ApiError::bad_request(
            "price_in_past",
            "effective_from must not be in the past: history is never rewritten",
        ));
    }
    let (closed, created) = state
        .actors
        .billing
        .send(AddPriceVersion { model: body.model, kind, price, effective_from })
        .await
        .map_err(tally_actors::ActorError::from)??;
    Ok(HttpResponse::Created().json(PriceChange { closed, created }))
}
