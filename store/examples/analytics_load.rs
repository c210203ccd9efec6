//! Loads generated usage for the analytics benchmark (`bench/analytics.sh`) through the
//! persister's own write path (`Store::write_batch`), so the daily rollups are built as in
//! production, and prints the write rate.
//!
//! `cargo run --release -p tally-store --example analytics_load -- DATABASE_URL EVENTS DAYS USERS`
//!
//! The shape: EVENTS spread evenly over the last DAYS days (ending yesterday), USERS users,
//! each using two of the catalogue's chat models; one user in two has a gateway key; six task
//! labels; one call in fifty failed. Deterministic (a fixed-seed generator), so runs compare.

use std::error::Error;
use std::time::Instant;

use chrono::{Duration, NaiveTime, Utc};
use tally_domain::{price_usage, Catalog, Usage, UsageKind};
use tally_store::{Store, UsageRecord, WriteOp};
use uuid::Uuid;

/// Events per `write_batch` call (a persister batch under load).
const BATCH: usize = 5_000;
/// Task labels.
const TASKS: [&str; 6] = ["chat", "summarize", "classify", "extract", "translate", "agent"];

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn Error>> {
    let url: String = arg(1, "sqlite:///tmp/tally-analytics.db".to_string());
    let events: usize = arg(2, 1_000_000);
    let days: i64 = arg(3, 120);
    let users: u64 = arg(4, 200);
    let catalog = Catalog::parse(include_str!("../../catalog/prices.json"))?;
    let store = Store::open(&url)?;
    store.seed(&catalog)?;
    let book = store.load_price_book()?;
    let models: Vec<String> = catalog
        .models
        .iter()
        .filter(|m| m.max_output_tokens.is_some())
        .map(|m| m.name.clone())
        .take(8)
        .collect();
    let keys: Vec<Option<Uuid>> = (0..users).map(|u| (u % 2 == 0).then(Uuid::now_v7)).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let first_day = Utc::now().date_naive() - Duration::days(days);
    let per_day = events.div_ceil(days as usize).max(1);
    let started = Instant::now();
    let mut written = 0usize;
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..events {
        let day = first_day + Duration::days((i / per_day) as i64);
        let second = ((i % per_day) as u64 * 86_400 / per_day as u64) as i64;
        let at = day.and_time(NaiveTime::MIN).and_utc() + Duration::seconds(second);
        let user = rng.below(users);
        let model = &models[((user + rng.below(2)) % models.len() as u64) as usize];
        let mut usage = Usage::new();
        usage.add_tokens(UsageKind::InputTokens, 200 + rng.below(4_000));
        usage.add_tokens(UsageKind::OutputTokens, 20 + rng.below(800));
        if rng.below(4) == 0 {
            usage.add_tokens(UsageKind::CacheReadTokens, rng.below(8_000));
        }
        batch.push(WriteOp::Usage(UsageRecord {
            event_id: Uuid::now_v7(),
            user_id: format!("user-{user:04}"),
            thread_id: None,
            message_id: None,
            model: model.clone(),
            event_type: String::new(),
            source: "bench".into(),
            idempotency_key: None,
            occurred_at: at,
            cost: price_usage(&book, model, at, &usage)?,
            key_id: keys[user as usize],
            task: Some(TASKS[rng.below(TASKS.len() as u64) as usize].to_string()),
            successful: rng.below(50) != 0,
        }));
        if batch.len() == BATCH {
            store.write_batch(&batch)?;
            written += batch.len();
            batch.clear();
            if written % 500_000 == 0 {
                let secs = started.elapsed().as_secs_f64();
                eprintln!("  {written} events, {:.0} events/s", written as f64 / secs);
            }
        }
    }
    store.write_batch(&batch)?;
    written += batch.len();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {written} events over {days} days for {users} users in {secs:.1} s = {:.0} events/s (rollups included)",
        written as f64 / secs
    );
    Ok(())
}
