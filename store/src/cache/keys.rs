//! Cache keys for what Tally caches. Keys here carry no prefix: the cache adds
//! [`CacheConfig::key_prefix`](super::CacheConfig::key_prefix).
//!
//! Every key starts with [`KEY_VERSION`]: bump it when a cached value's JSON shape
//! changes, so nodes of a rolling deploy never read each other's layout.

use uuid::Uuid;

/// Layout version of cached values.
pub const KEY_VERSION: &str = "v1";

/// A thread's messages with their costs (`Vec<StoredMessage>` or a view of it).
pub fn thread_history(thread_id: Uuid) -> String {
    format!("{KEY_VERSION}:thread:{thread_id}:history")
}

/// A thread's running total (cost of all its usage so far).
pub fn thread_total(thread_id: Uuid) -> String {
    format!("{KEY_VERSION}:thread:{thread_id}:total")
}

/// A user's cost metrics (totals by kind, model, thread; invoiced and not).
pub fn user_metrics(user_id: &str) -> String {
    format!("{KEY_VERSION}:user:{user_id}:metrics")
}

/// The dashboard snapshot shared by all nodes.
pub fn dashboard_snapshot() -> String {
    format!("{KEY_VERSION}:dashboard:snapshot")
}

/// The keys a new turn or usage event in `thread_id` (owned by `user_id`) makes stale.
pub fn thread_keys(thread_id: Uuid, user_id: &str) -> [String; 3] {
    [thread_history(thread_id), thread_total(thread_id), user_metrics(user_id)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_versioned_and_distinct() {
        let t = Uuid::nil();
        let keys = thread_keys(t, "alice");
        assert!(keys.iter().all(|k| k.starts_with("v1:")), "every key carries the layout version: {keys:?}");
        assert_ne!(keys[0], keys[1], "history and total differ");
        assert_eq!(keys[2], "v1:user:alice:metrics", "user metrics key shape");
        assert_eq!(dashboard_snapshot(), "v1:dashboard:snapshot", "snapshot key shape");
    }
}
