//! The crate's one error type, [`LlmError`], with retryability and stable codes.

use std::time::Duration;

/// Everything that can go wrong talking to a model provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The provider answered 429; `retry_after` is its `retry-after` hint, if any.
    #[error("provider rate limit hit (retry after {retry_after:?})")]
    RateLimited {
        /// How long the provider asked us to wait before trying again.
        retry_after: Option<Duration>,
    },
    /// The provider is overloaded (Anthropic's HTTP 529).
    #[error("provider is overloaded")]
    Overloaded,
    /// An unexpected HTTP status whose body was not a recognised API error.
    #[error("provider answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The (possibly truncated) response body.
        body: String,
    },
    /// A structured API error reported by the provider (HTTP error body or mid-stream error event).
    #[error("provider API error {kind}: {message}")]
    Api {
        /// The provider's error type, e.g. `invalid_request_error`, `overloaded_error`.
        kind: String,
        /// The provider's human-readable message.
        message: String,
    },
    /// The request could not be sent or the response could not be read.
    #[error("transport error: {0}")]
    Transport(String),
    /// The provider's response could not be decoded.
    #[error("could not decode provider response: {0}")]
    Decode(String),
    /// The provider is misconfigured (bad URL, empty key, ...).
    #[error("provider configuration error: {0}")]
    Config(String),
    /// A reply stream stopped before the provider said it was complete.
    #[error("reply stream interrupted: {0}")]
    Interrupted(String),
}

/// HTTP statuses that mean "try again later" rather than "your request is wrong".
const RETRYABLE_STATUSES: [u16; 6] = [429, 500, 502, 503, 504, 529];

/// Provider error kinds (Anthropic `error.type`) that describe a transient server-side condition.
const RETRYABLE_API_KINDS: [&str; 4] = [
    "rate_limit_error",
    "overloaded_error",
    "api_error",
    "timeout_error",
];

impl LlmError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Overloaded | LlmError::Transport(_) => true,
            LlmError::Status { status, .. } => RETRYABLE_STATUSES.contains(status),
            LlmError::Api { kind, .. } => RETRYABLE_API_KINDS.contains(&kind.as_str()),
            LlmError::Interrupted(_) => true,
            LlmError::Decode(_) | LlmError::Config(_) => false,
        }
    }

    /// A stable snake_case code per variant, for logs and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Overloaded => "overloaded",
            LlmError::Status { .. } => "provider_status",
            LlmError::Api { .. } => "provider_api_error",
            LlmError::Transport(_) => "transport",
            LlmError::Decode(_) => "decode",
            LlmError::Config(_) => "config",
            LlmError::Interrupted(_) => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_status_and_kind() {
        assert!(
            LlmError::RateLimited { retry_after: None }.is_retryable(),
            "429 must be retryable"
        );
        assert!(LlmError::Overloaded.is_retryable(), "529 must be retryable");
        assert!(
            LlmError::Status {
                status: 503,
                body: String::new()
            }
            .is_retryable(),
            "503 must be retryable"
        );
        assert!(
            !LlmError::Status {
                status: 404,
                body: String::new()
            }
            .is_retryable(),
            "404 must not be retryable"
        );
        assert!(
            !LlmError::Api {
                kind: "invalid_request_error".into(),
                message: String::new()
            }
            .is_retryable(),
            "invalid_request_error must not be retryable"
        );
        assert!(
            LlmError::Api {
                kind: "overloaded_error".into(),
                message: String::new()
            }
            .is_retryable(),
            "overloaded_error must be retryable"
        );
        assert!(
            !LlmError::Config("x".into()).is_retryable(),
            "config errors are permanent"
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            LlmError::Overloaded.code(),
            "overloaded",
            "overloaded code is stable"
        );
        assert_eq!(
            LlmError::Interrupted(String::new()).code(),
            "interrupted",
            "interrupted code is stable"
        );
    }
}
