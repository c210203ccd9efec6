//! Cost of a usage: one line per kind, priced at the version in force at the usage's time.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;
use crate::money::Money;
use crate::pricing::PriceBook;
use crate::usage::{Unit, Usage, UsageKind};

/// The cost of one kind of usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostLine {
    /// What was consumed.
    pub kind: UsageKind,
    /// Unit of measure of `quantity`.
    pub unit: Unit,
    /// How much was consumed.
    pub quantity: Decimal,
    /// Published price: USD per million tokens, or per unit for resources.
    pub unit_price: Money,
    /// The price version used.
    pub price_version_id: Uuid,
    /// `quantity x unit_price / basis`, exact (never rounded).
    pub amount: Money,
}

/// The cost of a usage: its lines and their exact total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// One line per kind with a non-zero quantity, in kind order.
    pub lines: Vec<CostLine>,
    /// Sum of line amounts, exact.
    pub total: Money,
}

impl Cost {
    /// Build a cost from lines, computing the exact total.
    pub fn from_lines(lines: Vec<CostLine>) -> Self {
        let total = lines.iter().map(|l| l.amount).sum();
        Cost { lines, total }
    }
}

/// The amount for `quantity` of `kind` at `unit_price` (exact).
pub fn line_amount(kind: &UsageKind, quantity: Decimal, unit_price: Money) -> Money {
    quantity * unit_price / kind.price_basis()
}

/// Price a usage of `model` that happened at `at`, at the versions in force then.
///
/// Every kind with a non-zero quantity must have a price; otherwise nothing is
/// priced and the error names the missing price (billing never guesses).
pub fn price_usage(book: &PriceBook, model: &str, at: DateTime<Utc>, usage: &Usage) -> Result<Cost, DomainError> {
    usage.validate()?;
    let mut lines = Vec::new();
    for (kind, quantity) in usage.iter() {
        let version = book.lookup(model, kind, at)?;
        lines.push(CostLine {
            kind: kind.clone(),
            unit: kind.unit(),
            quantity: *quantity,
            unit_price: version.price,
            price_version_id: version.id,
            amount: line_amount(kind, *quantity, version.price),
        });
    }
    Ok(Cost::from_lines(lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    #[test]
    fn haiku_message_costs_exactly() {
        let mut book = PriceBook::default();
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default();
        for (kind, price) in [(UsageKind::InputTokens, dec!(0.80)), (UsageKind::OutputTokens, dec!(4))] {
            let (c, n) = book.plan_new_version(Uuid::now_v7(), "haiku", &kind, price, at).unwrap_or_else(|e| panic!("{e}"));
            book.apply(c, n).unwrap_or_else(|e| panic!("{e}"));
        }
        let mut usage = Usage::new();
        usage.add_tokens(UsageKind::InputTokens, 1234);
        usage.add_tokens(UsageKind::OutputTokens, 567);
        let cost = price_usage(&book, "haiku", at, &usage).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cost.lines.len(), 2, "one line per kind");
        assert_eq!(cost.lines[0].amount, dec!(0.0009872), "1234 x 0.80 / 1e6");
        assert_eq!(cost.lines[1].amount, dec!(0.002268), "567 x 4 / 1e6");
        assert_eq!(cost.total, dec!(0.0032552), "total is the exact sum");
    }

    #[test]
    fn missing_price_prices_nothing() {
        let book = PriceBook::default();
        let mut usage = Usage::new();
        usage.add_tokens(UsageKind::InputTokens, 1);
        let r = price_usage(&book, "x", Utc::now(), &usage);
        assert_eq!(r.map_err(|e| e.code()).map(|_| ()), Err("no_price"), "unknown price is an error");
    }
}
