//! tally-import: what the providers say an organization used and spent.
//!
//! Collectors for Anthropic's Admin API (`GET /v1/organizations/usage_report/messages`, hourly,
//! grouped by model, API key, workspace and service tier; `GET /v1/organizations/cost_report`,
//! daily by workspace and description) and OpenAI's organization API
//! (`GET /v1/organization/usage/completions`, hourly, grouped by model, project and API key;
//! `GET /v1/organization/costs`, daily by line item and project).
//!
//! - Every page is read (`next_page`); no pause between pages (a paginated read is a burst the
//!   providers allow). Sustained polling is paced by the caller with one [`RateGate`] per
//!   connection (Anthropic: once a minute).
//! - 429, 5xx and Anthropic's 529 are retried with backoff, waiting what `retry-after` asks;
//!   other 4xx fail at once with the provider's error type and message.
//! - Money is parsed from the JSON text into `Decimal` (Anthropic's cents string divided by 100
//!   exactly; OpenAI's number or string), never through a float.
//! - An answer that breaks the documented format fails the whole fetch with
//!   [`ImportError::InvalidResponse`] naming the field; nothing partial is returned.
//!
//! Wire facts and sources: `shared/reference/provider-usage-apis.md`.

mod anthropic;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod http;
mod model;
mod openai;
mod page;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

use chrono::{DateTime, Utc};

pub use config::{
    ClientConfig, Secret, ANTHROPIC_BASE_URL, ANTHROPIC_MIN_INTERVAL, DEFAULT_MAX_RETRIES, DEFAULT_USER_AGENT,
    OPENAI_BASE_URL, OPENAI_MIN_INTERVAL,
};
pub use error::ImportError;
pub use gate::RateGate;
pub use http::{ANTHROPIC_VERSION, MAX_RETRY_AFTER};
pub use model::{CostItem, Provider, Report, UsageBucket};

/// Read every usage bucket and cost item of `[from, to)` from `cfg`'s provider.
///
/// All or nothing: any failure (after retries) returns an error and none of what was read.
/// Buckets without usage are left out. The caller paces repeated fetches with a [`RateGate`].
pub async fn fetch_report(cfg: &ClientConfig, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, ImportError> {
    if to <= from {
        return Err(ImportError::InvalidRange(format!("from {from} is not before to {to}")));
    }
    cfg.validate()?;
    let client = http::Client::new(cfg)?;
    let started = std::time::Instant::now();
    let report = match cfg.provider {
        Provider::Anthropic => anthropic::fetch(&client, from, to).await,
        Provider::OpenAi => openai::fetch(&client, from, to).await,
    }?;
    tracing::debug!(
        provider = cfg.provider.as_str(),
        buckets = report.usage.len(),
        costs = report.costs.len(),
        pages = report.pages,
        requests = report.requests,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "Provider report fetched."
    );
    Ok(report)
}
