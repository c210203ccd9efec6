//! Closing and reopening the database loses nothing.

use tally_domain::{Invoice, UsageKind};
use tally_store::{LineFilter, Role};

use crate::common::{at, dec, message, on_both_backends, ops, seeded, tokens, uninvoiced, usage_for, TestDb, HAIKU};

on_both_backends!(reopening_keeps_everything);

fn reopening_keeps_everything(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00.654321Z");
    let a = message(&thread, Role::Assistant, "kept", when);
    let usage = usage_for(&store, &thread, Some(&a), &tokens(1234, 567), when);
    store.write_batch(&ops(&[&a], &[&usage])).expect("write");
    store.add_price_version(HAIKU, &UsageKind::OutputTokens, dec("4.5"), at("2026-01-01T00:00:00Z")).expect("price");
    let lines = store.usage_lines(&uninvoiced("alice")).expect("lines");
    let invoice = Invoice::new("alice".into(), None, None, lines, at("2025-04-01T00:00:00Z"));
    store.create_invoice(&invoice).expect("invoice");

    let counts = store.row_counts().expect("counts");
    let messages = store.thread_messages(thread.thread_id).expect("messages");
    let threads = store.list_threads(Some("alice"), 10, 0).expect("threads");
    let history = store.price_history(HAIKU, &UsageKind::OutputTokens).expect("history");
    let events = store.usage_events(&LineFilter::default(), 10).expect("events");
    drop(store);

    let store = db.open();
    assert_eq!(store.row_counts().expect("counts"), counts, "every row is still there");
    assert_eq!(store.thread_messages(thread.thread_id).expect("messages"), messages, "messages and costs kept");
    assert_eq!(store.list_threads(Some("alice"), 10, 0).expect("threads"), threads, "threads kept");
    assert_eq!(store.price_history(HAIKU, &UsageKind::OutputTokens).expect("history"), history, "price history kept");
    assert_eq!(store.usage_events(&LineFilter::default(), 10).expect("events"), events, "usage kept");
    assert_eq!(store.get_invoice(invoice.id).expect("get"), Some(invoice), "invoice kept");
}
