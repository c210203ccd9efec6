//! The manifest of an archived month: its files (rows, bytes, SHA-256), row counts per table,
//! and exact decimal totals overall and per user, so a file can be checked without the database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_store::archive::MonthRows;

use crate::error::ArchiveError;

/// Version of the file layout and manifest; bumped when either changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the manifest file in a month's directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One file of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The table its rows came from.
    pub table: String,
    /// File name within the month's directory.
    pub file: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// What one user's archived usage adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTotals {
    /// Usage events.
    pub events: u64,
    /// Sum of the events' `cost_total` (exact).
    pub cost_total: Decimal,
    /// Sum of the amounts of the events' lines (exact; equals `cost_total` for priced usage).
    pub line_amount: Decimal,
    /// Tokens over all token lines.
    pub tokens: i64,
}

/// Exact totals of a month's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Over every user.
    pub overall: UserTotals,
    /// Per user id.
    pub per_user: BTreeMap<String, UserTotals>,
}

impl Totals {
    /// The totals of `rows`.
    pub fn of(rows: &MonthRows) -> Totals {
        let mut per_user: BTreeMap<String, UserTotals> = BTreeMap::new();
        let mut owner: BTreeMap<i64, &str> = BTreeMap::new();
        for e in &rows.events {
            owner.insert(e.event_seq, e.user_id.as_str());
            let t = per_user.entry(e.user_id.clone()).or_default();
            t.events += 1;
            t.cost_total += e.cost_total;
        }
        // A line whose event is not in the rows would be a broken file: it counts under "".
        for l in &rows.token_lines {
            let t = per_user.entry(owner.get(&l.event_seq).copied().unwrap_or_default().to_string()).or_default();
            t.line_amount += l.amount;
            t.tokens += l.token_count;
        }
        for l in &rows.resource_lines {
            let t = per_user.entry(owner.get(&l.event_seq).copied().unwrap_or_default().to_string()).or_default();
            t.line_amount += l.amount;
        }
        let mut overall = UserTotals::default();
        for t in per_user.values() {
            overall.events += t.events;
            overall.cost_total += t.cost_total;
            overall.line_amount += t.line_amount;
            overall.tokens += t.tokens;
        }
        Totals { overall, per_user }
    }
}

/// The manifest of one archived month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// When the files were written.
    pub created_at: DateTime<Utc>,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Exact totals.
    pub totals: Totals,
    /// The files.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parse a manifest, refusing other schema versions.
    pub fn parse(text: &str) -> Result<Manifest, ArchiveError> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| ArchiveError::Corrupt(format!("manifest does not parse: {e}")))?;
        if m.schema_version != SCHEMA_VERSION {
            return Err(ArchiveError::Corrupt(format!(
                "manifest schema version {} (this build reads {SCHEMA_VERSION})",
                m.schema_version
            )));
        }
        Ok(m)
    }

    /// As JSON.
    pub fn to_json(&self) -> Result<String, ArchiveError> {
        serde_json::to_string_pretty(self).map_err(|e| ArchiveError::Corrupt(format!("manifest does not serialize: {e}")))
    }

    /// Check rows read back from the files against this manifest: counts and totals.
    pub fn check(&self, rows: &MonthRows) -> Result<(), ArchiveError> {
        if rows.counts() != self.rows {
            return Err(ArchiveError::Corrupt(format!(
                "{}: rows {:?} do not match the manifest's {:?}",
                self.month,
                rows.counts(),
                self.rows
            )));
        }
        let totals = Totals::of(rows);
        if totals != self.totals {
            return Err(ArchiveError::Corrupt(format!(
                "{}: totals {} do not match the manifest's {}",
                self.month, totals.overall.cost_total, self.totals.overall.cost_total
            )));
        }
        Ok(())
    }
}
