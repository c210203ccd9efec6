//! The collector's error type: every failure of the ingest role, each with a status and a stable `code`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tally_actors::ActorError;
use uuid::Uuid;

/// Why the collector refused a request or could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The body is not a JSON array, a JSON object or NDJSON (400).
    #[error("{message}")]
    InvalidBody {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The batch has too many bytes or events (413).
    #[error("{message}")]
    TooLarge {
        /// Stable code (`payload_too_large`, `too_many_events`).
        code: &'static str,
        /// Explanation, naming the limit.
        message: String,
    },
    /// The in-flight buffer is full: the broker is slow or down (503 with Retry-After).
    #[error("{in_flight} events are waiting for the broker (limit {limit}); retry later")]
    Overloaded {
        /// Events waiting now.
        in_flight: usize,
        /// The configured bound.
        limit: usize,
    },
    /// The broker (or, in embedded mode, storage) did not take the batch in time; nothing was
    /// acknowledged (503 with Retry-After). Retrying with the same `event_ids` (or idempotency keys) is safe.
    #[error("{message}")]
    Unavailable {
        /// Stable code (`broker_unavailable`, `storage_unavailable`).
        code: &'static str,
        /// Explanation.
        message: String,
        /// Event ids assigned to the batch, by index (resend them to retry safely).
        event_ids: Vec<Option<Uuid>>,
    },
    /// A setting is invalid; the message names the key.
    #[error("{key}: {message}")]
    Config {
        /// The bad key.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The actor system or the bridge failed.
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// Listening or serving failed.
    #[error("server: {0}")]
    Server(String),
}

impl CollectorError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CollectorError::InvalidBody { code, .. } | CollectorError::TooLarge { code, .. } | CollectorError::Unavailable { code, .. } => {
                code
            }
            CollectorError::Overloaded { .. } => "overloaded",
            CollectorError::Config { .. } => "invalid_config",
            CollectorError::Actor(e) => e.code(),
            CollectorError::Server(_) => "server_error",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            CollectorError::InvalidBody { .. } | CollectorError::TooLarge { .. } | CollectorError::Config { .. } => false,
            CollectorError::Overloaded { .. } | CollectorError::Unavailable { .. } => true,
            CollectorError::Actor(e) => e.is_retryable(),
            CollectorError::Server(_) => false,
        }
    }

    /// A setting error.
    pub fn config(key: &'static str, message: impl Into<String>) -> Self {
        CollectorError::Config { key, message: message.into() }
    }
}

/// Seconds a client is told to wait (`Retry-After`) on a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

impl ResponseError for CollectorError {
    fn status_code(&self) -> StatusCode {
        match self {
            CollectorError::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            CollectorError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            CollectorError::Overloaded { .. } | CollectorError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            CollectorError::Actor(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            CollectorError::Actor(_) | CollectorError::Config { .. } | CollectorError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let CollectorError::Unavailable { event_ids, .. } = self {
            body["event_ids"] = serde_json::json!(event_ids);
        }
        let mut resp = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            resp.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
        }
        resp.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_retryability() {
        let cases: Vec<(CollectorError, u16, &str, bool)> = vec![
            (CollectorError::InvalidBody { code: "invalid_json", message: "x".into() }, 400, "invalid_json", false),
            (CollectorError::TooLarge { code: "too_many_events", message: "x".into() }, 413, "too_many_events", false),
            (CollectorError::Overloaded { in_flight: 5, limit: 5 }, 503, "overloaded", true),
            (
                CollectorError::Unavailable { code: "broker_unavailable", message: "down".into(), event_ids: vec![] },
                503,
                "broker_unavailable",
                true,
            ),
            (CollectorError::Actor(ActorError::Unavailable("x".into())), 503, "unavailable", true),
        ];
        for (e, status, code, retry) in cases {
            assert_eq!(e.status_code().as_u16(), status, "{e} maps to {status}");
            assert_eq!(e.code(), code, "{e} has code {code}");
            assert_eq!(e.is_retryable(), retry, "{e} retryable={retry}");
            let has_retry_after = e.error_response().headers().contains_key("retry-after");
            assert_eq!(has_retry_after, status == 503, "Retry-After only on 503");
        }
    }
}
