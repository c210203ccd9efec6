//! The embedded budget ledger: [`BudgetActor`] owns every window and hold of this process.
//!
//! The actor never blocks and never awaits: a message that touches a window whose
//! committed spend is not loaded answers with the windows to load
//! ([`ReserveOutcome::NeedsLoad`]). [`LocalLedger`] loads them on the blocking pool, hands
//! them back with [`SeedWindow`] (applied only if the window is still unloaded and its
//! budget was not invalidated meanwhile, never overwriting), and asks again. So two
//! concurrent first touches cannot overwrite each other, and nothing is admitted
//! against a window without its baseline.
//!
//! A hold whose lease deadline passed is expired: every message sweeps such holds
//! before acting, and a timer does every [`SWEEP_INTERVAL`]. Finished holds are remembered for [`FINISHED_HOLD_RETENTION`]
//! (a repeat settle or reserve is a no-op), expired ones for [`EXPIRED_HOLD_RETENTION`]
//! (a late settle still adds the actual cost, once).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tally_domain::BudgetWindow;
use tally_observability::TraceContext;
use tokio::time::Instant;
use uuid::Uuid;

use super::load::SpendLoads;
use super::{
    check_not_negative, exceeded, fits, merge_limits, BudgetError, BudgetLedger, BudgetLimit, SpendLoader, WindowKey,
    WindowState, MAX_LOAD_ROUNDS,
};

/// How often the actor sweeps expired holds and forgets old windows and finished holds.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a settled or released hold is remembered: a repeat settle, release or
/// reserve with its id within this time is a no-op.
pub const FINISHED_HOLD_RETENTION: Duration = Duration::from_secs(10 * 60);

/// How long an expired hold is remembered: a settle within this time still adds its
/// actual cost (once); later it is unknown and adds nothing (the database has it).
pub const EXPIRED_HOLD_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long after its end a window is kept, so holds made in it can still settle into it.
pub const WINDOW_RETENTION: Duration = Duration::from_secs(6 * 60 * 60);

/// A window to load: its committed spend is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    /// The budget.
    pub budget_id: Uuid,
    /// The window.
    pub window: BudgetWindow,
    /// The budget's generation when the load was asked for; a seed carrying an older
    /// generation (the budget was invalidated meanwhile) is ignored.
    pub generation: u64,
}

/// Command: reserve `amount` against every limit, or none.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ReserveOutcome, BudgetError>")]
pub struct Reserve {
    /// Unique id of the hold.
    pub hold_id: Uuid,
    /// The windows the request must fit in.
    pub limits: Vec<BudgetLimit>,
    /// Upper bound of the request's cost, USD.
    pub amount: Decimal,
    /// How long the hold lives unless renewed.
    pub lease: Duration,
    /// Trace context of the request.
    pub trace: TraceContext,
}

/// What a [`Reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The hold was recorded in every window.
    Admitted,
    /// A hold with this id is live or was recently finished: nothing changed.
    Duplicate,
    /// Some windows have no baseline: load these, [`SeedWindow`] them, and ask again.
    NeedsLoad(Vec<LoadRequest>),
}

/// Command: replace a hold by its actual cost.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<SettleOutcome, BudgetError>")]
pub struct Settle {
    /// The hold.
    pub hold_id: Uuid,
    /// What the request really cost, USD.
    pub actual: Decimal,
    /// Trace context of the request.
    pub trace: TraceContext,
}

/// What a [`Settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The live hold left `reserved` and the actual cost was added to `spent`.
    Settled,
    /// The hold had expired (its amount had already left `reserved`): the actual cost
    /// was added to `spent`.
    SettledAfterExpiry,
    /// The hold was already settled or released: nothing changed.
    AlreadyFinished,
    /// No such hold is remembered: nothing changed.
    UnknownHold,
}

/// Command: drop a hold without cost.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ReleaseOutcome, BudgetError>")]
pub struct Release {
    /// The hold.
    pub hold_id: Uuid,
    /// Trace context of the request.
    pub trace: TraceContext,
}

/// What a [`Release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The live hold left `reserved`.
    Released,
    /// The hold had expired: it is now finished, so a late settle adds nothing.
    ReleasedAfterExpiry,
    /// The hold was already settled or released: nothing changed.
    AlreadyFinished,
    /// No such hold is remembered: nothing changed.
    UnknownHold,
}

/// Command: extend a live hold's lease to at least `lease` from now.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BudgetError>")]
pub struct Renew {
    /// The hold.
    pub hold_id: Uuid,
    /// New minimum remaining lifetime.
    pub lease: Duration,
    /// Trace context of the request.
    pub trace: TraceContext,
}

/// Query: the state of one window.
#[derive(Message, Debug, Clone)]
#[rtype(result = "WindowLookup")]
pub struct GetWindowState {
    /// The window.
    pub limit: BudgetLimit,
    /// Trace context of the caller.
    pub trace: TraceContext,
}

/// Answer to [`GetWindowState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowLookup {
    /// The window's state.
    Loaded(WindowState),
    /// The window has no baseline: load it, [`SeedWindow`] it, and ask again.
    NeedsLoad(LoadRequest),
}

/// Command: forget the committed spend of every window of a budget; live holds keep counting.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Invalidate {
    /// The budget.
    pub budget_id: Uuid,
    /// Trace context of the caller.
    pub trace: TraceContext,
}

/// Command: set a window's committed spend if it has none and the budget's generation is
/// still `generation`. Answers whether it was applied.
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct SeedWindow {
    /// The budget.
    pub budget_id: Uuid,
    /// The window.
    pub window: BudgetWindow,
    /// Committed spend loaded from the database, USD.
    pub spent: Decimal,
    /// Generation the load was asked for under.
    pub generation: u64,
}

/// One window's counters.
#[derive(Debug, Clone)]
struct WindowEntry {
    end: DateTime<Utc>,
    /// Committed spend; `None` until loaded (or after an invalidation).
    spent: Option<Decimal>,
    /// Sum of live holds made in the window.
    reserved: Decimal,
}

/// A live hold.
#[derive(Debug, Clone)]
struct Hold {
    amount: Decimal,
    windows: Vec<WindowKey>,
    deadline: Instant,
}

/// What is remembered of a hold that is no longer live.
#[derive(Debug, Clone)]
enum Tombstone {
    /// The lease ran out; a settle still adds its actual cost to these windows.
    Expired { windows: Vec<WindowKey> },
    /// Settled or released.
    Finished,
}

/// Owns every budget window and hold of this process.
#[derive(Default)]
pub struct BudgetActor {
    windows: HashMap<WindowKey, WindowEntry>,
    holds: HashMap<Uuid, Hold>,
    /// Live holds by lease deadline, for sweeping.
    deadlines: BTreeSet<(Instant, Uuid)>,
    tombstones: HashMap<Uuid, (Tombstone, Instant)>,
    /// Tombstones in the order they were written with their forget time; an entry whose
    /// time no longer matches the map (the tombstone was replaced) is skipped.
    tombstone_order: VecDeque<(Instant, Uuid)>,
    expired_order: VecDeque<(Instant, Uuid)>,
    /// Bumped by every invalidation of a budget.
    generations: HashMap<Uuid, u64>,
}

impl BudgetActor {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn generation(&self, budget_id: Uuid) -> u64 {
        self.generations.get(&budget_id).copied().unwrap_or(0)
    }

    fn load_request(&self, limit: &BudgetLimit) -> Option<LoadRequest> {
        let loaded = self
            .windows
            .get(&(limit.budget_id, limit.window.start))
            .is_some_and(|w| w.spent.is_some());
        (!loaded).then(|| LoadRequest {
            budget_id: limit.budget_id,
            window: limit.window,
            generation: self.generation(limit.budget_id),
        })
    }

    /// Move every hold whose lease ended out of `reserved`, keeping a tombstone.
    fn sweep_expired(&mut self, now: Instant) {
        while let Some(&(deadline, hold_id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, hold_id));
            let Some(hold) = self.holds.remove(&hold_id) else { continue };
            self.unreserve(&hold);
            tracing::warn!(budget.hold_id = %hold_id, amount_usd = %hold.amount, "Budget hold expired before settle.");
            self.bury(hold_id, Tombstone::Expired { windows: hold.windows }, now);
        }
    }

    fn unreserve(&mut self, hold: &Hold) {
        for key in &hold.windows {
            if let Some(w) = self.windows.get_mut(key) {
                w.reserved -= hold.amount;
            }
        }
    }

    fn add_spent(&mut self, windows: &[WindowKey], actual: Decimal) {
        for key in windows {
            // A window without a baseline gets nothing: its load reads the database,
            // which records this usage.
            if let Some(spent) = self.windows.get_mut(key).and_then(|w| w.spent.as_mut()) {
                *spent += actual;
            }
        }
    }

    fn bury(&mut self, hold_id: Uuid, tombstone: Tombstone, now: Instant) {
        let (retention, order) = match tombstone {
            Tombstone::Expired { .. } => (EXPIRED_HOLD_RETENTION, &mut self.expired_order),
            Tombstone::Finished => (FINISHED_HOLD_RETENTION, &mut self.tombstone_order),
        };
        let forget_at = now + retention;
        order.push_back((forget_at, hold_id));
        self.tombstones.insert(hold_id, (tombstone, forget_at));
    }

    /// Forget old tombstones and windows that ended long ago and hold nothing.
    fn prune(&mut self, now: Instant, wall: DateTime<Utc>) {
        for order in [&mut self.tombstone_order, &mut self.expired_order] {
            while let Some(&(forget_at, hold_id)) = order.front() {
                if forget_at > now {
                    break;
                }
                order.pop_front();
                if self.tombstones.get(&hold_id).is_some_and(|(_, at)| *at == forget_at) {
                    self.tombstones.remove(&hold_id);
                }
            }
        }
        let retention = chrono::Duration::from_std(WINDOW_RETENTION).unwrap_or(chrono::Duration::MAX);
        self.windows.retain(|_, w| {
            let expired = w.end.checked_add_signed(retention).is_some_and(|until| until <= wall);
            !expired || !w.reserved.is_zero()
        });
    }

    fn state_of(&self, key: &WindowKey) -> Option<WindowState> {
        let w = self.windows.get(key)?;
        Some(WindowState { spent: w.spent?, reserved: w.reserved })
    }
}

impl Actor for BudgetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_INTERVAL, |actor, _| {
            let now = Instant::now();
            actor.sweep_expired(now);
            actor.prune(now, Utc::now());
        });
    }
}

impl Supervised for BudgetActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("BudgetActor restarting.");
    }
}

fn handler_span(name: &'static str, hold_id: Option<Uuid>, trace: &TraceContext) -> tracing::Span {
    let span = tracing::debug_span!("budget", budget.op = name, budget.hold_id = tracing::field::Empty);
    if let Some(id) = hold_id {
        span.record("budget.hold_id", tracing::field::display(id));
    }
    trace.attach(&span);
    span
}

impl Handler<Reserve> for BudgetActor {
    type Result = Result<ReserveOutcome, BudgetError>;

    fn handle(&mut self, msg: Reserve, _ctx: &mut Context<Self>) -> Self::Result {
        let _span = handler_span("reserve", Some(msg.hold_id), &msg.trace).entered();
        check_not_negative("amount", msg.amount)?;
        if msg.lease.is_zero() {
            return Err(BudgetError::Invalid("lease must be longer than zero".into()));
        }
        if self.holds.contains_key(&msg.hold_id) || self.tombstones.contains_key(&msg.hold_id) {
            return Ok(ReserveOutcome::Duplicate);
        }
        let limits = merge_limits(&msg.limits);
        let missing: Vec<LoadRequest> = limits.iter().filter_map(|l| self.load_request(l)).collect();
        if !missing.is_empty() {
            return Ok(ReserveOutcome::NeedsLoad(missing));
        }
        let now = Instant::now();
        self.sweep_expired(now);
        for limit in &limits {
            let key = (limit.budget_id, limit.window.start);
            let state = self.state_of(&key).unwrap_or_default();
            if !fits(state.spent, state.reserved, msg.amount, limit.max) {
                return Err(exceeded(limit, state.spent, state.reserved));
            }
        }
        let keys: Vec<WindowKey> = limits.iter().map(|l| (l.budget_id, l.window.start)).collect();
        for key in &keys {
            if let Some(w) = self.windows.get_mut(key) {
                w.reserved += msg.amount;
            }
        }
        let deadline = now + msg.lease;
        self.deadlines.insert((deadline, msg.hold_id));
        self.holds.insert(msg.hold_id, Hold { amount: msg.amount, windows: keys, deadline });
        Ok(ReserveOutcome::Admitted)
    }
}

impl Handler<Settle> for BudgetActor {
    type Result = Result<SettleOutcome, BudgetError>;

    fn handle(&mut self, msg: Settle, _ctx: &mut Context<Self>) -> Self::Result {
        let _span = handler_span("settle", Some(msg.hold_id), &msg.trace).entered();
        check_not_negative("actual cost", msg.actual)?;
        let now = Instant::now();
        self.sweep_expired(now);
        if let Some(hold) = self.holds.remove(&msg.hold_id) {
            self.deadlines.remove(&(hold.deadline, msg.hold_id));
            self.unreserve(&hold);
            self.add_spent(&hold.windows, msg.actual);
            self.bury(msg.hold_id, Tombstone::Finished, now);
            return Ok(SettleOutcome::Settled);
        }
        match self.tombstones.get(&msg.hold_id) {
            Some((Tombstone::Expired { windows }, _)) => {
                let windows = windows.clone();
                self.add_spent(&windows, msg.actual);
                self.bury(msg.hold_id, Tombstone::Finished, now);
                Ok(SettleOutcome::SettledAfterExpiry)
            }
            Some((Tombstone::Finished, _)) => Ok(SettleOutcome::AlreadyFinished),
            None => {
                tracing::warn!(budget.hold_id = %msg.hold_id, cost_usd = %msg.actual, "Settle of an unknown budget hold ignored.");
                Ok(SettleOutcome::UnknownHold)
            }
        }
    }
}

impl Handler<Release> for BudgetActor {
    type Result = Result<ReleaseOutcome, BudgetError>;

    fn handle(&mut self, msg: Release, _ctx: &mut Context<Self>) -> Self::Result {
        let _span = handler_span("release", Some(msg.hold_id), &msg.trace).entered();
        let now = Instant::now();
        self.sweep_expired(now);
        if let Some(hold) = self.holds.remove(&msg.hold_id) {
            self.deadlines.remove(&(hold.deadline, msg.hold_id));
            self.unreserve(&hold);
            self.bury(msg.hold_id, Tombstone::Finished, now);
            return Ok(ReleaseOutcome::Released);
        }
        match self.tombstones.get(&msg.hold_id) {
            Some((Tombstone::Expired { .. }, _)) => {
                self.bury(msg.hold_id, Tombstone::Finished, now);
                Ok(ReleaseOutcome::ReleasedAfterExpiry)
            }
            Some((Tombstone::Finished, _)) => Ok(ReleaseOutcome::AlreadyFinished),
            None => Ok(ReleaseOutcome::UnknownHold),
        }
    }
}

impl Handler<Renew> for BudgetActor {
    type Result = Result<(), BudgetError>;

    fn handle(&mut self, msg: Renew, _ctx: &mut Context<Self>) -> Self::Result {
        let _span = handler_span("renew", Some(msg.hold_id), &msg.trace).entered();
        let now = Instant::now();
        self.sweep_expired(now);
        let Some(hold) = self.holds.get_mut(&msg.hold_id) else {
            return Err(BudgetError::HoldNotActive(msg.hold_id));
        };
        let deadline = hold.deadline.max(now + msg.lease);
        self.deadlines.remove(&(hold.deadline, msg.hold_id));
        hold.deadline = deadline;
        self.deadlines.insert((deadline, msg.hold_id));
        Ok(())
    }
}

impl Handler<GetWindowState> for BudgetActor {
    type Result = MessageResult<GetWindowState>;

    fn handle(&mut self, msg: GetWindowState, _ctx: &mut Context<Self>) -> Self::Result {
        let _span = handler_span("state", None, &msg.trace).entered();
        if let Some(request) = self.load_request(&msg.limit) {
            return MessageResult(WindowLookup::NeedsLoad(request));
        }
        self.sweep_expired(Instant::now());
        let state = self.state_of(&(msg.limit.budget_id, msg.limit.window.start)).unwrap_or_default();
        MessageResult(WindowLookup::Loaded(state))
    }
}

impl Handler<Invalidate> for BudgetActor {
    type Result = ();

    fn handle(&mut self, msg: Invalidate, _ctx: &mut Context<Self>) {
        let _span = handler_span("invalidate", None, &msg.trace).entered();
        *self.generations.entry(msg.budget_id).or_insert(0) += 1;
        for ((budget_id, _), w) in self.windows.iter_mut() {
            if *budget_id == msg.budget_id {
                w.spent = None;
            }
        }
    }
}

impl Handler<SeedWindow> for BudgetActor {
    type Result = bool;

    fn handle(&mut self, msg: SeedWindow, _ctx: &mut Context<Self>) -> bool {
        if msg.generation != self.generation(msg.budget_id) {
            return false;
        }
        let entry = self
            .windows
            .entry((msg.budget_id, msg.window.start))
            .or_insert(WindowEntry { end: msg.window.end, spent: None, reserved: Decimal::ZERO });
        if entry.spent.is_some() {
            return false;
        }
        entry.spent = Some(msg.spent);
        true
    }
}

/// Query (tests only): how many holds are live, without sweeping.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "usize")]
struct CountLiveHolds;

#[cfg(test)]
impl Handler<CountLiveHolds> for BudgetActor {
    type Result = usize;

    fn handle(&mut self, _msg: CountLiveHolds, _ctx: &mut Context<Self>) -> usize {
        self.holds.len()
    }
}

/// The embedded ledger: a handle on a [`BudgetActor`] plus the spend loader.
#[derive(Clone)]
pub struct LocalLedger {
    addr: Addr<BudgetActor>,
    loads: Arc<SpendLoads>,
}

impl LocalLedger {
    /// Start a [`BudgetActor`] (supervised) on the current arbiter. Must be called inside
    /// a running actix `System`.
    pub fn start(loader: SpendLoader) -> Self {
        let addr = Supervisor::start(|_| BudgetActor::new());
        LocalLedger { addr, loads: SpendLoads::new(loader) }
    }

    /// The actor, for sending messages directly (tests, admin tools).
    pub fn addr(&self) -> &Addr<BudgetActor> {
        &self.addr
    }

    /// Load the windows in `requests` (concurrently) and seed them into the actor.
    async fn load_all(&self, requests: Vec<LoadRequest>) -> Result<(), BudgetError> {
        let loads = requests.into_iter().map(|r| async move {
            let spent = self.loads.load(r.budget_id, r.window, r.generation).await?;
            self.addr
                .send(SeedWindow { budget_id: r.budget_id, window: r.window, spent, generation: r.generation })
                .await?;
            Ok::<(), BudgetError>(())
        });
        futures::future::try_join_all(loads).await.map(|_| ())
    }

    /// Reserve, answering what happened (see [`BudgetLedger::reserve`]).
    pub async fn reserve_outcome(
        &self,
        hold_id: Uuid,
        limits: &[BudgetLimit],
        amount: Decimal,
        lease: Duration,
    ) -> Result<ReserveOutcome, BudgetError> {
        let trace = TraceContext::current();
        for _ in 0..MAX_LOAD_ROUNDS {
            let msg = Reserve { hold_id, limits: limits.to_vec(), amount, lease, trace: trace.clone() };
            match self.addr.send(msg).await?? {
                ReserveOutcome::NeedsLoad(requests) => self.load_all(requests).await?,
                done => return Ok(done),
            }
        }
        Err(too_many_rounds())
    }

    /// Settle, answering what happened (see [`BudgetLedger::settle`]).
    pub async fn settle_outcome(&self, hold_id: Uuid, actual: Decimal) -> Result<SettleOutcome, BudgetError> {
        self.addr.send(Settle { hold_id, actual, trace: TraceContext::current() }).await?
    }

    /// Release, answering what happened (see [`BudgetLedger::release`]).
    pub async fn release_outcome(&self, hold_id: Uuid) -> Result<ReleaseOutcome, BudgetError> {
        self.addr.send(Release { hold_id, trace: TraceContext::current() }).await?
    }
}

fn too_many_rounds() -> BudgetError {
    BudgetError::Load(format!("budget was invalidated during each of {MAX_LOAD_ROUNDS} loads"))
}

#[async_trait]
impl BudgetLedger for LocalLedger {
    async fn reserve(&self, hold_id: Uuid, limits: &[BudgetLimit], amount: Decimal, lease: Duration) -> Result<(), BudgetError> {
        self.reserve_outcome(hold_id, limits, amount, lease).await.map(|_| ())
    }

    async fn settle(&self, hold_id: Uuid, actual: Decimal) -> Result<(), BudgetError> {
        self.settle_outcome(hold_id, actual).await.map(|_| ())
    }

    async fn release(&self, hold_id: Uuid) -> Result<(), BudgetError> {
        self.release_outcome(hold_id).await.map(|_| ())
    }

    async fn renew(&self, hold_id: Uuid, lease: Duration) -> Result<(), BudgetError> {
        self.addr.send(Renew { hold_id, lease, trace: TraceContext::current() }).await?
    }

    async fn state(&self, limit: &BudgetLimit) -> Result<WindowState, BudgetError> {
        let trace = TraceContext::current();
        for _ in 0..MAX_LOAD_ROUNDS {
            match self.addr.send(GetWindowState { limit: limit.clone(), trace: trace.clone() }).await? {
                WindowLookup::Loaded(state) => return Ok(state),
                WindowLookup::NeedsLoad(request) => self.load_all(vec![request]).await?,
            }
        }
        Err(too_many_rounds())
    }

    async fn invalidate(&self, budget_id: Uuid) -> Result<(), BudgetError> {
        Ok(self.addr.send(Invalidate { budget_id, trace: TraceContext::current() }).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use tally_domain::{BudgetPeriod, Tz};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    const LEASE: Duration = Duration::from_secs(60);
    const SHORT_LEASE: Duration = Duration::from_millis(40);
    const PAST_SHORT_LEASE: Duration = Duration::from_millis(120);

    /// The UTC day `offset` days from today (windows in the past would be pruned by the timer).
    fn day(offset: i64) -> BudgetWindow {
        tally_domain::window(BudgetPeriod::Daily, Tz::UTC, Utc::now() + chrono::Duration::days(offset))
    }

    fn month() -> BudgetWindow {
        tally_domain::window(BudgetPeriod::Monthly, Tz::UTC, Utc::now())
    }

    type SpendTable = Arc<Mutex<HashMap<(Uuid, DateTime<Utc>), Decimal>>>;

    /// A loader answering from a table (zero when absent) and counting its calls.
    #[derive(Clone, Default)]
    struct Db {
        spent: SpendTable,
        calls: Arc<AtomicUsize>,
    }

    impl Db {
        fn set(&self, b: Uuid, w: BudgetWindow, v: Decimal) {
            self.spent.lock().unwrap_or_else(|p| p.into_inner()).insert((b, w.start), v);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn loader(&self) -> SpendLoader {
            let db = self.clone();
            Arc::new(move |b, w| {
                db.calls.fetch_add(1, Ordering::SeqCst);
                Ok(db.spent.lock().unwrap_or_else(|p| p.into_inner()).get(&(b, w.start)).copied().unwrap_or_default())
            })
        }
    }

    fn limit(b: Uuid, max: Decimal, window: BudgetWindow) -> BudgetLimit {
        BudgetLimit { budget_id: b, max, window }
    }

    async fn state(ledger: &LocalLedger, l: &BudgetLimit) -> WindowState {
        ledger.state(l).await.unwrap_or_else(|e| panic!("state: {e}"))
    }

    #[actix_rt::test]
    async fn admits_exactly_up_to_max() {
        let db = Db::default();
        let b = Uuid::now_v7();
        db.set(b, day(0), dec!(4));
        let ledger = LocalLedger::start(db.loader());
        let l = limit(b, dec!(10), day(0));
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(5.9999999999), LEASE).await;
        assert!(r.is_ok(), "4 + 5.9999999999 <= 10 is admitted: {r:?}");
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(0.0000000002), LEASE).await;
        match r {
            Err(BudgetError::Exceeded { budget_id, max, spent, reserved, remaining, resets_at }) => {
                assert_eq!(budget_id, b, "names the budget");
                assert_eq!((max, spent, reserved), (dec!(10), dec!(4), dec!(5.9999999999)), "reports the window");
                assert_eq!(remaining, dec!(0.0000000001), "exact remaining");
                assert_eq!(resets_at, day(0).end, "resets at the window end");
            }
            other => panic!("a reserve one hair over max must be refused, got {other:?}"),
        }
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(0.0000000001), LEASE).await;
        assert!(r.is_ok(), "exactly filling the budget is admitted: {r:?}");
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(4), reserved: dec!(6) }, "holds are reserved");
        assert_eq!(db.calls(), 1, "the baseline is loaded once");
    }

    #[actix_rt::test]
    async fn never_shrinks_a_reservation_to_fit() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(1), day(0));
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(1.5), LEASE).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "a request larger than the headroom is refused");
        assert_eq!(state(&ledger, &l).await.reserved, Decimal::ZERO, "nothing was reserved");
    }

    #[actix_rt::test]
    async fn all_or_nothing_across_windows() {
        let (d, m) = (Uuid::now_v7(), Uuid::now_v7());
        let db = Db::default();
        db.set(m, month(), dec!(95));
        let ledger = LocalLedger::start(db.loader());
        let daily = limit(d, dec!(10), day(0));
        let monthly = limit(m, dec!(100), month());
        let r = ledger.reserve(Uuid::now_v7(), &[daily.clone(), monthly.clone()], dec!(6), LEASE).await;
        assert!(matches!(&r, Err(BudgetError::Exceeded { max, .. }) if *max == dec!(100)), "the monthly budget refuses: {r:?}");
        assert_eq!(state(&ledger, &daily).await.reserved, Decimal::ZERO, "nothing reserved in the daily window either");
        let r = ledger.reserve(Uuid::now_v7(), &[daily.clone(), monthly.clone()], dec!(5), LEASE).await;
        assert!(r.is_ok(), "fits both: {r:?}");
        assert_eq!(state(&ledger, &daily).await.reserved, dec!(5), "reserved in the daily window");
        assert_eq!(state(&ledger, &monthly).await.reserved, dec!(5), "and in the monthly window");
    }

    #[actix_rt::test]
    async fn settle_and_release_are_idempotent() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(10), day(0));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&l), dec!(3), LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.reserve_outcome(hold, std::slice::from_ref(&l), dec!(3), LEASE).await, Ok(ReserveOutcome::Duplicate), "same hold id twice is a no-op");
        assert_eq!(state(&ledger, &l).await.reserved, dec!(3), "reserved once");
        assert_eq!(ledger.settle_outcome(hold, dec!(1.25)).await, Ok(SettleOutcome::Settled), "first settle applies");
        assert_eq!(ledger.settle_outcome(hold, dec!(1.25)).await, Ok(SettleOutcome::AlreadyFinished), "second settle is a no-op");
        assert_eq!(ledger.release_outcome(hold).await, Ok(ReleaseOutcome::AlreadyFinished), "release after settle is a no-op");
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(1.25), reserved: Decimal::ZERO }, "actual counted once");
        assert_eq!(ledger.reserve_outcome(hold, std::slice::from_ref(&l), dec!(3), LEASE).await, Ok(ReserveOutcome::Duplicate), "a finished hold id is not reused");

        let other = Uuid::now_v7();
        ledger.reserve(other, std::slice::from_ref(&l), dec!(2), LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.release_outcome(other).await, Ok(ReleaseOutcome::Released), "release drops the hold");
        assert_eq!(ledger.release_outcome(other).await, Ok(ReleaseOutcome::AlreadyFinished), "second release is a no-op");
        assert_eq!(ledger.settle_outcome(other, dec!(2)).await, Ok(SettleOutcome::AlreadyFinished), "settle after release changes nothing");
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(1.25), reserved: Decimal::ZERO }, "release costs nothing");
        assert_eq!(ledger.settle_outcome(Uuid::now_v7(), dec!(1)).await, Ok(SettleOutcome::UnknownHold), "unknown holds change nothing");
        assert_eq!(state(&ledger, &l).await.spent, dec!(1.25), "still");
        let r = ledger.settle(Uuid::now_v7(), dec!(-1)).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_invalid"), "negative cost refused");
    }

    #[actix_rt::test]
    async fn expiry_returns_reserved_and_late_settle_counts_once() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(10), day(0));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&l), dec!(8), SHORT_LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(8), LEASE).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "the live hold blocks");
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(state(&ledger, &l).await.reserved, Decimal::ZERO, "the expired hold left reserved");
        assert_eq!(ledger.renew(hold, LEASE).await.map_err(|e| e.code()), Err("budget_hold_not_active"), "an expired hold cannot be renewed");
        assert_eq!(ledger.settle_outcome(hold, dec!(2)).await, Ok(SettleOutcome::SettledAfterExpiry), "late settle applies");
        assert_eq!(ledger.settle_outcome(hold, dec!(2)).await, Ok(SettleOutcome::AlreadyFinished), "only once");
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(2), reserved: Decimal::ZERO }, "the money was spent, once");
    }

    #[actix_rt::test]
    async fn renew_keeps_a_hold_alive() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(10), day(0));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&l), dec!(4), SHORT_LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        ledger.renew(hold, LEASE).await.unwrap_or_else(|e| panic!("renew: {e}"));
        ledger.renew(hold, SHORT_LEASE).await.unwrap_or_else(|e| panic!("renew: {e}"));
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(state(&ledger, &l).await.reserved, dec!(4), "a renewed hold outlives its first lease, and renew never shortens it");
        assert_eq!(ledger.settle_outcome(hold, dec!(3)).await, Ok(SettleOutcome::Settled), "and settles normally");
    }

    #[actix_rt::test]
    async fn release_after_expiry_stops_a_late_settle() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(10), day(0));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&l), dec!(1), SHORT_LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(ledger.release_outcome(hold).await, Ok(ReleaseOutcome::ReleasedAfterExpiry), "release after expiry");
        assert_eq!(ledger.settle_outcome(hold, dec!(1)).await, Ok(SettleOutcome::AlreadyFinished), "settle after that is a no-op");
        assert_eq!(state(&ledger, &l).await.spent, Decimal::ZERO, "nothing spent");
    }

    #[actix_rt::test]
    async fn invalidate_reloads_and_keeps_holds() {
        let b = Uuid::now_v7();
        let db = Db::default();
        db.set(b, day(0), dec!(1));
        let ledger = LocalLedger::start(db.loader());
        let l = limit(b, dec!(10), day(0));
        ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(2), LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        db.set(b, day(0), dec!(7));
        assert_eq!(state(&ledger, &l).await.spent, dec!(1), "cached until invalidated");
        ledger.invalidate(b).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(7), reserved: dec!(2) }, "reloaded; the live hold still counts");
        assert_eq!(db.calls(), 2, "loaded twice");
        let r = ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(1.0000000001), LEASE).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_exceeded"), "the reloaded spend is enforced");
    }

    #[actix_rt::test]
    async fn a_stale_load_never_overwrites() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let addr = ledger.addr().clone();
        let seed = |spent, generation| SeedWindow { budget_id: b, window: day(0), spent, generation };
        assert_eq!(addr.send(seed(dec!(1), 0)).await.ok(), Some(true), "first seed applies");
        assert_eq!(addr.send(seed(dec!(9), 0)).await.ok(), Some(false), "a second seed never overwrites");
        addr.send(Invalidate { budget_id: b, trace: TraceContext::none() }).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(addr.send(seed(dec!(5), 0)).await.ok(), Some(false), "a load from before the invalidation is ignored");
        assert_eq!(addr.send(seed(dec!(3), 1)).await.ok(), Some(true), "a load from after it applies");
        assert_eq!(state(&ledger, &limit(b, dec!(10), day(0))).await.spent, dec!(3), "the fresh load is the baseline");
    }

    #[actix_rt::test]
    async fn concurrent_first_touches_load_once_and_never_overspend() {
        let b = Uuid::now_v7();
        let db = Db::default();
        db.set(b, day(0), dec!(2));
        let ledger = LocalLedger::start(db.loader());
        let l = limit(b, dec!(10), day(0));
        let results = futures::future::join_all((0..50).map(|_| ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&l), dec!(0.5), LEASE))).await;
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 16, "exactly (10 - 2) / 0.5 requests fit");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code() == "budget_exceeded"), "the rest are refused as exceeded");
        assert_eq!(db.calls(), 1, "fifty first touches share one load");
    }

    #[actix_rt::test]
    async fn a_hold_settles_into_the_window_it_was_made_in() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let today = limit(b, dec!(10), day(0));
        let tomorrow = limit(b, dec!(10), day(1));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&today), dec!(3), LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        // The clock moves on: new requests reserve in tomorrow's window.
        ledger.reserve(Uuid::now_v7(), std::slice::from_ref(&tomorrow), dec!(1), LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        ledger.settle(hold, dec!(2.5)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state(&ledger, &today).await, WindowState { spent: dec!(2.5), reserved: Decimal::ZERO }, "the hold's window gets the cost");
        assert_eq!(state(&ledger, &tomorrow).await, WindowState { spent: Decimal::ZERO, reserved: dec!(1) }, "the new window does not");
    }

    #[actix_rt::test]
    async fn load_failures_refuse_the_request() {
        let loader: SpendLoader = Arc::new(|_, _| Err("database is down".into()));
        let ledger = LocalLedger::start(loader);
        let r = ledger.reserve(Uuid::now_v7(), &[limit(Uuid::now_v7(), dec!(10), day(0))], dec!(1), LEASE).await;
        assert_eq!(r.map_err(|e| e.code()), Err("budget_load_failed"), "no baseline, no admission");
    }

    #[actix_rt::test]
    async fn the_timer_sweeps_expired_holds() {
        let b = Uuid::now_v7();
        let ledger = LocalLedger::start(Db::default().loader());
        let l = limit(b, dec!(10), day(0));
        let hold = Uuid::now_v7();
        ledger.reserve(hold, std::slice::from_ref(&l), dec!(4), SHORT_LEASE).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.addr().send(CountLiveHolds).await.ok(), Some(1), "one live hold");
        tokio::time::sleep(SWEEP_INTERVAL + PAST_SHORT_LEASE).await;
        assert_eq!(ledger.addr().send(CountLiveHolds).await.ok(), Some(0), "the timer expired the hold without any request");
        assert_eq!(ledger.settle_outcome(hold, dec!(1)).await, Ok(SettleOutcome::SettledAfterExpiry), "a late settle still counts");
        assert_eq!(state(&ledger, &l).await, WindowState { spent: dec!(1), reserved: Decimal::ZERO }, "reserved returned, cost counted");
    }

    #[test]
    fn prune_forgets_old_windows_and_tombstones() {
        let mut actor = BudgetActor::new();
        let b = Uuid::now_v7();
        let now = Instant::now();
        actor.windows.insert((b, day(0).start), WindowEntry { end: day(0).end, spent: Some(Decimal::ONE), reserved: Decimal::ZERO });
        actor.windows.insert((b, day(1).start), WindowEntry { end: day(1).end, spent: Some(Decimal::ONE), reserved: Decimal::ONE });
        // Pruned as of 20 days from now, both windows ended long ago.
        let hold = Uuid::now_v7();
        actor.bury(hold, Tombstone::Finished, now);
        actor.prune(now + FINISHED_HOLD_RETENTION, day(20).start);
        assert!(!actor.windows.contains_key(&(b, day(0).start)), "an old empty window is forgotten");
        assert!(actor.windows.contains_key(&(b, day(1).start)), "an old window with live holds is kept");
        assert!(!actor.tombstones.contains_key(&hold), "a finished hold is forgotten after its retention");
    }
}
