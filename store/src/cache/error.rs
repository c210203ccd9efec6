//! The cache's error type. Callers of the read API never see it (a failing cache is a
//! miss); it comes out of construction, [`Cache::ping`](super::Cache::ping), and logs.

use std::time::Duration;

/// A cache operation or setting failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// A setting is out of range; `key` names it (e.g. `cache.ttl`).
    #[error("invalid cache setting {key}: {reason}")]
    InvalidConfig {
        /// The setting, as `cache.<field>`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `TALLY_REDIS_URL` cannot be used (bad syntax, unsupported scheme).
    #[error("invalid cache URL: {0}")]
    InvalidUrl(String),
    /// Redis could not be reached or the connection broke (refused, reset, handshake failed).
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer within the operation timeout.
    #[error("cache operation timed out after {0:?}")]
    Timeout(Duration),
    /// Redis is known to be down; the call did not try it (it is probed periodically).
    #[error("cache is degraded; skipped until the next probe")]
    Degraded,
    /// Redis answered with an error (out of memory, permission denied, wrong type).
    #[error("cache command failed: {0}")]
    Command(String),
    /// A value could not be encoded to or decoded from JSON.
    #[error("cache value codec error: {0}")]
    Codec(String),
}

impl CacheError {
    /// Stable machine-readable code (for `/readyz` bodies and logs).
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::InvalidConfig { .. } => "cache_invalid_config",
            CacheError::InvalidUrl(_) => "cache_invalid_url",
            CacheError::Unavailable(_) => "cache_unavailable",
            CacheError::Timeout(_) => "cache_timeout",
            CacheError::Degraded => "cache_degraded",
            CacheError::Command(_) => "cache_command",
            CacheError::Codec(_) => "cache_codec",
        }
    }

    /// Whether the same call may succeed later (Redis back, or less loaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            CacheError::Unavailable(_) | CacheError::Timeout(_) | CacheError::Degraded => true,
            CacheError::InvalidConfig { .. }
            | CacheError::InvalidUrl(_)
            | CacheError::Command(_)
            | CacheError::Codec(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_retryable_and_mistakes_are_not() {
        assert!(CacheError::Unavailable("refused".into()).is_retryable(), "a refused connection may come back");
        assert!(CacheError::Timeout(Duration::from_millis(200)).is_retryable(), "a timeout may not recur");
        assert!(CacheError::Degraded.is_retryable(), "a degraded cache is probed again");
        assert!(!CacheError::InvalidUrl("x".into()).is_retryable(), "a bad URL stays bad");
        assert!(!CacheError::Command("OOM".into()).is_retryable(), "a refused command is not retried");
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(CacheError::Degraded.code(), "cache_degraded", "degraded code");
        assert_eq!(CacheError::Timeout(Duration::ZERO).code(), "cache_timeout", "timeout code");
        assert_eq!(
            CacheError::InvalidConfig { key: "cache.ttl", reason: String::new() }.code(),
            "cache_invalid_config",
            "config code"
        );
    }
}
