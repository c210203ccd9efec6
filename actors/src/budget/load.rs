//! Spend loads: the [`SpendLoader`] run on the blocking pool, one load per window at a time.
//!
//! When a window rolls over every in-flight request touches the new window at once;
//! without sharing, each would query the database. Concurrent loads of the same window
//! and generation share one query. A load started before an invalidation is never
//! shared with one asked for after it (the generation differs), and a finished load is
//! never shared with a later one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt, Shared};
use rust_decimal::Decimal;
use tally_domain::BudgetWindow;
use uuid::Uuid;

use super::{BudgetError, SpendLoader, LOAD_TIMEOUT};

/// Identity of one load: the budget, the window start, and the budget's generation.
type LoadKey = (Uuid, chrono::DateTime<chrono::Utc>, u64);

type LoadFuture = Shared<BoxFuture<'static, Result<Decimal, BudgetError>>>;

/// Loads in flight, each tagged with a unique number so that only its own task removes it.
type Inflight = Arc<Mutex<HashMap<LoadKey, (u64, LoadFuture)>>>;

/// Runs spend loads, sharing concurrent loads of the same window.
pub(crate) struct SpendLoads {
    loader: SpendLoader,
    inflight: Inflight,
    next_tag: AtomicU64,
}

fn lock(inflight: &Inflight) -> MutexGuard<'_, HashMap<LoadKey, (u64, LoadFuture)>> {
    // The map only holds futures; a panic elsewhere cannot leave it half-updated.
    inflight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SpendLoads {
    /// Loads through `loader`.
    pub(crate) fn new(loader: SpendLoader) -> Arc<Self> {
        Arc::new(SpendLoads { loader, inflight: Arc::default(), next_tag: AtomicU64::new(0) })
    }

    /// The committed spend of `budget_id` in `window`, as of now. Must run inside a tokio
    /// runtime (the load is a spawned task, so it finishes, and leaves the map, even if
    /// every caller gave up waiting; a later load never reuses its old result).
    pub(crate) async fn load(&self, budget_id: Uuid, window: BudgetWindow, generation: u64) -> Result<Decimal, BudgetError> {
        let key = (budget_id, window.start, generation);
        let fut = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some((_, fut)) => fut.clone(),
                None => {
                    let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
                    let map = self.inflight.clone();
                    let loader = self.loader.clone();
                    let task = tokio::spawn(async move {
                        let result = run(loader, budget_id, window).await;
                        let mut inflight = lock(&map);
                        if inflight.get(&key).is_some_and(|(t, _)| *t == tag) {
                            inflight.remove(&key);
                        }
                        result
                    });
                    let fut = async move {
                        task.await.unwrap_or_else(|e| Err(BudgetError::Load(format!("budget {budget_id}: load task failed: {e}"))))
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, (tag, fut.clone()));
                    fut
                }
            }
        };
        fut.await
    }
}

/// One load on the blocking pool, bounded by [`LOAD_TIMEOUT`].
async fn run(loader: SpendLoader, budget_id: Uuid, window: BudgetWindow) -> Result<Decimal, BudgetError> {
    let task = tokio::task::spawn_blocking(move || loader(budget_id, &window));
    match tokio::time::timeout(LOAD_TIMEOUT, task).await {
        Ok(Ok(Ok(spent))) => Ok(spent),
        Ok(Ok(Err(message))) => Err(BudgetError::Load(format!("budget {budget_id}: {message}"))),
        Ok(Err(join)) => Err(BudgetError::Load(format!("budget {budget_id}: loader panicked: {join}"))),
        Err(_) => Err(BudgetError::Load(format!("budget {budget_id}: no answer within {LOAD_TIMEOUT:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_loads_of_a_window_share_one_query() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let loader: SpendLoader = Arc::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            Ok(Decimal::ONE)
        });
        let loads = SpendLoads::new(loader);
        let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default();
        let window = BudgetWindow { start, end: start + chrono::Duration::days(1) };
        let b = Uuid::now_v7();
        let all = futures::future::join_all((0..20).map(|_| loads.load(b, window, 0))).await;
        assert!(all.iter().all(|r| r == &Ok(Decimal::ONE)), "every caller gets the loaded spend");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one query for twenty concurrent loads");
        assert!(lock(&loads.inflight).is_empty(), "finished loads leave the map");
        let _ = loads.load(b, window, 1).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a new generation loads again");
    }

    #[tokio::test]
    async fn an_abandoned_load_finishes_and_is_not_reused() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let loader: SpendLoader = Arc::new(move |_, _| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            Ok(Decimal::from(n))
        });
        let loads = SpendLoads::new(loader);
        let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default();
        let window = BudgetWindow { start, end: start + chrono::Duration::days(1) };
        let b = Uuid::now_v7();
        let gave_up = tokio::time::timeout(Duration::from_millis(5), loads.load(b, window, 0)).await;
        assert!(gave_up.is_err(), "the caller stopped waiting");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(lock(&loads.inflight).is_empty(), "the abandoned load finished and left the map");
        assert_eq!(loads.load(b, window, 0).await, Ok(Decimal::ONE), "a later load queries again");
    }

    #[tokio::test]
    async fn loader_errors_and_panics_are_load_errors() {
        let loader: SpendLoader = Arc::new(|_, _| Err("db down".into()));
        let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default();
        let window = BudgetWindow { start, end: start + chrono::Duration::days(1) };
        let r = SpendLoads::new(loader).load(Uuid::now_v7(), window, 0).await;
        assert!(matches!(&r, Err(BudgetError::Load(m)) if m.contains("db down")), "loader error surfaces: {r:?}");
        let loader: SpendLoader = Arc::new(|_, _| panic!("boom"));
        let r = SpendLoads::new(loader).load(Uuid::now_v7(), window, 0).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_load_failed"), "a panicking loader is a load failure");
    }
}
