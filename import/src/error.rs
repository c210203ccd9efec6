//! ImportError: why a fetch failed (nothing of it is returned).

/// A failed fetch.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The provider could not be reached (connection, timeout).
    #[error("cannot reach the provider: {0}")]
    Unreachable(String),
    /// The provider answered an error status, with its own error type and message.
    #[error("the provider answered {status} ({kind}): {message}")]
    Provider {
        /// HTTP status.
        status: u16,
        /// The provider's error type (`rate_limit_error`, `invalid_request_error`, ...).
        kind: String,
        /// The provider's message.
        message: String,
    },
    /// The answer breaks the documented format (missing field, negative count, bad JSON...).
    #[error("the provider's answer is not in the documented format: {0}")]
    InvalidResponse(String),
    /// Bad arguments (range, base URL).
    #[error("invalid import range: {0}")]
    InvalidRange(String),
    /// A bad setting.
    #[error("invalid import setting: {0}")]
    Config(String),
}

impl ImportError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportError::Unreachable(_) => true,
            ImportError::Provider { status, .. } => *status == 429 || *status >= 500,
            ImportError::InvalidResponse(_) | ImportError::InvalidRange(_) | ImportError::Config(_) => false,
        }
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::Unreachable(_) => "provider_unreachable",
            ImportError::Provider { .. } => "provider_error",
            ImportError::InvalidResponse(_) => "invalid_provider_response",
            ImportError::InvalidRange(_) => "invalid_range",
            ImportError::Config(_) => "invalid_import_config",
        }
    }
}
