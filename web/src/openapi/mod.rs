//! The API contract: the OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]` annotations, served at `/openapi.json`, and Swagger UI (assets embedded in the binary) at `/docs`.
//!
//! [`ApiDoc`] lists every operation; [`Contract`] then adds what every operation shares: the
//! bearer security scheme (on all but the public routes) and the error answers of `/api/*`
//! (400, 401, 403, 404, 413 with a body, 500 and 503, each with [`ErrorBody`]). The test
//! `web/tests/openapi.rs` fails when a registered route or an error code is missing here.

pub mod codes;
pub mod docs;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Spec, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::gateway::proxy as gw;
use crate::routes::{
    analytics, billing, budgets, dashboard, forecasts, health, keys, messages, metrics, prices, providers, scheduler,
    threads, users,
};

/// Path of the OpenAPI document.
pub const SPEC_PATH: &str = "/openapi.json";
/// Path of the docs page (Swagger UI).
pub const DOCS_PATH: &str = "/docs";
/// Name of the security scheme: `Authorization: Bearer <admin token or virtual key>`.
pub const BEARER: &str = "bearer";
/// Routes anyone may call, without credentials (no security requirement in the spec).
pub const PUBLIC_PATHS: [&str; 7] = ["/healthz", "/readyz", "/metrics", "/api/auth/whoami", SPEC_PATH, DOCS_PATH, "/{tail}"];

/// The error body of every `/api/*` failure (and of the node's other non-gateway routes).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (see the examples for the known codes).
    #[schema(examples("invalid_json", "user_not_found"))]
    pub code: String,
    /// Human explanation (never a database's or dependency's own error text).
    pub message: String,
    /// Present on 500 answers: quote it when reporting; the server log has the cause under it.
    #[schema(nullable = false)]
    pub request_id: Option<String>,
}

/// One server-sent event, as a client's SSE parser reads it (OpenAPI 3.1: the `schema` of a
/// `text/event-stream` answer describes each event). `data` is one JSON document.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SseEvent {
    /// The event's name (`start`, `delta`, `usage`, `done`, `error`; `snapshot`, `delta` on the dashboard).
    #[schema(nullable = false)]
    pub event: Option<String>,
    /// The event's payload: a JSON document.
    pub data: String,
    /// Event id, when the stream sets one.
    #[schema(nullable = false)]
    pub id: Option<String>,
    /// Reconnection delay in milliseconds, when the stream sets one.
    #[schema(nullable = false)]
    pub retry: Option<u64>,
}

/// The error body of `/v1/chat/completions` and `/v1/models` (OpenAI's shape).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OpenAiError {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// OpenAI's error object; Tally's stable code is in `code`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// Explanation.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, when one is to blame.
    pub param: Option<String>,
    /// Tally's stable code.
    pub code: String,
}

/// The error body of `/v1/messages` (Anthropic's shape).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error; Tally's stable code is its `type`.
    pub error: AnthropicErrorDetail,
}

/// Anthropic's error object.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// Tally's stable code.
    #[serde(rename = "type")]
    pub kind: String,
    /// Explanation.
    pub message: String,
}

/// A gateway request: OpenAI Chat Completions or Anthropic Messages, as the SDKs send it.
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct GatewayRequest {
    /// A catalogue model the key may use.
    pub model: String,
    /// The conversation (OpenAI or Anthropic message objects).
    pub messages: Vec<serde_json::Value>,
    /// Most output tokens.
    pub max_tokens: Option<u64>,
    /// Stream the answer as server-sent events.
    pub stream: Option<bool>,
}

/// The body of `POST /api/budgets` (all fields) and `PATCH /api/budgets/{id}` (any of them).
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct BudgetBody {
    /// Name, 1-200 characters.
    pub name: Option<String>,
    /// Limit per period, USD, as a decimal string.
    pub amount: Option<String>,
    /// `daily`, `weekly`, `monthly`, `quarterly` or `yearly`.
    pub period: Option<String>,
    /// `{"kind": "global" | "user" | "model" | "provider" | "key", "value": ...}`.
    pub scope: Option<serde_json::Value>,
    /// Percentages of the amount that alert, 1-1000.
    pub thresholds: Option<Vec<u32>>,
    /// Email recipients.
    pub emails: Option<Vec<String>>,
    /// Signed webhook target.
    pub webhook_url: Option<String>,
    /// Evaluated unless false.
    pub enabled: Option<bool>,
}

/// The body of `POST /api/prices/sync`: a price list (LiteLLM's JSON, model name -> prices).
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct PriceList(pub std::collections::BTreeMap<String, serde_json::Value>);

/// Query of `POST /api/providers/{id}/import`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Start, RFC 3339 or `YYYY-MM-DD` (default: a day before `to`).
    pub from: Option<String>,
    /// End, RFC 3339 or `YYYY-MM-DD` (default: now).
    pub to: Option<String>,
    /// `manual` (default) or `backfill`.
    pub trigger: Option<String>,
}

/// Query of `GET /api/providers/{id}/runs`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Most runs, 1-1000.
    pub limit: Option<String>,
}

/// Query of `GET /api/reconciliation`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// `anthropic` or `openai`.
    pub provider: String,
    /// First day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// Only `day`.
    pub granularity: Option<String>,
    /// Drift tolerance, percent (non-negative decimal).
    pub tolerance_pct: Option<String>,
}

/// The OpenAPI document of a Tally node.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally",
        description = "Meters and bills LLM usage: chat threads, usage events, prices, invoices, budgets, analytics, and an OpenAI/Anthropic-compatible gateway over virtual keys. Errors answer a JSON body with a stable `code`.",
        license(name = "MIT")
    ),
    paths(
        health::healthz, health::readyz, metrics::metrics, crate::auth::whoami, crate::routes::archives::list_archives,
        users::create_user, users::list_users, users::get_user,
        threads::create_thread, threads::list_threads, threads::get_thread,
        messages::send_message, messages::stream_message, messages::history,
        billing::user_metrics, billing::thread_metrics, billing::invoice_thread, billing::invoice_user,
        billing::user_invoices, billing::get_invoice, billing::set_invoice_status,
        analytics::usage_events, analytics::usage_event, analytics::summary, analytics::by_user,
        analytics::by_model, analytics::by_provider, analytics::by_key, analytics::top_tasks, analytics::trends,
        prices::list_models, prices::list_prices, prices::add_price, prices::verify_price, prices::sync_prices,
        dashboard::snapshot, dashboard::stream,
        forecasts::get_forecast, forecasts::train,
        scheduler::list_jobs, scheduler::trigger_job, scheduler::history,
        keys::create_key, keys::list_keys, keys::key_usage, keys::get_key, keys::patch_key, keys::revoke_key,
        keys::rotate_key, keys::put_user_budget, keys::get_user_budget, keys::delete_user_budget,
        keys::put_key_budget, keys::get_key_budget, keys::delete_key_budget, keys::key_spend,
        gw::chat_completions, gw::messages, gw::list_models,
        docs::ingest, docs::openapi_json, docs::docs_page, docs::spa,
    ),
    components(schemas(ErrorBody, SseEvent, OpenAiError, AnthropicError)),
    modifiers(&Contract),
    tags(
        (name = "health", description = "Liveness, readiness, metrics (public)"),
        (name = "users"), (name = "threads"), (name = "messages", description = "Chat turns, whole or streamed (SSE)"),
        (name = "billing", description = "Running totals, invoices"), (name = "analytics", description = "Daily rollups and the usage log"),
        (name = "prices"), (name = "dashboard"), (name = "forecasts"), (name = "budgets", description = "Alert budgets and the delivery log"),
        (name = "providers", description = "Provider usage import and reconciliation"), (name = "scheduler"),
        (name = "keys", description = "Virtual keys and their budgets"), (name = "gateway", description = "OpenAI- and Anthropic-compatible endpoints"),
        (name = "ingest", description = "External usage events"), (name = "archives", description = "Retention: months moved to Parquet files"), (name = "auth", description = "Access mode and the caller"), (name = "meta", description = "This document, its docs page, the UI")
    )
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`] with the modules that keep their handlers private merged in.
pub fn spec() -> Spec {
    let mut doc = ApiDoc::openapi();
    doc.merge(budgets::ApiDoc::openapi());
    doc.merge(providers::ApiDoc::openapi());
    // Merged paths arrive without the shared errors and security: apply them once more.
    Contract.modify(&mut doc);
    doc
}

/// Adds what every operation shares: security and the standard error answers.
pub struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut Spec) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <admin token or the user's virtual key>`"))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            let api = path.starts_with("/api/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                if !public {
                    op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                }
                if api {
                    add_api_errors(op);
                }
            }
        }
    }
}

/// The error answers every `/api/*` operation can give, with the codes behind each status.
fn add_api_errors(op: &mut Operation) {
    let mut standard: Vec<(&str, String)> = vec![
        ("400", format!("Invalid input. Codes: {}", codes::BAD_REQUEST.join(", "))),
        ("401", format!("Missing or wrong credentials (token mode). Codes: {}", codes::UNAUTHORIZED.join(", "))),
        ("403", format!("The credentials may not do this (token mode). Codes: {}", codes::FORBIDDEN.join(", "))),
        ("429", format!("Too many requests, or too many failed authentications from this address (Retry-After). Codes: {}", codes::RATE_LIMITED.join(", "))),
        ("404", format!("Not found. Codes: {}", codes::NOT_FOUND.join(", "))),
        ("500", "A bug or an unexpected failure: code `internal` and a `request_id`; the cause is in the server log.".to_string()),
        ("503", format!("A dependency is down; retry (Retry-After). Codes: {}", codes::UNAVAILABLE.join(", "))),
    ];
    if op.request_body.is_some() {
        standard.push(("413", "The body is larger than the route's limit: code `payload_too_large`.".to_string()));
    }
    for (status, description) in standard {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        op.responses.responses.insert(status.to_string(), RefOr::T(error_response(&description)));
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))).build(),
        )
        .build()
}

/// The document as JSON (what `GET /openapi.json` answers).
pub fn spec_json() -> Result<String, serde_json::Error> {
    let mut doc = spec();
    doc.components.get_or_insert_with(Default::default);
    let mut value = serde_json::to_value(&doc)?;
    // Every known error code, in one place, so clients can switch on them.
    value["x-error-codes"] = serde_json::json!({
        "400": codes::BAD_REQUEST, "401": codes::UNAUTHORIZED, "402": codes::PAYMENT_REQUIRED, "403": codes::FORBIDDEN, "404": codes::NOT_FOUND, "409": codes::CONFLICT,
        "413": ["payload_too_large"], "422": codes::UNPROCESSABLE, "429": codes::RATE_LIMITED, "500": ["internal"],
        "503": codes::UNAVAILABLE, "gateway": codes::GATEWAY,
    });
    serde_json::to_string(&value)
}
