//! Usage kinds (token kinds and an open set of resources) and usage quantities.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DomainError;

/// Longest accepted resource kind name.
pub const MAX_KIND_LEN: usize = 64;

/// What was consumed. Token kinds are fixed; resources are an open set named
/// by their event type (`images`, `pixels`, `web_search_requests`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsageKind {
    /// Prompt tokens that were neither written to nor read from the cache.
    InputTokens,
    /// Generated tokens.
    OutputTokens,
    /// Prompt tokens written to the cache with a 5-minute TTL.
    CacheWrite5mTokens,
    /// Prompt tokens written to the cache with a 1-hour TTL.
    CacheWrite1hTokens,
    /// Prompt tokens read from the cache.
    CacheReadTokens,
    /// A non-token resource, named by its event type.
    Resource(String),
}

/// Unit of measure of a usage kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Tokens: priced per million.
    Tokens,
    /// Anything else: priced per unit.
    Units,
}

impl UsageKind {
    /// Every token kind, in display order.
    pub const TOKEN_KINDS: [UsageKind; 5] = [
        UsageKind::InputTokens,
        UsageKind::OutputTokens,
        UsageKind::CacheWrite5mTokens,
        UsageKind::CacheWrite1hTokens,
        UsageKind::CacheReadTokens,
    ];

    /// The stable wire/storage name.
    pub fn as_str(&self) -> &str {
        match self {
            UsageKind::InputTokens => "input_tokens",
            UsageKind::OutputTokens => "output_tokens",
            UsageKind::CacheWrite5mTokens => "cache_write_5m_tokens",
            UsageKind::CacheWrite1hTokens => "cache_write_1h_tokens",
            UsageKind::CacheReadTokens => "cache_read_tokens",
            UsageKind::Resource(name) => name,
        }
    }

    /// Whether this is a token kind (priced per million).
    pub fn is_token(&self) -> bool {
        !matches!(self, UsageKind::Resource(_))
    }

    /// Unit of measure.
    pub fn unit(&self) -> Unit {
        if self.is_token() {
            Unit::Tokens
        } else {
            Unit::Units
        }
    }

    /// How many units one published price covers (1,000,000 for tokens, 1 otherwise).
    pub fn price_basis(&self) -> Decimal {
        match self.unit() {
            Unit::Tokens => Decimal::from(crate::money::TOKENS_PER_PRICE_UNIT),
            Unit::Units => Decimal::ONE,
        }
    }
}

impl fmt::Display for UsageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UsageKind {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "input_tokens" => UsageKind::InputTokens,
            "output_tokens" => UsageKind::OutputTokens,
            "cache_write_5m_tokens" => UsageKind::CacheWrite5mTokens,
            "cache_write_1h_tokens" => UsageKind::CacheWrite1hTokens,
            "cache_read_tokens" => UsageKind::CacheReadTokens,
            other => {
                let ok = !other.is_empty()
                    && other.len() <= MAX_KIND_LEN
                    && other.starts_with(|c: char| c.is_ascii_lowercase())
                    && other.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                // Names ending in `_tokens` are reserved for token kinds so a typo
                // such as `inptu_tokens` is rejected instead of billed as a resource.
                if !ok || other.ends_with("_tokens") {
                    return Err(DomainError::InvalidKind(other.to_string()));
                }
                UsageKind::Resource(other.to_string())
            }
        })
    }
}

impl Serialize for UsageKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UsageKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UsageKind::from_str(&s).map_err(serde::de::Error::custom)
    }
}

/// Quantities consumed, by kind. Zero quantities are kept out of the map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Usage(BTreeMap<UsageKind, Decimal>);

impl Usage {
    /// Empty usage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Build usage from (kind, quantity) pairs, validating every quantity.
    pub fn try_from_pairs<I>(pairs: I) -> Result<Self, DomainError>
    where
        I: IntoIterator<Item = (UsageKind, Decimal)>,
    {
        let mut usage = Usage::new();
        for (kind, qty) in pairs {
            usage.add(kind, qty)?;
        }
        Ok(usage)
    }

    /// Add a quantity of a kind. Negative or (for tokens) fractional quantities are rejected.
    pub fn add(&mut self, kind: UsageKind, quantity: Decimal) -> Result<(), DomainError> {
        validate_quantity(&kind, quantity)?;
        if quantity.is_zero() {
            return Ok(());
        }
        let entry = self.0.entry(kind).or_insert(Decimal::ZERO);
        *entry += quantity;
        Ok(())
    }

    /// Add token counts (always valid).
    pub fn add_tokens(&mut self, kind: UsageKind, tokens: u64) {
        if tokens > 0 {
            *self.0.entry(kind).or_insert(Decimal::ZERO) += Decimal::from(tokens);
        }
    }

    /// Check every quantity (for values that arrived through deserialization).
    pub fn validate(&self) -> Result<(), DomainError> {
        self.0.iter().try_for_each(|(k, q)| validate_quantity(k, *q))
    }

    /// Quantity of one kind (zero when absent).
    pub fn get(&self, kind: &UsageKind) -> Decimal {
        self.0.get(kind).copied().unwrap_or(Decimal::ZERO)
    }

    /// Iterate kinds and quantities in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&UsageKind, &Decimal)> {
        self.0.iter()
    }

    /// True when nothing was consumed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sum of all token kinds.
    pub fn total_tokens(&self) -> Decimal {
        self.0.iter().filter(|(k, _)| k.is_token()).map(|(_, q)| *q).sum()
    }
}

fn validate_quantity(kind: &UsageKind, quantity: Decimal) -> Result<(), DomainError> {
    if quantity.is_sign_negative() && !quantity.is_zero() {
        return Err(DomainError::NegativeQuantity { kind: kind.to_string(), quantity: quantity.to_string() });
    }
    if kind.is_token() && quantity.fract() != Decimal::ZERO {
        return Err(DomainError::FractionalTokens { kind: kind.to_string(), quantity: quantity.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in UsageKind::TOKEN_KINDS {
            assert_eq!(UsageKind::from_str(k.as_str()).ok(), Some(k.clone()), "token kind {k} parses back");
        }
        assert_eq!(
            UsageKind::from_str("images").ok(),
            Some(UsageKind::Resource("images".into())),
            "unknown well-formed names are resources"
        );
    }

    #[test]
    fn rejects_bad_kind_names() {
        for bad in ["", "Images", "a b", "inptu_tokens", "9lives", &"x".repeat(65)] {
            assert!(UsageKind::from_str(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn rejects_negative_and_fractional_token_quantities() {
        let mut u = Usage::new();
        assert_eq!(
            u.add(UsageKind::InputTokens, Decimal::from(-1)).map_err(|e| e.code()),
            Err("negative_quantity"),
            "negative tokens rejected"
        );
        assert_eq!(
            u.add(UsageKind::OutputTokens, Decimal::new(15, 1)).map_err(|e| e.code()),
            Err("fractional_tokens"),
            "fractional tokens rejected"
        );
        assert!(u.add(UsageKind::Resource("pixels".into()), Decimal::new(15, 1)).is_ok(), "fractional resources allowed");
        assert!(u.add(UsageKind::InputTokens, Decimal::ZERO).is_ok(), "zero is fine");
        assert!(u.get(&UsageKind::InputTokens).is_zero(), "zero is not stored");
    }

    #[test]
    fn serializes_quantities_as_strings() {
        let mut u = Usage::new();
        u.add_tokens(UsageKind::InputTokens, 12);
        let json = serde_json::to_string(&u).unwrap_or_default();
        assert_eq!(json, r#"{"input_tokens":"12"}"#, "quantities are JSON strings keyed by kind");
        let back: Usage = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, u, "round trip");
    }
}
