//! Users: create, list, get.

use actix_web::{get, post, web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use tally_store::UserRecord;

use super::{blocking, page, validate_user_id};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest username or email.
pub const MAX_NAME_LEN: usize = 200;

/// Body of `POST /api/users/`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Chosen user id; generated when absent.
    pub user_id: Option<String>,
    /// Display name; defaults to the user id.
    pub username: Option<String>,
    /// Optional email.
    pub email: Option<String>,
}

/// Paging query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size.
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

/// Create a user (409 if the id is taken).
#[utoipa::path(tag = "users", request_body = CreateUser, responses((status = 201, description = "Created", body = Object), (status = 409, description = "user_exists", body = crate::openapi::ErrorBody)))]
#[post("/api/users/")]
pub async fn create_user(state: web::Data<AppState>, body: web::Json<CreateUser>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user_id = body.user_id.unwrap_or_else(|| tally_domain::new_id().to_string());
    validate_user_id(&user_id)?;
    let username = body.username.unwrap_or_else(|| user_id.clone());
    if username.trim().is_empty() || username.len() > MAX_NAME_LEN {
        return Err(ApiError::bad_request("invalid_username", format!("username must be 1-{MAX_NAME_LEN} characters")));
    }
    if let Some(email) = &body.email {
        if email.len() > MAX_NAME_LEN || !email.contains('@') {
            return Err(ApiError::bad_request("invalid_email", "email must contain '@'"));
        }
    }
    let record = UserRecord { user_id, username, email: body.email, created_at: Utc::now() };
    let taken = format!("user {} already exists", record.user_id);
    let created = blocking(&state.store, move |s| s.create_user(&record)).await.map_err(|e| match e {
        ApiError::Conflict { .. } => ApiError::Conflict { code: "user_exists", message: taken },
        other => other,
    })?;
    Ok(HttpResponse::Created().json(created))
}

/// List users.
#[utoipa::path(tag = "users", params(PageQuery), responses((status = 200, description = "Users", body = [Object])))]
#[get("/api/users/")]
pub async fn list_users(
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    if let Some(me) = caller.user().map(str::to_string) {
        // A user's key lists only its own user.
        let users = blocking(&state.store, move |s| s.get_user(&me)).await?;
        let users: Vec<_> = users.into_iter().filter(|_| offset == 0).collect();
        return Ok(HttpResponse::Ok().json(users));
    }
    let users = blocking(&state.store, move |s| s.list_users(limit, offset)).await?;
    Ok(HttpResponse::Ok().json(users))
}

/// One user.
#[utoipa::path(tag = "users", responses((status = 200, description = "The user", body = Object)))]
#[get("/api/users/{user_id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: crate::auth::Caller,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    validate_user_id(&user_id)?;
    caller.may_act_as(&user_id)?;
    let id = user_id.clone();
    let user = blocking(&state.store, move |s| s.get_user(&id)).await?;
    match user {
        Some(u) => Ok(HttpResponse::Ok().json(u)),
        None => Err(ApiError::not_found("user_not_found", format!("user {user_id} not found"))),
    }
}
