//! `tally import backfill`: ask a running node to import the last N days of a provider's usage
//! and cost for each of its connections (the node's own importer does the work, on its
//! billing path, one run at a time per connection).

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// How long one import run may take through the node (several pages, retries, rate limits).
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(900);

/// Instants in the query string: RFC 3339 in UTC with `Z` (nothing to percent-encode).
const INSTANT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Longest backfill, in days.
pub const MAX_BACKFILL_DAYS: u32 = 366;

fn node_error(status: reqwest::StatusCode, text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .map(|v| format!("{}: {}", v["code"].as_str().unwrap_or("error"), v["message"].as_str().unwrap_or("")))
        .unwrap_or_else(|| format!("{status}: {text}"))
}

/// Run a backfill of `days` days for every connection of `provider` on the node at `node_url`;
/// returns one line per run.
pub async fn backfill_via_node(node_url: &str, provider: &str, days: u32) -> anyhow::Result<String> {
    if !matches!(provider, "anthropic" | "openai") {
        bail!("--provider must be anthropic or openai");
    }
    if days == 0 || days > MAX_BACKFILL_DAYS {
        bail!("--days must be 1-{MAX_BACKFILL_DAYS}");
    }
    let base = node_url.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(IMPORT_TIMEOUT).build().context("HTTP client")?;
    let resp = client
        .get(format!("{base}/api/providers"))
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {node_url}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the node's answer")?;
    if !status.is_success() {
        bail!("listing connections failed: {}", node_error(status, &text));
    }
    let list: Value = serde_json::from_str(&text).context("the node's connection list is not JSON")?;
    let connections: Vec<&Value> = list["providers"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["provider"] == provider).collect())
        .unwrap_or_default();
    if connections.is_empty() {
        bail!("no {provider} connection on the node (add one with POST /api/providers)");
    }
    let to = chrono::Utc::now();
    let from = to - chrono::TimeDelta::days(i64::from(days));
    let mut out = Vec::new();
    for c in connections {
        let id = c["connection_id"].as_str().unwrap_or_default();
        let name = c["name"].as_str().unwrap_or_default();
        let resp = client
            .post(format!(
                "{base}/api/providers/{id}/import?from={}&to={}&trigger=backfill",
                from.format(INSTANT),
                to.format(INSTANT)
            ))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {node_url}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the node's answer")?;
        if !status.is_success() {
            bail!("backfill of {name} failed: {}", node_error(status, &text));
        }
        let run: Value = serde_json::from_str(&text).context("the node's answer is not a run record")?;
        out.push(format!(
            "{name}: run {} {} .. {}: {} new, {} revised, {} unchanged, {} skipped, {} cost items",
            run["run_id"].as_str().unwrap_or("?"),
            run["range_from"].as_str().unwrap_or("?"),
            run["range_to"].as_str().unwrap_or("?"),
            run["events_new"],
            run["events_revised"],
            run["events_unchanged"],
            run["skipped"],
            run["costs"],
        ));
    }
    Ok(out.join("\n"))
}
