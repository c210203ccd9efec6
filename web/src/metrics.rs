//! HTTP telemetry middleware: one server span per request (continuing an incoming W3C
//! `traceparent`) and Prometheus request counts and latency by route pattern and status.
//!
//! Register on the App (outermost, so every other middleware and handler runs inside the
//! span): `.wrap(actix_web::middleware::from_fn(tally_web::metrics::record_request))`.
//! Latency is measured until the response head is ready: an SSE stream counts the time to
//! its first byte, not the stream's length.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;
use tally_observability::metrics;
use tracing::Instrument as _;

/// Record one request: a `http.request` span named `METHOD /route/{pattern}` and the
/// `tally_http_requests_total` / `tally_http_request_duration_seconds` metrics.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    // The pattern, never the raw path: ids in paths would make one series per id.
    let route = req.match_pattern().unwrap_or_else(|| metrics::UNMATCHED_ROUTE.to_owned());
    let span = tally_observability::http::server_span(
        &method,
        &route,
        req.path(),
        req.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes())),
    );

    let result = next.call(req).instrument(span.clone()).await;

    // Handler errors arrive as responses; an `Err` here comes from an inner middleware.
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let elapsed = started.elapsed();
    tally_observability::http::record_response(&span, status.as_u16(), elapsed);
    metrics::http_request(&method, &route, status.as_u16(), elapsed);
    result
}
