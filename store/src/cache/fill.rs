//! Fill guards: stop a read-through fill from caching data that an invalidation made stale.
//!
//! The race: a reader misses, loads from the database, a turn commits and invalidates,
//! then the reader writes what it loaded (now stale) for a whole TTL. Every invalidation
//! bumps an epoch (per slot of a key hash); a fill writes only if its key's epoch did not
//! move during the load, and deletes what it wrote if the epoch moved during the write.
//! This covers invalidations made by this process; the Redis cache adds a generation
//! counter per key in Redis for invalidations made by other nodes (see `redis.rs`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Epoch slots; keys sharing a slot only cost each other a skipped fill.
pub const FILL_EPOCH_SLOTS: usize = 256;

/// Invalidation epochs by key slot.
#[derive(Debug)]
pub(crate) struct FillEpochs {
    slots: Vec<AtomicU64>,
}

impl Default for FillEpochs {
    fn default() -> Self {
        FillEpochs { slots: (0..FILL_EPOCH_SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl FillEpochs {
    fn slot(&self, key: &str) -> Option<&AtomicU64> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        // Truncation is the point: the hash only picks a slot.
        self.slots.get((h.finish() as usize) % FILL_EPOCH_SLOTS)
    }

    /// The key's current epoch (read before loading).
    pub(crate) fn current(&self, key: &str) -> u64 {
        self.slot(key).map_or(0, |s| s.load(Ordering::SeqCst))
    }

    /// Record an invalidation of `key` (before deleting it).
    pub(crate) fn bump(&self, key: &str) {
        if let Some(s) = self.slot(key) {
            s.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_moves_only_its_slot_epoch() {
        let f = FillEpochs::default();
        let before = f.current("a");
        f.bump("a");
        assert_ne!(f.current("a"), before, "an invalidation moves the key's epoch");
        assert_eq!(f.current("a"), f.current("a"), "reads are stable");
    }
}
