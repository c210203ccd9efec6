//! 30-day cost forecasts per scope: served from the latest stored fit when it is today's, else
//! fit on the spot (MSTL + AutoETS, see tally-forecast), stored and served. See docs/analytics-api.md.
//!
//! History is the scope's exact daily cost from the rollups: complete UTC days up to yesterday,
//! from the first day with usage (at most [`MAX_HISTORY_DAYS`] back), missing days as zero.
//! Forecast values are estimates, not billed money; they are stored and served as decimals
//! rounded to 6 places like every other amount.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use tally_forecast::{forecast_daily, ForecastError, MAX_HORIZON_DAYS, MIN_HISTORY_DAYS};
use tally_store::analytics::{AnalyticsFilter, Dim};
use tally_store::forecasts::{StoredForecast, StoredPoint, FORECAST_DECIMALS};
use tally_store::{truncate_to_micros, Store, StoreError};
use uuid::Uuid;

use super::validate_user_id;
use crate::error::ApiError;

/// Horizon served when the query names none.
pub const DEFAULT_HORIZON_DAYS: usize = 30;
/// Furthest back history reaches, in days.
pub const MAX_HISTORY_DAYS: i64 = 365;
/// Longest provider or model name in a scope.
const MAX_NAME_LEN: usize = 128;

/// State of the forecast routes: the store they read and write.
#[derive(Clone)]
pub struct ForecastState {
    /// Where history is read and forecasts are kept.
    pub store: Store,
}

/// Register the forecast routes (`GET /api/forecasts`, `POST /api/forecasts/train`) with
/// their own state, so they can be mounted beside the rest of the API.
pub fn configure(store: Store) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(ForecastState { store }))
            .service(get_forecast)
            .service(train);
    }
}

/// What a forecast is of: all spend, or one provider's, model's, user's or gateway key's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// All usage.
    Total,
    /// Models of one provider.
    Provider(String),
    /// One model.
    Model(String),
    /// One user.
    User(String),
    /// One gateway key.
    Key(Uuid),
}

impl Scope {
    /// Parse `total`, `provider:NAME`, `model:NAME`, `user:ID` or `key:UUID` (400 `invalid_scope`).
    pub fn parse(raw: &str) -> Result<Scope, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_scope",
                format!("scope {raw:?} {why}: use total, provider:NAME, model:NAME, user:ID or key:UUID"),
            )
        };
        if raw == "total" {
            return Ok(Scope::Total);
        }
        let Some((kind, value)) = raw.split_once(':') else {
            return Err(bad("is not known"));
        };
        match kind {
            "provider" | "model" => {
                let ok = !value.is_empty()
                    && value.len() <= MAX_NAME_LEN
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c));
                if !ok {
                    return Err(bad("has an invalid name"));
                }
                Ok(if kind == "provider" {
                    Scope::Provider(value.into())
                } else {
                    Scope::Model(value.into())
                })
            }
            "user" => {
                validate_user_id(value).map_err(|_| bad("has an invalid user id"))?;
                Ok(Scope::User(value.into()))
            }
            "key" => Uuid::parse_str(value)
                .map(Scope::Key)
                .map_err(|_| bad("has an invalid key id")),
            _ => Err(bad("is not known")),
        }
    }

    /// Rollup filter of this scope over a range of days.
    fn filter(&self, from_day: NaiveDate, to_day: NaiveDate) -> AnalyticsFilter {
        let mut f = AnalyticsFilter {
            from_day,
            to_day,
            user_id: None,
            provider: None,
            model: None,
            key_id: None,
            task: None,
        };
        match self {
            Scope::Total => {}
            Scope::Provider(p) => f.provider = Some(p.clone()),
            Scope::Model(m) => f.model = Some(m.clone()),
            Scope::User(u) => f.user_id = Some(u.clone()),
            Scope::Key(k) => f.key_id = Some(*k),
        }
        f
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Total => write!(f, "total"),
            Scope::Provider(p) => write!(f, "provider:{p}"),
            Scope::Model(m) => write!(f, "model:{m}"),
            Scope::User(u) => write!(f, "user:{u}"),
            Scope::Key(k) => write!(f, "key:{k}"),
        }
    }
}

impl From<ForecastError> for ApiError {
    fn from(e: ForecastError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            ForecastError::InsufficientHistory { .. } | ForecastError::Model(_) => {
                ApiError::Unprocessable { code, message }
            }
            ForecastError::InvalidHorizon { .. } | ForecastError::InvalidCsv { .. } => {
                ApiError::BadRequest { code, message }
            }
            // The history is built here from the rollups: a gap or a bad cost is a bug.
            ForecastError::NotContiguous { .. } | ForecastError::InvalidCost { .. } => {
                ApiError::Internal { code, message }
            }
        }
    }
}

/// A scope's daily history: exact cost per UTC day, contiguous, ending yesterday.
type History = Vec<(NaiveDate, Decimal)>;

/// Complete UTC days before `today` with the scope's cost, from its first day with usage (at
/// most [`MAX_HISTORY_DAYS`] back), missing days as zero. Empty when the scope has no usage.
fn load_history(store: &Store, scope: &Scope, today: NaiveDate) -> Result<History, StoreError> {
    let to = today - Duration::days(1);
    let from = today - Duration::days(MAX_HISTORY_DAYS);
    let groups = store.analytics(&scope.filter(from, to), &[Dim::Day])?;
    let mut by_day = BTreeMap::new();
    for g in groups {
        let Some(day) = g
            .key
            .first()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            return Err(StoreError::Database(format!(
                "rollup day {:?} is not a day",
                g.key
            )));
        };
        *by_day.entry(day).or_insert(Decimal::ZERO) += g.figures.cost;
    }
    let Some(first) = by_day.keys().next().copied() else {
        return Ok(Vec::new());
    };
    Ok(first
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|d| (d, by_day.get(&d).copied().unwrap_or_default()))
        .collect())
}

/// A forecast value as a stored decimal: 6 places.
fn to_decimal(v: f64) -> Result<Decimal, ForecastError> {
    Decimal::from_f64(v)
        .map(|d| {
            let mut d = d.round_dp(FORECAST_DECIMALS);
            d.rescale(FORECAST_DECIMALS);
            d
        })
        .ok_or_else(|| ForecastError::Model(format!("forecast value {v} does not fit a decimal")))
}

/// Why training one scope did not give a forecast.
#[derive(Debug)]
enum TrainError {
    /// The data does not allow a forecast (too little history, model failure).
    Skipped(ForecastError),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for TrainError {
    fn from(e: StoreError) -> Self {
        TrainError::Store(e)
    }
}

impl From<ForecastError> for TrainError {
    fn from(e: ForecastError) -> Self {
        TrainError::Skipped(e)
    }
}

impl From<TrainError> for ApiError {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Skipped(f) => ApiError::from(f),
            TrainError::Store(s) => ApiError::from(s),
        }
    }
}

/// Fit a scope's forecast on its history up to yesterday ([`MAX_HORIZON_DAYS`] ahead, so any
/// horizon can be served from it) and store it. Blocking: diesel and CPU work.
fn train_blocking(
    store: &Store,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<(StoredForecast, History), TrainError> {
    let history = load_history(store, scope, now.date_naive())?;
    let (Some(&(data_from, _)), Some(&(data_to, _))) = (history.first(), history.last()) else {
        return Err(ForecastError::InsufficientHistory {
            have: 0,
            need: MIN_HISTORY_DAYS,
        }
        .into());
    };
    let values = history
        .iter()
        .map(|(d, c)| {
            c.to_f64()
                .map(|v| (*d, v))
                .ok_or(ForecastError::InvalidCost {
                    date: *d,
                    value: f64::NAN,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fitted = forecast_daily(&values, MAX_HORIZON_DAYS)?;
    let points = fitted
        .points
        .iter()
        .map(|p| {
            Ok(StoredPoint {
                date: p.date,
                mean: to_decimal(p.mean)?,
                lower_80: to_decimal(p.lower_80)?,
                upper_80: to_decimal(p.upper_80)?,
                lower_95: to_decimal(p.lower_95)?,
                upper_95: to_decimal(p.upper_95)?,
            })
        })
        .collect::<Result<Vec<_>, ForecastError>>()?;
    let forecast = StoredForecast {
        forecast_id: Uuid::now_v7(),
        scope: scope.to_string(),
        trained_at: truncate_to_micros(now),
        data_from,
        data_to,
        history_days: u32::try_from(history.len()).unwrap_or(u32::MAX),
        horizon: u32::try_from(points.len()).unwrap_or(u32::MAX),
        method: fitted.method,
        points,
    };
    store.save_forecast(&forecast)?;
    Ok((forecast, history))
}

/// Train one scope off the event loop.
async fn train_scope(store: &Store, scope: Scope) -> Result<(StoredForecast, History), TrainError> {
    let store = store.clone();
    let now = Utc::now();
    web::block(move || train_blocking(&store, &scope, now))
        .await
        .map_err(|e| TrainError::Store(StoreError::Pool(format!("blocking pool: {e}"))))?
}

/// Whether a stored forecast can serve `horizon` days today: trained today (UTC) on data up
/// to yesterday, with at least that many points.
fn is_fresh(f: &StoredForecast, horizon: usize, today: NaiveDate) -> bool {
    f.trained_at.date_naive() == today
        && f.data_to == today - Duration::days(1)
        && f.points.len() >= horizon
}

/// Query string of `GET /api/forecasts`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// `total` (default), `provider:NAME`, `model:NAME`, `user:ID` or `key:UUID`.
    pub scope: Option<String>,
    /// Days ahead, 1-90 (default 30).
    pub horizon: Option<String>,
}

fn parse_horizon(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_HORIZON_DAYS);
    };
    match raw.parse::<usize>() {
        Ok(h) if (1..=MAX_HORIZON_DAYS).contains(&h) => Ok(h),
        _ => Err(ApiError::bad_request(
            "invalid_horizon",
            format!("horizon must be a whole number of days, 1-{MAX_HORIZON_DAYS} (got {raw:?})"),
        )),
    }
}

/// Sum of one bound over the served points.
fn total(points: &[StoredPoint], pick: fn(&StoredPoint) -> Decimal) -> Decimal {
    points.iter().map(pick).sum()
}

/// The response body: the forecast truncated to `horizon` points, with its history.
/// `total_lower_95`/`total_upper_95` add up the daily bounds: a conservative range for the
/// whole horizon (wider than a 95% interval of the total would be).
fn body(f: &StoredForecast, history: &History, horizon: usize) -> Value {
    let points = &f.points[..horizon.min(f.points.len())];
    let places = |d: Decimal| {
        let mut d = d.round_dp(FORECAST_DECIMALS);
        d.rescale(FORECAST_DECIMALS);
        d
    };
    json!({
        "scope": f.scope,
        "horizon": points.len(),
        "method": f.method,
        "trained_at": f.trained_at,
        "data_from": f.data_from,
        "data_to": f.data_to,
        "history_days": f.history_days,
        "history": history.iter().map(|(date, cost)| json!({"date": date, "cost": places(*cost)})).collect::<Vec<_>>(),
        "points": points,
        "total_mean": places(total(points, |p| p.mean)),
        "total_lower_95": places(total(points, |p| p.lower_95)),
        "total_upper_95": places(total(points, |p| p.upper_95)),
    })
}

/// `GET /api/forecasts?scope=&horizon=`: today's stored forecast of the scope, else a new fit.
#[utoipa::path(tag = "forecasts", params(ForecastQuery), responses((status = 200, description = "Forecast of a scope", body = Object), (status = 422, description = "Not enough history", body = crate::openapi::ErrorBody)))]
#[get("/api/forecasts")]
pub async fn get_forecast(
    state: web::Data<ForecastState>,
    q: web::Query<ForecastQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope::parse(q.scope.as_deref().unwrap_or("total"))?;
    let horizon = parse_horizon(q.horizon.as_deref())?;
    let today = Utc::now().date_naive();
    let store = state.store.clone();
    let key = scope.to_string();
    let lookup_scope = scope.clone();
    let cached = web::block(move || -> Result<_, StoreError> {
        match store.latest_forecast(&key)? {
            Some(f) if is_fresh(&f, horizon, today) => {
                let history = load_history(&store, &lookup_scope, today)?;
                Ok(Some((f, history)))
            }
            _ => Ok(None),
        }
    })
    .await??;
    let (forecast, history) = match cached {
        Some(hit) => hit,
        None => train_scope(&state.store, scope).await?,
    };
    Ok(HttpResponse::Ok().json(body(&forecast, &history, horizon)))
}

/// Body of `POST /api/forecasts/train`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Scopes to train; absent or empty: total, each provider and each model with usage.
    pub scopes: Option<Vec<String>>,
}

/// What a training run did: scopes trained, and scopes skipped with a code and message.
#[derive(Debug, Default)]
struct TrainOutcome {
    trained: Vec<Value>,
    skipped: Vec<Value>,
}

/// Train each scope in turn; a data problem skips the scope, a store failure stops the run.
async fn train_all(store: &Store, scopes: Vec<Scope>) -> Result<TrainOutcome, ApiError> {
    let mut out = TrainOutcome::default();
    for scope in scopes {
        let name = scope.to_string();
        match train_scope(store, scope).await {
            Ok((f, _)) => out.trained.push(json!({
                "scope": f.scope, "trained_at": f.trained_at, "history_days": f.history_days,
            })),
            Err(TrainError::Skipped(e)) => {
                out.skipped
                    .push(json!({"scope": name, "code": e.code(), "message": e.to_string()}));
            }
            Err(TrainError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Total, then each provider and each model with usage in the last [`MAX_HISTORY_DAYS`] days.
async fn default_scopes(store: &Store) -> Result<Vec<Scope>, ApiError> {
    let store = store.clone();
    let today = Utc::now().date_naive();
    web::block(move || -> Result<Vec<Scope>, StoreError> {
        let filter = Scope::Total.filter(
            today - Duration::days(MAX_HISTORY_DAYS),
            today - Duration::days(1),
        );
        let mut scopes = vec![Scope::Total];
        for g in store.analytics(&filter, &[Dim::Provider])? {
            scopes.extend(g.key.into_iter().next().map(Scope::Provider));
        }
        for g in store.analytics(&filter, &[Dim::Model])? {
            scopes.extend(g.key.into_iter().next().map(Scope::Model));
        }
        Ok(scopes)
    })
    .await?
    .map_err(ApiError::from)
}

/// `POST /api/forecasts/train`: fit and store the given scopes (default: total, providers, models).
#[utoipa::path(tag = "forecasts", request_body = inline(Option<TrainRequest>), responses((status = 200, description = "Trained and skipped scopes", body = Object)))]
#[post("/api/forecasts/train")]
pub async fn train(
    state: web::Data<ForecastState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?
    };
    let scopes = match req.scopes {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()?,
        _ => default_scopes(&state.store).await?,
    };
    let out = train_all(&state.store, scopes).await?;
    Ok(HttpResponse::Ok().json(json!({"trained": out.trained, "skipped": out.skipped})))
}

/// Retrain total, each provider and each model with usage (the daily scheduler job). Returns
/// a one-line summary; `Err` when the store failed.
pub async fn retrain_all(store: Store) -> Result<String, String> {
    let scopes = default_scopes(&store)
        .await
        .map_err(|e| format!("listing forecast scopes: {e}"))?;
    let asked = scopes.len();
    let out = train_all(&store, scopes)
        .await
        .map_err(|e| format!("training forecasts: {e}"))?;
    Ok(format!(
        "trained {} of {asked} forecast scopes, skipped {} (too little history or no fit)",
        out.trained.len(),
        out.skipped.len()
    ))
}
