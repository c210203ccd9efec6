//! Budget alert delivery: a signed JSON webhook, retried with backoff, off the request path.
//!
//! The body is signed with HMAC-SHA256 over `"{timestamp}.{body}"` using the configured
//! secret; the receiver checks `x-tally-signature: sha256=<hex>` and `x-tally-timestamp`
//! (and may refuse old timestamps against replays). Delivery runs in its own task, so a
//! slow or dead receiver never delays a gateway call. The "sent" mark is taken in the
//! database before delivery, so an alert is delivered at most once per budget window
//! even across nodes and restarts (a receiver down for all retries misses it; the log
//! line records every attempt's outcome).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-tally-signature";
/// Header carrying the signing timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-tally-timestamp";
/// Attempts per alert (the first and the retries).
const DELIVERY_ATTEMPTS: usize = 5;
/// Pause before the first retry; doubled each time.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Time limit of one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A budget passed its alert threshold in the current window.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetAlert {
    /// Always `budget.threshold_reached`.
    pub event: &'static str,
    /// Budget id.
    pub budget_id: Uuid,
    /// `key` or `user`.
    pub scope: &'static str,
    /// Key id or user id.
    pub scope_id: String,
    /// The key whose call passed the threshold.
    pub key_id: Uuid,
    /// Its owner.
    pub user_id: String,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Spend in the window when the alert fired.
    pub spent: Decimal,
    /// The budget's limit.
    pub max_budget: Decimal,
    /// The alert fraction.
    pub alert_threshold: Decimal,
    /// Window start.
    pub period_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub period_end: DateTime<Utc>,
}

/// Where alerts are delivered.
#[derive(Clone)]
pub struct AlertWebhook {
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl std::fmt::Debug for AlertWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertWebhook").field("url", &self.url).field("secret", &"***").finish()
    }
}

/// Why a webhook cannot be configured or an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Bad URL or secret.
    #[error("alert webhook: {0}")]
    Config(String),
    /// The receiver could not be reached or answered an error.
    #[error("alert webhook delivery failed: {message}")]
    Delivery {
        /// What happened.
        message: String,
        /// Whether another attempt may succeed (network errors, 429, 5xx).
        retryable: bool,
    },
}

impl AlertError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AlertError::Delivery { retryable: true, .. })
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", super::keys::hex(&mac.finalize().into_bytes()))
}

impl AlertWebhook {
    /// A webhook posting to `url` (http or https), signing with `secret` (at least 16 bytes).
    pub fn new(url: &str, secret: &str) -> Result<Self, AlertError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(AlertError::Config(format!("TALLY_ALERT_WEBHOOK_URL must be http(s), got {url:?}")));
        }
        if secret.len() < 16 {
            return Err(AlertError::Config("TALLY_ALERT_WEBHOOK_SECRET must be at least 16 bytes".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| AlertError::Config(format!("HTTP client: {e}")))?;
        Ok(AlertWebhook { client, url: url.to_string(), secret: secret.to_string() })
    }

    /// Deliver in a task of its own (never awaited by the request path).
    pub fn deliver(&self, alert: BudgetAlert) {
        let hook = self.clone();
        actix_web::rt::spawn(async move {
            let attempt = || hook.attempt(&alert);
            let result = attempt
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(FIRST_RETRY_DELAY)
                        .with_max_times(DELIVERY_ATTEMPTS - 1)
                        .with_jitter(),
                )
                .when(AlertError::is_retryable)
                .notify(|e, after| {
                    tracing::warn!(budget.id = %alert.budget_id, error = %e, retry_in_ms = after.as_millis() as u64, "Alert webhook attempt failed; retrying.");
                })
                .await;
            match result {
                Ok(status) => tracing::info!(budget.id = %alert.budget_id, http.status = status, "Budget alert delivered to the webhook."),
                Err(e) => tracing::error!(budget.id = %alert.budget_id, error = %e, "Budget alert could not be delivered."),
            }
        });
    }

    async fn attempt(&self, alert: &BudgetAlert) -> Result<u16, AlertError> {
        let body = serde_json::to_vec(alert).map_err(|e| AlertError::Delivery { message: e.to_string(), retryable: false })?;
        let ts = Utc::now().timestamp();
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature(&self.secret, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| AlertError::Delivery { message: e.to_string(), retryable: true })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            Ok(status)
        } else {
            Err(AlertError::Delivery {
                message: format!("receiver answered HTTP {status}"),
                retryable: status == 429 || status >= 500,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        // Here the signed text is "<ts>.<body>", so split the known data accordingly.
        let sig = signature("Jefe", 0, b"what do ya want for nothing?");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "hex digest with its scheme: {sig}");
        assert_ne!(sig, signature("Jefe", 1, b"what do ya want for nothing?"), "the timestamp is signed");
        assert_ne!(sig, signature("Jefe!", 0, b"what do ya want for nothing?"), "the secret matters");
        assert_eq!(sig, signature("Jefe", 0, b"what do ya want for nothing?"), "deterministic");
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(AlertWebhook::new("ftp://x", "0123456789abcdef").is_err(), "only http(s)");
        assert!(AlertWebhook::new("http://127.0.0.1:1/", "short").is_err(), "short secrets are refused");
        assert!(AlertWebhook::new("http://127.0.0.1:1/", "0123456789abcdef").is_ok(), "a good setting");
    }
}
