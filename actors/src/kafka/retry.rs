//! Retry with exponential backoff and jitter: the one module that calls `backon`.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// First pause after a failure.
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);

/// How to retry: exponential pauses from `min_delay` to `max_delay`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First pause.
    pub min_delay: Duration,
    /// Longest pause.
    pub max_delay: Duration,
    /// Attempts after the first one; `None` retries until the error is not retryable.
    pub max_retries: Option<usize>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { min_delay: DEFAULT_MIN_DELAY, max_delay: DEFAULT_MAX_DELAY, max_retries: None }
    }
}

impl RetryPolicy {
    /// Retry forever (until the error is permanent or the caller drops the future).
    pub fn forever() -> Self {
        RetryPolicy::default()
    }

    /// At most `n` retries after the first attempt.
    pub fn times(n: usize) -> Self {
        RetryPolicy { max_retries: Some(n), ..RetryPolicy::default() }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default().with_min_delay(self.min_delay).with_max_delay(self.max_delay).with_jitter();
        match self.max_retries {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        }
    }
}

/// Run `op` until it succeeds, fails with an error `retryable` refuses, or the policy gives up.
/// Each retried failure is logged at `warn` with `what` (the final error is the caller's to log).
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, what: &str, retryable: impl Fn(&E) -> bool, op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    op.retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|e| retryable(e))
        .notify(|e, pause| {
            tracing::warn!(error = %e, pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "{what} failed; retrying.");
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn fast(n: Option<usize>) -> RetryPolicy {
        RetryPolicy { min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2), max_retries: n }
    }

    #[tokio::test]
    async fn retries_transient_failures_until_success() {
        let calls = AtomicUsize::new(0);
        let r: Result<usize, String> = retry(
            fast(None),
            "op",
            |_| true,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err("busy".to_string())
                } else {
                    Ok(n)
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3), "succeeds on the fourth attempt");
    }

    #[tokio::test]
    async fn stops_on_permanent_errors_and_after_max_retries() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), String> = retry(
            fast(None),
            "op",
            |e: &String| e != "fatal",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("fatal".to_string())
            },
        )
        .await;
        assert_eq!((r.is_err(), calls.load(Ordering::SeqCst)), (true, 1), "a permanent error is not retried");
        let calls = AtomicUsize::new(0);
        let r: Result<(), String> = retry(
            fast(Some(2)),
            "op",
            |_| true,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("busy".to_string())
            },
        )
        .await;
        assert_eq!((r.is_err(), calls.load(Ordering::SeqCst)), (true, 3), "one attempt plus two retries");
    }
}
