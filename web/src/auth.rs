//! Access control: the node's mode (`open` or `token`), the rule of every route, who the
//! caller of a request is (admin, a user through their key, or anyone in open mode), and
//! the rate limit on failed authentication.
//!
//! The [`guard`] middleware runs before routing's handlers: it finds the rule of the
//! matched route in [`ROUTES`] (a route with no rule needs the admin token: fail closed),
//! checks the credential, and leaves a [`Caller`] in the request for the handlers, which
//! check ownership of what they read or change (`Caller::may_act_as`, `Caller::scope`).
//! Credentials are `Authorization: Bearer <token>` (or `x-api-key: <token>`): the admin
//! token (`TALLY_ADMIN_TOKEN`, or one made with `tally admin-token create`, stored hashed)
//! or a user's virtual key (`tk-...`), which acts as its owner. Secrets are never logged,
//! put in errors, or kept other than as SHA-256 digests.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{get, web, Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Serialize;
use tally_store::admin::AdminTokenRecord;
use tally_store::Store;
use uuid::Uuid;

use crate::error::ApiError;
use crate::gateway::keys::{hash_key, random_hex, same_digest, KeyCache, KeyRefusal};

/// Prefix of admin tokens made by `tally admin-token create`.
pub const ADMIN_TOKEN_PREFIX: &str = "tat-";
/// Random bytes of an admin token's public id (hex: twice as many digits).
const ADMIN_PUBLIC_BYTES: usize = 6;
/// Random bytes of an admin token's secret (256 bits).
const ADMIN_SECRET_BYTES: usize = 32;
/// Shortest `TALLY_ADMIN_TOKEN` accepted (a guessable token is refused at start-up).
pub const MIN_ADMIN_TOKEN_LEN: usize = 24;
/// Failed authentications one client address may make per [`AUTH_FAILURE_WINDOW`].
pub const MAX_AUTH_FAILURES: u32 = 10;
/// Window of [`MAX_AUTH_FAILURES`]; a client over the limit is refused until it ends.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at most (the table is cleared of ended windows, then reset when full).
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Who may call the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone who reaches the port may act as any user (loopback binds only).
    Open,
    /// Management needs the admin token; a user's data needs that user's key or the admin token.
    Token,
}

impl AuthMode {
    /// From `--auth`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(AuthMode::Open),
            "token" => Some(AuthMode::Token),
            _ => None,
        }
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Open => "open",
            AuthMode::Token => "token",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, metrics, the UI's files, the API description, `whoami`).
    Public,
    /// The gateway's own key check (`/v1/*` calls answer in the provider's error shape).
    Gateway,
    /// A user's key or the admin token; the handler checks ownership of the data.
    User,
    /// The admin token only.
    Admin,
}

/// The rule of every route: (method, route pattern as registered, access). A route that is
/// not here needs the admin token; `web/tests/access.rs` fails when a registered route has no rule.
pub const ROUTES: &[(&str, &str, Access)] = &[
    // Public.
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::Public),
    ("GET", "/api/auth/whoami", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/docs", Access::Public),
    ("GET", "/docs/{_:.*}", Access::Public),
    ("GET", "/{tail:.*}", Access::Public),
    // The gateway checks its own keys.
    ("GET", "/v1/models", Access::Gateway),
    ("POST", "/v1/chat/completions", Access::Gateway),
    ("POST", "/v1/messages", Access::Gateway),
    // Ingest from other services: a service credential.
    ("POST", "/v1/events", Access::Admin),
    // Users.
    ("GET", "/api/users/", Access::User),
    ("POST", "/api/users/", Access::Admin),
    ("GET", "/api/users/{user_id}", Access::User),
    // Threads and messages.
    ("GET", "/api/threads/", Access::User),
    ("POST", "/api/threads/", Access::User),
    ("GET", "/api/threads/{thread_id}", Access::User),
    ("POST", "/api/messages/", Access::User),
    ("POST", "/api/messages/stream", Access::User),
    ("GET", "/api/messages/{thread_id}/history", Access::User),
    // Billing: metrics and invoices of one's own; invoice status is management.
    ("GET", "/api/billing/metrics/user/{user_id}", Access::User),
    ("GET", "/api/billing/metrics/thread/{thread_id}", Access::User),
    ("POST", "/api/billing/generate-invoice/thread/{thread_id}", Access::User),
    ("POST", "/api/billing/generate-invoice/user/{user_id}", Access::User),
    ("GET", "/api/billing/invoices/user/{user_id}", Access::User),
    ("GET", "/api/billing/invoices/{invoice_id}", Access::User),
    ("POST", "/api/billing/invoices/{invoice_id}/status", Access::Admin),
    // Usage and analytics (scoped to the caller's own usage for a user's key).
    ("GET", "/api/usage/events", Access::User),
    ("GET", "/api/usage/events/{event_id}", Access::User),
    ("GET", "/api/analytics/summary", Access::User),
    ("GET", "/api/analytics/by-user", Access::User),
    ("GET", "/api/analytics/by-model", Access::User),
    ("GET", "/api/analytics/by-provider", Access::User),
    ("GET", "/api/analytics/by-key", Access::User),
    ("GET", "/api/analytics/top-tasks", Access::User),
    ("GET", "/api/analytics/trends", Access::User),
    // The dashboard (a user's key sees only that user's spend).
    ("GET", "/api/dashboard/snapshot", Access::User),
    ("GET", "/api/dashboard/stream", Access::User),
    // Prices: anyone signed in reads them; changes are management.
    ("GET", "/api/models", Access::User),
    ("GET", "/api/prices", Access::User),
    ("POST", "/api/prices", Access::Admin),
    ("POST", "/api/prices/{id}/verify", Access::Admin),
    ("POST", "/api/prices/sync", Access::Admin),
    // Keys: one's own are read, revoked and rotated by their owner; making keys, changing
    // their limits and budgets is management.
    ("GET", "/api/keys", Access::User),
    ("POST", "/api/keys", Access::Admin),
    ("GET", "/api/keys/{key_id}", Access::User),
    ("PATCH", "/api/keys/{key_id}", Access::Admin),
    ("POST", "/api/keys/{key_id}/revoke", Access::User),
    ("POST", "/api/keys/{key_id}/rotate", Access::User),
    ("GET", "/api/keys/{key_id}/usage", Access::User),
    ("GET", "/api/billing/spend/{key_id}", Access::User),
    ("GET", "/api/billing/budget/{key_id}", Access::User),
    ("PUT", "/api/billing/budget/{key_id}", Access::Admin),
    ("DELETE", "/api/billing/budget/{key_id}", Access::Admin),
    ("GET", "/api/billing/budget/user/{user_id}", Access::User),
    ("PUT", "/api/billing/budget/user/{user_id}", Access::Admin),
    ("DELETE", "/api/billing/budget/user/{user_id}", Access::Admin),
    // Management.
    ("GET", "/api/budgets", Access::Admin),
    ("POST", "/api/budgets", Access::Admin),
    ("GET", "/api/budgets/check", Access::Admin),
    ("GET", "/api/budgets/{id}", Access::Admin),
    ("PATCH", "/api/budgets/{id}", Access::Admin),
    ("DELETE", "/api/budgets/{id}", Access::Admin),
    ("POST", "/api/budgets/{id}/test_alert", Access::Admin),
    ("GET", "/api/alerts/deliveries", Access::Admin),
    ("GET", "/api/forecasts", Access::Admin),
    ("POST", "/api/forecasts/train", Access::Admin),
    ("GET", "/api/providers", Access::Admin),
    ("POST", "/api/providers", Access::Admin),
    ("DELETE", "/api/providers/{id}", Access::Admin),
    ("POST", "/api/providers/{id}/import", Access::Admin),
    ("GET", "/api/providers/{id}/runs", Access::Admin),
    ("GET", "/api/reconciliation", Access::Admin),
    ("GET", "/api/scheduler/jobs", Access::Admin),
    ("POST", "/api/scheduler/jobs/{id}/trigger", Access::Admin),
    ("GET", "/api/scheduler/history", Access::Admin),
    ("GET", "/api/archives", Access::Admin),
];

/// The rule of a route, if it has one.
pub fn rule_for(method: &str, pattern: &str) -> Option<Access> {
    ROUTES.iter().find(|(m, p, _)| *m == method && *p == pattern).map(|(_, _, a)| *a)
}

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Open mode: may act as anyone.
    Open,
    /// The admin token.
    Admin,
    /// A user, through one of their virtual keys.
    User {
        /// The key's owner.
        user_id: String,
        /// The key used.
        key_id: Uuid,
    },
    /// Token mode, no credential (public routes only).
    Anonymous,
}

impl Caller {
    /// Whether this caller may see and change everything.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Open | Caller::Admin)
    }

    /// The user this caller is limited to, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// Whether this caller may read or act on `owner`'s data: 403 `forbidden` if not.
    pub fn may_act_as(&self, owner: &str) -> Result<(), ApiError> {
        match self {
            Caller::Open | Caller::Admin => Ok(()),
            Caller::User { user_id, .. } if user_id == owner => Ok(()),
            Caller::User { .. } => Err(forbidden()),
            Caller::Anonymous => Err(ApiError::Unauthorized { code: "unauthenticated", message: UNAUTHENTICATED.into() }),
        }
    }

    /// Like [`Caller::may_act_as`], but another user's resource answers 404 as if it did
    /// not exist (for resources named by an id, so ids reveal nothing). `what` names it.
    pub fn owns(&self, owner: &str, code: &'static str, what: impl Into<String>) -> Result<(), ApiError> {
        match self.may_act_as(owner) {
            Ok(()) => Ok(()),
            Err(ApiError::Forbidden { .. }) => Err(ApiError::not_found(code, what)),
            Err(e) => Err(e),
        }
    }

    /// The user filter of a list or aggregate: a user's key is limited to its owner (asking
    /// for another user is 403); the admin and open mode get what they asked for.
    pub fn scope(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match self {
            Caller::Open | Caller::Admin => Ok(requested.map(str::to_string)),
            Caller::User { user_id, .. } => match requested {
                Some(r) if r != user_id => Err(forbidden()),
                _ => Ok(Some(user_id.clone())),
            },
            Caller::Anonymous => Err(ApiError::Unauthorized { code: "unauthenticated", message: UNAUTHENTICATED.into() }),
        }
    }
}

/// Handlers read the caller the guard left in the request; without the guard (a test app
/// that does not install it) the caller is [`Caller::Open`].
impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.extensions().get::<Caller>().cloned().unwrap_or(Caller::Open)))
    }
}

const UNAUTHENTICATED: &str = "This route needs a credential: send `Authorization: Bearer <admin token or your tk- key>`.";

fn forbidden() -> ApiError {
    ApiError::Forbidden { code: "forbidden", message: "This credential may not do that.".into() }
}

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized { code: "invalid_credentials", message: "The credential is not valid (unknown, wrong, revoked or expired).".into() }
}

/// Access-control settings and state. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    mode: AuthMode,
    /// SHA-256 of `TALLY_ADMIN_TOKEN`, when set.
    env_admin_hash: Option<String>,
    store: Store,
    keys: KeyCache,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("mode", &self.inner.mode).field("env_admin_token", &self.inner.env_admin_hash.is_some()).finish()
    }
}

/// Why an admin token from the environment is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    /// Too short to resist guessing.
    #[error("TALLY_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LEN} characters")]
    AdminTokenTooShort,
    /// Characters a header cannot carry.
    #[error("TALLY_ADMIN_TOKEN must be printable ASCII without spaces")]
    AdminTokenNotPrintable,
}

impl Auth {
    /// Settings for `mode`, with the admin token from the environment (never a flag) when set.
    pub fn new(mode: AuthMode, env_admin_token: Option<&str>, store: Store) -> Result<Self, AuthConfigError> {
        let env_admin_hash = match env_admin_token {
            None => None,
            Some(t) if t.len() < MIN_ADMIN_TOKEN_LEN => return Err(AuthConfigError::AdminTokenTooShort),
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => return Err(AuthConfigError::AdminTokenNotPrintable),
            Some(t) => Some(hash_key(t)),
        };
        Ok(Auth {
            inner: Arc::new(AuthInner {
                mode,
                env_admin_hash,
                store,
                keys: KeyCache::default(),
                failures: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.inner.mode
    }

    /// Whether an admin token is configured in the environment.
    pub fn has_env_admin_token(&self) -> bool {
        self.inner.env_admin_hash.is_some()
    }

    /// Who a presented credential is: `Ok(None)` when there is none.
    async fn identify(&self, presented: Option<&str>) -> Result<Option<Caller>, ApiError> {
        let Some(token) = presented else { return Ok(None) };
        if let Some(expected) = &self.inner.env_admin_hash {
            if same_digest(&hash_key(token), expected) {
                return Ok(Some(Caller::Admin));
            }
        }
        if let Some(public) = admin_public_id_of(token) {
            let store = self.inner.store.clone();
            let public = public.to_string();
            let found = web::block(move || store.admin_token_by_public_id(&public)).await??;
            return match found {
                Some(t) if t.revoked_at.is_none() && same_digest(&hash_key(token), &t.secret_hash) => Ok(Some(Caller::Admin)),
                _ => Err(invalid_credentials()),
            };
        }
        match self.inner.keys.authenticate(&self.inner.store, token).await {
            Ok(key) => Ok(Some(Caller::User { user_id: key.user_id.clone(), key_id: key.key_id })),
            Err(Ok(KeyRefusal::Missing)) => Ok(None),
            Err(Ok(_)) => Err(invalid_credentials()),
            Err(Err(e)) => Err(e),
        }
    }

    /// Whether `client` is over its failure limit: the seconds until it may try again.
    fn locked_out(&self, client: Option<IpAddr>) -> Option<u64> {
        let ip = client?;
        let map = self.inner.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, count) = map.get(&ip)?;
        let elapsed = start.elapsed();
        (*count >= MAX_AUTH_FAILURES && elapsed < AUTH_FAILURE_WINDOW)
            .then(|| (AUTH_FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    /// Count one failed authentication of `client`.
    fn failed(&self, client: Option<IpAddr>) {
        let Some(ip) = client else { return };
        let mut map = self.inner.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED_CLIENTS {
            map.retain(|_, (start, _)| start.elapsed() < AUTH_FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED_CLIENTS {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= AUTH_FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The public id of a `tat-<public>-<secret>` token, if it has that shape.
pub fn admin_public_id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(ADMIN_TOKEN_PREFIX)?;
    let (public, secret) = rest.split_once('-')?;
    let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(public, ADMIN_PUBLIC_BYTES * 2) && hexish(secret, ADMIN_SECRET_BYTES * 2)).then_some(public)
}

/// A new admin token: the record to store (hash only) and the token string, shown once.
pub fn new_admin_token(name: &str) -> Result<(AdminTokenRecord, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_name", "name must be 1-100 characters without control characters"));
    }
    let public_id = random_hex(ADMIN_PUBLIC_BYTES)?;
    let token = format!("{ADMIN_TOKEN_PREFIX}{public_id}-{}", random_hex(ADMIN_SECRET_BYTES)?);
    let record = AdminTokenRecord {
        token_id: tally_domain::new_id(),
        public_id,
        secret_hash: hash_key(&token),
        name: name.to_string(),
        created_at: Utc::now(),
        revoked_at: None,
    };
    Ok((record, token))
}

/// Revoke a stored admin token now (idempotent; `tally admin-token revoke`).
pub fn revoke_admin_token(store: &Store, public_id: &str) -> Result<AdminTokenRecord, tally_store::StoreError> {
    store.revoke_admin_token(public_id, Utc::now())
}

/// The credential a request presents: `Authorization: Bearer <t>` or `x-api-key: <t>`.
/// A header that is present but unreadable counts as a wrong credential.
fn presented(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    if let Some(v) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| invalid_credentials())?;
        let (scheme, token) = v.trim().split_once(' ').ok_or_else(invalid_credentials)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(invalid_credentials());
        }
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(v) = req.headers().get("x-api-key") {
        let v = v.to_str().map_err(|_| invalid_credentials())?;
        return Ok((!v.trim().is_empty()).then(|| v.trim().to_string()));
    }
    Ok(None)
}

/// The middleware: apply the matched route's rule and leave the [`Caller`] in the request.
/// Without [`Auth`] in the app data (test apps) every request is [`Caller::Open`].
pub async fn guard(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(auth) = req.app_data::<web::Data<Auth>>().cloned() else {
        req.extensions_mut().insert(Caller::Open);
        return next.call(req).await;
    };
    if auth.mode() == AuthMode::Open {
        req.extensions_mut().insert(Caller::Open);
        return next.call(req).await;
    }
    let access = match req.match_pattern() {
        Some(pattern) => rule_for(req.method().as_str(), &pattern).unwrap_or(Access::Admin),
        // No route matched: the not-found handler answers; nothing to protect.
        None => Access::Public,
    };
    if access == Access::Gateway {
        return next.call(req).await;
    }
    let client = req.peer_addr().map(|a| a.ip());
    let identified = match presented(&req) {
        Ok(p) if p.is_some() || access != Access::Public => {
            if let Some(retry) = auth.locked_out(client) {
                return Err(ApiError::RateLimited {
                    code: "too_many_failed_auth",
                    message: format!("Too many failed authentications from this address; try again in {retry} s."),
                }
                .into());
            }
            auth.identify(p.as_deref()).await
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    let caller = match identified {
        Ok(Some(c)) => c,
        Ok(None) => Caller::Anonymous,
        Err(e @ ApiError::Unauthorized { .. }) => {
            auth.failed(client);
            tracing::info!(client = ?client, route = %req.match_pattern().unwrap_or_default(), "Authentication failed.");
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let allowed = match (access, &caller) {
        (Access::Public | Access::Gateway, _) => Ok(()),
        (_, Caller::Anonymous) => {
            Err(ApiError::Unauthorized { code: "unauthenticated", message: UNAUTHENTICATED.into() })
        }
        (Access::Admin, Caller::User { .. }) => Err(forbidden()),
        (Access::Admin | Access::User, _) => Ok(()),
    };
    allowed?;
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// `GET /api/auth/whoami`: the node's mode and who the presented credential is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// `open` or `token`.
    pub mode: AuthMode,
    /// `open`, `admin`, `user` or `anonymous`.
    pub caller: &'static str,
    /// The user a key acts as.
    pub user_id: Option<String>,
    /// The key used.
    pub key_id: Option<Uuid>,
}

/// The node's access mode and the caller (no credential needed; a wrong one is 401).
#[utoipa::path(tag = "auth", responses(
    (status = 200, description = "The mode and who is calling", body = WhoAmI),
    (status = 401, description = "A credential was sent and is wrong: code `invalid_credentials`", body = crate::openapi::ErrorBody),
    (status = 429, description = "Too many failed authentications from this address: code `too_many_failed_auth`", body = crate::openapi::ErrorBody),
))]
#[get("/api/auth/whoami")]
pub async fn whoami(req: HttpRequest, auth: Option<web::Data<Auth>>) -> Result<HttpResponse, ApiError> {
    let mode = auth.as_ref().map_or(AuthMode::Open, |a| a.mode());
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or(Caller::Open);
    let body = match caller {
        Caller::Open => WhoAmI { mode, caller: "open", user_id: None, key_id: None },
        Caller::Admin => WhoAmI { mode, caller: "admin", user_id: None, key_id: None },
        Caller::User { user_id, key_id } => WhoAmI { mode, caller: "user", user_id: Some(user_id), key_id: Some(key_id) },
        Caller::Anonymous => WhoAmI { mode, caller: "anonymous", user_id: None, key_id: None },
    };
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_unique() {
        for (i, (m, p, _)) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i].iter().any(|(m2, p2, _)| m2 == m && p2 == p),
                "{m} {p} has one rule only"
            );
        }
    }

    #[test]
    fn a_user_is_scoped_to_themselves() {
        let alice = Caller::User { user_id: "alice".into(), key_id: Uuid::nil() };
        assert_eq!(alice.scope(None).ok().flatten().as_deref(), Some("alice"), "no filter: alice's own");
        assert_eq!(alice.scope(Some("alice")).ok().flatten().as_deref(), Some("alice"), "her own filter");
        assert!(matches!(alice.scope(Some("bob")), Err(ApiError::Forbidden { .. })), "bob's: forbidden");
        assert!(alice.may_act_as("alice").is_ok(), "herself");
        assert!(matches!(alice.may_act_as("bob"), Err(ApiError::Forbidden { .. })), "not bob");
        assert!(matches!(alice.owns("bob", "thread_not_found", "x"), Err(ApiError::NotFound { .. })), "bob's thread hidden");
        assert_eq!(Caller::Admin.scope(None).ok().flatten(), None, "the admin sees everyone");
        assert_eq!(Caller::Open.scope(Some("bob")).ok().flatten().as_deref(), Some("bob"), "open mode filters as asked");
    }

    #[test]
    fn admin_tokens_have_their_shape_and_short_env_tokens_are_refused() {
        let (record, token) = new_admin_token("ops").unwrap_or_else(|e| panic!("token: {e}"));
        assert_eq!(admin_public_id_of(&token), Some(record.public_id.as_str()), "the public id is in the token");
        assert_eq!(record.secret_hash, hash_key(&token), "only the hash is kept");
        assert!(admin_public_id_of("tat-zz-zz").is_none(), "malformed");
        assert!(new_admin_token(" ").is_err(), "empty name");
        let store = Store::open("sqlite::memory:").unwrap_or_else(|e| panic!("store: {e}"));
        assert_eq!(Auth::new(AuthMode::Token, Some("short"), store.clone()).err(), Some(AuthConfigError::AdminTokenTooShort));
        assert_eq!(
            Auth::new(AuthMode::Token, Some("a token with spaces in it...."), store.clone()).err(),
            Some(AuthConfigError::AdminTokenNotPrintable)
        );
        assert!(Auth::new(AuthMode::Token, Some("0123456789abcdef0123456789"), store).is_ok(), "a long token");
    }

    #[test]
    fn failures_lock_a_client_out_for_the_window() {
        let store = Store::open("sqlite::memory:").unwrap_or_else(|e| panic!("store: {e}"));
        let auth = Auth::new(AuthMode::Token, None, store).unwrap_or_else(|e| panic!("auth: {e}"));
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            auth.failed(Some(ip));
        }
        assert!(auth.locked_out(Some(ip)).is_none(), "under the limit");
        auth.failed(Some(ip));
        assert!(auth.locked_out(Some(ip)).is_some(), "at the limit: locked out");
        assert!(auth.locked_out(Some([10, 0, 0, 2].into())).is_none(), "another address is not");
    }
}
