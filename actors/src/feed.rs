//! The live usage feed: every usage event once it is priced and durable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tally_domain::Cost;
use tally_observability::TraceContext;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Capacity of the broadcast buffer, in batches; a subscriber that falls this far behind skips ahead.
pub const FEED_CAPACITY: usize = 4096;

/// Event: a usage event was priced and committed.
#[derive(Debug, Clone, Serialize)]
pub struct UsagePriced {
    /// Usage event id.
    pub event_id: Uuid,
    /// Billed user.
    pub user_id: String,
    /// Thread, if any.
    pub thread_id: Option<Uuid>,
    /// Message, if any.
    pub message_id: Option<Uuid>,
    /// Model.
    pub model: String,
    /// When the usage happened.
    pub occurred_at: DateTime<Utc>,
    /// When it became durable.
    pub committed_at: DateTime<Utc>,
    /// Its cost by kind.
    pub cost: Cost,
    /// The gateway's virtual key, when the usage came through the gateway.
    pub key_id: Option<Uuid>,
    /// The node that billed it when that is another node (received over the feed
    /// bridge); `None` when billed here.
    pub origin: Option<String>,
    /// Where it was priced (the billing span), so work it triggers elsewhere (publishing
    /// it to other nodes) joins the same trace. Not part of the JSON.
    #[serde(skip)]
    pub trace: TraceContext,
}

/// What subscribers receive: the events of one write, in order (one for a chat turn, a whole
/// batch for an ingest request or a consumed record). One broadcast slot per write, not per
/// event, so a burst of large batches does not overrun subscribers.
pub type PricedBatch = Arc<[UsagePriced]>;

/// Fan-out of [`UsagePriced`] events to any number of subscribers (dashboards, the feed bridge).
#[derive(Debug, Clone)]
pub struct UsageFeed {
    tx: broadcast::Sender<PricedBatch>,
}

impl Default for UsageFeed {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
        UsageFeed { tx }
    }
}

impl UsageFeed {
    /// Publish an event; having no subscriber is fine.
    pub fn publish(&self, event: UsagePriced) {
        self.publish_all(vec![event]);
    }

    /// Publish the events of one write together (nothing when empty).
    pub fn publish_all(&self, events: Vec<UsagePriced>) {
        if !events.is_empty() {
            let _ = self.tx.send(events.into());
        }
    }

    /// Subscribe to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PricedBatch> {
        self.tx.subscribe()
    }
}
