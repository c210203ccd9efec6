//! Anthropic's Admin API reports (reference §1): `usage_report/messages` (hourly, grouped by
//! model, API key, workspace and service tier) and `cost_report` (daily, by workspace and
//! description; amounts are decimal strings of cents).

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use tally_domain::UsageKind;
use uuid::Uuid;

use crate::error::ImportError;
use crate::http::Client;
use crate::model::{non_zero, CostItem, Provider, Report, UsageBucket};
use crate::page::{push_costs, push_usage, read_all, Bucket};
use crate::wire::{invalid, Obj};

/// The usage report endpoint.
pub const USAGE_PATH: &str = "/v1/organizations/usage_report/messages";
/// The cost report endpoint.
pub const COST_PATH: &str = "/v1/organizations/cost_report";
/// Hourly buckets per usage page (the documented maximum for `1h`).
pub const USAGE_PAGE_LIMIT: u32 = 168;
/// Daily buckets per cost page (the documented maximum).
pub const COST_PAGE_LIMIT: u32 = 31;
/// The usage report's grouping: every dimension a [`UsageBucket`] keeps.
pub const USAGE_GROUP_BY: [&str; 4] = ["model", "api_key_id", "workspace_id", "service_tier"];
/// The cost report's grouping.
pub const COST_GROUP_BY: [&str; 2] = ["workspace_id", "description"];
/// The web search resource kind (`server_tool_use.web_search_requests`).
pub const WEB_SEARCH_REQUESTS: &str = "web_search_requests";

/// An RFC 3339 UTC timestamp as the Admin API documents it (`2025-08-01T00:00:00Z`).
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Arrays are sent with the `[]` suffix, repeated (reference §1.1).
fn group_by(dims: &[&str]) -> String {
    dims.iter().map(|d| format!("group_by[]={d}")).collect::<Vec<_>>().join("&")
}

/// A bucket's `starting_at`, `ending_at` (RFC 3339, end after start) and result objects.
fn bucket<'a>(b: &Obj<'a>) -> Result<Bucket<'a>, ImportError> {
    let start = b.rfc3339("starting_at")?;
    let end = b.rfc3339("ending_at")?;
    if end <= start {
        return Err(invalid(b.endpoint(), b.path_of("ending_at"), format!("{end} is not after starting_at {start}")));
    }
    Ok((start, end, b.objects("results")?))
}

/// A page's buckets.
fn buckets<'a>(page: &Obj<'a>) -> Result<Vec<Bucket<'a>>, ImportError> {
    page.objects("data")?.iter().map(bucket).collect()
}

/// One `MessagesUsageReportItem`; `None` when it reports no usage at all.
fn usage_item(r: &Obj<'_>, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Option<UsageBucket>, ImportError> {
    let cache = r.object("cache_creation")?;
    // Documented as required, but a report without server tools may leave it out: zero searches.
    let web_searches = match r.optional_object("server_tool_use")? {
        Some(tools) => tools.optional_count(WEB_SEARCH_REQUESTS)?.unwrap_or(0),
        None => 0,
    };
    // `uncached_input_tokens` is already separate from cache reads and writes (reference §3).
    let quantities = non_zero(vec![
        (UsageKind::InputTokens, r.count("uncached_input_tokens")?),
        (UsageKind::OutputTokens, r.count("output_tokens")?),
        (UsageKind::CacheWrite5mTokens, cache.count("ephemeral_5m_input_tokens")?),
        (UsageKind::CacheWrite1hTokens, cache.count("ephemeral_1h_input_tokens")?),
        (UsageKind::CacheReadTokens, r.count("cache_read_input_tokens")?),
        (UsageKind::Resource(WEB_SEARCH_REQUESTS.into()), web_searches),
    ]);
    let bucket = UsageBucket {
        provider: Provider::Anthropic,
        starting_at: start,
        ending_at: end,
        model: r.dimension("model")?,
        api_key_id: r.dimension("api_key_id")?,
        workspace_id: r.dimension("workspace_id")?,
        service_tier: r.dimension("service_tier")?,
        quantities,
        requests: None,
    };
    Ok((!bucket.quantities.is_empty()).then_some(bucket))
}

/// One `CostReportItem`: cents (a decimal string) to dollars, exactly.
fn cost_item(r: &Obj<'_>, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<CostItem, ImportError> {
    let currency = r.string("currency")?.to_ascii_uppercase();
    if currency != "USD" {
        return Err(invalid(r.endpoint(), r.path_of("currency"), format!("{currency:?} is not USD")));
    }
    let cents = r.amount("amount", false)?;
    let description = match r.dimension("description")? {
        Some(d) => Some(d),
        None => match (r.dimension("cost_type")?, r.dimension("token_type")?) {
            (Some(ct), Some(tt)) => Some(format!("{ct}:{tt}")),
            (ct, tt) => ct.or(tt),
        },
    };
    Ok(CostItem {
        provider: Provider::Anthropic,
        starting_at: start,
        ending_at: end,
        model: r.dimension("model")?,
        description,
        workspace_id: r.dimension("workspace_id")?,
        amount_usd: cents / Decimal::ONE_HUNDRED,
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
    let range = format!("starting_at={}&ending_at={}", stamp(from), stamp(to));
    let mut usage = Vec::new();
    let mut seen = HashSet::new();
    let usage_query = format!("{range}&bucket_width=1h&limit={USAGE_PAGE_LIMIT}&{}", group_by(&USAGE_GROUP_BY));
    let mut pages = read_all(client, USAGE_PATH, &usage_query, |page| usage_page(page, &mut seen, &mut usage)).await?;
    let mut costs = Vec::new();
    let cost_query = format!("{range}&bucket_width=1d&limit={COST_PAGE_LIMIT}&{}", group_by(&COST_GROUP_BY));
    pages += read_all(client, COST_PATH, &cost_query, |page| cost_page(page, &mut costs)).await?;
    Ok(Report { usage, costs, pages, requests: client.requests() })
}
