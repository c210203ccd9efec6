//! Liveness and readiness.

use actix_web::{get, web, HttpResponse};

use super::blocking;
use crate::error::ApiError;
use crate::state::AppState;

/// Alive.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive", body = Object)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready: the database answers (503 otherwise). The cache is reported but never makes the node unready:
/// reads fall back to the database while it is away.
#[utoipa::path(tag = "health", responses((status = 200, description = "Ready: storage answers", body = Object), (status = 503, description = "A dependency is down", body = crate::openapi::ErrorBody)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    blocking(&state.store, |s| s.ping()).await?;
    let cache = state.cache.clone();
    let cache_ok = web::block(move || cache.ping().is_ok()).await.unwrap_or(false);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "database": "ok",
        "cache": { "backend": state.cache.backend_name(), "status": if cache_ok { "ok" } else { "degraded" } },
    })))
}
