//! Shared state of the HTTP handlers.

use tally_actors::ActorSystem;
use tally_store::cache::Cache;
use tally_store::Store;

use crate::dashboard::DashboardHandle;

/// What handlers need: the actors, storage, and defaults.
#[derive(Clone)]
pub struct AppState {
    /// The node's actors.
    pub actors: ActorSystem,
    /// Storage (reads run on the blocking pool).
    pub store: Store,
    /// Model for threads created without one.
    pub default_model: String,
    /// Live dashboard aggregates.
    pub dashboard: DashboardHandle,
    /// Hot-read cache (Redis when configured, in-memory otherwise).
    pub cache: Cache,
}

impl AppState {
    /// State over a started actor system; starts the dashboard aggregator (needs a tokio runtime).
    pub fn new(actors: ActorSystem, default_model: String) -> Self {
        let store = actors.store.clone();
        let cache = actors.cache.clone();
        let dashboard = DashboardHandle::start(store.clone(), &actors.feed, cache.clone());
        AppState { actors, store, default_model, dashboard, cache }
    }
}
