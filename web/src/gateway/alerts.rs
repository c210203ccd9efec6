//! Key-budget alerts of the gateway: sent through the node's alert [`Notifier`] (source
//! `key_budget`), off the request path.
//!
//! Delivery (a log line, emails, a signed JSON webhook, each retried and written to the
//! delivery log) is `tally_actors::notify`'s; the webhook body carries the fields of
//! [`BudgetAlert`] at its top level. The "sent" mark is taken in the database before
//! delivery (see `budgets::check_alerts`), so an alert goes out at most once per budget
//! window even across nodes and restarts.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_actors::notify::{Alert, Notifier, NotifyConfig, NotifyError, Secret};
use tally_store::Store;
use uuid::Uuid;

pub use tally_actors::notify::{signature, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Alert source of key-budget alerts in the delivery log.
pub const SOURCE_KEY_BUDGET: &str = "key_budget";

/// A key budget passed its alert threshold in the current window.
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

impl BudgetAlert {
    /// The alert as the notifier sends it.
    pub fn to_alert(&self) -> Alert {
        let pct = (self.alert_threshold * Decimal::ONE_HUNDRED).normalize();
        Alert {
            source: SOURCE_KEY_BUDGET.to_string(),
            subject_id: Some(self.budget_id.to_string()),
            kind: "threshold_reached".to_string(),
            title: format!(
                "Gateway {} budget of {} {} passed {pct}% of {} USD",
                self.period,
                self.scope,
                self.scope_id,
                self.max_budget.normalize()
            ),
            text: format!(
                "The {} budget of {} {} ({} USD) has {} USD spent since {} (alert at {pct}%); the last call \
                 was made with key {} of user {}.",
                self.period,
                self.scope,
                self.scope_id,
                self.max_budget.normalize(),
                self.spent.normalize(),
                self.period_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                self.key_id,
                self.user_id
            ),
            data: serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
            emails: Vec::new(),
            webhook_url: None,
        }
    }
}

/// Why key-budget alerting cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Bad URL or secret.
    #[error("alert webhook: {0}")]
    Config(String),
}

impl From<NotifyError> for AlertError {
    fn from(e: NotifyError) -> Self {
        AlertError::Config(e.to_string())
    }
}

/// Where the gateway's key-budget alerts go: the node's [`Notifier`], or (built on first
/// use, on the gateway's store) one that posts to a single webhook. Cheap to clone.
#[derive(Clone)]
pub struct AlertWebhook {
    inner: Arc<Route>,
}

enum Route {
    Notifier(Notifier),
    Webhook {
        config: Box<NotifyConfig>,
        built: OnceLock<Notifier>,
    },
}

impl std::fmt::Debug for AlertWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner.as_ref() {
            Route::Notifier(n) => f.debug_tuple("AlertWebhook").field(n).finish(),
            Route::Webhook { config, .. } => f.debug_tuple("AlertWebhook").field(config).finish(),
        }
    }
}

impl AlertWebhook {
    /// Alerts through the node's notifier (every configured channel).
    pub fn from_notifier(notifier: Notifier) -> Self {
        AlertWebhook {
            inner: Arc::new(Route::Notifier(notifier)),
        }
    }

    /// Alerts to one webhook (http or https), signed with `secret` (at least 16 bytes).
    pub fn new(url: &str, secret: &str) -> Result<Self, AlertError> {
        let config = NotifyConfig {
            webhook_secret: Some(Secret::new(secret)),
            default_webhook: Some(url.to_string()),
            ..NotifyConfig::default()
        };
        config.validate()?;
        Ok(AlertWebhook {
            inner: Arc::new(Route::Webhook {
                config: Box::new(config),
                built: OnceLock::new(),
            }),
        })
    }

    /// The notifier to send with (`store` logs the deliveries of a webhook-only route).
    fn notifier(&self, store: &Store) -> Option<Notifier> {
        match self.inner.as_ref() {
            Route::Notifier(n) => Some(n.clone()),
            Route::Webhook { config, built } => {
                if let Some(n) = built.get() {
                    return Some(n.clone());
                }
                match Notifier::new(store.clone(), config.as_ref().clone()) {
                    Ok(n) => Some(built.get_or_init(|| n).clone()),
                    Err(e) => {
                        tracing::error!(error = %e, "Key-budget alerts cannot be sent.");
                        None
                    }
                }
            }
        }
    }

    /// Send in a task of its own (never awaited by the request path).
    pub fn deliver(&self, store: &Store, alert: BudgetAlert) {
        if let Some(notifier) = self.notifier(store) {
            notifier.spawn_send(alert.to_alert());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        assert!(
            AlertWebhook::new("ftp://x", "0123456789abcdef").is_err(),
            "only http(s)"
        );
        assert!(
            AlertWebhook::new("http://127.0.0.1:1/", "short").is_err(),
            "short secrets are refused"
        );
        assert!(
            AlertWebhook::new("http://127.0.0.1:1/", "0123456789abcdef").is_ok(),
            "a good setting"
        );
        let hook =
            AlertWebhook::new("http://127.0.0.1:1/", "0123456789abcdef-secret").expect("valid");
        assert!(
            !format!("{hook:?}").contains("0123456789abcdef"),
            "the secret never prints: {hook:?}"
        );
    }
}
