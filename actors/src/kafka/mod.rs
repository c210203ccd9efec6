//! The Kafka bridge (cluster mode): makes the BillingActor reachable across nodes.
//!
//! Every bridge has the same file set: `config` (settings and `validate()`),
//! `envelope` (typed records and headers), `topics` (names, keys, creation),
//! `producer` (outbound), `consumer` (inbound, into a local actor), `dlq` (dead
//! letters: write, list, replay) and `retry` (the one place that backs off).
//! With no brokers configured nothing here is started.

pub mod chat;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod feed_bridge;
pub mod producer;
pub mod retry;
pub mod topics;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use chat::ChatPublisher;
pub use config::KafkaConfig;
pub use consumer::{start_billing_consumer, ConsumerHandle};
pub use dlq::{DeadLetter, DeadLetterRecord};
pub use envelope::{
    Batch, ChatMessageRecord, Envelope, InferenceBatch, InferenceEvent, InferenceRecord, ProcessedBatch, ProcessedEvent,
    ProcessedRecord, Record, TokenMetrics, COMPRESS_MIN_BYTES, LZ4_FRAME_MAGIC, MAX_UNPACKED_BYTES, SCHEMA_VERSION,
};
pub use envelope::{pack, unpack};
pub use feed_bridge::{start_feed_bridge, FeedBridgeHandle};
pub use producer::{pack_by_partition, partition_for_user, KafkaProducer, MAX_EVENTS_PER_RECORD};
pub use topics::{ensure_topics, KeyKind, Topic};

use crate::error::ActorError;

/// Whether a Kafka error may go away by itself (broker down, timeout, leader moving).
pub fn is_transient(e: &KafkaError) -> bool {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidArgument
            | RDKafkaErrorCode::Fatal,
        ) => false,
        Some(_) => true,
        None => !matches!(e, KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_)),
    }
}

/// Map a Kafka error to the crate's error: transient ones are `Unavailable` (retryable).
pub fn kafka_error(context: &str, e: &KafkaError) -> ActorError {
    if is_transient(e) {
        ActorError::Unavailable(format!("kafka: {context}: {e}"))
    } else {
        ActorError::Invalid { code: "kafka_rejected", message: format!("kafka: {context}: {e}") }
    }
}
