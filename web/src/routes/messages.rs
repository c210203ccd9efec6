//! Messages: send and get the reply, send and stream the reply (SSE), history.

use std::time::Duration;

use actix_web::{get, post, web, HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tally_actors::{ChatEvent, OpenThread, SendMessage, TurnOutcome};
use tally_domain::Money;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use uuid::Uuid;

use super::{blocking_cached, caller_user_id};
use tally_store::cache::keys;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{history_views, MessageView};

/// SSE keep-alive comment period.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Body of `POST /api/messages/` and `/api/messages/stream`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Thread to post in.
    pub thread_id: Uuid,
    /// The user's message.
    pub content: String,
    /// Sender (or the X-User-Id header); must own the thread.
    pub user_id: Option<String>,
}

/// Reply of `POST /api/messages/`.
#[derive(Debug, Serialize)]
pub struct TurnView {
    /// The stored user message.
    pub user_message: MessageView,
    /// The reply with usage and cost by kind.
    pub assistant_message: MessageView,
    /// Thread total after the reply.
    pub thread_total: Money,
    /// True when the reply is simulated.
    pub simulated: bool,
    /// Set when the provider stream broke: the reply is partial and its usage so far was billed.
    pub error: Option<String>,
}

impl From<TurnOutcome> for TurnView {
    fn from(o: TurnOutcome) -> Self {
        let before = o.thread_total - o.cost.total;
        let simulated = o.assistant_message.simulated;
        TurnView {
            user_message: MessageView::new(o.user_message, None, before),
            assistant_message: MessageView::new(o.assistant_message, Some(o.cost), o.thread_total),
            thread_total: o.thread_total,
            simulated,
            error: o.error,
        }
    }
}

async fn start_turn(
    state: &AppState,
    req: &HttpRequest,
    body: SendBody,
    events: Option<mpsc::UnboundedSender<ChatEvent>>,
) -> Result<tally_actors::TurnStarted, ApiError> {
    let user_id = caller_user_id(req, body.user_id.as_deref())?;
    tally_actors::thread::validate_content(&body.content)?;
    let span = tracing::info_span!(
        "http.send_message",
        http.method = %req.method(),
        http.route = %req.match_pattern().unwrap_or_default(),
        thread.id = %body.thread_id,
        user.id = %user_id,
    );
    let trace = tally_actors::TraceContext::of(&span);
    let thread_not_found = |e: tally_actors::ActorError| match e {
        tally_actors::ActorError::NotFound(m) => ApiError::not_found("thread_not_found", m),
        other => other.into(),
    };
    let thread = state
        .actors
        .threads
        .send(OpenThread { thread_id: body.thread_id })
        .await
        .map_err(tally_actors::ActorError::from)?
        .map_err(thread_not_found)?;
    let started = thread
        .send(SendMessage { user_id, content: body.content, events, trace })
        .await
        .map_err(tally_actors::ActorError::from)?
        .map_err(thread_not_found)?;
    Ok(started)
}

/// Send a message and wait for the whole reply.
#[utoipa::path(tag = "messages", params(("X-User-Id" = Option<String>, Header, description = "Caller user id, when not in the body")), request_body = SendBody, responses((status = 200, description = "The whole turn: reply, usage, cost", body = Object), (status = 409, description = "turn_in_progress", body = crate::openapi::ErrorBody), (status = 422, description = "Not billable (no_price)", body = crate::openapi::ErrorBody), (status = 429, description = "Provider rate limited", body = crate::openapi::ErrorBody)))]
#[post("/api/messages/")]
pub async fn send_message(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let started = start_turn(&state, &req, body.into_inner(), None).await?;
    let outcome = started
        .done
        .await
        .map_err(|_| ApiError::Unavailable { code: "unavailable", message: "the turn ended without an answer".into() })??;
    Ok(HttpResponse::Ok().json(TurnView::from(outcome)))
}

fn sse_event(event: ChatEvent) -> Option<sse::Event> {
    let (name, data) = match event {
        ChatEvent::Start { user_message, assistant_message_id, model, simulated } => (
            "start",
            serde_json::json!({
                "user_message": MessageView::new(user_message, None, Money::ZERO),
                "assistant_message_id": assistant_message_id,
                "model": model,
                "simulated": simulated,
            }),
        ),
        ChatEvent::Delta { text } => ("delta", serde_json::json!({ "text": text })),
        ChatEvent::Usage { usage } => ("usage", serde_json::json!({ "usage": usage })),
        ChatEvent::Done(outcome) => ("done", serde_json::to_value(TurnView::from(*outcome)).ok()?),
        ChatEvent::Error { code, message } => ("error", serde_json::json!({ "code": code, "message": message })),
    };
    sse::Data::new_json(data).ok().map(|d| sse::Event::Data(d.event(name)))
}

/// Send a message and stream the reply as server-sent events:
/// `start`, then `delta`s (and `usage` updates), then `done` with usage, cost and the thread total
/// (or `error`). If the client disconnects, the reply is still completed and billed.
#[utoipa::path(tag = "messages", params(("X-User-Id" = Option<String>, Header, description = "Caller user id, when not in the body")), request_body = SendBody, responses((status = 200, description = "Server-sent events: start, delta, usage, done or error", body = crate::openapi::SseEvent, content_type = "text/event-stream"), (status = 409, description = "turn_in_progress", body = crate::openapi::ErrorBody), (status = 422, description = "Not billable (no_price)", body = crate::openapi::ErrorBody), (status = 429, description = "Provider rate limited", body = crate::openapi::ErrorBody)))]
#[post("/api/messages/stream")]
pub async fn stream_message(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SendBody>,
) -> Result<impl Responder, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let started = start_turn(&state, &req, body.into_inner(), Some(tx)).await?;
    // The turn owns the sender; the stream ends when the turn is over.
    drop(started.done);
    let stream = UnboundedReceiverStream::new(rx).filter_map(|e| async move { sse_event(e) });
    Ok(sse::Sse::from_infallible_stream(stream).with_keep_alive(SSE_KEEP_ALIVE))
}

/// History of a thread: messages with usage, cost by kind and running totals.
#[utoipa::path(tag = "messages", responses((status = 200, description = "Messages with running totals", body = Object)))]
#[get("/api/messages/{thread_id}/history")]
pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let thread_id = path.into_inner();
    crate::routes::threads::check_thread_owner(&state, &caller, thread_id).await?;
    // Not-found is an error (never cached); history comes from the cache when warm.
    let stored = blocking_cached(&state, move |s, cache| {
        cache.get_or_load(&keys::thread_history(thread_id), || {
            if s.get_thread(thread_id)?.is_none() {
                return Err(tally_store::StoreError::NotFound(format!("thread {thread_id}")));
            }
            s.thread_messages(thread_id)
        })
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::not_found("thread_not_found", message),
        other => other,
    })?;
    let (messages, total) = history_views(stored);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "thread_id": thread_id, "total_cost": total, "messages": messages })))
}
