//! Operations records: the scheduler's leases and run history, price verification.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tally_domain::{PriceVersion, UsageKind};
use uuid::Uuid;

use crate::error::StoreError;
use crate::schema::scheduler_runs;
use crate::sql_types::{DbTime, DbUuid};
use crate::store::{run, Store};

/// A price version with when it was last confirmed correct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedPrice {
    /// The version.
    #[serde(flatten)]
    pub version: PriceVersion,
    /// Last confirmed (by hand or by a price sync); `None`: never.
    pub verified_at: Option<DateTime<Utc>>,
}

/// What started a scheduler run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The job's cron schedule.
    Schedule,
    /// An operator (`POST /api/scheduler/jobs/{id}/trigger`).
    Manual,
}

impl RunTrigger {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schedule" => Some(RunTrigger::Schedule),
            "manual" => Some(RunTrigger::Manual),
            _ => None,
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not finished.
    Running,
    /// Finished without error.
    Success,
    /// Finished with an error (or abandoned by a node that stopped).
    Failed,
    /// Not started: the job was already running.
    Skipped,
}

impl RunStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(RunStatus::Running),
            "success" => Some(RunStatus::Success),
            "failed" => Some(RunStatus::Failed),
            "skipped" => Some(RunStatus::Skipped),
            _ => None,
        }
    }
}

/// One scheduler run (a row of `scheduler_runs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (UUIDv7).
    pub run_id: Uuid,
    /// The job.
    pub job_id: String,
    /// The node that ran (or skipped) it.
    pub node: String,
    /// What started it.
    pub trigger: RunTrigger,
    /// When it started (stored to the microsecond).
    pub started_at: DateTime<Utc>,
    /// When it finished; `None` while running.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: RunStatus,
    /// The job's result or error text, or why it was skipped.
    pub message: Option<String>,
}

/// A `scheduler_runs` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = scheduler_runs, treat_none_as_default_value = false)]
pub(crate) struct RunRow {
    pub run_id: DbUuid,
    pub job_id: String,
    pub node: String,
    pub trigger: String,
    pub started_at: DbTime,
    pub finished_at: Option<DbTime>,
    pub status: String,
    pub message: Option<String>,
}

impl RunRow {
    pub(crate) fn from_record(r: &RunRecord) -> RunRow {
        RunRow {
            run_id: DbUuid(r.run_id),
            job_id: r.job_id.clone(),
            node: r.node.clone(),
            trigger: r.trigger.as_str().to_string(),
            started_at: DbTime::new(r.started_at),
            finished_at: r.finished_at.map(DbTime::new),
            status: r.status.as_str().to_string(),
            message: r.message.clone(),
        }
    }

    pub(crate) fn into_record(self) -> Result<RunRecord, StoreError> {
        let bad = |what: &str, v: &str| StoreError::Database(format!("run {} has unknown {what} {v:?}", self.run_id.0));
        Ok(RunRecord {
            trigger: RunTrigger::parse(&self.trigger).ok_or_else(|| bad("trigger", &self.trigger))?,
            status: RunStatus::parse(&self.status).ok_or_else(|| bad("status", &self.status))?,
            run_id: self.run_id.0,
            job_id: self.job_id,
            node: self.node,
            started_at: self.started_at.get(),
            finished_at: self.finished_at.map(DbTime::get),
            message: self.message,
        })
    }
}

impl Store {
    /// Price versions (token and resource) with their `verified_at`, by model, kind and start;
    /// only current ones with `current_only`.
    pub fn verified_prices(&self, current_only: bool) -> Result<Vec<VerifiedPrice>, StoreError> {
        run!(self, read, ops::verified_prices(current_only))
    }

    /// Mark one current price version (token or resource) verified at `at`. Unknown id:
    /// `NotFound`; a closed version: `Conflict` (only prices in force can be confirmed).
    pub fn verify_price(&self, pricing_id: Uuid, at: DateTime<Utc>) -> Result<VerifiedPrice, StoreError> {
        run!(self, write, ops::verify_price(pricing_id, at))
    }

    /// Mark the current versions of `kinds` of `model` verified at `at` (a price sync that found
    /// them unchanged). Unknown model: `NotFound`. Returns how many versions were marked.
    pub fn verify_current_prices(
        &self,
        model: &str,
        kinds: &[UsageKind],
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        run!(self, write, ops::verify_current_prices(model, kinds, at))
    }

    /// Take or renew the lease on `job_id` for `holder` until `until`, in one statement: insert
    /// it if absent, take it over only if it expired (`lease_until <= now`) or is already
    /// `holder`'s. True when `holder` holds it now. Atomic across nodes on PostgreSQL (an
    /// upsert's conflict check and conditional update see committed rows and lock the one row).
    pub fn try_lease(
        &self,
        job_id: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        run!(self, write, ops::try_lease(job_id, holder, until, now))
    }

    /// Give up `holder`'s lease on `job_id` (no-op when someone else holds it). True when released.
    pub fn release_lease(&self, job_id: &str, holder: &str) -> Result<bool, StoreError> {
        run!(self, write, ops::release_lease(job_id, holder))
    }

    /// Record a run (status `running`, or a `skipped` one with its `finished_at`). A taken id: `Conflict`.
    pub fn start_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        run!(self, write, ops::start_run(run))
    }

    /// Finish a running run. No such running run: `NotFound`.
    pub fn finish_run(
        &self,
        run_id: Uuid,
        finished_at: DateTime<Utc>,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        run!(self, write, ops::finish_run(run_id, finished_at, status, message))
    }

    /// Runs of one job (or all), newest first, at most `limit`.
    pub fn runs(&self, job_id: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        run!(self, read, ops::runs(job_id, limit))
    }

    /// The newest run of a job that was not skipped.
    pub fn last_run(&self, job_id: &str) -> Result<Option<RunRecord>, StoreError> {
        run!(self, read, ops::last_run(job_id))
    }

    /// Mark `node`'s runs still `running` as failed at `at` (a node that restarts cannot
    /// finish what it was running). Returns how many.
    pub fn abandon_runs(&self, node: &str, at: DateTime<Utc>) -> Result<usize, StoreError> {
        run!(self, write, ops::abandon_runs(node, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [RunTrigger::Schedule, RunTrigger::Manual] {
            assert_eq!(RunTrigger::parse(t.as_str()), Some(t), "trigger {t:?} round-trips");
        }
        for s in [RunStatus::Running, RunStatus::Success, RunStatus::Failed, RunStatus::Skipped] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s), "status {s:?} round-trips");
        }
        assert_eq!(RunStatus::parse("done"), None, "unknown status");
    }
}
