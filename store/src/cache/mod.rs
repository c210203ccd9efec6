//! Hot-read cache (thread history, running totals, user metrics, dashboard snapshot):
//! Redis shared by all nodes when `TALLY_REDIS_URL` is set, a bounded in-memory map otherwise.
//!
//! The database is the source of truth: values are JSON copies that expire (TTL, the
//! retention policy), are deleted when a write makes them stale ([`Cache::invalidate_thread`]),
//! and are rebuilt from the database on a miss ([`Cache::get_or_load`]). A failing cache is
//! never an error for callers: the call is a miss and falls back to the loader. Redis
//! health flips healthy -> degraded -> healthy with one `warn!` per transition; while
//! degraded, calls skip Redis except one probe per `retry_interval`, so an outage costs a
//! request at most `op_timeout`.
//!
//! Client choice: the `redis` crate's synchronous client with a small set of reused
//! connections (`redis.rs`), not deadpool-redis on a private tokio runtime. The store API
//! is synchronous and already runs on the blocking pool, so a runtime would add a thread
//! hop per call and two panic hazards (a `block_on` reached from async code, a runtime
//! dropped inside one), and deadpool-redis pings on every checkout (two round trips per
//! read). Here each call bounds connect, handshake and socket I/O by one deadline, and
//! reconnecting after an outage is simply the next connect.

mod config;
mod error;
mod fill;
mod health;
pub mod keys;
mod memory;
mod redis;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::error::StoreError;

pub use self::config::{
    CacheConfig, DEFAULT_KEY_PREFIX, DEFAULT_MAX_MEMORY_ENTRIES, DEFAULT_OP_TIMEOUT, DEFAULT_RETRY_INTERVAL,
    DEFAULT_TTL, MAX_OP_TIMEOUT, MAX_TTL, MIN_TTL,
};
pub use self::error::CacheError;
pub use self::fill::FILL_EPOCH_SLOTS;
pub use self::health::MAX_PENDING_INVALIDATIONS;
pub use self::memory::MemoryCache;
pub use self::redis::{RedisCache, DEL_CHUNK, MAX_IDLE_CONNECTIONS};

/// The node's cache. Cheap to clone (clones share state); `Send + Sync`. Calls block
/// for at most `op_timeout`: run them where store calls run (the blocking pool).
#[derive(Debug, Clone)]
pub enum Cache {
    /// One node, no Redis.
    Memory(MemoryCache),
    /// Redis shared by all nodes.
    Redis(RedisCache),
}

/// Whether a lookup found something, and whether it is worth writing back.
enum Lookup {
    Hit(String),
    /// Absent; for Redis, with the key's fill generation (see `redis.rs`).
    Miss(Option<String>),
    /// The backend failed or was skipped: do not try to fill either.
    Unavailable,
}

impl Cache {
    /// Redis at `url` when given (and not blank), else in-memory. Fails only on bad
    /// settings or a malformed URL: an unreachable Redis starts the cache degraded
    /// (logged) and it heals when Redis answers.
    pub fn from_url(url: Option<&str>, config: CacheConfig) -> Result<Cache, CacheError> {
        config.validate()?;
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Cache::Memory(MemoryCache::new(config))),
            Some(url) => {
                let cache = RedisCache::open(url, config)?;
                if cache.ping().is_ok() {
                    tracing::info!(redis.addr = %cache.addr(), "Cache uses Redis.");
                }
                Ok(Cache::Redis(cache))
            }
        }
    }

    /// An in-memory cache.
    pub fn memory(config: CacheConfig) -> Result<Cache, CacheError> {
        Cache::from_url(None, config)
    }

    /// `memory` or `redis`, for health output and logs.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Cache::Memory(_) => "memory",
            Cache::Redis(_) => "redis",
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &CacheConfig {
        match self {
            Cache::Memory(c) => c.config(),
            Cache::Redis(c) => c.config(),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.config().key_prefix)
    }

    fn fills(&self) -> &fill::FillEpochs {
        match self {
            Cache::Memory(c) => c.fills(),
            Cache::Redis(c) => c.fills(),
        }
    }

    fn lookup(&self, full_key: &str) -> Lookup {
        let found = match self {
            Cache::Memory(c) => Ok(c.get(full_key)),
            // Failures were logged by the health state (once per outage).
            Cache::Redis(c) => c.get(full_key),
        };
        match found {
            Ok(Some(v)) => Lookup::Hit(v),
            Ok(None) => Lookup::Miss(None),
            Err(_) => Lookup::Unavailable,
        }
    }

    /// Like `lookup`, but a Redis miss carries the key's fill generation.
    fn lookup_for_fill(&self, full_key: &str) -> Lookup {
        match self {
            Cache::Memory(_) => self.lookup(full_key),
            Cache::Redis(c) => match c.get_with_generation(full_key) {
                Ok((Some(v), _)) => Lookup::Hit(v),
                Ok((None, generation)) => Lookup::Miss(Some(generation)),
                Err(_) => Lookup::Unavailable,
            },
        }
    }

    /// Write a loaded value unless the key was invalidated since it was looked up (in
    /// this process: the local epoch; on any node: the Redis generation). True when written.
    fn fill(&self, full_key: &str, value: &str, ttl: Duration, generation: Option<&str>) -> bool {
        let ttl = config::clamp_ttl(ttl);
        match (self, generation) {
            (Cache::Redis(c), Some(g)) => c.fill(full_key, value, ttl, g).unwrap_or(false),
            _ => self.store(full_key, value, ttl),
        }
    }

    fn store(&self, full_key: &str, value: &str, ttl: Duration) -> bool {
        let ttl = config::clamp_ttl(ttl);
        match self {
            Cache::Memory(c) => {
                c.set(full_key, value.to_string(), ttl);
                true
            }
            Cache::Redis(c) => c.set(full_key, value, ttl).is_ok(),
        }
    }

    fn remove(&self, full_keys: &[String]) {
        for k in full_keys {
            self.fills().bump(k);
        }
        match self {
            Cache::Memory(c) => c.delete(full_keys),
            // A failed delete is kept and replayed before Redis serves reads again.
            Cache::Redis(c) => {
                let _ = c.delete(full_keys);
            }
        }
    }

    fn decode<T: DeserializeOwned>(full_key: &str, raw: &str) -> Option<T> {
        match serde_json::from_str(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                // An old layout or a foreign writer: a miss, and the next fill overwrites it.
                tracing::debug!(cache.key = full_key, error = %e, "Cached value did not decode; treating it as a miss.");
                None
            }
        }
    }

    fn encode<T: Serialize + ?Sized>(full_key: &str, value: &T) -> Option<String> {
        match serde_json::to_string(value) {
            Ok(s) => Some(s),
            Err(e) => {
                let e = CacheError::Codec(e.to_string());
                tracing::warn!(cache.key = full_key, error = %e, "Value cannot be cached as JSON.");
                None
            }
        }
    }

    /// The value under `key`, or `None` when absent, expired, undecodable or the cache is down.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let full = self.full_key(key);
        match self.lookup(&full) {
            Lookup::Hit(raw) => Self::decode(&full, &raw),
            Lookup::Miss(_) | Lookup::Unavailable => None,
        }
    }

    /// Store `value` under `key` for the configured TTL (best effort).
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) {
        self.set_json_with_ttl(key, value, self.config().ttl);
    }

    /// Store `value` under `key` for `ttl` (clamped to [`MIN_TTL`]..=[`MAX_TTL`]; best effort).
    pub fn set_json_with_ttl<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Duration) {
        let full = self.full_key(key);
        if let Some(raw) = Self::encode(&full, value) {
            self.store(&full, &raw, ttl);
        }
    }

    /// Delete `key` (best effort; with Redis down it is deleted when Redis returns).
    pub fn delete(&self, key: &str) {
        self.remove(&[self.full_key(key)]);
    }

    /// Read-through with the configured TTL: see [`Cache::get_or_load_with_ttl`].
    pub fn get_or_load<T, F>(&self, key: &str, load: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, StoreError>,
    {
        self.get_or_load_with_ttl(key, self.config().ttl, load)
    }

    /// The cached value under `key`; otherwise `load()` from the database and cache its
    /// result for `ttl`. Only the loader's errors come out (they are not cached, so a
    /// loader returning `NotFound` caches nothing); cache failures mean "load".
    ///
    /// The result is not cached when the key was invalidated while loading (it may
    /// predate the write that invalidated it) or when the cache is down.
    pub fn get_or_load_with_ttl<T, F>(&self, key: &str, ttl: Duration, load: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, StoreError>,
    {
        let full = self.full_key(key);
        // Read the local epoch first: an invalidation after this point blocks the fill.
        let epoch = self.fills().current(&full);
        let (fillable, generation) = match self.lookup_for_fill(&full) {
            Lookup::Hit(raw) => match Self::decode(&full, &raw) {
                Some(v) => return Ok(v),
                // Undecodable: overwrite it, unguarded by a generation (none was read).
                None => (true, None),
            },
            Lookup::Miss(generation) => (true, generation),
            Lookup::Unavailable => (false, None),
        };
        let value = load()?;
        if fillable && self.fills().current(&full) == epoch {
            if let Some(raw) = Self::encode(&full, &value) {
                // A local invalidation between the check and the write would be undone by
                // the write: check again and take the write back.
                if self.fill(&full, &raw, ttl, generation.as_deref()) && self.fills().current(&full) != epoch {
                    match self {
                        Cache::Memory(c) => c.delete(std::slice::from_ref(&full)),
                        Cache::Redis(c) => {
                            let _ = c.delete(std::slice::from_ref(&full));
                        }
                    }
                }
            }
        }
        Ok(value)
    }

    /// Delete several keys at once (one round trip to Redis; best effort like [`Cache::delete`]).
    pub fn delete_many(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let full: Vec<String> = keys.iter().map(|k| self.full_key(k)).collect();
        self.remove(&full);
    }

    /// Forget what a committed turn or usage event in `thread_id` made stale: the thread's
    /// history and total and its owner's metrics. Call after the write commits.
    pub fn invalidate_thread(&self, thread_id: Uuid, user_id: &str) {
        let keys: Vec<String> = keys::thread_keys(thread_id, user_id).iter().map(|k| self.full_key(k)).collect();
        self.remove(&keys);
    }

    /// Whether the cache works now (always true in memory; for Redis, the last contact worked).
    pub fn is_healthy(&self) -> bool {
        match self {
            Cache::Memory(_) => true,
            Cache::Redis(c) => c.is_healthy(),
        }
    }

    /// One round trip to the cache now, even while degraded (readiness checks). Success
    /// heals a degraded cache (after replaying missed invalidations).
    pub fn ping(&self) -> Result<(), CacheError> {
        match self {
            Cache::Memory(_) => Ok(()),
            Cache::Redis(c) => c.ping(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn memory() -> Cache {
        match Cache::memory(CacheConfig::default()) {
            Ok(c) => c,
            Err(e) => panic!("default config is valid: {e}"),
        }
    }

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn cache_is_send_sync_and_clone() {
        assert_send_sync::<Cache>();
    }

    #[test]
    fn blank_url_means_memory_and_bad_config_is_refused() {
        assert!(matches!(Cache::from_url(Some("  "), CacheConfig::default()), Ok(Cache::Memory(_))), "blank URL");
        let bad = CacheConfig { ttl: Duration::ZERO, ..CacheConfig::default() };
        assert!(
            matches!(Cache::from_url(None, bad), Err(CacheError::InvalidConfig { key: "cache.ttl", .. })),
            "bad ttl"
        );
    }

    #[test]
    fn invalidation_during_load_is_not_cached() {
        let cache = memory();
        let calls = Cell::new(0);
        let v = cache.get_or_load("k", || {
            calls.set(calls.get() + 1);
            cache.delete("k");
            Ok(1u32)
        });
        assert_eq!(v, Ok(1), "the loaded value is returned");
        assert_eq!(cache.get_json::<u32>("k"), None, "but not cached: an invalidation raced the load");
        let again = cache.get_or_load("k", || {
            calls.set(calls.get() + 1);
            Ok(2u32)
        });
        assert_eq!(again, Ok(2), "the next read loads again");
        assert_eq!(cache.get_json::<u32>("k"), Some(2), "and fills");
        assert_eq!(calls.get(), 2, "two loads in all");
    }

    #[test]
    fn loader_errors_pass_through_and_are_not_cached() {
        let cache = memory();
        let r: Result<u32, _> = cache.get_or_load("k", || Err(StoreError::NotFound("thread".into())));
        assert_eq!(r, Err(StoreError::NotFound("thread".into())), "the loader's error comes out");
        assert_eq!(cache.get_json::<u32>("k"), None, "nothing cached");
    }

    #[test]
    fn undecodable_value_is_a_miss_and_is_overwritten() {
        let cache = memory();
        cache.set_json("k", "text");
        assert_eq!(cache.get_json::<u32>("k"), None, "wrong type reads as a miss");
        assert_eq!(cache.get_or_load("k", || Ok(7u32)), Ok(7), "loads");
        assert_eq!(cache.get_json::<u32>("k"), Some(7), "and the fill replaces it");
    }
}
