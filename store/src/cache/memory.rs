//! The in-memory cache: a bounded, thread-safe map with TTLs, for one node without Redis.
//!
//! Expired entries read as absent (and are dropped when met); when the map is full the
//! oldest write is evicted. Values are kept as JSON text, exactly as Redis keeps them,
//! so both backends accept and return the same things.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::config::CacheConfig;
use super::fill::FillEpochs;

#[derive(Debug)]
struct Entry {
    value: String,
    expires_at: Instant,
    /// Write order, the key of `Entries::order`.
    seq: u64,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// Keys by write order, oldest first: the eviction queue.
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            self.order.remove(&old.seq);
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: CacheConfig,
    fills: FillEpochs,
    entries: Mutex<Entries>,
}

/// Bounded in-memory cache with TTLs. Cheap to clone (clones share the map).
#[derive(Debug, Clone)]
pub struct MemoryCache {
    inner: Arc<Inner>,
}

impl MemoryCache {
    /// An empty cache holding at most `config.max_memory_entries` entries (config assumed valid).
    pub fn new(config: CacheConfig) -> Self {
        MemoryCache { inner: Arc::new(Inner { config, fills: FillEpochs::default(), entries: Mutex::default() }) }
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A poisoned lock means a panic between two map updates of plain data; the
        // worst left behind is a stale eviction slot, so keep serving.
        self.inner.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    pub(crate) fn fills(&self) -> &FillEpochs {
        &self.inner.fills
    }

    /// The value under `key` (full key), unless absent or expired.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.by_key.get(key) {
            Some(e) if e.expires_at > now => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Store `value` under `key` for `ttl`, evicting the oldest entries when full.
    pub(crate) fn set(&self, key: &str, value: String, ttl: Duration) {
        let now = Instant::now();
        // `ttl` is clamped to at most a year by the caller, so this cannot overflow in
        // practice; if it ever did, the entry would simply read as expired.
        let expires_at = now.checked_add(ttl).unwrap_or(now);
        let max = self.inner.config.max_memory_entries.max(1);
        let mut entries = self.lock();
        entries.remove(key);
        while entries.by_key.len() >= max {
            let Some((_, oldest)) = entries.order.pop_first() else { break };
            entries.by_key.remove(&oldest);
        }
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.order.insert(seq, key.to_string());
        entries.by_key.insert(key.to_string(), Entry { value, expires_at, seq });
    }

    /// Drop `keys` (full keys); absent keys are fine.
    pub(crate) fn delete(&self, keys: &[String]) {
        let mut entries = self.lock();
        for k in keys {
            entries.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize) -> MemoryCache {
        MemoryCache::new(CacheConfig { max_memory_entries: max, ..CacheConfig::default() })
    }

    #[test]
    fn oldest_write_is_evicted_when_full() {
        let c = cache(2);
        c.set("a", "1".into(), Duration::from_secs(60));
        c.set("b", "2".into(), Duration::from_secs(60));
        c.set("a", "3".into(), Duration::from_secs(60));
        c.set("c", "4".into(), Duration::from_secs(60));
        assert_eq!(c.len(), 2, "the bound holds");
        assert_eq!(c.get("b"), None, "b was the oldest write and is evicted");
        assert_eq!(c.get("a").as_deref(), Some("3"), "a was rewritten, so it stays with its new value");
        assert_eq!(c.get("c").as_deref(), Some("4"), "the newest write stays");
    }

    #[test]
    fn expired_entries_read_as_absent_and_are_dropped() {
        let c = cache(10);
        c.set("a", "1".into(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get("a"), None, "an expired entry is a miss");
        assert!(c.is_empty(), "and it is dropped when met");
    }

    #[test]
    fn delete_removes_from_both_indexes() {
        let c = cache(10);
        c.set("a", "1".into(), Duration::from_secs(60));
        c.delete(&["a".to_string(), "missing".to_string()]);
        assert_eq!(c.get("a"), None, "deleted");
        assert!(c.lock().order.is_empty(), "the eviction queue forgets deleted keys");
    }
}
