//! The collector's retry policy for deliveries: exponential backoff with jitter, through
//! `tally_actors::kafka::retry` (the one module that drives `backon`).

use std::future::Future;
use std::time::Duration;

use tally_actors::kafka::retry::{retry, RetryPolicy};
use tally_actors::ActorError;

/// First pause after a transient delivery failure.
pub const DELIVERY_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between delivery attempts.
pub const DELIVERY_MAX_DELAY: Duration = Duration::from_secs(2);

/// How deliveries are retried: until success, a permanent error, or the caller's deadline
/// (the request's `delivery_timeout`) drops the future.
pub fn delivery_policy() -> RetryPolicy {
    RetryPolicy { min_delay: DELIVERY_MIN_DELAY, max_delay: DELIVERY_MAX_DELAY, max_retries: None }
}

/// Run a delivery (`op` enqueues a record and waits for its acknowledgement), retrying transient failures.
pub async fn deliver<T, F, Fut>(what: &str, op: F) -> Result<T, ActorError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ActorError>>,
{
    retry(delivery_policy(), what, ActorError::is_retryable, op).await
}
