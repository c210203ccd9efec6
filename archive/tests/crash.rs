//! Crash safety: a real process archives (or restores) and aborts itself at each failpoint
//! (`TALLY_ARCHIVE_FAILPOINT`, like a SIGKILL: no destructors, no rollback handlers). After each
//! crash nothing is lost or duplicated, and a rerun finishes the month with identical totals.
//!
//! The crashing process is this test binary run again, on the ignored `crash_child` test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use tally_archive::{Archiver, FAILPOINT_ENV};

/// Env var telling `crash_child` what to do: `run|restore`, database URL and archive dir.
const CHILD_ENV: &str = "TALLY_ARCHIVE_CRASH_CHILD";

/// The child's body: archive (or restore) January, with whatever failpoint the env names.
#[test]
#[ignore = "run by the crash tests in a child process"]
fn crash_child() {
    let spec = std::env::var(CHILD_ENV).expect("crash_child runs only as the crash tests' child");
    let mut parts = spec.splitn(3, '|');
    let (op, url, dir) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let archiver = Archiver::new(tally_store::Store::open(url).unwrap(), dir);
    match op {
        "run" => {
            archiver.run(day("2026-02-01"), today()).unwrap();
        }
        "restore" => {
            archiver.restore("2026-01").unwrap();
        }
        other => panic!("unknown child op {other}"),
    }
}

/// Run the child; it must die at `point`.
fn crash_at(db: &TestDb, op: &str, point: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{op}|{}|{}", db.url, db.archive_dir().display()))
        .env(FAILPOINT_ENV, point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child must die at {point}; stderr: {stderr}");
    assert!(stderr.contains(&format!("{FAILPOINT_ENV}={point}: aborting")), "the child died at {point}, not elsewhere: {stderr}");
}

/// January is whole: all six events hot, or all six archived (never some, never both).
fn january_whole(store: &tally_store::Store, point: &str) -> &'static str {
    let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z"));
    let hot = store.hot_event_count(from, to).unwrap();
    let archived = store.archived_event_count("2026-01").unwrap();
    match (hot, archived) {
        (6, 0) => "hot",
        (0, 6) => "archived",
        other => panic!("after a crash at {point} January is split (hot, archived) = {other:?}"),
    }
}

fn crash_then_resume(db: &TestDb, points: &[(&str, &str)]) {
    let store = db.open();
    let fx = fixture(&store);
    let before_totals = totals(&store);
    let before_raw = raw(&store, &fx);
    let archiver = Archiver::new(store.clone(), db.archive_dir());
    for (point, expect) in points {
        crash_at(db, "run", point);
        assert_eq!(january_whole(&store, point), *expect, "state right after a crash at {point}");
        assert_eq!(totals(&store), before_totals, "totals unchanged right after a crash at {point}");
        // Resume: the rerun finishes the month.
        let outcomes = archiver.run(day("2026-02-01"), today()).unwrap();
        assert_eq!(january_whole(&store, point), "archived", "the rerun after {point} archived January");
        assert!(outcomes.len() <= 1, "only January: {outcomes:?}");
        assert_eq!(totals(&store), before_totals, "totals unchanged after resuming from {point}");
        assert!(archiver.verify(chrono::Utc::now()).unwrap().iter().all(|r| r.problems.is_empty()), "verify after {point}");
        // A crash inside the restore transaction leaves January archived; the rerun restores it.
        crash_at(db, "restore", "mid_restore");
        assert_eq!(january_whole(&store, "mid_restore"), "archived", "a crashed restore changed nothing");
        assert_eq!(archiver.restore("2026-01").unwrap().action, "restored", "restore after the crash");
        assert_eq!(raw(&store, &fx), before_raw, "nothing lost or duplicated after {point} and a restore");
        assert_eq!(totals(&store), before_totals, "totals identical after {point} and a restore");
    }
}

#[test]
fn sqlite_crash_at_every_failpoint() {
    crash_then_resume(
        &TestDb::sqlite(),
        &[("after_write", "hot"), ("after_readback", "hot"), ("mid_delete", "hot"), ("after_delete", "archived")],
    );
}

#[test]
fn postgres_crash_mid_delete_and_after() {
    crash_then_resume(&TestDb::postgres(), &[("mid_delete", "hot"), ("after_delete", "archived")]);
}

/// A late January event arrives between writing the files and moving the rows: January stays
/// hot until the late event is invoiced; then the move sees rows that differ from the files, the
/// archiver rewrites them, and the late event is archived too.
#[test]
fn sqlite_late_event_after_the_files_were_written() {
    let db = TestDb::sqlite();
    let store = db.open();
    let fx = fixture(&store);
    crash_at(&db, "run", "after_readback");
    assert_eq!(store.archive_month("2026-01").unwrap().map(|m| m.status), Some(tally_store::archive::ArchiveStatus::Written), "files written, rows hot");
    let mut late = fx.january_event.clone();
    late.event_id = uuid::Uuid::now_v7();
    late.idempotency_key = None;
    late.occurred_at = at("2026-01-20T00:00:00Z");
    let outcome = store.write_batch(&[tally_store::WriteOp::Usage(late.clone())]).unwrap();
    assert_eq!(outcome.inserted_events, vec![late.event_id], "the late event is stored hot");
    // Not invoiced yet: January stays hot (files written), the rerun says why.
    let archiver = Archiver::new(store.clone(), db.archive_dir());
    let outcomes = archiver.run(day("2026-02-01"), today()).unwrap();
    assert_eq!(outcomes.iter().map(|o| o.action).collect::<Vec<_>>(), vec!["not_invoiced"], "{outcomes:?}");
    assert_eq!(outcomes[0].rows.get("uninvoiced_lines"), Some(&late.cost.lines.len().try_into().unwrap()), "{outcomes:?}");
    assert_eq!(store.hot_event_count(at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z")).unwrap(), 7, "all of January still hot");
    invoice_before(&store, "alice", at("2026-02-01T00:00:00Z"));
    let with_late = totals(&store);
    let outcomes = archiver.run(day("2026-02-01"), today()).unwrap();
    assert_eq!(outcomes.len(), 1, "January archived: {outcomes:?}");
    assert_eq!(outcomes[0].rows.get("api_events"), Some(&7), "the late event moved with the other six");
    assert_eq!(store.archived_event_count("2026-01").unwrap(), 7, "seven archived ids");
    assert_eq!(store.hot_event_count(at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z")).unwrap(), 0, "nothing of January left hot");
    assert_eq!(totals(&store), with_late, "totals, late event included, unchanged by archiving");
}
