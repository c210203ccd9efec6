//! Many writers and readers at once: no "database is locked", every id stored once.

use std::collections::HashSet;
use std::sync::Arc;

use tally_store::{LineFilter, Role, WriteOp};
use uuid::Uuid;

use crate::common::{at, count, message, on_both_backends, seeded, tokens, usage_for, TestDb};

on_both_backends!(concurrent_overlapping_batches_store_each_event_once);

/// Writer threads.
const WRITERS: usize = 4;
/// Batches each writer sends.
const BATCHES: usize = 10;
/// Usage events per batch.
const EVENTS_PER_BATCH: usize = 20;

fn concurrent_overlapping_batches_store_each_event_once(db: &TestDb) {
    let (store, thread) = seeded(db);
    let when = at("2025-03-01T10:00:00Z");
    // Every writer sends the same batches: each event is offered WRITERS times at once.
    let batches: Vec<Vec<WriteOp>> = (0..BATCHES)
        .map(|b| {
            let m = message(&thread, Role::Assistant, &format!("batch {b}"), when);
            let mut ops = vec![WriteOp::Message(m.clone())];
            for _ in 0..EVENTS_PER_BATCH {
                ops.push(WriteOp::Usage(usage_for(&store, &thread, Some(&m), &tokens(10, 10), when)));
            }
            ops
        })
        .collect();
    let batches = Arc::new(batches);
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, batches) = (store.clone(), Arc::clone(&batches));
            std::thread::spawn(move || {
                let mut inserted = Vec::new();
                for i in 0..BATCHES {
                    // Writers walk the batches in different orders.
                    let batch = &batches[(i + w * 3) % BATCHES];
                    let outcome = store.write_batch(batch).unwrap_or_else(|e| panic!("writer {w}: {e}"));
                    inserted.extend(outcome.inserted_events);
                    store.usage_events(&LineFilter::default(), 5).unwrap_or_else(|e| panic!("reader {w}: {e}"));
                }
                inserted
            })
        })
        .collect();
    let mut inserted: Vec<Uuid> = Vec::new();
    for h in handles {
        inserted.extend(h.join().expect("writer thread"));
    }
    let unique: HashSet<Uuid> = inserted.iter().copied().collect();
    assert_eq!(inserted.len(), BATCHES * EVENTS_PER_BATCH, "each event reported inserted exactly once overall");
    assert_eq!(unique.len(), inserted.len(), "no event reported inserted twice");
    assert_eq!(count(&store, "api_events"), (BATCHES * EVENTS_PER_BATCH) as i64, "each event stored once");
    assert_eq!(count(&store, "user_invoice_line_item"), (2 * BATCHES * EVENTS_PER_BATCH) as i64, "lines stored once");
}
