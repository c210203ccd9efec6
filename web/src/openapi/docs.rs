//! Serving the contract: `GET /openapi.json`, the Swagger UI at `/docs` (vendored assets, no network), and the spec entries of routes whose handlers live outside this crate or are not annotated (ingest, the SPA).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{DOCS_PATH, SPEC_PATH};
use crate::error::ApiError;

/// Register `GET /openapi.json` and the docs page. Mount before the SPA's catch-all.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(SPEC_PATH, web::get().to(serve_spec))
        .route(DOCS_PATH, web::get().to(docs_redirect))
        .service(SwaggerUi::new("/docs/{_:.*}").config(Config::from(SPEC_PATH).try_it_out_enabled(true)));
}

async fn serve_spec() -> Result<HttpResponse, ApiError> {
    let json = super::spec_json()
        .map_err(|e| ApiError::Internal { code: "internal", message: format!("serializing the OpenAPI document: {e}") })?;
    Ok(HttpResponse::Ok().content_type("application/json").body(json))
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/docs/")).finish()
}

/// `POST /v1/events` (tally-collector's handler, mounted on a node in embedded mode): a batch of
/// usage events, a JSON array or NDJSON (`Content-Type: application/x-ndjson`). Every event gets
/// a result in order (`accepted`, `duplicate`, or `rejected` with a code and reason); a retried
/// batch bills each event once.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = Vec<serde_json::Value>, description = "Events: user_id, model, event_type, quantities, occurred_at; optional event_id or idempotency_key, provider, thread_id, message_id, source, task, was_successful", content_type = "application/json"),
    responses(
        (status = 200, description = "One result per event, in order", body = Object),
        (status = 400, description = "The body is not a batch of events", body = Object),
        (status = 401, description = "Token mode: no credential, or a wrong one (codes unauthenticated, invalid_credentials)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Token mode: ingest needs the admin token, not a user's key (code forbidden)", body = crate::openapi::ErrorBody),
        (status = 429, description = "Too many failed authentications from this address (code too_many_failed_auth)", body = crate::openapi::ErrorBody),
        (status = 413, description = "Too large or too many events", body = Object),
        (status = 503, description = "Overloaded or a dependency is down; retry", body = Object),
    ),
    security(("bearer" = []))
)]
pub fn ingest() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub fn openapi_json() {}

/// `GET /docs`: Swagger UI over this document (assets embedded in the binary), under `/docs/`.
#[utoipa::path(get, path = "/docs", tag = "meta",
    responses((status = 308, description = "Redirect to /docs/, the Swagger UI page")))]
pub fn docs_page() {}

/// `GET /{tail}`: the browser UI (embedded assets, `index.html` for client-side routes). Paths
/// under `/api/` that match no route answer 404 `route_not_found`.
#[utoipa::path(get, path = "/{tail}", tag = "meta",
    params(("tail" = String, Path, description = "A UI asset or client-side route")),
    responses(
        (status = 200, description = "A UI asset or index.html", body = String, content_type = "text/html"),
        (status = 404, description = "route_not_found (under /api/)", body = crate::openapi::ErrorBody),
    ))]
pub fn spa() {}
