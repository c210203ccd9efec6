//! `RateGate`: paces the fetches of one connection (Anthropic supports polling once a minute
//! sustained; the pages of one fetch are a burst it allows).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ClientConfig;

/// Lets one fetch of a connection start per `min_interval`. The caller keeps one per
/// connection (shared by scheduled runs, backfills and manual triggers) and calls
/// [`RateGate::wait`] before each [`crate::fetch_report`].
#[derive(Debug)]
pub struct RateGate {
    min_interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl RateGate {
    /// A gate letting one fetch through per `min_interval` (zero: no pacing).
    pub fn new(min_interval: Duration) -> Self {
        RateGate { min_interval, last: Mutex::new(None) }
    }

    /// A gate with the connection's `min_interval`.
    pub fn for_config(cfg: &ClientConfig) -> Self {
        RateGate::new(cfg.min_interval)
    }

    /// The least time between two fetches.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Wait until the next fetch may start, and claim its slot. Waiters are served in turn
    /// (tokio's mutex is fair), each `min_interval` after the previous one.
    pub async fn wait(&self) {
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            let next = at + self.min_interval;
            if next > Instant::now() {
                tracing::debug!(wait_ms = u64::try_from((next - Instant::now()).as_millis()).unwrap_or(u64::MAX),
                    "Waiting for the provider's polling interval.");
                tokio::time::sleep_until(next).await;
            }
        }
        *last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_fetch_passes_and_the_next_waits_the_interval() {
        let gate = RateGate::new(Duration::from_millis(150));
        let started = std::time::Instant::now();
        gate.wait().await;
        assert!(started.elapsed() < Duration::from_millis(100), "the first fetch does not wait");
        gate.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(150), "the second waits the interval");
        let free = RateGate::new(Duration::ZERO);
        let started = std::time::Instant::now();
        for _ in 0..3 {
            free.wait().await;
        }
        assert!(started.elapsed() < Duration::from_millis(100), "a zero interval never waits");
    }
}
