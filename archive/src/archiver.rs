//! The archive steps: run (archive closed months), restore, verify, list; each resumable.
//!
//! The state machine, per month (a row in `archive_months`):
//!
//! ```text
//! (none|restored) -> writing -> written -> archived -> restored
//!                    files      files synced,   rows moved out of the hot tables in ONE
//!                    being      read back,      transaction with this mark (they are
//!                    written    totals match    re-checked against the file inside it)
//! ```
//!
//! A crash in `writing` rewrites the files; in `written` re-reads and re-checks them, then
//! moves the rows; the move and the `archived` mark commit together, so rows are either all
//! hot or all archived (indexed in `archived_events`). Restore is one transaction too.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tally_store::archive::{ArchiveMonth, ArchiveStatus, MonthRange, MonthRows};
use tally_store::{Store, StoreError};

use crate::error::ArchiveError;
use crate::files;
use crate::manifest::{Manifest, Totals, MANIFEST_FILE, SCHEMA_VERSION};
use crate::month;

/// Env var naming a crash-test failpoint: the process aborts itself there (like a SIGKILL).
pub const FAILPOINT_ENV: &str = "TALLY_ARCHIVE_FAILPOINT";

/// The failpoints, in the order a month passes them.
pub const FAILPOINTS: [&str; 5] = ["after_write", "after_readback", "mid_delete", "after_delete", "mid_restore"];

/// What happened to one month in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthOutcome {
    /// `YYYY-MM`.
    pub month: String,
    /// `archived` (this run), `already_archived`, `restored`, `already_restored`, or
    /// `not_invoiced` (left hot: `rows` has its `uninvoiced_lines`).
    pub action: &'static str,
    /// Rows per table moved (empty when nothing moved).
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Exact cost of the month's events.
    pub cost_total: rust_decimal::Decimal,
}

/// One month's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// `YYYY-MM`.
    pub month: String,
    /// State.
    pub status: ArchiveStatus,
    /// What is wrong (empty: verified).
    pub problems: Vec<String>,
    /// Hot events that arrived for the month after it was archived (kept hot, counted in
    /// rollups; archive them again with a later run after restoring, or leave them).
    pub late_hot_events: i64,
}

/// Archives months of one store into one directory.
#[derive(Debug, Clone)]
pub struct Archiver {
    store: Store,
    root: PathBuf,
    failpoint: Option<String>,
}

impl Archiver {
    /// An archiver writing under `root` (one directory per month); reads [`FAILPOINT_ENV`].
    pub fn new(store: Store, root: impl Into<PathBuf>) -> Archiver {
        let failpoint = std::env::var(FAILPOINT_ENV).ok().filter(|f| !f.is_empty());
        Archiver { store, root: root.into(), failpoint }
    }

    /// The archive directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hit(&self, point: &str) {
        if self.failpoint.as_deref() == Some(point) {
            eprintln!("{FAILPOINT_ENV}={point}: aborting");
            // Like a SIGKILL: no destructors, no rollback handlers, no flushes.
            std::process::abort();
        }
    }

    fn month_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Archive every closed month with hot events that ended on or before `before` (and before
    /// `today`'s month), oldest first, and finish any month a crashed run left half-way.
    pub fn run(&self, before: NaiveDate, today: NaiveDate) -> Result<Vec<MonthOutcome>, ArchiveError> {
        let cutoff = month::cutoff(before, today);
        let mut months: Vec<MonthRange> = Vec::new();
        if let Some(oldest) = self.store.oldest_hot_event_before(cutoff)? {
            let mut first = month::first_of_month(oldest.date_naive());
            while month::range_of(first).to <= cutoff {
                months.push(month::range_of(first));
                first = month::next_month(first);
            }
        }
        // Months a crashed run left in writing/written are finished first, whatever the cutoff.
        for state in self.store.archive_months()? {
            if matches!(state.status, ArchiveStatus::Writing | ArchiveStatus::Written)
                && !months.iter().any(|m| m.key == state.month)
            {
                months.push(month::parse_month(&state.month)?);
            }
        }
        months.sort_by(|a, b| a.key.cmp(&b.key));
        let mut outcomes = Vec::new();
        for range in months {
            let state = self.store.archive_month(&range.key)?;
            let resuming = matches!(state.as_ref().map(|s| s.status), Some(ArchiveStatus::Writing | ArchiveStatus::Written));
            if !resuming && self.store.hot_event_count(range.from, range.to)? == 0 {
                continue;
            }
            // Invoicing reads hot lines: a month with usage not invoiced yet stays hot (a
            // later run archives it once it is invoiced; a half-way month resumes then).
            let uninvoiced = self.store.uninvoiced_line_count(range.from, range.to)?;
            if uninvoiced > 0 {
                tracing::info!(month = %range.key, uninvoiced, "Month not archived: it has usage not invoiced yet.");
                outcomes.push(MonthOutcome {
                    month: range.key.clone(),
                    action: "not_invoiced",
                    rows: std::collections::BTreeMap::from([("uninvoiced_lines".to_string(), u64::try_from(uninvoiced).unwrap_or(0))]),
                    cost_total: rust_decimal::Decimal::ZERO,
                });
                continue;
            }
            outcomes.push(self.archive_month(&range)?);
        }
        Ok(outcomes)
    }

    /// Archive the months older than the newest `keep_months` (the current month counts as one).
    pub fn run_policy(&self, keep_months: u32, today: NaiveDate) -> Result<Vec<MonthOutcome>, ArchiveError> {
        if keep_months == 0 {
            return Err(ArchiveError::Invalid("keep months must be at least 1 (the current month)".into()));
        }
        self.run(month::months_back(today, keep_months - 1), today)
    }

    /// Archive one month: resume from its state.
    pub fn archive_month(&self, range: &MonthRange) -> Result<MonthOutcome, ArchiveError> {
        let state = self.store.archive_month(&range.key)?;
        if let Some(s) = state.as_ref().filter(|s| s.status == ArchiveStatus::Archived) {
            let manifest = Manifest::parse(s.manifest.as_deref().unwrap_or_default())?;
            return Ok(MonthOutcome {
                month: range.key.clone(),
                action: "already_archived",
                rows: Default::default(),
                cost_total: manifest.totals.overall.cost_total,
            });
        }
        // Written: the files were checked; re-check them (they may have been touched since).
        let mut written = match state {
            Some(s) if s.status == ArchiveStatus::Written => match self.read_checked(&s) {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!(month = %range.key, error = %e, "Archive files do not check out; rewriting them.");
                    None
                }
            },
            _ => None,
        };
        // Two attempts: if rows changed between writing and moving (a late event), rewrite once.
        for attempt in 0..2 {
            let (manifest, file_rows) = match written.take() {
                Some(found) => found,
                None => self.write_files(range)?,
            };
            self.hit("after_readback");
            let expected = file_rows.canonical();
            let check = |hot: &MonthRows| {
                if hot.canonical() == expected {
                    Ok(())
                } else {
                    Err(StoreError::Conflict(format!("{}: hot rows changed since the files were written", range.key)))
                }
            };
            let before_commit = || self.hit("mid_delete");
            match self.store.commit_archive(range, &check, &before_commit) {
                Ok(moved) => {
                    self.hit("after_delete");
                    tracing::info!(month = %range.key, events = manifest.totals.overall.events, cost_usd = %manifest.totals.overall.cost_total, "Month archived.");
                    return Ok(MonthOutcome {
                        month: range.key.clone(),
                        action: "archived",
                        rows: moved,
                        cost_total: manifest.totals.overall.cost_total,
                    });
                }
                Err(StoreError::Conflict(m)) if attempt == 0 && m.contains("hot rows changed") => {
                    tracing::info!(month = %range.key, "Rows changed since the files were written; rewriting them.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ArchiveError::Conflict(format!("{}: rows keep changing; try again later", range.key)))
    }

    /// Write the month's files and manifest, read them back and check them, mark `Written`.
    fn write_files(&self, range: &MonthRange) -> Result<(Manifest, MonthRows), ArchiveError> {
        let dir = self.month_dir(&range.key);
        let location = dir.display().to_string();
        self.store.set_archive_progress(&range.key, ArchiveStatus::Writing, &location, None)?;
        let rows = self.store.archive_month_rows(range.from, range.to)?;
        let entries = files::write_month(&dir, &rows)?;
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            month: range.key.clone(),
            created_at: Utc::now(),
            rows: rows.counts(),
            totals: Totals::of(&rows),
            files: entries,
        };
        let json = manifest.to_json()?;
        files::write_atomic(&dir, MANIFEST_FILE, json.as_bytes())?;
        self.hit("after_write");
        // Read back what is on disk: checksums, row counts, totals, and every row.
        let back = files::read_month(&dir, &manifest.files)?;
        manifest.check(&back)?;
        if back.canonical() != rows.canonical() {
            return Err(ArchiveError::Corrupt(format!("{}: rows read back differ from the rows written", range.key)));
        }
        self.store.set_archive_progress(&range.key, ArchiveStatus::Written, &location, Some(&json))?;
        Ok((manifest, back))
    }

    /// Read a month's files as its state row describes them, and check them against the manifest.
    fn read_checked(&self, state: &ArchiveMonth) -> Result<(Manifest, MonthRows), ArchiveError> {
        let text = state
            .manifest
            .as_deref()
            .ok_or_else(|| ArchiveError::Corrupt(format!("{}: no manifest recorded", state.month)))?;
        let manifest = Manifest::parse(text)?;
        let on_disk = self.month_dir(&state.month).join(MANIFEST_FILE);
        let disk_text = std::fs::read_to_string(&on_disk).map_err(|e| ArchiveError::io(&on_disk, e))?;
        // The write time may differ between two archivers of the same rows; nothing else may.
        let mut on_disk_manifest = Manifest::parse(&disk_text)?;
        on_disk_manifest.created_at = manifest.created_at;
        if on_disk_manifest != manifest {
            return Err(ArchiveError::Corrupt(format!("{}: manifest.json differs from the database's copy", state.month)));
        }
        let rows = files::read_month(&self.month_dir(&state.month), &manifest.files)?;
        manifest.check(&rows)?;
        Ok((manifest, rows))
    }

    /// Put an archived month back into the hot tables (idempotent: a restored month is left as is).
    pub fn restore(&self, month_key: &str) -> Result<MonthOutcome, ArchiveError> {
        let range = month::parse_month(month_key)?;
        let state = self
            .store
            .archive_month(&range.key)?
            .ok_or_else(|| ArchiveError::NotFound(format!("month {} is not in the archive", range.key)))?;
        match state.status {
            ArchiveStatus::Restored => {
                return Ok(MonthOutcome {
                    month: range.key,
                    action: "already_restored",
                    rows: Default::default(),
                    cost_total: Manifest::parse(state.manifest.as_deref().unwrap_or_default())
                        .map(|m| m.totals.overall.cost_total)
                        .unwrap_or_default(),
                })
            }
            ArchiveStatus::Writing | ArchiveStatus::Written => {
                return Err(ArchiveError::Conflict(format!(
                    "month {} is {} (its rows are still hot); run `tally archive run` to finish it first",
                    range.key,
                    state.status.as_str()
                )))
            }
            ArchiveStatus::Archived => {}
        }
        let (manifest, rows) = self.read_checked(&state)?;
        let before_commit = || self.hit("mid_restore");
        let inserted = self.store.commit_restore(&range.key, &rows, &before_commit)?;
        tracing::info!(month = %range.key, cost_usd = %manifest.totals.overall.cost_total, "Month restored.");
        Ok(MonthOutcome { month: range.key, action: "restored", rows: inserted, cost_total: manifest.totals.overall.cost_total })
    }

    /// Check every archived month: files present with matching checksums, rows and totals;
    /// the hot index holds every archived event. Marks verified months.
    pub fn verify(&self, now: DateTime<Utc>) -> Result<Vec<VerifyReport>, ArchiveError> {
        let mut reports = Vec::new();
        for state in self.store.archive_months()? {
            if state.status != ArchiveStatus::Archived {
                continue;
            }
            let range = month::parse_month(&state.month)?;
            let mut problems = Vec::new();
            match self.read_checked(&state) {
                Ok((manifest, _)) => {
                    let indexed = self.store.archived_event_count(&state.month)?;
                    if u64::try_from(indexed).ok() != Some(manifest.totals.overall.events) {
                        problems.push(format!(
                            "{indexed} events in the hot index, the manifest has {}",
                            manifest.totals.overall.events
                        ));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
            let late_hot_events = self.store.hot_event_count(range.from, range.to)?;
            if problems.is_empty() {
                self.store.mark_archive_verified(&state.month, now)?;
            }
            reports.push(VerifyReport { month: state.month, status: state.status, problems, late_hot_events });
        }
        Ok(reports)
    }

    /// Every month in the archive.
    pub fn list(&self) -> Result<Vec<ArchiveMonth>, ArchiveError> {
        Ok(self.store.archive_months()?)
    }
}
