//! The seeded price catalogue: parsed from the data file `catalog/prices.json`.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::usage::UsageKind;

/// The catalogue file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Model used for new threads when none is chosen.
    pub default_model: String,
    /// Resource event types (non-token usage) and their units.
    pub resources: Vec<CatalogResource>,
    /// Models and their prices.
    pub models: Vec<CatalogModel>,
}

/// A non-token resource (an event type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogResource {
    /// Event type name, also the usage kind name (`images`).
    pub name: String,
    /// Unit of measure shown to people (`images`, `pixels`, `requests`).
    pub unit_of_measure: String,
    /// What it is.
    pub description: String,
}

/// A model and its published prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// API model id, e.g. `claude-3-5-haiku-20241022`.
    pub name: String,
    /// `anthropic` or `openai`.
    pub provider: String,
    /// What it is.
    pub description: String,
    /// Most tokens one reply may generate (the provider's published limit); the gateway
    /// reserves budget for this many when a request sets no `max_tokens`. Absent for
    /// models that do not chat (image models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Prices, each with its effective date.
    pub prices: Vec<CatalogPrice>,
}

/// A published price of one kind for a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPrice {
    /// Usage kind (`input_tokens`, ..., or a resource name).
    pub kind: String,
    /// USD per million tokens, or per unit for resources (a decimal string).
    pub price: Decimal,
    /// When the price took effect.
    pub effective_from: DateTime<Utc>,
}

impl Catalog {
    /// Parse and validate the catalogue JSON.
    pub fn parse(json: &str) -> Result<Self, DomainError> {
        let catalog: Catalog = serde_json::from_str(json).map_err(|e| DomainError::InvalidCatalog(e.to_string()))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Check names, kinds, prices and that the default model exists.
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |m: String| Err(DomainError::InvalidCatalog(m));
        let resources: BTreeSet<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
        for r in &self.resources {
            match UsageKind::from_str(&r.name) {
                Ok(UsageKind::Resource(_)) => {}
                _ => return bad(format!("resource {:?} is not a valid resource name", r.name)),
            }
        }
        let mut names = BTreeSet::new();
        for m in &self.models {
            if m.name.is_empty() || m.name.len() > 128 {
                return bad(format!("model name {:?}", m.name));
            }
            if !names.insert(m.name.as_str()) {
                return bad(format!("model {} listed twice", m.name));
            }
            let mut seen = BTreeSet::new();
            for p in &m.prices {
                let kind = UsageKind::from_str(&p.kind)
                    .map_err(|e| DomainError::InvalidCatalog(format!("model {}: {e}", m.name)))?;
                if let UsageKind::Resource(r) = &kind {
                    if !resources.contains(r.as_str()) {
                        return bad(format!("model {}: resource {r} is not declared", m.name));
                    }
                }
                if p.price.is_sign_negative() && !p.price.is_zero() {
                    return bad(format!("model {}: negative price for {}", m.name, p.kind));
                }
                if !seen.insert((p.kind.clone(), p.effective_from)) {
                    return bad(format!("model {}: {} listed twice at {}", m.name, p.kind, p.effective_from));
                }
            }
        }
        if !names.contains(self.default_model.as_str()) {
            return bad(format!("default model {} is not in the catalogue", self.default_model));
        }
        Ok(())
    }

    /// The catalogue's prices as (model, kind, price, effective_from), oldest first per price.
    pub fn prices(&self) -> Vec<(String, UsageKind, Decimal, DateTime<Utc>)> {
        let mut out = Vec::new();
        for m in &self.models {
            for p in &m.prices {
                if let Ok(kind) = UsageKind::from_str(&p.kind) {
                    out.push((m.name.clone(), kind, p.price, p.effective_from));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1, a.3).cmp(&(&b.0, &b.1, b.3)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_default_and_bad_kinds() {
        let json = r#"{"default_model":"x","resources":[],"models":[]}"#;
        assert!(Catalog::parse(json).is_err(), "default model must exist");
        let json = r#"{"default_model":"m","resources":[],"models":[{"name":"m","provider":"p","description":"d",
            "prices":[{"kind":"inptu_tokens","price":"1","effective_from":"2024-01-01T00:00:00Z"}]}]}"#;
        assert!(Catalog::parse(json).is_err(), "misspelt token kind rejected");
        let json = r#"{"default_model":"m","resources":[],"models":[{"name":"m","provider":"p","description":"d",
            "prices":[{"kind":"images","price":"1","effective_from":"2024-01-01T00:00:00Z"}]}]}"#;
        assert!(Catalog::parse(json).is_err(), "undeclared resource rejected");
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn shipped_catalogue_parses_and_prices_haiku_as_published() {
        let catalog = Catalog::parse(include_str!("../../catalog/prices.json")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(catalog.default_model, "claude-3-5-haiku-20241022", "Claude 3.5 Haiku is the default");
        let haiku: Vec<_> = catalog.prices().into_iter().filter(|p| p.0 == catalog.default_model).collect();
        let price = |k: UsageKind| haiku.iter().find(|p| p.1 == k).map(|p| p.2);
        assert_eq!(price(UsageKind::InputTokens), Some(dec!(0.80)), "input $0.80/MTok");
        assert_eq!(price(UsageKind::OutputTokens), Some(dec!(4)), "output $4/MTok");
        assert_eq!(price(UsageKind::CacheWrite5mTokens), Some(dec!(1)), "5m cache write $1/MTok");
        assert_eq!(price(UsageKind::CacheWrite1hTokens), Some(dec!(1.6)), "1h cache write $1.6/MTok");
        assert_eq!(price(UsageKind::CacheReadTokens), Some(dec!(0.08)), "cache read $0.08/MTok");
    }
}
