//! Budgets on the request path: which windows apply to a key, their state, the spend
//! loader (the database is the source of truth), and the once-per-window alert.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_actors::budget::{BudgetLimit, SpendLoader};
use tally_domain::budget::{parse_tz, window, BudgetPeriod, BudgetWindow};
use tally_store::{BudgetRecord, BudgetScope, KeyRecord, Store};
use uuid::Uuid;

use super::Gateway;

/// How long a key's budgets are trusted from memory. Changes through this node's API
/// take effect at once; changes made on another node within this time.
pub const BUDGET_CACHE_TTL: Duration = Duration::from_secs(2);
/// Most keys whose budgets are cached (cleared when full).
const BUDGET_CACHE_MAX: usize = 100_000;

/// The calendar window of a budget that contains `at`.
pub fn window_of(b: &BudgetRecord, at: DateTime<Utc>) -> Result<BudgetWindow, String> {
    let period = BudgetPeriod::from_str(&b.period).map_err(|e| format!("budget {}: {e}", b.budget_id))?;
    let tz = parse_tz(&b.timezone).map_err(|e| format!("budget {}: {e}", b.budget_id))?;
    Ok(window(period, tz, at))
}

/// The ledger limit of a budget at `at`.
pub fn limit_of(b: &BudgetRecord, at: DateTime<Utc>) -> Result<BudgetLimit, String> {
    Ok(BudgetLimit { budget_id: b.budget_id, max: b.max_budget, window: window_of(b, at)? })
}

/// The ledger's loader: a window's committed gateway spend, from the database.
pub fn spend_loader(store: Store) -> SpendLoader {
    Arc::new(move |budget_id: Uuid, w: &BudgetWindow| {
        let budget = store
            .get_budget(budget_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("budget {budget_id} no longer exists"))?;
        store.gateway_spend(&budget.scope, w.start, w.end).map_err(|e| e.to_string())
    })
}

/// A key's budgets and when they were read.
type CachedBudgets = (Instant, Arc<Vec<BudgetRecord>>);

/// Budgets (of the key and of its owner) per key id, read through a short-lived cache.
#[derive(Clone, Default)]
pub struct BudgetCache {
    inner: Arc<Mutex<HashMap<Uuid, CachedBudgets>>>,
}

impl BudgetCache {
    /// Enabled and disabled budgets that apply to `key` (its own, then its user's).
    pub async fn for_key(&self, store: &Store, key: &KeyRecord) -> Result<Arc<Vec<BudgetRecord>>, tally_store::StoreError> {
        if let Some(hit) = self.cached(key.key_id) {
            return Ok(hit);
        }
        let scopes = vec![BudgetScope::Key(key.key_id), BudgetScope::User(key.user_id.clone())];
        let s = store.clone();
        let found = actix_web::web::block(move || s.budgets_for(&scopes))
            .await
            .map_err(|e| tally_store::StoreError::Pool(e.to_string()))??;
        let found = Arc::new(found);
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= BUDGET_CACHE_MAX {
            map.clear();
        }
        map.insert(key.key_id, (Instant::now(), found.clone()));
        Ok(found)
    }

    fn cached(&self, key: Uuid) -> Option<Arc<Vec<BudgetRecord>>> {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&key).filter(|(at, _)| at.elapsed() < BUDGET_CACHE_TTL).map(|(_, b)| b.clone())
    }

    /// Forget every cached key's budgets (a budget changed through this node; a user
    /// budget applies to many keys, so all go).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// A budget with its current window's state, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    /// Budget id.
    pub budget_id: Uuid,
    /// `key` or `user`.
    pub scope: &'static str,
    /// The key id or user id.
    pub scope_id: String,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Limit per period, USD.
    pub max_budget: Decimal,
    /// Alert fraction.
    pub alert_threshold: Option<Decimal>,
    /// Whether it is enforced.
    pub enabled: bool,
    /// Time zone of the calendar.
    pub timezone: String,
    /// Committed spend in the current window.
    pub spent: Decimal,
    /// Held by calls in flight.
    pub reserved: Decimal,
    /// `max - spent - reserved`, never below zero.
    pub remaining: Decimal,
    /// Window start.
    pub period_start: DateTime<Utc>,
    /// Window end (exclusive): when it resets.
    pub period_end: DateTime<Utc>,
    /// `ok`, `alerted` (threshold passed, alert sent) or `exceeded` (nothing left).
    pub alert_state: &'static str,
}

/// The view of one budget now, with the ledger's state of its window.
pub async fn view(gw: &Gateway, b: &BudgetRecord) -> Result<BudgetView, crate::ApiError> {
    let now = Utc::now();
    let limit = limit_of(b, now).map_err(|m| crate::ApiError::Internal { code: "invalid_budget", message: m })?;
    let state = gw.ledger.state(&limit).await.map_err(|e| crate::ApiError::Unavailable {
        code: e.code(),
        message: format!("budget state unavailable: {e}"),
    })?;
    let remaining = (b.max_budget - state.spent - state.reserved).max(Decimal::ZERO);
    let (id, start) = (b.budget_id, limit.window.start);
    let alerted = crate::routes::blocking(&gw.store, move |s| s.alert_sent(id, start)).await?;
    let alert_state = if remaining.is_zero() || state.spent >= b.max_budget {
        "exceeded"
    } else if alerted {
        "alerted"
    } else {
        "ok"
    };
    Ok(BudgetView {
        budget_id: b.budget_id,
        scope: b.scope.kind(),
        scope_id: b.scope.id(),
        period: b.period.clone(),
        max_budget: b.max_budget,
        alert_threshold: b.alert_threshold,
        enabled: b.enabled,
        timezone: b.timezone.clone(),
        spent: state.spent.normalize(),
        reserved: state.reserved.normalize(),
        remaining: remaining.normalize(),
        period_start: limit.window.start,
        period_end: limit.window.end,
        alert_state,
    })
}

/// After a settle: send each budget's threshold alert once per window (the mark is
/// durable in the database, so restarts and other nodes do not send it again).
pub async fn check_alerts(gw: &Gateway, key: &KeyRecord, limits: &[(BudgetRecord, BudgetLimit)]) {
    for (b, limit) in limits {
        let Some(threshold) = b.alert_threshold else { continue };
        let state = match gw.ledger.state(limit).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(budget.id = %b.budget_id, error = %e, "Budget state unavailable for the alert check.");
                continue;
            }
        };
        if state.spent < b.max_budget * threshold {
            continue;
        }
        let (id, start, spent) = (b.budget_id, limit.window.start, state.spent);
        match crate::routes::blocking(&gw.store, move |s| s.mark_alert_sent(id, start, spent, Utc::now())).await {
            Ok(true) => {
                if let Some(hook) = &gw.alerts {
                    hook.deliver(&gw.store, super::alerts::BudgetAlert {
                        event: "budget.threshold_reached",
                        budget_id: b.budget_id,
                        scope: b.scope.kind(),
                        scope_id: b.scope.id(),
                        key_id: key.key_id,
                        user_id: key.user_id.clone(),
                        period: b.period.clone(),
                        spent: state.spent.normalize(),
                        max_budget: b.max_budget,
                        alert_threshold: threshold,
                        period_start: limit.window.start,
                        period_end: limit.window.end,
                    });
                }
                tracing::warn!(
                budget.id = %b.budget_id,
                budget.scope = b.scope.kind(),
                budget.scope_id = %b.scope.id(),
                key.id = %key.key_id,
                user.id = %key.user_id,
                period = %b.period,
                spent_usd = %state.spent,
                max_usd = %b.max_budget,
                threshold = %threshold,
                window.start = %limit.window.start,
                "Budget alert: spend passed the alert threshold."
            );
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(budget.id = %b.budget_id, error = %e, "Could not record the budget alert."),
        }
    }
}
