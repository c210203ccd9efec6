//! Budget alerts: evaluates every enabled alert budget and fires each threshold once per window.
//!
//! A budget's window is calendar-aligned in UTC (today, the ISO week from Monday, the
//! month), so its spend is an exact sum of daily rollups. Each threshold (a percent of the
//! amount) fires once per window, and a projected breach warns once per window before the
//! amount is reached: projection = spent + the expected spend of the rest of the window,
//! from the latest stored forecast of the budget's scope where it covers a day, else the
//! mean daily spend of the last [`HISTORY_DAYS`] complete days. "Once" is a durable mark
//! taken before sending (the insert that wins sends), so it holds across restarts and
//! across nodes sharing the database; a channel down through every retry misses that
//! alert, and the delivery log says so.
//!
//! Evaluation runs within seconds of usage being priced (the node's usage feed, at most
//! every [`ALERT_EVAL_INTERVAL`]) and on demand ([`AlertEvaluator::evaluate_now`], the
//! scheduler's periodic job, which also catches windows that roll over without usage).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use tally_store::alerts::{midnight, AlertBudget, AlertScope};
use tally_store::{Store, StoreError};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::error::ActorError;
use crate::feed::UsageFeed;
use crate::notify::{Alert, Delivery, Notifier};

/// Shortest pause between two feed-triggered evaluations.
pub const ALERT_EVAL_INTERVAL: Duration = Duration::from_secs(2);
/// Complete days whose mean spend projects the rest of a window when no forecast covers it.
pub const HISTORY_DAYS: u64 = 14;
/// Decimal places of `percent_used`.
pub const PERCENT_PLACES: u32 = 2;
/// Alert source of budget alerts.
pub const SOURCE_BUDGET: &str = "budget";
/// Alert source of test alerts.
pub const SOURCE_TEST: &str = "test";
/// Mark and kind suffix of the projected-breach warning.
pub const PROJECTED: &str = "projected";
/// Alert kind of the projected-breach warning.
pub const KIND_PROJECTED: &str = "projected_breach";

/// Seconds in a day, for the part of today still to come.
const SECONDS_PER_DAY: i64 = 86_400;

/// Where a budget stands in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetStatus {
    /// Below every threshold and not projected to exceed.
    Ok,
    /// A threshold is passed or a breach is projected.
    Warning,
    /// The amount is spent.
    Exceeded,
}

/// One budget's current window: spend, projection, fired thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCheck {
    /// The budget.
    pub budget: AlertBudget,
    /// Window start (UTC midnight).
    pub window_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Exact spend in the window so far.
    pub spent: Decimal,
    /// `spent / amount x 100`, to [`PERCENT_PLACES`].
    pub percent_used: Decimal,
    /// `amount - spent`, never below zero.
    pub remaining: Decimal,
    /// `spent` plus the expected spend of the rest of the window.
    pub projected_spend: Decimal,
    /// The day the projection reaches the amount within the window (today when already spent).
    pub projected_breach_date: Option<NaiveDate>,
    /// Marks taken in this window (`"50"`, `"80"`, `"projected"`, ...), in firing order.
    pub thresholds_fired: Vec<String>,
    /// Summary.
    pub status: BudgetStatus,
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvaluationReport {
    /// Enabled budgets evaluated.
    pub budgets: usize,
    /// Alerts fired: (budget id, alert kind).
    pub fired: Vec<(uuid::Uuid, String)>,
    /// Their deliveries as logged.
    pub deliveries: Vec<Delivery>,
    /// Budgets that could not be evaluated, with why.
    pub errors: Vec<(uuid::Uuid, String)>,
}

impl EvaluationReport {
    /// One line for the scheduler's run history.
    pub fn summary(&self) -> String {
        let failed = self
            .deliveries
            .iter()
            .filter(|d| d.status == tally_store::alerts::DeliveryStatus::Failed)
            .count();
        format!(
            "{} budgets evaluated, {} alerts fired, {} deliveries ({} failed), {} budgets failed",
            self.budgets,
            self.fired.len(),
            self.deliveries.len(),
            failed,
            self.errors.len()
        )
    }
}

/// Evaluates alert budgets and sends their alerts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AlertEvaluator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    notifier: Notifier,
    /// One evaluation at a time per node (the marks keep nodes apart).
    running: tokio::sync::Mutex<()>,
}

impl AlertEvaluator {
    /// An evaluator over `store`, sending through `notifier`.
    pub fn new(store: Store, notifier: Notifier) -> Self {
        AlertEvaluator {
            inner: Arc::new(Inner {
                store,
                notifier,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The store budgets are read from.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The notifier alerts go out by.
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// Follow `feed`: evaluate within [`ALERT_EVAL_INTERVAL`] of usage being priced, never
    /// more often than that. Ends when the feed closes (abort the handle to stop sooner).
    pub fn start(&self, feed: &UsageFeed) -> JoinHandle<()> {
        let mut rx = feed.subscribe();
        let evaluator = self.clone();
        tokio::spawn(async move {
            let mut last_run: Option<tokio::time::Instant> = None;
            loop {
                match rx.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
                if let Some(last) = last_run {
                    tokio::time::sleep_until(last + ALERT_EVAL_INTERVAL).await;
                }
                // Everything priced until now is covered by this run.
                while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
                    rx.try_recv()
                {}
                last_run = Some(tokio::time::Instant::now());
                match evaluator.evaluate_at(Utc::now()).await {
                    Ok(report) if !report.fired.is_empty() || !report.errors.is_empty() => {
                        tracing::info!(summary = %report.summary(), "Budget alerts evaluated.");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Budget alerts could not be evaluated."),
                }
            }
        })
    }

    /// Evaluate every enabled budget now (the scheduler's job): a summary, or why it failed.
    pub async fn evaluate_now(&self) -> Result<String, String> {
        self.evaluate_at(Utc::now())
            .await
            .map(|r| r.summary())
            .map_err(|e| e.to_string())
    }

    /// Evaluate every enabled budget as of `now`: fire what is due, wait for its deliveries.
    pub async fn evaluate_at(&self, now: DateTime<Utc>) -> Result<EvaluationReport, ActorError> {
        let _one_at_a_time = self.inner.running.lock().await;
        let budgets = self.blocking(|s| s.list_alert_budgets()).await?;
        let mut report = EvaluationReport::default();
        for budget in budgets.into_iter().filter(|b| b.enabled) {
            report.budgets += 1;
            let id = budget.budget_id;
            match self.evaluate_budget(budget, now).await {
                Ok((fired, deliveries)) => {
                    report.fired.extend(fired.into_iter().map(|k| (id, k)));
                    report.deliveries.extend(deliveries);
                }
                Err(e) => {
                    tracing::warn!(budget.id = %id, error = %e, "Budget could not be evaluated.");
                    report.errors.push((id, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// One budget: take each due mark; the marks this call won are sent.
    async fn evaluate_budget(
        &self,
        budget: AlertBudget,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, Vec<Delivery>), ActorError> {
        let check = self.check_budget_at(budget, now).await?;
        let b = &check.budget;
        let mut due: Vec<String> = b
            .thresholds
            .iter()
            .filter(|t| check.spent * Decimal::ONE_HUNDRED >= b.amount * Decimal::from(**t))
            .map(|t| t.to_string())
            .collect();
        if check.spent < b.amount && check.projected_spend >= b.amount {
            due.push(PROJECTED.to_string());
        }
        let mut won = Vec::new();
        for mark in due
            .into_iter()
            .filter(|m| !check.thresholds_fired.contains(m))
        {
            let (id, start, spent, m) =
                (b.budget_id, check.window_start, check.spent, mark.clone());
            if self
                .blocking(move |s| s.mark_fired(id, start, &m, spent))
                .await?
            {
                won.push(mark);
            }
        }
        let alerts: Vec<Alert> = won.iter().map(|m| budget_alert(&check, m)).collect();
        let sends = alerts.into_iter().map(|a| self.inner.notifier.send(a));
        let deliveries = futures::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        Ok((won.iter().map(|m| alert_kind(m)).collect(), deliveries))
    }

    /// Every budget's current window, without firing anything (`GET /api/budgets/check`).
    pub async fn check_at(&self, now: DateTime<Utc>) -> Result<Vec<BudgetCheck>, ActorError> {
        let budgets = self.blocking(|s| s.list_alert_budgets()).await?;
        let mut out = Vec::with_capacity(budgets.len());
        for b in budgets {
            out.push(self.check_budget_at(b, now).await?);
        }
        Ok(out)
    }

    /// One budget's current window as of `now`.
    pub async fn check_budget_at(
        &self,
        budget: AlertBudget,
        now: DateTime<Utc>,
    ) -> Result<BudgetCheck, ActorError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || check_budget(&store, budget, now))
            .await
            .map_err(|e| ActorError::Unavailable(format!("budget check task: {e}")))?
    }

    /// Send a test alert over the budget's channels (source `test`, kind `test`).
    pub async fn send_test(
        &self,
        budget: &AlertBudget,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, ActorError> {
        let check = self.check_budget_at(budget.clone(), now).await?;
        let mut alert = budget_alert(&check, "test");
        alert.source = SOURCE_TEST.to_string();
        alert.kind = "test".to_string();
        alert.title = format!("Test alert for budget \"{}\"", budget.name);
        alert.text = format!(
            "This is a test of the alert channels of budget \"{}\".\n\n{}",
            budget.name, alert.text
        );
        if let Some(obj) = alert.data.as_object_mut() {
            obj.insert("event".into(), json!("budget.test"));
        }
        Ok(self.inner.notifier.send(alert).await)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ActorError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ActorError::Unavailable(format!("storage task: {e}")))?
            .map_err(ActorError::from)
    }
}

/// The alert kind of a mark: `threshold_<pct>` or `projected_breach`.
pub fn alert_kind(mark: &str) -> String {
    if mark == PROJECTED {
        KIND_PROJECTED.to_string()
    } else {
        format!("threshold_{mark}")
    }
}

/// The expected spend of one day: the forecast's mean for it when covered (never below
/// zero), else the recent daily mean.
fn expected_on(
    day: NaiveDate,
    forecast: &Option<tally_store::forecasts::StoredForecast>,
    mean: Decimal,
) -> Decimal {
    forecast
        .as_ref()
        .and_then(|f| f.points.iter().find(|p| p.date == day))
        .map_or(mean, |p| p.mean.max(Decimal::ZERO))
}

/// Spend, projection and marks of a budget's window (blocking).
fn check_budget(
    store: &Store,
    budget: AlertBudget,
    now: DateTime<Utc>,
) -> Result<BudgetCheck, ActorError> {
    let today = now.date_naive();
    let (start_day, end_day) = budget.period.window_days(today);
    let last_day = end_day.pred_opt().unwrap_or(end_day);
    let spent = store.scope_spend(&budget.scope, start_day, last_day)?;
    let window_start = midnight(start_day);
    let thresholds_fired = store.fired(budget.budget_id, window_start)?;
    let forecast = store.latest_forecast(&budget.scope.forecast_scope())?;
    let mean = recent_daily_mean(store, &budget.scope, today)?;
    // The part of today still to come, as an exact fraction of the day.
    let left_today = (midnight(today.succ_opt().unwrap_or(today)) - now)
        .num_seconds()
        .clamp(0, SECONDS_PER_DAY);
    let today_fraction = Decimal::from(left_today) / Decimal::from(SECONDS_PER_DAY);
    let mut projected = spent + expected_on(today, &forecast, mean) * today_fraction;
    let mut breach = (spent >= budget.amount || projected >= budget.amount).then_some(today);
    let mut day = today.succ_opt();
    while let Some(d) = day.filter(|d| *d < end_day) {
        projected += expected_on(d, &forecast, mean);
        if breach.is_none() && projected >= budget.amount {
            breach = Some(d);
        }
        day = d.succ_opt();
    }
    let percent_used = if budget.amount.is_zero() {
        Decimal::ZERO
    } else {
        (spent * Decimal::ONE_HUNDRED / budget.amount)
            .round_dp(PERCENT_PLACES)
            .normalize()
    };
    let passed_threshold = budget
        .thresholds
        .iter()
        .any(|t| spent * Decimal::ONE_HUNDRED >= budget.amount * Decimal::from(*t));
    let status = if spent >= budget.amount {
        BudgetStatus::Exceeded
    } else if passed_threshold || projected >= budget.amount {
        BudgetStatus::Warning
    } else {
        BudgetStatus::Ok
    };
    Ok(BudgetCheck {
        window_start,
        window_end: midnight(end_day),
        spent: spent.normalize(),
        percent_used,
        remaining: (budget.amount - spent).max(Decimal::ZERO).normalize(),
        projected_spend: projected.normalize(),
        projected_breach_date: breach,
        thresholds_fired,
        status,
        budget,
    })
}

/// Mean daily spend of the scope over the [`HISTORY_DAYS`] complete days before `today`.
fn recent_daily_mean(
    store: &Store,
    scope: &AlertScope,
    today: NaiveDate,
) -> Result<Decimal, ActorError> {
    let (Some(from), Some(to)) = (
        today.checked_sub_days(Days::new(HISTORY_DAYS)),
        today.pred_opt(),
    ) else {
        return Ok(Decimal::ZERO);
    };
    let total = store.scope_spend(scope, from, to)?;
    Ok(total / Decimal::from(HISTORY_DAYS))
}

/// The alert of one mark of a budget's window.
fn budget_alert(check: &BudgetCheck, mark: &str) -> Alert {
    let b = &check.budget;
    let kind = alert_kind(mark);
    let scope = match b.scope.value() {
        Some(v) => format!("{} {v}", b.scope.kind()),
        None => "all usage".to_string(),
    };
    let window = format!(
        "{} to {}",
        check.window_start.date_naive(),
        check
            .window_end
            .date_naive()
            .pred_opt()
            .unwrap_or(check.window_end.date_naive())
    );
    let title = if mark == PROJECTED {
        format!(
            "Budget \"{}\" is projected to exceed {} USD",
            b.name,
            b.amount.normalize()
        )
    } else {
        format!(
            "Budget \"{}\" reached {mark}% of {} USD",
            b.name,
            b.amount.normalize()
        )
    };
    let breach = check.projected_breach_date.map(|d| d.to_string());
    let text = format!(
        "Budget \"{}\" ({} budget of {} USD over {scope}): {} USD spent in the window {window}, {}% of the amount. \
         Projected spend by the end of the window: {} USD{}.",
        b.name,
        b.period.as_str(),
        b.amount.normalize(),
        check.spent,
        check.percent_used,
        check.projected_spend.round_dp(6).normalize(),
        breach.as_ref().map(|d| format!(", reaching the amount on {d}")).unwrap_or_default(),
    );
    Alert {
        source: SOURCE_BUDGET.to_string(),
        subject_id: Some(b.budget_id.to_string()),
        kind: kind.clone(),
        title,
        text,
        data: json!({
            "event": format!("budget.{kind}"),
            "budget_id": b.budget_id.to_string(),
            "budget_name": b.name,
            "threshold": if mark == PROJECTED { serde_json::Value::Null } else { json!(mark) },
            "amount": b.amount.normalize().to_string(),
            "spent": check.spent.to_string(),
            "percent_used": check.percent_used.to_string(),
            "projected_spend": check.projected_spend.to_string(),
            "projected_breach_date": breach,
            "period": b.period.as_str(),
            "scope": {"kind": b.scope.kind(), "value": b.scope.value()},
            "window_start": check.window_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "window_end": check.window_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }),
        emails: b.emails.clone(),
        webhook_url: b.webhook_url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_their_alert_kinds() {
        assert_eq!(alert_kind("50"), "threshold_50", "a threshold mark");
        assert_eq!(alert_kind("100"), "threshold_100", "the full amount");
        assert_eq!(
            alert_kind(PROJECTED),
            "projected_breach",
            "the projection warning"
        );
    }
}
