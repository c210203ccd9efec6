//! `GET /api/archives`: which months of usage events were moved to Parquet files (issue 16),
//! with their state, row counts, exact totals, files, and when they were archived and verified.
//!
//! Invoices, their totals and the daily rollups stay hot, so metrics, analytics and invoices of
//! archived months answer exactly; only listings of individual events need the files back
//! (`tally archive restore YYYY-MM`). See docs/archive.md.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tally_store::archive::{ArchiveMonth, ArchiveStatus};

use super::blocking;
use crate::error::ApiError;
use crate::state::AppState;

/// One month as listed.
#[derive(Debug, Serialize)]
struct ArchiveView {
    month: String,
    status: ArchiveStatus,
    /// Whether the month's events are out of the hot tables (`status == archived`).
    archived: bool,
    location: String,
    rows: BTreeMap<String, u64>,
    /// Exact cost of the month's events (string decimal), when the manifest is written.
    cost_total: Option<String>,
    events: Option<u64>,
    users: Option<usize>,
    files: Vec<FileView>,
    updated_at: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
}

/// One file of a month.
#[derive(Debug, Serialize)]
struct FileView {
    file: String,
    table: String,
    rows: u64,
    bytes: u64,
    sha256: String,
}

fn view(m: ArchiveMonth) -> ArchiveView {
    // The manifest was written and checked by tally-archive; read only what is listed.
    let manifest: Option<Value> = m.manifest.as_deref().and_then(|t| serde_json::from_str(t).ok());
    let rows = manifest
        .as_ref()
        .and_then(|v| v.get("rows"))
        .and_then(|r| serde_json::from_value::<BTreeMap<String, u64>>(r.clone()).ok())
        .unwrap_or_default();
    let overall = manifest.as_ref().and_then(|v| v.pointer("/totals/overall"));
    let files = manifest
        .as_ref()
        .and_then(|v| v.get("files"))
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .map(|f| FileView {
                    file: f.get("file").and_then(Value::as_str).unwrap_or_default().to_string(),
                    table: f.get("table").and_then(Value::as_str).unwrap_or_default().to_string(),
                    rows: f.get("rows").and_then(Value::as_u64).unwrap_or_default(),
                    bytes: f.get("bytes").and_then(Value::as_u64).unwrap_or_default(),
                    sha256: f.get("sha256").and_then(Value::as_str).unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    ArchiveView {
        archived: m.status == ArchiveStatus::Archived,
        cost_total: overall.and_then(|o| o.get("cost_total")).and_then(Value::as_str).map(str::to_string),
        events: overall.and_then(|o| o.get("events")).and_then(Value::as_u64),
        users: manifest.as_ref().and_then(|v| v.pointer("/totals/per_user")).and_then(Value::as_object).map(|o| o.len()),
        month: m.month,
        status: m.status,
        location: m.location,
        rows,
        files,
        updated_at: m.updated_at,
        archived_at: m.archived_at,
        verified_at: m.verified_at,
    }
}

/// `GET /api/archives`: every month in the archive, oldest first.
#[utoipa::path(tag = "archives", responses((status = 200, description = "Months and their archive state: status, row counts, exact totals, files, when archived and verified", body = Object)))]
#[get("/api/archives")]
pub async fn list_archives(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let months = blocking(&state.store, |s| s.archive_months()).await?;
    let months: Vec<ArchiveView> = months.into_iter().map(view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "months": months })))
}
