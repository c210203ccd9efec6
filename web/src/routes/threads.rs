//! Threads: create, list (with running totals), rejoin.

use std::collections::HashMap;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tally_domain::Money;
use tally_store::{LineFilter, ThreadRecord};
use uuid::Uuid;

use super::{blocking, blocking_cached, caller_user_id, page, validate_user_id};
use tally_store::cache::keys;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{history_views, MessageView};

/// Longest thread title.
pub const MAX_TITLE_LEN: usize = 200;

/// Body of `POST /api/threads/`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateThread {
    /// Owner (or the X-User-Id header).
    pub user_id: Option<String>,
    /// Title; defaults to "New thread".
    pub title: Option<String>,
    /// Model name; defaults to the catalogue's default (Claude 3.5 Haiku).
    pub model: Option<String>,
}

/// Query of `GET /api/threads/`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListThreads {
    /// Only this user's threads.
    pub user_id: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

/// A thread with its running total.
#[derive(Debug, Serialize)]
pub struct ThreadView {
    /// The thread.
    #[serde(flatten)]
    pub thread: ThreadRecord,
    /// Cost of all its messages so far.
    pub total_cost: Money,
}

/// A thread with its messages (rejoin).
#[derive(Debug, Serialize)]
pub struct ThreadDetail {
    /// The thread.
    #[serde(flatten)]
    pub thread: ThreadRecord,
    /// Cost of all its messages so far.
    pub total_cost: Money,
    /// Messages, oldest first, each with the running total after it.
    pub messages: Vec<MessageView>,
}

/// Create a thread for an existing user.
#[utoipa::path(tag = "threads", params(("X-User-Id" = Option<String>, Header, description = "Caller user id, when not in the body")), request_body = CreateThread, responses((status = 201, description = "Created", body = Object)))]
#[post("/api/threads/")]
pub async fn create_thread(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateThread>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user_id = caller_user_id(&req, body.user_id.as_deref())?;
    let title = body.title.unwrap_or_else(|| "New thread".into());
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE_LEN {
        return Err(ApiError::bad_request("invalid_title", format!("title must be 1-{MAX_TITLE_LEN} characters")));
    }
    let model = body.model.unwrap_or_else(|| state.default_model.clone());
    let now = Utc::now();
    let thread = ThreadRecord {
        thread_id: tally_domain::new_id(),
        user_id: user_id.clone(),
        title,
        model: model.clone(),
        created_at: now,
        updated_at: now,
        is_active: true,
    };
    let record = thread.clone();
    blocking(&state.store, move |s| {
        if s.get_user(&record.user_id)?.is_none() {
            return Err(tally_store::StoreError::NotFound(format!("user {}", record.user_id)));
        }
        match s.get_model(&record.model)? {
            Some(m) if m.is_active => {}
            _ => return Err(tally_store::StoreError::Invalid(format!("unknown model {}", record.model))),
        }
        s.create_thread(&record)
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { message, .. } => ApiError::NotFound { code: "user_not_found", message },
        ApiError::BadRequest { message, .. } => ApiError::BadRequest { code: "unknown_model", message },
        other => other,
    })?;
    Ok(HttpResponse::Created().json(ThreadView { thread, total_cost: Money::ZERO }))
}

/// A user's key may reach only its user's threads: another user's thread answers 404
/// `thread_not_found`, as a missing one does (ids reveal nothing). Admin and open mode: no check.
pub async fn check_thread_owner(state: &AppState, caller: &crate::auth::Caller, thread_id: Uuid) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let thread = blocking(&state.store, move |s| s.get_thread(thread_id)).await?;
    let not_found = || ApiError::not_found("thread_not_found", format!("thread {thread_id} not found"));
    let thread = thread.ok_or_else(not_found)?;
    caller.owns(&thread.user_id, "thread_not_found", format!("thread {thread_id} not found"))
}

/// List threads, newest activity first, with running totals.
#[utoipa::path(tag = "threads", params(ListThreads), responses((status = 200, description = "Threads with running totals", body = [Object])))]
#[get("/api/threads/")]
pub async fn list_threads(
    state: web::Data<AppState>,
    q: web::Query<ListThreads>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(u) = &q.user_id {
        validate_user_id(u)?;
    }
    let (limit, offset) = page(q.limit, q.offset)?;
    let user = caller.scope(q.user_id.as_deref())?;
    let (threads, lines) = blocking(&state.store, move |s| {
        let threads = s.list_threads(user.as_deref(), limit, offset)?;
        let lines = s.usage_lines(&LineFilter { user_id: user, ..LineFilter::default() })?;
        Ok((threads, lines))
    })
    .await?;
    let mut totals: HashMap<Uuid, Money> = HashMap::new();
    for l in &lines {
        if let Some(t) = l.thread_id {
            *totals.entry(t).or_default() += l.amount;
        }
    }
    let views: Vec<ThreadView> = threads
        .into_iter()
        .map(|t| {
            let total_cost = totals.get(&t.thread_id).copied().unwrap_or_default();
            ThreadView { thread: t, total_cost }
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Rejoin a thread: the thread, its messages with costs, and its total.
#[utoipa::path(tag = "threads", responses((status = 200, description = "The thread with its messages", body = Object)))]
#[get("/api/threads/{thread_id}")]
pub async fn get_thread(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let thread_id = path.into_inner();
    let me = caller.clone();
    let found = blocking_cached(&state, move |s, cache| {
        Ok(match s.get_thread(thread_id)? {
            // Another user's thread is not loaded at all.
            Some(t) if me.may_act_as(&t.user_id).is_ok() => {
                Some((t, cache.get_or_load(&keys::thread_history(thread_id), || s.thread_messages(thread_id))?))
            }
            _ => None,
        })
    })
    .await?;
    let (thread, stored) = found.ok_or_else(|| ApiError::not_found("thread_not_found", format!("thread {thread_id} not found")))?;
    let (messages, total_cost) = history_views(stored);
    Ok(HttpResponse::Ok().json(ThreadDetail { thread, total_cost, messages }))
}
