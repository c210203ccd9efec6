//! The live dashboard feed: a snapshot on connect, then changes (at most 4/s) and every priced event, over SSE.

use std::time::Duration;

use std::collections::HashSet;

use actix_web::{get, web, HttpResponse, Responder};
use actix_web_lab::sse;
use tokio::sync::{broadcast, mpsc};

use uuid::Uuid;

use crate::auth::Caller;
use crate::dashboard::Dashboard;
use crate::error::ApiError;
use crate::state::AppState;

/// How often a changed snapshot is pushed.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);
/// Keep-alive comment period for idle connections.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events buffered per client; a client this far behind is dropped (it reconnects and gets a fresh snapshot).
pub const CLIENT_BUFFER: usize = 256;

fn event(name: &str, data: impl serde::Serialize) -> Option<sse::Event> {
    sse::Data::new_json(data).ok().map(|d| sse::Event::Data(d.event(name.to_string())))
}

/// The current dashboard snapshot as JSON.
#[utoipa::path(tag = "dashboard", responses((status = 200, description = "Current totals", body = Object)))]
#[get("/api/dashboard/snapshot")]
pub async fn snapshot(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if let Some(user) = caller.user().map(str::to_string) {
        let (mut dash, _) = user_dashboard(&state, user).await?;
        return Ok(HttpResponse::Ok().json(dash.snapshot()));
    }
    Ok(HttpResponse::Ok().json(state.dashboard.current(&state.cache).await))
}

/// A user's own dashboard (a user's key in `token` mode sees nobody else's spend).
async fn user_dashboard(state: &AppState, user: String) -> Result<(Dashboard, HashSet<Uuid>), ApiError> {
    let store = state.store.clone();
    Ok(web::block(move || crate::dashboard::load_user(&store, &user)).await??)
}

/// SSE for one user: their snapshot, then only their priced events, and their snapshot
/// again when it changes.
async fn user_feed(state: &AppState, user: String) -> Result<mpsc::Receiver<sse::Event>, ApiError> {
    let (tx, rx) = mpsc::channel::<sse::Event>(CLIENT_BUFFER);
    let mut feed = state.actors.feed.subscribe();
    let (mut dash, mut seen) = user_dashboard(state, user.clone()).await?;
    let first = dash.snapshot();
    let mut last_version = first.version;
    if let Some(e) = event("snapshot", &first) {
        let _ = tx.try_send(e);
    }
    tokio::spawn(async move {
        let _client = tally_observability::metrics::sse_client_connected();
        let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(batch) => {
                        let mut gone = false;
                        for priced in batch.iter().filter(|p| p.user_id == user) {
                            if !seen.insert(priced.event_id) {
                                continue;
                            }
                            dash.apply(priced);
                            if let Some(e) = event("usage", priced) {
                                match tx.try_send(e) {
                                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                                    Err(mpsc::error::TrySendError::Closed(_)) => { gone = true; break; }
                                }
                            }
                        }
                        if gone { break; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if tx.is_closed() { break; }
                    if dash.version() != last_version {
                        let snap = dash.snapshot();
                        last_version = snap.version;
                        if let Some(e) = event("snapshot", &snap) {
                            if tx.try_send(e).is_err() { break; }
                        }
                    }
                }
            }
        }
    });
    Ok(rx)
}

/// SSE: `snapshot` on connect and whenever the aggregates change; `usage` for each priced event.
#[utoipa::path(tag = "dashboard", responses((status = 200, description = "Server-sent events: snapshot, then deltas", body = crate::openapi::SseEvent, content_type = "text/event-stream")))]
#[get("/api/dashboard/stream")]
pub async fn stream(state: web::Data<AppState>, caller: Caller) -> Result<impl Responder, ApiError> {
    let rx = match caller.user() {
        Some(user) => user_feed(&state, user.to_string()).await?,
        None => all_feed(&state).await,
    };
    Ok(sse::Sse::from_infallible_receiver(rx).with_keep_alive(HEARTBEAT))
}

/// Event ids a stream has sent lately (bounded: the oldest half is forgotten when full).
#[derive(Default)]
struct RecentIds {
    set: HashSet<Uuid>,
    order: std::collections::VecDeque<Uuid>,
}

/// Ids a stream remembers to skip repeats.
const RECENT_IDS: usize = 100_000;

impl RecentIds {
    /// Whether `id` is new (and remember it).
    fn insert(&mut self, id: Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            for old in self.order.drain(..RECENT_IDS / 2) {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Everyone's feed (the admin, open mode).
async fn all_feed(state: &AppState) -> mpsc::Receiver<sse::Event> {
    let (tx, rx) = mpsc::channel::<sse::Event>(CLIENT_BUFFER);
    let mut feed = state.actors.feed.subscribe();
    let dashboard = state.dashboard.clone();
    let shared_first = !dashboard.is_loaded();
    let first = dashboard.current(&state.cache).await;
    // A snapshot shared by another node has that node's version: push the first local one regardless.
    let mut last_version = if shared_first { u64::MAX } else { first.version };
    if let Some(e) = event("snapshot", &first) {
        let _ = tx.try_send(e);
    }
    tokio::spawn(async move {
        let _client = tally_observability::metrics::sse_client_connected();
        let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
        let mut recent = RecentIds::default();
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(batch) => {
                        // A batch larger than the client's buffer (a burst of ingest) is cut short: the
                        // client catches up from the next snapshot, and a client that cannot take a
                        // snapshot is dropped below. A client gone away is dropped here.
                        let mut gone = false;
                        for priced in batch.iter() {
                            // The feed may announce an event again (a retried commit): send it once.
                            if !recent.insert(priced.event_id) {
                                continue;
                            }
                            if let Some(e) = event("usage", priced) {
                                match tx.try_send(e) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => break,
                                    Err(mpsc::error::TrySendError::Closed(_)) => { gone = true; break; }
                                }
                            }
                        }
                        if gone { break; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if tx.is_closed() { break; }
                    let changed = dashboard.with(|d| (d.version() != last_version).then(|| d.snapshot()));
                    if let Some(snap) = changed {
                        last_version = snap.version;
                        if let Some(e) = event("snapshot", &snap) {
                            if tx.try_send(e).is_err() { break; }
                        }
                    }
                }
            }
        }
    });
    rx
}
