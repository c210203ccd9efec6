//! Chat topics: what ThreadActors publish for the rest of the cluster (analytics, audit,
//! other services), keyed by thread id so one thread's records stay in order.
//!
//! - `raw-messages`: each user message once it is stored (before the model is called);
//! - `llm-responses`: each model reply once it is billed and stored with its usage;
//! - `token-metrics`: the reply's tokens by kind and its cost by kind.
//!
//! Records are published after the database has them (the database is the source of
//! truth; billing never depends on these topics), carry the turn's `traceparent`, and
//! use the message id (or the usage event id) as envelope event id so readers can
//! deduplicate. Publishing is enqueue-and-go: a chat turn never waits for the broker;
//! failed deliveries are counted (`kafka_produce_errors_total`) and logged.

use tally_domain::{Cost, Usage};
use tally_observability::TraceContext;
use tally_store::MessageRecord;
use uuid::Uuid;

use crate::kafka::envelope::{Envelope, TokenMetrics};
use crate::kafka::producer::{key_for, KafkaProducer};
use crate::kafka::topics::Topic;

/// Publishes a node's chat records. Cheap to clone.
#[derive(Clone)]
pub struct ChatPublisher {
    producer: KafkaProducer,
    node_id: String,
}

impl std::fmt::Debug for ChatPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatPublisher").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl ChatPublisher {
    /// A publisher on `producer` (shared with the node's other publishers). The topics must
    /// exist (`ensure_topics`).
    pub fn new(producer: KafkaProducer) -> Self {
        let node_id = producer.config().node_id.clone();
        ChatPublisher { producer, node_id }
    }

    /// A stored user message, to `raw-messages`.
    pub fn user_message(&self, message: &MessageRecord) {
        let env = Envelope::new(message.message_id, message.created_at, self.node_id.clone(), message.clone());
        self.send(Topic::RawMessages, &message.user_id, Some(message.thread_id), &env);
    }

    /// A billed reply: the message to `llm-responses`, its tokens and cost to `token-metrics`.
    pub fn reply(&self, message: &MessageRecord, usage_event_id: Uuid, usage: &Usage, cost: &Cost) {
        let env = Envelope::new(message.message_id, message.created_at, self.node_id.clone(), message.clone());
        self.send(Topic::LlmResponses, &message.user_id, Some(message.thread_id), &env);
        let metrics = token_metrics(message, usage_event_id, usage, cost);
        let env = Envelope::new(usage_event_id, message.created_at, self.node_id.clone(), metrics);
        self.send(Topic::TokenMetrics, &message.user_id, Some(message.thread_id), &env);
    }

    fn send<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        topic: Topic,
        user_id: &str,
        thread_id: Option<Uuid>,
        env: &Envelope<T>,
    ) {
        let key = key_for(topic, user_id, thread_id);
        let trace = TraceContext::current();
        let delivery = self.producer.publish(topic, &key, env, &trace);
        tokio::spawn(async move {
            if let Err(e) = delivery.await {
                tally_observability::metrics::kafka_produce_error(topic.name());
                tracing::warn!(topic = topic.name(), error = %e, "Publishing a chat record failed; the database has it.");
            }
        });
    }
}

/// The `token-metrics` payload of a reply.
pub fn token_metrics(message: &MessageRecord, usage_event_id: Uuid, usage: &Usage, cost: &Cost) -> TokenMetrics {
    TokenMetrics {
        thread_id: message.thread_id,
        message_id: message.message_id,
        user_id: message.user_id.clone(),
        model: message.model.clone(),
        usage_event_id,
        usage: usage.iter().map(|(k, q)| (k.to_string(), *q)).collect(),
        cost: cost.clone(),
        simulated: message.simulated,
    }
}
