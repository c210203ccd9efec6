#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Redis budget ledger against a real Redis: concurrent reserves from two nodes, a
//! node killed mid-request, Redis losing its data, idempotent settles, and outages.
//!
//! The Redis address comes from `TALLY_TEST_REDIS_URL` (`scripts/services.sh env`);
//! without it the tests fail unless `TALLY_SKIP_REDIS_TESTS=1`. Every test uses its own
//! key prefix, and the flush test its own database number, so tests run in parallel.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_redis::redis;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tally_actors::budget::{self, BudgetError, BudgetLedger, BudgetLimit, RedisLedger, RedisLedgerConfig, SpendLoader, WindowState};
use tally_domain::{BudgetPeriod, BudgetWindow, Tz};
use uuid::Uuid;

/// Lease long enough never to expire during a test.
const LEASE: Duration = Duration::from_secs(60);
/// Lease of a hold meant to expire.
const SHORT_LEASE: Duration = Duration::from_millis(300);
/// Comfortably past [`SHORT_LEASE`].
const PAST_SHORT_LEASE: Duration = Duration::from_millis(600);
/// Bound on any call while Redis is unreachable.
const OUTAGE_CALL_BOUND: Duration = Duration::from_secs(2);
/// Database number used only by the flush test (FLUSHDB wipes the whole database).
const FLUSH_DB: u32 = 13;
/// Concurrent reserves in the two-node test.
const CONCURRENT_RESERVES: usize = 200;

fn redis_url() -> Option<String> {
    match std::env::var("TALLY_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ if std::env::var("TALLY_SKIP_REDIS_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("TALLY_TEST_REDIS_URL is not set and TALLY_SKIP_REDIS_TESTS=1: skipping");
            None
        }
        _ => panic!(
            "TALLY_TEST_REDIS_URL is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\" \
             (or set TALLY_SKIP_REDIS_TESTS=1 to skip the Redis tests)"
        ),
    }
}

/// `url` with its database number replaced by `db`.
fn with_db(url: &str, db: u32) -> String {
    let base = match url.trim_end_matches('/').rsplit_once('/') {
        Some((base, last)) if !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
        _ => url.trim_end_matches('/').to_string(),
    };
    format!("{base}/{db}")
}

fn config(test: &str) -> RedisLedgerConfig {
    RedisLedgerConfig { key_prefix: format!("tally:budget:test:{test}:{}:", Uuid::now_v7()), ..RedisLedgerConfig::default() }
}

type SpendTable = Arc<Mutex<HashMap<(Uuid, chrono::DateTime<Utc>), Decimal>>>;

/// The "database": committed spend per window, counting loads.
#[derive(Clone, Default)]
struct Db {
    spent: SpendTable,
    loads: Arc<AtomicUsize>,
}

impl Db {
    fn add(&self, b: Uuid, w: BudgetWindow, v: Decimal) {
        *self.spent.lock().unwrap().entry((b, w.start)).or_default() += v;
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn loader(&self) -> SpendLoader {
        let db = self.clone();
        Arc::new(move |b, w| {
            db.loads.fetch_add(1, Ordering::SeqCst);
            Ok(db.spent.lock().unwrap().get(&(b, w.start)).copied().unwrap_or_default())
        })
    }
}

/// Delete every key under the ledger's prefix (keys also expire on their own).
async fn cleanup(url: &str, ledger: &RedisLedger) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{}*", ledger.config().key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.unwrap();
    }
}

fn today() -> BudgetWindow {
    tally_domain::window(BudgetPeriod::Daily, Tz::UTC, Utc::now())
}

fn this_month() -> BudgetWindow {
    tally_domain::window(BudgetPeriod::Monthly, Tz::UTC, Utc::now())
}

fn limit(b: Uuid, max: Decimal, window: BudgetWindow) -> BudgetLimit {
    BudgetLimit { budget_id: b, max, window }
}

async fn state(ledger: &dyn BudgetLedger, l: &BudgetLimit) -> WindowState {
    ledger.state(l).await.unwrap()
}

/// Small deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Rng((Uuid::now_v7().as_u128() as u64) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random amount in [0.01, 0.11) USD with 10 decimal places.
    fn amount(&mut self) -> Decimal {
        Decimal::new(100_000_000 + (self.next() % 1_000_000_000) as i64, 10)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_from_two_nodes_never_overspend() {
    let Some(url) = redis_url() else { return };
    let db = Db::default();
    let b = Uuid::now_v7();
    let window = today();
    db.add(b, window, dec!(0.5));
    let config = config("two_nodes");
    let node_a = RedisLedger::connect_with(&url, db.loader(), config.clone()).unwrap();
    let node_b = RedisLedger::connect_with(&url, db.loader(), config).unwrap();
    let max = dec!(5);
    let l = limit(b, max, window);

    let mut rng = Rng::new();
    let requests: Vec<(Uuid, Decimal)> = (0..CONCURRENT_RESERVES).map(|_| (Uuid::now_v7(), rng.amount())).collect();
    let tasks: Vec<_> = requests
        .iter()
        .enumerate()
        .map(|(i, (hold, amount))| {
            let node = if i % 2 == 0 { node_a.clone() } else { node_b.clone() };
            let (hold, amount, l) = (*hold, *amount, l.clone());
            tokio::spawn(async move { (hold, amount, node.reserve(hold, &[l], amount, LEASE).await) })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut rejected = Vec::new();
    for t in tasks {
        let (hold, amount, result) = t.await.unwrap();
        match result {
            Ok(()) => admitted.push((hold, amount)),
            Err(BudgetError::Exceeded { .. }) => rejected.push(amount),
            Err(other) => panic!("a reserve may only be admitted or exceed the budget, got {other}"),
        }
    }
    let sum: Decimal = admitted.iter().map(|(_, a)| *a).sum();
    assert!(!admitted.is_empty() && !rejected.is_empty(), "the budget is contended: {} admitted, {} rejected", admitted.len(), rejected.len());
    assert!(dec!(0.5) + sum <= max, "admitted {sum} on top of 0.5 spent must fit in {max}");
    let remaining = max - dec!(0.5) - sum;
    assert!(
        rejected.iter().all(|a| *a > remaining),
        "every rejected amount exceeded the headroom it saw (final headroom {remaining}): no false refusals"
    );
    let s = state(&node_a, &l).await;
    assert_eq!(s, WindowState { spent: dec!(0.5), reserved: sum }, "reserved is the exact sum of admitted holds, the baseline counted once");
    assert_eq!(state(&node_b, &l).await, s, "both nodes see the same state");
    assert!(db.loads() >= 1, "the baseline came from the loader");

    // Settle every admitted hold at 80% of its reservation (exact to 1e-10 USD).
    let mut actual_sum = Decimal::ZERO;
    for (i, (hold, amount)) in admitted.iter().enumerate() {
        let actual = (*amount * dec!(0.8)).round_dp(10);
        actual_sum += actual;
        let node = if i % 2 == 0 { &node_b } else { &node_a };
        node.settle(*hold, actual).await.unwrap();
    }
    assert_eq!(state(&node_a, &l).await, WindowState { spent: dec!(0.5) + actual_sum, reserved: Decimal::ZERO }, "settles replace holds exactly");
    cleanup(&url, &node_a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaks_nothing_after_its_lease() {
    let Some(url) = redis_url() else { return };
    let db = Db::default();
    let b = Uuid::now_v7();
    let l = limit(b, dec!(5), today());
    let config = config("killed_node");
    let survivor = RedisLedger::connect_with(&url, db.loader(), config.clone()).unwrap();
    let doomed_hold = Uuid::now_v7();
    {
        let doomed = RedisLedger::connect_with(&url, db.loader(), config).unwrap();
        doomed.reserve(doomed_hold, std::slice::from_ref(&l), dec!(4), SHORT_LEASE).await.unwrap();
        // Dropped without settle or release: the process died mid-request.
    }
    let r = survivor.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(2), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "the dead node's hold still counts during its lease");
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    assert_eq!(state(&survivor, &l).await, WindowState::default(), "after the lease the budget is whole again");
    survivor.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(5), LEASE).await.unwrap();
    assert_eq!(
        survivor.renew(doomed_hold, LEASE).await.map_err(|e| e.code()),
        Err("budget_hold_not_active"),
        "an expired hold cannot be renewed"
    );
    // The request did run upstream: a late settle (say, from a recovered worker) counts once.
    survivor.settle(doomed_hold, dec!(1.5)).await.unwrap();
    survivor.settle(doomed_hold, dec!(1.5)).await.unwrap();
    assert_eq!(state(&survivor, &l).await, WindowState { spent: dec!(1.5), reserved: dec!(5) }, "the late settle counted once");
    cleanup(&url, &survivor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilds_from_the_loader_after_redis_loses_its_data() {
    let Some(url) = redis_url() else { return };
    let url = with_db(&url, FLUSH_DB);
    let db = Db::default();
    let b = Uuid::now_v7();
    let w = today();
    let l = limit(b, dec!(10), w);
    let ledger = RedisLedger::connect_with(&url, db.loader(), config("flush")).unwrap();
    let hold = Uuid::now_v7();
    ledger.reserve(hold, std::slice::from_ref(&l), dec!(3), LEASE).await.unwrap();
    ledger.settle(hold, dec!(2.25)).await.unwrap();
    db.add(b, w, dec!(2.25)); // what the billing path persisted
    let in_flight = Uuid::now_v7();
    ledger.reserve(in_flight, std::slice::from_ref(&l), dec!(1), LEASE).await.unwrap();
    assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(2.25), reserved: dec!(1) }, "before the loss");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await.unwrap();

    let loads_before = db.loads();
    assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(2.25), reserved: Decimal::ZERO }, "spend rebuilt from the database");
    assert_eq!(db.loads(), loads_before + 1, "by one load");
    // The in-flight request finishes; the billing path persists it, the settle adds nothing
    // (its hold was lost and the database already has it).
    db.add(b, w, dec!(0.5));
    ledger.settle(in_flight, dec!(0.5)).await.unwrap();
    assert_eq!(state(&ledger, &l).await.spent, dec!(2.25), "a lost hold's settle is not double counted");
    let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(7.7500000001), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "the rebuilt spend is enforced");
    ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(7.75), LEASE).await.unwrap();
    cleanup(&url, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_release_and_renew_are_idempotent() {
    let Some(url) = redis_url() else { return };
    let ledger = RedisLedger::connect_with(&url, Db::default().loader(), config("idempotent")).unwrap();
    let l = limit(Uuid::now_v7(), dec!(10), today());
    let hold = Uuid::now_v7();
    ledger.reserve(hold, std::slice::from_ref(&l), dec!(3), LEASE).await.unwrap();
    ledger.reserve(hold, std::slice::from_ref(&l), dec!(3), LEASE).await.unwrap();
    assert_eq!(state(&ledger, &l).await.reserved, dec!(3), "the same hold id reserved twice counts once");
    ledger.settle(hold, dec!(1.0000000001)).await.unwrap();
    ledger.settle(hold, dec!(1.0000000001)).await.unwrap();
    ledger.release(hold).await.unwrap();
    assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(1.0000000001), reserved: Decimal::ZERO }, "settle twice = once");
    ledger.reserve(hold, std::slice::from_ref(&l), dec!(3), LEASE).await.unwrap();
    assert_eq!(state(&ledger, &l).await.reserved, Decimal::ZERO, "a finished hold id is not reused");

    let other = Uuid::now_v7();
    ledger.reserve(other, std::slice::from_ref(&l), dec!(2), SHORT_LEASE).await.unwrap();
    ledger.renew(other, LEASE).await.unwrap();
    ledger.renew(other, SHORT_LEASE).await.unwrap();
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    assert_eq!(state(&ledger, &l).await.reserved, dec!(2), "a renewed hold outlives its first lease, and renew never shortens it");
    ledger.release(other).await.unwrap();
    ledger.release(other).await.unwrap();
    ledger.settle(other, dec!(2)).await.unwrap();
    assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(1.0000000001), reserved: Decimal::ZERO }, "released costs nothing; a later settle changes nothing");
    ledger.settle(Uuid::now_v7(), dec!(9)).await.unwrap();
    assert_eq!(state(&ledger, &l).await.spent, dec!(1.0000000001), "an unknown hold changes nothing");
    assert_eq!(ledger.settle(other, dec!(-1)).await.map_err(|e| e.code()), Err("budget_invalid"), "negative cost refused");
    cleanup(&url, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_across_windows_and_settles_into_the_hold_windows() {
    let Some(url) = redis_url() else { return };
    let db = Db::default();
    let (daily, monthly) = (Uuid::now_v7(), Uuid::now_v7());
    db.add(monthly, this_month(), dec!(95));
    let ledger = RedisLedger::connect_with(&url, db.loader(), config("windows")).unwrap();
    let d = limit(daily, dec!(10), today());
    let m = limit(monthly, dec!(100), this_month());
    let r = ledger.reserve(Uuid::now_v7(), &[d.clone(), m.clone()], dec!(6), LEASE).await;
    match r {
        Err(BudgetError::Exceeded { budget_id, spent, remaining, resets_at, .. }) => {
            assert_eq!((budget_id, spent, remaining, resets_at), (monthly, dec!(95), dec!(5), this_month().end), "names the monthly budget");
        }
        other => panic!("the monthly budget must refuse, got {other:?}"),
    }
    assert_eq!(state(&ledger, &d).await.reserved, Decimal::ZERO, "nothing reserved in the daily window");
    let hold = Uuid::now_v7();
    ledger.reserve(hold, &[d.clone(), m.clone()], dec!(5), LEASE).await.unwrap();
    assert_eq!(state(&ledger, &d).await.reserved, dec!(5), "reserved in the daily window");
    assert_eq!(state(&ledger, &m).await.reserved, dec!(5), "and in the monthly window");

    // The day rolls over before the hold settles: the cost lands in the hold's windows.
    let tomorrow = limit(daily, dec!(10), tally_domain::window(BudgetPeriod::Daily, Tz::UTC, today().end));
    ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&tomorrow), dec!(1), LEASE).await.unwrap();
    ledger.settle(hold, dec!(4)).await.unwrap();
    assert_eq!(state(&ledger, &d).await, WindowState { spent: dec!(4), reserved: Decimal::ZERO }, "today's window gets the cost");
    assert_eq!(state(&ledger, &m).await, WindowState { spent: dec!(99), reserved: Decimal::ZERO }, "and the month's");
    assert_eq!(state(&ledger, &tomorrow).await, WindowState { spent: Decimal::ZERO, reserved: dec!(1) }, "tomorrow's does not");
    cleanup(&url, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_reloads_and_keeps_live_holds() {
    let Some(url) = redis_url() else { return };
    let db = Db::default();
    let b = Uuid::now_v7();
    let w = today();
    db.add(b, w, dec!(1));
    let ledger = RedisLedger::connect_with(&url, db.loader(), config("invalidate")).unwrap();
    let l = limit(b, dec!(10), w);
    ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(2), LEASE).await.unwrap();
    db.add(b, w, dec!(6));
    assert_eq!(state(&ledger, &l).await.spent, dec!(1), "cached until invalidated");
    ledger.invalidate(b).await.unwrap();
    assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(7), reserved: dec!(2) }, "reloaded; the live hold still counts");
    let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(1.0000000001), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "the reloaded spend is enforced");
    cleanup(&url, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_budgets_beyond_the_exact_range_and_never_shrinks() {
    let Some(url) = redis_url() else { return };
    let ledger = RedisLedger::connect_with(&url, Db::default().loader(), config("range")).unwrap();
    let huge = limit(Uuid::now_v7(), dec!(1_000_000), today());
    let r = ledger.reserve(Uuid::now_v7(), &[huge], dec!(1), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_invalid"), "a budget above ~$900k per window is refused");
    let l = limit(Uuid::now_v7(), dec!(1), today());
    let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(1e20), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "an enormous amount is refused, not wrapped");
    let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(1.5), LEASE).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "never shrunk to the headroom");
    assert_eq!(state(&ledger, &l).await.reserved, Decimal::ZERO, "nothing reserved");
    cleanup(&url, &ledger).await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unavailable_quickly() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let loader = Db::default().loader();
    let ledger = RedisLedger::connect(&url, loader.clone()).unwrap();
    let started = Instant::now();
    let r = ledger.reserve(Uuid::now_v7(), &[limit(Uuid::now_v7(), dec!(1), today())], dec!(0.1), LEASE).await;
    assert_eq!(r.as_ref().map_err(|e| e.code()), Err("budget_unavailable"), "fail closed: {r:?}");
    assert!(r.is_err_and(|e| e.is_retryable()), "an outage is retryable");
    assert!(started.elapsed() < OUTAGE_CALL_BOUND, "refused within {OUTAGE_CALL_BOUND:?}, took {:?}", started.elapsed());
    let started = Instant::now();
    let r = budget::redis(&url, loader).await;
    assert_eq!(r.err().map(|e| e.code()), Some("budget_unavailable"), "the constructor checks Redis answers");
    assert!(started.elapsed() < OUTAGE_CALL_BOUND, "quickly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_redis_is_unavailable_within_the_timeout() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let ledger = RedisLedger::connect(&url, Db::default().loader()).unwrap();
    let started = Instant::now();
    let r = ledger.settle(Uuid::now_v7(), dec!(1)).await;
    assert_eq!(r.map_err(|e| e.code()), Err("budget_unavailable"), "a silent Redis fails closed");
    assert!(started.elapsed() < OUTAGE_CALL_BOUND, "within {OUTAGE_CALL_BOUND:?}, took {:?}", started.elapsed());
    drop(listener);
}

#[test]
fn database_number_is_replaced() {
    assert_eq!(with_db("redis://127.0.0.1:6379", 13), "redis://127.0.0.1:6379/13", "appended");
    assert_eq!(with_db("redis://127.0.0.1:6379/2", 13), "redis://127.0.0.1:6379/13", "replaced");
    assert_eq!(with_db("redis://127.0.0.1:6379/", 13), "redis://127.0.0.1:6379/13", "trailing slash");
}
