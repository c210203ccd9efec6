//! Redis health: healthy -> degraded -> healthy, with one warning per transition.
//!
//! While degraded, calls skip Redis (a miss, straight to the database) except one probe
//! per retry interval. Deletes that failed or were skipped while degraded are kept and
//! replayed by the probe before the cache serves reads again, so an invalidation made
//! during an outage is not lost when Redis comes back with the old entries.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::error::CacheError;

/// Missed invalidations remembered during one outage; past this, entries may stay stale until their TTL.
pub const MAX_PENDING_INVALIDATIONS: usize = 10_000;

/// What a call may do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Healthy: go to Redis.
    Open,
    /// Degraded and it is time to probe: replay these deletes first, then do the call.
    Probe(Vec<String>),
    /// Degraded: skip Redis (the call's deletes, if any, were queued).
    Closed,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    next_probe: Instant,
}

#[derive(Debug, Default)]
struct State {
    outage: Option<Outage>,
    pending: HashSet<String>,
    /// Invalidations dropped because `pending` was full, this outage.
    dropped: u64,
}

impl State {
    fn queue(&mut self, keys: &[String]) {
        for k in keys {
            if self.pending.len() < MAX_PENDING_INVALIDATIONS || self.pending.contains(k) {
                self.pending.insert(k.clone());
            } else {
                self.dropped += 1;
            }
        }
    }
}

/// The health state of one Redis cache (shared by its clones).
#[derive(Debug)]
pub(crate) struct Health {
    state: Mutex<State>,
    healthy: AtomicBool,
    retry_interval: Duration,
    /// Whether a refused command was already logged at warn level.
    command_warned: AtomicBool,
    /// Where Redis is, for logs (never the password).
    addr: String,
}

impl Health {
    pub(crate) fn new(retry_interval: Duration, addr: String) -> Self {
        Health {
            state: Mutex::default(),
            healthy: AtomicBool::new(true),
            retry_interval,
            command_warned: AtomicBool::new(false),
            addr,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only by a panic between plain field updates; the state stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the last contact with Redis worked.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Decide what a call may do; `deletes` are queued when the call is skipped.
    /// `force` probes even before the retry interval has passed (readiness checks).
    pub(crate) fn gate(&self, now: Instant, deletes: &[String], force: bool) -> Gate {
        // Hot path without the lock. Racing a failure only costs one more try at Redis,
        // and a delete that then fails is queued by `failed`.
        if self.is_healthy() {
            return Gate::Open;
        }
        let mut state = self.lock();
        let retry_interval = self.retry_interval;
        let Some(outage) = state.outage.as_mut() else { return Gate::Open };
        if now < outage.next_probe && !force {
            state.queue(deletes);
            return Gate::Closed;
        }
        outage.next_probe = now + retry_interval;
        Gate::Probe(state.pending.iter().cloned().collect())
    }

    /// A call reached Redis. After a probe, `replayed` deletes are done; the cache is healthy
    /// again once no missed invalidation is left (ones queued meanwhile go with the next call).
    pub(crate) fn succeeded(&self, now: Instant, replayed: &[String]) {
        // Healthy means no outage to end (both change together under the lock).
        if self.is_healthy() {
            return;
        }
        let mut state = self.lock();
        if state.outage.is_none() {
            return;
        }
        for k in replayed {
            state.pending.remove(k);
        }
        if !state.pending.is_empty() {
            if let Some(outage) = state.outage.as_mut() {
                outage.next_probe = now;
            }
            return;
        }
        let dropped = std::mem::take(&mut state.dropped);
        if let Some(outage) = state.outage.take() {
            self.healthy.store(true, Ordering::SeqCst);
            let outage_ms = u64::try_from(now.saturating_duration_since(outage.since).as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(redis.addr = %self.addr, outage_ms, "Cache is reachable again; reads use it again.");
            if dropped > 0 {
                tracing::warn!(
                    redis.addr = %self.addr,
                    dropped,
                    "Some invalidations were lost during the cache outage; those entries may be stale until their TTL."
                );
            }
        }
    }

    /// A call could not reach Redis: become degraded (warning once) and keep `deletes` for replay.
    pub(crate) fn failed(&self, now: Instant, error: &CacheError, deletes: &[String]) {
        let mut state = self.lock();
        state.queue(deletes);
        let retry_interval = self.retry_interval;
        match state.outage.as_mut() {
            Some(outage) => outage.next_probe = now + retry_interval,
            None => {
                state.outage = Some(Outage { since: now, next_probe: now + retry_interval });
                self.healthy.store(false, Ordering::SeqCst);
                tracing::warn!(
                    redis.addr = %self.addr,
                    error = %error,
                    error.code = error.code(),
                    "Cache unreachable; serving from the database until it returns."
                );
            }
        }
    }

    /// Redis answered a command with an error: not an outage; warn the first time only.
    pub(crate) fn command_failed(&self, error: &CacheError) {
        if self.command_warned.swap(true, Ordering::SeqCst) {
            tracing::debug!(redis.addr = %self.addr, error = %error, "Cache command refused.");
        } else {
            tracing::warn!(redis.addr = %self.addr, error = %error, "Cache command refused; later refusals are logged at debug.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(1);

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn degrades_probes_once_per_interval_and_recovers() {
        let h = Health::new(RETRY, "test".into());
        let t0 = Instant::now();
        assert_eq!(h.gate(t0, &[], false), Gate::Open, "a new cache is healthy");
        h.failed(t0, &CacheError::Unavailable("refused".into()), &[]);
        assert!(!h.is_healthy(), "a failure degrades");
        assert_eq!(h.gate(t0, &[], false), Gate::Closed, "calls skip Redis until the next probe");
        let t1 = t0 + RETRY;
        assert_eq!(h.gate(t1, &[], false), Gate::Probe(vec![]), "one call probes after the interval");
        assert_eq!(h.gate(t1, &[], false), Gate::Closed, "the others keep skipping while it probes");
        h.succeeded(t1, &[]);
        assert!(h.is_healthy(), "a successful probe heals");
        assert_eq!(h.gate(t1, &[], false), Gate::Open, "and calls use Redis again");
    }

    #[test]
    fn missed_deletes_are_replayed_before_healing() {
        let h = Health::new(RETRY, "test".into());
        let t0 = Instant::now();
        h.failed(t0, &CacheError::Timeout(RETRY), &keys(&["a"]));
        assert_eq!(h.gate(t0, &keys(&["b"]), false), Gate::Closed, "skipped delete");
        let t1 = t0 + RETRY;
        let Gate::Probe(mut replay) = h.gate(t1, &[], false) else { panic!("expected a probe") };
        replay.sort();
        assert_eq!(replay, keys(&["a", "b"]), "the probe replays failed and skipped deletes");
        // A delete skipped while the probe runs must not be forgotten.
        assert_eq!(h.gate(t1, &keys(&["c"]), false), Gate::Closed, "skipped during the probe");
        h.succeeded(t1, &replay);
        assert!(!h.is_healthy(), "not healed while a missed delete is left");
        assert_eq!(h.gate(t1, &[], false), Gate::Probe(keys(&["c"])), "the next call replays it at once");
        h.succeeded(t1, &keys(&["c"]));
        assert!(h.is_healthy(), "healed once nothing is left");
    }

    #[test]
    fn forced_probe_ignores_the_interval() {
        let h = Health::new(RETRY, "test".into());
        let t0 = Instant::now();
        h.failed(t0, &CacheError::Unavailable("refused".into()), &[]);
        assert_eq!(h.gate(t0, &[], true), Gate::Probe(vec![]), "readiness checks probe at once");
    }

    #[test]
    fn pending_is_bounded() {
        let h = Health::new(RETRY, "test".into());
        let t0 = Instant::now();
        let many: Vec<String> = (0..MAX_PENDING_INVALIDATIONS + 5).map(|i| i.to_string()).collect();
        h.failed(t0, &CacheError::Unavailable("refused".into()), &many);
        let state = h.lock();
        assert_eq!(state.pending.len(), MAX_PENDING_INVALIDATIONS, "pending stops growing at its bound");
        assert_eq!(state.dropped, 5, "the rest are counted as dropped");
    }
}
