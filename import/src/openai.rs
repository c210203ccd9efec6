//! OpenAI's organization API: `usage/completions` (hourly, grouped) and `costs` (daily, by line item).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tally_domain::UsageKind;

use crate::anthropic::encode;
use crate::error::ImportError;
use crate::http::Client;
use crate::model::{count, decimal_from_raw, dimension, non_zero, optional_count, CostItem, Provider, Report, UsageBucket};

/// Hourly buckets per usage page (the documented maximum for `1h`).
pub const USAGE_PAGE_LIMIT: u32 = 168;
/// Daily buckets per cost page (the documented maximum).
pub const COST_PAGE_LIMIT: u32 = 180;
/// Pages one fetch reads at most.
pub const MAX_PAGES: usize = 10_000;

#[derive(Debug, Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Bucket<'a>>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Bucket<'a> {
    start_time: i64,
    end_time: i64,
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn instant(secs: i64, field: &str) -> Result<DateTime<Utc>, ImportError> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| ImportError::InvalidResponse(format!("{field} {secs} is out of range")))
}

async fn pages(
    client: &Client,
    path: &str,
    query: &str,
    mut handle: impl FnMut(DateTime<Utc>, DateTime<Utc>, &[&RawValue]) -> Result<(), ImportError>,
) -> Result<usize, ImportError> {
    let mut page: Option<String> = None;
    let mut n = 0;
    loop {
        let q = match &page {
            Some(p) => format!("{path}?{query}&page={}", encode(p)),
            None => format!("{path}?{query}"),
        };
        let body = client.get(&q).await?;
        n += 1;
        let parsed: Page<'_> = serde_json::from_str(&body).map_err(|e| ImportError::InvalidResponse(format!("{path}: {e}")))?;
        for b in &parsed.data {
            handle(instant(b.start_time, "start_time")?, instant(b.end_time, "end_time")?, &b.results)?;
        }
        match (parsed.has_more, parsed.next_page) {
            (true, Some(next)) if !next.is_empty() => page = Some(next),
            (true, _) => return Err(ImportError::InvalidResponse(format!("{path}: has_more without next_page"))),
            (false, _) => return Ok(n),
        }
        if n >= MAX_PAGES {
            return Err(ImportError::InvalidResponse(format!("{path}: more than {MAX_PAGES} pages")));
        }
    }
}

fn usage_item(raw: &RawValue, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Option<UsageBucket>, ImportError> {
    let v: Value = serde_json::from_str(raw.get()).map_err(|e| ImportError::InvalidResponse(format!("usage result: {e}")))?;
    if !v.is_object() {
        return Err(ImportError::InvalidResponse("a usage result is not an object".into()));
    }
    let input = count(v.get("input_tokens"), "input_tokens")?;
    let output = count(v.get("output_tokens"), "output_tokens")?;
    let requests = count(v.get("num_model_requests"), "num_model_requests")?;
    let cached = optional_count(v.get("input_cached_tokens"), "input_cached_tokens")?;
    let cache_write = optional_count(v.get("input_cache_write_tokens"), "input_cache_write_tokens")?;
    // `input_tokens` includes cached and cache-write tokens (2026 spec); uncached is given or derived.
    let uncached = match v.get("input_uncached_tokens") {
        None | Some(Value::Null) => input.checked_sub(cached).and_then(|r| r.checked_sub(cache_write)).ok_or_else(|| {
            ImportError::InvalidResponse(format!(
                "input_tokens {input} is less than input_cached_tokens {cached} + input_cache_write_tokens {cache_write}"
            ))
        })?,
        some => count(some, "input_uncached_tokens")?,
    };
    let quantities = non_zero(vec![
        (UsageKind::InputTokens, uncached),
        (UsageKind::OutputTokens, output),
        // OpenAI reports no cache TTL; its cache writes are counted as 5-minute writes.
        (UsageKind::CacheWrite5mTokens, cache_write),
        (UsageKind::CacheReadTokens, cached),
    ]);
    if quantities.is_empty() && requests == 0 {
        return Ok(None);
    }
    Ok(Some(UsageBucket {
        provider: Provider::OpenAi,
        starting_at: start,
        ending_at: end,
        model: dimension(v.get("model"), "model")?,
        api_key_id: dimension(v.get("api_key_id"), "api_key_id")?,
        workspace_id: dimension(v.get("project_id"), "project_id")?,
        service_tier: dimension(v.get("service_tier"), "service_tier")?,
        quantities,
        requests: Some(requests),
    }))
}

#[derive(Debug, Deserialize)]
struct Amount<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct CostResult<'a> {
    #[serde(borrow)]
    amount: Amount<'a>,
    #[serde(default)]
    line_item: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

fn cost_item(raw: &RawValue, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<CostItem, ImportError> {
    let c: CostResult<'_> =
        serde_json::from_str(raw.get()).map_err(|e| ImportError::InvalidResponse(format!("cost result: {e}")))?;
    // A number per the spec, a string in live answers: both, exactly.
    let amount = decimal_from_raw(c.amount.value, "amount.value")?;
    if amount.is_sign_negative() {
        return Err(ImportError::InvalidResponse(format!("amount.value {amount} is negative")));
    }
    Ok(CostItem {
        provider: Provider::OpenAi,
        starting_at: start,
        ending_at: end,
        model: None,
        description: c.line_item,
        workspace_id: c.project_id,
        amount_usd: amount,
        currency: c.amount.currency.to_uppercase(),
    })
}

/// Both reports over `[from, to)`.
pub(crate) async fn fetch(client: &Client, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, ImportError> {
    let mut report = Report::default();
    let range = format!("start_time={}&end_time={}", from.timestamp(), to.timestamp());
    let usage_q = format!(
        "{range}&bucket_width=1h&limit={USAGE_PAGE_LIMIT}&group_by=model&group_by=project_id&group_by=api_key_id"
    );
    let mut usage = Vec::new();
    report.pages += pages(client, "/v1/organization/usage/completions", &usage_q, |s, e, results| {
        for r in results {
            if let Some(b) = usage_item(r, s, e)? {
                usage.push(b);
            }
        }
        Ok(())
    })
    .await?;
    let cost_q = format!("{range}&bucket_width=1d&limit={COST_PAGE_LIMIT}&group_by=line_item&group_by=project_id");
    let mut costs = Vec::new();
    report.pages += pages(client, "/v1/organization/costs", &cost_q, |s, e, results| {
        for r in results {
            costs.push(cost_item(r, s, e)?);
        }
        Ok(())
    })
    .await?;
    report.usage = usage;
    report.costs = costs;
    report.requests = client.requests();
    Ok(report)
}
