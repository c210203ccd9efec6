//! Alert delivery: the one path every alert (budgets, key budgets, tests) goes out by.
//!
//! A [`Notifier`] sends an [`Alert`] to each of its channels: a structured log line
//! always, an email per recipient (SMTP, when configured) and a signed JSON webhook (when
//! a URL is known). Every channel target first gets a `pending` row in the delivery log
//! (`alert_deliveries`), is tried with exponential backoff (the crate's one retry module),
//! and ends `delivered` or `failed` with its attempts and last error, so the log shows what
//! happened to every alert.

pub mod email;
pub mod webhook;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tally_store::alerts::{DeliveryRecord, DeliveryStatus};
use tally_store::{Store, StoreError};
use uuid::Uuid;

pub use email::EmailSender;
pub use webhook::{signature, WebhookSender, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::kafka::retry::{retry, RetryPolicy};

/// A delivery as logged (one alert, one channel target).
pub type Delivery = DeliveryRecord;

/// Retries after the first attempt of each delivery.
pub const DEFAULT_DELIVERY_RETRIES: usize = 4;
/// Pause before the first retry; doubled each time (with jitter).
pub const DEFAULT_FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest pause between attempts.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Time limit of one attempt (an SMTP exchange or an HTTP request).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest webhook signing secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest error text kept in the delivery log.
const MAX_ERROR_CHARS: usize = 500;

/// The channel names of the delivery log.
pub mod channel {
    /// An email to one recipient.
    pub const EMAIL: &str = "email";
    /// A POST to one webhook URL.
    pub const WEBHOOK: &str = "webhook";
    /// The structured log line every alert gets.
    pub const LOG: &str = "log";
}

/// A secret (password, signing key): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where emails go out: a plain SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Sender address (`From`).
    pub from: String,
    /// Login, when the relay wants one.
    pub username: Option<String>,
    /// Password of `username`.
    pub password: Option<Secret>,
}

impl SmtpConfig {
    /// From `smtp://[user[:password]@]host[:port]` (port 25 by default) and a sender address.
    pub fn from_url(url: &str, from: &str) -> Result<Self, NotifyError> {
        let rest = url.strip_prefix("smtp://").ok_or_else(|| {
            NotifyError::Config(format!(
                "--smtp-url must start with smtp://, got {:?}",
                redact(url)
            ))
        })?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(Secret::new(p))),
                None => (Some(a.to_string()), None),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| NotifyError::Config(format!("--smtp-url has a bad port {p:?}")))?,
            ),
            None => (hostport.to_string(), 25),
        };
        if host.is_empty() {
            return Err(NotifyError::Config("--smtp-url has no host".into()));
        }
        let config = SmtpConfig {
            host,
            port,
            from: from.to_string(),
            username,
            password,
        };
        config.validate()?;
        Ok(config)
    }

    /// Check the sender address and host.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.host.is_empty() {
            return Err(NotifyError::Config("smtp host is empty".into()));
        }
        if !plausible_email(&self.from) {
            return Err(NotifyError::Config(format!(
                "--alert-from {:?} is not an email address",
                self.from
            )));
        }
        Ok(())
    }
}

/// `url` with any `user:password@` part hidden.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

/// Whether `s` looks like an email address: one `@`, a local part, a dotted domain, no
/// spaces or control characters (the SMTP server has the last word).
pub fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
}

/// How alerts are delivered.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The SMTP relay; without it, email deliveries are logged as failed.
    pub smtp: Option<SmtpConfig>,
    /// Webhook signing secret; without it, webhooks go out unsigned.
    pub webhook_secret: Option<Secret>,
    /// Recipients of alerts that name none (system alerts, key budgets).
    pub default_emails: Vec<String>,
    /// Webhook of alerts that name none.
    pub default_webhook: Option<String>,
    /// Retries of each delivery.
    pub retry: RetryPolicy,
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp: None,
            webhook_secret: None,
            default_emails: Vec::new(),
            default_webhook: None,
            retry: RetryPolicy {
                min_delay: DEFAULT_FIRST_RETRY_DELAY,
                max_delay: DEFAULT_MAX_RETRY_DELAY,
                max_retries: Some(DEFAULT_DELIVERY_RETRIES),
            },
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

impl NotifyConfig {
    /// Check every setting; the error names the bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        if let Some(secret) = &self.webhook_secret {
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(NotifyError::Config(format!(
                    "TALLY_ALERT_WEBHOOK_SECRET must be at least {MIN_SECRET_BYTES} bytes"
                )));
            }
        }
        if let Some(bad) = self.default_emails.iter().find(|e| !plausible_email(e)) {
            return Err(NotifyError::Config(format!(
                "--alert-email {bad:?} is not an email address"
            )));
        }
        if let Some(url) = &self.default_webhook {
            if !is_http_url(url) {
                return Err(NotifyError::Config(format!(
                    "--alert-webhook-url must be http(s), got {url:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Something to tell people about.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What raised it: `budget`, `key_budget`, `price`, `test`.
    pub source: String,
    /// What it is about (a budget id), if anything.
    pub subject_id: Option<String>,
    /// What happened: `threshold_80`, `projected_breach`, `threshold_reached`, `test`, ...
    pub kind: String,
    /// One line: the email subject.
    pub title: String,
    /// Human explanation: the email body.
    pub text: String,
    /// Machine-readable details (an object; its fields are merged into the webhook body).
    pub data: Value,
    /// Recipients; empty means the configured defaults.
    pub emails: Vec<String>,
    /// Webhook; `None` means the configured default.
    pub webhook_url: Option<String>,
}

impl Alert {
    /// The JSON body webhooks receive (and the delivery log keeps): the fields of `data`,
    /// then `source`, `kind`, `subject_id`, `title`, `text` and `sent_at`, plus `event`
    /// (`<source>.<kind>`) unless `data` names its own.
    pub fn body(&self) -> Value {
        let mut body = match &self.data {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("data".into(), other.clone());
                m
            }
        };
        body.entry("event")
            .or_insert_with(|| Value::String(format!("{}.{}", self.source, self.kind)));
        body.insert("source".into(), Value::String(self.source.clone()));
        body.insert("kind".into(), Value::String(self.kind.clone()));
        body.insert(
            "subject_id".into(),
            self.subject_id.clone().map_or(Value::Null, Value::String),
        );
        body.insert("title".into(), Value::String(self.title.clone()));
        body.insert("text".into(), Value::String(self.text.clone()));
        body.insert(
            "sent_at".into(),
            Value::String(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
        Value::Object(body)
    }
}

/// Why a notifier cannot be configured or a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// A bad setting (named in the message).
    #[error("alert delivery settings: {0}")]
    Config(String),
    /// An attempt failed.
    #[error("{message}")]
    Delivery {
        /// What happened.
        message: String,
        /// Whether another attempt may succeed (network errors, timeouts, 429, 5xx, SMTP 4xx).
        retryable: bool,
    },
}

impl NotifyError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NotifyError::Delivery {
                retryable: true,
                ..
            }
        )
    }

    /// A permanent delivery failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError::Delivery {
            message: message.into(),
            retryable: false,
        }
    }

    /// A delivery failure another attempt may fix.
    pub fn transient(message: impl Into<String>) -> Self {
        NotifyError::Delivery {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Sends alerts over every channel and logs each delivery. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: NotifyConfig,
    email: Option<EmailSender>,
    webhook: WebhookSender,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One channel target of an alert.
#[derive(Debug, Clone)]
enum Target {
    Email(String),
    Webhook(String),
}

impl Notifier {
    /// A notifier logging deliveries in `store` (settings checked first).
    pub fn new(store: Store, config: NotifyConfig) -> Result<Self, NotifyError> {
        config.validate()?;
        let email = config
            .smtp
            .clone()
            .map(|smtp| EmailSender::new(smtp, config.attempt_timeout));
        let webhook = WebhookSender::new(config.webhook_secret.clone(), config.attempt_timeout)?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                store,
                config,
                email,
                webhook,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// The store deliveries are logged in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Deliver `alert` over every channel (concurrently), each retried; returns the
    /// deliveries as logged, the log line first. Failures are in the returned records
    /// (and the log), never an error: an alert is never lost silently.
    pub async fn send(&self, alert: Alert) -> Vec<Delivery> {
        let body = alert.body();
        let payload = body.to_string();
        let emails = if alert.emails.is_empty() {
            &self.inner.config.default_emails
        } else {
            &alert.emails
        };
        let mut targets: Vec<Target> = Vec::new();
        for e in emails {
            if !targets
                .iter()
                .any(|t| matches!(t, Target::Email(x) if x.eq_ignore_ascii_case(e)))
            {
                targets.push(Target::Email(e.clone()));
            }
        }
        if let Some(url) = alert
            .webhook_url
            .as_ref()
            .or(self.inner.config.default_webhook.as_ref())
        {
            targets.push(Target::Webhook(url.clone()));
        }
        let log = self.log_line(&alert, &payload).await;
        let sends = targets
            .into_iter()
            .map(|t| self.deliver(&alert, t, &payload));
        let mut out = vec![log];
        out.extend(futures::future::join_all(sends).await);
        out
    }

    /// [`Notifier::send`] in a task of its own (the caller does not wait; outcomes are logged).
    pub fn spawn_send(&self, alert: Alert) {
        let notifier = self.clone();
        tokio::spawn(async move {
            notifier.send(alert).await;
        });
    }

    /// The structured log line every alert gets, logged as delivered.
    async fn log_line(&self, alert: &Alert, payload: &str) -> Delivery {
        tracing::warn!(
            alert.source = %alert.source,
            alert.kind = %alert.kind,
            alert.subject_id = alert.subject_id.as_deref().unwrap_or(""),
            alert.title = %alert.title,
            alert.data = %alert.data,
            "Alert raised."
        );
        let record = self.new_record(
            alert,
            channel::LOG,
            "log",
            payload,
            DeliveryStatus::Delivered,
            1,
        );
        self.blocking("record the alert's log delivery", {
            let record = record.clone();
            move |s| s.record_delivery(&record)
        })
        .await;
        record
    }

    fn new_record(
        &self,
        alert: &Alert,
        channel: &str,
        target: &str,
        payload: &str,
        status: DeliveryStatus,
        attempts: i32,
    ) -> Delivery {
        let now = Utc::now();
        DeliveryRecord {
            delivery_id: Uuid::now_v7(),
            source: alert.source.clone(),
            subject_id: alert.subject_id.clone(),
            alert_kind: alert.kind.clone(),
            channel: channel.to_string(),
            target: target.to_string(),
            status,
            attempts,
            last_error: None,
            payload: payload.to_string(),
            created_at: now,
            updated_at: now,
        }
    }

    /// One target: log it pending, try it with retries, log the outcome.
    async fn deliver(&self, alert: &Alert, target: Target, payload: &str) -> Delivery {
        let (channel_name, target_text) = match &target {
            Target::Email(e) => (channel::EMAIL, e.clone()),
            Target::Webhook(u) => (channel::WEBHOOK, u.clone()),
        };
        let mut record = self.new_record(
            alert,
            channel_name,
            &target_text,
            payload,
            DeliveryStatus::Pending,
            0,
        );
        let logged = self
            .blocking("log a pending alert delivery", {
                let record = record.clone();
                move |s| s.record_delivery(&record)
            })
            .await
            .is_some();
        let attempts = AtomicI32::new(0);
        let what = format!("Alert {} delivery to {target_text}", channel_name);
        let result = retry(
            self.inner.config.retry,
            &what,
            NotifyError::is_retryable,
            || {
                attempts.fetch_add(1, Ordering::SeqCst);
                self.attempt(alert, &target, &record.delivery_id, payload)
            },
        )
        .await;
        record.attempts = attempts.load(Ordering::SeqCst);
        match &result {
            Ok(()) => {
                record.status = DeliveryStatus::Delivered;
                tracing::info!(
                    alert.source = %alert.source, alert.kind = %alert.kind, channel = channel_name,
                    target = %target_text, attempts = record.attempts, "Alert delivered."
                );
            }
            Err(e) => {
                record.status = DeliveryStatus::Failed;
                record.last_error = Some(e.to_string().chars().take(MAX_ERROR_CHARS).collect());
                tracing::error!(
                    alert.source = %alert.source, alert.kind = %alert.kind, channel = channel_name,
                    target = %target_text, attempts = record.attempts, error = %e, "Alert could not be delivered."
                );
            }
        }
        if logged {
            let (id, status, attempts, error) = (
                record.delivery_id,
                record.status,
                record.attempts,
                record.last_error.clone(),
            );
            if let Some(stored) = self
                .blocking("log an alert delivery's outcome", move |s| {
                    s.update_delivery(id, status, attempts, error.as_deref())
                })
                .await
            {
                record = stored;
            }
        }
        record
    }

    async fn attempt(
        &self,
        alert: &Alert,
        target: &Target,
        delivery_id: &Uuid,
        payload: &str,
    ) -> Result<(), NotifyError> {
        match target {
            Target::Email(to) => match &self.inner.email {
                Some(sender) => sender.send(to, alert).await,
                None => Err(NotifyError::permanent(
                    "no SMTP relay is configured (--smtp-url)",
                )),
            },
            Target::Webhook(url) => {
                self.inner
                    .webhook
                    .post(url, delivery_id, payload.as_bytes())
                    .await
            }
        }
    }

    /// Run a delivery-log write off the event loop; a failure is logged here (once) and
    /// gives `None`: the alert still goes out.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = self.inner.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Could not {what}.");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not {what}: the blocking task failed.");
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_and_hide_passwords() {
        let c = SmtpConfig::from_url("smtp://127.0.0.1:2525", "tally@example.com").expect("plain");
        assert_eq!(
            (c.host.as_str(), c.port, c.username.is_none()),
            ("127.0.0.1", 2525, true),
            "host and port"
        );
        let c = SmtpConfig::from_url("smtp://bob:s3cret@mail.example.com", "tally@example.com")
            .expect("auth");
        assert_eq!(
            (c.port, c.username.as_deref()),
            (25, Some("bob")),
            "default port and user"
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password never prints: {c:?}"
        );
        assert!(
            SmtpConfig::from_url("http://x", "tally@example.com").is_err(),
            "only smtp://"
        );
        assert!(
            SmtpConfig::from_url("smtp://x:99999", "tally@example.com").is_err(),
            "a bad port"
        );
        assert!(
            SmtpConfig::from_url("smtp://x", "not-an-address").is_err(),
            "a bad sender"
        );
        let err = SmtpConfig::from_url("smtps://u:pw@x", "a@b.c").expect_err("bad scheme");
        assert!(
            !err.to_string().contains("pw"),
            "the password is not echoed in errors: {err}"
        );
    }

    #[test]
    fn emails_must_be_plausible() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert!(plausible_email(good), "{good} is accepted");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@@b.co", "a b@c.co", "a@.b.co", "a@b.co.", "a@b..co",
            "<a@b.co>",
        ] {
            assert!(!plausible_email(bad), "{bad:?} is refused");
        }
    }

    #[test]
    fn settings_are_validated_by_name() {
        let short = NotifyConfig {
            webhook_secret: Some(Secret::new("short")),
            ..NotifyConfig::default()
        };
        assert!(short.validate().is_err(), "short secrets are refused");
        let bad_hook = NotifyConfig {
            default_webhook: Some("ftp://x".into()),
            ..NotifyConfig::default()
        };
        assert!(bad_hook.validate().is_err(), "only http(s) webhooks");
        let bad_mail = NotifyConfig {
            default_emails: vec!["nope".into()],
            ..NotifyConfig::default()
        };
        assert!(
            bad_mail
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--alert-email"),
            "the flag is named"
        );
        assert!(
            NotifyConfig::default().validate().is_ok(),
            "the defaults are valid"
        );
        assert!(
            is_http_url("https://example.com/hook")
                && !is_http_url("http://")
                && !is_http_url("http:///x"),
            "urls"
        );
    }

    #[test]
    fn webhook_bodies_merge_data_with_the_envelope() {
        let alert = Alert {
            source: "budget".into(),
            subject_id: Some("b1".into()),
            kind: "threshold_80".into(),
            title: "80%".into(),
            text: "spent".into(),
            data: serde_json::json!({"spent": "8.5", "source": "ignored"}),
            emails: vec![],
            webhook_url: None,
        };
        let body = alert.body();
        assert_eq!(
            body["event"], "budget.threshold_80",
            "the event defaults to source.kind: {body}"
        );
        assert_eq!(body["spent"], "8.5", "data fields are at the top level");
        assert_eq!(body["source"], "budget", "the envelope wins over data");
        let own = Alert {
            data: serde_json::json!({"event": "budget.threshold_reached"}),
            ..alert
        };
        assert_eq!(
            own.body()["event"],
            "budget.threshold_reached",
            "data may name its own event"
        );
    }
}
