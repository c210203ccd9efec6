//! The HTTP client of one fetch: GET with the provider's auth headers, retries of 429/5xx/529
//! with `backon` (waiting what `retry-after` asks, in seconds or as an HTTP date), and the
//! providers' error bodies turned into [`ImportError::Provider`].
//!
//! This is the only module that talks to the backoff crate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};

use crate::error::ImportError;
use crate::{ClientConfig, Provider};

/// Time limit of one request, reading the body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of opening a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First backoff delay when the provider gives no `retry-after`; doubles each retry.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest backoff delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Longest `retry-after` honoured; longer ones are clamped so a run cannot hang for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The Anthropic API version the Admin reports are read with.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Characters of a non-JSON error body kept in the error message.
const ERROR_BODY_CHARS: usize = 300;

/// One fetch's HTTP client.
pub(crate) struct Client {
    http: reqwest::Client,
    provider: Provider,
    base: String,
    max_retries: usize,
    requests: AtomicUsize,
}

/// A failed attempt: the error and the provider's `retry-after`, if any.
struct Attempt {
    error: ImportError,
    retry_after: Option<Duration>,
}

impl From<ImportError> for Attempt {
    fn from(error: ImportError) -> Self {
        Attempt { error, retry_after: None }
    }
}

/// A credential header value, marked sensitive so it is never printed.
fn secret_header(value: &str) -> Result<HeaderValue, ImportError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| ImportError::Config("admin_key contains characters not allowed in an HTTP header".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Client {
    /// A client for `cfg` (its base URL checked, its auth headers set once).
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Client, ImportError> {
        let base = cfg.api_base()?;
        let mut headers = HeaderMap::new();
        match cfg.provider {
            Provider::Anthropic => {
                headers.insert(HeaderName::from_static("x-api-key"), secret_header(cfg.admin_key.expose())?);
                headers.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(ANTHROPIC_VERSION));
            }
            Provider::OpenAi => {
                headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {}", cfg.admin_key.expose()))?);
            }
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(cfg.user_agent.clone())
            .default_headers(headers)
            .build()
            .map_err(|e| ImportError::Config(format!("HTTP client: {e}")))?;
        Ok(Client { http, provider: cfg.provider, base, max_retries: cfg.max_retries, requests: AtomicUsize::new(0) })
    }

    /// HTTP requests made so far, retries included.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET `path_and_query` (already encoded) and return the body of a 2xx answer, retrying
    /// 429/5xx up to `max_retries` times.
    pub(crate) async fn get(&self, endpoint: &str, path_and_query: &str) -> Result<String, ImportError> {
        let url = format!("{}{}", self.base, path_and_query);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(FIRST_RETRY_DELAY)
            .with_max_delay(MAX_RETRY_DELAY)
            .with_max_times(self.max_retries)
            .with_jitter();
        let provider = self.provider.as_str();
        (|| self.once(&url))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|a: &Attempt| a.error.is_retryable())
            // `None` means the retries are used up: keep it. Otherwise the provider's own
            // `retry-after` wins over our backoff guess.
            .adjust(|a: &Attempt, backoff| backoff.map(|d| a.retry_after.map_or(d, |ra| ra.min(MAX_RETRY_AFTER))))
            .notify(|a: &Attempt, wait| {
                tracing::warn!(
                    provider,
                    endpoint,
                    error.code = a.error.code(),
                    error.message = %a.error,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "Provider report request failed; retrying."
                );
            })
            .await
            .map_err(|a| a.error)
    }

    async fn once(&self, url: &str) -> Result<String, Attempt> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.http.get(url).send().await.map_err(|e| ImportError::Unreachable(without_url(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let request_id = resp.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp.text().await.map_err(|e| ImportError::Unreachable(without_url(&e)))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let error = provider_error(status, &body, request_id);
        Err(Attempt { error, retry_after })
    }
}

/// reqwest's error text without the URL (short logs; the URL holds no secret).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<provider>");
    }
    s
}

/// `retry-after` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past is 0.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// An error answer as [`ImportError::Provider`], reading either provider's error body:
/// Anthropic `{"type":"error","error":{"type","message"},"request_id"}`, OpenAI
/// `{"error":{"message","type","param","code"}}`. Lenient: extra keys are ignored and a body of
/// another shape is quoted.
pub(crate) fn provider_error(status: u16, body: &str, request_id: Option<String>) -> ImportError {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let e = &v["error"];
    let text = |x: &serde_json::Value| x.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let kind = text(&e["type"]).unwrap_or_else(|| "unknown".into());
    let mut message = text(&e["message"]).unwrap_or_else(|| {
        let quoted: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
        if quoted.is_empty() {
            "(empty body)".into()
        } else {
            quoted
        }
    });
    if let Some(code) = text(&e["code"]) {
        message.push_str(&format!(" (code {code})"));
    }
    if let Some(id) = text(&v["request_id"]).or(request_id) {
        message.push_str(&format!(" (request_id {id})"));
    }
    ImportError::Provider { status, kind, message }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)), "delay-seconds");
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO), "zero seconds");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60)),
            "an HTTP date a minute ahead"
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO), "a past date");
        assert_eq!(parse_retry_after("soon", now), None, "garbage is ignored");
    }

    #[test]
    fn both_providers_error_bodies_are_read() {
        let anthropic = r#"{"type":"error","error":{"type":"permission_error","message":"not an admin key","details":{}},"request_id":"req_1"}"#;
        match provider_error(403, anthropic, None) {
            ImportError::Provider { status, kind, message } => {
                assert_eq!(status, 403, "status kept");
                assert_eq!(kind, "permission_error", "Anthropic error.type");
                assert_eq!(message, "not an admin key (request_id req_1)", "Anthropic message and request id");
            }
            other => panic!("expected a provider error, got {other:?}"),
        }
        let openai = r#"{"error":{"message":"Missing scopes: api.usage.read.","type":"invalid_request_error","param":null,"code":"missing_scope"}}"#;
        match provider_error(401, openai, None) {
            ImportError::Provider { kind, message, .. } => {
                assert_eq!(kind, "invalid_request_error", "OpenAI error.type");
                assert_eq!(message, "Missing scopes: api.usage.read. (code missing_scope)", "OpenAI message and code");
            }
            other => panic!("expected a provider error, got {other:?}"),
        }
        match provider_error(502, "<html>Bad Gateway</html>", Some("req_h".into())) {
            ImportError::Provider { kind, message, .. } => {
                assert_eq!(kind, "unknown", "a body of another shape has no type");
                assert!(message.starts_with("<html>Bad Gateway"), "and is quoted: {message}");
                assert!(message.contains("req_h"), "the request-id header is kept: {message}");
            }
            other => panic!("expected a provider error, got {other:?}"),
        }
    }
}
