//! Money: exact decimals end to end, and the one rounding rule.
//!
//! Rounding rule: cost lines and running totals keep full precision
//! (`tokens x price_per_million / 1_000_000` is exact in `Decimal`). Only an
//! invoice total is rounded, once, when the invoice is generated: half-even
//! ("banker's rounding") to 6 decimal places (micro-dollars).

use rust_decimal::{Decimal, RoundingStrategy};

/// An amount of US dollars. Serialized as a JSON string, never a float.
pub type Money = Decimal;

/// Token prices are published per this many tokens.
pub const TOKENS_PER_PRICE_UNIT: u32 = 1_000_000;

/// Decimal places an invoice total is rounded to.
pub const INVOICE_DECIMAL_PLACES: u32 = 6;

/// Round an invoice total: half-even to [`INVOICE_DECIMAL_PLACES`].
pub fn round_invoice_total(amount: Money) -> Money {
    amount
        .round_dp_with_strategy(INVOICE_DECIMAL_PLACES, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    #[test]
    fn rounds_half_even_to_six_places() {
        assert_eq!(round_invoice_total(d("0.0000125")), d("0.000012"), "tie rounds to even (down)");
        assert_eq!(round_invoice_total(d("0.0000135")), d("0.000014"), "tie rounds to even (up)");
        assert_eq!(round_invoice_total(d("1.23456789")), d("1.234568"), "non-tie rounds to nearest");
        assert_eq!(round_invoice_total(d("2")), d("2"), "whole amounts stay whole");
    }
}
