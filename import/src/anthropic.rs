//! Anthropic's Admin API reports: `usage_report/messages` (hourly, grouped) and `cost_report` (daily).

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tally_domain::UsageKind;

use crate::error::ImportError;
use crate::http::Client;
use crate::model::{count, decimal_from_raw, dimension, non_zero, optional_count, CostItem, Provider, Report, UsageBucket};

/// Hourly buckets per usage page (the documented maximum for `1h`).
pub const USAGE_PAGE_LIMIT: u32 = 168;
/// Daily buckets per cost page (the documented maximum).
pub const COST_PAGE_LIMIT: u32 = 31;
/// Pages one fetch reads at most (a runaway cursor is an error, not a loop).
pub const MAX_PAGES: usize = 10_000;

/// The report envelope: buckets, `has_more`, `next_page` (all required).
#[derive(Debug, Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Bucket<'a>>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Bucket<'a> {
    starting_at: String,
    ending_at: String,
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn instant(s: &str, field: &str) -> Result<DateTime<Utc>, ImportError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ImportError::InvalidResponse(format!("{field} {s:?} is not RFC 3339")))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Read every page of one report; `handle` gets each bucket.
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
        let parsed: Page<'_> = serde_json::from_str(&body)
            .map_err(|e| ImportError::InvalidResponse(format!("{path}: {e}")))?;
        for b in &parsed.data {
            handle(instant(&b.starting_at, "starting_at")?, instant(&b.ending_at, "ending_at")?, &b.results)?;
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

/// Percent-encode a cursor (opaque; base64 may hold `+`, `/`, `=`).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn usage_item(raw: &RawValue, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Option<UsageBucket>, ImportError> {
    let v: Value = serde_json::from_str(raw.get()).map_err(|e| ImportError::InvalidResponse(format!("usage result: {e}")))?;
    if !v.is_object() {
        return Err(ImportError::InvalidResponse("a usage result is not an object".into()));
    }
    let cache = &v["cache_creation"];
    if !cache.is_object() {
        return Err(ImportError::InvalidResponse("cache_creation is missing".into()));
    }
    let tools = &v["server_tool_use"];
    let quantities = non_zero(vec![
        (UsageKind::InputTokens, count(v.get("uncached_input_tokens"), "uncached_input_tokens")?),
        (UsageKind::OutputTokens, count(v.get("output_tokens"), "output_tokens")?),
        (UsageKind::CacheWrite5mTokens, count(cache.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens")?),
        (UsageKind::CacheWrite1hTokens, count(cache.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens")?),
        (UsageKind::CacheReadTokens, count(v.get("cache_read_input_tokens"), "cache_read_input_tokens")?),
        (
            UsageKind::Resource("web_search_requests".into()),
            optional_count(tools.get("web_search_requests"), "server_tool_use.web_search_requests")?,
        ),
    ]);
    if quantities.is_empty() {
        return Ok(None);
    }
    Ok(Some(UsageBucket {
        provider: Provider::Anthropic,
        starting_at: start,
        ending_at: end,
        model: dimension(v.get("model"), "model")?,
        api_key_id: dimension(v.get("api_key_id"), "api_key_id")?,
        workspace_id: dimension(v.get("workspace_id"), "workspace_id")?,
        service_tier: dimension(v.get("service_tier"), "service_tier")?,
        quantities,
        requests: None,
    }))
}

#[derive(Debug, Deserialize)]
struct CostResult<'a> {
    currency: String,
    #[serde(borrow)]
    amount: &'a RawValue,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    cost_type: Option<String>,
}

fn cost_item(raw: &RawValue, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<CostItem, ImportError> {
    let c: CostResult<'_> =
        serde_json::from_str(raw.get()).map_err(|e| ImportError::InvalidResponse(format!("cost result: {e}")))?;
    // The amount is a decimal string in the currency's lowest unit (cents for USD).
    if !raw_is_string(c.amount) {
        return Err(ImportError::InvalidResponse(format!("amount must be a decimal string, got {}", c.amount.get())));
    }
    let cents = decimal_from_raw(c.amount, "amount")?;
    if cents.is_sign_negative() {
        return Err(ImportError::InvalidResponse(format!("amount {cents} is negative")));
    }
    let description = c
        .description
        .or_else(|| match (c.cost_type, c.token_type) {
            (Some(ct), Some(tt)) => Some(format!("{ct}:{tt}")),
            (Some(ct), None) => Some(ct),
            (None, tt) => tt,
        });
    Ok(CostItem {
        provider: Provider::Anthropic,
        starting_at: start,
        ending_at: end,
        model: c.model,
        description,
        workspace_id: c.workspace_id,
        amount_usd: cents / Decimal::ONE_HUNDRED,
        currency: c.currency.to_uppercase(),
    })
}

fn raw_is_string(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('"')
}

/// Both reports over `[from, to)`.
pub(crate) async fn fetch(client: &Client, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, ImportError> {
    let mut report = Report::default();
    let range = format!("starting_at={}&ending_at={}", stamp(from), stamp(to));
    let usage_q = format!(
        "{range}&bucket_width=1h&limit={USAGE_PAGE_LIMIT}&group_by[]=model&group_by[]=api_key_id&group_by[]=workspace_id&group_by[]=service_tier"
    );
    let mut usage = Vec::new();
    report.pages += pages(client, "/v1/organizations/usage_report/messages", &usage_q, |s, e, results| {
        for r in results {
            if let Some(b) = usage_item(r, s, e)? {
                usage.push(b);
            }
        }
        Ok(())
    })
    .await?;
    let cost_q = format!("{range}&bucket_width=1d&limit={COST_PAGE_LIMIT}&group_by[]=workspace_id&group_by[]=description");
    let mut costs = Vec::new();
    report.pages += pages(client, "/v1/organizations/cost_report", &cost_q, |s, e, results| {
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
