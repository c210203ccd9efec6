//! Retry policy for provider requests: exponential backoff with jitter via `backon`, honoring `retry-after`.
//!
//! This is the only module that talks to the backoff crate. Retries happen only
//! before a reply starts: once bytes of a reply have been handed to the caller,
//! a failure is reported as [`crate::StreamEvent::Failed`] instead.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::LlmError;

/// Default number of attempts (first try included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default delay before the first retry.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(500);
/// Default upper bound on one backoff delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(20);
/// Default upper bound on a provider's `retry-after` hint we are willing to sleep for.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently to retry a failed provider request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; `1` disables retries.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub initial_delay: Duration,
    /// Upper bound on one backoff delay.
    pub max_delay: Duration,
    /// Upper bound on a `retry-after` hint; longer hints are clamped to this.
    pub max_retry_after: Duration,
    /// Add random jitter to each backoff delay (recommended so clients do not retry in lockstep).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Check the policy; names the bad field.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.max_attempts == 0 {
            return Err(LlmError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.initial_delay > self.max_delay {
            return Err(LlmError::Config(
                "retry.initial_delay must not exceed retry.max_delay".into(),
            ));
        }
        Ok(())
    }

    fn backoff(&self) -> ExponentialBuilder {
        let retries = usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(retries);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }
}

/// A failed attempt: the error plus the provider's `retry-after` hint, if it sent one.
#[derive(Debug)]
pub(crate) struct AttemptError {
    /// What went wrong.
    pub error: LlmError,
    /// The provider's `retry-after` hint.
    pub retry_after: Option<Duration>,
}

impl From<LlmError> for AttemptError {
    fn from(error: LlmError) -> Self {
        let retry_after = match &error {
            LlmError::RateLimited { retry_after } => *retry_after,
            _ => None,
        };
        Self { error, retry_after }
    }
}

/// Run `attempt` until it succeeds, fails with a non-retryable error, or the policy is exhausted.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &'static str,
    attempt: F,
) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let cap = policy.max_retry_after;
    attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|e: &AttemptError| e.error.is_retryable())
        // `backoff` is None once the policy is exhausted; keep it None so we stop.
        .adjust(move |e: &AttemptError, backoff| {
            backoff.map(|d| e.retry_after.map_or(d, |ra| ra.min(cap)))
        })
        .notify(|e: &AttemptError, delay| {
            tracing::warn!(
                provider,
                error.code = e.error.code(),
                error.message = %e.error,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "Provider request failed; retrying."
            );
        })
        .await
        .map_err(|e| e.error)
}

/// Parse a `retry-after` header given in (possibly fractional) seconds.
///
/// HTTP-date values are not used by the providers we talk to and are ignored.
pub(crate) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    raw.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast_policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(5),
            jitter: true,
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_up_to_max_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), LlmError> = run(&fast_policy(3), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AttemptError::from(LlmError::Overloaded))
        })
        .await;
        assert_eq!(result, Err(LlmError::Overloaded), "last error is returned");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "max_attempts counts the first try"
        );
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), LlmError> = run(&fast_policy(5), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AttemptError::from(LlmError::Api {
                kind: "invalid_request_error".into(),
                message: "bad".into(),
            }))
        })
        .await;
        assert!(
            matches!(result, Err(LlmError::Api { .. })),
            "the API error is returned"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "permanent errors are tried once"
        );
    }

    #[tokio::test]
    async fn retry_after_is_honored_and_clamped() {
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result = run(&fast_policy(2), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // A huge hint must be clamped to max_retry_after (5 ms).
                Err(AttemptError::from(LlmError::RateLimited {
                    retry_after: Some(Duration::from_secs(3600)),
                }))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result, Ok(7), "second attempt succeeds");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "retry-after must be clamped"
        );
    }

    #[test]
    fn parses_retry_after_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h),
            Some(Duration::from_secs(3)),
            "integer seconds"
        );
        h.insert(reqwest::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h),
            Some(Duration::from_millis(500)),
            "fractional seconds"
        );
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), None, "HTTP dates are ignored");
    }
}
