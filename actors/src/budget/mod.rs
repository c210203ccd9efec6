//! The budget ledger: hard budgets enforced on the request path by reserve-then-settle.
//!
//! A request first [reserves](BudgetLedger::reserve) an upper bound of its cost
//! against every budget window it must fit in, atomically and all-or-nothing; it is
//! admitted only if each window's `spent + reserved + amount <= max`. The amount is
//! never shrunk to fit (LiteLLM admits a request against the remaining headroom, so one
//! request overshoots by its own cost). When the response is done the hold is
//! [settled](BudgetLedger::settle) with the actual cost, or [released](BudgetLedger::release)
//! if upstream failed before any usage. A hold has a lease: a process that dies between
//! reserve and settle leaks nothing, its hold expires and its amount leaves `reserved`.
//!
//! Committed spend is loaded from the database (the source of truth) through a
//! [`SpendLoader`] the first time a window is touched, and only ever set if absent, so
//! concurrent first touches cannot overwrite each other (LiteLLM #40050).
//!
//! Two ledgers implement [`BudgetLedger`]:
//! - [`LocalLedger`] (embedded mode): one actor owns all state in process memory.
//! - [`RedisLedger`] (cluster mode): state in Redis shared by every node, one Lua script
//!   per operation; Redis unreachable fails closed with [`BudgetError::Unavailable`].

mod load;
pub mod local;
pub mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tally_domain::BudgetWindow;
use uuid::Uuid;

pub use local::{
    BudgetActor, GetWindowState, Invalidate, LoadRequest, LocalLedger, Release, ReleaseOutcome, Renew, Reserve,
    ReserveOutcome, SeedWindow, Settle, SettleOutcome, WindowLookup,
};
pub use redis::{RedisLedger, RedisLedgerConfig};

/// How long a spend load may take before the request fails with [`BudgetError::Load`].
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times an operation loads missing baselines and tries again before giving
/// up; more than one round happens only when an invalidation races the load.
pub const MAX_LOAD_ROUNDS: usize = 4;

/// One budget window that a request must fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimit {
    /// The budget (one row per scope x period in the database).
    pub budget_id: Uuid,
    /// Most that may be spent in the window, USD.
    pub max: Decimal,
    /// The window the request falls in (see [`tally_domain::window`]).
    pub window: BudgetWindow,
}

/// Current state of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowState {
    /// Committed spend: the database's spend when the window was loaded plus every
    /// settle since.
    pub spent: Decimal,
    /// Sum of the live holds made in the window.
    pub reserved: Decimal,
}

impl WindowState {
    /// What is left of `max`: `max - spent - reserved`, shown as zero when overspent.
    pub fn remaining(&self, max: Decimal) -> Decimal {
        (max - self.spent - self.reserved).max(Decimal::ZERO)
    }
}

/// Loads a window's committed spend from the database (the source of truth). Blocking is
/// fine: the ledgers call it through `tokio::task::spawn_blocking`.
pub type SpendLoader = Arc<dyn Fn(Uuid, &BudgetWindow) -> Result<Decimal, String> + Send + Sync>;

/// Why the ledger refused or could not answer. Each variant has a stable `code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The request does not fit in a budget window (HTTP 402).
    #[error("budget {budget_id} exceeded: max {max}, spent {spent}, reserved {reserved}, remaining {remaining}; resets at {resets_at}")]
    Exceeded {
        /// The first budget the request did not fit in.
        budget_id: Uuid,
        /// Its maximum, USD.
        max: Decimal,
        /// Its committed spend in the window, USD.
        spent: Decimal,
        /// Its live holds in the window, USD.
        reserved: Decimal,
        /// `max - spent - reserved`, at least zero.
        remaining: Decimal,
        /// When the window ends and the budget starts over.
        resets_at: DateTime<Utc>,
    },
    /// The shared ledger (Redis) cannot be reached: requests fail closed (HTTP 503).
    #[error("budget ledger unavailable: {0}")]
    Unavailable(String),
    /// A window's committed spend could not be loaded from the database (HTTP 503).
    #[error("budget spend could not be loaded: {0}")]
    Load(String),
    /// The input cannot be enforced: a negative amount, or a budget too large for the
    /// ledger to count exactly (HTTP 400).
    #[error("invalid budget input: {0}")]
    Invalid(String),
    /// `renew` of a hold that is no longer live: it expired, was settled or released, or
    /// never existed (HTTP 409).
    #[error("budget hold {0} is not active")]
    HoldNotActive(Uuid),
}

impl BudgetError {
    /// Stable machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            BudgetError::Exceeded { .. } => "budget_exceeded",
            BudgetError::Unavailable(_) => "budget_unavailable",
            BudgetError::Load(_) => "budget_load_failed",
            BudgetError::Invalid(_) => "budget_invalid",
            BudgetError::HoldNotActive(_) => "budget_hold_not_active",
        }
    }

    /// Whether the same request may succeed later. An exceeded budget is not retryable:
    /// waiting for other holds to settle is not a retry policy, and SDKs that retry
    /// would storm (LiteLLM's 429 did).
    pub fn is_retryable(&self) -> bool {
        match self {
            BudgetError::Unavailable(_) | BudgetError::Load(_) => true,
            BudgetError::Exceeded { .. } | BudgetError::Invalid(_) | BudgetError::HoldNotActive(_) => false,
        }
    }
}

impl From<actix::MailboxError> for BudgetError {
    fn from(e: actix::MailboxError) -> Self {
        BudgetError::Unavailable(format!("budget actor: {e}"))
    }
}

/// Enforces budgets on the request path. Every method is safe to call concurrently
/// from many requests (and, for [`RedisLedger`], from many nodes).
#[async_trait]
pub trait BudgetLedger: Send + Sync + 'static {
    /// Atomically reserve `amount` against EVERY limit, or none: admitted only if for
    /// each limit `spent + reserved + amount <= max`. Never shrinks the amount to fit.
    /// Hold ids are unique; the same `hold_id` reserved twice is a no-op returning `Ok`
    /// (also after the first was settled, released or expired, for as long as the ledger
    /// remembers it). Limits naming the same budget window are merged (the smallest max
    /// applies). The hold lives for `lease` unless [renewed](Self::renew).
    ///
    /// On [`BudgetError::Unavailable`] the hold may or may not exist (the reply was
    /// lost); a [`release`](Self::release) is safe, and otherwise the lease ends it.
    async fn reserve(&self, hold_id: Uuid, limits: &[BudgetLimit], amount: Decimal, lease: Duration) -> Result<(), BudgetError>;

    /// Replace the hold by the actual cost: its amount leaves `reserved` and `actual` is
    /// added to `spent` of each window the hold was made in (not the window current at
    /// settle time). Idempotent:
    /// - a second settle, or a settle after release, changes nothing;
    /// - a settle after the lease expired (the amount already left `reserved`) still adds
    ///   `actual` to `spent`, once: the money was spent;
    /// - a window whose baseline is not loaded (invalidated, or the shared state was lost)
    ///   gets nothing: its next load reads the database, which records this usage;
    /// - an unknown hold (never reserved, or finished longer ago than the ledger
    ///   remembers) changes nothing.
    async fn settle(&self, hold_id: Uuid, actual: Decimal) -> Result<(), BudgetError>;

    /// Drop the hold (upstream failed before any usage). Idempotent; after expiry it only
    /// marks the hold finished so a late settle adds nothing.
    async fn release(&self, hold_id: Uuid) -> Result<(), BudgetError>;

    /// Extend a hold's lease to at least `lease` from now (long streams call this
    /// periodically). Fails with [`BudgetError::HoldNotActive`] once the hold expired or
    /// finished: its amount no longer counts against the budget.
    async fn renew(&self, hold_id: Uuid, lease: Duration) -> Result<(), BudgetError>;

    /// The window's committed spend and live holds (loading its baseline if needed).
    async fn state(&self, limit: &BudgetLimit) -> Result<WindowState, BudgetError>;

    /// Forget cached state of a budget (its max changed or it was deleted); the next use
    /// reloads its spend from the loader. Live holds keep counting.
    async fn invalidate(&self, budget_id: Uuid) -> Result<(), BudgetError>;
}

/// An embedded ledger (one [`BudgetActor`] owning all state) as a shared trait object.
///
/// Must be called inside a running actix `System` (an `actix_rt` runtime): it starts the
/// actor on the current arbiter, and panics otherwise.
pub fn local(loader: SpendLoader) -> Arc<dyn BudgetLedger> {
    Arc::new(LocalLedger::start(loader))
}

/// A cluster ledger on the Redis at `url` as a shared trait object. Checks that Redis
/// answers, so a misconfigured URL fails at start-up with [`BudgetError::Unavailable`].
pub async fn redis(url: &str, loader: SpendLoader) -> Result<Arc<dyn BudgetLedger>, BudgetError> {
    let ledger = RedisLedger::connect(url, loader)?;
    ledger.ping().await?;
    Ok(Arc::new(ledger))
}

/// Key of one budget window: the budget and the window's start.
pub(crate) type WindowKey = (Uuid, DateTime<Utc>);

/// Limits with one entry per window key (the smallest max wins), in a stable order.
pub(crate) fn merge_limits(limits: &[BudgetLimit]) -> Vec<BudgetLimit> {
    let mut merged: BTreeMap<WindowKey, BudgetLimit> = BTreeMap::new();
    for limit in limits {
        merged
            .entry((limit.budget_id, limit.window.start))
            .and_modify(|l| l.max = l.max.min(limit.max))
            .or_insert_with(|| limit.clone());
    }
    merged.into_values().collect()
}

/// Refuse negative money amounts (`what` names the argument in the error).
pub(crate) fn check_not_negative(what: &str, amount: Decimal) -> Result<(), BudgetError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(BudgetError::Invalid(format!("{what} must not be negative: {amount}")));
    }
    Ok(())
}

/// Whether `amount` fits: `spent + reserved + amount <= max` (an overflowing sum does not fit).
pub(crate) fn fits(spent: Decimal, reserved: Decimal, amount: Decimal, max: Decimal) -> bool {
    spent
        .checked_add(reserved)
        .and_then(|s| s.checked_add(amount))
        .is_some_and(|total| total <= max)
}

/// The error for a request that does not fit in `limit`.
pub(crate) fn exceeded(limit: &BudgetLimit, spent: Decimal, reserved: Decimal) -> BudgetError {
    let state = WindowState { spent, reserved };
    BudgetError::Exceeded {
        budget_id: limit.budget_id,
        max: limit.max,
        spent,
        reserved,
        remaining: state.remaining(limit.max),
        resets_at: limit.window.end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn day(d: u32) -> BudgetWindow {
        let start = Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).single().unwrap_or_default();
        BudgetWindow { start, end: start + chrono::Duration::days(1) }
    }

    #[test]
    fn merges_limits_of_the_same_window() {
        let b = Uuid::now_v7();
        let limits = [
            BudgetLimit { budget_id: b, max: dec!(5), window: day(1) },
            BudgetLimit { budget_id: b, max: dec!(3), window: day(1) },
            BudgetLimit { budget_id: b, max: dec!(9), window: day(2) },
        ];
        let merged = merge_limits(&limits);
        assert_eq!(merged.len(), 2, "one limit per window");
        assert_eq!(merged[0].max, dec!(3), "the smallest max of a window applies");
    }

    #[test]
    fn fit_is_inclusive_and_overflow_safe() {
        assert!(fits(dec!(1), dec!(2), dec!(3), dec!(6)), "exactly at max fits");
        assert!(!fits(dec!(1), dec!(2), dec!(3.0000000001), dec!(6)), "a hair over does not");
        assert!(!fits(Decimal::MAX, Decimal::MAX, dec!(1), Decimal::MAX), "overflow does not fit");
    }

    #[test]
    fn codes_and_retryability() {
        let e = exceeded(&BudgetLimit { budget_id: Uuid::nil(), max: dec!(1), window: day(1) }, dec!(2), dec!(0));
        assert_eq!(e.code(), "budget_exceeded", "stable code");
        assert!(!e.is_retryable(), "an exceeded budget is not retried");
        assert!(matches!(e, BudgetError::Exceeded { remaining, .. } if remaining.is_zero()), "remaining shown as zero when overspent");
        assert!(BudgetError::Unavailable("x".into()).is_retryable(), "an outage is retryable");
        assert_eq!(BudgetError::Load("x".into()).code(), "budget_load_failed", "stable code");
        assert!(check_not_negative("amount", dec!(-0.01)).is_err(), "negative refused");
        assert!(check_not_negative("amount", Decimal::ZERO).is_ok(), "zero accepted");
    }
}
