//! ActorSystem: starts the supervised actors of a node and hands out their addresses.

use std::sync::Arc;

use actix::prelude::*;
use tally_llm::ProviderRouter;
use tally_store::Store;

use crate::billing::BillingActor;
use crate::error::ActorError;
use crate::feed::UsageFeed;
use crate::persister::{FlushBatch, PersisterActor, PersisterConfig};
use crate::registry::ThreadRegistry;
use crate::thread::ThreadDeps;

/// How to start the actors.
#[derive(Debug, Clone, Default)]
pub struct ActorSystemConfig {
    /// Batching of writes.
    pub persister: PersisterConfig,
    /// System prompt for chat threads.
    pub system_prompt: Option<String>,
}

/// Addresses of a node's actors.
#[derive(Clone)]
pub struct ActorSystem {
    /// Storage.
    pub store: Store,
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
}

impl ActorSystem {
    /// Start every actor under a supervisor. Must be called inside a running actix system.
    pub fn start(store: Store, provider: Arc<ProviderRouter>, config: ActorSystemConfig) -> Result<Self, ActorError> {
        let book = store.load_price_book()?;
        let feed = UsageFeed::default();
        let persister = {
            let store = store.clone();
            let cfg = config.persister;
            Supervisor::start(move |_| PersisterActor::new(store, cfg))
        };
        let billing = {
            let store = store.clone();
            let recipient = persister.clone().recipient();
            let feed = feed.clone();
            Supervisor::start(move |_| BillingActor::new(store, book, recipient, feed))
        };
        let deps = ThreadDeps {
            store: store.clone(),
            provider: provider.clone(),
            billing: billing.clone().recipient(),
            persister: persister.clone().recipient(),
            system_prompt: config.system_prompt,
        };
        let threads = Supervisor::start(move |_| ThreadRegistry::new(deps));
        Ok(ActorSystem { store, persister, billing, threads, provider, feed })
    }

    /// Flush every accepted write (shutdown phase "flush batches").
    pub async fn drain(&self) -> Result<(), ActorError> {
        self.persister.send(FlushBatch).await?
    }
}
