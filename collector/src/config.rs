//! Collector settings: batch limits, in-flight bound, delivery deadline, with `validate()` naming the bad key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CollectorError;

/// Most events in one request.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one request body.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most events accepted but not yet acknowledged by the broker, over all requests.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 200_000;
/// How long a request waits for the broker's acknowledgement before answering 503.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How far in the future `occurred_at` may be (clock skew).
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(300);
/// Event ids remembered per collector to answer `duplicate` to retries.
pub const DEFAULT_RECENT_IDS: usize = 1 << 20;

/// How the ingest API behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Most events per request (413 above).
    pub max_batch_events: usize,
    /// Most body bytes per request (413 above).
    pub max_batch_bytes: usize,
    /// Most events waiting for the broker at once (503 with Retry-After above).
    pub max_in_flight: usize,
    /// How long one request waits for acknowledgements (503 after, nothing acknowledged).
    #[serde(with = "tally_actors::kafka::config::millis")]
    pub delivery_timeout: Duration,
    /// Largest accepted distance of `occurred_at` into the future.
    #[serde(with = "tally_actors::kafka::config::millis")]
    pub max_future_skew: Duration,
    /// Recently acknowledged event ids remembered to answer `duplicate` (0: none).
    pub recent_ids: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW,
            recent_ids: DEFAULT_RECENT_IDS,
        }
    }
}

impl CollectorConfig {
    /// Check every setting; the error names the bad key.
    pub fn validate(&self) -> Result<(), CollectorError> {
        if self.max_batch_events == 0 {
            return Err(CollectorError::config("collector.max_batch_events", "must be at least 1"));
        }
        if self.max_batch_bytes < 1024 {
            return Err(CollectorError::config("collector.max_batch_bytes", "must be at least 1024"));
        }
        if self.max_in_flight < self.max_batch_events {
            return Err(CollectorError::config(
                "collector.max_in_flight",
                format!(
                    "{} is smaller than max_batch_events ({}): a full batch could never be accepted",
                    self.max_in_flight, self.max_batch_events
                ),
            ));
        }
        if self.delivery_timeout < Duration::from_millis(100) {
            return Err(CollectorError::config("collector.delivery_timeout", "must be at least 100ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_key() {
        assert!(CollectorConfig::default().validate().is_ok(), "defaults are valid");
        let c = CollectorConfig { max_in_flight: 10, max_batch_events: 100, ..CollectorConfig::default() };
        let msg = c.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("collector.max_in_flight"), "names the key: {msg}");
        let c = CollectorConfig { max_batch_events: 0, ..CollectorConfig::default() };
        let msg = c.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("collector.max_batch_events"), "names the key: {msg}");
    }
}
