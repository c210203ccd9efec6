//! Route handlers, one file per resource.

pub mod analytics;
pub mod archives;
pub mod billing;
pub mod budgets;
pub mod dashboard;
pub mod forecasts;
pub mod health;
pub mod keys;
pub mod messages;
pub mod metrics;
pub mod prices;
pub mod providers;
pub mod scheduler;
pub mod threads;
pub mod ui;
pub mod users;

use actix_web::{web, HttpRequest};
use tally_store::{Store, StoreError};

use crate::error::ApiError;

/// Header that identifies the calling user (no login).
pub const USER_HEADER: &str = "x-user-id";
/// Longest user id.
pub const MAX_USER_ID_LEN: usize = tally_actors::kafka::envelope::MAX_USER_ID_LEN;
/// Default page size for lists.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size for lists.
pub const MAX_LIMIT: i64 = 1000;

/// Run a storage call on the blocking pool.
pub async fn blocking<T, F>(store: &Store, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    Ok(web::block(move || f(&store)).await??)
}

/// Run a storage call on the blocking pool with the cache at hand.
pub async fn blocking_cached<T, F>(state: &crate::state::AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Store, &tally_store::cache::Cache) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    let cache = state.cache.clone();
    Ok(web::block(move || f(&store, &cache)).await??)
}

/// Check a user id: 1-64 characters of letters, digits, `_ . @ -`.
pub fn validate_user_id(id: &str) -> Result<(), ApiError> {
    if tally_actors::kafka::envelope::valid_user_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_user_id",
            format!("user id must be 1-{MAX_USER_ID_LEN} characters of letters, digits, '_', '.', '@', '-'"),
        ))
    }
}

/// The caller's user id: from the body if given, else the `X-User-Id` header (both must agree
/// when both are present), else the user of the caller's key. The caller must be allowed to
/// act as that user (see [`crate::auth::Caller`]).
pub fn caller_user_id(req: &HttpRequest, from_body: Option<&str>) -> Result<String, ApiError> {
    use actix_web::HttpMessage;
    let caller = req.extensions().get::<crate::auth::Caller>().cloned().unwrap_or(crate::auth::Caller::Open);
    let header = match req.headers().get(USER_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid_user_id", "X-User-Id is not valid text"))?
                .to_string(),
        ),
        None => None,
    };
    let id = match (from_body, header.as_deref()) {
        (Some(b), Some(h)) if b != h => {
            return Err(ApiError::bad_request("user_id_mismatch", "user_id in the body and X-User-Id differ"))
        }
        (Some(b), _) => b.to_string(),
        (None, Some(h)) => h.to_string(),
        (None, None) => match caller.user() {
            Some(u) => u.to_string(),
            None => {
                return Err(ApiError::bad_request("missing_user_id", "give user_id in the body or the X-User-Id header"))
            }
        },
    };
    validate_user_id(&id)?;
    caller.may_act_as(&id)?;
    Ok(id)
}

/// Clamp a requested page size.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let offset = offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || offset < 0 {
        return Err(ApiError::bad_request("invalid_page", format!("limit must be 1-{MAX_LIMIT}, offset >= 0")));
    }
    Ok((limit, offset))
}
