//! Measures `Store::write_batch` throughput with 10k priced usage events.
//!
//! `cargo run --release -p tally-store --example write_throughput [-- DATABASE_URL]`
//! (default: a fresh SQLite file in a temp dir). Prints events/s; asserts nothing.

use std::error::Error;
use std::time::Instant;

use chrono::{Duration, Utc};
use tally_domain::{price_usage, Catalog, Usage, UsageKind};
use tally_store::{Store, ThreadRecord, UsageRecord, UserRecord, WriteOp};
use uuid::Uuid;

/// Usage events per run.
const EVENTS: usize = 10_000;
/// Events per `write_batch` call in the batched run (a persister's `max_events`).
const BATCH: usize = 1_000;
/// Threads the events are spread over.
const THREADS: usize = 100;
/// The model every event uses.
const MODEL: &str = "claude-3-5-haiku-20241022";

fn events(store: &Store, threads: &[ThreadRecord], n: usize) -> Result<Vec<WriteOp>, Box<dyn Error>> {
    let book = store.load_price_book()?;
    let start = Utc::now() - Duration::hours(1);
    let mut ops = Vec::with_capacity(n);
    for i in 0..n {
        let thread = &threads[i % threads.len()];
        let mut usage = Usage::new();
        usage.add_tokens(UsageKind::InputTokens, 1_000 + i as u64);
        usage.add_tokens(UsageKind::OutputTokens, 200 + (i % 500) as u64);
        usage.add_tokens(UsageKind::CacheReadTokens, 5_000);
        let occurred_at = start + Duration::milliseconds(i as i64);
        ops.push(WriteOp::Usage(UsageRecord {
            event_id: Uuid::now_v7(),
            user_id: thread.user_id.clone(),
            thread_id: Some(thread.thread_id),
            message_id: Some(Uuid::now_v7()),
            model: MODEL.into(),
            event_type: String::new(),
            source: "bench".into(),
            idempotency_key: None,
            occurred_at,
            cost: price_usage(&book, MODEL, occurred_at, &usage)?,
            key_id: None,
            task: Some("bench".into()),
            successful: true,
        }));
    }
    Ok(ops)
}

/// CPU time of this thread so far (Linux), to see past a busy machine's wall clock.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: i64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::nanoseconds(nanos))
}

/// When a measurement started: wall clock and thread CPU time.
struct Mark(Instant, Option<Duration>);

fn mark() -> Mark {
    Mark(Instant::now(), thread_cpu())
}

fn report(label: &str, n: usize, started: Mark) {
    let secs = started.0.elapsed().as_secs_f64();
    let cpu = match (started.1, thread_cpu()) {
        (Some(a), Some(b)) => {
            let cpu = (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6;
            format!(" (cpu {:.3} s = {:.0} events/cpu-s)", cpu, n as f64 / cpu)
        }
        _ => String::new(),
    };
    println!("{label}: {n} usage events in {:.3} s = {:.0} events/s{cpu}", secs, n as f64 / secs);
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let url = std::env::args().nth(1).unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = Store::open(&url)?;
    store.seed(&Catalog::parse(include_str!("../../catalog/prices.json"))?)?;
    println!("backend: {}", store.backend().as_str());
    let now = Utc::now() - Duration::days(1);
    let user = format!("bench-{}", Uuid::now_v7().simple());
    store.create_user(&UserRecord { user_id: user.clone(), username: user.clone(), email: None, created_at: now })?;
    let mut threads = Vec::with_capacity(THREADS);
    for i in 0..THREADS {
        let t = ThreadRecord {
            thread_id: Uuid::now_v7(),
            user_id: user.clone(),
            title: format!("bench {i}"),
            model: MODEL.into(),
            created_at: now,
            updated_at: now,
            is_active: true,
        };
        store.create_thread(&t)?;
        threads.push(t);
    }

    let ops = events(&store, &threads, EVENTS)?;
    let started = mark();
    for chunk in ops.chunks(BATCH) {
        store.write_batch(chunk)?;
    }
    report(&format!("write_batch x{} of {BATCH}", EVENTS / BATCH), EVENTS, started);

    let ops = events(&store, &threads, EVENTS)?;
    let started = mark();
    store.write_batch(&ops)?;
    report(&format!("write_batch x1 of {EVENTS}"), EVENTS, started);

    let started = mark();
    let outcome = store.write_batch(&ops)?;
    report("same batch again (all duplicates)", outcome.duplicate_events.len(), started);
    Ok(())
}
