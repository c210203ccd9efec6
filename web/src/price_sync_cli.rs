//! `tally prices sync`: send LiteLLM's price list (a file or a URL) to a running node and print the diff.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::routes::prices::SyncResponse;

/// Default node the CLI talks to.
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8080";

/// How long one HTTP exchange (download or sync) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the price list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSource {
    /// A local copy of `model_prices_and_context_window.json`.
    File(PathBuf),
    /// A URL to download it from (e.g. LiteLLM's raw file on GitHub).
    Url(String),
}

/// Read (or download) the list, POST it to `node_url`'s `/api/prices/sync`, and return the
/// diff as text. A node error is an error carrying its code and message.
pub async fn sync_cli(source: PriceSource, node_url: &str, dry_run: bool) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().context("HTTP client")?;
    let body: Vec<u8> = match &source {
        PriceSource::File(path) => {
            tokio::fs::read(path).await.with_context(|| format!("cannot read {}", path.display()))?
        }
        PriceSource::Url(url) => {
            let resp = client.get(url).send().await.with_context(|| format!("cannot download {url}"))?;
            if !resp.status().is_success() {
                bail!("downloading {url} answered {}", resp.status());
            }
            resp.bytes().await.with_context(|| format!("cannot download {url}"))?.to_vec()
        }
    };
    let endpoint = format!("{}/api/prices/sync?dry_run={dry_run}", node_url.trim_end_matches('/'));
    let resp = client
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {node_url}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the node's answer")?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|v| format!("{}: {}", v["code"].as_str().unwrap_or("error"), v["message"].as_str().unwrap_or("")))
            .unwrap_or(text);
        bail!("price sync failed ({status}): {detail}");
    }
    let report: SyncResponse = serde_json::from_str(&text).context("the node's answer is not a sync report")?;
    Ok(render(&report))
}

/// The report as text: a summary line, then one line per change.
pub fn render(report: &SyncResponse) -> String {
    let mut out = format!(
        "{}: {} change(s), {} unchanged, {} verified, {} unknown model(s) in the list\n",
        if report.dry_run { "Dry run (nothing changed)" } else { "Applied" },
        report.changes.len(),
        report.unchanged,
        report.verified,
        report.unknown_models
    );
    for c in &report.changes {
        let old = c.old.map(|o| o.to_string()).unwrap_or_else(|| "(none)".into());
        let id = c.pricing_id.map(|id| format!("  [{id}]")).unwrap_or_default();
        out.push_str(&format!("  {} {}: {} -> {}{}\n", c.model, c.kind, old, c.new, id));
    }
    out
}
