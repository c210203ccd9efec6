//! `GET /metrics`: the Prometheus scrape endpoint (OpenMetrics text).

use actix_web::{get, HttpResponse};
use tally_observability::metrics::{render, CONTENT_TYPE};

/// Every metric of this process, in OpenMetrics text format. Register before the UI's
/// catch-all route.
#[utoipa::path(tag = "health", responses((status = 200, description = "OpenMetrics text exposition", body = String, content_type = "application/openmetrics-text")))]
#[get("/metrics")]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(render())
}
