//! What a fetch returns: usage buckets by group, cost items, and their deterministic ids.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tally_domain::UsageKind;
use uuid::Uuid;

use crate::error::ImportError;

/// A provider with an organization usage/cost API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Anthropic's Admin API.
    Anthropic,
    /// OpenAI's organization API.
    OpenAi,
}

impl Provider {
    /// `anthropic` or `openai`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = ImportError;

    /// `anthropic` or `openai` (case and surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, ImportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anthropic" => Ok(Provider::Anthropic),
            "openai" => Ok(Provider::OpenAi),
            other => Err(ImportError::Config(format!("unknown provider {other:?} (anthropic or openai)"))),
        }
    }
}

/// The usage of one time bucket and group (model, API key, workspace/project, tier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBucket {
    /// Whose report.
    pub provider: Provider,
    /// Bucket start (inclusive).
    pub starting_at: DateTime<Utc>,
    /// Bucket end (exclusive).
    pub ending_at: DateTime<Utc>,
    /// Model (null when the provider did not say).
    pub model: Option<String>,
    /// The provider's API key id.
    pub api_key_id: Option<String>,
    /// Anthropic workspace or OpenAI project.
    pub workspace_id: Option<String>,
    /// Service tier (`standard`, `batch`, `priority`, `default`...).
    pub service_tier: Option<String>,
    /// Non-zero quantities by Tally kind.
    pub quantities: Vec<(UsageKind, u64)>,
    /// Model requests, when the provider counts them (OpenAI).
    pub requests: Option<u64>,
}

impl UsageBucket {
    /// The group's dimensions as stable text.
    pub fn group_key(&self) -> String {
        let d = |v: &Option<String>| v.clone().unwrap_or_default();
        format!(
            "model={}|api_key={}|workspace={}|tier={}",
            d(&self.model),
            d(&self.api_key_id),
            d(&self.workspace_id),
            d(&self.service_tier)
        )
    }

    /// The usage event id of this bucket and group: the same on every import (a UUIDv8 from
    /// a SHA-256 of provider, bucket start and group), so a re-import is a duplicate.
    pub fn event_id(&self) -> Uuid {
        let mut h = Sha256::new();
        h.update(b"tally-import\0v1\0");
        h.update(self.provider.as_str().as_bytes());
        h.update(b"\0");
        h.update(self.starting_at.to_rfc3339().as_bytes());
        h.update(b"\0");
        h.update(self.group_key().as_bytes());
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
        Uuid::from_bytes(bytes)
    }

    /// A hash of what the bucket reports: changes when the provider revises it.
    pub fn content_hash(&self) -> String {
        let mut q: Vec<String> = self.quantities.iter().map(|(k, n)| format!("{}={n}", k.as_str())).collect();
        q.sort();
        let mut h = Sha256::new();
        h.update(q.join(",").as_bytes());
        h.update(format!("|requests={:?}|end={}", self.requests, self.ending_at.to_rfc3339()).as_bytes());
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// One cost line of a day as the provider reports it (dollars, exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostItem {
    /// Whose report.
    pub provider: Provider,
    /// Bucket start.
    pub starting_at: DateTime<Utc>,
    /// Bucket end.
    pub ending_at: DateTime<Utc>,
    /// Model, when the provider names one.
    pub model: Option<String>,
    /// Line item / description / token type as given.
    pub description: Option<String>,
    /// Anthropic workspace or OpenAI project.
    pub workspace_id: Option<String>,
    /// Amount in dollars (Anthropic's cents divided by 100 exactly).
    pub amount_usd: Decimal,
    /// Currency as given (upper-cased).
    pub currency: String,
}

/// Everything one fetch read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Usage buckets with usage (empty buckets are dropped).
    pub usage: Vec<UsageBucket>,
    /// Cost items.
    pub costs: Vec<CostItem>,
    /// Pages read.
    pub pages: usize,
    /// HTTP requests made (retries included).
    pub requests: usize,
}

/// Non-zero quantities, in the given order.
pub(crate) fn non_zero(q: Vec<(UsageKind, u64)>) -> Vec<(UsageKind, u64)> {
    q.into_iter().filter(|(_, n)| *n > 0).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn bucket(model: &str, input: u64) -> UsageBucket {
        UsageBucket {
            provider: Provider::Anthropic,
            starting_at: DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
            ending_at: DateTime::parse_from_rfc3339("2026-11-01T11:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
            model: Some(model.into()),
            api_key_id: None,
            workspace_id: None,
            service_tier: Some("standard".into()),
            quantities: vec![(UsageKind::InputTokens, input)],
            requests: None,
        }
    }

    #[test]
    fn ids_are_stable_per_bucket_and_group_and_hashes_follow_content() {
        assert_eq!(bucket("a", 1).event_id(), bucket("a", 2).event_id(), "same bucket and group: same id");
        assert_ne!(bucket("a", 1).event_id(), bucket("b", 1).event_id(), "another group: another id");
        assert_eq!(bucket("a", 1).event_id().get_version_num(), 8, "UUIDv8");
        assert_ne!(bucket("a", 1).content_hash(), bucket("a", 2).content_hash(), "a revision changes the hash");
        assert_eq!(bucket("a", 1).content_hash(), bucket("a", 1).content_hash(), "stable hash");
    }
}
