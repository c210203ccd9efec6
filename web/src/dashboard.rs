//! Live dashboard aggregates: totals per user, thread, model and kind, fed by the usage feed.
//!
//! One aggregator task subscribes to the actors' [`UsageFeed`] and folds every
//! priced event into a [`Dashboard`]; it starts from the totals in storage so a
//! restarted node shows the whole history. SSE clients read snapshots of it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_actors::{UsageFeed, UsagePriced};
use tally_domain::{Money, Unit};
use tally_store::{LineFilter, Store};
use uuid::Uuid;

/// Entries in each top-N list of a snapshot.
pub const TOP_N: usize = 20;
/// Window over which events per second are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

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
    recent: VecDeque<Instant>,
    last_event_at: Option<DateTime<Utc>>,
    version: u64,
}

/// A user's total.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    /// User id.
    pub user_id: String,
    /// Total cost.
    pub cost: Money,
    /// Usage events.
    pub events: u64,
}

/// A thread's total.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// Model name.
    pub model: String,
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Changes when the aggregates change.
    pub version: u64,
}

impl Dashboard {
    /// Fold one priced usage event in.
    pub fn apply(&mut self, e: &UsagePriced) {
        self.fold(&e.user_id, e.thread_id, &e.model, e.cost.lines.iter().map(|l| (l.kind.to_string(), Some(l.unit), l.quantity, l.amount)), 1);
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
}

impl DashboardHandle {
    /// Load totals from storage, then follow the feed (call inside a tokio runtime).
    pub fn start(store: Store, feed: &UsageFeed) -> Self {
        let handle = DashboardHandle::default();
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
                    Ok(e) => {
                        if seen.insert(e.event_id) {
                            h.with(|d| d.apply(&e));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "Dashboard aggregator lagged behind the feed.");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        handle
    }

    /// Run `f` with the aggregates locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Dashboard) -> R) -> R {
        // A poisoned lock only means a panic mid-update of plain counters; keep serving.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn load(store: &Store) -> Result<(Dashboard, std::collections::HashSet<Uuid>), tally_store::StoreError> {
    let mut dash = Dashboard::default();
    let events = store.usage_events(&LineFilter::default(), i64::MAX)?;
    let mut seen = std::collections::HashSet::new();
    for e in events.iter().rev() {
        seen.insert(e.event_id);
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
