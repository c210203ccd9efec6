//! Price sync: read LiteLLM's `model_prices_and_context_window.json` exactly and diff it against a price book.
//!
//! LiteLLM publishes prices per token as JSON numbers (`8e-07`). Going through `f64`
//! would turn `8e-07` into `7.999999999999999e-07`, so every price is read from the
//! number's JSON *text* (serde_json's `RawValue`) and scaled to Tally's per-million
//! basis by moving the decimal point: `8e-07` per token is exactly `0.8` per million.
//!
//! Only five fields are read, one per token kind ([`FIELD_KINDS`]); everything else in
//! an entry (batch, priority, audio, image, tiered `_above_200k_tokens` prices, context
//! sizes, `search_context_cost_per_query`, ...) is ignored, as are resource prices
//! (`web_search_requests`, `images`), which LiteLLM does not publish per unit.
//!
//! A Tally model `M` of provider `P` is found in the list as `M`, else as `P/M`
//! (LiteLLM's provider-prefixed form). Entries of other providers' deployments
//! (`azure/gpt-4o`, `vertex_ai/...`, Bedrock ids) are different prices and count as unknown.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::DomainError;
use crate::pricing::PriceBook;
use crate::usage::UsageKind;

/// The documentation entry at the top of LiteLLM's file: not a model.
pub const SAMPLE_SPEC: &str = "sample_spec";

/// The LiteLLM fields read, and the kind each one prices (per token in the list).
pub const FIELD_KINDS: [(&str, UsageKind); 5] = [
    ("input_cost_per_token", UsageKind::InputTokens),
    ("output_cost_per_token", UsageKind::OutputTokens),
    ("cache_creation_input_token_cost", UsageKind::CacheWrite5mTokens),
    ("cache_creation_input_token_cost_above_1hr", UsageKind::CacheWrite1hTokens),
    ("cache_read_input_token_cost", UsageKind::CacheReadTokens),
];

/// Power of ten from a per-token price to a per-million one.
const PER_MILLION_EXPONENT: i64 = 6;

/// Largest scale a [`Decimal`] holds.
const MAX_SCALE: i64 = 28;

/// A price that differs between the list and the current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    /// Tally's model name.
    pub model: String,
    /// What is priced.
    pub kind: UsageKind,
    /// The current price per million (`None`: Tally has no version of this kind).
    pub old: Option<Decimal>,
    /// The list's price per million.
    pub new: Decimal,
}

/// A price the list confirms: the current version's price equals the list's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnchangedPrice {
    /// Tally's model name.
    pub model: String,
    /// What is priced.
    pub kind: UsageKind,
    /// The current version the list confirms.
    pub pricing_id: Uuid,
}

/// What a sync would change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Prices that differ, by model then kind.
    pub changes: Vec<PriceChange>,
    /// Current versions whose price the list confirms, by model then kind.
    pub unchanged: Vec<UnchangedPrice>,
    /// Entries of the list that are no Tally model (`sample_spec` not counted).
    pub unknown_models: usize,
    /// Tally models the list does not have (their prices are left alone).
    pub missing_models: Vec<String>,
}

/// A per-token price as JSON number text (`8e-07`, `0.000003`, `0`) -> the exact price per
/// million. Refuses anything that is not a non-negative JSON number or that a [`Decimal`]
/// cannot hold exactly.
pub fn per_million_from_json_number(text: &str) -> Result<Decimal, DomainError> {
    let bad = |why: &str| DomainError::InvalidPriceList(format!("price {text:?} {why}"));
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, "0"),
    };
    if mantissa.starts_with('-') {
        return Err(bad("is negative"));
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    // JSON's grammar: digits, an optional fraction with at least one digit, an optional exponent.
    if int_part.is_empty()
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        || (mantissa.contains('.') && frac_part.is_empty())
    {
        return Err(bad("is not a JSON number"));
    }
    let exp_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exp_digits.is_empty() || !digits_ok(exp_digits) || exp_digits.len() > 4 {
        return Err(bad("has a bad exponent"));
    }
    let exp: i64 = exponent.parse().map_err(|_| bad("has a bad exponent"))?;
    let all_digits = format!("{int_part}{frac_part}");
    let significant = all_digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let m: i128 = significant.parse().map_err(|_| bad("has too many digits"))?;
    // value = m * 10^(exp - len(frac)); per million: times 10^6.
    let shift = exp + PER_MILLION_EXPONENT - i64::try_from(frac_part.len()).map_err(|_| bad("is too long"))?;
    let value = if shift <= 0 {
        let scale = -shift;
        if scale > MAX_SCALE {
            return Err(bad("is too small to hold exactly"));
        }
        // Checked: `from_i128_with_scale` would panic on a mantissa over 96 bits.
        Decimal::try_from_i128_with_scale(m, u32::try_from(scale).map_err(|_| bad("is out of range"))?)
            .map_err(|_| bad("has too many digits"))?
    } else {
        let mut v = Decimal::try_from_i128_with_scale(m, 0).map_err(|_| bad("has too many digits"))?;
        for _ in 0..shift {
            v = v.checked_mul(Decimal::TEN).ok_or_else(|| bad("is too large"))?;
        }
        v
    };
    Ok(value.normalize())
}

/// The prices of one LiteLLM entry (a JSON object), per million, by kind. A missing or
/// `null` field is no price; any other non-number is an error naming the entry.
pub fn entry_prices(name: &str, entry: &RawValue) -> Result<BTreeMap<UsageKind, Decimal>, DomainError> {
    let fields: BTreeMap<&str, &RawValue> = serde_json::from_str(entry.get())
        .map_err(|e| DomainError::InvalidPriceList(format!("entry {name:?} is not an object: {e}")))?;
    let mut prices = BTreeMap::new();
    for (field, kind) in FIELD_KINDS {
        let Some(raw) = fields.get(field) else { continue };
        let text = raw.get().trim();
        if text == "null" {
            continue;
        }
        let price = per_million_from_json_number(text)
            .map_err(|e| DomainError::InvalidPriceList(format!("{name}.{field}: {e}")))?;
        prices.insert(kind, price);
    }
    Ok(prices)
}

/// Diff LiteLLM's price list (`json`, the whole file) against the current versions of
/// `book`, for the models of `providers` (Tally model name -> provider) that have a price.
///
/// A malformed list (not a JSON object of objects, a price that is not a non-negative
/// number) -> [`DomainError::InvalidPriceList`]; nothing is partially reported.
pub fn diff_price_list(
    json: &str,
    book: &PriceBook,
    providers: &BTreeMap<String, String>,
) -> Result<SyncReport, DomainError> {
    let list: BTreeMap<&str, &RawValue> = serde_json::from_str(json)
        .map_err(|e| DomainError::InvalidPriceList(format!("not a JSON object of model entries: {e}")))?;
    if let Some((name, _)) = list.iter().find(|(_, v)| !v.get().trim_start().starts_with('{')) {
        return Err(DomainError::InvalidPriceList(format!("entry {name:?} is not an object")));
    }
    let mut report = SyncReport::default();
    let mut matched: BTreeSet<&str> = BTreeSet::new();
    for model in book.models() {
        let prefixed = providers.get(model).map(|p| format!("{p}/{model}"));
        // Both spellings name the same price; neither is "unknown".
        matched.insert(model);
        if let Some(p) = &prefixed {
            if let Some((k, _)) = list.get_key_value(p.as_str()) {
                matched.insert(k);
            }
        }
        let entry = list.get_key_value(model).or_else(|| prefixed.as_deref().and_then(|p| list.get_key_value(p)));
        let Some((name, entry)) = entry else {
            report.missing_models.push(model.to_string());
            continue;
        };
        for (kind, new) in entry_prices(name, entry)? {
            match book.history(model, &kind).and_then(|h| h.current()) {
                Some(current) if current.price == new => {
                    report.unchanged.push(UnchangedPrice { model: model.to_string(), kind, pricing_id: current.id })
                }
                current => report.changes.push(PriceChange {
                    model: model.to_string(),
                    kind,
                    old: current.map(|v| v.price),
                    new,
                }),
            }
        }
    }
    report.unknown_models = list.keys().filter(|k| **k != SAMPLE_SPEC && !matched.contains(**k)).count();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::pricing::PriceVersion;
    use chrono::{DateTime, Utc};
    use rust_decimal_macros::dec;

    const FIXTURE: &str = include_str!("../../catalog/fixtures/litellm_prices_sample.json");
    const CATALOG: &str = include_str!("../../catalog/prices.json");

    fn catalog_book() -> (PriceBook, BTreeMap<String, String>) {
        let catalog = Catalog::parse(CATALOG).unwrap_or_else(|e| panic!("catalogue parses: {e}"));
        let versions = catalog.prices().into_iter().map(|(model, kind, price, from)| PriceVersion {
            id: Uuid::now_v7(),
            model,
            kind,
            price,
            effective_from: from,
            effective_to: None,
            is_current: true,
        });
        let book = PriceBook::from_versions(versions).unwrap_or_else(|e| panic!("catalogue book: {e}"));
        let providers = catalog.models.iter().map(|m| (m.name.clone(), m.provider.clone())).collect();
        (book, providers)
    }

    fn entry(json: &str, name: &str) -> BTreeMap<UsageKind, Decimal> {
        let list: BTreeMap<&str, &RawValue> = serde_json::from_str(json).unwrap_or_else(|e| panic!("json: {e}"));
        let raw = list.get(name).unwrap_or_else(|| panic!("fixture has {name}"));
        entry_prices(name, raw).unwrap_or_else(|e| panic!("prices of {name}: {e}"))
    }

    #[test]
    fn per_token_text_becomes_an_exact_per_million_price() {
        let p = |s: &str| per_million_from_json_number(s).ok();
        assert_eq!(p("8e-07"), Some(dec!(0.8)), "8e-07 per token is 0.8 per million");
        assert_eq!(p("1.25e-06"), Some(dec!(1.25)), "mantissa with a fraction");
        assert_eq!(p("2.5E-05"), Some(dec!(25)), "capital E");
        assert_eq!(p("7.5e-08"), Some(dec!(0.075)), "below a cent per million");
        assert_eq!(p("0.000003"), Some(dec!(3)), "plain decimal notation");
        assert_eq!(p("3e+00"), Some(dec!(3000000)), "explicit positive exponent");
        assert_eq!(p("0"), Some(Decimal::ZERO), "integer zero");
        assert_eq!(p("0.0"), Some(Decimal::ZERO), "fractional zero");
        assert_eq!(p("1e-34"), Some(dec!(0.0000000000000000000000000001)), "smallest representable per million");
        assert_eq!(p("1e-35"), None, "beyond 28 decimal places is refused, not rounded");
        assert_eq!(p("-1e-06"), None, "negative prices are refused");
        assert_eq!(p("\"1e-06\""), None, "a string is not a number");
        assert_eq!(p("1."), None, "a fraction needs digits");
        assert_eq!(p("1e"), None, "an exponent needs digits");
        assert_eq!(p("1e99999"), None, "absurd exponents are refused");
        assert_eq!(p("9e30"), None, "too large for a decimal");
    }

    #[test]
    fn fixture_entries_map_the_five_token_fields() {
        let haiku = entry(FIXTURE, "claude-haiku-4-5-20251001");
        assert_eq!(haiku.get(&UsageKind::InputTokens), Some(&dec!(1)), "haiku 4.5 input is 1 per million");
        assert_eq!(haiku.get(&UsageKind::OutputTokens), Some(&dec!(5)), "haiku 4.5 output is 5 per million");
        assert_eq!(haiku.get(&UsageKind::CacheWrite5mTokens), Some(&dec!(1.25)), "cache_creation -> 5m write");
        assert_eq!(haiku.get(&UsageKind::CacheWrite1hTokens), Some(&dec!(2)), "above_1hr -> 1h write");
        assert_eq!(haiku.get(&UsageKind::CacheReadTokens), Some(&dec!(0.1)), "cache read");
        assert_eq!(haiku.len(), 5, "batch and other fields are ignored");
        let mini = entry(FIXTURE, "gpt-4o-mini");
        assert_eq!(mini.get(&UsageKind::InputTokens), Some(&dec!(0.15)), "gpt-4o-mini input 1.5e-07 -> 0.15");
        assert_eq!(mini.get(&UsageKind::CacheReadTokens), Some(&dec!(0.075)), "gpt-4o-mini cache read 7.5e-08");
        assert_eq!(mini.get(&UsageKind::CacheWrite5mTokens), None, "OpenAI publishes no cache write price");
        let spec = entry(FIXTURE, SAMPLE_SPEC);
        assert_eq!(spec.get(&UsageKind::InputTokens), Some(&Decimal::ZERO), "sample_spec parses (0.0)");
    }

    #[test]
    fn the_fixture_agrees_with_the_catalogue_except_where_it_adds_a_kind() {
        let (book, providers) = catalog_book();
        let report = diff_price_list(FIXTURE, &book, &providers).unwrap_or_else(|e| panic!("diff: {e}"));
        assert_eq!(
            report.changes,
            vec![PriceChange {
                model: "gpt-image-1".into(),
                kind: UsageKind::CacheReadTokens,
                old: None,
                new: dec!(1.25)
            }],
            "the only difference is gpt-image-1's cache read price, which Tally lacks"
        );
        assert_eq!(report.unchanged.len(), 46, "every other listed price is confirmed");
        assert_eq!(report.unknown_models, 5, "azure, vertex, bedrock and two unlisted models are unknown");
        assert!(
            report.missing_models.contains(&"claude-3-5-haiku-20241022".to_string()),
            "Haiku 3.5 is no longer in LiteLLM's list under its Anthropic name: {:?}",
            report.missing_models
        );
        assert_eq!(report.missing_models.len(), 6, "six catalogue models are absent from this list");
    }

    #[test]
    fn a_changed_price_is_reported_with_old_and_new() {
        let (book, providers) = catalog_book();
        let later: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("instant: {e}"));
        let mut book = book;
        let (closed, new) = book
            .plan_new_version(Uuid::now_v7(), "gpt-4o", &UsageKind::InputTokens, dec!(3), later)
            .unwrap_or_else(|e| panic!("plan: {e}"));
        book.apply(closed, new).unwrap_or_else(|e| panic!("apply: {e}"));
        let report = diff_price_list(FIXTURE, &book, &providers).unwrap_or_else(|e| panic!("diff: {e}"));
        assert!(
            report.changes.contains(&PriceChange {
                model: "gpt-4o".into(),
                kind: UsageKind::InputTokens,
                old: Some(dec!(3)),
                new: dec!(2.5)
            }),
            "the list's 2.5e-06 differs from the current 3: {:?}",
            report.changes
        );
        assert_eq!(report.unchanged.len(), 45, "one fewer confirmed price");
    }

    #[test]
    fn a_provider_prefixed_entry_is_used_when_the_bare_name_is_absent() {
        let (book, providers) = catalog_book();
        let json = r#"{"sample_spec": {"input_cost_per_token": 0.0},
            "anthropic/claude-3-5-haiku-20241022": {"input_cost_per_token": 8e-07, "output_cost_per_token": 4e-06,
                "cache_read_input_token_cost": 9e-08, "litellm_provider": "anthropic"},
            "openai/gpt-4o": {"input_cost_per_token": 2.5e-06},
            "gpt-4o": {"input_cost_per_token": 2.5e-06},
            "azure/gpt-4o": {"input_cost_per_token": 2.75e-06}}"#;
        let report = diff_price_list(json, &book, &providers).unwrap_or_else(|e| panic!("diff: {e}"));
        assert_eq!(
            report.changes,
            vec![PriceChange {
                model: "claude-3-5-haiku-20241022".into(),
                kind: UsageKind::CacheReadTokens,
                old: Some(dec!(0.08)),
                new: dec!(0.09)
            }],
            "anthropic/claude-3-5-haiku input 0.8 and output 4 agree; cache read differs"
        );
        let haiku_unchanged: Vec<&UsageKind> =
            report.unchanged.iter().filter(|u| u.model == "claude-3-5-haiku-20241022").map(|u| &u.kind).collect();
        assert_eq!(
            haiku_unchanged,
            vec![&UsageKind::InputTokens, &UsageKind::OutputTokens],
            "input 8e-07 is exactly the catalogue's 0.80 per million"
        );
        assert_eq!(report.unknown_models, 1, "only azure/gpt-4o is unknown; openai/gpt-4o is an alias");
    }

    #[test]
    fn malformed_lists_are_refused_with_a_stable_code() {
        let (book, providers) = catalog_book();
        for (json, why) in [
            ("[1, 2]", "not an object"),
            ("{\"gpt-4o\": 3}", "an entry that is not an object"),
            ("{\"gpt-4o\": {\"input_cost_per_token\": \"2.5e-06\"}}", "a price as a string"),
            ("{\"gpt-4o\": {\"output_cost_per_token\": -1e-05}}", "a negative price"),
            ("{\"gpt-4o\": ", "truncated JSON"),
        ] {
            let err = diff_price_list(json, &book, &providers).err();
            assert_eq!(err.as_ref().map(DomainError::code), Some("invalid_price_list"), "refused: {why}");
        }
        let ok = diff_price_list("{\"gpt-4o\": {\"input_cost_per_token\": null}}", &book, &providers);
        assert!(ok.is_ok(), "null is no price, not an error: {ok:?}");
    }
}
