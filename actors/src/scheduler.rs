//! The scheduler: cron jobs (UTC) that never overlap, run by one node of a cluster, with history.
//!
//! Each registered [`Job`] gets one task that sleeps until the next occurrence of its cron
//! expression and then fires it. Firing:
//! 1. If the job is already running on this node, a `skipped` run is recorded: runs of one
//!    job never overlap.
//! 2. With leases on (the default, and what a cluster needs), the node takes the job's row in
//!    `scheduler_leases` for [`SchedulerConfig::lease_ttl`]; if another node holds it, this
//!    node does nothing for that tick (the holder runs it). While the job runs the lease is
//!    renewed every third of its TTL. It is *not* released when the run ends: it lapses
//!    `lease_ttl` after the last renewal, so a node whose clock or timer is a little late
//!    for the same tick still finds it held and cannot run the tick a second time. For a job
//!    that fires more often than `lease_ttl`, the holder keeps it tick after tick; another
//!    node takes over within `lease_ttl` of the holder stopping.
//! 3. The run is recorded in `scheduler_runs` (node, trigger, status, message) and finished
//!    with `success` and the job's text, or `failed` and its error (a panic is a failure).
//!
//! A manual [`Scheduler::trigger`] fires the job at once through the same steps; when
//! another node holds the lease it records a `skipped` run saying so.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;
use tally_store::ops::{RunRecord, RunStatus, RunTrigger};
use tally_store::{Store, StoreError};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ActorError;

/// How long a job's lease lasts without renewal (cover the job's expected run; renewed while it runs).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// Longest job message kept in the history (longer ones are cut at a character boundary).
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// Longest job id.
pub const MAX_JOB_ID_LEN: usize = 64;

/// What a job does: a future giving a short summary on success or an error text.
pub type JobFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// A job to run on a cron schedule.
#[derive(Clone)]
pub struct Job {
    /// Stable id (`[a-z0-9_-]`, 1-64 chars): the lease key and the history's `job_id`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Cron expression, evaluated in UTC: 5 fields (minute granularity) or 6 (seconds first).
    pub schedule: String,
    /// The work.
    pub run: JobFn,
}

impl Job {
    /// A job from an async closure.
    pub fn new<F, Fut>(id: impl Into<String>, name: impl Into<String>, schedule: impl Into<String>, f: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
    {
        Job { id: id.into(), name: name.into(), schedule: schedule.into(), run: Arc::new(move || f().boxed()) }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("id", &self.id).field("schedule", &self.schedule).finish_non_exhaustive()
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's id, recorded with every run and used as the lease holder.
    pub node_id: String,
    /// Take the database lease before running (needed with more than one node).
    pub use_leases: bool,
    /// Lease duration; keep it above the jobs' expected run time and the nodes' clock skew.
    pub lease_ttl: Duration,
}

impl SchedulerConfig {
    /// Leases on, [`DEFAULT_LEASE_TTL`], the given node id.
    pub fn new(node_id: impl Into<String>) -> Self {
        SchedulerConfig { node_id: node_id.into(), use_leases: true, lease_ttl: DEFAULT_LEASE_TTL }
    }
}

/// A job as listed by `GET /api/scheduler/jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Cron expression (UTC).
    pub schedule: String,
    /// Next scheduled occurrence; `None` when the expression has none left.
    pub next_run: Option<DateTime<Utc>>,
    /// The newest run that was not skipped, on any node.
    pub last_run: Option<RunRecord>,
    /// Whether it is running on this node now.
    pub running: bool,
}

struct JobEntry {
    job: Job,
    cron: Arc<Cron>,
    running: bool,
}

struct Inner {
    store: Store,
    config: SchedulerConfig,
    jobs: Mutex<BTreeMap<String, JobEntry>>,
    started: Mutex<bool>,
    shutdown: watch::Sender<bool>,
}

/// Handle to the node's scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("node_id", &self.inner.config.node_id).finish_non_exhaustive()
    }
}

/// Parse a cron expression: 5 fields, or 6 with seconds first.
pub fn parse_schedule(expr: &str) -> Result<Cron, ActorError> {
    CronParser::builder().seconds(Seconds::Optional).build().parse(expr).map_err(|e| ActorError::Invalid {
        code: "invalid_schedule",
        message: format!("invalid cron expression {expr:?}: {e}"),
    })
}

/// The first occurrence of `cron` strictly after `after`.
fn next_after(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

fn truncate(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    }
}

/// Run a blocking store call off the event loop.
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, ActorError>
where
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ActorError::Unavailable(format!("scheduler storage task failed: {e}")))?
        .map_err(ActorError::from)
}

impl Scheduler {
    /// A scheduler over `store` with no jobs; nothing runs until [`Scheduler::start`].
    pub fn new(store: Store, config: SchedulerConfig) -> Self {
        let (shutdown, _) = watch::channel(false);
        Scheduler {
            inner: Arc::new(Inner {
                store,
                config,
                jobs: Mutex::new(BTreeMap::new()),
                started: Mutex::new(false),
                shutdown,
            }),
        }
    }

    fn jobs_lock(&self) -> MutexGuard<'_, BTreeMap<String, JobEntry>> {
        // A poisoned lock only means a panic while flipping a flag; the map is whole.
        self.inner.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn started_lock(&self) -> MutexGuard<'_, bool> {
        self.inner.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Add a job. Bad id or cron expression, or an id already registered: `Invalid`. A job
    /// registered after [`Scheduler::start`] is scheduled at once.
    pub fn register(&self, job: Job) -> Result<(), ActorError> {
        let id_ok = !job.id.is_empty()
            && job.id.len() <= MAX_JOB_ID_LEN
            && job.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !id_ok {
            return Err(ActorError::Invalid {
                code: "invalid_job_id",
                message: format!("job id {:?} must be 1-{MAX_JOB_ID_LEN} of a-z, 0-9, '_', '-'", job.id),
            });
        }
        let cron = Arc::new(parse_schedule(&job.schedule)?);
        let id = job.id.clone();
        {
            let mut jobs = self.jobs_lock();
            if jobs.contains_key(&id) {
                return Err(ActorError::Invalid {
                    code: "duplicate_job",
                    message: format!("job {id} is already registered"),
                });
            }
            jobs.insert(id.clone(), JobEntry { job, cron, running: false });
        }
        if *self.started_lock() {
            self.spawn_loop(id);
        }
        Ok(())
    }

    /// Start the job loops (needs a tokio runtime). Runs this node left `running` when it
    /// stopped are marked failed first. Idempotent.
    pub async fn start(&self) -> Result<(), ActorError> {
        {
            let mut started = self.started_lock();
            if *started {
                return Ok(());
            }
            *started = true;
        }
        let node = self.inner.config.node_id.clone();
        let abandoned = blocking(&self.inner.store, move |s| s.abandon_runs(&node, Utc::now())).await?;
        if abandoned > 0 {
            tracing::warn!(runs = abandoned, "Runs left unfinished by this node were marked failed.");
        }
        let ids: Vec<String> = self.jobs_lock().keys().cloned().collect();
        for id in ids {
            self.spawn_loop(id);
        }
        tracing::info!(node.id = %self.inner.config.node_id, "Scheduler started.");
        Ok(())
    }

    /// Whether [`Scheduler::start`] was called (and [`Scheduler::stop`] not since).
    pub fn is_running(&self) -> bool {
        *self.started_lock() && !*self.inner.shutdown.borrow()
    }

    /// Stop scheduling (running jobs finish on their own) and release the leases this node
    /// holds on jobs that are not running, so another node can take over at once.
    pub async fn stop(&self) {
        self.inner.shutdown.send_replace(true);
        if !self.inner.config.use_leases {
            return;
        }
        let idle: Vec<String> = self.jobs_lock().iter().filter(|(_, e)| !e.running).map(|(id, _)| id.clone()).collect();
        let node = self.inner.config.node_id.clone();
        let released = blocking(&self.inner.store, move |s| {
            for id in &idle {
                s.release_lease(id, &node)?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "Scheduler leases were not released; they lapse on their own.");
        }
    }

    /// Run a job now (trigger `manual`). Returns the id of its run: running, or `skipped`
    /// when it is already running here or another node holds its lease. Unknown job: `NotFound`.
    pub async fn trigger(&self, job_id: &str) -> Result<Uuid, ActorError> {
        if !self.jobs_lock().contains_key(job_id) {
            return Err(ActorError::NotFound(format!("job {job_id}")));
        }
        self.fire(job_id.to_string(), RunTrigger::Manual).await.map(|(id, _)| id)
    }

    /// Every job with its next occurrence, last run and whether it runs here now.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ActorError> {
        let now = Utc::now();
        let mut views: Vec<JobView> = self
            .jobs_lock()
            .values()
            .map(|e| JobView {
                id: e.job.id.clone(),
                name: e.job.name.clone(),
                schedule: e.job.schedule.clone(),
                next_run: next_after(&e.cron, now),
                last_run: None,
                running: e.running,
            })
            .collect();
        let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
        let last =
            blocking(&self.inner.store, move |s| ids.iter().map(|id| s.last_run(id)).collect::<Result<Vec<_>, _>>())
                .await?;
        for (view, last) in views.iter_mut().zip(last) {
            view.last_run = last;
        }
        Ok(views)
    }

    /// Run history, newest first: of one job or of all.
    pub async fn history(&self, job_id: Option<String>, limit: i64) -> Result<Vec<RunRecord>, ActorError> {
        blocking(&self.inner.store, move |s| s.runs(job_id.as_deref(), limit)).await
    }

    /// One task per job: sleep to the next occurrence, fire, repeat until shutdown.
    fn spawn_loop(&self, job_id: String) {
        let this = self.clone();
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let Some(cron) = this.jobs_lock().get(&job_id).map(|e| e.cron.clone()) else { return };
            let mut last = Utc::now();
            loop {
                let now = Utc::now();
                // From the later of now and the last occurrence: a late wake-up never fires one
                // occurrence twice, and occurrences missed while asleep are not replayed.
                let Some(next) = next_after(&cron, now.max(last)) else {
                    tracing::info!(job.id = %job_id, "Schedule has no further occurrences.");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                last = next;
                if let Err(e) = this.fire(job_id.clone(), RunTrigger::Schedule).await {
                    tracing::error!(job.id = %job_id, error = %e, "Scheduled run could not start.");
                }
            }
        });
    }

    /// Fire one run of a job. Returns the run id and whether it started. A scheduled tick
    /// whose lease another node holds is not recorded: nil id, `false`.
    async fn fire(&self, job_id: String, trigger: RunTrigger) -> Result<(Uuid, bool), ActorError> {
        let node = self.inner.config.node_id.clone();
        let record = |status: RunStatus, message: Option<String>| {
            let now = Utc::now();
            RunRecord {
                run_id: Uuid::now_v7(),
                job_id: job_id.clone(),
                node: node.clone(),
                trigger,
                started_at: now,
                finished_at: (status != RunStatus::Running).then_some(now),
                status,
                message,
            }
        };
        // Claim the job on this node first: a second firing sees `running` and is skipped.
        let job = {
            let mut jobs = self.jobs_lock();
            let entry = jobs.get_mut(&job_id).ok_or_else(|| ActorError::NotFound(format!("job {job_id}")))?;
            if entry.running {
                None
            } else {
                entry.running = true;
                Some(entry.job.clone())
            }
        };
        let Some(job) = job else {
            let skipped = record(RunStatus::Skipped, Some("skipped: the previous run is still running".into()));
            let id = skipped.run_id;
            blocking(&self.inner.store, move |s| s.start_run(&skipped)).await?;
            tracing::info!(job.id = %job_id, "Run skipped: the previous run is still running.");
            return Ok((id, false));
        };
        let started = self.begin(&job_id, trigger, &record).await;
        let run = match started {
            Ok(Some(run)) => run,
            Ok(None) => {
                self.set_running(&job_id, false);
                return Ok((Uuid::nil(), false));
            }
            Err(e) => {
                self.set_running(&job_id, false);
                return Err(e);
            }
        };
        let run_id = run.run_id;
        let this = self.clone();
        tokio::spawn(async move { this.execute(job, run).await });
        Ok((run_id, true))
    }

    /// Take the lease (if leases are on) and record the run as running. `None`: another node
    /// holds the lease (a manual trigger records that as a skipped run and returns it).
    async fn begin(
        &self,
        job_id: &str,
        trigger: RunTrigger,
        record: &(dyn Fn(RunStatus, Option<String>) -> RunRecord + Sync),
    ) -> Result<Option<RunRecord>, ActorError> {
        if self.inner.config.use_leases && !self.renew_lease(job_id).await? {
            tracing::debug!(job.id = %job_id, "Another node holds the job's lease.");
            if trigger == RunTrigger::Manual {
                let skipped = record(RunStatus::Skipped, Some("skipped: another node holds the job's lease".into()));
                let copy = skipped.clone();
                blocking(&self.inner.store, move |s| s.start_run(&copy)).await?;
                return Ok(Some(skipped));
            }
            return Ok(None);
        }
        let run = record(RunStatus::Running, None);
        let copy = run.clone();
        blocking(&self.inner.store, move |s| s.start_run(&copy)).await?;
        Ok(Some(run))
    }

    /// Take or renew this node's lease on a job for one TTL from now.
    async fn renew_lease(&self, job_id: &str) -> Result<bool, ActorError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.inner.config.lease_ttl).unwrap_or(chrono::Duration::MAX);
        let until = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let (job, node) = (job_id.to_string(), self.inner.config.node_id.clone());
        blocking(&self.inner.store, move |s| s.try_lease(&job, &node, until, now)).await
    }

    fn set_running(&self, job_id: &str, running: bool) {
        if let Some(entry) = self.jobs_lock().get_mut(job_id) {
            entry.running = running;
        }
    }

    /// Run the job (renewing its lease), then finish its run record. A skipped record
    /// (manual trigger, lease held elsewhere) only clears the running flag.
    async fn execute(&self, job: Job, run: RunRecord) {
        if run.status == RunStatus::Skipped {
            self.set_running(&job.id, false);
            return;
        }
        let started = std::time::Instant::now();
        let work = AssertUnwindSafe((job.run)()).catch_unwind();
        tokio::pin!(work);
        let renew_every = self.inner.config.lease_ttl / 3;
        let mut renew = tokio::time::interval(renew_every.max(Duration::from_millis(10)));
        renew.tick().await; // the first tick is immediate; the lease was just taken
        let outcome = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = renew.tick(), if self.inner.config.use_leases => {
                    match self.renew_lease(&job.id).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(job.id = %job.id, "Lease lost to another node while running."),
                        Err(e) => tracing::warn!(job.id = %job.id, error = %e, "Lease renewal failed."),
                    }
                }
            }
        };
        let (status, message) = match outcome {
            Ok(Ok(text)) => (RunStatus::Success, truncate(text)),
            Ok(Err(text)) => (RunStatus::Failed, truncate(text)),
            Err(_) => (RunStatus::Failed, "the job panicked".to_string()),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match status {
            RunStatus::Failed => tracing::warn!(job.id = %job.id, duration_ms, message = %message, "Job failed."),
            _ => tracing::info!(job.id = %job.id, duration_ms, "Job finished."),
        }
        let run_id = run.run_id;
        let finished =
            blocking(&self.inner.store, move |s| s.finish_run(run_id, Utc::now(), status, Some(&message))).await;
        if let Err(e) = finished {
            tracing::error!(job.id = %job.id, run.id = %run_id, error = %e, "Run result could not be recorded.");
        }
        self.set_running(&job.id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_or_without_seconds() {
        assert!(parse_schedule("* * * * * *").is_ok(), "six fields: every second");
        assert!(parse_schedule("0 3 * * *").is_ok(), "five fields: daily at 03:00");
        let bad = parse_schedule("every day");
        assert_eq!(bad.err().map(|e| e.code()), Some("invalid_schedule"), "nonsense is refused");
    }

    #[test]
    fn next_occurrence_is_strictly_after_and_in_utc() {
        let cron = parse_schedule("0 3 * * *").unwrap_or_else(|e| panic!("parse: {e}"));
        let at =
            |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next_after(&cron, at("2026-12-04T02:59:59Z")), Some(at("2026-12-04T03:00:00Z")), "same day");
        assert_eq!(next_after(&cron, at("2026-12-04T03:00:00Z")), Some(at("2026-12-05T03:00:00Z")), "strictly after");
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let cut = truncate(long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 3, "cut at the limit plus an ellipsis");
        assert_eq!(truncate("ok".into()), "ok", "short messages are kept");
    }
}
