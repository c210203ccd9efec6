//! Budgets with alerts: CRUD of alert budgets, their current windows, test alerts and the delivery log.
//!
//! See docs/analytics-api.md ("Budgets with alerts"). Money is a decimal string both ways;
//! every field is validated with a stable 400 code. Mount with [`configure`] before
//! [`crate::configure`] (whose last route is a catch-all).

use actix_web::{delete, get, patch, post, web, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tally_actors::alerts::{AlertEvaluator, BudgetCheck};
use tally_actors::notify::{is_http_url, plausible_email, Delivery};
use tally_store::alerts::{AlertBudget, AlertPeriod, AlertScope};
use uuid::Uuid;

use super::blocking;
use crate::error::ApiError;

/// Longest budget name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest budget amount, USD.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Most decimal places of an amount.
pub const MAX_AMOUNT_SCALE: u32 = 10;
/// Lowest and highest threshold, percent of the amount.
pub const THRESHOLD_RANGE: std::ops::RangeInclusive<u64> = 1..=1000;
/// Most thresholds per budget.
pub const MAX_THRESHOLDS: usize = 10;
/// Thresholds of a budget created without any.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];
/// Most email recipients per budget.
pub const MAX_EMAILS: usize = 10;
/// Longest webhook URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest scope value.
pub const MAX_SCOPE_VALUE_CHARS: usize = 200;
/// Default page of the delivery log.
pub const DEFAULT_DELIVERIES: i64 = 100;
/// Largest page of the delivery log.
pub const MAX_DELIVERIES: i64 = 1000;

/// Fields a budget body may have.
const FIELDS: [&str; 8] = [
    "name",
    "amount",
    "period",
    "scope",
    "thresholds",
    "emails",
    "webhook_url",
    "enabled",
];

/// What the handlers share.
#[derive(Clone)]
struct BudgetsApi {
    evaluator: AlertEvaluator,
}

/// Register the budget and delivery-log routes (with their own state) on an app; call once
/// per worker. `evaluator` brings the store and notifier.
pub fn configure(evaluator: AlertEvaluator) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(BudgetsApi {
            evaluator: evaluator.clone(),
        }))
        // `check` before `{id}`, which would take it as an id.
        .service(check_budgets)
        .service(create_budget)
        .service(list_budgets)
        .service(get_budget)
        .service(patch_budget)
        .service(delete_budget)
        .service(test_alert)
        .service(list_deliveries);
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A budget as JSON.
pub fn budget_json(b: &AlertBudget) -> Value {
    json!({
        "budget_id": b.budget_id.to_string(),
        "name": b.name,
        "amount": b.amount.to_string(),
        "period": b.period.as_str(),
        "scope": {"kind": b.scope.kind(), "value": b.scope.value()},
        "thresholds": b.thresholds,
        "emails": b.emails,
        "webhook_url": b.webhook_url,
        "enabled": b.enabled,
        "created_at": rfc3339(b.created_at),
        "updated_at": rfc3339(b.updated_at),
    })
}

/// A delivery as JSON (without its payload).
pub fn delivery_json(d: &Delivery) -> Value {
    json!({
        "delivery_id": d.delivery_id.to_string(),
        "source": d.source,
        "subject_id": d.subject_id,
        "alert_kind": d.alert_kind,
        "channel": d.channel,
        "target": d.target,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
    })
}

/// A budget's window as JSON.
pub fn check_json(c: &BudgetCheck) -> Value {
    json!({
        "budget": budget_json(&c.budget),
        "window_start": rfc3339(c.window_start),
        "window_end": rfc3339(c.window_end),
        "spent": c.spent.to_string(),
        "percent_used": c.percent_used.to_string(),
        "remaining": c.remaining.to_string(),
        "projected_spend": c.projected_spend.round_dp(6).normalize().to_string(),
        "projected_breach_date": c.projected_breach_date.map(|d| d.to_string()),
        "thresholds_fired": c.thresholds_fired,
        "status": c.status,
    })
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request("invalid_budget_id", format!("{id:?} is not a budget id"))
    })
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

fn parse_name(v: &Value) -> Result<String, ApiError> {
    let name = v.as_str().map(str::trim).unwrap_or_default();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(bad(
            "invalid_name",
            format!("name must be a string of 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_string())
}

fn parse_amount(v: &Value) -> Result<Decimal, ApiError> {
    // A string only: a JSON number would pass through a float on the way.
    let text = v.as_str().ok_or_else(|| {
        bad(
            "invalid_amount",
            "amount must be a decimal string such as \"100.00\"",
        )
    })?;
    let amount: Decimal = text.trim().parse().map_err(|_| {
        bad(
            "invalid_amount",
            format!("amount {text:?} is not a decimal"),
        )
    })?;
    if amount <= Decimal::ZERO || amount > MAX_AMOUNT {
        return Err(bad(
            "invalid_amount",
            format!("amount must be above 0 and at most {MAX_AMOUNT}"),
        ));
    }
    if amount.scale() > MAX_AMOUNT_SCALE {
        return Err(bad(
            "invalid_amount",
            format!("amount may have at most {MAX_AMOUNT_SCALE} decimal places"),
        ));
    }
    Ok(amount)
}

fn parse_period(v: &Value) -> Result<AlertPeriod, ApiError> {
    v.as_str()
        .and_then(AlertPeriod::parse)
        .ok_or_else(|| bad("invalid_period", "period must be daily, weekly or monthly"))
}

fn parse_scope(v: &Value) -> Result<AlertScope, ApiError> {
    let obj = v.as_object().ok_or_else(|| {
        bad(
            "invalid_scope",
            "scope must be {\"kind\": ..., \"value\": ...}",
        )
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "kind" && *k != "value") {
        return Err(bad(
            "invalid_scope",
            format!("scope has an unknown field {k:?}"),
        ));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim()),
        Some(_) => return Err(bad("invalid_scope", "scope.value must be a string or null")),
    };
    if value.is_some_and(|s| {
        s.chars().count() > MAX_SCOPE_VALUE_CHARS || s.chars().any(char::is_control)
    }) {
        return Err(bad(
            "invalid_scope",
            format!("scope.value may have at most {MAX_SCOPE_VALUE_CHARS} characters"),
        ));
    }
    if kind == "user" && !value.is_some_and(tally_actors::kafka::envelope::valid_user_id) {
        return Err(bad(
            "invalid_scope",
            "scope.value of a user scope must be a valid user id",
        ));
    }
    AlertScope::parse(kind, value).ok_or_else(|| {
        bad(
            "invalid_scope",
            "scope.kind must be all (value null), provider, model or user (a value), or key (a key UUID)",
        )
    })
}

fn parse_thresholds(v: &Value) -> Result<Vec<u32>, ApiError> {
    let message = || {
        format!("thresholds must be 1-{MAX_THRESHOLDS} distinct whole percentages from 1 to 1000, e.g. [50, 80, 100]")
    };
    let list = v
        .as_array()
        .ok_or_else(|| bad("invalid_thresholds", message()))?;
    if list.is_empty() || list.len() > MAX_THRESHOLDS {
        return Err(bad("invalid_thresholds", message()));
    }
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let n = t
            .as_u64()
            .filter(|n| THRESHOLD_RANGE.contains(n))
            .ok_or_else(|| bad("invalid_thresholds", message()))?;
        let n = u32::try_from(n).map_err(|_| bad("invalid_thresholds", message()))?;
        if out.contains(&n) {
            return Err(bad(
                "invalid_thresholds",
                format!("threshold {n} is given twice"),
            ));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

fn parse_emails(v: &Value) -> Result<Vec<String>, ApiError> {
    let list = v.as_array().ok_or_else(|| {
        bad(
            "invalid_emails",
            format!("emails must be a list of at most {MAX_EMAILS} addresses"),
        )
    })?;
    if list.len() > MAX_EMAILS {
        return Err(bad(
            "invalid_emails",
            format!("at most {MAX_EMAILS} email addresses"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for e in list {
        let addr = e.as_str().map(str::trim).unwrap_or_default();
        if !plausible_email(addr) {
            return Err(bad(
                "invalid_emails",
                format!("{e} is not an email address"),
            ));
        }
        if out.iter().any(|o| o.eq_ignore_ascii_case(addr)) {
            return Err(bad("invalid_emails", format!("{addr} is given twice")));
        }
        out.push(addr.to_string());
    }
    Ok(out)
}

fn parse_webhook(v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= MAX_URL_CHARS && is_http_url(s.trim()) => {
            Ok(Some(s.trim().to_string()))
        }
        _ => Err(bad(
            "invalid_webhook_url",
            format!(
                "webhook_url must be null or an http(s) URL of at most {MAX_URL_CHARS} characters"
            ),
        )),
    }
}

/// Apply the fields of `body` to `base` (a new budget's defaults, or the stored budget).
fn apply(body: &Value, base: &mut AlertBudget, creating: bool) -> Result<(), ApiError> {
    let obj: &Map<String, Value> = body
        .as_object()
        .ok_or_else(|| bad("invalid_body", "the body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            "unknown_field",
            format!("unknown field {k:?}; fields are {}", FIELDS.join(", ")),
        ));
    }
    if creating {
        if let Some(missing) = ["name", "amount", "period", "scope"]
            .iter()
            .find(|f| !obj.contains_key(**f))
        {
            return Err(bad("missing_field", format!("{missing} is required")));
        }
    }
    if let Some(v) = obj.get("name") {
        base.name = parse_name(v)?;
    }
    if let Some(v) = obj.get("amount") {
        base.amount = parse_amount(v)?;
    }
    if let Some(v) = obj.get("period") {
        base.period = parse_period(v)?;
    }
    if let Some(v) = obj.get("scope") {
        base.scope = parse_scope(v)?;
    }
    if let Some(v) = obj.get("thresholds") {
        base.thresholds = parse_thresholds(v)?;
    }
    if let Some(v) = obj.get("emails") {
        base.emails = parse_emails(v)?;
    }
    if let Some(v) = obj.get("webhook_url") {
        base.webhook_url = parse_webhook(v)?;
    }
    if let Some(v) = obj.get("enabled") {
        base.enabled = v
            .as_bool()
            .ok_or_else(|| bad("invalid_enabled", "enabled must be true or false"))?;
    }
    Ok(())
}

/// Check a budget body as `POST /api/budgets` would, giving the budget it describes.
pub fn parse_new_budget(body: &Value, now: DateTime<Utc>) -> Result<AlertBudget, ApiError> {
    let mut b = AlertBudget {
        budget_id: Uuid::now_v7(),
        name: String::new(),
        amount: Decimal::ZERO,
        period: AlertPeriod::Monthly,
        scope: AlertScope::All,
        thresholds: DEFAULT_THRESHOLDS.to_vec(),
        emails: Vec::new(),
        webhook_url: None,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    apply(body, &mut b, true)?;
    Ok(b)
}

fn api(state: &web::Data<BudgetsApi>) -> &AlertEvaluator {
    &state.evaluator
}

async fn load(state: &web::Data<BudgetsApi>, id: Uuid) -> Result<AlertBudget, ApiError> {
    blocking(api(state).store(), move |s| s.get_alert_budget(id))
        .await?
        .ok_or_else(|| ApiError::not_found("budget_not_found", format!("no budget {id}")))
}

/// `POST /api/budgets`: create a budget (201).
#[utoipa::path(tag = "budgets", request_body = crate::openapi::BudgetBody, responses((status = 201, description = "The budget", body = Object)))]
#[post("/api/budgets")]
async fn create_budget(
    state: web::Data<BudgetsApi>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let budget = parse_new_budget(&body, Utc::now())?;
    let stored = blocking(api(&state).store(), move |s| s.create_alert_budget(&budget)).await?;
    Ok(HttpResponse::Created().json(budget_json(&stored)))
}

/// `GET /api/budgets`: every budget, oldest first.
#[utoipa::path(tag = "budgets", responses((status = 200, description = "Every budget", body = Object)))]
#[get("/api/budgets")]
async fn list_budgets(state: web::Data<BudgetsApi>) -> Result<HttpResponse, ApiError> {
    let budgets = blocking(api(&state).store(), |s| s.list_alert_budgets()).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"budgets": budgets.iter().map(budget_json).collect::<Vec<_>>()})))
}

/// `GET /api/budgets/check`: every budget's current window (spend, projection, fired thresholds).
#[utoipa::path(tag = "budgets", responses((status = 200, description = "Every budget window", body = Object)))]
#[get("/api/budgets/check")]
async fn check_budgets(state: web::Data<BudgetsApi>) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let checks = api(&state).check_at(now).await?;
    Ok(HttpResponse::Ok().json(json!({
        "checked_at": rfc3339(now),
        "budgets": checks.iter().map(check_json).collect::<Vec<_>>(),
    })))
}

/// `GET /api/budgets/{id}`.
#[utoipa::path(tag = "budgets", responses((status = 200, description = "The budget", body = Object)))]
#[get("/api/budgets/{id}")]
async fn get_budget(
    state: web::Data<BudgetsApi>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let budget = load(&state, parse_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(budget_json(&budget)))
}

/// `PATCH /api/budgets/{id}`: change the given fields.
#[utoipa::path(tag = "budgets", request_body = crate::openapi::BudgetBody, responses((status = 200, description = "The budget", body = Object)))]
#[patch("/api/budgets/{id}")]
async fn patch_budget(
    state: web::Data<BudgetsApi>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let mut budget = load(&state, id).await?;
    apply(&body, &mut budget, false)?;
    budget.updated_at = Utc::now();
    let stored = blocking(api(&state).store(), move |s| s.update_alert_budget(&budget)).await?;
    Ok(HttpResponse::Ok().json(budget_json(&stored)))
}

/// `DELETE /api/budgets/{id}` (204; its deliveries stay in the log).
#[utoipa::path(tag = "budgets", responses((status = 204, description = "Deleted")))]
#[delete("/api/budgets/{id}")]
async fn delete_budget(
    state: web::Data<BudgetsApi>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    blocking(api(&state).store(), move |s| s.delete_alert_budget(id))
        .await
        .map_err(|e| match e {
            ApiError::NotFound { .. } => {
                ApiError::not_found("budget_not_found", format!("no budget {id}"))
            }
            other => other,
        })?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/budgets/{id}/test_alert`: send a test alert over the budget's channels now.
#[utoipa::path(tag = "budgets", responses((status = 200, description = "Deliveries made", body = Object)))]
#[post("/api/budgets/{id}/test_alert")]
async fn test_alert(
    state: web::Data<BudgetsApi>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let budget = load(&state, parse_id(&id)?).await?;
    let deliveries = api(&state).send_test(&budget, Utc::now()).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>()})))
}

/// Query of the delivery log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    budget_id: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/alerts/deliveries?budget_id=&limit=`: the delivery log, newest first.
#[utoipa::path(tag = "budgets", params(DeliveriesQuery), responses((status = 200, description = "Delivery log, newest first", body = Object)))]
#[get("/api/alerts/deliveries")]
async fn list_deliveries(
    state: web::Data<BudgetsApi>,
    q: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let subject = match q.budget_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => Some(parse_id(id)?.to_string()),
        None => None,
    };
    let limit = q.limit.unwrap_or(DEFAULT_DELIVERIES);
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(bad(
            "invalid_limit",
            format!("limit must be 1-{MAX_DELIVERIES}"),
        ));
    }
    let deliveries = blocking(api(&state).store(), move |s| {
        s.list_deliveries(subject.as_deref(), limit)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(json!({"deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>()})))
}

/// Price alerts (source `price`: `price_changes`, `stale_prices`) go out by the same path,
/// to the notifier's default recipients and webhook, without waiting for delivery.
impl super::prices::PriceAlerts for tally_actors::notify::Notifier {
    fn price_alert(&self, kind: &str, title: String, text: String, data: Value) {
        self.spawn_send(tally_actors::notify::Alert {
            source: "price".to_string(),
            subject_id: None,
            kind: kind.to_string(),
            title,
            text,
            data,
            emails: Vec::new(),
            webhook_url: None,
        });
    }
}

/// The spec entries of this module (its handlers stay private); merged by [`crate::openapi::spec`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(check_budgets, create_budget, list_budgets, get_budget, patch_budget, delete_budget, test_alert, list_deliveries))]
pub struct ApiDoc;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({"name": "Monthly", "amount": "100.00", "period": "monthly",
               "scope": {"kind": "provider", "value": "openai"}, "thresholds": [100, 50, 80],
               "emails": ["a@b.co"], "webhook_url": null, "enabled": true})
    }

    fn code(v: Value) -> &'static str {
        match parse_new_budget(&v, Utc::now()) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    fn with(field: &str, value: Value) -> Value {
        let mut b = body();
        b[field] = value;
        b
    }

    #[test]
    fn a_good_body_parses_exactly() {
        let b = parse_new_budget(&body(), Utc::now()).expect("valid");
        assert_eq!(
            b.amount.to_string(),
            "100.00",
            "the amount keeps its digits"
        );
        assert_eq!(b.thresholds, vec![50, 80, 100], "thresholds are sorted");
        assert_eq!(b.scope, AlertScope::Provider("openai".into()), "the scope");
    }

    #[test]
    fn every_field_is_validated_with_a_stable_code() {
        assert_eq!(code(json!([])), "invalid_body", "not an object");
        assert_eq!(
            code(with("extra", json!(1))),
            "unknown_field",
            "unknown fields"
        );
        let mut no_name = body();
        no_name.as_object_mut().expect("object").remove("name");
        assert_eq!(code(no_name), "missing_field", "name is required");
        assert_eq!(code(with("name", json!(""))), "invalid_name", "empty name");
        assert_eq!(
            code(with("name", json!("x".repeat(201)))),
            "invalid_name",
            "long name"
        );
        for amount in [
            json!(100),
            json!("0"),
            json!("-1"),
            json!("1000000000.01"),
            json!("1.12345678901"),
            json!("x"),
        ] {
            assert_eq!(
                code(with("amount", amount.clone())),
                "invalid_amount",
                "amount {amount}"
            );
        }
        assert_eq!(
            code(with("amount", json!("1000000000"))),
            "ok",
            "the largest amount"
        );
        assert_eq!(
            code(with("amount", json!("0.0000000001"))),
            "ok",
            "ten decimals"
        );
        assert_eq!(
            code(with("period", json!("yearly"))),
            "invalid_period",
            "period"
        );
        for scope in [
            json!({"kind": "all", "value": "x"}),
            json!({"kind": "model", "value": null}),
            json!({"kind": "key", "value": "not-a-uuid"}),
            json!({"kind": "user", "value": "has space"}),
            json!({"kind": "team", "value": "x"}),
            json!("all"),
        ] {
            assert_eq!(
                code(with("scope", scope.clone())),
                "invalid_scope",
                "scope {scope}"
            );
        }
        assert_eq!(
            code(with("scope", json!({"kind": "all", "value": null}))),
            "ok",
            "all"
        );
        for t in [
            json!([]),
            json!([0]),
            json!([1001]),
            json!([50, 50]),
            json!([50.5]),
            json!("50"),
            json!((1..=11).collect::<Vec<_>>()),
        ] {
            assert_eq!(
                code(with("thresholds", t.clone())),
                "invalid_thresholds",
                "thresholds {t}"
            );
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("u{i}@example.com")).collect();
        for e in [
            json!(["nope"]),
            json!(["a@b.co", "A@b.co"]),
            json!(eleven),
            json!("a@b.co"),
        ] {
            assert_eq!(
                code(with("emails", e.clone())),
                "invalid_emails",
                "emails {e}"
            );
        }
        for u in [json!("ftp://x"), json!("http://"), json!(5)] {
            assert_eq!(
                code(with("webhook_url", u.clone())),
                "invalid_webhook_url",
                "webhook {u}"
            );
        }
        assert_eq!(
            code(with("enabled", json!("yes"))),
            "invalid_enabled",
            "enabled"
        );
    }
}
