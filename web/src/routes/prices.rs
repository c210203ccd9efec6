//! Models and prices: list models with current prices, version history, add a version (SCD2).

use std::str::FromStr;

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_actors::{AddPriceVersion, GetPriceBook};
use tally_domain::{PriceVersion, UsageKind};
use tally_store::ModelRecord;

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
#[derive(Debug, Deserialize)]
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

/// Price versions: current ones, or the full history with `history=true`.
#[get("/api/prices")]
pub async fn list_prices(state: web::Data<AppState>, q: web::Query<PriceQuery>) -> Result<HttpResponse, ApiError> {
    let kind = q.kind.as_deref().map(UsageKind::from_str).transpose()?;
    let book = state.actors.billing.send(GetPriceBook).await.map_err(tally_actors::ActorError::from)?;
    let versions: Vec<&PriceVersion> = book
        .all_versions()
        .filter(|v| q.model.as_ref().is_none_or(|m| &v.model == m))
        .filter(|v| kind.as_ref().is_none_or(|k| &v.kind == k))
        .filter(|v| q.history || v.is_current)
        .collect();
    Ok(HttpResponse::Ok().json(versions))
}

/// Body of `POST /api/prices`.
#[derive(Debug, Deserialize)]
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
        return Err(ApiError::bad_request("price_in_past", "effective_from must not be in the past: history is never rewritten"));
    }
    let (closed, created) = state
        .actors
        .billing
        .send(AddPriceVersion { model: body.model, kind, price, effective_from })
        .await
        .map_err(tally_actors::ActorError::from)??;
    Ok(HttpResponse::Created().json(PriceChange { closed, created }))
}
