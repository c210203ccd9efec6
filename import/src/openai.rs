//! OpenAI's organization API (reference §2): `usage/completions` (hourly, grouped by model,
//! project and API key) and `costs` (daily, by line item and project; amounts are numbers per
//! the spec and strings in live answers).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tally_domain::UsageKind;
use uuid::Uuid;

use crate::error::ImportError;
use crate::http::Client;
use crate::model::{non_zero, CostItem, Provider, Report, UsageBucket};
use crate::page::{push_costs, push_usage, read_all, Bucket};
use crate::wire::{invalid, Obj};

/// The completions usage endpoint.
pub const USAGE_PATH: &str = "/v1/organization/usage/completions";
/// The costs endpoint.
pub const COST_PATH: &str = "/v1/organization/costs";
/// Hourly buckets per usage page (the documented maximum for `1h`).
pub const USAGE_PAGE_LIMIT: u32 = 168;
/// Daily buckets per cost page (the documented maximum).
pub const COST_PAGE_LIMIT: u32 = 180;
/// The usage grouping: model, project (kept as `workspace_id`) and API key.
pub const USAGE_GROUP_BY: [&str; 3] = ["model", "project_id", "api_key_id"];
/// The cost grouping.
pub const COST_GROUP_BY: [&str; 2] = ["line_item", "project_id"];
/// `object` of a page.
const PAGE_OBJECT: &str = "page";
/// `object` of a bucket.
const BUCKET_OBJECT: &str = "bucket";
/// `object` of a completions usage result.
const USAGE_OBJECT: &str = "organization.usage.completions.result";
/// `object` of a costs result.
const COST_OBJECT: &str = "organization.costs.result";

/// Arrays are sent as repeated keys, as the official cookbook does (reference §2.1).
fn group_by(dims: &[&str]) -> String {
    dims.iter().map(|d| format!("group_by={d}")).collect::<Vec<_>>().join("&")
}

/// A page's buckets: `object` tags checked, Unix-second times, end after start.
fn buckets<'a>(page: &Obj<'a>) -> Result<Vec<Bucket<'a>>, ImportError> {
    page.tag("object", PAGE_OBJECT)?;
    let mut out = Vec::new();
    for b in page.objects("data")? {
        b.tag("object", BUCKET_OBJECT)?;
        let start = b.unix_seconds("start_time")?;
        let end = b.unix_seconds("end_time")?;
        if end <= start {
            return Err(invalid(b.endpoint(), b.path_of("end_time"), format!("{end} is not after start_time {start}")));
        }
        out.push((start, end, b.objects("results")?));
    }
    Ok(out)
}

/// One completions result; `None` when it reports neither tokens nor requests.
fn usage_item(r: &Obj<'_>, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Option<UsageBucket>, ImportError> {
    r.tag("object", USAGE_OBJECT)?;
    let input = r.count("input_tokens")?;
    let output = r.count("output_tokens")?;
    let requests = r.count("num_model_requests")?;
    let cached = r.optional_count("input_cached_tokens")?.unwrap_or(0);
    let cache_write = r.optional_count("input_cache_write_tokens")?.unwrap_or(0);
    // `input_tokens` includes cached and cache-write tokens (2026 spec, reference §3): the
    // uncached part is given, or derived. Per-modality fields are sub-breakdowns, never added.
    let uncached = match r.optional_count("input_uncached_tokens")? {
        Some(n) => n,
        None => input.checked_sub(cached).and_then(|n| n.checked_sub(cache_write)).ok_or_else(|| {
            invalid(
                r.endpoint(),
                r.path_of("input_tokens"),
                format!("{input} is less than input_cached_tokens {cached} + input_cache_write_tokens {cache_write}"),
            )
        })?,
    };
    let quantities = non_zero(vec![
        (UsageKind::InputTokens, uncached),
        (UsageKind::OutputTokens, output),
        // OpenAI reports no cache TTL; its cache writes count as 5-minute writes (reference §3:
        // this mapping is uncertain).
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
        model: r.dimension("model")?,
        api_key_id: r.dimension("api_key_id")?,
        workspace_id: r.dimension("project_id")?,
        service_tier: r.dimension("service_tier")?,
        quantities,
        requests: Some(requests),
    }))
}

/// One costs result: `amount.value` read exactly from its JSON text, number or string.
fn cost_item(r: &Obj<'_>, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<CostItem, ImportError> {
    r.tag("object", COST_OBJECT)?;
    let amount = r.object("amount")?;
    let currency = amount.string("currency")?.to_ascii_uppercase();
    if currency != "USD" {
        return Err(invalid(r.endpoint(), amount.path_of("currency"), format!("{currency:?} is not usd")));
    }
    Ok(CostItem {
        provider: Provider::OpenAi,
        starting_at: start,
        ending_at: end,
        model: None,
        description: r.dimension("line_item")?,
        workspace_id: r.dimension("project_id")?,
        amount_usd: amount.amount("value", true)?,
        currency,
    })
}

/// The usage buckets of one page of the usage report, appended to `usage`; a group that
/// `seen` already holds (the same bucket and group twice in one report) is an error.
pub(crate) fn usage_page(page: &Obj<'_>, seen: &mut HashSet<Uuid>, usage: &mut Vec<UsageBucket>) -> Result<(), ImportError> {
    push_usage(buckets(page)?, seen, usage, usage_item)
}

/// The cost items of one page of the cost report, appended to `costs`.
pub(crate) fn cost_page(page: &Obj<'_>, costs: &mut Vec<CostItem>) -> Result<(), ImportError> {
    push_costs(buckets(page)?, costs, cost_item)
}

/// Both reports over `[from, to)`.
pub(crate) async fn fetch(client: &Client, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, ImportError> {
    let range = format!("start_time={}&end_time={}", from.timestamp(), to.timestamp());
    let mut usage = Vec::new();
    let mut seen = HashSet::new();
    let usage_query = format!("{range}&bucket_width=1h&limit={USAGE_PAGE_LIMIT}&{}", group_by(&USAGE_GROUP_BY));
    let mut pages = read_all(client, USAGE_PATH, &usage_query, |page| usage_page(page, &mut seen, &mut usage)).await?;
    let mut costs = Vec::new();
    let cost_query = format!("{range}&bucket_width=1d&limit={COST_PAGE_LIMIT}&{}", group_by(&COST_GROUP_BY));
    pages += read_all(client, COST_PATH, &cost_query, |page| cost_page(page, &mut costs)).await?;
    Ok(Report { usage, costs, pages, requests: client.requests() })
}
