//! Per-key requests-per-minute limits (fixed one-minute windows, per node).
//!
//! Each node counts its own requests: with N nodes behind a balancer a key can make up
//! to N x its limit. Budgets, not this, are what is exact across nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Seconds in a rate-limit window.
const WINDOW_SECS: i64 = 60;

/// Request counts per key in the current minute.
#[derive(Clone, Default)]
pub struct RateLimiter {
    counts: Arc<Mutex<HashMap<Uuid, (i64, i64)>>>,
}

impl RateLimiter {
    /// Count one request of `key` at `now`: `Err(seconds to wait)` when it is over `limit`.
    pub fn admit(&self, key: Uuid, limit: i64, now: DateTime<Utc>) -> Result<(), u64> {
        let minute = now.timestamp().div_euclid(WINDOW_SECS);
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = counts.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            let wait = (minute + 1) * WINDOW_SECS - now.timestamp();
            return Err(u64::try_from(wait.max(1)).unwrap_or(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn limit_per_minute_then_reset() {
        let rl = RateLimiter::default();
        let k = Uuid::now_v7();
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 30).single().unwrap_or_default();
        assert!(rl.admit(k, 2, t).is_ok(), "first request admitted");
        assert!(rl.admit(k, 2, t).is_ok(), "second request admitted");
        assert_eq!(rl.admit(k, 2, t), Err(30), "third refused with the seconds left in the minute");
        let next = t + chrono::Duration::seconds(30);
        assert!(rl.admit(k, 2, next).is_ok(), "a new minute starts afresh");
        assert!(rl.admit(Uuid::now_v7(), 2, t).is_ok(), "keys are counted apart");
    }
}
