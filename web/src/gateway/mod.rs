//! The gateway: OpenAI- and Anthropic-compatible endpoints over virtual keys and budgets.
//!
//! Request path: authenticate the key (`keys`) -> validate the body -> reserve an upper
//! bound of the request's cost against every budget that applies (`budgets`; 402 when
//! one cannot hold it) -> call the upstream (`tally_llm::gateway`), translating OpenAI
//! requests for Claude models (`translate`) -> answer (or stream) while reading usage ->
//! bill the usage through BillingActor -> PersisterActor (same path as chat) -> settle
//! the hold at the actual cost. Billing and settling run after the answer is sent, so
//! they add nothing to the caller's latency.

pub mod alerts;
pub mod budgets;
pub mod error;
pub mod keys;
pub mod proxy;
pub mod ratelimit;
pub mod translate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tally_actors::budget::BudgetLedger;
use tally_actors::{BillingActor, PersisterActor};
use tally_domain::Catalog;
use tally_llm::gateway::UpstreamRouter;
use tally_store::Store;

pub use budgets::BudgetCache;
pub use error::GatewayError;
pub use keys::KeyCache;
pub use ratelimit::RateLimiter;

/// Default lease of a budget hold: a node that dies mid-request frees its holds after this.
pub const DEFAULT_HOLD_LEASE: Duration = Duration::from_secs(60);
/// Largest gateway request body (requests may carry images).
pub const MAX_GATEWAY_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Everything the gateway's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    /// Storage (keys, budgets).
    pub store: Store,
    /// Authenticated keys.
    pub keys: KeyCache,
    /// Budgets per key, read through a short-lived cache.
    pub budgets: BudgetCache,
    /// Where holds are reserved and settled (in-process, or Redis in cluster mode).
    pub ledger: Arc<dyn BudgetLedger>,
    /// Upstream per model.
    pub upstreams: Arc<UpstreamRouter>,
    /// Prices usage and persists it with the gateway call.
    pub billing: Addr<BillingActor>,
    /// The price book the billing actor prices with (read for reservation bounds).
    pub prices: tally_actors::PriceBookHandle,
    /// Persists calls that produced no usage.
    pub persister: Addr<PersisterActor>,
    /// Catalogue facts: provider and maximum output per model.
    pub models: Arc<HashMap<String, ModelInfo>>,
    /// Keep each call's request and response with its usage event (`--store-payloads`; off by default).
    pub store_payloads: bool,
    /// Lease of each hold.
    pub lease: Duration,
    /// Per-key requests-per-minute limits.
    pub rpm: RateLimiter,
    /// Where budget alerts are posted, when configured (they are logged either way).
    pub alerts: Option<alerts::AlertWebhook>,
}

/// What the gateway knows of a catalogue model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `anthropic` or `openai`.
    pub provider: String,
    /// Most output tokens one reply may have, when published.
    pub max_output_tokens: Option<u64>,
}

impl Gateway {
    /// The model facts of a catalogue.
    pub fn models_of(catalog: &Catalog) -> HashMap<String, ModelInfo> {
        catalog
            .models
            .iter()
            .map(|m| {
                (m.name.clone(), ModelInfo { provider: m.provider.clone(), max_output_tokens: m.max_output_tokens })
            })
            .collect()
    }
}

/// Register the gateway (its state, `/v1/*` routes, and the keys and budgets API). Mount it
/// before [`crate::configure`], whose last route is a catch-all.
pub fn configure(gw: Gateway) -> impl FnOnce(&mut actix_web::web::ServiceConfig) {
    use crate::routes::keys;
    move |cfg: &mut actix_web::web::ServiceConfig| {
        cfg.app_data(actix_web::web::Data::new(gw));
        proxy::configure(cfg);
        cfg.service(keys::create_key)
            .service(keys::list_keys)
            .service(keys::key_usage)
            .service(keys::get_key)
            .service(keys::patch_key)
            .service(keys::revoke_key)
            .service(keys::rotate_key)
            .service(keys::put_user_budget)
            .service(keys::get_user_budget)
            .service(keys::delete_user_budget)
            .service(keys::put_key_budget)
            .service(keys::get_key_budget)
            .service(keys::delete_key_budget)
            .service(keys::key_spend);
    }
}
