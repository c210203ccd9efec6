//! Outbound side of the bridge: a producer (`acks=all`, idempotent when configured) that answers
//! only once the broker acknowledged.
//!
//! Records are keyed by user id on usage topics and by thread id on chat topics
//! ([`Topic::key_kind`]), so one user's usage (one thread's chat) stays in order.
//! librdkafka batches records (`linger.ms`, `batch.num.messages`) and retries them
//! internally until `message.timeout.ms`; a failure that outlives that is reported
//! to the caller, transient ones as retryable.
//!
//! Every traced send is a `kafka.produce` span (a child of the caller's span) whose context
//! the record carries in its `traceparent` header, so the consumer continues the same trace.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tally_observability::TraceContext;
use tracing::field::Empty;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ActorError;
use crate::kafka::config::KafkaConfig;
use crate::kafka::envelope::{pack, with_trace, Envelope};
use crate::kafka::kafka_error;
use crate::kafka::topics::{KeyKind, Topic};

/// Records the producer may hold locally (queued or in flight) before refusing more.
pub const DEFAULT_QUEUE_MAX_MESSAGES: usize = 500_000;
/// Records per produce request at most.
pub const DEFAULT_BATCH_MESSAGES: usize = 10_000;

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// A producer (`acks=all`; `enable.idempotence` when `KafkaConfig::idempotent_producer`).
/// Cheap to clone; clones share one client.
///
/// It heals itself: when the broker answers with an error that means its record of
/// this producer's id or sequence numbers is gone or corrupt (seen with tansu after a
/// crash: every produce then fails with `UNKNOWN_SERVER_ERROR`), or librdkafka reports a
/// fatal error, the next send starts a new client with a new producer id. Records of the
/// old client that fail are retried by their callers; any that were in fact stored are
/// stored twice, which consumers absorb by event id.
#[derive(Clone)]
pub struct KafkaProducer {
    inner: Arc<RwLock<FutureProducer>>,
    needs_reset: Arc<AtomicBool>,
    config: Arc<KafkaConfig>,
}

/// Broker answers that mean the broker lost or mangled this producer's idempotence state.
const RESET_CODES: [RDKafkaErrorCode; 4] = [
    RDKafkaErrorCode::Unknown,
    RDKafkaErrorCode::UnknownProducerId,
    RDKafkaErrorCode::OutOfOrderSequenceNumber,
    RDKafkaErrorCode::InvalidProducerEpoch,
];

impl KafkaProducer {
    /// A producer for these settings (validated first).
    pub fn new(config: &KafkaConfig) -> Result<Self, ActorError> {
        config.validate()?;
        let inner = build(config)?;
        Ok(KafkaProducer {
            inner: Arc::new(RwLock::new(inner)),
            needs_reset: Arc::new(AtomicBool::new(false)),
            config: Arc::new(config.clone()),
        })
    }

    /// The settings it was made with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// True when the current client can no longer deliver (it will be replaced on the next send).
    pub fn is_broken(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
            || self
                .client()
                .is_ok_and(|c| c.client().fatal_error().is_some())
    }

    /// The current client, replaced first if it is broken.
    fn client(&self) -> Result<FutureProducer, ActorError> {
        let poisoned = || ActorError::Unavailable("kafka: producer lock poisoned".into());
        let current = self.inner.read().map_err(|_| poisoned())?.clone();
        let fatal = current.client().fatal_error().is_some();
        if !fatal && !self.needs_reset.load(Ordering::SeqCst) {
            return Ok(current);
        }
        let mut slot = self.inner.write().map_err(|_| poisoned())?;
        // Another clone may have replaced it meanwhile.
        if self.needs_reset.swap(false, Ordering::SeqCst) || slot.client().fatal_error().is_some() {
            tracing::warn!(
                fatal,
                "Kafka producer lost its idempotence state; starting a new one."
            );
            let old = std::mem::replace(&mut *slot, build(&self.config)?);
            // Dropping a producer waits for its queue; never on an event loop.
            std::thread::spawn(move || drop(old));
        }
        Ok(slot.clone())
    }
}

fn build(config: &KafkaConfig) -> Result<FutureProducer, ActorError> {
    ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap())
        .set("client.id", format!("{}-producer", config.node_id))
        .set(
            "enable.idempotence",
            if config.idempotent_producer {
                "true"
            } else {
                "false"
            },
        )
        .set("acks", "all")
        .set("message.timeout.ms", millis(config.message_timeout))
        .set("linger.ms", millis(config.linger))
        .set("batch.num.messages", DEFAULT_BATCH_MESSAGES.to_string())
        .set(
            "queue.buffering.max.messages",
            DEFAULT_QUEUE_MAX_MESSAGES.to_string(),
        )
        // lz4 was measured: tansu 0.6 then took acceptance from ~70k to ~19k events/s.
        .set("compression.type", "none")
        .create()
        .map_err(|e| kafka_error("creating the producer", &e))
}

impl KafkaProducer {
    /// Enqueue one record. The returned future resolves once the broker acknowledged it
    /// (or delivery failed). Enqueueing itself fails fast (retryable) when the local queue is full.
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        self.send_to(topic, key, None, payload, headers)
    }

    /// [`KafkaProducer::send`] to a given partition (`None`: the partitioner picks it from the key).
    pub fn send_to(
        &self,
        topic: &str,
        key: &str,
        partition: Option<i32>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let record = match partition {
            Some(p) => record.partition(p),
            None => record,
        };
        let queued = self.client().and_then(|client| {
            client
                .send_result(record)
                .map_err(|(e, _)| kafka_error("enqueueing a record", &e))
        });
        let needs_reset = self.needs_reset.clone();
        async move {
            match queued?.await {
                Ok(Ok(d)) => Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => {
                    if e.rdkafka_error_code()
                        .is_some_and(|c| RESET_CODES.contains(&c))
                    {
                        needs_reset.store(true, Ordering::SeqCst);
                    }
                    Err(kafka_error("delivering a record", &e))
                }
                Err(_) => Err(ActorError::Unavailable(
                    "kafka: the producer was dropped before delivery".into(),
                )),
            }
        }
    }

    /// Publish an envelope to a topic of the cluster, keyed as the topic wants, traced like
    /// [`KafkaProducer::send_traced`].
    pub fn publish<T: Serialize + DeserializeOwned>(
        &self,
        topic: Topic,
        key: &str,
        envelope: &Envelope<T>,
        trace: &TraceContext,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        self.publish_at(topic, key, None, envelope, trace)
    }

    /// [`KafkaProducer::publish`] to a given partition.
    pub fn publish_to<T: Serialize + DeserializeOwned>(
        &self,
        topic: Topic,
        key: &str,
        partition: i32,
        envelope: &Envelope<T>,
        trace: &TraceContext,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        self.publish_at(topic, key, Some(partition), envelope, trace)
    }

    fn publish_at<T: Serialize + DeserializeOwned>(
        &self,
        topic: Topic,
        key: &str,
        partition: Option<i32>,
        envelope: &Envelope<T>,
        trace: &TraceContext,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        let name = self.config.topic(topic);
        let sent = envelope.encode().map(|body| {
            // Packed records on the usage topics travel compressed (see `envelope::pack`).
            let body = if topic.key_kind() == KeyKind::User { pack(body) } else { body };
            let to = Destination { topic: &name, partition };
            self.send_traced(to, key, &body, OwnedHeaders::new(), Some(envelope.event_id), trace)
        });
        async move { sent?.await }
    }

    /// Partitions of `topic` (of this cluster), from the broker's metadata. Blocking.
    pub fn partition_count(&self, topic: Topic) -> Result<i32, ActorError> {
        let name = self.config.topic(topic);
        let meta = self
            .client()?
            .client()
            .fetch_metadata(Some(&name), self.config.message_timeout)
            .map_err(|e| kafka_error("reading topic metadata", &e))?;
        let n = meta
            .topics()
            .iter()
            .filter(|t| t.name() == name)
            .map(|t| t.partitions().len())
            .sum::<usize>();
        match i32::try_from(n) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ActorError::Unavailable(format!(
                "kafka: topic {name} has no partitions (yet)"
            ))),
        }
    }

    /// Enqueue one record in a `kafka.produce` span (a child of the current span) that ends
    /// when the broker answered, with the partition and offset or the error. The record
    /// carries that span's context in its headers, after `headers`, so the consumer continues
    /// the trace under it; when this process does not export spans the span has no context
    /// and `trace` (the context this work arrived with) is carried instead.
    pub fn send_traced(
        &self,
        to: Destination<'_>,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
        event_id: Option<Uuid>,
        trace: &TraceContext,
    ) -> impl Future<Output = Result<Delivered, ActorError>> + Send + 'static {
        let Destination { topic, partition } = to;
        let span = tracing::info_span!(
            "kafka.produce",
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %topic,
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            event.id = Empty,
            error.message = Empty,
        );
        if let Some(id) = event_id {
            span.record("event.id", tracing::field::display(id));
        }
        let carried = TraceContext::of(&span).or(trace.clone());
        let sent = self.send_to(
            topic,
            key,
            partition,
            payload,
            with_trace(headers, &carried),
        );
        let outcome_span = span.clone();
        async move {
            let delivered = sent.await;
            match &delivered {
                Ok(d) => {
                    outcome_span.record("messaging.destination.partition.id", d.partition);
                    outcome_span.record("messaging.kafka.offset", d.offset);
                }
                Err(e) => {
                    outcome_span.record("otel.status_code", "ERROR");
                    outcome_span.record("error.message", tracing::field::display(e));
                }
            }
            delivered
        }
        .instrument(span)
    }

    /// Wait until every queued record was delivered or failed, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), ActorError> {
        self.client()?
            .flush(timeout)
            .map_err(|e| kafka_error("flushing the producer", &e))
    }
}

/// The key of a record on `topic`: the thread id on chat topics (the user id when there is no thread),
/// the user id on usage topics.
pub fn key_for(topic: Topic, user_id: &str, thread_id: Option<Uuid>) -> String {
    match (topic.key_kind(), thread_id) {
        (KeyKind::Thread, Some(t)) => t.to_string(),
        (KeyKind::Thread, None) | (KeyKind::User, _) => user_id.to_string(),
    }
}

/// Where a record goes: a topic, and a partition or (`None`) the one the key's hash picks.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// Full topic name.
    pub topic: &'a str,
    /// Partition, if chosen by the sender.
    pub partition: Option<i32>,
}

impl<'a> Destination<'a> {
    /// A topic; the partition follows the key.
    pub fn topic(topic: &'a str) -> Self {
        Destination {
            topic,
            partition: None,
        }
    }
}

/// Most events in one packed usage record (`inference-events`, `processed-events`): ~400 bytes
/// each, well under the broker's 1 MB record limit.
pub const MAX_EVENTS_PER_RECORD: usize = 250;

/// Group `(partition, item)` pairs into the records they go out in: by partition, in their
/// order within each, at most [`MAX_EVENTS_PER_RECORD`] per record.
pub fn pack_by_partition<T>(items: impl IntoIterator<Item = (i32, T)>) -> Vec<Vec<T>> {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<T>> = std::collections::BTreeMap::new();
    for (partition, item) in items {
        by_partition.entry(partition).or_default().push(item);
    }
    let mut records = Vec::new();
    for mut all in by_partition.into_values() {
        while all.len() > MAX_EVENTS_PER_RECORD {
            let rest = all.split_off(MAX_EVENTS_PER_RECORD);
            records.push(std::mem::replace(&mut all, rest));
        }
        records.push(all);
    }
    records
}

/// The partition of a user's usage records among `partitions`: FNV-1a of the user id. Every
/// collector computes the same, so one user's events stay in one partition, in order, when
/// several users' events share a record (see `InferenceBatch`).
pub fn partition_for_user(user_id: &str, partitions: i32) -> i32 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = user_id.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    let n = u64::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(hash % n).unwrap_or(0)
}

/// Duration as librdkafka's integer milliseconds.
pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_topic() {
        let t = Uuid::now_v7();
        assert_eq!(
            key_for(Topic::InferenceEvents, "alice", Some(t)),
            "alice",
            "usage keyed by user"
        );
        assert_eq!(
            key_for(Topic::RawMessages, "alice", Some(t)),
            t.to_string(),
            "chat keyed by thread"
        );
        assert_eq!(
            key_for(Topic::LlmResponses, "alice", None),
            "alice",
            "chat without a thread falls back to the user"
        );
    }

    #[test]
    fn a_user_has_one_partition_and_users_spread_over_all() {
        assert_eq!(
            partition_for_user("alice", 6),
            partition_for_user("alice", 6),
            "stable"
        );
        let used: std::collections::BTreeSet<i32> = (0..600)
            .map(|i| partition_for_user(&format!("user-{i}"), 6))
            .collect();
        assert_eq!(
            used,
            (0..6).collect(),
            "every partition gets users, none outside the range"
        );
        assert_eq!(partition_for_user("alice", 1), 0, "one partition");
        assert_eq!(
            partition_for_user("alice", 0),
            0,
            "no partitions is treated as one"
        );
    }
}
