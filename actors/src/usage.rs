//! Conversion of provider-reported token usage into billable domain usage.

use tally_domain::{Usage, UsageKind};
use tally_llm::TokenUsage;

/// Map a provider's exact token counts to usage by kind.
pub fn usage_from_tokens(t: &TokenUsage) -> Usage {
    let mut u = Usage::new();
    u.add_tokens(UsageKind::InputTokens, t.input_tokens);
    u.add_tokens(UsageKind::OutputTokens, t.output_tokens);
    u.add_tokens(UsageKind::CacheWrite5mTokens, t.cache_write_5m_tokens);
    u.add_tokens(UsageKind::CacheWrite1hTokens, t.cache_write_1h_tokens);
    u.add_tokens(UsageKind::CacheReadTokens, t.cache_read_tokens);
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn maps_every_token_kind() {
        let t = TokenUsage { input_tokens: 1, output_tokens: 2, cache_write_5m_tokens: 3, cache_write_1h_tokens: 4, cache_read_tokens: 5 };
        let u = usage_from_tokens(&t);
        assert_eq!(u.get(&UsageKind::InputTokens), Decimal::from(1), "input");
        assert_eq!(u.get(&UsageKind::OutputTokens), Decimal::from(2), "output");
        assert_eq!(u.get(&UsageKind::CacheWrite5mTokens), Decimal::from(3), "5m write");
        assert_eq!(u.get(&UsageKind::CacheWrite1hTokens), Decimal::from(4), "1h write");
        assert_eq!(u.get(&UsageKind::CacheReadTokens), Decimal::from(5), "read");
    }
}
