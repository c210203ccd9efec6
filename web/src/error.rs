//! ApiError: every failure an HTTP client can see, each with a status and a stable `code`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tally_actors::ActorError;
use tally_domain::DomainError;
use tally_store::StoreError;
use uuid::Uuid;

/// An API failure. `status()` maps every variant in one exhaustive match.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Budget exhausted (402).
    #[error("{message}")]
    PaymentRequired {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// No credential, or a wrong one (401).
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// Explanation (never the credential).
        message: String,
    },
    /// The credential may not do this (403).
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// No such resource (404).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Conflicts with the current state (409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Body too large (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Well-formed but not billable as given (422).
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Too many requests (429).
    #[error("{message}")]
    RateLimited {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A dependency (storage, provider, actor) is down; retry later (503).
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A bug or an unexpected failure (500).
    #[error("{message}")]
    Internal {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
}

/// JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable machine-readable code.
    pub code: &'a str,
    /// Human explanation.
    pub message: String,
    /// Set on 500 answers: the id under which the cause was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Code of every 500 answer (the specific code and the cause are logged, never sent).
pub const INTERNAL_CODE: &str = "internal";

impl ApiError {
    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// 404 with a code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound { code, message: message.into() }
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::PaymentRequired { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::RateLimited { code, .. }
            | ApiError::Unavailable { code, .. }
            | ApiError::Internal { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unavailable { .. } | ApiError::RateLimited { .. }) {
            resp.insert_header(("Retry-After", "1"));
        }
        if let ApiError::Internal { code, message } = self {
            // The cause may be a database's or a library's own text: log it, answer only an id.
            let request_id = Uuid::now_v7().to_string();
            tracing::error!(request.id = %request_id, error.code = code, error = %message, "Request failed with an internal error.");
            return resp.json(ErrorBody {
                code: INTERNAL_CODE,
                message: format!("internal error; quote request id {request_id} when reporting it"),
                request_id: Some(request_id),
            });
        }
        resp.json(ErrorBody { code: self.code(), message: self.to_string(), request_id: None })
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            DomainError::NegativeQuantity { .. }
            | DomainError::FractionalTokens { .. }
            | DomainError::NegativePrice(_)
            | DomainError::InvalidKind(_)
            | DomainError::InvalidModel(_)
            | DomainError::InvalidBudgetPeriod(_)
            | DomainError::InvalidTimeZone(_)
            | DomainError::InvalidPriceList(_)
            | DomainError::InvalidText { .. } => ApiError::BadRequest { code, message },
            DomainError::NoPrice { .. } => ApiError::Unprocessable { code, message },
            DomainError::RewritesHistory { .. } | DomainError::NotContiguous { .. } => {
                ApiError::Conflict { code, message }
            }
            DomainError::InvalidCatalog(_) => ApiError::Internal { code, message },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(ActorError::from(e))
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            ActorError::NotFound(_) => ApiError::NotFound { code, message },
            ActorError::TurnInProgress => ApiError::Conflict { code, message },
            ActorError::Invalid { .. } => ApiError::BadRequest { code, message },
            ActorError::Domain(d) => ApiError::from(d),
            // Storage messages carry the database's own text (constraint names, values, server
            // messages): logged here, never answered. A 500 is logged with its request id instead.
            ActorError::Storage { retryable: true, .. } => {
                tracing::warn!(error.code = code, error = %message, "Storage unavailable; answered 503.");
                ApiError::Unavailable { code, message: "storage is unavailable; retry later".into() }
            }
            ActorError::Storage { retryable: false, code: "conflict", .. } => {
                tracing::info!(error.code = code, error = %message, "Storage conflict; answered 409.");
                ApiError::Conflict { code, message: "the change conflicts with existing data".into() }
            }
            ActorError::Storage { retryable: false, code: "invalid", .. } => {
                tracing::info!(error.code = code, error = %message, "Storage refused the input; answered 400.");
                ApiError::BadRequest { code, message: "the input cannot be stored (a reference or a constraint is not met)".into() }
            }
            ActorError::Storage { retryable: false, .. } => ApiError::Internal { code, message },
            ActorError::Provider { code: "rate_limited", .. } => ApiError::RateLimited { code, message },
            ActorError::Provider { .. } => ApiError::Unavailable { code, message },
            ActorError::Unavailable(_) => ApiError::Unavailable { code, message },
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Unavailable { code: "unavailable", message: format!("blocking pool: {e}") }
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(e: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as J;
        match e {
            J::OverflowKnownLength { limit, .. } | J::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            J::ContentType => ApiError::bad_request("unsupported_content_type", "expected Content-Type: application/json"),
            J::Deserialize(d) => ApiError::bad_request("invalid_json", format!("invalid JSON body: {d}")),
            J::Serialize(s) => ApiError::Internal { code: "internal", message: s.to_string() },
            J::Payload(p) => ApiError::bad_request("invalid_body", format!("could not read body: {p}")),
            other => ApiError::bad_request("invalid_body", other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &ApiError) -> (u16, serde_json::Value) {
        let resp = e.error_response();
        let status = resp.status().as_u16();
        let bytes = actix_web::body::MessageBody::try_into_bytes(resp.into_body()).unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[test]
    fn a_database_failure_answers_a_generic_500_with_a_request_id() {
        let pg = "invalid byte sequence for encoding \"UTF8\": 0x00";
        let e = ApiError::from(StoreError::Database(pg.into()));
        let (status, b) = body(&e);
        assert_eq!(status, 500, "a non-retryable database failure is a 500");
        assert_eq!(b["code"], "internal", "the code is generic: {b}");
        let id = b["request_id"].as_str().unwrap_or_default();
        assert!(Uuid::parse_str(id).is_ok(), "a request id to quote: {b}");
        let text = b.to_string();
        assert!(!text.contains("UTF8") && !text.contains("0x00") && !text.contains("database"), "no database text: {text}");
    }

    #[test]
    fn storage_conflicts_invalid_input_and_outages_keep_their_status_but_not_the_database_text() {
        let secret = "duplicate key value violates unique constraint \"dim_users_pkey\"";
        let cases = [
            (StoreError::Conflict(secret.into()), 409, "conflict"),
            (StoreError::Invalid(secret.into()), 400, "invalid"),
            (StoreError::Pool(secret.into()), 503, "database_unavailable"),
        ];
        for (e, want_status, want_code) in cases {
            let (status, b) = body(&ApiError::from(e));
            assert_eq!((status, b["code"].as_str()), (want_status, Some(want_code)), "status and code kept: {b}");
            assert!(!b.to_string().contains("dim_users_pkey"), "no database text in {b}");
            assert!(b.get("request_id").is_none(), "only 500s carry a request id: {b}");
        }
    }
}
