//! Invoices over stored usage lines.

use tally_domain::{Invoice, InvoiceStatus};
use tally_store::StoreError;
use uuid::Uuid;

use crate::common::{at, count, dec, message, on_both_backends, ops, seeded, tokens, uninvoiced, usage_for, TestDb};
use tally_store::Role;

on_both_backends!(invoice_round_trip_and_second_invoice_conflicts);

fn invoice_round_trip_and_second_invoice_conflicts(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    let a = message(&thread, Role::Assistant, "one", when);
    let b = message(&thread, Role::Assistant, "two", when + chrono::Duration::minutes(1));
    let ua = usage_for(&store, &thread, Some(&a), &tokens(1234, 567), a.created_at);
    let ub = usage_for(&store, &thread, Some(&b), &tokens(1000, 1), b.created_at);
    store.write_batch(&ops(&[&a, &b], &[&ua, &ub])).expect("write");

    let lines = store.usage_lines(&uninvoiced("alice")).expect("lines");
    assert_eq!(lines.len(), 4, "two lines per usage");
    assert_eq!(store.usage_events(&uninvoiced("alice"), 10).expect("events").len(), 2, "both events uninvoiced");
    let invoice =
        Invoice::new("alice".into(), Some(thread.thread_id), None, lines.clone(), at("2025-04-01T00:00:00.000001Z"));
    assert_eq!(invoice.subtotal, dec("0.0032552") + dec("0.000804"), "fixture: exact subtotal");
    store.create_invoice(&invoice).expect("create invoice");

    let back = store.get_invoice(invoice.id).expect("get").expect("stored invoice");
    assert_eq!(back, invoice, "invoice round trips with its lines, subtotal, total and status");
    assert_eq!(back.total, dec("0.004059"), "total rounded half-even to 6 places");
    assert!(store.usage_lines(&uninvoiced("alice")).expect("lines").is_empty(), "no uninvoiced lines left");
    assert!(store.usage_events(&uninvoiced("alice"), 10).expect("events").is_empty(), "no uninvoiced events left");
    let all = tally_store::LineFilter { user_id: Some("alice".into()), ..Default::default() };
    assert_eq!(store.usage_events(&all, 10).expect("events").len(), 2, "invoiced events still listed without the filter");

    let again = Invoice::new("alice".into(), None, None, lines.clone(), at("2025-04-02T00:00:00Z"));
    let err = store.create_invoice(&again).expect_err("lines already invoiced");
    assert!(matches!(err, StoreError::Conflict(_)), "second invoice over the same lines is a Conflict: {err:?}");
    assert_eq!(count(&store, "user_invoices"), 1, "the refused invoice was not stored");
    assert!(store.get_invoice(again.id).expect("get").is_none(), "refused invoice does not exist");
    assert_eq!(
        store.get_invoice(invoice.id).expect("get").expect("first").lines,
        invoice.lines,
        "lines stay on the first invoice"
    );

    let mut unknown = lines[0].clone();
    unknown.id = Uuid::now_v7();
    let ghost = Invoice::new("alice".into(), None, None, vec![unknown], at("2025-04-03T00:00:00Z"));
    assert!(matches!(store.create_invoice(&ghost), Err(StoreError::NotFound(_))), "unknown line is NotFound");

    // Lines name their user through their event: another user's line refuses the invoice.
    let mut bobs = usage_for(&store, &thread, None, &tokens(10, 1), when);
    bobs.user_id = "bob".into();
    bobs.thread_id = None;
    store.write_batch(&ops(&[], &[&bobs])).expect("write bob's usage");
    let bob_lines = store.usage_lines(&uninvoiced("bob")).expect("bob's lines");
    assert_eq!(bob_lines.len(), 2, "bob has two uninvoiced lines");
    let stolen = Invoice::new("alice".into(), None, None, bob_lines.clone(), at("2025-04-04T00:00:00Z"));
    let err = store.create_invoice(&stolen).expect_err("another user's lines");
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("belongs to user bob")), "foreign line is Invalid: {err:?}");
    assert!(store.get_invoice(stolen.id).expect("get").is_none(), "refused invoice does not exist");
    assert_eq!(store.usage_lines(&uninvoiced("bob")).expect("bob's lines"), bob_lines, "bob's lines stay unclaimed");

    let paid = store.set_invoice_status(invoice.id, InvoiceStatus::Paid).expect("pay");
    assert_eq!(paid.status, InvoiceStatus::Paid, "status returned as paid");
    assert_eq!(paid.lines, invoice.lines, "lines unchanged by payment");
    let listed = store.list_invoices("alice").expect("list");
    assert_eq!(listed.len(), 1, "one invoice for alice");
    assert_eq!(listed[0].status, InvoiceStatus::Paid, "listed invoice is paid");
    assert!(
        matches!(store.set_invoice_status(Uuid::now_v7(), InvoiceStatus::Paid), Err(StoreError::NotFound(_))),
        "unknown invoice is NotFound"
    );
}
