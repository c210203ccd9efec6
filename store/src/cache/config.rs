//! Cache settings: retention (TTL), key prefix, per-operation timeout, memory bound, outage probing.

use std::time::Duration;

use super::error::CacheError;

/// How long an entry lives unless a call says otherwise: the retention policy.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Prefix of every key, so several deployments (or tests) can share one Redis.
pub const DEFAULT_KEY_PREFIX: &str = "tally:";
/// Longest a single cache operation may take before the caller falls back to the database.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(200);
/// Entries the in-memory cache holds before it evicts the oldest.
pub const DEFAULT_MAX_MEMORY_ENTRIES: usize = 10_000;
/// While Redis is unreachable, how often one call probes it (all others skip it).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest TTL accepted (Redis `PX` needs at least one millisecond).
pub const MIN_TTL: Duration = Duration::from_millis(1);
/// Longest TTL accepted: a cache entry older than this is a bug, not a policy.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Longest per-operation timeout accepted: a slower cache is worse than none.
pub const MAX_OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest key prefix accepted.
pub const MAX_KEY_PREFIX_LEN: usize = 64;

/// How the cache behaves; the same settings apply to Redis and to the in-memory cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Time to live of entries written without an explicit TTL (`cache.ttl`).
    pub ttl: Duration,
    /// Prepended to every key (`cache.key_prefix`).
    pub key_prefix: String,
    /// Bound on one operation, connect included (`cache.op_timeout`).
    pub op_timeout: Duration,
    /// Bound on the in-memory cache's entries (`cache.max_memory_entries`).
    pub max_memory_entries: usize,
    /// Probe period while Redis is unreachable (`cache.retry_interval`).
    pub retry_interval: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: DEFAULT_TTL,
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            max_memory_entries: DEFAULT_MAX_MEMORY_ENTRIES,
            retry_interval: DEFAULT_RETRY_INTERVAL,
        }
    }
}

impl CacheConfig {
    /// Check every setting; the error names the bad key.
    pub fn validate(&self) -> Result<(), CacheError> {
        let invalid = |key: &'static str, reason: String| Err(CacheError::InvalidConfig { key, reason });
        if self.ttl < MIN_TTL || self.ttl > MAX_TTL {
            return invalid("cache.ttl", format!("must be between {MIN_TTL:?} and {MAX_TTL:?}, got {:?}", self.ttl));
        }
        if self.key_prefix.is_empty() || self.key_prefix.len() > MAX_KEY_PREFIX_LEN {
            return invalid("cache.key_prefix", format!("must be 1-{MAX_KEY_PREFIX_LEN} bytes"));
        }
        if self.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']')) {
            return invalid("cache.key_prefix", "must not contain whitespace, control or glob characters".into());
        }
        if self.op_timeout.is_zero() || self.op_timeout > MAX_OP_TIMEOUT {
            return invalid(
                "cache.op_timeout",
                format!("must be more than zero and at most {MAX_OP_TIMEOUT:?}, got {:?}", self.op_timeout),
            );
        }
        if self.max_memory_entries == 0 {
            return invalid("cache.max_memory_entries", "must be at least 1".into());
        }
        if self.retry_interval.is_zero() {
            return invalid("cache.retry_interval", "must be more than zero".into());
        }
        Ok(())
    }
}

/// Bring a caller's TTL into the accepted range (a zero TTL would make Redis refuse the write).
pub(crate) fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.clamp(MIN_TTL, MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_key(config: CacheConfig) -> Option<&'static str> {
        match config.validate() {
            Err(CacheError::InvalidConfig { key, .. }) => Some(key),
            _ => None,
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(CacheConfig::default().validate().is_ok(), "the defaults must validate");
        assert_eq!(CacheConfig::default().ttl, DEFAULT_TTL, "default retention is 24 h");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let base = CacheConfig::default;
        assert_eq!(bad_key(CacheConfig { ttl: Duration::ZERO, ..base() }), Some("cache.ttl"), "zero TTL");
        assert_eq!(
            bad_key(CacheConfig { key_prefix: String::new(), ..base() }),
            Some("cache.key_prefix"),
            "empty prefix"
        );
        assert_eq!(bad_key(CacheConfig { key_prefix: "a b".into(), ..base() }), Some("cache.key_prefix"), "space");
        assert_eq!(
            bad_key(CacheConfig { op_timeout: Duration::ZERO, ..base() }),
            Some("cache.op_timeout"),
            "zero timeout"
        );
        assert_eq!(
            bad_key(CacheConfig { op_timeout: Duration::from_secs(60), ..base() }),
            Some("cache.op_timeout"),
            "a minute-long cache call is refused"
        );
        assert_eq!(
            bad_key(CacheConfig { max_memory_entries: 0, ..base() }),
            Some("cache.max_memory_entries"),
            "no room"
        );
        assert_eq!(
            bad_key(CacheConfig { retry_interval: Duration::ZERO, ..base() }),
            Some("cache.retry_interval"),
            "zero"
        );
    }

    #[test]
    fn ttl_is_clamped() {
        assert_eq!(clamp_ttl(Duration::ZERO), MIN_TTL, "zero becomes the minimum");
        assert_eq!(clamp_ttl(Duration::MAX), MAX_TTL, "huge becomes the maximum");
    }
}
