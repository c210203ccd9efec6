#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hot-read cache against a real Redis (and the same bodies against the in-memory cache),
//! plus outages: a private `redis-server` killed and restarted, and one frozen with SIGSTOP.

use std::cell::Cell;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tally_store::cache::{keys, Cache, CacheConfig};
use tally_store::{StoreError, ThreadRecord};
use uuid::Uuid;

/// Per-operation timeout used by these tests.
const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// Generous bound on any single call while Redis is down or frozen.
const OUTAGE_CALL_BOUND: Duration = Duration::from_secs(2);
/// How long a restarted or thawed Redis may take to be used again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long a spawned redis-server may take to answer.
const SERVER_START_BOUND: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    match std::env::var("TALLY_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "TALLY_TEST_REDIS_URL is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\""
        ),
    }
}

/// A key prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    format!("test:{test}:{}:", Uuid::now_v7())
}

fn config(test: &str) -> CacheConfig {
    CacheConfig { key_prefix: prefix(test), op_timeout: OP_TIMEOUT, ..CacheConfig::default() }
}

fn memory_cache(config: CacheConfig) -> Cache {
    Cache::from_url(None, config).expect("memory cache")
}

fn redis_cache_at(url: &str, config: CacheConfig) -> Cache {
    let cache = Cache::from_url(Some(url), config).expect("redis cache");
    assert_eq!(cache.backend_name(), "redis", "a URL selects Redis");
    cache
}

fn redis_cache(config: CacheConfig) -> Cache {
    redis_cache_at(&redis_url(), config)
}

/// A raw connection for checks the cache API does not expose (TTLs).
fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection_with_timeout(Duration::from_secs(2)).unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Totals {
    thread_id: Uuid,
    total: String,
    lines: Vec<u32>,
}

fn sample() -> Totals {
    Totals { thread_id: Uuid::now_v7(), total: "0.001234".into(), lines: vec![1, 2, 3] }
}

fn thread_record() -> ThreadRecord {
    let now = tally_store::truncate_to_micros(Utc::now());
    ThreadRecord {
        thread_id: Uuid::now_v7(),
        user_id: "alice".into(),
        title: "Hello".into(),
        model: "claude-3-5-haiku-20241022".into(),
        created_at: now,
        updated_at: now,
        is_active: true,
    }
}

// ---- bodies shared by the memory and Redis caches ----

fn round_trip_and_expiry(cache: &Cache, short: &Cache) {
    assert!(cache.is_healthy(), "a fresh cache is healthy");
    assert!(cache.ping().is_ok(), "ping answers");
    let v = sample();
    cache.set_json("totals", &v);
    assert_eq!(cache.get_json::<Totals>("totals"), Some(v.clone()), "set then get returns the value");
    let t = thread_record();
    cache.set_json("thread", &t);
    assert_eq!(cache.get_json::<ThreadRecord>("thread"), Some(t), "store records round-trip through JSON");
    assert_eq!(cache.get_json::<Totals>("absent"), None, "an absent key is a miss");

    cache.set_json_with_ttl("brief", &v, Duration::from_millis(300));
    short.set_json("configured", &v);
    assert_eq!(cache.get_json::<Totals>("brief"), Some(v.clone()), "present before its TTL");
    assert_eq!(short.get_json::<Totals>("configured"), Some(v.clone()), "present before the configured TTL");
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(cache.get_json::<Totals>("brief"), None, "gone after its TTL");
    assert_eq!(short.get_json::<Totals>("configured"), None, "gone after the configured TTL");
    assert_eq!(cache.get_json::<Totals>("totals"), Some(v), "a default-TTL entry stays");
}

fn get_or_load_loads_once(cache: &Cache) {
    let calls = Cell::new(0u32);
    let v = sample();
    let load = || {
        calls.set(calls.get() + 1);
        Ok::<_, StoreError>(v.clone())
    };
    assert_eq!(cache.get_or_load("history", load).unwrap(), v, "first read loads");
    assert_eq!(cache.get_or_load("history", load).unwrap(), v, "second read is served");
    assert_eq!(cache.get_or_load("history", load).unwrap(), v, "third read is served");
    assert_eq!(calls.get(), 1, "the loader ran once");

    let failing = cache.get_or_load::<Totals, _>("missing-thread", || Err(StoreError::NotFound("thread".into())));
    assert_eq!(failing, Err(StoreError::NotFound("thread".into())), "loader errors come out unchanged");
    assert_eq!(cache.get_json::<Totals>("missing-thread"), None, "and are not cached");
}

fn invalidate_removes(cache: &Cache) {
    let thread = Uuid::now_v7();
    let other = Uuid::now_v7();
    let v = sample();
    for key in keys::thread_keys(thread, "bob") {
        cache.set_json(&key, &v);
    }
    cache.set_json(&keys::thread_history(other), &v);
    cache.set_json(&keys::dashboard_snapshot(), &v);
    cache.invalidate_thread(thread, "bob");
    assert_eq!(cache.get_json::<Totals>(&keys::thread_history(thread)), None, "history invalidated");
    assert_eq!(cache.get_json::<Totals>(&keys::thread_total(thread)), None, "total invalidated");
    assert_eq!(cache.get_json::<Totals>(&keys::user_metrics("bob")), None, "user metrics invalidated");
    assert_eq!(cache.get_json::<Totals>(&keys::thread_history(other)), Some(v.clone()), "other threads kept");
    assert_eq!(cache.get_json::<Totals>(&keys::dashboard_snapshot()), Some(v.clone()), "snapshot kept");

    let calls = Cell::new(0u32);
    let load = || {
        calls.set(calls.get() + 1);
        Ok::<_, StoreError>(v.clone())
    };
    cache.get_or_load(&keys::thread_total(thread), load).unwrap();
    cache.get_or_load(&keys::thread_total(thread), load).unwrap();
    cache.delete(&keys::thread_total(thread));
    cache.get_or_load(&keys::thread_total(thread), load).unwrap();
    assert_eq!(calls.get(), 2, "after delete the next read reloads from the database");
}

fn short_config(base: &CacheConfig) -> CacheConfig {
    CacheConfig { ttl: Duration::from_millis(300), ..base.clone() }
}

#[test]
fn memory_round_trip_and_expiry() {
    let c = config("mem-rt");
    round_trip_and_expiry(&memory_cache(c.clone()), &memory_cache(short_config(&c)));
}

#[test]
fn redis_round_trip_and_expiry() {
    let c = config("redis-rt");
    round_trip_and_expiry(&redis_cache(c.clone()), &redis_cache(short_config(&c)));
}

#[test]
fn memory_get_or_load_loads_once() {
    get_or_load_loads_once(&memory_cache(config("mem-gol")));
}

#[test]
fn redis_get_or_load_loads_once() {
    get_or_load_loads_once(&redis_cache(config("redis-gol")));
}

#[test]
fn memory_invalidate_removes() {
    invalidate_removes(&memory_cache(config("mem-inv")));
}

#[test]
fn redis_invalidate_removes() {
    invalidate_removes(&redis_cache(config("redis-inv")));
}

#[test]
fn memory_cache_is_bounded() {
    let cache = memory_cache(CacheConfig { max_memory_entries: 3, ..config("mem-bound") });
    for i in 0..5u32 {
        cache.set_json(&format!("k{i}"), &i);
    }
    assert_eq!(cache.get_json::<u32>("k0"), None, "oldest evicted");
    assert_eq!(cache.get_json::<u32>("k1"), None, "second oldest evicted");
    assert_eq!(cache.get_json::<u32>("k4"), Some(4), "newest kept");
    let Cache::Memory(m) = &cache else { panic!("memory cache expected") };
    assert_eq!(m.len(), 3, "never more than max_memory_entries");
}

#[test]
fn redis_is_shared_between_nodes_and_sets_px_ttl() {
    let c = config("redis-shared");
    let node_a = redis_cache(c.clone());
    let node_b = redis_cache(c.clone());
    let thread = Uuid::now_v7();
    let v = sample();
    node_a.set_json(&keys::thread_history(thread), &v);
    assert_eq!(node_b.get_json::<Totals>(&keys::thread_history(thread)), Some(v.clone()), "B reads what A wrote");
    node_b.invalidate_thread(thread, "carol");
    assert_eq!(node_a.get_json::<Totals>(&keys::thread_history(thread)), None, "A sees B's invalidation");

    node_a.set_json(&keys::thread_total(thread), &v);
    let full = format!("{}{}", c.key_prefix, keys::thread_total(thread));
    let pttl: i64 = redis::cmd("PTTL").arg(&full).query(&mut raw(&redis_url())).unwrap();
    let day_ms = 24 * 60 * 60 * 1000;
    assert!(pttl > day_ms - 60_000 && pttl <= day_ms, "default retention is a 24 h PX TTL, got {pttl} ms");

    let short = redis_cache(CacheConfig { ttl: Duration::from_secs(5), ..c });
    short.set_json(&keys::dashboard_snapshot(), &v);
    let full = format!("{}{}", short.config().key_prefix, keys::dashboard_snapshot());
    let pttl: i64 = redis::cmd("PTTL").arg(&full).query(&mut raw(&redis_url())).unwrap();
    assert!(pttl > 0 && pttl <= 5_000, "a configured TTL is the key's PX, got {pttl} ms");
}

fn delete_many_removes_exactly_those(cache: &Cache) {
    let keys: Vec<String> = (0..3).map(|_| keys::thread_total(Uuid::now_v7())).collect();
    for k in &keys {
        cache.set_json(k, &sample());
    }
    cache.delete_many(&keys[..2]);
    assert_eq!(cache.get_json::<Totals>(&keys[0]), None, "first deleted");
    assert_eq!(cache.get_json::<Totals>(&keys[1]), None, "second deleted");
    assert!(cache.get_json::<Totals>(&keys[2]).is_some(), "the third is untouched");
    cache.delete_many(&[]);
}

#[test]
fn memory_delete_many() {
    delete_many_removes_exactly_those(&memory_cache(config("mem-delete-many")));
}

#[test]
fn redis_delete_many() {
    delete_many_removes_exactly_those(&redis_cache(config("redis-delete-many")));
}

#[test]
fn another_nodes_invalidation_during_a_load_blocks_the_stale_fill() {
    // Node B misses and loads from the database; meanwhile node A commits a write and
    // invalidates. B's loaded value predates A's write, so it must not be cached.
    let c = config("cross-node-fill");
    let node_a = redis_cache(c.clone());
    let node_b = redis_cache(c);
    let user = format!("u-{}", Uuid::now_v7());
    let key = keys::user_metrics(&user);
    let loaded = node_b.get_or_load(&key, || {
        node_a.invalidate_thread(Uuid::now_v7(), &user);
        Ok(sample())
    });
    assert!(loaded.is_ok(), "the loader's value is returned");
    assert_eq!(node_b.get_json::<Totals>(&key), None, "B did not cache what A's write made stale");
    assert_eq!(node_a.get_json::<Totals>(&key), None, "nor does A see it");

    // With no invalidation in between, a fill by either node is shared.
    let fresh = sample();
    let again = node_b.get_or_load(&key, || Ok(fresh.clone())).unwrap();
    assert_eq!(again, fresh, "loads again");
    assert_eq!(node_a.get_json::<Totals>(&key), Some(fresh), "and this fill is cached for every node");
    node_a.delete(&key);
    assert_eq!(node_b.get_json::<Totals>(&key), None, "A's invalidation reaches B");
}

// ---- outages, against a private redis-server ----

/// A redis-server child on a free loopback port; killed on drop.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_redis(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (Debian's redis-server package; scripts/services.sh start installs it)")
}

impl PrivateRedis {
    fn start() -> Self {
        let mut server = PrivateRedis { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// (Re)start on the same port and wait until it answers PING.
    fn restart(&mut self) {
        self.child = Some(spawn_redis(self.port, self.dir.path()));
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + SERVER_START_BOUND;
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "private redis-server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.pid()]).status().unwrap();
        assert!(status.success(), "kill {sig} worked");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a process stopped with SIGSTOP.
        self.kill();
    }
}

/// Call `f`, assert it returned within the outage bound, and pass its result on.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < OUTAGE_CALL_BOUND, "{what} took {took:?} during the outage (bound {OUTAGE_CALL_BOUND:?})");
    out
}

#[test]
fn redis_outage_falls_back_to_the_database_and_recovers() {
    let mut server = PrivateRedis::start();
    let cache = redis_cache_at(&server.url(), config("outage"));
    let v = sample();
    cache.set_json("cached", &v);
    assert_eq!(cache.get_json::<Totals>("cached"), Some(v.clone()), "the private Redis works");
    assert!(cache.is_healthy(), "healthy before the outage");

    server.kill();

    let calls = Cell::new(0u32);
    let from_db = Totals { total: "9.99".into(), ..sample() };
    let load = || {
        calls.set(calls.get() + 1);
        Ok::<_, StoreError>(from_db.clone())
    };
    let got = bounded("get_or_load", || cache.get_or_load("cached", load));
    assert_eq!(got, Ok(from_db.clone()), "with Redis gone the loader's data comes back, not an error");
    assert_eq!(calls.get(), 1, "the loader was called");
    assert!(!cache.is_healthy(), "the cache knows it is degraded");
    let again = bounded("second get_or_load", || cache.get_or_load("cached", load));
    assert_eq!(again, Ok(from_db.clone()), "still the database's data");
    assert_eq!(calls.get(), 2, "every read goes to the database while Redis is down");
    assert_eq!(bounded("get_json", || cache.get_json::<Totals>("cached")), None, "reads miss");
    bounded("set_json", || cache.set_json("other", &v));
    bounded("invalidate_thread", || cache.invalidate_thread(Uuid::now_v7(), "dave"));
    assert!(bounded("ping", || cache.ping()).is_err(), "ping reports the outage");

    server.restart();

    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        cache.set_json("after", &v);
        if cache.get_json::<Totals>("after") == Some(v.clone()) && cache.is_healthy() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not recover within {RECOVERY_BOUND:?} of Redis returning");
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls_before = calls.get();
    assert_eq!(cache.get_or_load("reloaded", load), Ok(from_db.clone()), "fills again");
    assert_eq!(cache.get_or_load("reloaded", load), Ok(from_db), "and serves from Redis");
    assert_eq!(calls.get(), calls_before + 1, "one load for two reads: the cache is back in use");
}

#[test]
fn frozen_redis_times_out_and_missed_invalidations_are_replayed() {
    let server = PrivateRedis::start();
    let cache = redis_cache_at(&server.url(), config("frozen"));
    let thread = Uuid::now_v7();
    let v = sample();
    for key in keys::thread_keys(thread, "erin") {
        cache.set_json(&key, &v);
    }
    assert_eq!(cache.get_json::<Totals>(&keys::thread_history(thread)), Some(v.clone()), "cached before");

    // A frozen server still accepts connections (the kernel does) but never answers:
    // only the operation timeout gets the caller out.
    server.signal("-STOP");
    let got = bounded("get_json on a frozen Redis", || cache.get_json::<Totals>(&keys::thread_history(thread)));
    assert_eq!(got, None, "a timed-out read is a miss");
    assert!(!cache.is_healthy(), "a timeout degrades the cache");
    // Skipped while degraded: must be replayed before the old entries are served again.
    bounded("invalidate_thread", || cache.invalidate_thread(thread, "erin"));
    let loaded = bounded("get_or_load", || cache.get_or_load("fresh", || Ok::<_, StoreError>(v.clone())));
    assert_eq!(loaded, Ok(v.clone()), "reads keep working from the loader");
    server.signal("-CONT");

    let deadline = Instant::now() + RECOVERY_BOUND;
    while !cache.is_healthy() {
        assert!(Instant::now() < deadline, "the cache did not recover within {RECOVERY_BOUND:?} of Redis thawing");
        let _ = cache.get_json::<Totals>("probe");
        std::thread::sleep(Duration::from_millis(100));
    }
    for key in keys::thread_keys(thread, "erin") {
        assert_eq!(
            cache.get_json::<Totals>(&key),
            None,
            "{key}: the invalidation missed during the outage was replayed"
        );
    }
}
