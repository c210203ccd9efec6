//! Archive and restore round trips on SQLite and PostgreSQL: every total identical before,
//! while archived and after; idempotent runs and restores; re-sent events stay duplicates;
//! a corrupted file is caught by verify and refused by restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tally_archive::{ArchiveError, Archiver};
use tally_store::archive::ArchiveStatus;
use tally_store::{LineFilter, WriteOp};

#[test]
fn sqlite_round_trip() {
    round_trip(&TestDb::sqlite());
}

#[test]
fn postgres_round_trip() {
    round_trip(&TestDb::postgres());
}

fn round_trip(db: &TestDb) {
    let store = db.open();
    let fx = fixture(&store);
    let before_totals = totals(&store);
    let before_raw = raw(&store, &fx);
    assert_eq!(count(&store, "api_events"), 12, "fixture: twelve events");
    let archiver = Archiver::new(store.clone(), db.archive_dir());

    // Archive January and February (March 1 cuts off; December is the current month).
    let outcomes = archiver.run(day("2026-03-01"), today()).unwrap();
    let months: Vec<(&str, &str)> = outcomes.iter().map(|o| (o.month.as_str(), o.action)).collect();
    assert_eq!(months, vec![("2026-01", "archived"), ("2026-02", "archived")], "both closed months archived");
    assert_eq!(outcomes[0].rows.get("api_events"), Some(&6), "January's six events moved");
    assert_eq!(outcomes[0].rows.get("event_payloads"), Some(&1), "January's payload moved");
    assert!(outcomes[0].rows.get("resource_invoice_line_item").is_some_and(|n| *n > 0), "resource lines moved");
    assert_eq!(count(&store, "api_events"), 2, "only December's events stay hot");
    assert_eq!(store.archived_event_count("2026-01").unwrap(), 6, "January's ids are indexed hot");
    for f in ["api_events.parquet", "user_invoice_line_item.parquet", "manifest.json"] {
        assert!(db.archive_dir().join("2026-01").join(f).is_file(), "{f} written for January");
    }
    let list = archiver.list().unwrap();
    assert!(list.iter().all(|m| m.status == ArchiveStatus::Archived && m.archived_at.is_some()), "listed as archived: {list:?}");

    // While archived: every total answers exactly as before.
    assert_eq!(totals(&store), before_totals, "analytics, rollups and invoice totals unchanged while archived");
    // Rebuilding the rollups from the hot events keeps the archived months' rollups.
    store.rebuild_rollups().unwrap();
    assert_eq!(totals(&store), before_totals, "rollups of archived months survive a rebuild");
    let january = LineFilter { from: Some(at("2026-01-01T00:00:00Z")), to: Some(at("2026-02-01T00:00:00Z")), ..Default::default() };
    assert!(store.usage_events(&january, 100).unwrap().is_empty(), "January's raw events are out of the hot tables");
    // The hot index answers exact per-user and per-thread costs of the archived months.
    let archived_before = |user: &str, thread: Option<uuid::Uuid>| -> rust_decimal::Decimal {
        before_raw
            .events
            .iter()
            .filter(|e| e.user_id == user && e.occurred_at < at("2026-03-01T00:00:00Z"))
            .filter(|e| thread.is_none() || e.thread_id == thread)
            .map(|e| e.cost.total)
            .sum()
    };
    let sum = |v: Vec<tally_store::archive::ArchivedCost>| v.iter().map(|c| c.cost_total).sum::<rust_decimal::Decimal>();
    assert_eq!(sum(store.archived_costs(Some("alice"), None).unwrap()), archived_before("alice", None), "alice's archived cost");
    let bobs_thread = Some(fx.threads[1].thread_id);
    assert_eq!(sum(store.archived_costs(None, bobs_thread).unwrap()), archived_before("bob", bobs_thread), "bob's thread's archived cost");
    assert_eq!(store.archived_costs(None, None).unwrap().len(), 10, "ten archived events indexed");
    // Thread histories still show every message's exact cost and lines.
    let messages: Vec<_> = fx.threads.iter().flat_map(|t| store.thread_messages(t.thread_id).unwrap()).collect();
    assert_eq!(messages, before_raw.messages, "message costs unchanged while archived");
    // Each keeps its model and its cost lines exactly as the hot tables gave them (so per-kind
    // and per-model metrics of archived months stay exact).
    for c in store.archived_costs(None, None).unwrap() {
        assert_eq!(c.model, HAIKU, "model of {}", c.event_id);
        let mut want: Vec<_> = before_raw.lines.iter().filter(|l| l.event_id == c.event_id).cloned().collect();
        let mut got = c.lines.clone();
        want.sort_by_key(|l| l.id);
        got.sort_by_key(|l| l.id);
        assert!(!got.is_empty(), "lines of {}", c.event_id);
        assert_eq!(got, want, "archived lines of {}", c.event_id);
        assert_eq!(got.iter().map(|l| l.amount).sum::<rust_decimal::Decimal>(), c.cost_total, "lines add up to the event's cost");
    }

    // A re-sent January event is still a duplicate, and counts nowhere twice.
    let again = store.write_batch(&[WriteOp::Usage(fx.january_event.clone())]).unwrap();
    assert_eq!(again.duplicate_events, vec![fx.january_event.event_id], "the archived event is reported a duplicate");
    assert!(again.inserted_events.is_empty(), "nothing inserted for the re-sent event");
    assert_eq!(count(&store, "api_events"), 2, "no hot row for the re-sent event");
    assert_eq!(totals(&store), before_totals, "the re-sent event adds to no total");

    // Idempotent: a second run archives nothing more.
    let second = archiver.run(day("2026-03-01"), today()).unwrap();
    assert!(second.is_empty(), "no hot events left in closed months: {second:?}");
    let one = archiver.archive_month(&tally_archive::month::parse_month("2026-01").unwrap()).unwrap();
    assert_eq!(one.action, "already_archived", "archiving an archived month again is a no-op");

    let reports = archiver.verify(chrono::Utc::now()).unwrap();
    assert_eq!(reports.len(), 2, "two archived months verified");
    assert!(reports.iter().all(|r| r.problems.is_empty() && r.late_hot_events == 0), "verify finds nothing: {reports:?}");
    assert!(archiver.list().unwrap().iter().all(|m| m.verified_at.is_some()), "verified_at recorded");

    // Restore both, twice: everything is back exactly.
    for month in ["2026-01", "2026-02"] {
        assert_eq!(archiver.restore(month).unwrap().action, "restored", "{month} restored");
        assert_eq!(archiver.restore(month).unwrap().action, "already_restored", "{month} second restore is a no-op");
    }
    assert_eq!(count(&store, "api_events"), 12, "all twelve events hot again");
    assert_eq!(store.archived_event_count("2026-01").unwrap(), 0, "the hot index no longer holds January");
    assert_eq!(totals(&store), before_totals, "totals identical after the round trip");
    assert_eq!(raw(&store, &fx), before_raw, "every event, line, message cost, payload and invoice line is back");

    // After a restore, a re-sent event is a duplicate of the hot row, as it always was.
    let again = store.write_batch(&[WriteOp::Usage(fx.january_event.clone())]).unwrap();
    assert_eq!(again.duplicate_events.len(), 1, "re-sent event after restore is a duplicate");

    // Archive again, corrupt a file: verify reports it, restore refuses, nothing changes.
    let outcomes = archiver.run(day("2026-02-01"), today()).unwrap();
    assert_eq!(outcomes.len(), 1, "only January qualifies before February 1");
    let file = db.archive_dir().join("2026-01").join("user_invoice_line_item.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let reports = archiver.verify(chrono::Utc::now()).unwrap();
    let jan = reports.iter().find(|r| r.month == "2026-01").unwrap();
    assert!(jan.problems.iter().any(|p| p.contains("sha256")), "verify names the checksum mismatch: {jan:?}");
    let err = archiver.restore("2026-01").unwrap_err();
    assert!(matches!(err, ArchiveError::Corrupt(_)), "restore of a corrupt file is refused: {err:?}");
    assert_eq!(err.code(), "archive_corrupt", "stable error code");
    assert_eq!(store.archived_event_count("2026-01").unwrap(), 6, "the refused restore changed nothing");
    assert_eq!(totals(&store), before_totals, "totals still identical");
}

#[test]
fn bad_input_is_refused_with_stable_codes() {
    let db = TestDb::sqlite();
    let store = db.open();
    let archiver = Archiver::new(store, db.archive_dir());
    let err = archiver.restore("2026-13").unwrap_err();
    assert_eq!(err.code(), "archive_invalid", "a bad month is invalid input: {err}");
    let err = archiver.restore("2026-01").unwrap_err();
    assert_eq!(err.code(), "archive_not_found", "a month never archived is not found: {err}");
    let err = archiver.run_policy(0, today()).unwrap_err();
    assert_eq!(err.code(), "archive_invalid", "keeping zero months is refused: {err}");
    assert!(archiver.run(day("2026-03-01"), today()).unwrap().is_empty(), "an empty store archives nothing");
    assert!(!db.archive_dir().exists(), "and writes no files");
}
