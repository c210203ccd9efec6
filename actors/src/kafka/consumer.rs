//! Inbound side of the bridge: consumes `inference-events` in a consumer group and bills it locally.
//!
//! The loop alternates two phases, so no work is ever in flight while the group
//! rebalances (rebalance callbacks only run while the consumer is polled):
//!
//! 1. collect a batch (up to `consumer_batch` records or `consumer_linger`);
//! 2. deliver every record to the local BillingActor (`BillUsage` for a record of one
//!    event, `BillBatch` for a record of several: one write for all of them, each event
//!    still billed, deduped or dead-lettered on its own) and wait for all of them: billed
//!    (durable), a duplicate (already billed), or dead-lettered to
//!    `inference-events.dlq` with the reason (malformed, unknown version,
//!    unpriceable). Transient failures are retried with backoff, never skipped.
//!    Records start as earlier ones finish, within a budget of records and bytes in
//!    flight, so the persister writes the first records while later ones are still
//!    being decoded and priced.
//!
//! Only then are offsets stored, per partition up to the first record not yet
//! done; librdkafka commits stored offsets every `commit_interval`, before
//! partitions are revoked, and at shutdown. A crash therefore only redelivers,
//! and redelivered events are recognised by their event id: effectively once.
//! Records collected just before their partition was revoked are still billed
//! here; their new owner gets them again from the committed offset and recognises
//! them by event id.
//!
//! Tracing: each batch is a root `kafka.batch` span linked to its records' origins; each
//! record is a `kafka.consume` span whose parent is the producer span named in the record's
//! `traceparent` header, and `BillUsage` carries the consume span's context, so pricing and
//! the commit join the trace of the request that published the event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tally_observability::TraceContext;
use tokio::sync::{watch, Semaphore};
use tracing::field::Empty;
use tracing::Instrument;
use uuid::Uuid;

use crate::billing::{BillBatch, BillUsage, BilledUsage, BillingActor, UsageEvent};
use crate::error::ActorError;
use crate::kafka::config::KafkaConfig;
use crate::kafka::dlq::{self, DeadLetter};
use crate::kafka::envelope::{trace_of, unpack, Envelope, InferenceBatch, InferenceEvent, InferenceRecord};
use crate::kafka::kafka_error;
use crate::kafka::producer::{millis, KafkaProducer};
use crate::kafka::retry::{retry, RetryPolicy};
use crate::kafka::topics::{ensure_topics, Topic};

/// How long shutdown waits for records in flight before giving up on them (they will be redelivered).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// `fetch.wait.max.ms`: how long the broker may hold a fetch open waiting for data.
///
/// tansu 0.6 holds every fetch for this long whether data came or not (half of it from
/// 250 ms up) and answers with what it read before waiting, so this sets both how often an
/// idle consumer polls and the latency it adds. Measured with one node (bench/ingest.sh,
/// idle broker's CPU with the feed bridge at 250 ms): 50 ms here, ~16% of a core idle and
/// 42-47k events/s billed; 100 ms, ~11% and 46-51k; 250 ms, ~6% and 43-46k (the first
/// records wait up to two holds before the node sees them).
const FETCH_WAIT_MAX: Duration = Duration::from_millis(100);
/// Pause after a consumer error before polling again.
const ERROR_PAUSE: Duration = Duration::from_millis(200);
/// Most links from a batch span to its records' origins (the SDK keeps 128 per span by default).
const MAX_BATCH_LINKS: usize = 128;
/// Most records of a batch being billed at once.
const MAX_RECORDS_IN_FLIGHT: usize = 1_024;
/// Most payload bytes of a batch being billed at once (a full packed record of 250 events is
/// about 75 KB): enough to keep the persister writing while the next records are priced.
const MAX_BYTES_IN_FLIGHT: usize = 2 << 20;

/// A running billing consumer. Dropping it does not stop it; call [`ConsumerHandle::shutdown`].
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    done: tokio::sync::oneshot::Receiver<Result<(), ActorError>>,
}

impl ConsumerHandle {
    /// Stop polling, finish (or give up on, after [`DRAIN_TIMEOUT`]) the records in flight,
    /// commit processed offsets and leave the group.
    pub async fn shutdown(self) -> Result<(), ActorError> {
        let _ = self.stop.send(true);
        self.done.await.unwrap_or_else(|_| {
            Err(ActorError::Unavailable(
                "kafka consumer task ended early".into(),
            ))
        })
    }
}

/// Consumer callbacks: commit what was processed before partitions are revoked, count rebalances.
struct BridgeContext {
    rebalances: Arc<AtomicU64>,
}

impl ClientContext for BridgeContext {}

impl ConsumerContext for BridgeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Nothing is in flight here (see the module doc): commit the stored offsets
            // so the next owner starts right after what this node billed.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Commit before revoke failed; the next owner may redeliver.")
                }
            }
            tracing::info!(partitions = tpl.count(), "Partitions revoked.");
        }
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = %parts.join(","), "Partitions assigned.");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Rebalance failed."),
        }
    }
}

type BridgeConsumer = StreamConsumer<BridgeContext>;

/// Start consuming `inference-events` into `billing`: creates missing topics, joins the group, spawns the loop.
/// Must run inside the actix/tokio runtime that should drive the loop.
pub async fn start_billing_consumer(
    config: KafkaConfig,
    billing: Addr<BillingActor>,
) -> Result<ConsumerHandle, ActorError> {
    config.validate()?;
    ensure_topics(&config).await?;
    let producer = KafkaProducer::new(&config)?;
    let rebalances = Arc::new(AtomicU64::new(0));
    let heartbeat = (config.session_timeout / 3).max(Duration::from_millis(100));
    let consumer: BridgeConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap())
        .set("group.id", &config.group_id)
        .set("client.id", format!("{}-consumer", config.node_id))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", millis(config.commit_interval))
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", millis(config.session_timeout))
        .set("heartbeat.interval.ms", millis(heartbeat))
        .set("fetch.wait.max.ms", millis(FETCH_WAIT_MAX))
        .set("enable.partition.eof", "false")
        .create_with_context(BridgeContext {
            rebalances: rebalances.clone(),
        })
        .map_err(|e| kafka_error("creating the consumer", &e))?;
    let topic = config.topic(Topic::InferenceEvents);
    consumer
        .subscribe(&[&topic])
        .map_err(|e| kafka_error("subscribing", &e))?;
    tracing::info!(topic = %topic, group = %config.group_id, node = %config.node_id, "Billing consumer started.");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let bridge = Bridge {
        config,
        billing,
        producer,
        consumer: Arc::new(consumer),
        rebalances,
        stop: stop_rx,
        decoders: Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)),
    };
    actix::spawn(async move {
        let result = bridge.run().await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "Billing consumer stopped with an error.");
        }
        let _ = done_tx.send(result);
    });
    Ok(ConsumerHandle {
        stop: stop_tx,
        done: done_rx,
    })
}

struct Bridge {
    config: KafkaConfig,
    billing: Addr<BillingActor>,
    producer: KafkaProducer,
    consumer: Arc<BridgeConsumer>,
    rebalances: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    /// Records being decoded at once (one per core).
    decoders: Semaphore,
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Billed,
    Duplicate,
    DeadLettered,
}

impl Handled {
    /// Name for span fields and logs.
    fn as_str(self) -> &'static str {
        match self {
            Handled::Billed => "billed",
            Handled::Duplicate => "duplicate",
            Handled::DeadLettered => "dead_lettered",
        }
    }
}

impl Bridge {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) -> Result<(), ActorError> {
        while !self.stopping() {
            let generation = self.rebalances.load(Ordering::SeqCst);
            let batch = self.collect().await;
            if batch.is_empty() {
                continue;
            }
            if self.rebalances.load(Ordering::SeqCst) != generation {
                // Records of partitions revoked meanwhile are billed here and redelivered to
                // their new owner: the second billing is recognised by event id.
                tracing::debug!(records = batch.len(), "Group rebalanced while collecting.");
            }
            self.process(batch).await;
        }
        // Shutdown phase "commit offsets": everything stored so far, synchronously, off the event loop.
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await
                .map_err(|e| ActorError::Unavailable(format!("final commit task failed: {e}")))?;
        match committed {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => return Err(kafka_error("committing offsets at shutdown", &e)),
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "Producer flush at shutdown failed.");
        }
        tracing::info!("Billing consumer stopped; offsets committed.");
        Ok(())
    }

    /// Phase 1: the next batch (empty when stopping or on a consumer error).
    async fn collect(&mut self) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        let consumer = self.consumer.clone();
        let first = tokio::select! {
            _ = self.stop.changed() => return batch,
            m = consumer.recv() => m,
        };
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error.");
                tokio::time::sleep(ERROR_PAUSE).await;
                return batch;
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.consumer_linger;
        while batch.len() < self.config.consumer_batch {
            tokio::select! {
                m = consumer.recv() => match m {
                    Ok(m) => batch.push(m.detach()),
                    Err(e) => { tracing::warn!(error = %e, "Kafka consumer error."); break; }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        batch
    }

    /// Phase 2: deliver a batch, wait for it, store offsets of the finished prefix of each partition.
    async fn process(&mut self, batch: Vec<OwnedMessage>) {
        let started = Instant::now();
        let n = batch.len();
        // The batch's records come from many traces: its span is a root that links to their
        // origins, and each record's `kafka.consume` span joins its own producer's trace.
        let batch_span = tracing::info_span!(
            parent: None,
            "kafka.batch",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "receive",
            messaging.batch.message_count = n,
            billed = Empty,
            duplicates = Empty,
            dead_lettered = Empty,
            unfinished = Empty,
            duration_ms = Empty,
        );
        let origins: Vec<TraceContext> = batch.iter().map(|m| trace_of(m.headers())).collect();
        for origin in origins
            .iter()
            .filter(|o| !o.is_empty())
            .take(MAX_BATCH_LINKS)
        {
            origin.link_to(&batch_span);
        }
        let mut done: Vec<Option<Handled>> = vec![None; n];
        // Records are started as earlier ones finish, up to a budget of records and payload
        // bytes: the first writes reach the persister after one record is decoded and priced
        // (not after the whole batch), and later records are decoded and priced while earlier
        // ones are written. Once stopping, nothing new starts.
        let mut waiting = batch.iter().zip(&origins).enumerate().peekable();
        let mut inflight = FuturesUnordered::new();
        let mut inflight_bytes = 0usize;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut stop = self.stop.clone();
        loop {
            while drain_deadline.is_none() && !*stop.borrow() {
                let Some((_, (m, _))) = waiting.peek() else { break };
                let size = m.payload().map_or(0, <[u8]>::len);
                if !inflight.is_empty()
                    && (inflight.len() >= MAX_RECORDS_IN_FLIGHT
                        || inflight_bytes + size > MAX_BYTES_IN_FLIGHT)
                {
                    break;
                }
                let Some((i, (m, origin))) = waiting.next() else { break };
                inflight_bytes += size;
                let fut = handle_record(&self.billing, &self.producer, &self.decoders, m, origin, &batch_span);
                inflight.push(async move { (i, size, fut.await) });
            }
            let next = async {
                match drain_deadline {
                    Some(d) => tokio::time::timeout_at(d, inflight.next())
                        .await
                        .ok()
                        .flatten()
                        .map(Some),
                    None => inflight.next().await.map(Some),
                }
            };
            tokio::select! {
                r = next => match r {
                    Some(Some((i, size, h))) => {
                        done[i] = Some(h);
                        inflight_bytes -= size;
                    }
                    // All finished, or the drain deadline passed.
                    _ => break,
                },
                _ = stop.changed(), if drain_deadline.is_none() => {
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
            }
        }
        drop(inflight);
        let mut counts = [0usize; 3];
        for h in done.iter().flatten() {
            counts[*h as usize] += 1;
        }
        self.store_offsets(&batch, &done);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let unfinished = n - counts.iter().sum::<usize>();
        batch_span.record("billed", counts[Handled::Billed as usize]);
        batch_span.record("duplicates", counts[Handled::Duplicate as usize]);
        batch_span.record("dead_lettered", counts[Handled::DeadLettered as usize]);
        batch_span.record("unfinished", unfinished);
        batch_span.record("duration_ms", duration_ms);
        tracing::debug!(
            parent: &batch_span,
            records = n,
            billed = counts[Handled::Billed as usize],
            duplicates = counts[Handled::Duplicate as usize],
            dead_lettered = counts[Handled::DeadLettered as usize],
            unfinished,
            duration_ms,
            "Consumer batch processed."
        );
    }

    fn store_offsets(&self, batch: &[OwnedMessage], done: &[Option<Handled>]) {
        let positions = batch
            .iter()
            .zip(done)
            .map(|(m, d)| (m.topic(), m.partition(), m.offset(), d.is_some()));
        for (topic, partition, next) in offsets_to_store(positions) {
            // `store_offsets` stores the offset as given (the next one to read); the
            // single-offset `store_offset` would add one again and skip a record.
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .and_then(|()| self.consumer.store_offsets(&tpl));
            if let Err(e) = stored {
                // The partition was taken away meanwhile: its new owner redelivers (deduped by event id).
                tracing::debug!(error = %e, partition, "Offset not stored.");
            }
        }
    }
}

/// For each partition of a batch, the offset to commit: the one after the last record of the
/// prefix (in offset order) that is done. A partition whose first record is not done gets nothing.
fn offsets_to_store<'a>(
    records: impl Iterator<Item = (&'a str, i32, i64, bool)>,
) -> Vec<(String, i32, i64)> {
    let mut by_partition: BTreeMap<(&str, i32), Vec<(i64, bool)>> = BTreeMap::new();
    for (topic, partition, offset, done) in records {
        by_partition
            .entry((topic, partition))
            .or_default()
            .push((offset, done));
    }
    by_partition
        .into_iter()
        .filter_map(|((topic, partition), mut records)| {
            records.sort_unstable();
            let last = records
                .iter()
                .take_while(|(_, done)| *done)
                .last()
                .map(|(o, _)| *o)?;
            Some((topic.to_string(), partition, last + 1))
        })
        .collect()
}

/// Bill one record, or dead-letter it, in a `kafka.consume` span whose parent is the record's
/// origin (the producer's span, from its headers): the collector's request, the broker hop and
/// the billing are one trace. Retries transient failures until they pass (or the caller gives up).
async fn handle_record(
    billing: &Addr<BillingActor>,
    producer: &KafkaProducer,
    decoders: &Semaphore,
    msg: &OwnedMessage,
    origin: &TraceContext,
    batch: &tracing::Span,
) -> Handled {
    let span = tracing::info_span!(
        parent: batch,
        "kafka.consume",
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = %msg.topic(),
        messaging.destination.partition.id = msg.partition(),
        messaging.kafka.offset = msg.offset(),
        event.id = Empty,
        outcome = Empty,
    );
    // Before the span starts: a record without a (valid) context stays under the batch span.
    origin.attach(&span);
    let handled = bill_or_dead_letter(billing, producer, decoders, msg, origin)
        .instrument(span.clone())
        .await;
    span.record("outcome", handled.as_str());
    if handled == Handled::DeadLettered {
        span.record("otel.status_code", "ERROR");
    }
    handled
}

/// Runs inside the record's `kafka.consume` span.
async fn bill_or_dead_letter(
    billing: &Addr<BillingActor>,
    producer: &KafkaProducer,
    decoders: &Semaphore,
    msg: &OwnedMessage,
    origin: &TraceContext,
) -> Handled {
    // What the work below continues: the consume span, or the record's own context when
    // this node does not export spans.
    let trace = TraceContext::current().or(origin.clone());
    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
    // Unpacked and decoded on the blocking pool: a packed record is ~0.5 ms of CPU, which
    // would otherwise hold up the actors sharing this thread. A few at a time, in turn (the
    // semaphore is fair): hundreds of records decoded at once would all finish late, and the
    // persister would wait for the first of them.
    let raw = msg.payload().map(<[u8]>::to_vec).unwrap_or_default();
    let decoded = match decoders.acquire().await {
        Ok(_permit) => tokio::task::spawn_blocking(move || decode_record(raw)).await.ok(),
        Err(_) => None,
    };
    // Only if the blocking task could not run to completion: decode here instead.
    let (body, decoded) =
        decoded.unwrap_or_else(|| decode_record(msg.payload().map(<[u8]>::to_vec).unwrap_or_default()));
    match decoded {
        Err(e) => dead_letter(producer, msg, key, None, &body, &e, &trace).await,
        Ok(InferenceRecord::One(env)) => bill_one(billing, producer, msg, key, env, &body, &trace).await,
        Ok(InferenceRecord::Many(env)) if env.payload.events.is_empty() => {
            let e = ActorError::Invalid {
                code: "empty_batch",
                message: "the record carries no events".into(),
            };
            dead_letter(producer, msg, key, Some(env.event_id), &body, &e, &trace).await
        }
        Ok(InferenceRecord::Many(env)) => bill_many(billing, producer, msg, env, &trace).await,
    }
}

/// A record body's JSON (what a letter about the whole record carries: the unpacked text of a
/// compressed record, else the body as received) and the record decoded from it.
fn decode_record(raw: Vec<u8>) -> (Vec<u8>, Result<InferenceRecord, ActorError>) {
    let text = match unpack(&raw) {
        Ok(std::borrow::Cow::Owned(text)) => text,
        Ok(std::borrow::Cow::Borrowed(_)) => raw,
        Err(e) => return (raw, Err(e)),
    };
    let decoded = InferenceRecord::decode(&text);
    (text, decoded)
}

/// A record of one event.
async fn bill_one(
    billing: &Addr<BillingActor>,
    producer: &KafkaProducer,
    msg: &OwnedMessage,
    key: Option<String>,
    env: Envelope<InferenceEvent>,
    body: &[u8],
    trace: &TraceContext,
) -> Handled {
    let event_id = env.event_id;
    tracing::Span::current().record("event.id", tracing::field::display(event_id));
    let event = match InferenceEvent::into_usage_event(env) {
        Ok(ev) => ev,
        Err(e) => return dead_letter(producer, msg, key, Some(event_id), body, &e, trace).await,
    };
    let billed = retry(
        RetryPolicy::forever(),
        "Billing a consumed event",
        ActorError::is_retryable,
        || {
            let event = event.clone();
            let trace = trace.clone();
            async move {
                billing
                    .send(BillUsage {
                        event,
                        with: Vec::new(),
                        trace,
                    })
                    .await?
            }
        },
    )
    .await;
    match billed {
        // `processed-events` is published by the feed bridge for every event stored on this
        // node (chat turns too), once: see `kafka::feed_bridge`.
        Ok(BilledUsage {
            duplicate: true, ..
        }) => Handled::Duplicate,
        Ok(BilledUsage {
            duplicate: false, ..
        }) => Handled::Billed,
        Err(e) => dead_letter(producer, msg, key, Some(event_id), body, &e, trace).await,
    }
}

/// A record of several events: the valid ones are billed in one `BillBatch` (one write), each
/// invalid or unpriceable one is dead-lettered alone (its own envelope as the letter's body).
/// The record is done when every event is billed, a duplicate or dead-lettered; its outcome is
/// `Billed` when any event was billed, else `Duplicate` when any was a duplicate.
async fn bill_many(
    billing: &Addr<BillingActor>,
    producer: &KafkaProducer,
    msg: &OwnedMessage,
    env: Envelope<InferenceBatch>,
    trace: &TraceContext,
) -> Handled {
    tracing::Span::current().record("event.id", tracing::field::display(env.event_id));
    let mut outcomes = Vec::with_capacity(env.payload.events.len());
    // The valid events' envelopes, kept for a letter should billing refuse one (encoded only
    // then), and the usage events made from them for the first attempt.
    let mut pending: Vec<Envelope<InferenceEvent>> = Vec::with_capacity(env.payload.events.len());
    let mut events: Vec<UsageEvent> = Vec::with_capacity(env.payload.events.len());
    for inner in env.payload.events {
        match InferenceEvent::into_usage_event(inner.clone()) {
            Ok(event) => {
                events.push(event);
                pending.push(inner);
            }
            Err(e) => outcomes.push(letter_for(producer, msg, &inner, &e, trace).await),
        }
    }
    while !pending.is_empty() {
        let mut first = Some(std::mem::take(&mut events));
        let billed = retry(
            RetryPolicy::forever(),
            "Billing consumed events",
            ActorError::is_retryable,
            || {
                // A retry makes the events again from their envelopes (which passed before).
                let events = first.take().unwrap_or_else(|| usage_events_of(&pending));
                let trace = trace.clone();
                async move { billing.send(BillBatch { events, trace }).await? }
            },
        )
        .await;
        let results = match billed {
            Ok(results) => results,
            Err(e) => {
                for inner in pending.drain(..) {
                    outcomes.push(letter_for(producer, msg, &inner, &e, trace).await);
                }
                break;
            }
        };
        let mut again = Vec::new();
        for (inner, r) in pending.drain(..).zip(results) {
            match r {
                Ok(BilledUsage {
                    duplicate: true, ..
                }) => outcomes.push(Handled::Duplicate),
                Ok(BilledUsage {
                    duplicate: false, ..
                }) => outcomes.push(Handled::Billed),
                Err(e) if e.is_retryable() => again.push(inner),
                Err(e) => outcomes.push(letter_for(producer, msg, &inner, &e, trace).await),
            }
        }
        if !again.is_empty() {
            tracing::warn!(
                events = again.len(),
                "Billing some consumed events failed; retrying them."
            );
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        pending = again;
        events = usage_events_of(&pending);
    }
    record_outcome(&outcomes)
}

/// The usage events of envelopes that were valid once (validation depends on nothing else, so
/// they all are again).
fn usage_events_of(envelopes: &[Envelope<InferenceEvent>]) -> Vec<UsageEvent> {
    envelopes.iter().filter_map(|e| InferenceEvent::into_usage_event(e.clone()).ok()).collect()
}

/// Dead-letter one event of a packed record: its own envelope is the letter's body.
async fn letter_for(
    producer: &KafkaProducer,
    msg: &OwnedMessage,
    inner: &Envelope<InferenceEvent>,
    why: &ActorError,
    trace: &TraceContext,
) -> Handled {
    let body = inner.encode().unwrap_or_default();
    let key = Some(inner.payload.user_id.clone());
    dead_letter(producer, msg, key, Some(inner.event_id), &body, why, trace).await
}

/// The outcome of a record from its events' outcomes.
fn record_outcome(events: &[Handled]) -> Handled {
    if events.contains(&Handled::Billed) {
        Handled::Billed
    } else if events.contains(&Handled::Duplicate) {
        Handled::Duplicate
    } else {
        Handled::DeadLettered
    }
}

/// Dead-letter `payload` (the record's body, or one event of it) from record `msg`.
async fn dead_letter(
    producer: &KafkaProducer,
    msg: &OwnedMessage,
    key: Option<String>,
    event_id: Option<Uuid>,
    payload: &[u8],
    why: &ActorError,
    trace: &TraceContext,
) -> Handled {
    tracing::warn!(code = why.code(), reason = %why, partition = msg.partition(), offset = msg.offset(), "Record dead-lettered.");
    let by = producer.config().node_id.clone();
    let mut letter = DeadLetter::new(
        Topic::InferenceEvents,
        why.code(),
        &why.to_string(),
        payload,
        &by,
    )
    .from_offset(msg.partition(), msg.offset())
    .keyed(key)
    .with_event_id(event_id);
    let first = retry(
        RetryPolicy::forever(),
        "Dead-lettering a record",
        ActorError::is_retryable,
        || dlq::publish(producer, Topic::InferenceEvents, &letter, trace),
    )
    .await;
    if let Err(e) = first {
        // Permanent refusal (e.g. too large with the original body): keep the reason, drop the body.
        tracing::error!(error = %e, "Dead letter refused; retrying without the original body.");
        letter.payload = format!("<omitted: {e}>");
        let _ = retry(
            RetryPolicy::forever(),
            "Dead-lettering a record",
            |_: &ActorError| true,
            || dlq::publish(producer, Topic::InferenceEvents, &letter, trace),
        )
        .await;
    }
    Handled::DeadLettered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_several_events_is_billed_when_any_was() {
        use Handled::*;
        assert_eq!(
            record_outcome(&[DeadLettered, Billed, Duplicate]),
            Billed,
            "any billed"
        );
        assert_eq!(
            record_outcome(&[DeadLettered, Duplicate]),
            Duplicate,
            "else any duplicate"
        );
        assert_eq!(
            record_outcome(&[DeadLettered, DeadLettered]),
            DeadLettered,
            "all dead-lettered"
        );
    }

    #[test]
    fn commits_only_the_finished_prefix_of_each_partition() {
        let records = [
            ("t", 0, 12, true),
            ("t", 0, 10, true),
            ("t", 0, 11, true),
            ("t", 1, 5, true),
            ("t", 1, 6, false),
            ("t", 1, 7, true),
            ("t", 2, 3, false),
            ("t", 2, 4, true),
        ];
        let got = offsets_to_store(records.into_iter());
        assert_eq!(
            got,
            vec![("t".to_string(), 0, 13), ("t".to_string(), 1, 6)],
            "p0 all done: next is 13; p1 stops before the unfinished 6; p2 commits nothing"
        );
    }
}
