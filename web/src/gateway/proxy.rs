//! The gateway's routes: `POST /v1/chat/completions`, `POST /v1/messages`, `GET /v1/models`.
//!
//! The upstream call runs in a task of its own: the handler only waits for the answer.
//! A client that goes away (before the answer, or mid-stream) therefore never stops the
//! call; the task reads the upstream to its final usage (bounded by [`DRAIN_TIMEOUT`]),
//! bills it and settles the hold, so what was spent upstream is always billed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use actix_web::web::{self, Bytes};
use actix_web::{get, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_actors::budget::{BudgetError, BudgetLimit};
use tally_actors::{usage_from_tokens, BillUsage, Persist, TraceContext, UsageEvent};
use tally_domain::budget::{input_token_upper_bound, reservation_bound};
use tally_llm::gateway::{FrameStream, SseFrame, Upstream, UpstreamResponse, UsageTracker, WireFormat, WithheldUsage};
use tally_llm::TokenUsage;
use tally_store::analytics::EventPayload;
use tally_store::{BudgetRecord, GatewayCallRecord, KeyRecord, WriteOp};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::budgets::{check_alerts, limit_of};
use super::error::{ErrorShape, GatewayError};
use super::keys::KeyRefusal;
use super::translate;
use super::{Gateway, ModelInfo, MAX_GATEWAY_BODY_BYTES};

/// After the client goes away mid-stream, how long the upstream is still read for its final usage.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Frames buffered between the upstream reader and a slow client.
const STREAM_BUFFER: usize = 64;
/// Largest `n` (choices per request) accepted on the OpenAI route.
const MAX_CHOICES: u64 = 128;
/// Input tokens reserved per image given by URL rather than inline: the body's bytes do
/// not bound them. Providers downscale images, which caps their tokens: Anthropic at about
/// 1,600 per image, OpenAI's tile and patch models below 3,800 (gpt-4.1-nano's 1,536
/// patches x 2.46); 4,096 covers every catalogue model.
const IMAGE_BY_REFERENCE_TOKENS: u64 = 4_096;
/// Input tokens reserved for the tool-use system prompt Anthropic adds when tools are
/// given (published as up to 346 tokens); it is not in the request's bytes.
const TOOL_PROMPT_TOKENS: u64 = 512;

/// Which wire format the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/messages`.
    Messages,
}

impl Route {
    fn shape(self) -> ErrorShape {
        match self {
            Route::ChatCompletions => ErrorShape::OpenAi,
            Route::Messages => ErrorShape::Anthropic,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Messages => "messages",
        }
    }
}

/// Register the gateway's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(chat_completions))
        .route("/v1/messages", web::post().to(messages))
        .service(list_models);
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway", request_body = crate::openapi::GatewayRequest, responses((status = 200, description = "OpenAI chat completion (or server-sent chunks when stream is true)", body = Object), (status = 400, description = "Invalid request", body = crate::openapi::OpenAiError), (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::openapi::OpenAiError), (status = 402, description = "budget_exceeded", body = crate::openapi::OpenAiError), (status = 403, description = "Model not allowed for this key", body = crate::openapi::OpenAiError), (status = 404, description = "model_not_found", body = crate::openapi::OpenAiError), (status = 413, description = "payload_too_large", body = crate::openapi::OpenAiError), (status = 429, description = "rate_limited", body = crate::openapi::OpenAiError), (status = 502, description = "upstream_unavailable", body = crate::openapi::OpenAiError), (status = 503, description = "A dependency is down", body = crate::openapi::OpenAiError), (status = 500, description = "internal", body = crate::openapi::OpenAiError)))]
async fn chat_completions(req: HttpRequest, body: web::Payload, gw: web::Data<Gateway>) -> HttpResponse {
    handle(req, body, gw, Route::ChatCompletions).await
}

#[utoipa::path(post, path = "/v1/messages", tag = "gateway", request_body = crate::openapi::GatewayRequest, responses((status = 200, description = "Anthropic message (or server-sent events when stream is true)", body = Object), (status = 400, description = "Invalid request", body = crate::openapi::AnthropicError), (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::openapi::AnthropicError), (status = 402, description = "budget_exceeded", body = crate::openapi::AnthropicError), (status = 403, description = "Model not allowed for this key", body = crate::openapi::AnthropicError), (status = 404, description = "model_not_found", body = crate::openapi::AnthropicError), (status = 413, description = "payload_too_large", body = crate::openapi::AnthropicError), (status = 429, description = "rate_limited", body = crate::openapi::AnthropicError), (status = 502, description = "upstream_unavailable", body = crate::openapi::AnthropicError), (status = 503, description = "A dependency is down", body = crate::openapi::AnthropicError), (status = 500, description = "internal", body = crate::openapi::AnthropicError)))]
async fn messages(req: HttpRequest, body: web::Payload, gw: web::Data<Gateway>) -> HttpResponse {
    handle(req, body, gw, Route::Messages).await
}

/// `GET /v1/models`: the OpenAI list of the models this key may use.
#[utoipa::path(tag = "gateway", responses((status = 200, description = "OpenAI model list", body = Object), (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::openapi::OpenAiError), (status = 503, description = "A dependency is down", body = crate::openapi::OpenAiError)))]
#[get("/v1/models")]
pub async fn list_models(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let key = match authenticate(&req, &gw).await {
        Ok(k) => k,
        Err(e) => return e.response(ErrorShape::OpenAi),
    };
    let mut names: Vec<(&String, &super::ModelInfo)> =
        gw.models.iter().filter(|(name, _)| allowed(&key, name)).collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    let data: Vec<Value> = names
        .into_iter()
        .map(|(name, info)| json!({"id": name, "object": "model", "created": 0, "owned_by": info.provider}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

fn allowed(key: &KeyRecord, model: &str) -> bool {
    key.allowed_models.as_ref().is_none_or(|m| m.iter().any(|a| a == model))
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(token.trim().to_string());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

async fn authenticate(req: &HttpRequest, gw: &Gateway) -> Result<Arc<KeyRecord>, GatewayError> {
    let refuse = |r: KeyRefusal| GatewayError::Unauthorized { code: r.code(), message: r.message().to_string() };
    let presented = presented_key(req.headers()).ok_or_else(|| refuse(KeyRefusal::Missing))?;
    gw.keys.authenticate(&gw.store, &presented).await.map_err(|e| match e {
        Ok(r) => refuse(r),
        Err(api) => GatewayError::Unavailable { code: "key_store_unavailable", message: format!("cannot check the key: {api}") },
    })
}

async fn read_body(mut payload: web::Payload) -> Result<Bytes, GatewayError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::invalid("invalid_body", format!("could not read the body: {e}"), None))?;
        if buf.len() + chunk.len() > MAX_GATEWAY_BODY_BYTES {
            return Err(GatewayError::TooLarge(MAX_GATEWAY_BODY_BYTES));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A positive integer field, if present.
fn positive_int(body: &Value, field: &str) -> Result<Option<u64>, GatewayError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(GatewayError::invalid(
                "invalid_parameter",
                format!("`{field}` must be a positive integer"),
                Some(field),
            )),
        },
    }
}

/// What the handler learned from the body.
struct Plan {
    model: String,
    /// Output tokens one choice may generate (asked for, or the model's maximum).
    max_output: u64,
    /// Choices asked for (`n`).
    choices: u64,
    messages: usize,
    /// OpenAI client, Claude model: translate both ways.
    translate: bool,
    /// Whether the client asked for the final usage chunk of an OpenAI stream.
    client_wants_usage: bool,
    /// The client's route.
    route: Route,
    /// Input tokens the body's bytes do not bound (images by URL, Anthropic's tool prompt),
    /// or why the request's cost has no bound (refused only when a budget applies).
    extra_input: Result<u64, GatewayError>,
}

/// The request body as JSON.
fn parse_body(raw: &[u8]) -> Result<Value, GatewayError> {
    serde_json::from_slice(raw).map_err(|e| GatewayError::invalid("invalid_json", format!("the body is not valid JSON: {e}"), None))
}

fn plan(route: Route, body: &Value, models: &HashMap<String, ModelInfo>, key: &KeyRecord) -> Result<Plan, GatewayError> {
    let obj = body.as_object().ok_or_else(|| GatewayError::invalid("invalid_body", "the body must be a JSON object", None))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::invalid("missing_model", "`model` is required", Some("model")))?
        .to_string();
    let info = models.get(&model).ok_or_else(|| GatewayError::UnknownModel(model.clone()))?;
    let claude = info.provider == "anthropic";
    if route == Route::Messages && !claude {
        return Err(GatewayError::invalid(
            "model_not_supported_on_route",
            format!("`{model}` is not an Anthropic model; call it on /v1/chat/completions"),
            Some("model"),
        ));
    }
    if !allowed(key, &model) {
        return Err(GatewayError::Forbidden {
            code: "model_not_allowed",
            message: format!("This key may not use the model `{model}`."),
        });
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() && m.iter().all(Value::is_object) => m.len(),
        _ => {
            return Err(GatewayError::invalid(
                "invalid_messages",
                "`messages` must be a non-empty array of message objects",
                Some("messages"),
            ))
        }
    };
    // Whether the answer streams is the upstream's to act on; a non-boolean is refused here.
    if !matches!(obj.get("stream"), None | Some(Value::Null | Value::Bool(_))) {
        return Err(GatewayError::invalid("invalid_parameter", "`stream` must be a boolean", Some("stream")));
    }
    let (asked, field) = match route {
        Route::Messages => {
            let asked = positive_int(body, "max_tokens")?;
            if asked.is_none() {
                return Err(GatewayError::invalid("missing_max_tokens", "`max_tokens` is required", Some("max_tokens")));
            }
            (asked, "max_tokens")
        }
        Route::ChatCompletions => match positive_int(body, "max_completion_tokens")? {
            Some(n) => (Some(n), "max_completion_tokens"),
            None => (positive_int(body, "max_tokens")?, "max_tokens"),
        },
    };
    let max_output = match (asked, info.max_output_tokens) {
        (Some(n), Some(limit)) if n > limit => {
            return Err(GatewayError::invalid(
                "max_tokens_too_large",
                format!("`{field}` is {n}, but `{model}` generates at most {limit} tokens"),
                Some(field),
            ))
        }
        (Some(n), _) => n,
        (None, Some(limit)) => limit,
        (None, None) => {
            return Err(GatewayError::invalid(
                "max_tokens_required",
                format!("`{model}` has no published output limit: set `{field}`"),
                Some(field),
            ))
        }
    };
    let choices = match route {
        Route::Messages => 1,
        Route::ChatCompletions => positive_int(body, "n")?.unwrap_or(1),
    };
    if choices > MAX_CHOICES {
        return Err(GatewayError::invalid("invalid_parameter", format!("`n` may be at most {MAX_CHOICES}"), Some("n")));
    }
    let client_wants_usage = translate::stream_include_usage(body);
    Ok(Plan {
        model,
        max_output,
        choices,
        messages,
        translate: route == Route::ChatCompletions && claude,
        client_wants_usage,
        route,
        extra_input: unbounded_input(body),
    })
}

/// Input tokens a request may cost beyond its bytes: images given by reference, and the
/// tool prompt. A document or file given by reference (a PDF of any length) has no bound,
/// so it is refused: the gateway would have to admit a call whose cost it cannot cap.
fn unbounded_input(body: &Value) -> Result<u64, GatewayError> {
    fn walk(v: &Value, images: &mut u64) -> Result<(), GatewayError> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| walk(i, images)),
            Value::Object(o) => {
                let kind = o.get("type").and_then(Value::as_str);
                let source_kind = o.get("source").and_then(|s| s.get("type")).and_then(Value::as_str);
                match (kind, source_kind) {
                    // OpenAI: an image part whose URL is not inline data.
                    (Some("image_url"), _) => {
                        let url = o.get("image_url").and_then(|i| i.get("url").or(Some(i))).and_then(Value::as_str);
                        if !url.is_some_and(|u| u.starts_with("data:")) {
                            *images += 1;
                        }
                    }
                    // Anthropic: an image by URL or uploaded file.
                    (Some("image"), Some("url" | "file")) => *images += 1,
                    (Some("document"), Some("url" | "file")) | (Some("file"), _)
                        if o.get("file").and_then(|f| f.get("file_id")).is_some()
                            || source_kind.is_some_and(|s| s == "url" || s == "file") =>
                    {
                        return Err(GatewayError::invalid(
                            "unbounded_input",
                            "a document given by URL or file id has no cost bound; send it inline (base64) so the budget can hold it",
                            Some("messages"),
                        ));
                    }
                    _ => {}
                }
                o.values().try_for_each(|child| walk(child, images))
            }
            _ => Ok(()),
        }
    }
    let mut images = 0;
    if let Some(messages) = body.get("messages") {
        walk(messages, &mut images)?;
    }
    let tools = body.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    Ok(images.saturating_mul(IMAGE_BY_REFERENCE_TOKENS) + if tools { TOOL_PROMPT_TOKENS } else { 0 })
}

/// The `x-tally-task` header: an optional analytics label (same rule as ingest's `task`).
fn task_label(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(value) = headers.get("x-tally-task") else { return Ok(None) };
    match value.to_str() {
        Ok(t) if tally_actors::kafka::envelope::valid_label(t) => Ok(Some(t.to_string())),
        _ => Err(GatewayError::invalid(
            "invalid_task",
            "x-tally-task must be 1-64 characters of letters, digits, '_', '-', '.', ':'".to_string(),
            None,
        )),
    }
}

/// One admitted call: who, what, and the hold to settle.
struct Call {
    key: Arc<KeyRecord>,
    route: Route,
    model: String,
    event_id: Uuid,
    started: Instant,
    occurred_at: DateTime<Utc>,
    /// The `x-tally-task` label, if given.
    task: Option<String>,
    /// The request body, kept when payload storage is on.
    request: Option<String>,
    /// The budgets the call was held against, with their windows (empty: no hold).
    limits: Vec<(BudgetRecord, BudgetLimit)>,
    /// The held upper bound.
    reserved: Decimal,
}

async fn handle(req: HttpRequest, payload: web::Payload, gw: web::Data<Gateway>, route: Route) -> HttpResponse {
    match admit_and_call(&req, payload, gw.get_ref().clone(), route).await {
        Ok(resp) => resp,
        Err(e) => e.response(route.shape()),
    }
}

async fn admit_and_call(
    req: &HttpRequest,
    payload: web::Payload,
    gw: Gateway,
    route: Route,
) -> Result<HttpResponse, GatewayError> {
    let key = authenticate(req, &gw).await?;
    let task = task_label(req.headers())?;
    let raw = read_body(payload).await?;
    let body = parse_body(&raw)?;
    let plan = plan(route, &body, &gw.models, &key)?;
    let now = Utc::now();
    if let Some(limit) = key.rpm_limit {
        gw.rpm.admit(key.key_id, limit, now).map_err(|retry_after_secs| GatewayError::RateLimited { limit, retry_after_secs })?;
    }
    let upstream = gw.upstreams.for_model(&plan.model).ok_or_else(|| GatewayError::UnknownModel(plan.model.clone()))?;
    let upstream_body = upstream_body(body, &plan)?;

    let event_id = Uuid::now_v7();
    let mut call = Call {
        key: key.clone(),
        route,
        model: plan.model.clone(),
        event_id,
        started: Instant::now(),
        occurred_at: now,
        task,
        request: gw.store_payloads.then(|| capped(String::from_utf8_lossy(&raw).into_owned())),
        limits: Vec::new(),
        reserved: Decimal::ZERO,
    };
    reserve(&gw, &mut call, &plan, raw.len(), now).await?;

    let (tx, rx) = oneshot::channel();
    let provider = upstream.name();
    let simulated = upstream.is_simulated();
    actix_web::rt::spawn(run_call(gw.clone(), call, upstream, upstream_body, plan, tx));
    let answer = rx.await.map_err(|_| GatewayError::Internal("the upstream task ended without an answer".into()))??;
    let mut resp = match answer.kind {
        AnswerKind::Json { status, body } => {
            let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            let mut b = HttpResponse::build(status);
            b.json(body)
        }
        AnswerKind::Sse(rx) => {
            let mut b = HttpResponse::Ok();
            b.insert_header(("content-type", "text/event-stream"))
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"));
            b.streaming(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, std::convert::Infallible>))
        }
    };
    let headers = resp.headers_mut();
    let insert = |h: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&value) {
            h.insert(actix_web::http::header::HeaderName::from_static(name), v);
        }
    };
    insert(headers, "x-tally-request-id", event_id.to_string());
    insert(headers, "x-tally-key-id", key.key_id.to_string());
    insert(headers, "x-tally-provider", provider.to_string());
    if simulated {
        insert(headers, "x-tally-simulated", "true".to_string());
    }
    if let Some(id) = answer.upstream_request_id {
        insert(headers, "x-tally-upstream-request-id", id);
    }
    Ok(resp)
}

/// The body sent upstream: the client's, or its Anthropic translation. (OpenAI streams
/// report usage only when asked: the OpenAI upstream asks for it itself and withholds the
/// usage chunk from clients that did not, see `tally_llm::gateway::WithheldUsage`.)
fn upstream_body(body: Value, plan: &Plan) -> Result<Value, GatewayError> {
    if plan.translate {
        return translate::openai_request_to_anthropic(&body, plan.max_output)
            .map_err(|e| GatewayError::Invalid { code: e.code(), message: e.to_string(), param: e.param() });
    }
    Ok(body)
}

/// Hold the request's upper-bound cost against every enabled budget of the key and its user.
async fn reserve(gw: &Gateway, call: &mut Call, plan: &Plan, body_bytes: usize, now: DateTime<Utc>) -> Result<(), GatewayError> {
    let budgets = gw
        .budgets
        .for_key(&gw.store, &call.key)
        .await
        .map_err(|e| GatewayError::Unavailable { code: "budget_unavailable", message: format!("cannot read budgets: {e}") })?;
    let mut limits = Vec::new();
    for b in budgets.iter().filter(|b| b.enabled) {
        let limit = limit_of(b, now).map_err(GatewayError::Internal)?;
        limits.push((b.clone(), limit));
    }
    if limits.is_empty() {
        return Ok(());
    }
    let book = gw.prices.current();
    let input_bound = input_token_upper_bound(body_bytes, plan.messages).saturating_add(plan.extra_input.clone()?);
    let output = plan.max_output.saturating_mul(plan.choices);
    let amount = reservation_bound(&book, &plan.model, now, input_bound, output).map_err(|e| GatewayError::Invalid {
        code: e.code(),
        message: format!("cannot price `{}`: {e}", plan.model),
        param: Some("model".into()),
    })?;
    let just_limits: Vec<BudgetLimit> = limits.iter().map(|(_, l)| l.clone()).collect();
    match gw.ledger.reserve(call.event_id, &just_limits, amount, gw.lease).await {
        Ok(()) => {
            call.limits = limits;
            call.reserved = amount;
            Ok(())
        }
        Err(BudgetError::Exceeded { budget_id, max, remaining, resets_at, .. }) => {
            let period = limits
                .iter()
                .find(|(b, _)| b.budget_id == budget_id)
                .map_or_else(|| "budget".to_string(), |(b, _)| b.period.clone());
            tracing::info!(
                key.id = %call.key.key_id,
                budget.id = %budget_id,
                requested_usd = %amount,
                remaining_usd = %remaining,
                "Gateway call refused: over budget."
            );
            Err(GatewayError::BudgetExceeded {
                period,
                max,
                remaining: remaining.max(Decimal::ZERO),
                requested: amount,
                resets_at,
            })
        }
        Err(e) => Err(GatewayError::Unavailable { code: e.code(), message: format!("budgets are unavailable: {e}") }),
    }
}

/// What the upstream task hands the handler.
struct Answer {
    kind: AnswerKind,
    upstream_request_id: Option<String>,
}

enum AnswerKind {
    Json { status: u16, body: Value },
    Sse(mpsc::Receiver<Bytes>),
}

/// Most bytes of a request or response kept as a payload (the rest is cut, marked).
const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// `text` cut to [`MAX_PAYLOAD_BYTES`] at a character boundary.
fn capped(mut text: String) -> String {
    if text.len() > MAX_PAYLOAD_BYTES {
        let mut end = MAX_PAYLOAD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[cut by tally: payload longer than 256 KiB]");
    }
    text
}

/// How a call ended, for the gateway call's record.
struct Outcome {
    /// The response as the client got it (JSON, or the SSE frames), when payloads are kept.
    response: Option<String>,
    usage: TokenUsage,
    status: &'static str,
    http_status: u16,
    upstream_request_id: Option<String>,
    provider: &'static str,
    simulated: bool,
}

async fn run_call(
    gw: Gateway,
    call: Call,
    upstream: Arc<dyn Upstream>,
    body: Value,
    plan: Plan,
    tx: oneshot::Sender<Result<Answer, GatewayError>>,
) {
    let provider = upstream.name();
    let simulated = upstream.is_simulated();
    let created = Utc::now().timestamp();
    let outcome = match upstream.send(body).await {
        Err(e) => {
            tracing::warn!(provider, model = %call.model, error = %e, "Gateway upstream call failed.");
            let _ = tx.send(Err(GatewayError::Upstream(format!("the {provider} upstream failed: {e}"))));
            Outcome { response: None, usage: TokenUsage::default(), status: "upstream_error", http_status: 502, upstream_request_id: None, provider, simulated }
        }
        Ok(UpstreamResponse::Reply(r)) => {
            let ok = (200..300).contains(&r.status);
            let body = match (plan.translate, ok) {
                (true, true) => translate::anthropic_response_to_openai(&r.body, created),
                (true, false) => translate::anthropic_error_to_openai(&r.body),
                (false, _) => r.body,
            };
            let response = gw.store_payloads.then(|| capped(body.to_string()));
            let outcome = Outcome {
                response,
                usage: r.usage,
                status: if ok { "ok" } else { "upstream_error" },
                http_status: r.status,
                upstream_request_id: r.request_id.clone(),
                provider,
                simulated,
            };
            // The answer goes once its usage is durable: a node killed or a database down
            // between the two would otherwise leave an answered call unbilled.
            let recorded = record(&gw, &call, &outcome).await;
            let answer = if recorded.durable {
                Ok(Answer { kind: AnswerKind::Json { status: r.status, body }, upstream_request_id: r.request_id })
            } else {
                Err(not_recorded())
            };
            let _ = tx.send(answer);
            settle(&gw, &call, &outcome, recorded).await;
            return;
        }
        Ok(UpstreamResponse::Stream(s)) => {
            let (btx, brx) = mpsc::channel(STREAM_BUFFER);
            let request_id = s.request_id.clone();
            let client = tx
                .send(Ok(Answer { kind: AnswerKind::Sse(brx), upstream_request_id: request_id.clone() }))
                .is_ok();
            let pumped = pump(&gw, &call, &plan, upstream.format(), (s.frames, s.withheld_usage), btx, client, created).await;
            let outcome = Outcome {
                response: pumped.response,
                usage: pumped.usage,
                status: pumped.status,
                http_status: 200,
                upstream_request_id: request_id,
                provider,
                simulated,
            };
            // The stream's last frame (`message_stop`, `[DONE]`) goes once its usage is
            // durable; if it cannot be recorded the client gets an error frame instead.
            let recorded = record(&gw, &call, &outcome).await;
            if let Some(out) = pumped.out {
                let frames = if recorded.durable {
                    pumped.held
                } else {
                    vec![stream_error_frame(&plan, &not_recorded())]
                };
                for bytes in frames {
                    if out.send(bytes).await.is_err() {
                        break;
                    }
                }
            }
            settle(&gw, &call, &outcome, recorded).await;
            return;
        }
    };
    let recorded = record(&gw, &call, &outcome).await;
    settle(&gw, &call, &outcome, recorded).await;
}

/// What the client gets when the call's usage could not be made durable.
fn not_recorded() -> GatewayError {
    GatewayError::Unavailable {
        code: "usage_not_recorded",
        message: "The call's usage could not be recorded (the database is unavailable); it is not answered so that nothing goes unbilled. Try again later.".into(),
    }
}

/// How a stream's forwarding ended.
struct Pumped {
    usage: TokenUsage,
    status: &'static str,
    /// The frames as the client got them, when payloads are kept.
    response: Option<String>,
    /// The stream's terminal frame(s), held until the usage is durable.
    held: Vec<Bytes>,
    /// The client's channel, while the client is still there.
    out: Option<mpsc::Sender<Bytes>>,
}

/// Whether an upstream frame ends its stream (Anthropic's `message_stop`, OpenAI's `[DONE]`).
fn is_terminal(frame: &SseFrame) -> bool {
    frame.data.trim() == "[DONE]" || frame.event.as_deref() == Some("message_stop")
}

/// Forward a stream's frames to the client while reading its usage; keep reading after
/// the client goes (up to [`DRAIN_TIMEOUT`]). Returns the usage, the call's status and, when
/// payloads are kept, the frames as the client got them.
#[allow(clippy::too_many_arguments)] // one stream's whole context
async fn pump(
    gw: &Gateway,
    call: &Call,
    plan: &Plan,
    format: WireFormat,
    (mut frames, withheld): (FrameStream, WithheldUsage),
    out: mpsc::Sender<Bytes>,
    client_connected: bool,
    created: i64,
) -> Pumped {
    let mut held: Vec<Bytes> = Vec::new();
    let mut tracker = UsageTracker::new(format);
    let mut kept: Option<String> = gw.store_payloads.then(String::new);
    let mut translator = plan.translate.then(|| translate::StreamTranslator::new(&plan.model, created, plan.client_wants_usage));
    let mut client_gone = !client_connected;
    let mut drain_deadline = client_gone.then(|| tokio::time::Instant::now() + DRAIN_TIMEOUT);
    let renew_every = gw.lease / 3;
    let mut renew_at = Instant::now() + renew_every;
    let mut failed = false;
    loop {
        let next = match drain_deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(n) => n,
                Err(_) => {
                    tracing::warn!(event.id = %call.event_id, "Upstream stream not finished within the drain timeout; billing what was read.");
                    failed = true;
                    break;
                }
            },
            None => frames.next().await,
        };
        let Some(item) = next else { break };
        match item {
            Ok(frame) => {
                tracker.observe(&frame);
                if !client_gone {
                    let terminal = translator.is_none() && is_terminal(&frame);
                    for bytes in encode(&frame, translator.as_mut()) {
                        if let Some(k) = kept.as_mut().filter(|k| k.len() <= MAX_PAYLOAD_BYTES) {
                            k.push_str(&String::from_utf8_lossy(&bytes));
                        }
                        if terminal {
                            held.push(bytes);
                            continue;
                        }
                        if out.send(bytes).await.is_err() {
                            client_gone = true;
                            drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                            tracing::info!(event.id = %call.event_id, "Client left mid-stream; reading the upstream to its final usage.");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(event.id = %call.event_id, error = %e, "Upstream stream failed mid-way; billing the usage read so far.");
                failed = true;
                if !client_gone {
                    let _ = out.send(stream_error(plan, &e.to_string())).await;
                }
                break;
            }
        }
        if !call.limits.is_empty() && Instant::now() >= renew_at {
            renew_at = Instant::now() + renew_every;
            if let Err(e) = gw.ledger.renew(call.event_id, gw.lease).await {
                tracing::warn!(event.id = %call.event_id, error = %e, "Could not renew the budget hold's lease.");
            }
        }
    }
    // Usage the upstream withheld from a client that did not ask for it is billed all the same.
    tracker.observe_withheld(&withheld);
    if translator.is_some() && !client_gone && !failed {
        held.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let status = if failed || !tracker.finished() {
        "interrupted"
    } else if client_gone {
        "client_closed"
    } else {
        "ok"
    };
    Pumped { usage: tracker.usage(), status, response: kept.map(capped), held, out: (!client_gone).then_some(out) }
}

/// The bytes the client gets for one upstream frame.
fn encode(frame: &SseFrame, translator: Option<&mut translate::StreamTranslator>) -> Vec<Bytes> {
    if let Some(t) = translator {
        let Ok(data) = serde_json::from_str::<Value>(&frame.data) else { return Vec::new() };
        let event = frame.event.clone().or_else(|| data.get("type").and_then(Value::as_str).map(str::to_string));
        let Some(event) = event else { return Vec::new() };
        if event == "error" {
            return vec![sse_data(&translate::anthropic_error_to_openai(&data))];
        }
        return t.on_event(&event, &data).iter().map(sse_data).collect();
    }
    vec![Bytes::from(frame.to_sse())]
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The error frame sent when the upstream stream breaks, in the client's format.
fn stream_error(plan: &Plan, message: &str) -> Bytes {
    stream_error_frame(plan, &GatewayError::Upstream(format!("the upstream stream failed: {message}")))
}

/// An error frame in the client's format.
fn stream_error_frame(plan: &Plan, e: &GatewayError) -> Bytes {
    match plan.route {
        Route::ChatCompletions => sse_data(&e.body(ErrorShape::OpenAi)),
        Route::Messages => Bytes::from(format!("event: error\ndata: {}\n\n", e.body(ErrorShape::Anthropic))),
    }
}

/// Attempts, over about [`RECORD_PATIENCE`], to make a call's usage durable.
const RECORD_PAUSE_MAX: Duration = Duration::from_secs(2);
/// How long a call's answer waits for its usage to be recorded (a database restart).
const RECORD_PATIENCE: Duration = Duration::from_secs(30);

/// Whether a call's usage is durable, and the amount its hold settles at.
struct Recorded {
    /// Stored (or nothing to bill): the answer may go.
    durable: bool,
    /// The billed cost, or the reserved bound when billing failed.
    actual: Decimal,
    /// The usage event was stored by this call (its payload may be kept).
    stored: bool,
}

/// Record the call and bill its usage (same path as chat), retrying while storage is down.
async fn record(gw: &Gateway, call: &Call, o: &Outcome) -> Recorded {
    use backon::{ExponentialBuilder, Retryable};
    let record = GatewayCallRecord {
        event_id: call.event_id,
        key_id: call.key.key_id,
        user_id: call.key.user_id.clone(),
        provider: o.provider.to_string(),
        model: call.model.clone(),
        route: call.route.name().to_string(),
        status: o.status.to_string(),
        http_status: i32::from(o.http_status),
        latency_ms: i64::try_from(call.started.elapsed().as_millis()).unwrap_or(i64::MAX),
        upstream_request_id: o.upstream_request_id.clone(),
        simulated: o.simulated,
        total_tokens: i64::try_from(o.usage.total_input_tokens().saturating_add(o.usage.output_tokens)).unwrap_or(i64::MAX),
        occurred_at: call.occurred_at,
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(RECORD_PAUSE_MAX)
        .with_total_delay(Some(RECORD_PATIENCE))
        .without_max_times();
    if o.usage.is_zero() {
        // Nothing to bill: the call's record is kept for the log, its answer does not wait.
        let sent = gw.persister.send(Persist { ops: vec![WriteOp::Gateway(record)], trace: TraceContext::current() }).await;
        if let Err(e) = sent.map_err(|e| e.to_string()).and_then(|r| r.map(|_| ()).map_err(|e| e.to_string())) {
            tracing::error!(event.id = %call.event_id, error = %e, "Could not record a gateway call.");
        }
        return Recorded { durable: true, actual: Decimal::ZERO, stored: false };
    }
    let event = UsageEvent {
        event_id: call.event_id,
        user_id: call.key.user_id.clone(),
        thread_id: None,
        message_id: None,
        model: call.model.clone(),
        occurred_at: call.occurred_at,
        usage: usage_from_tokens(&o.usage),
        source: "gateway".to_string(),
        idempotency_key: None,
        key_id: Some(call.key.key_id),
        task: call.task.clone(),
        successful: (200..400).contains(&record.http_status),
    };
    // A retry after an ambiguous commit finds the event stored: billed once, as a duplicate.
    let bill = || async {
        let msg = BillUsage { event: event.clone(), with: vec![WriteOp::Gateway(record.clone())], trace: TraceContext::current() };
        match gw.billing.send(msg).await {
            Ok(r) => r,
            Err(e) => Err(tally_actors::ActorError::Unavailable(format!("billing actor: {e}"))),
        }
    };
    let billed = bill
        .retry(backoff)
        .when(|e: &tally_actors::ActorError| e.is_retryable())
        .notify(|e, pause| tracing::warn!(event.id = %call.event_id, error = %e, ?pause, "Gateway usage not recorded yet; retrying."))
        .await;
    match billed {
        Ok(b) => {
            tracing::debug!(event.id = %call.event_id, key.id = %call.key.key_id, cost_usd = %b.cost.total, "Gateway call billed.");
            Recorded { durable: true, actual: b.cost.total, stored: true }
        }
        Err(e) => {
            // Not answered (see `not_recorded`); the hold is settled at the reserved bound
            // and the provider's usage report (reconciliation) shows the call.
            tracing::error!(
                event.id = %call.event_id, key.id = %call.key.key_id, model = %call.model, error = %e,
                input_tokens = o.usage.input_tokens, output_tokens = o.usage.output_tokens,
                "Gateway call's usage could not be recorded; the call is answered 503 usage_not_recorded."
            );
            Recorded { durable: false, actual: call.reserved, stored: false }
        }
    }
}

/// After the answer: settle or release the hold, check alerts, keep the payload.
async fn settle(gw: &Gateway, call: &Call, o: &Outcome, recorded: Recorded) {
    let held = !call.limits.is_empty();
    if held {
        if o.usage.is_zero() {
            if let Err(e) = gw.ledger.release(call.event_id).await {
                tracing::warn!(event.id = %call.event_id, error = %e, "Could not release a budget hold; its lease will.");
            }
        } else {
            if let Err(e) = gw.ledger.settle(call.event_id, recorded.actual).await {
                tracing::warn!(event.id = %call.event_id, error = %e, "Could not settle a budget hold; its lease will free it.");
            }
            check_alerts(gw, &call.key, &call.limits).await;
        }
    }
    // Last: the hold is settled first, and a payload only goes with a stored event.
    if recorded.stored {
        keep_payload(gw, call, o).await;
    }
}

/// Keep the call's request and response with its (now stored) usage event, when asked to.
async fn keep_payload(gw: &Gateway, call: &Call, o: &Outcome) {
    if call.request.is_none() && o.response.is_none() {
        return;
    }
    let payload =
        EventPayload { event_id: call.event_id, request: call.request.clone(), response: o.response.clone() };
    let store = gw.store.clone();
    match actix_web::web::block(move || store.store_payload(&payload)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(event.id = %call.event_id, error = %e, "Could not keep a gateway call's payload."),
        Err(e) => tracing::warn!(event.id = %call.event_id, error = %e, "Could not keep a gateway call's payload."),
    }
}

/// Entry points for the fuzz targets (`fuzz/`): a request body checked as the handler checks
/// it, and an upstream frame encoded for the client. Not an API: hidden from the docs.
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::HashMap;

    use actix_web::web::Bytes;
    use serde_json::Value;
    use tally_llm::gateway::SseFrame;
    use tally_store::KeyRecord;

    use super::{encode, parse_body, plan, upstream_body, Route};
    use crate::gateway::error::GatewayError;
    use crate::gateway::translate::StreamTranslator;
    use crate::gateway::ModelInfo;

    /// What an accepted request body turned into.
    #[derive(Debug)]
    pub struct Checked {
        /// The model asked for.
        pub model: String,
        /// Output tokens one choice may generate.
        pub max_output: u64,
        /// Choices asked for.
        pub choices: u64,
        /// Messages in the body.
        pub messages: usize,
        /// Whether the body is translated (OpenAI client, Claude model).
        pub translate: bool,
        /// Input tokens the bytes do not bound, or why the cost has no bound.
        pub extra_input: Result<u64, GatewayError>,
        /// The body sent upstream.
        pub upstream_body: Value,
    }

    /// `raw` checked as `POST` on `route` checks it before any budget or upstream is touched.
    pub fn check_request(
        route: Route,
        raw: &[u8],
        models: &HashMap<String, ModelInfo>,
        key: &KeyRecord,
    ) -> Result<Checked, GatewayError> {
        let body = parse_body(raw)?;
        let p = plan(route, &body, models, key)?;
        let upstream_body = upstream_body(body, &p)?;
        Ok(Checked {
            model: p.model,
            max_output: p.max_output,
            choices: p.choices,
            messages: p.messages,
            translate: p.translate,
            extra_input: p.extra_input,
            upstream_body,
        })
    }

    /// The bytes the client gets for one upstream frame (translated when `translator` is given).
    pub fn encode_frame(frame: &SseFrame, translator: Option<&mut StreamTranslator>) -> Vec<Bytes> {
        encode(frame, translator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing finding (fuzz/corpus/gateway_request/regression-float-roundtrip.json): a number
    /// written out in full (`0.000...0001`) was read 1 ulp off and relayed upstream so; with
    /// serde_json's `float_roundtrip` the body sent upstream re-parses to what was read, and
    /// that is the nearest double to what the client wrote.
    #[test]
    fn client_numbers_reach_the_upstream_exactly() {
        let raw = br#"{"model":"m","temperature":0.0000000000000000000000000001,"top_p":0.30000000000000004}"#;
        let Ok(body) = parse_body(raw) else { panic!("the body is valid JSON") };
        assert_eq!(body["temperature"].as_f64(), Some(1e-28), "the client's number is read as the nearest double");
        let relayed = serde_json::from_str::<Value>(&body.to_string()).ok();
        assert_eq!(relayed, Some(body), "the body sent upstream reads back as the body the gateway checked");
    }

    #[test]
    fn images_by_reference_and_tools_add_to_the_input_bound() {
        let inline = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
        assert_eq!(unbounded_input(&inline).ok(), Some(0), "inline images are bounded by the body's bytes");
        let by_url = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}}]}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        assert_eq!(
            unbounded_input(&by_url).ok(),
            Some(2 * IMAGE_BY_REFERENCE_TOKENS + TOOL_PROMPT_TOKENS),
            "each referenced image and the tool prompt get their allowance"
        );
        let doc = json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]});
        assert_eq!(unbounded_input(&doc).err().map(|e| e.code()), Some("unbounded_input"), "a referenced document is refused");
        let file = json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]});
        assert_eq!(unbounded_input(&file).err().map(|e| e.code()), Some("unbounded_input"), "an OpenAI file id is refused");
    }
}
