//! tally-import: what the providers say an organization used and spent.
//!
//! Collectors for Anthropic's Admin API (`GET /v1/organizations/usage_report/messages`, hourly,
//! grouped by model, API key, workspace and service tier; `GET /v1/organizations/cost_report`,
//! daily) and OpenAI's organization API (`GET /v1/organization/usage/completions`, hourly,
//! grouped by model, project and API key; `GET /v1/organization/costs`, daily by line item).
//! Every page is read (`next_page`); 429/5xx/529 are retried honouring `retry-after`; money is
//! parsed from the JSON text into `Decimal` (Anthropic's cents string to dollars exactly,
//! OpenAI's number or string), never through a float. A response that breaks the documented
//! format fails the whole fetch: nothing partial is returned. Wire facts:
//! `../shared/reference/provider-usage-apis.md`.

mod anthropic;
mod error;
mod http;
mod model;
mod openai;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use error::ImportError;
pub use model::{CostItem, Provider, Report, UsageBucket};

/// User agent sent when the caller gives none.
pub const DEFAULT_USER_AGENT: &str = concat!("tally/", env!("CARGO_PKG_VERSION"));
/// Anthropic supports polling once a minute sustained.
pub const ANTHROPIC_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Retries of a 429/5xx within one request.
pub const DEFAULT_MAX_RETRIES: usize = 5;

/// An admin key: never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wrap a key.
    pub fn new(s: String) -> Self {
        Secret(s)
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
    /// API base (`https://api.anthropic.com`, `https://api.openai.com`); tests point it at a local server.
    pub base_url: String,
    /// The admin key.
    pub admin_key: Secret,
    /// `User-Agent`.
    pub user_agent: String,
    /// Least time between two fetches of one connection (see [`RateGate`]).
    pub min_interval: Duration,
    /// Retries of a 429/5xx within one request.
    pub max_retries: usize,
}

impl ClientConfig {
    /// The provider's public API base.
    pub fn default_base_url(provider: Provider) -> &'static str {
        match provider {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::OpenAi => "https://api.openai.com",
        }
    }
}

/// Read every usage bucket and cost item of `[from, to)`.
pub async fn fetch_report(cfg: &ClientConfig, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, ImportError> {
    if to <= from {
        return Err(ImportError::InvalidRange(format!("{from} is not before {to}")));
    }
    let client = http::Client::new(cfg)?;
    match cfg.provider {
        Provider::Anthropic => anthropic::fetch(&client, from, to).await,
        Provider::OpenAi => openai::fetch(&client, from, to).await,
    }
}

/// Paces the fetches of one connection: at most one per `min_interval` (Anthropic asks for
/// once a minute sustained; the pages of one fetch are a burst it allows).
#[derive(Debug)]
pub struct RateGate {
    min_interval: Duration,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl RateGate {
    /// A gate letting one fetch through per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        RateGate { min_interval, last: tokio::sync::Mutex::new(None) }
    }

    /// Wait until the next fetch may start, and claim it.
    pub async fn wait(&self) {
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            let next = at + self.min_interval;
            if next > tokio::time::Instant::now() {
                tokio::time::sleep_until(next).await;
            }
        }
        *last = Some(tokio::time::Instant::now());
    }
}
