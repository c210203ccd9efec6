//! Property tests for the money invariants: invoice totals, linearity, point-in-time pricing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use tally_domain::{price_usage, round_invoice_total, Invoice, InvoiceLine, PriceBook, Usage, UsageKind};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap()
}

/// Price in micro-dollars per million tokens, as a Decimal with up to 6 places.
fn price() -> impl Strategy<Value = Decimal> {
    (0u64..100_000_000).prop_map(|micros| Decimal::new(micros as i64, 6))
}

fn kinds() -> impl Strategy<Value = UsageKind> {
    prop_oneof![
        Just(UsageKind::InputTokens),
        Just(UsageKind::OutputTokens),
        Just(UsageKind::CacheWrite5mTokens),
        Just(UsageKind::CacheWrite1hTokens),
        Just(UsageKind::CacheReadTokens),
        Just(UsageKind::Resource("images".into())),
    ]
}

fn book_with(prices: &[(UsageKind, Decimal, Option<Decimal>)], change_at: DateTime<Utc>) -> PriceBook {
    let mut book = PriceBook::default();
    for (kind, p1, p2) in prices {
        let (c, n) = book.plan_new_version(Uuid::now_v7(), "m", kind, *p1, t0()).unwrap();
        book.apply(c, n).unwrap();
        if let Some(p2) = p2 {
            let (c, n) = book.plan_new_version(Uuid::now_v7(), "m", kind, *p2, change_at).unwrap();
            book.apply(c, n).unwrap();
        }
    }
    book
}

fn all_kinds_book(p: Decimal, p2: Option<Decimal>, change_at: DateTime<Utc>) -> PriceBook {
    let kinds: Vec<_> = UsageKind::TOKEN_KINDS
        .iter()
        .cloned()
        .chain([UsageKind::Resource("images".into())])
        .map(|k| (k, p, p2))
        .collect();
    book_with(&kinds, change_at)
}

proptest! {
    #[test]
    fn invoice_total_is_sum_of_lines_and_of_message_costs(
        p in price(),
        messages in prop::collection::vec(prop::collection::vec((kinds(), 0u64..5_000_000), 1..5), 1..20),
    ) {
        let book = all_kinds_book(p, None, t0());
        let mut lines = Vec::new();
        let mut message_costs = Decimal::ZERO;
        for (i, usage_pairs) in messages.iter().enumerate() {
            let mut usage = Usage::new();
            for (k, q) in usage_pairs { usage.add(k.clone(), Decimal::from(*q)).unwrap(); }
            let at = t0() + Duration::seconds(i as i64);
            let cost = price_usage(&book, "m", at, &usage).unwrap();
            message_costs += cost.total;
            let event = Uuid::now_v7();
            lines.extend(cost.lines.iter().map(|l| InvoiceLine::from_cost_line(l, event, Some(event), None, at)));
        }
        let sum_lines: Decimal = lines.iter().map(|l| l.amount).sum();
        let invoice = Invoice::new("u".into(), None, None, lines, t0());
        prop_assert_eq!(invoice.subtotal, sum_lines, "subtotal is the exact sum of lines");
        prop_assert_eq!(invoice.subtotal, message_costs, "subtotal equals the sum of message costs");
        prop_assert_eq!(invoice.total, round_invoice_total(message_costs), "total is the subtotal rounded once");
        prop_assert!(!invoice.total.is_sign_negative() || invoice.total.is_zero(), "no negative totals");
        prop_assert!((invoice.total - invoice.subtotal).abs() <= Decimal::new(5, 7), "rounding moves at most half a micro-dollar");
    }

    #[test]
    fn cost_is_linear_in_quantity(p in price(), kind in kinds(), a in 0u64..1_000_000_000, b in 0u64..1_000_000_000) {
        let book = all_kinds_book(p, None, t0());
        let cost = |q: u64| {
            let mut u = Usage::new();
            u.add(kind.clone(), Decimal::from(q)).unwrap();
            price_usage(&book, "m", t0(), &u).unwrap().total
        };
        prop_assert_eq!(cost(a) + cost(b), cost(a + b), "cost(a) + cost(b) == cost(a + b)");
    }

    #[test]
    fn price_change_mid_thread_prices_each_message_at_its_time(
        p1 in price(), p2 in price(), change_after in 1i64..100, n in 1usize..50, tokens in 1u64..100_000,
    ) {
        let change_at = t0() + Duration::seconds(change_after);
        let book = all_kinds_book(p1, Some(p2), change_at);
        for i in 0..n {
            let at = t0() + Duration::seconds(i as i64 * 3);
            let mut u = Usage::new();
            u.add_tokens(UsageKind::OutputTokens, tokens);
            let cost = price_usage(&book, "m", at, &u).unwrap();
            let expected_price = if at < change_at { p1 } else { p2 };
            prop_assert_eq!(cost.lines[0].unit_price, expected_price, "message at {} uses the version in force then", at);
            prop_assert_eq!(cost.total, Decimal::from(tokens) * expected_price / Decimal::from(1_000_000u32), "exact amount");
            // Repricing is stable: pricing the same usage again gives the same answer.
            prop_assert_eq!(price_usage(&book, "m", at, &u).unwrap(), cost, "repricing is stable");
        }
    }
}
