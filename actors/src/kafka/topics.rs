//! The cluster's topics, their keys, and creating the missing ones (the broker does not auto-create).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::error::ActorError;
use crate::kafka::config::KafkaConfig;
use crate::kafka::kafka_error;

/// How long topic creation may take before start-up fails.
pub const CREATE_TOPICS_TIMEOUT: Duration = Duration::from_secs(15);
/// Suffix of dead-letter topics.
pub const DLQ_SUFFIX: &str = ".dlq";

/// What a record's key is, which fixes its partition and so its ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The thread id: one thread's chat records stay in order.
    Thread,
    /// The user id: one user's usage and billing records stay in order.
    User,
}

/// A topic of the cluster (without prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// User messages as sent.
    RawMessages,
    /// Model replies.
    LlmResponses,
    /// Token counts per reply.
    TokenMetrics,
    /// Usage to bill (chat turns and external ingest).
    InferenceEvents,
    /// Usage after it was priced and stored.
    ProcessedEvents,
}

impl Topic {
    /// Every topic the bridge creates (each also gets a `.dlq`).
    pub const ALL: [Topic; 5] =
        [Topic::RawMessages, Topic::LlmResponses, Topic::TokenMetrics, Topic::InferenceEvents, Topic::ProcessedEvents];

    /// Stable topic name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::RawMessages => "raw-messages",
            Topic::LlmResponses => "llm-responses",
            Topic::TokenMetrics => "token-metrics",
            Topic::InferenceEvents => "inference-events",
            Topic::ProcessedEvents => "processed-events",
        }
    }

    /// Name of its dead-letter topic.
    pub fn dlq_name(self) -> String {
        format!("{}{DLQ_SUFFIX}", self.name())
    }

    /// What its records are keyed by.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Topic::RawMessages | Topic::LlmResponses | Topic::TokenMetrics => KeyKind::Thread,
            Topic::InferenceEvents | Topic::ProcessedEvents => KeyKind::User,
        }
    }

    /// Parse a name, with or without the `.dlq` suffix.
    pub fn parse(name: &str) -> Option<Topic> {
        let base = name.strip_suffix(DLQ_SUFFIX).unwrap_or(name);
        Topic::ALL.into_iter().find(|t| t.name() == base)
    }
}

/// The partition ids of `topic` as the broker reports them now (empty when the topic is missing).
pub fn partitions_of<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, ActorError> {
    let meta = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| kafka_error("reading topic metadata", &e))?;
    Ok(meta.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
}

/// Every topic name the bridge needs, dead-letter topics included.
pub fn all_topic_names(config: &KafkaConfig) -> Vec<String> {
    Topic::ALL.iter().flat_map(|t| [config.topic(*t), config.dlq_topic(*t)]).collect()
}

/// Create every missing topic (and its `.dlq`) with the configured partitions. Existing topics are left as they are.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), ActorError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap())
        .set("client.id", format!("{}-admin", config.node_id))
        .create()
        .map_err(|e| kafka_error("creating the admin client", &e))?;
    let names = all_topic_names(config);
    let new: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, config.partitions, TopicReplication::Fixed(config.replication))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(CREATE_TOPICS_TIMEOUT)).request_timeout(Some(CREATE_TOPICS_TIMEOUT));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| kafka_error("creating topics", &e))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions = config.partitions, "Topic created."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ActorError::Unavailable(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_parsing() {
        assert_eq!(Topic::InferenceEvents.dlq_name(), "inference-events.dlq", "dlq suffix");
        assert_eq!(Topic::parse("inference-events.dlq"), Some(Topic::InferenceEvents), "dlq name parses to its topic");
        assert_eq!(Topic::parse("raw-messages"), Some(Topic::RawMessages), "plain name parses");
        assert_eq!(Topic::parse("nope"), None, "unknown topic");
        assert_eq!(Topic::RawMessages.key_kind(), KeyKind::Thread, "chat topics keyed by thread");
        assert_eq!(Topic::InferenceEvents.key_kind(), KeyKind::User, "usage topics keyed by user");
        assert_eq!(all_topic_names(&KafkaConfig::new("h:1")).len(), 10, "five topics and five dead-letter topics");
    }
}
