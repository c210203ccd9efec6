//! Budget-alert records: alert budgets, fired marks and the delivery log.
//!
//! An alert budget limits the spend of a scope (everything, a provider, a model, a user or
//! a gateway key) over calendar-aligned UTC windows (a day, an ISO week from Monday, a
//! month), so a window's spend is an exact sum of daily rollups. Each threshold fires once
//! per window: [`Store::mark_fired`] is an insert that only one caller wins, on any number
//! of nodes sharing the database. Every delivery of an alert is logged in `alert_deliveries`.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::analytics::{AnalyticsFilter, Dim};
use crate::error::StoreError;
use crate::store::{run, Store};

/// The window an alert budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertPeriod {
    /// One UTC day.
    Daily,
    /// One ISO week (Monday to Sunday, UTC).
    Weekly,
    /// One calendar month (UTC).
    Monthly,
}

impl AlertPeriod {
    /// Stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertPeriod::Daily => "daily",
            AlertPeriod::Weekly => "weekly",
            AlertPeriod::Monthly => "monthly",
        }
    }

    /// Parse the stored or API name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(AlertPeriod::Daily),
            "weekly" => Some(AlertPeriod::Weekly),
            "monthly" => Some(AlertPeriod::Monthly),
            _ => None,
        }
    }

    /// The window containing `day`: its first day and the first day after it.
    pub fn window_days(self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            AlertPeriod::Daily => (day, day + Days::new(1)),
            AlertPeriod::Weekly => {
                let start = day - Days::new(u64::from(day.weekday().num_days_from_monday()));
                (start, start + Days::new(7))
            }
            AlertPeriod::Monthly => {
                // Day 1 of any month exists; `day` itself is the fallback that cannot happen.
                let start = day.with_day(1).unwrap_or(day);
                (
                    start,
                    start
                        .checked_add_months(Months::new(1))
                        .unwrap_or(start + Days::new(31)),
                )
            }
        }
    }

    /// The window containing `at`, as UTC instants `[start, end)`.
    pub fn window(self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let (start, end) = self.window_days(at.date_naive());
        (midnight(start), midnight(end))
    }
}

/// Midnight UTC of a day.
pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// What an alert budget counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum AlertScope {
    /// All usage.
    All,
    /// Usage of one provider's models.
    Provider(String),
    /// Usage of one model.
    Model(String),
    /// Usage of one user.
    User(String),
    /// Usage through one gateway key.
    Key(Uuid),
}

impl AlertScope {
    /// Stored and API kind: `all`, `provider`, `model`, `user` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertScope::All => "all",
            AlertScope::Provider(_) => "provider",
            AlertScope::Model(_) => "model",
            AlertScope::User(_) => "user",
            AlertScope::Key(_) => "key",
        }
    }

    /// Stored and API value (`None` for `all`).
    pub fn value(&self) -> Option<String> {
        match self {
            AlertScope::All => None,
            AlertScope::Provider(v) | AlertScope::Model(v) | AlertScope::User(v) => Some(v.clone()),
            AlertScope::Key(k) => Some(k.to_string()),
        }
    }

    /// Build from a kind and value; `None` when they do not fit together (a value for `all`,
    /// none for the others, a key that is not a UUID, an empty value).
    pub fn parse(kind: &str, value: Option<&str>) -> Option<Self> {
        match (kind, value) {
            ("all", None) => Some(AlertScope::All),
            (_, Some("")) => None,
            ("provider", Some(v)) => Some(AlertScope::Provider(v.to_string())),
            ("model", Some(v)) => Some(AlertScope::Model(v.to_string())),
            ("user", Some(v)) => Some(AlertScope::User(v.to_string())),
            ("key", Some(v)) => Uuid::parse_str(v).ok().map(AlertScope::Key),
            _ => None,
        }
    }

    /// The forecast scope of the same usage (`total`, `provider:X`, `model:X`, `user:X`, `key:UUID`).
    pub fn forecast_scope(&self) -> String {
        match self {
            AlertScope::All => "total".to_string(),
            other => format!("{}:{}", other.kind(), other.value().unwrap_or_default()),
        }
    }

    /// The analytics filter of this scope over the UTC days `from..=to`.
    pub fn filter(&self, from_day: NaiveDate, to_day: NaiveDate) -> AnalyticsFilter {
        let mut f = AnalyticsFilter {
            from_day,
            to_day,
            user_id: None,
            provider: None,
            model: None,
            key_id: None,
            task: None,
        };
        match self {
            AlertScope::All => {}
            AlertScope::Provider(p) => f.provider = Some(p.clone()),
            AlertScope::Model(m) => f.model = Some(m.clone()),
            AlertScope::User(u) => f.user_id = Some(u.clone()),
            AlertScope::Key(k) => f.key_id = Some(*k),
        }
        f
    }
}

/// A spend limit over a scope and period, with thresholds (percent of `amount`) and channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBudget {
    /// Id (UUIDv7).
    pub budget_id: Uuid,
    /// Label, 1-200 characters.
    pub name: String,
    /// The limit per window, USD (exact).
    pub amount: Decimal,
    /// The window.
    pub period: AlertPeriod,
    /// What is counted.
    pub scope: AlertScope,
    /// Percentages of `amount` at which an alert fires, once per window each (ascending).
    pub thresholds: Vec<u32>,
    /// Recipients of its alerts.
    pub emails: Vec<String>,
    /// Where its alerts are POSTed, if anywhere.
    pub webhook_url: Option<String>,
    /// Disabled budgets are kept but not evaluated.
    pub enabled: bool,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// State of one delivery: `pending` until its last attempt, then `delivered` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Being attempted.
    Pending,
    /// The channel accepted it.
    Delivered,
    /// Every attempt failed (or the failure was permanent).
    Failed,
}

impl DeliveryStatus {
    /// Stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One alert sent to one target over one channel: a row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Id (UUIDv7).
    pub delivery_id: Uuid,
    /// What raised the alert: `budget`, `key_budget`, `price`, `test`.
    pub source: String,
    /// What it is about (a budget id), if anything.
    pub subject_id: Option<String>,
    /// The alert's kind (`threshold_80`, `projected_breach`, ...).
    pub alert_kind: String,
    /// `email`, `webhook` or `log`.
    pub channel: String,
    /// Address, URL, or `log`.
    pub target: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// The alert as sent (JSON).
    pub payload: String,
    /// When it was first recorded.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Insert an alert budget (a taken id is a `Conflict`). Returns it as stored.
    pub fn create_alert_budget(&self, budget: &AlertBudget) -> Result<AlertBudget, StoreError> {
        run!(self, write, alerts::insert_budget(budget))
    }

    /// One alert budget.
    pub fn get_alert_budget(&self, budget_id: Uuid) -> Result<Option<AlertBudget>, StoreError> {
        run!(self, read, alerts::get_budget(budget_id))
    }

    /// Every alert budget, oldest first.
    pub fn list_alert_budgets(&self) -> Result<Vec<AlertBudget>, StoreError> {
        run!(self, read, alerts::list_budgets())
    }

    /// Replace a stored budget's fields (its id and creation instant are kept); `NotFound`
    /// for an unknown id. Returns it as stored.
    pub fn update_alert_budget(&self, budget: &AlertBudget) -> Result<AlertBudget, StoreError> {
        run!(self, write, alerts::update_budget(budget))
    }

    /// Delete a budget and its fired marks (its deliveries stay in the log); `NotFound` for an unknown id.
    pub fn delete_alert_budget(&self, budget_id: Uuid) -> Result<AlertBudget, StoreError> {
        run!(self, write, alerts::delete_budget(budget_id))
    }

    /// Mark `threshold` (`"50"`, `"projected"`, ...) of a budget's window as fired. True only
    /// for the one call whose insert wins, so an alert is sent once per window across
    /// restarts and nodes.
    pub fn mark_fired(
        &self,
        budget_id: Uuid,
        window_start: DateTime<Utc>,
        threshold: &str,
        spent: Decimal,
    ) -> Result<bool, StoreError> {
        run!(
            self,
            write,
            alerts::mark_fired(budget_id, window_start, threshold, spent, Utc::now())
        )
    }

    /// The thresholds of a budget's window that have fired, in the order they fired.
    pub fn fired(
        &self,
        budget_id: Uuid,
        window_start: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        run!(self, read, alerts::fired(budget_id, window_start))
    }

    /// Log a delivery (a taken id is a `Conflict`).
    pub fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError> {
        run!(self, write, alerts::insert_delivery(delivery))
    }

    /// Set a logged delivery's status, attempts and last error; `NotFound` for an unknown id.
    pub fn update_delivery(
        &self,
        delivery_id: Uuid,
        status: DeliveryStatus,
        attempts: i32,
        last_error: Option<&str>,
    ) -> Result<DeliveryRecord, StoreError> {
        run!(
            self,
            write,
            alerts::update_delivery(delivery_id, status, attempts, last_error, Utc::now())
        )
    }

    /// Logged deliveries, newest first: all, or those about `subject_id`.
    pub fn list_deliveries(
        &self,
        subject_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        run!(self, read, alerts::list_deliveries(subject_id, limit))
    }

    /// Exact spend of `scope` over the UTC days `from..=to` (from the daily rollups).
    pub fn scope_spend(
        &self,
        scope: &AlertScope,
        from_day: NaiveDate,
        to_day: NaiveDate,
    ) -> Result<Decimal, StoreError> {
        if from_day > to_day {
            return Ok(Decimal::ZERO);
        }
        let groups = self.analytics(&scope.filter(from_day, to_day), &[])?;
        Ok(groups.iter().map(|g| g.figures.cost).sum())
    }

    /// Exact spend of `scope` on each UTC day of `from..=to` that had usage.
    pub fn scope_daily_spend(
        &self,
        scope: &AlertScope,
        from_day: NaiveDate,
        to_day: NaiveDate,
    ) -> Result<Vec<(NaiveDate, Decimal)>, StoreError> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let groups = self.analytics(&scope.filter(from_day, to_day), &[Dim::Day])?;
        groups
            .into_iter()
            .map(|g| {
                let day = g.key.first().map(String::as_str).unwrap_or_default();
                let day = NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|e| StoreError::Database(format!("rollup day {day:?}: {e}")))?;
                Ok((day, g.figures.cost))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid day")
    }

    #[test]
    fn windows_are_calendar_aligned() {
        let d = day("2026-12-09"); // a Wednesday
        assert_eq!(
            AlertPeriod::Daily.window_days(d),
            (d, day("2026-12-10")),
            "a day is one UTC day"
        );
        assert_eq!(
            AlertPeriod::Weekly.window_days(d),
            (day("2026-12-07"), day("2026-12-14")),
            "a week starts on Monday"
        );
        assert_eq!(
            AlertPeriod::Weekly.window_days(day("2026-12-07")),
            (day("2026-12-07"), day("2026-12-14")),
            "a Monday starts its own week"
        );
        assert_eq!(
            AlertPeriod::Monthly.window_days(day("2026-12-31")),
            (day("2026-12-01"), day("2027-01-01")),
            "a month is the calendar month, across a year end"
        );
        assert_eq!(
            AlertPeriod::Monthly.window_days(day("2028-02-29")),
            (day("2028-02-01"), day("2028-03-01")),
            "a leap February"
        );
    }

    #[test]
    fn scopes_parse_only_consistent_pairs() {
        assert_eq!(
            AlertScope::parse("all", None),
            Some(AlertScope::All),
            "all has no value"
        );
        assert_eq!(
            AlertScope::parse("all", Some("x")),
            None,
            "all with a value is refused"
        );
        assert_eq!(
            AlertScope::parse("model", None),
            None,
            "model needs a value"
        );
        assert_eq!(
            AlertScope::parse("user", Some("")),
            None,
            "an empty value is refused"
        );
        assert_eq!(
            AlertScope::parse("key", Some("nope")),
            None,
            "a key must be a UUID"
        );
        assert_eq!(
            AlertScope::parse("team", Some("x")),
            None,
            "unknown kinds are refused"
        );
        let k = Uuid::now_v7();
        let scope = AlertScope::parse("key", Some(&k.to_string()));
        assert_eq!(scope, Some(AlertScope::Key(k)), "a key scope");
        assert_eq!(
            AlertScope::All.forecast_scope(),
            "total",
            "forecast scope of all"
        );
        assert_eq!(
            AlertScope::Provider("openai".into()).forecast_scope(),
            "provider:openai",
            "provider scope"
        );
    }
}
