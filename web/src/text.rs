//! Text validation of every request, in one place: a NUL (U+0000) in the path, the query string or a body answers 400 `invalid_text` before any handler runs, on every backend (PostgreSQL cannot store NUL; SQLite could, so the backends would disagree).
//!
//! Headers need no check: the HTTP parser refuses NUL in them. The ingest endpoint
//! (`POST /v1/events`) is left to the collector, which rejects such an event alone
//! (`rejected`, code `invalid_text`) with the rest of its batch accepted.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, ResponseError};
use futures::StreamExt;
use tally_domain::text::{json_has_nul, url_has_nul};

use crate::error::ApiError;
use crate::gateway::error::{ErrorShape, GatewayError};
use crate::gateway::MAX_GATEWAY_BODY_BYTES;

/// Stable code of text refused here.
pub const INVALID_TEXT: &str = "invalid_text";
/// Paths whose bodies are validated event by event by their handler.
const PER_ITEM_PATHS: [&str; 1] = ["/v1/events"];

/// Middleware: refuse requests whose path, query or body carries a NUL. Register it on the
/// app innermost (`.wrap(from_fn(reject_nul))` first), so metrics and logs see the 400.
pub async fn reject_nul(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if url_has_nul(req.uri().path()) || url_has_nul(req.query_string()) {
        let resp = refusal(req.path(), "the path and query string must not contain NUL (%00)");
        return Ok(req.into_response(resp));
    }
    if PER_ITEM_PATHS.contains(&req.path()) || !has_body(&req) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let resp = ApiError::bad_request("invalid_body", format!("could not read body: {e}")).error_response();
                return Ok(req.into_response(resp));
            }
        };
        if body.len() + chunk.len() > MAX_GATEWAY_BODY_BYTES {
            let resp = too_large(req.path());
            return Ok(req.into_response(resp));
        }
        body.extend_from_slice(&chunk);
    }
    let body: Bytes = body.freeze();
    if json_has_nul(&body) {
        let resp = refusal(req.path(), "text in the body must not contain NUL (\\u0000)");
        return Ok(req.into_response(resp));
    }
    req.set_payload(Payload::from(body));
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    let declared = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) => n > 0,
        // No length: chunked (or HTTP/2 data frames); read it.
        None => headers.contains_key(actix_web::http::header::TRANSFER_ENCODING) || req.version() >= actix_web::http::Version::HTTP_2,
    }
}

/// The gateway answers in its providers' error shapes; everything else in [`ApiError`]'s.
fn gateway_shape(path: &str) -> Option<ErrorShape> {
    match path {
        "/v1/messages" => Some(ErrorShape::Anthropic),
        p if p.starts_with("/v1/") => Some(ErrorShape::OpenAi),
        _ => None,
    }
}

fn refusal(path: &str, message: &str) -> actix_web::HttpResponse {
    match gateway_shape(path) {
        Some(shape) => GatewayError::invalid(INVALID_TEXT, message, None).response(shape),
        None => ApiError::bad_request(INVALID_TEXT, message).error_response(),
    }
}

fn too_large(path: &str) -> actix_web::HttpResponse {
    match gateway_shape(path) {
        Some(shape) => GatewayError::TooLarge(MAX_GATEWAY_BODY_BYTES).response(shape),
        None => ApiError::PayloadTooLarge { limit: MAX_GATEWAY_BODY_BYTES }.error_response(),
    }
}
