//! Liveness and readiness.

use actix_web::{get, web, HttpResponse};

use super::blocking;
use crate::error::ApiError;
use crate::state::AppState;

/// Alive.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready: the database answers.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    blocking(&state.store, |s| s.ping()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "database": "ok" })))
}
