//! Price versions (SCD2) and point-in-time lookup.
//!
//! A price is kept per (model, usage kind) as a chain of versions. Each version
//! is in force on `[effective_from, effective_to)`; the current one has no end.
//! Adding a version closes the current one at the new version's start instant,
//! so the chain never has a gap or an overlap, and history is never rewritten:
//! a new version must start strictly after the current version started.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;
use crate::money::Money;
use crate::usage::UsageKind;

/// One version of a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceVersion {
    /// Version id (UUIDv7), referenced by every cost line priced with it.
    pub id: Uuid,
    /// Model name, e.g. `claude-3-5-haiku-20241022`.
    pub model: String,
    /// What is priced.
    pub kind: UsageKind,
    /// USD per million tokens for token kinds, per unit for resources.
    pub price: Money,
    /// First instant this version is in force (inclusive).
    pub effective_from: DateTime<Utc>,
    /// First instant it is no longer in force (exclusive); `None` while current.
    pub effective_to: Option<DateTime<Utc>>,
    /// True for the version with no end.
    pub is_current: bool,
}

impl PriceVersion {
    /// Whether this version is in force at `at`.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.effective_from <= at && self.effective_to.is_none_or(|end| at < end)
    }
}

/// The ordered versions of one (model, kind) price.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceHistory {
    versions: Vec<PriceVersion>,
}

impl PriceHistory {
    /// Build a history from stored versions, checking it is one contiguous chain.
    pub fn from_versions(mut versions: Vec<PriceVersion>) -> Result<Self, DomainError> {
        versions.sort_by_key(|v| v.effective_from);
        let history = PriceHistory { versions };
        history.validate()?;
        Ok(history)
    }

    /// Versions, oldest first.
    pub fn versions(&self) -> &[PriceVersion] {
        &self.versions
    }

    /// The version with no end, if any.
    pub fn current(&self) -> Option<&PriceVersion> {
        self.versions.last().filter(|v| v.is_current)
    }

    /// The version in force at `at`.
    pub fn at(&self, at: DateTime<Utc>) -> Option<&PriceVersion> {
        // Versions are sorted and contiguous, so the candidate is the last one
        // starting at or before `at`.
        let idx = self.versions.partition_point(|v| v.effective_from <= at);
        idx.checked_sub(1).and_then(|i| self.versions.get(i)).filter(|v| v.covers(at))
    }

    /// Plan a new version: returns the closed copy of the current version (if
    /// any) and the new current version. Nothing is mutated; apply with [`apply`](Self::apply).
    pub fn plan_new_version(
        &self,
        id: Uuid,
        model: &str,
        kind: &UsageKind,
        price: Money,
        effective_from: DateTime<Utc>,
    ) -> Result<(Option<PriceVersion>, PriceVersion), DomainError> {
        validate_price(price)?;
        let closed = match self.versions.last() {
            Some(last) => {
                if effective_from <= last.effective_from {
                    return Err(DomainError::RewritesHistory {
                        model: model.to_string(),
                        kind: kind.to_string(),
                        new_from: effective_from,
                        current_from: last.effective_from,
                    });
                }
                if !last.is_current {
                    return Err(DomainError::NotContiguous {
                        model: model.to_string(),
                        kind: kind.to_string(),
                        detail: "the latest version is already closed".into(),
                    });
                }
                let mut closed = last.clone();
                closed.effective_to = Some(effective_from);
                closed.is_current = false;
                Some(closed)
            }
            None => None,
        };
        let new = PriceVersion {
            id,
            model: model.to_string(),
            kind: kind.clone(),
            price,
            effective_from,
            effective_to: None,
            is_current: true,
        };
        Ok((closed, new))
    }

    /// Apply a planned change.
    pub fn apply(&mut self, closed: Option<PriceVersion>, new: PriceVersion) -> Result<(), DomainError> {
        if let (Some(closed), Some(last)) = (closed, self.versions.last_mut()) {
            *last = closed;
        }
        self.versions.push(new);
        self.validate()
    }

    /// Check the chain: sorted, each version ends exactly where the next starts,
    /// only the last may be current, prices are not negative.
    pub fn validate(&self) -> Result<(), DomainError> {
        let err = |v: &PriceVersion, detail: String| DomainError::NotContiguous {
            model: v.model.clone(),
            kind: v.kind.to_string(),
            detail,
        };
        for pair in self.versions.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.model != b.model || a.kind != b.kind {
                return Err(err(a, "versions of different prices in one history".into()));
            }
            match a.effective_to {
                Some(end) if end == b.effective_from => {}
                Some(end) if end < b.effective_from => {
                    return Err(err(a, format!("gap between {end} and {}", b.effective_from)))
                }
                Some(end) => return Err(err(a, format!("overlap: ends {end} after next starts {}", b.effective_from))),
                None => return Err(err(a, format!("open version followed by one starting {}", b.effective_from))),
            }
            if a.is_current {
                return Err(err(a, "only the latest version may be current".into()));
            }
        }
        for v in &self.versions {
            validate_price(v.price)?;
            if let Some(end) = v.effective_to {
                if end <= v.effective_from {
                    return Err(err(v, format!("ends {end} before it starts {}", v.effective_from)));
                }
            }
            if v.is_current != v.effective_to.is_none() {
                return Err(err(v, "is_current must hold exactly when effective_to is empty".into()));
            }
        }
        Ok(())
    }
}

fn validate_price(price: Decimal) -> Result<(), DomainError> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err(DomainError::NegativePrice(price.to_string()));
    }
    Ok(())
}

/// All price histories, by model and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceBook {
    prices: BTreeMap<(String, UsageKind), PriceHistory>,
}

impl PriceBook {
    /// Build from any stored versions (grouped and validated).
    pub fn from_versions(versions: impl IntoIterator<Item = PriceVersion>) -> Result<Self, DomainError> {
        let mut grouped: BTreeMap<(String, UsageKind), Vec<PriceVersion>> = BTreeMap::new();
        for v in versions {
            grouped.entry((v.model.clone(), v.kind.clone())).or_default().push(v);
        }
        let mut prices = BTreeMap::new();
        for (key, vs) in grouped {
            prices.insert(key, PriceHistory::from_versions(vs)?);
        }
        Ok(PriceBook { prices })
    }

    /// The version in force for (model, kind) at `at`.
    pub fn lookup(&self, model: &str, kind: &UsageKind, at: DateTime<Utc>) -> Result<&PriceVersion, DomainError> {
        self.prices
            .get(&(model.to_string(), kind.clone()))
            .and_then(|h| h.at(at))
            .ok_or_else(|| DomainError::NoPrice { model: model.to_string(), kind: kind.to_string(), at })
    }

    /// History of one price (empty when unknown).
    pub fn history(&self, model: &str, kind: &UsageKind) -> Option<&PriceHistory> {
        self.prices.get(&(model.to_string(), kind.clone()))
    }

    /// Plan a new version for (model, kind); see [`PriceHistory::plan_new_version`].
    pub fn plan_new_version(
        &self,
        id: Uuid,
        model: &str,
        kind: &UsageKind,
        price: Money,
        effective_from: DateTime<Utc>,
    ) -> Result<(Option<PriceVersion>, PriceVersion), DomainError> {
        let empty = PriceHistory::default();
        let history = self.history(model, kind).unwrap_or(&empty);
        history.plan_new_version(id, model, kind, price, effective_from)
    }

    /// Apply a planned change.
    pub fn apply(&mut self, closed: Option<PriceVersion>, new: PriceVersion) -> Result<(), DomainError> {
        let key = (new.model.clone(), new.kind.clone());
        let mut history = self.prices.get(&key).cloned().unwrap_or_default();
        history.apply(closed, new)?;
        self.prices.insert(key, history);
        Ok(())
    }

    /// Every version, grouped by (model, kind), oldest first.
    pub fn all_versions(&self) -> impl Iterator<Item = &PriceVersion> {
        self.prices.values().flat_map(|h| h.versions.iter())
    }

    /// The models that have at least one price.
    pub fn models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = self.prices.keys().map(|(m, _)| m.as_str()).collect();
        models.dedup();
        models
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, day, 0, 0, 0).single().unwrap_or_default()
    }

    fn book_with_change() -> PriceBook {
        let mut book = PriceBook::default();
        let kind = UsageKind::InputTokens;
        let (c, n) = book.plan_new_version(Uuid::now_v7(), "m", &kind, dec!(0.80), t(1)).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.is_none(), "first version closes nothing");
        book.apply(c, n).unwrap_or_else(|e| panic!("{e}"));
        let (c, n) = book.plan_new_version(Uuid::now_v7(), "m", &kind, dec!(1.00), t(10)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.as_ref().and_then(|c| c.effective_to), Some(t(10)), "old version closed at the new start");
        book.apply(c, n).unwrap_or_else(|e| panic!("{e}"));
        book
    }

    #[test]
    fn lookup_returns_version_in_force() {
        let book = book_with_change();
        let k = UsageKind::InputTokens;
        assert_eq!(book.lookup("m", &k, t(5)).map(|v| v.price).ok(), Some(dec!(0.80)), "old price before change");
        assert_eq!(book.lookup("m", &k, t(10)).map(|v| v.price).ok(), Some(dec!(1.00)), "new price from the change instant");
        assert_eq!(book.lookup("m", &k, t(20)).map(|v| v.price).ok(), Some(dec!(1.00)), "current price after");
        assert!(book.lookup("m", &k, Utc.with_ymd_and_hms(2024, 12, 31, 0, 0, 0).single().unwrap_or_default()).is_err(), "no price before the first version");
        assert!(book.lookup("other", &k, t(5)).is_err(), "unknown model has no price");
    }

    #[test]
    fn rejects_rewriting_history() {
        let book = book_with_change();
        let r = book.plan_new_version(Uuid::now_v7(), "m", &UsageKind::InputTokens, dec!(2), t(10));
        assert_eq!(r.map(|_| ()).map_err(|e| e.code()), Err("price_rewrites_history"), "same start rejected");
        let r = book.plan_new_version(Uuid::now_v7(), "m", &UsageKind::InputTokens, dec!(2), t(3));
        assert!(r.is_err(), "earlier start rejected");
        let r = book.plan_new_version(Uuid::now_v7(), "m", &UsageKind::InputTokens, dec!(-2), t(30));
        assert_eq!(r.map(|_| ()).map_err(|e| e.code()), Err("negative_price"), "negative price rejected");
    }

    #[test]
    fn rejects_gaps_and_overlaps() {
        let mk = |from: u32, to: Option<u32>| PriceVersion {
            id: Uuid::now_v7(),
            model: "m".into(),
            kind: UsageKind::OutputTokens,
            price: dec!(4),
            effective_from: t(from),
            effective_to: to.map(t),
            is_current: to.is_none(),
        };
        assert!(PriceHistory::from_versions(vec![mk(1, Some(5)), mk(5, None)]).is_ok(), "contiguous chain accepted");
        assert!(PriceHistory::from_versions(vec![mk(1, Some(4)), mk(5, None)]).is_err(), "gap rejected");
        assert!(PriceHistory::from_versions(vec![mk(1, Some(6)), mk(5, None)]).is_err(), "overlap rejected");
        assert!(PriceHistory::from_versions(vec![mk(1, None), mk(5, None)]).is_err(), "two current versions rejected");
    }
}
