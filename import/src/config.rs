//! `ClientConfig`: where and how to read one organization's reports, and the admin key wrapper.

use std::time::Duration;

use crate::error::ImportError;
use crate::model::Provider;

/// Anthropic's public API base.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// OpenAI's public API base (the endpoint paths carry the `/v1`).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com";
/// User agent sent when the caller gives none (Anthropic asks integrations to name themselves).
pub const DEFAULT_USER_AGENT: &str = concat!("tally/", env!("CARGO_PKG_VERSION"));
/// Anthropic supports polling once a minute sustained (reference §1.4).
pub const ANTHROPIC_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// OpenAI documents no limit for these endpoints; the same conservative pace.
pub const OPENAI_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Retries of a 429/5xx within one request.
pub const DEFAULT_MAX_RETRIES: usize = 5;

/// An admin key. Never printed: `Debug` shows `Secret(..)`, and it is sent in headers marked
/// sensitive.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wrap a key.
    pub fn new(key: String) -> Self {
        Secret(key)
    }

    /// The key, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where and how to read one organization's reports.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Which provider.
    pub provider: Provider,
    /// API base: [`ANTHROPIC_BASE_URL`] or [`OPENAI_BASE_URL`] unless a proxy or a test server
    /// stands in. A trailing `/` or `/v1` is ignored.
    pub base_url: String,
    /// The admin key (`sk-ant-admin01-...`, `sk-admin-...`).
    pub admin_key: Secret,
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Least time between two fetches of this connection, kept by a [`crate::RateGate`] the
    /// caller holds ([`ANTHROPIC_MIN_INTERVAL`]; tests pass zero). Not a pause between pages.
    pub min_interval: Duration,
    /// Retries of a 429/5xx within one request (zero: no retries).
    pub max_retries: usize,
}

impl ClientConfig {
    /// The provider's public API base.
    pub fn default_base_url(provider: Provider) -> &'static str {
        match provider {
            Provider::Anthropic => ANTHROPIC_BASE_URL,
            Provider::OpenAi => OPENAI_BASE_URL,
        }
    }

    /// A config with the provider's defaults (public base URL, pacing, retries, user agent).
    pub fn new(provider: Provider, admin_key: Secret) -> Self {
        ClientConfig {
            provider,
            base_url: ClientConfig::default_base_url(provider).to_string(),
            admin_key,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            min_interval: match provider {
                Provider::Anthropic => ANTHROPIC_MIN_INTERVAL,
                Provider::OpenAi => OPENAI_MIN_INTERVAL,
            },
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// Check the settings; the error names the bad key.
    pub fn validate(&self) -> Result<(), ImportError> {
        self.api_base()?;
        if self.admin_key.expose().trim().is_empty() {
            return Err(ImportError::Config("admin_key is empty".into()));
        }
        if self.user_agent.trim().is_empty() {
            return Err(ImportError::Config("user_agent is empty".into()));
        }
        Ok(())
    }

    /// The base URL without a trailing `/` or `/v1` (the endpoint paths start with `/v1/`).
    pub(crate) fn api_base(&self) -> Result<String, ImportError> {
        let trimmed = self.base_url.trim().trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let url = reqwest::Url::parse(base)
            .map_err(|e| ImportError::Config(format!("base_url {:?} is not a URL: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(ImportError::Config(format!("base_url {:?} must be an http(s) URL without a query", self.base_url)));
        }
        Ok(base.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        let mut cfg = ClientConfig::new(Provider::OpenAi, Secret::new("sk-admin-x".into()));
        assert_eq!(cfg.api_base().unwrap(), "https://api.openai.com", "the default base");
        cfg.base_url = "https://api.openai.com/v1/".into();
        assert_eq!(cfg.api_base().unwrap(), "https://api.openai.com", "the documented base with /v1 is accepted");
        cfg.base_url = "http://127.0.0.1:9/proxy".into();
        assert_eq!(cfg.api_base().unwrap(), "http://127.0.0.1:9/proxy", "a proxy path is kept");
        cfg.base_url = "ftp://x".into();
        assert!(matches!(cfg.validate(), Err(ImportError::Config(m)) if m.contains("base_url")), "not http(s)");
        cfg.base_url = OPENAI_BASE_URL.into();
        cfg.admin_key = Secret::new(" ".into());
        assert!(matches!(cfg.validate(), Err(ImportError::Config(m)) if m.contains("admin_key")), "an empty key");
    }

    #[test]
    fn the_admin_key_is_never_printed() {
        let cfg = ClientConfig::new(Provider::Anthropic, Secret::new("sk-ant-admin01-SECRET".into()));
        assert!(!format!("{cfg:?}").contains("SECRET"), "Debug of the config hides the key");
        assert_eq!(cfg.min_interval, ANTHROPIC_MIN_INTERVAL, "Anthropic is paced once a minute by default");
    }
}
