//! ops on both backends: price verification, scheduler leases and run history.

use std::sync::{Arc, Barrier};

use chrono::Duration;
use tally_domain::UsageKind;
use tally_store::ops::{RunRecord, RunStatus, RunTrigger};
use tally_store::StoreError;
use uuid::Uuid;

use crate::common::{at, dec, seeded, TestDb, HAIKU};

on_both_backends!(
    prices_are_listed_with_verified_at_and_verified_one_by_one,
    sync_verifies_the_current_versions_of_a_model,
    a_lease_is_held_until_it_expires_or_is_released,
    two_holders_racing_for_one_lease_get_it_once,
    runs_are_recorded_listed_and_abandoned,
);

use crate::common::on_both_backends;

fn prices_are_listed_with_verified_at_and_verified_one_by_one(db: &TestDb) {
    let (store, _) = seeded(db);
    let current = store.verified_prices(true).expect("list");
    assert!(!current.is_empty(), "the catalogue's prices are listed");
    assert!(current.iter().all(|p| p.verified_at.is_none()), "seeded prices were never verified");
    let input = current
        .iter()
        .find(|p| p.version.model == HAIKU && p.version.kind == UsageKind::InputTokens)
        .expect("haiku input price")
        .clone();
    assert_eq!(input.version.price, dec("0.80"), "haiku input is 0.80 per million");

    let when = at("2026-12-04T10:00:00.123456Z");
    let verified = store.verify_price(input.version.id, when).expect("verify");
    assert_eq!(verified.verified_at, Some(when), "verified_at is stored to the microsecond");
    assert_eq!(verified.version, input.version, "the version itself is unchanged");
    let listed = store.verified_prices(true).expect("list again");
    let again = listed.iter().find(|p| p.version.id == input.version.id).expect("still listed");
    assert_eq!(again.verified_at, Some(when), "the listing shows verified_at");

    let search = current
        .iter()
        .find(|p| p.version.model == HAIKU && p.version.kind == UsageKind::Resource("web_search_requests".into()))
        .expect("haiku web search price");
    let v = store.verify_price(search.version.id, when).expect("verify a resource price");
    assert_eq!(v.verified_at, Some(when), "resource prices verify too");

    assert!(
        matches!(store.verify_price(Uuid::now_v7(), when), Err(StoreError::NotFound(_))),
        "an unknown id is not found"
    );
    store
        .add_price_version(HAIKU, &UsageKind::InputTokens, dec("0.9"), at("2026-12-05T00:00:00Z"))
        .expect("new version");
    assert!(
        matches!(store.verify_price(input.version.id, when), Err(StoreError::Conflict(_))),
        "a closed version cannot be verified"
    );
    let all = store.verified_prices(false).expect("history");
    let closed = all.iter().find(|p| p.version.id == input.version.id).expect("closed version listed with history");
    assert!(!closed.version.is_current, "closed");
    assert_eq!(closed.verified_at, Some(when), "a closed version keeps its verified_at");
    let new = all
        .iter()
        .find(|p| p.version.model == HAIKU && p.version.kind == UsageKind::InputTokens && p.version.is_current)
        .expect("new current version");
    assert_eq!(new.verified_at, None, "a new version starts unverified");
}

fn sync_verifies_the_current_versions_of_a_model(db: &TestDb) {
    let (store, _) = seeded(db);
    let when = at("2026-12-04T10:00:00Z");
    let kinds = [UsageKind::InputTokens, UsageKind::OutputTokens, UsageKind::Resource("web_search_requests".into())];
    let marked = store.verify_current_prices(HAIKU, &kinds, when).expect("verify");
    assert_eq!(marked, 3, "two token prices and one resource price are marked");
    let current = store.verified_prices(true).expect("list");
    for p in current.iter().filter(|p| p.version.model == HAIKU) {
        let expected = if kinds.contains(&p.version.kind) { Some(when) } else { None };
        assert_eq!(p.verified_at, expected, "{} verified only when named", p.version.kind);
    }
    assert!(
        current.iter().filter(|p| p.version.model != HAIKU).all(|p| p.verified_at.is_none()),
        "other models are untouched"
    );
    assert!(
        matches!(store.verify_current_prices("no-such-model", &kinds, when), Err(StoreError::NotFound(_))),
        "unknown model"
    );
}

fn a_lease_is_held_until_it_expires_or_is_released(db: &TestDb) {
    let store = db.open();
    let t0 = at("2026-12-04T10:00:00Z");
    let until = t0 + Duration::seconds(30);
    assert!(store.try_lease("job", "node-a", until, t0).expect("lease"), "a free lease is taken");
    assert!(!store.try_lease("job", "node-b", until, t0).expect("lease"), "a held lease is refused to another node");
    assert!(
        store.try_lease("job", "node-a", t0 + Duration::seconds(60), t0 + Duration::seconds(10)).expect("renew"),
        "the holder renews its own lease"
    );
    assert!(
        !store.try_lease("job", "node-b", t0 + Duration::seconds(90), t0 + Duration::seconds(45)).expect("lease"),
        "the renewal holds past the first expiry"
    );
    assert!(
        store.try_lease("job", "node-b", t0 + Duration::seconds(120), t0 + Duration::seconds(60)).expect("lease"),
        "an expired lease is taken over (expiry is inclusive)"
    );
    assert!(!store.release_lease("job", "node-a").expect("release"), "a node cannot release another's lease");
    assert!(store.release_lease("job", "node-b").expect("release"), "the holder releases");
    assert!(store.try_lease("job", "node-a", until, t0).expect("lease"), "a released lease is free again");
    assert!(store.try_lease("other-job", "node-b", until, t0).expect("lease"), "leases are per job");
}

fn two_holders_racing_for_one_lease_get_it_once(db: &TestDb) {
    // Two handles (two pools), as two nodes would have.
    let stores = [db.open(), db.open()];
    let t0 = at("2026-12-04T10:00:00Z");
    for round in 0..20 {
        let job = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let store = store.clone();
                let barrier = barrier.clone();
                let job = job.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    store.try_lease(&job, &format!("node-{i}"), t0 + Duration::seconds(30), t0).expect("lease")
                })
            })
            .collect();
        let won: Vec<bool> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: exactly one holder wins: {won:?}");
    }
}

fn run(job: &str, node: &str, started: &str, status: RunStatus) -> RunRecord {
    let started_at = at(started);
    RunRecord {
        run_id: Uuid::now_v7(),
        job_id: job.into(),
        node: node.into(),
        trigger: RunTrigger::Schedule,
        started_at,
        finished_at: (status != RunStatus::Running).then_some(started_at),
        status,
        message: (status == RunStatus::Skipped).then(|| "already running".to_string()),
    }
}

fn runs_are_recorded_listed_and_abandoned(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.last_run("prices").expect("last"), None, "no runs yet");
    let first = run("prices", "node-a", "2026-12-04T10:00:00Z", RunStatus::Running);
    store.start_run(&first).expect("start");
    assert!(matches!(store.start_run(&first), Err(StoreError::Conflict(_))), "a run id is recorded once");
    let done = at("2026-12-04T10:00:02Z");
    store.finish_run(first.run_id, done, RunStatus::Success, Some("3 stale prices")).expect("finish");
    assert!(
        matches!(store.finish_run(first.run_id, done, RunStatus::Failed, None), Err(StoreError::NotFound(_))),
        "a finished run cannot be finished again"
    );
    let skipped = run("prices", "node-a", "2026-12-04T10:00:01Z", RunStatus::Skipped);
    store.start_run(&skipped).expect("skipped");
    let mut manual = run("forecast", "node-b", "2026-12-04T11:00:00Z", RunStatus::Running);
    manual.trigger = RunTrigger::Manual;
    store.start_run(&manual).expect("start manual");

    let last = store.last_run("prices").expect("last").expect("a run");
    assert_eq!(last.run_id, first.run_id, "the last run skips skipped runs");
    assert_eq!(last.status, RunStatus::Success, "finished successfully");
    assert_eq!(last.finished_at, Some(done), "finish time stored");
    assert_eq!(last.message.as_deref(), Some("3 stale prices"), "message stored");

    let prices = store.runs(Some("prices"), 10).expect("runs");
    assert_eq!(
        prices.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        vec![skipped.run_id, first.run_id],
        "one job's runs, newest first"
    );
    assert_eq!(prices[0].status, RunStatus::Skipped, "skipped runs are listed");
    let all = store.runs(None, 10).expect("all runs");
    assert_eq!(all.len(), 3, "all jobs");
    assert_eq!(all[0].trigger, RunTrigger::Manual, "the manual run is newest");
    assert_eq!(store.runs(None, 1).expect("limited").len(), 1, "limit");

    assert_eq!(store.abandon_runs("node-a", done).expect("abandon"), 0, "node-a runs nothing");
    assert_eq!(store.abandon_runs("node-b", done).expect("abandon"), 1, "node-b's running run is abandoned");
    let forecast = store.last_run("forecast").expect("last").expect("a run");
    assert_eq!(forecast.status, RunStatus::Failed, "abandoned runs are failed");
}
