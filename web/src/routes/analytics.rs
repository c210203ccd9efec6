//! Spend analytics over the daily rollups (summary, breakdowns, trends) and the paged usage log.
//!
//! Every figure is an exact sum of the stored events' decimals (the rollups are written in
//! the events' transaction), served as strings; days are UTC. See docs/analytics-api.md.

use std::collections::{BTreeMap, HashMap};

use actix_web::{get, web, HttpResponse};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tally_domain::UsageKind;
use tally_store::analytics::{
    AnalyticsFilter, Dim, EventCursor, EventDetail, EventQuery, Figures, Group, ListedEvent,
};
use uuid::Uuid;

use super::{blocking, validate_user_id};
use crate::error::ApiError;
use crate::state::AppState;

/// Days a range defaults to (ending today).
pub const DEFAULT_RANGE_DAYS: i64 = 30;
/// Longest range a query may span.
pub const MAX_RANGE_DAYS: i64 = 3_660;
/// Decimal places of rates and averages.
pub const RATIO_PLACES: u32 = 10;
/// Default number of tasks in `/top-tasks`.
pub const DEFAULT_TOP_TASKS: usize = 10;
/// Default page of the usage log.
pub const DEFAULT_EVENTS_PAGE: i64 = 100;
/// Largest page of the usage log.
pub const MAX_EVENTS_PAGE: i64 = 1_000;

/// Query string of the analytics endpoints (each reads the fields it needs).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// First day, `YYYY-MM-DD` (default: 29 days before `date_to`).
    pub date_from: Option<String>,
    /// Last day, inclusive (default: today, UTC).
    pub date_to: Option<String>,
    /// Only this user.
    pub user_id: Option<String>,
    /// Only this provider's models.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this gateway key.
    pub key_id: Option<String>,
    /// Only this task label.
    pub task: Option<String>,
    /// Trends: `daily`, `weekly` or `monthly`.
    pub period: Option<String>,
    /// Trends: split each bucket by `model`, `provider`, `user` or `key`.
    pub split: Option<String>,
    /// Top tasks: how many.
    pub limit: Option<usize>,
}

fn parse_day(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request("invalid_date", format!("{field} must be a day, YYYY-MM-DD (got {raw:?})")))
}

fn label(field: &str, raw: &Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(v) if !tally_actors::kafka::envelope::valid_label(v) && !valid_model_name(v) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{field} must be 1-64 characters of letters, digits, '_', '-', '.', ':'"),
        )),
        other => Ok(other.clone()),
    }
}

/// Model names may also hold `/` and `@` (provider-prefixed and dated names).
fn valid_model_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@'))
}

fn key_filter(raw: &Option<String>) -> Result<Option<Uuid>, ApiError> {
    raw.as_deref()
        .map(|k| Uuid::parse_str(k).map_err(|_| ApiError::bad_request("invalid_key_id", "key_id must be a UUID")))
        .transpose()
}

impl AnalyticsQuery {
    /// The rollup filter this query asks for (validated).
    /// A user's key is limited to its own usage (asking for another user's is 403).
    pub fn filter(&self, caller: &crate::auth::Caller) -> Result<AnalyticsFilter, ApiError> {
        let to_day = match &self.date_to {
            Some(d) => parse_day("date_to", d)?,
            None => Utc::now().date_naive(),
        };
        let from_day = match &self.date_from {
            Some(d) => parse_day("date_from", d)?,
            None => to_day - Duration::days(DEFAULT_RANGE_DAYS - 1),
        };
        if from_day > to_day {
            return Err(ApiError::bad_request("invalid_range", "date_from is after date_to"));
        }
        if (to_day - from_day).num_days() >= MAX_RANGE_DAYS {
            return Err(ApiError::bad_request("invalid_range", format!("a range spans at most {MAX_RANGE_DAYS} days")));
        }
        if let Some(u) = &self.user_id {
            validate_user_id(u)?;
        }
        Ok(AnalyticsFilter {
            from_day,
            to_day,
            user_id: caller.scope(self.user_id.as_deref())?,
            provider: label("provider", &self.provider)?,
            model: label("model", &self.model)?,
            key_id: key_filter(&self.key_id)?,
            task: label("task", &self.task)?,
        })
    }
}

fn filters_json(f: &AnalyticsFilter) -> Value {
    json!({
        "user_id": f.user_id, "provider": f.provider, "model": f.model,
        "key_id": f.key_id, "task": f.task,
    })
}

/// `a / b` rounded to [`RATIO_PLACES`], as a string (`null` when `b` is 0).
fn ratio(a: Decimal, b: i64) -> Value {
    if b == 0 {
        return Value::Null;
    }
    Value::String((a / Decimal::from(b)).round_dp(RATIO_PLACES).normalize().to_string())
}

/// The figures object of docs/analytics-api.md.
pub fn figures_json(f: &Figures) -> Value {
    let mut tokens = Map::new();
    for kind in UsageKind::TOKEN_KINDS {
        let q = f.kinds.get(kind.as_str()).map(|k| k.quantity).unwrap_or_default();
        tokens.insert(kind.as_str().to_string(), Value::String(q.normalize().to_string()));
    }
    let mut resources = Map::new();
    let mut cost_by_kind = Map::new();
    for (kind, k) in &f.kinds {
        let is_token = UsageKind::TOKEN_KINDS.iter().any(|t| t.as_str() == kind);
        if !is_token {
            resources.insert(kind.clone(), Value::String(k.quantity.normalize().to_string()));
        }
        cost_by_kind.insert(kind.clone(), Value::String(k.amount.normalize().to_string()));
    }
    json!({
        "requests": f.requests,
        "failed": f.failed,
        "success_rate": ratio(Decimal::from(f.requests - f.failed), f.requests),
        "cost": f.cost.normalize().to_string(),
        "avg_cost_per_request": ratio(f.cost, f.requests),
        "tokens": tokens,
        "resources": resources,
        "cost_by_kind": cost_by_kind,
    })
}

async fn grouped(state: &AppState, filter: &AnalyticsFilter, dims: &'static [Dim]) -> Result<Vec<Group>, ApiError> {
    let f = filter.clone();
    let mut groups = blocking(&state.store, move |s| s.analytics(&f, dims)).await?;
    // Highest cost first; ties in key order (stable).
    groups.sort_by(|a, b| b.figures.cost.cmp(&a.figures.cost).then_with(|| a.key.cmp(&b.key)));
    Ok(groups)
}

fn first(key: &[String]) -> String {
    key.first().cloned().unwrap_or_default()
}

/// Empty strings (no key, no task) as `null`.
fn nullable(v: String) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::String(v)
    }
}

/// Totals over the range and filters.
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/summary")]
pub async fn summary(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let groups = grouped(&state, &filter, &[]).await?;
    let figures = groups.into_iter().next().map(|g| g.figures).unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "date_from": filter.from_day, "date_to": filter.to_day, "filters": filters_json(&filter),
        "figures": figures_json(&figures),
    })))
}

/// Spend by user.
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/by-user")]
pub async fn by_user(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let groups = grouped(&state, &filter, &[Dim::User]).await?;
    let rows: Vec<Value> =
        groups.iter().map(|g| json!({"user_id": first(&g.key), "figures": figures_json(&g.figures)})).collect();
    Ok(HttpResponse::Ok().json(json!({"date_from": filter.from_day, "date_to": filter.to_day, "groups": rows})))
}

/// Spend by model (with its provider).
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/by-model")]
pub async fn by_model(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let groups = grouped(&state, &filter, &[Dim::Model, Dim::Provider]).await?;
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| json!({"model": first(&g.key), "provider": g.key.get(1), "figures": figures_json(&g.figures)}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"date_from": filter.from_day, "date_to": filter.to_day, "groups": rows})))
}

/// Spend by provider.
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/by-provider")]
pub async fn by_provider(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let groups = grouped(&state, &filter, &[Dim::Provider]).await?;
    let rows: Vec<Value> =
        groups.iter().map(|g| json!({"provider": first(&g.key), "figures": figures_json(&g.figures)})).collect();
    Ok(HttpResponse::Ok().json(json!({"date_from": filter.from_day, "date_to": filter.to_day, "groups": rows})))
}

/// Spend by gateway key (`key_id` null: usage not made through the gateway).
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/by-key")]
pub async fn by_key(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let groups = grouped(&state, &filter, &[Dim::Key]).await?;
    let names: HashMap<String, String> = blocking(&state.store, |s| s.list_keys(None))
        .await?
        .into_iter()
        .map(|k| (k.key_id.to_string(), k.name))
        .collect();
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| {
            let key = first(&g.key);
            json!({"key_id": nullable(key.clone()), "key_name": names.get(&key), "figures": figures_json(&g.figures)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"date_from": filter.from_day, "date_to": filter.to_day, "groups": rows})))
}

/// The most expensive task labels (`task` null: unlabelled usage).
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/top-tasks")]
pub async fn top_tasks(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let limit = q.limit.unwrap_or(DEFAULT_TOP_TASKS);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1-1000"));
    }
    let groups = grouped(&state, &filter, &[Dim::Task]).await?;
    let rows: Vec<Value> = groups
        .iter()
        .take(limit)
        .map(|g| json!({"task": nullable(first(&g.key)), "figures": figures_json(&g.figures)}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"date_from": filter.from_day, "date_to": filter.to_day, "groups": rows})))
}

/// Trend bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One bucket per day.
    Daily,
    /// Weeks from Monday.
    Weekly,
    /// Calendar months.
    Monthly,
}

impl Period {
    fn parse(raw: Option<&str>) -> Result<Period, ApiError> {
        match raw.unwrap_or("daily") {
            "daily" => Ok(Period::Daily),
            "weekly" => Ok(Period::Weekly),
            "monthly" => Ok(Period::Monthly),
            other => Err(ApiError::bad_request(
                "invalid_period",
                format!("period must be daily, weekly or monthly (got {other:?})"),
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// First day of the bucket `day` falls in (not clipped).
    pub fn bucket_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Period::Daily => day,
            Period::Weekly => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Period::Monthly => day.with_day(1).unwrap_or(day),
        }
    }

    /// First day of the next bucket after the one starting at `start`.
    fn next_start(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Daily => start + Duration::days(1),
            Period::Weekly => start + Duration::days(7),
            Period::Monthly => start.checked_add_months(chrono::Months::new(1)).unwrap_or(start + Duration::days(31)),
        }
    }
}

/// Every bucket of `[from, to]`, clipped to the range: (start, end inclusive).
pub fn buckets(period: Period, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut start = period.bucket_start(from);
    while start <= to {
        let next = period.next_start(start);
        out.push((start.max(from), (next - Duration::days(1)).min(to)));
        start = next;
    }
    out
}

fn split_dim(raw: Option<&str>) -> Result<Option<Dim>, ApiError> {
    match raw {
        None => Ok(None),
        Some("model") => Ok(Some(Dim::Model)),
        Some("provider") => Ok(Some(Dim::Provider)),
        Some("user") => Ok(Some(Dim::User)),
        Some("key") => Ok(Some(Dim::Key)),
        Some(other) => Err(ApiError::bad_request(
            "invalid_split",
            format!("split must be model, provider, user or key (got {other:?})"),
        )),
    }
}

/// Spend over time, zero-filled, optionally split.
#[utoipa::path(tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Rollup groups for the range", body = Object)))]
#[get("/api/analytics/trends")]
pub async fn trends(
    state: web::Data<AppState>,
    q: web::Query<AnalyticsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(&caller)?;
    let period = Period::parse(q.period.as_deref())?;
    let split = split_dim(q.split.as_deref())?;
    let dims: &'static [Dim] = match split {
        None => &[Dim::Day],
        Some(Dim::Model) => &[Dim::Day, Dim::Model],
        Some(Dim::Provider) => &[Dim::Day, Dim::Provider],
        Some(Dim::User) => &[Dim::Day, Dim::User],
        Some(_) => &[Dim::Day, Dim::Key],
    };
    let f = filter.clone();
    let groups = blocking(&state.store, move |s| s.analytics(&f, dims)).await?;
    let bucket_list = buckets(period, filter.from_day, filter.to_day);
    let mut totals: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
    let mut splits: BTreeMap<NaiveDate, BTreeMap<String, Figures>> = BTreeMap::new();
    for g in &groups {
        let day = parse_day("day", &first(&g.key))?;
        let start = period.bucket_start(day).max(filter.from_day);
        totals.entry(start).or_default().add(&g.figures);
        if let Some(part) = g.key.get(1) {
            splits.entry(start).or_default().entry(part.clone()).or_default().add(&g.figures);
        }
    }
    let rows: Vec<Value> = bucket_list
        .iter()
        .map(|(start, end)| {
            let mut row = json!({
                "start": start, "end": end,
                "figures": figures_json(&totals.get(start).cloned().unwrap_or_default()),
            });
            if split.is_some() {
                let parts: Map<String, Value> = splits
                    .get(start)
                    .map(|m| m.iter().map(|(k, f)| (k.clone(), figures_json(f))).collect())
                    .unwrap_or_default();
                row["split"] = Value::Object(parts);
            }
            row
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "period": period.as_str(), "date_from": filter.from_day, "date_to": filter.to_day, "buckets": rows,
    })))
}

/// Query string of the usage log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this user.
    pub user_id: Option<String>,
    /// Only this thread.
    pub thread_id: Option<Uuid>,
    /// Only this provider's models.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this gateway key.
    pub key_id: Option<String>,
    /// Only this task label.
    pub task: Option<String>,
    /// `success` or `failed`.
    pub status: Option<String>,
    /// Occurred at or after (RFC 3339).
    pub from: Option<String>,
    /// Occurred before (RFC 3339).
    pub to: Option<String>,
    /// Continue where the previous page ended (its `next_cursor`).
    pub cursor: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn instant(field: &str, raw: &Option<String>) -> Result<Option<chrono::DateTime<Utc>>, ApiError> {
    raw.as_deref()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request("invalid_date", format!("{field} must be an RFC 3339 instant")))
        })
        .transpose()
}

/// A page cursor as handed out: `<occurred_at microseconds>_<event_seq>`.
fn encode_cursor(c: &EventCursor) -> String {
    format!("{}_{}", c.occurred_at.timestamp_micros(), c.event_seq)
}

fn decode_cursor(raw: &str) -> Result<EventCursor, ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    let (micros, seq) = raw.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let event_seq: i64 = seq.parse().map_err(|_| bad())?;
    let occurred_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(EventCursor { occurred_at, event_seq })
}

/// A usage event as the usage log shows it.
pub fn event_json(e: &ListedEvent) -> Value {
    let u = &e.usage;
    let lines: Vec<Value> = u
        .cost
        .lines
        .iter()
        .map(|l| {
            json!({
                "kind": l.kind.as_str(), "quantity": l.quantity.normalize().to_string(),
                "unit_price": l.unit_price.normalize().to_string(), "amount": l.amount.normalize().to_string(),
                "price_version_id": l.price_version_id,
            })
        })
        .collect();
    json!({
        "event_id": u.event_id, "event_seq": e.event_seq, "user_id": u.user_id, "thread_id": u.thread_id,
        "message_id": u.message_id, "model": u.model, "provider": e.provider, "event_type": u.event_type,
        "source": u.source, "task": u.task, "key_id": u.key_id, "was_successful": u.successful,
        "idempotency_key": u.idempotency_key, "occurred_at": u.occurred_at,
        "cost": u.cost.total.normalize().to_string(), "lines": lines,
    })
}

/// The usage log: filtered, newest first, paged by cursor through any number of events.
#[utoipa::path(tag = "analytics", params(EventsQuery), responses((status = 200, description = "A page of usage events, newest first", body = Object)))]
#[get("/api/usage/events")]
pub async fn usage_events(
    state: web::Data<AppState>,
    q: web::Query<EventsQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(u) = &q.user_id {
        validate_user_id(u)?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS_PAGE);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_page", format!("limit must be 1-{MAX_EVENTS_PAGE}")));
    }
    let successful = match q.status.as_deref() {
        None => None,
        Some("success") => Some(true),
        Some("failed") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request("invalid_status", format!("status must be success or failed (got {other:?})")))
        }
    };
    let query = EventQuery {
        user_id: caller.scope(q.user_id.as_deref())?,
        thread_id: q.thread_id,
        provider: label("provider", &q.provider)?,
        model: label("model", &q.model)?,
        key_id: key_filter(&q.key_id)?,
        task: label("task", &q.task)?,
        successful,
        from: instant("from", &q.from)?,
        to: instant("to", &q.to)?,
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    };
    let page = blocking(&state.store, move |s| s.event_page(&query)).await?;
    let events: Vec<Value> = page.events.iter().map(event_json).collect();
    Ok(HttpResponse::Ok().json(json!({"events": events, "next_cursor": page.next.as_ref().map(encode_cursor)})))
}

/// One usage event in full: lines, the gateway call, the stored prompt and response.
#[utoipa::path(tag = "analytics", responses((status = 200, description = "One usage event with its lines", body = Object)))]
#[get("/api/usage/events/{event_id}")]
pub async fn usage_event(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::bad_request("invalid_event_id", "event id must be a UUID"))?;
    let detail: Option<EventDetail> = blocking(&state.store, move |s| s.event_detail(id)).await?;
    let d = detail.ok_or_else(|| ApiError::not_found("event_not_found", format!("no usage event {id}")))?;
    caller.owns(&d.event.usage.user_id, "event_not_found", format!("no usage event {id}"))?;
    let mut body = event_json(&d.event);
    body["gateway"] = match &d.gateway {
        Some(g) => json!({
            "key_id": g.key_id, "provider": g.provider, "model": g.model, "route": g.route, "status": g.status,
            "http_status": g.http_status, "latency_ms": g.latency_ms, "upstream_request_id": g.upstream_request_id,
            "simulated": g.simulated, "total_tokens": g.total_tokens,
        }),
        None => Value::Null,
    };
    body["payload"] = match &d.payload {
        Some(p) => json!({"request": p.request, "response": p.response}),
        None => Value::Null,
    };
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn weekly_buckets_start_on_monday_and_are_clipped_to_the_range() {
        // 2026-12-02 is a Wednesday.
        let b = buckets(Period::Weekly, d("2026-12-02"), d("2026-12-20"));
        assert_eq!(
            b,
            vec![
                (d("2026-12-02"), d("2026-12-06")),
                (d("2026-12-07"), d("2026-12-13")),
                (d("2026-12-14"), d("2026-12-20")),
            ],
            "first week clipped at the start, weeks Monday-Sunday"
        );
    }

    #[test]
    fn monthly_buckets_are_calendar_months() {
        let b = buckets(Period::Monthly, d("2026-01-15"), d("2026-03-02"));
        assert_eq!(
            b,
            vec![
                (d("2026-01-15"), d("2026-01-31")),
                (d("2026-02-01"), d("2026-02-28")),
                (d("2026-03-01"), d("2026-03-02")),
            ],
            "months clipped to the range"
        );
        assert_eq!(buckets(Period::Daily, d("2026-01-01"), d("2026-01-03")).len(), 3, "one bucket per day");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = EventCursor { occurred_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(), event_seq: 42 };
        assert_eq!(decode_cursor(&encode_cursor(&c)).ok(), Some(c), "a cursor decodes to itself");
        assert!(decode_cursor("nonsense").is_err(), "garbage is refused");
        assert!(decode_cursor("1_x").is_err(), "a bad sequence is refused");
    }

    #[test]
    fn ratios_are_null_without_requests() {
        assert_eq!(ratio(Decimal::ONE, 0), Value::Null, "no requests: no rate");
        assert_eq!(ratio(Decimal::ONE, 3), Value::String("0.3333333333".into()), "ten places");
    }
}
