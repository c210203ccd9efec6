//! GET with the provider's auth headers, retries of 429/5xx/529 (backoff via `backon`, at least
//! what `retry-after` asks), and the provider's error bodies turned into [`ImportError`].
//! The only module that talks to the backoff crate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::ImportError;
use crate::{ClientConfig, Provider};

/// Time limit of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// First retry delay.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest backoff delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Longest `retry-after` honoured (longer ones are clamped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// One provider's HTTP client, with the connection's settings.
pub(crate) struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    base: String,
    requests: AtomicUsize,
}

impl Client {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Client, ImportError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ImportError::Config(format!("base URL {base:?} is not http(s)")));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(cfg.user_agent.clone())
            .build()
            .map_err(|e| ImportError::Config(format!("HTTP client: {e}")))?;
        Ok(Client { http, cfg: cfg.clone(), base, requests: AtomicUsize::new(0) })
    }

    /// HTTP requests made so far (retries included).
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET `path?query` (query already encoded) and return the body of a 2xx answer.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<String, ImportError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(FIRST_RETRY_DELAY)
            .with_max_delay(MAX_RETRY_DELAY)
            .with_max_times(self.cfg.max_retries)
            .with_jitter()
            .build();
        loop {
            let result = self.once(&url).await;
            let (err, retry_after) = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            let Some(backoff) = delays.next() else { return Err(err) };
            let wait = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER).max(backoff));
            tracing::warn!(provider = self.cfg.provider.as_str(), error = %err, wait_ms = wait.as_millis() as u64, "Provider report request failed; retrying.");
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&self, url: &str) -> Result<String, (ImportError, Option<Duration>)> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let req = match self.cfg.provider {
            Provider::Anthropic => self
                .http
                .get(url)
                .header("x-api-key", self.cfg.admin_key.expose())
                .header("anthropic-version", "2023-06-01"),
            Provider::OpenAi => self.http.get(url).bearer_auth(self.cfg.admin_key.expose()),
        };
        let resp = req.send().await.map_err(|e| (ImportError::Unreachable(without_url(&e)), None))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.map_err(|e| (ImportError::Unreachable(without_url(&e)), None))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let (kind, message) = provider_error(&body);
        Err((ImportError::Provider { status, kind, message }, retry_after))
    }
}

/// reqwest's error text without the URL (it carries no secret, but keeps logs short).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<provider>");
    }
    s
}

/// The error type and message of either provider's error body (lenient: extra keys ignored).
fn provider_error(body: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let e = &v["error"];
    let kind = e["type"].as_str().unwrap_or("unknown").to_string();
    let message = e["message"].as_str().map(str::to_string).unwrap_or_else(|| body.chars().take(200).collect());
    (kind, message)
}
