//! Live dashboard aggregates: totals per user, thread, model and kind, fed by the usage feed.
//!
//! One aggregator task subscribes to the actors' [`UsageFeed`] and folds every
//! priced event into a [`Dashboard`]; it starts from the totals in storage so a
//! restarted node shows the whole history. SSE clients read snapshots of it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_actors::{UsageFeed, UsagePriced};
use tally_domain::{Money, Unit};
use tally_store::cache::{keys, Cache};
use tally_store::{LineFilter, Store};
use uuid::Uuid;

/// Entries in each top-N list of a snapshot.
pub const TOP_N: usize = 20;
/// Window over which events per second are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How often a changed snapshot is written to the shared cache.
pub const SHARE_INTERVAL: Duration = Duration::from_secs(1);
/// Life of the shared snapshot in the cache (rewritten while anything changes).
pub const SHARED_SNAPSHOT_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Clone)]
struct Agg {
    cost: Money,
    events: u64,
}

#[derive(Debug, Default, Clone)]
struct KindAgg {
    unit: Option<Unit>,
    quantity: Decimal,
    cost: Money,
}

/// The aggregates behind the dashboard.
#[derive(Debug, Default)]
pub struct Dashboard {
    total_cost: Money,
    event_count: u64,
    by_user: HashMap<String, Agg>,
    by_thread: HashMap<Uuid, (String, Agg)>,
    by_model: HashMap<String, Agg>,
    by_kind: HashMap<String, KindAgg>,
    by_key: HashMap<Uuid, (String, Agg)>,
    recent: VecDeque<Instant>,
    last_event_at: Option<DateTime<Utc>>,
    version: u64,
}

/// A user's total.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRow {
    /// User id.
    pub user_id: String,
    /// Total cost.
    pub cost: Money,
    /// Usage events.
    pub events: u64,
}

/// A thread's total.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadRow {
    /// Thread id.
    pub thread_id: Uuid,
    /// Owner.
    pub user_id: String,
    /// Total cost.
    pub cost: Money,
    /// Usage events.
    pub events: u64,
}

/// A model's total.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRow {
    /// Model name.
    pub model: String,
    /// Total cost.
    pub cost: Money,
    /// Usage events.
    pub events: u64,
}

/// A gateway key's total.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRow {
    /// Virtual key id.
    pub key_id: Uuid,
    /// The key's owner.
    pub user_id: String,
    /// Total cost.
    pub cost: Money,
    /// Usage events.
    pub events: u64,
}

/// Sort by cost (highest first, ties by key) and keep the top N.
fn top<T>(mut rows: Vec<T>, cost: impl Fn(&T) -> Money, key: impl Fn(&T) -> String) -> Vec<T> {
    rows.sort_by(|a, b| cost(b).cmp(&cost(a)).then_with(|| key(a).cmp(&key(b))));
    rows.truncate(TOP_N);
    rows
}

/// Usage of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindRow {
    /// Usage kind.
    pub kind: String,
    /// Unit.
    pub unit: Option<Unit>,
    /// Quantity.
    pub quantity: Decimal,
    /// Cost.
    pub cost: Money,
}

/// What a dashboard client receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// Total cost of all usage.
    pub total_cost: Money,
    /// Number of usage events.
    pub event_count: u64,
    /// Events per second over the last 10 s (decimal string).
    pub events_per_second: Decimal,
    /// Commit time of the latest event.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Top users by cost.
    pub by_user: Vec<UserRow>,
    /// Top threads by cost.
    pub by_thread: Vec<ThreadRow>,
    /// Models by cost.
    pub by_model: Vec<ModelRow>,
    /// Usage by kind.
    pub by_kind: Vec<KindRow>,
    /// Top gateway keys by cost (usage made through the gateway).
    #[serde(default)]
    pub by_key: Vec<KeyRow>,
    /// Changes when the aggregates change.
    pub version: u64,
}

impl Dashboard {
    /// Fold one priced usage event in.
    pub fn apply(&mut self, e: &UsagePriced) {
        self.fold(&e.user_id, e.thread_id, &e.model, e.cost.lines.iter().map(|l| (l.kind.to_string(), Some(l.unit), l.quantity, l.amount)), 1);
        if let Some(k) = e.key_id {
            self.fold_key(k, &e.user_id, e.cost.total);
        }
        self.recent.push_back(Instant::now());
        self.last_event_at = Some(e.committed_at);
    }

    fn fold<I>(&mut self, user: &str, thread: Option<Uuid>, model: &str, lines: I, events: u64)
    where
        I: Iterator<Item = (String, Option<Unit>, Decimal, Money)>,
    {
        let mut cost = Money::ZERO;
        for (kind, unit, quantity, amount) in lines {
            cost += amount;
            let k = self.by_kind.entry(kind).or_default();
            k.unit = unit.or(k.unit);
            k.quantity += quantity;
            k.cost += amount;
        }
        self.total_cost += cost;
        self.event_count += events;
        let bump = |a: &mut Agg| {
            a.cost += cost;
            a.events += events;
        };
        bump(self.by_user.entry(user.to_string()).or_default());
        bump(self.by_model.entry(model.to_string()).or_default());
        if let Some(t) = thread {
            bump(&mut self.by_thread.entry(t).or_insert_with(|| (user.to_string(), Agg::default())).1);
        }
        self.version += 1;
    }

    /// Count one event's cost for a gateway key (its other aggregates are folded by `fold`).
    fn fold_key(&mut self, key: Uuid, user: &str, cost: Money) {
        let a = &mut self.by_key.entry(key).or_insert_with(|| (user.to_string(), Agg::default())).1;
        a.cost += cost;
        a.events += 1;
    }

    /// A snapshot with top-N lists sorted by cost.
    pub fn snapshot(&mut self) -> Snapshot {
        let now = Instant::now();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
            self.recent.pop_front();
        }
        let rate = Decimal::from(self.recent.len() as u64) / Decimal::from(RATE_WINDOW.as_secs());
        let mut kinds: Vec<KindRow> = self
            .by_kind
            .iter()
            .map(|(k, a)| KindRow { kind: k.clone(), unit: a.unit, quantity: a.quantity, cost: a.cost })
            .collect();
        kinds.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.kind.cmp(&b.kind)));
        Snapshot {
            generated_at: Utc::now(),
            total_cost: self.total_cost,
            event_count: self.event_count,
            events_per_second: rate.round_dp(1),
            last_event_at: self.last_event_at,
            by_user: top(
                self.by_user.iter().map(|(k, a)| UserRow { user_id: k.clone(), cost: a.cost, events: a.events }).collect(),
                |r| r.cost,
                |r| r.user_id.clone(),
            ),
            by_thread: top(
                self.by_thread
                    .iter()
                    .map(|(k, (u, a))| ThreadRow { thread_id: *k, user_id: u.clone(), cost: a.cost, events: a.events })
                    .collect(),
                |r| r.cost,
                |r| r.thread_id.to_string(),
            ),
            by_model: top(
                self.by_model.iter().map(|(k, a)| ModelRow { model: k.clone(), cost: a.cost, events: a.events }).collect(),
                |r| r.cost,
                |r| r.model.clone(),
            ),
            by_kind: kinds,
            by_key: top(
                self.by_key
                    .iter()
                    .map(|(k, (u, a))| KeyRow { key_id: *k, user_id: u.clone(), cost: a.cost, events: a.events })
                    .collect(),
                |r| r.cost,
                |r| r.key_id.to_string(),
            ),
            version: self.version,
        }
    }

    /// Current version (changes with every folded event).
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Shared handle to the dashboard aggregates.
#[derive(Clone, Default)]
pub struct DashboardHandle {
    inner: Arc<Mutex<Dashboard>>,
    /// Whether the totals from storage are in (until then the aggregates are partial).
    loaded: Arc<AtomicBool>,
}

impl DashboardHandle {
    /// Load totals from storage, then follow the feed (call inside a tokio runtime). Once
    /// loaded, a changed snapshot is written to `cache` at most every [`SHARE_INTERVAL`]
    /// (with Redis, every node shares it; see [`DashboardHandle::current`]).
    pub fn start(store: Store, feed: &UsageFeed, cache: Cache) -> Self {
        let handle = DashboardHandle::default();
        tokio::spawn(share(handle.clone(), cache));
        // Subscribe before loading so no event falls between the two; an event
        // both loaded and received is skipped by id.
        let mut rx = feed.subscribe();
        let h = handle.clone();
        tokio::spawn(async move {
            let loaded = tokio::task::spawn_blocking(move || load(&store)).await;
            // Ids folded so far: an event both loaded and received, or received twice (a
            // redelivered `processed-events` record from another node), counts once.
            let mut seen = match loaded {
                Ok(Ok((dash, seen))) => {
                    h.with(|d| {
                        let recent = std::mem::take(&mut d.recent);
                        *d = dash;
                        d.recent = recent;
                    });
                    h.loaded.store(true, Ordering::SeqCst);
                    seen
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "Dashboard could not load totals from storage.");
                    Default::default()
                }
                Err(e) => {
                    tracing::error!(error = %e, "Dashboard load task failed.");
                    Default::default()
                }
            };
            loop {
                match rx.recv().await {
                    Ok(batch) => h.with(|d| {
                        for e in batch.iter() {
                            if seen.insert(e.event_id) {
                                d.apply(e);
                            }
                        }
                    }),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "Dashboard aggregator lagged behind the feed.");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        handle
    }

    /// Whether the totals from storage are loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// The snapshot to show now: this node's once its totals are loaded; before that (a
    /// node just started on a large history) the last snapshot any node shared through
    /// the cache, when there is one, rather than partial totals.
    pub async fn current(&self, cache: &Cache) -> Snapshot {
        if !self.is_loaded() {
            let cache = cache.clone();
            let shared = tokio::task::spawn_blocking(move || cache.get_json::<Snapshot>(&keys::dashboard_snapshot())).await;
            if let Ok(Some(s)) = shared {
                return s;
            }
        }
        self.with(|d| d.snapshot())
    }

    /// Run `f` with the aggregates locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Dashboard) -> R) -> R {
        // A poisoned lock only means a panic mid-update of plain counters; keep serving.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Write the snapshot to the cache whenever it changed (checked every [`SHARE_INTERVAL`]).
async fn share(handle: DashboardHandle, cache: Cache) {
    let mut tick = tokio::time::interval(SHARE_INTERVAL);
    let mut shared_version = None;
    loop {
        tick.tick().await;
        if !handle.is_loaded() {
            continue;
        }
        let changed = handle.with(|d| (shared_version != Some(d.version())).then(|| d.snapshot()));
        if let Some(snap) = changed {
            shared_version = Some(snap.version);
            let cache = cache.clone();
            // Best effort: a cache that is down is skipped (and logged once by the cache).
            let _ = tokio::task::spawn_blocking(move || {
                cache.set_json_with_ttl(&keys::dashboard_snapshot(), &snap, SHARED_SNAPSHOT_TTL)
            })
            .await;
        }
    }
}

fn load(store: &Store) -> Result<(Dashboard, std::collections::HashSet<Uuid>), tally_store::StoreError> {
    load_filtered(store, LineFilter::default())
}

/// One user's dashboard, from storage (what a user's key sees in `token` mode: only their own
/// spend). Costs O(their events); fold their later events in with [`Dashboard::apply`].
pub fn load_user(store: &Store, user_id: &str) -> Result<(Dashboard, std::collections::HashSet<Uuid>), tally_store::StoreError> {
    load_filtered(store, LineFilter { user_id: Some(user_id.to_string()), ..LineFilter::default() })
}

fn load_filtered(store: &Store, filter: LineFilter) -> Result<(Dashboard, std::collections::HashSet<Uuid>), tally_store::StoreError> {
    let mut dash = Dashboard::default();
    let events = store.usage_events(&filter, i64::MAX)?;
    let keys: HashMap<Uuid, Uuid> = store.gateway_event_keys()?.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    for e in events.iter().rev() {
        seen.insert(e.event_id);
        if let Some(k) = keys.get(&e.event_id) {
            dash.fold_key(*k, &e.user_id, e.cost.total);
        }
        dash.fold(
            &e.user_id,
            e.thread_id,
            &e.model,
            e.cost.lines.iter().map(|l| (l.kind.to_string(), Some(l.unit), l.quantity, l.amount)),
            1,
        );
        dash.last_event_at = Some(dash.last_event_at.map_or(e.occurred_at, |t| t.max(e.occurred_at)));
    }
    Ok((dash, seen))
}

#[cfg(test)]
mod tests {
    use tally_store::cache::CacheConfig;

    use super::*;

    fn shared_snapshot(total: &str) -> Snapshot {
        let mut d = Dashboard::default();
        d.fold("bob", None, "m", std::iter::once(("input_tokens".to_string(), Some(Unit::Tokens), Decimal::from(10), total.parse().unwrap_or_default())), 1);
        d.snapshot()
    }

    #[actix_rt::test]
    async fn before_its_load_a_node_shows_the_shared_snapshot_then_its_own() {
        let cache = match Cache::memory(CacheConfig::default()) {
            Ok(c) => c,
            Err(e) => panic!("memory cache: {e}"),
        };
        let handle = DashboardHandle::default();
        assert_eq!(handle.current(&cache).await.event_count, 0, "nothing shared, nothing loaded: empty");
        cache.set_json(&keys::dashboard_snapshot(), &shared_snapshot("0.5"));
        let shown = handle.current(&cache).await;
        assert_eq!((shown.event_count, shown.total_cost), (1, Decimal::new(5, 1)), "not loaded yet: the shared snapshot");
        handle.loaded.store(true, Ordering::SeqCst);
        assert_eq!(handle.current(&cache).await.event_count, 0, "loaded: its own aggregates");
    }

    #[actix_rt::test]
    async fn a_loaded_node_shares_its_snapshot_when_it_changes() {
        let cache = match Cache::memory(CacheConfig::default()) {
            Ok(c) => c,
            Err(e) => panic!("memory cache: {e}"),
        };
        let handle = DashboardHandle::default();
        handle.loaded.store(true, Ordering::SeqCst);
        handle.with(|d| d.fold("carol", None, "m", std::iter::once(("output_tokens".to_string(), Some(Unit::Tokens), Decimal::from(3), Decimal::new(12, 6))), 1));
        let task = tokio::spawn(share(handle.clone(), cache.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let shared = loop {
            if let Some(s) = cache.get_json::<Snapshot>(&keys::dashboard_snapshot()) {
                break s;
            }
            assert!(Instant::now() < deadline, "the snapshot was never shared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        task.abort();
        assert_eq!((shared.event_count, shared.total_cost), (1, Decimal::new(12, 6)), "what is shared is this node's snapshot");
        assert_eq!(shared.by_user.first().map(|u| u.user_id.as_str()), Some("carol"), "with its rows");
    }

    #[test]
    fn gateway_usage_is_totalled_per_key() {
        let mut d = Dashboard::default();
        let key = Uuid::now_v7();
        let event = |key_id: Option<Uuid>, micros: i64| UsagePriced {
            event_id: Uuid::now_v7(),
            user_id: "erin".into(),
            thread_id: None,
            message_id: None,
            model: "m".into(),
            occurred_at: Utc::now(),
            committed_at: Utc::now(),
            cost: tally_domain::Cost { total: Decimal::new(micros, 6), lines: Vec::new() },
            key_id,
            origin: None,
            trace: tally_actors::TraceContext::none(),
        };
        d.apply(&event(Some(key), 3));
        d.apply(&event(Some(key), 4));
        d.apply(&event(None, 100));
        let snap = d.snapshot();
        assert_eq!(snap.by_key.len(), 1, "only gateway usage has a key row");
        assert_eq!((snap.by_key[0].key_id, snap.by_key[0].cost, snap.by_key[0].events), (key, Decimal::new(7, 6), 2), "the key's exact total and count");
    }
}
