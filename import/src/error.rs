//! `ImportError`: why a fetch failed. A failed fetch returns nothing of what it read.

/// A failed fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The provider could not be reached (connection refused, reset, timeout).
    #[error("cannot reach the provider: {0}")]
    Unreachable(String),
    /// The provider answered an error status; its error body's type and message are kept.
    #[error("the provider answered {status} ({kind}): {message}")]
    Provider {
        /// HTTP status.
        status: u16,
        /// The provider's error type (`rate_limit_error`, `invalid_request_error`, ...), or
        /// `unknown` when the body is not the provider's error shape.
        kind: String,
        /// The provider's message (OpenAI's `code` and Anthropic's `request_id` appended when given).
        message: String,
    },
    /// The answer breaks the documented format: malformed JSON, a missing required field, a
    /// wrong type, a negative count, a time that is not RFC 3339 / Unix seconds.
    #[error("the provider's answer to {endpoint} is not in the documented format: {field}: {reason}")]
    InvalidResponse {
        /// The endpoint path (`/v1/organizations/usage_report/messages`, ...).
        endpoint: String,
        /// Path of the offending field (`data[2].results[0].output_tokens`), or `body`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The asked range is empty or reversed.
    #[error("invalid import range: {0}")]
    InvalidRange(String),
    /// A bad setting; names the key.
    #[error("invalid import setting: {0}")]
    Config(String),
}

impl ImportError {
    /// Whether trying again later may succeed: unreachable, 429, 5xx (Anthropic's 529 included).
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportError::Unreachable(_) => true,
            ImportError::Provider { status, .. } => *status == 429 || *status >= 500,
            ImportError::InvalidResponse { .. } | ImportError::InvalidRange(_) | ImportError::Config(_) => false,
        }
    }

    /// A stable code for logs and API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::Unreachable(_) => "provider_unreachable",
            ImportError::Provider { status: 429, .. } => "provider_rate_limited",
            ImportError::Provider { .. } => "provider_error",
            ImportError::InvalidResponse { .. } => "invalid_provider_response",
            ImportError::InvalidRange(_) => "invalid_range",
            ImportError::Config(_) => "invalid_import_config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(status: u16) -> ImportError {
        ImportError::Provider { status, kind: "k".into(), message: "m".into() }
    }

    #[test]
    fn rate_limits_server_errors_and_outages_are_retryable_and_nothing_else() {
        assert!(provider(429).is_retryable(), "429 is retried");
        assert!(provider(500).is_retryable(), "500 is retried");
        assert!(provider(529).is_retryable(), "Anthropic's 529 overloaded is retried");
        assert!(ImportError::Unreachable("reset".into()).is_retryable(), "a connection failure is retried");
        assert!(!provider(400).is_retryable(), "400 is not retried");
        assert!(!provider(401).is_retryable(), "401 is not retried");
        assert!(!provider(404).is_retryable(), "404 is not retried");
        let invalid = ImportError::InvalidResponse {
            endpoint: "/v1/organization/costs".into(),
            field: "data[0].results[1].amount.value".into(),
            reason: "is not a decimal".into(),
        };
        assert!(!invalid.is_retryable(), "a malformed answer is not retried");
        assert!(invalid.to_string().contains("data[0].results[1].amount.value"), "the message names the field");
    }
}
