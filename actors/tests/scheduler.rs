//! The scheduler on a real SQLite file with an every-second cron: runs are recorded, runs of
//! one job never overlap, two schedulers (two nodes) on one database run each tick once,
//! manual triggers, failures and panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tally_actors::scheduler::{Job, Scheduler, SchedulerConfig};
use tally_actors::ActorError;
use tally_store::ops::{RunStatus, RunTrigger};
use tally_store::Store;

const EVERY_SECOND: &str = "* * * * * *";
const NEVER_SOON: &str = "0 0 1 1 *";

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite://{}", dir.path().join("tally.db").display())).expect("open store")
}

async fn settle(scheduler: &Scheduler) {
    for _ in 0..100 {
        if scheduler.jobs().await.expect("jobs").iter().all(|j| !j.running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("jobs did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_are_recorded_with_node_and_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(store(&dir), SchedulerConfig::new("node-a"));
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    scheduler
        .register(Job::new("tick", "Tick", EVERY_SECOND, move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(format!("tick {n}")) }
        }))
        .expect("register");
    assert!(!scheduler.is_running(), "nothing runs before start");
    scheduler.start().await.expect("start");
    assert!(scheduler.is_running(), "started");
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    scheduler.stop().await;
    settle(&scheduler).await;
    let runs = scheduler.history(Some("tick".into()), 100).await.expect("history");
    let ran = count.load(Ordering::SeqCst);
    assert!((2..=4).contains(&ran), "an every-second job ran about three times in 3.3 s, ran {ran}");
    assert_eq!(runs.len(), ran, "every run is recorded: {runs:?}");
    for r in &runs {
        assert_eq!(r.status, RunStatus::Success, "finished successfully: {r:?}");
        assert_eq!(r.node, "node-a", "node recorded");
        assert_eq!(r.trigger, RunTrigger::Schedule, "scheduled trigger");
        assert!(r.message.as_deref().is_some_and(|m| m.starts_with("tick ")), "the job's text is kept: {r:?}");
        assert!(r.finished_at.is_some_and(|f| f >= r.started_at), "finish after start");
    }
    let jobs = scheduler.jobs().await.expect("jobs");
    assert_eq!(jobs.len(), 1, "one job listed");
    assert_eq!(jobs[0].last_run.as_ref().map(|r| r.run_id), Some(runs[0].run_id), "last run is the newest");
    assert!(jobs[0].next_run.is_some_and(|n| n > Utc::now() - chrono::Duration::seconds(1)), "next run ahead");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(count.load(Ordering::SeqCst), ran, "nothing runs after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_not_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(store(&dir), SchedulerConfig::new("node-a"));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (a, m) = (active.clone(), most.clone());
    scheduler
        .register(Job::new("slow", "Slow", EVERY_SECOND, move || {
            let (a, m) = (a.clone(), m.clone());
            async move {
                let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                Ok("slow done".into())
            }
        }))
        .expect("register");
    scheduler.start().await.expect("start");
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    scheduler.stop().await;
    settle(&scheduler).await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two runs of one job at once");
    let runs = scheduler.history(Some("slow".into()), 100).await.expect("history");
    let skipped = runs.iter().filter(|r| r.status == RunStatus::Skipped).count();
    let ran = runs.iter().filter(|r| r.status == RunStatus::Success).count();
    assert!(skipped >= 2, "ticks during a run are recorded as skipped: {runs:?}");
    assert!(ran >= 1, "the job ran: {runs:?}");
    assert!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Skipped)
            .all(|r| r.message.as_deref().is_some_and(|m| m.contains("still running"))),
        "skips say why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_database_run_each_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let seconds: Arc<Mutex<BTreeMap<i64, usize>>> = Arc::default();
    let nodes: Vec<Scheduler> = ["node-a", "node-b"]
        .into_iter()
        .map(|node| {
            let scheduler = Scheduler::new(store(&dir), SchedulerConfig::new(node));
            let seen = seconds.clone();
            scheduler
                .register(Job::new("shared", "Shared", EVERY_SECOND, move || {
                    let now = Utc::now();
                    // Runs start a few ms after their tick: the second is the tick's.
                    *seen.lock().unwrap().entry(now.timestamp()).or_default() += 1;
                    async move { Ok("ran".into()) }
                }))
                .expect("register");
            scheduler
        })
        .collect();
    for n in &nodes {
        n.start().await.expect("start");
    }
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    for n in &nodes {
        n.stop().await;
    }
    for n in &nodes {
        settle(n).await;
    }
    let seen = seconds.lock().unwrap().clone();
    assert!(seen.len() >= 3, "the job ran on about four ticks: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "each tick ran once across both nodes: {seen:?}");
    let runs = nodes[0].history(Some("shared".into()), 100).await.expect("history");
    assert_eq!(runs.len(), seen.values().sum::<usize>(), "runs in the shared history = runs made: {runs:?}");
    assert!(runs.iter().all(|r| r.node == runs[0].node), "the lease holder keeps the job tick after tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_triggers_failures_and_panics_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(store(&dir), SchedulerConfig::new("node-a"));
    scheduler.register(Job::new("ok", "Ok", NEVER_SOON, || async { Ok("done".into()) })).expect("register");
    scheduler.register(Job::new("bad", "Bad", NEVER_SOON, || async { Err("provider down".into()) })).expect("register");
    scheduler
        .register(Job::new("boom", "Boom", NEVER_SOON, || async {
            if Utc::now().timestamp() > 0 {
                panic!("boom");
            }
            Ok(String::new())
        }))
        .expect("register");
    assert!(
        matches!(
            scheduler.register(Job::new("ok", "Again", NEVER_SOON, || async { Ok(String::new()) })),
            Err(ActorError::Invalid { code: "duplicate_job", .. })
        ),
        "ids are unique"
    );
    assert!(
        matches!(
            scheduler.register(Job::new("x", "X", "not cron", || async { Ok(String::new()) })),
            Err(ActorError::Invalid { code: "invalid_schedule", .. })
        ),
        "bad cron expressions are refused"
    );
    scheduler.start().await.expect("start");
    let ok = scheduler.trigger("ok").await.expect("trigger");
    let bad = scheduler.trigger("bad").await.expect("trigger");
    let boom = scheduler.trigger("boom").await.expect("trigger");
    assert!(matches!(scheduler.trigger("nope").await, Err(ActorError::NotFound(_))), "unknown job");
    settle(&scheduler).await;
    let runs = scheduler.history(None, 10).await.expect("history");
    let find = |id| runs.iter().find(|r| r.run_id == id).unwrap_or_else(|| panic!("run {id} recorded: {runs:?}"));
    assert_eq!(find(ok).status, RunStatus::Success, "manual run succeeded");
    assert_eq!(find(ok).trigger, RunTrigger::Manual, "manual trigger recorded");
    assert_eq!(find(bad).status, RunStatus::Failed, "an Err is a failure");
    assert_eq!(find(bad).message.as_deref(), Some("provider down"), "with its text");
    assert_eq!(find(boom).status, RunStatus::Failed, "a panic is a failure");
    assert_eq!(find(boom).message.as_deref(), Some("the job panicked"), "and says so");
    let again = scheduler.trigger("boom").await.expect("trigger again");
    settle(&scheduler).await;
    assert_eq!(
        scheduler.history(Some("boom".into()), 1).await.expect("history")[0].run_id,
        again,
        "a panicked job can run again"
    );
    scheduler.stop().await;
}
