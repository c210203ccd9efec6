//! ActorSystem: starts the supervised actors of a node and hands out their addresses.

use std::sync::Arc;

use actix::prelude::*;
use tally_llm::ProviderRouter;
use tally_store::cache::Cache;
use tally_store::Store;

use crate::billing::BillingActor;
use crate::error::ActorError;
use crate::feed::UsageFeed;
use crate::kafka::ChatPublisher;
use crate::persister::{FlushBatch, PersisterActor, PersisterConfig};
use crate::registry::ThreadRegistry;
use crate::thread::{ThreadDeps, TurnTracker};

/// How long shutdown waits for chat turns in flight to finish and be billed.
pub const DEFAULT_TURN_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How to start the actors.
#[derive(Debug, Clone, Default)]
pub struct ActorSystemConfig {
    /// Batching of writes.
    pub persister: PersisterConfig,
    /// System prompt for chat threads.
    pub system_prompt: Option<String>,
    /// Cluster mode: publish chat records to the chat topics.
    pub chat_topics: Option<ChatPublisher>,
}

/// Addresses of a node's actors.
#[derive(Clone)]
pub struct ActorSystem {
    /// Storage.
    pub store: Store,
    /// The billing actor's current price book, read without a message.
    pub prices: crate::billing::PriceBookHandle,
    /// Batched writer.
    pub persister: Addr<PersisterActor>,
    /// Pricing and usage recording.
    pub billing: Addr<BillingActor>,
    /// Chat threads.
    pub threads: Addr<ThreadRegistry>,
    /// Model providers.
    pub provider: Arc<ProviderRouter>,
    /// Live usage feed.
    pub feed: UsageFeed,
    /// Chat turns in flight.
    pub turns: TurnTracker,
    /// Hot-read cache (Redis or in-memory).
    pub cache: Cache,
}

impl ActorSystem {
    /// Start every actor under a supervisor. Must be called inside a running actix system.
    pub fn start(
        store: Store,
        cache: Cache,
        provider: Arc<ProviderRouter>,
        config: ActorSystemConfig,
    ) -> Result<Self, ActorError> {
        let book = store.load_price_book()?;
        let feed = UsageFeed::default();
        let persister = {
            let store = store.clone();
            let cfg = config.persister;
            let cache = cache.clone();
            // On a thread of its own: a finished flush starts the next one at once instead of
            // waiting behind billing and chat work (~20% more ingest, bench/ingest.sh). The
            // arbiter stops with the actix System: a node must not stop its System before
            // `drain` (see `tally serve`, which handles signals itself for this reason).
            Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| PersisterActor::new(store, cfg).with_cache(cache))
        };
        let billing_actor = BillingActor::new(store.clone(), book, persister.clone().recipient(), feed.clone());
        let prices = billing_actor.price_book();
        let billing = Supervisor::start(move |_| billing_actor);
        let turns = TurnTracker::default();
        let deps = ThreadDeps {
            turns: turns.clone(),
            store: store.clone(),
            provider: provider.clone(),
            billing: billing.clone().recipient(),
            persister: persister.clone().recipient(),
            system_prompt: config.system_prompt,
            chat_topics: config.chat_topics,
        };
        let threads = Supervisor::start(move |_| ThreadRegistry::new(deps));
        Ok(ActorSystem { store, persister, billing, threads, provider, feed, turns, cache, prices })
    }

    /// Shutdown phases "drain SSE" and "flush batches": let chat turns in flight
    /// finish (their SSE streams end with them) for up to `turn_timeout`, then
    /// commit every accepted write.
    pub async fn drain_with(&self, turn_timeout: std::time::Duration) -> Result<(), ActorError> {
        let left = self.turns.wait_idle(turn_timeout).await;
        if left > 0 {
            tracing::warn!(turns = left, "Shutting down with chat turns still running; their replies are lost, their user messages are stored.");
        }
        self.persister.send(FlushBatch).await?
    }

    /// [`drain_with`](Self::drain_with) with [`DEFAULT_TURN_DRAIN`].
    pub async fn drain(&self) -> Result<(), ActorError> {
        self.drain_with(DEFAULT_TURN_DRAIN).await
    }
}
