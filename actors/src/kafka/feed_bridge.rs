//! Feed bridge: every node's live dashboard sees the usage billed on every node.
//!
//! Outbound: every usage event this node priced and stored (chat turns and consumed
//! `inference-events` alike) goes to `processed-events` once, from the node's
//! [`UsageFeed`]: the events of one write that share a partition (by user,
//! [`partition_for_user`]) travel in one record (at most [`MAX_EVENTS_PER_RECORD`](crate::kafka::producer::MAX_EVENTS_PER_RECORD); a lone
//! event as itself), so the broker carries one record per write and partition, not per event. Inbound: the node reads `processed-events` from the end of
//! every partition as it was when the bridge started (no consumer group, no commits:
//! each node sees everything from its start on) and republishes the events of *other*
//! nodes into its local feed, marked with their origin, so dashboards fold them.
//!
//! Exactness: the dashboard loads its totals from the database after this bridge is
//! positioned, and an event is stored before it is published; so an event published
//! before the bridge's start position was stored before the dashboard's load and is in
//! it, and one published after is consumed (the dashboard skips ids it already has).
//! A record the broker does not acknowledge (broker down or restarting) is sent again with
//! backoff for up to [`PUBLISH_RETRIES`] attempts (about ten minutes), so a broker restart
//! leaves no dashboard short (bench/chaos.sh found that it did: the record was dropped).
//! The database stays the source of truth: a node that dies between commit and publish
//! leaves other dashboards short of its last events until they restart. Undecodable or
//! inconsistent records go to `processed-events.dlq` with the reason.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tally_observability::TraceContext;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::ActorError;
use crate::feed::{PricedBatch, UsageFeed, UsagePriced};
use crate::kafka::config::KafkaConfig;
use crate::kafka::dlq::{self, DeadLetter};
use crate::kafka::envelope::{pack, producer_in_prefix, unpack, Batch, Envelope, ProcessedEvent, ProcessedRecord};
use crate::kafka::kafka_error;
use crate::kafka::producer::{millis, pack_by_partition, partition_for_user, Destination, KafkaProducer};
use crate::kafka::retry::{retry, RetryPolicy};
use crate::kafka::topics::{ensure_topics, partitions_of, Topic};

/// How long start-up may spend reading partition metadata and end offsets.
const POSITION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for published records to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// `fetch.wait.max.ms` of the inbound reader: other nodes' events reach the dashboard within
/// about this long (tansu holds each fetch ~half of it; see the billing consumer's note). At
/// 50 ms, with the consumer at 100 ms, the idle broker used ~21% of a core; at 250 ms ~11%.
const FETCH_WAIT_MAX: Duration = Duration::from_millis(250);
/// Pause after a consumer error before reading again.
const ERROR_PAUSE: Duration = Duration::from_millis(200);
/// Retries of a `processed-events` record the broker did not acknowledge: with the retry
/// module's pauses (up to 2 s each) about ten minutes, enough for a broker restart; a
/// longer outage leaves other dashboards short of those events until they restart
/// (bounded so an endless outage does not hold every record of it in memory).
pub const PUBLISH_RETRIES: usize = 300;

/// A running feed bridge; call [`FeedBridgeHandle::shutdown`] to stop it.
pub struct FeedBridgeHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    producer: KafkaProducer,
}

impl FeedBridgeHandle {
    /// Stop both directions and flush what was published.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let producer = self.producer;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "Feed bridge: producer flush at shutdown failed.");
        }
    }
}

/// Start the bridge. Returns once the inbound side is positioned, so a dashboard that
/// loads its totals after this call misses nothing (see the module doc).
/// Records go out on `producer` (the node's, shared with its chat publisher).
pub async fn start_feed_bridge(config: KafkaConfig, producer: KafkaProducer, feed: UsageFeed) -> Result<FeedBridgeHandle, ActorError> {
    config.validate()?;
    ensure_topics(&config).await?;
    // Subscribe before anything else: every local event from now on goes out.
    let local = feed.subscribe();
    let (consumer, partitions) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || positioned_consumer(&config))
            .await
            .map_err(|e| ActorError::Unavailable(format!("feed bridge start-up task failed: {e}")))??
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let outbound = tokio::spawn(publish_local(config.clone(), producer.clone(), partitions, local, stop_rx.clone()));
    let inbound = tokio::spawn(republish_remote(config.clone(), producer.clone(), consumer, feed, stop_rx));
    tracing::info!(node = %config.node_id, topic = %config.topic(Topic::ProcessedEvents), "Feed bridge started.");
    Ok(FeedBridgeHandle { stop: stop_tx, tasks: vec![outbound, inbound], producer })
}

/// A reader assigned to every partition of `processed-events` at its current end, and how many partitions there are.
fn positioned_consumer(config: &KafkaConfig) -> Result<(StreamConsumer, i32), ActorError> {
    let topic = config.topic(Topic::ProcessedEvents);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap())
        // Required by librdkafka; never joined (manual assignment) and never committed.
        .set("group.id", format!("{}-feed-{}", config.group_id, config.node_id))
        .set("client.id", format!("{}-feed", config.node_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", millis(FETCH_WAIT_MAX))
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| kafka_error("creating the feed reader", &e))?;
    let partitions = partitions_of(&consumer, &topic, POSITION_TIMEOUT)?;
    if partitions.is_empty() {
        return Err(ActorError::Unavailable(format!("topic {topic} has no partitions yet")));
    }
    let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (_, high) =
            consumer.fetch_watermarks(&topic, p, POSITION_TIMEOUT).map_err(|e| kafka_error("reading end offsets", &e))?;
        tpl.add_partition_offset(&topic, p, Offset::Offset(high)).map_err(|e| kafka_error("positioning the feed reader", &e))?;
    }
    consumer.assign(&tpl).map_err(|e| kafka_error("assigning the feed reader", &e))?;
    Ok((consumer, count))
}

/// The `processed-events` payload of a local feed event.
pub fn processed_of(event: &UsagePriced, node_id: &str) -> Envelope<ProcessedEvent> {
    let payload = ProcessedEvent {
        user_id: event.user_id.clone(),
        model: event.model.clone(),
        cost_total: event.cost.total,
        duplicate: false,
        priced_at: event.committed_at,
        node_id: node_id.to_string(),
        thread_id: event.thread_id,
        message_id: event.message_id,
        cost: event.cost.clone(),
        key_id: event.key_id,
    };
    Envelope::new(event.event_id, event.occurred_at, node_id, payload)
}

/// The feed event of a received `processed-events` record (validated).
pub fn priced_of(env: Envelope<ProcessedEvent>) -> Result<UsagePriced, ActorError> {
    env.payload.validate()?;
    let p = env.payload;
    Ok(UsagePriced {
        event_id: env.event_id,
        user_id: p.user_id,
        thread_id: p.thread_id,
        message_id: p.message_id,
        model: p.model,
        occurred_at: env.occurred_at,
        committed_at: p.priced_at,
        cost: p.cost,
        key_id: p.key_id,
        origin: Some(p.node_id),
        trace: TraceContext::none(),
    })
}

async fn publish_local(
    config: KafkaConfig,
    producer: KafkaProducer,
    partitions: i32,
    mut local: broadcast::Receiver<PricedBatch>,
    mut stop: watch::Receiver<bool>,
) {
    if !config.publish_processed {
        return;
    }
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            r = local.recv() => r,
        };
        match received {
            Ok(batch) => {
                // Encoded on the blocking pool (JSON, then LZ4 for a packed record): ~1 ms of CPU
                // for a write of 250 events, kept off the thread the actors share.
                let node = config.node_id.clone();
                let encode = move || encode_local(&batch, &node, partitions);
                let records = match tokio::task::spawn_blocking(encode).await {
                    Ok(records) => records,
                    Err(e) => {
                        tracing::warn!(error = %e, "Feed bridge: encoding processed events failed; other dashboards miss them until they restart.");
                        continue;
                    }
                };
                for record in records {
                    publish_record(&config, &producer, record);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "Feed bridge fell behind the local feed; other dashboards miss these events until they restart.");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The records a write's events go out in: grouped by partition, in order, at most
/// [`MAX_EVENTS_PER_RECORD`](crate::kafka::producer::MAX_EVENTS_PER_RECORD) each.
fn records_of<'a>(events: &[&'a UsagePriced], partitions: i32) -> Vec<Vec<&'a UsagePriced>> {
    pack_by_partition(events.iter().map(|e| (partition_for_user(&e.user_id, partitions), *e)))
}

/// A `processed-events` record ready to send.
struct EncodedRecord {
    /// Partition (of the first event's user).
    partition: i32,
    /// The first event's user id.
    key: String,
    /// The record's id: the event's, or the batch envelope's.
    record_id: Uuid,
    /// The first event's id and trace: the `feed.publish` span joins that billing's trace.
    first_event: Uuid,
    trace: TraceContext,
    /// How many events it carries.
    events: usize,
    /// The body as published (packed when large, see `envelope::pack`).
    body: Vec<u8>,
}

/// [`ProcessedEvent`] borrowed from the feed event instead of copied (as [`processed_of`]
/// does): the same fields in the same order, so the JSON is the same byte for byte (tested).
#[derive(serde::Serialize)]
struct ProcessedPayloadRef<'a> {
    user_id: &'a str,
    model: &'a str,
    cost_total: rust_decimal::Decimal,
    duplicate: bool,
    priced_at: chrono::DateTime<chrono::Utc>,
    node_id: &'a str,
    thread_id: Option<Uuid>,
    message_id: Option<Uuid>,
    cost: &'a tally_domain::Cost,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<Uuid>,
}

fn processed_ref<'a>(event: &'a UsagePriced, node_id: &'a str) -> Envelope<ProcessedPayloadRef<'a>> {
    let payload = ProcessedPayloadRef {
        user_id: &event.user_id,
        model: &event.model,
        cost_total: event.cost.total,
        duplicate: false,
        priced_at: event.committed_at,
        node_id,
        thread_id: event.thread_id,
        message_id: event.message_id,
        cost: &event.cost,
        key_id: event.key_id,
    };
    Envelope::new(event.event_id, event.occurred_at, node_id, payload)
}

/// The records this node's events of one write go out in (events other nodes billed are
/// theirs to publish): one event as itself, several of a partition as a batch.
fn encode_local(batch: &[UsagePriced], node_id: &str, partitions: i32) -> Vec<EncodedRecord> {
    let mine: Vec<&UsagePriced> = batch.iter().filter(|e| e.origin.is_none()).collect();
    let mut out = Vec::new();
    for group in records_of(&mine, partitions) {
        let Some(first) = group.first() else { continue };
        let encoded = if let [one] = group.as_slice() {
            processed_ref(one, node_id).encode().map(|body| (one.event_id, body))
        } else {
            let events = group.iter().map(|e| processed_ref(e, node_id)).collect();
            let env = Envelope::new(tally_domain::new_id(), first.occurred_at, node_id, Batch { events });
            env.encode().map(|body| (env.event_id, pack(body)))
        };
        match encoded {
            Ok((record_id, body)) => out.push(EncodedRecord {
                partition: partition_for_user(&first.user_id, partitions),
                key: first.user_id.clone(),
                record_id,
                first_event: first.event_id,
                trace: first.trace.clone(),
                events: group.len(),
                body,
            }),
            Err(e) => tracing::warn!(error = %e, "Feed bridge: a processed-events record did not encode."),
        }
    }
    out
}

/// Enqueue one record under a `feed.publish` span joined to the trace of the (first) event's
/// billing, so the hop to other nodes is in it.
fn publish_record(config: &KafkaConfig, producer: &KafkaProducer, record: EncodedRecord) {
    let span = tracing::info_span!("feed.publish", event.id = %record.first_event, events = record.events);
    record.trace.attach(&span);
    let topic = config.topic(Topic::ProcessedEvents);
    let send = {
        let producer = producer.clone();
        move |record: &EncodedRecord| {
            let to = Destination { topic: &topic, partition: Some(record.partition) };
            producer.send_traced(to, &record.key, &record.body, OwnedHeaders::new(), Some(record.record_id), &record.trace)
        }
    };
    // Enqueued now (in order with the node's other records); the acknowledgement is watched.
    let delivery = span.in_scope(|| send(&record));
    tokio::spawn(async move {
        let Err(e) = delivery.await else { return };
        tally_observability::metrics::kafka_produce_error(Topic::ProcessedEvents.name());
        if !e.is_retryable() {
            tracing::warn!(error = %e, "Feed bridge: publishing processed events failed; other dashboards miss them until they restart.");
            return;
        }
        // Dashboards fold each event id once, so a record sent again out of order (or twice,
        // when only the acknowledgement was lost) changes no total.
        let policy = RetryPolicy::times(PUBLISH_RETRIES);
        let resent = retry(policy, "Feed bridge: publishing processed events", ActorError::is_retryable, || span.in_scope(|| send(&record))).await;
        if let Err(e) = resent {
            tracing::warn!(error = %e, "Feed bridge: publishing processed events failed; other dashboards miss them until they restart.");
        }
    });
}

async fn republish_remote(
    config: KafkaConfig,
    producer: KafkaProducer,
    consumer: StreamConsumer,
    feed: UsageFeed,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            m = consumer.recv() => m.map(|m| m.detach()),
        };
        let msg = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "Feed bridge: consumer error.");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        // Unpacked and decoded on the blocking pool, off the thread the actors share.
        let raw = msg.payload().map(<[u8]>::to_vec).unwrap_or_default();
        let node = config.node_id.clone();
        let read = match tokio::task::spawn_blocking(move || read_record(raw, &node)).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "Feed bridge: reading a record failed; skipped.");
                continue;
            }
        };
        let events = match read {
            Inbound::Own => continue,
            Inbound::Bad(body, e) => {
                dead_letter(&producer, &msg, &body, &e).await;
                continue;
            }
            Inbound::Events(events) => events,
        };
        let mut priced = Vec::with_capacity(events.len());
        for event in events {
            match event {
                Ok(p) => priced.push(p),
                Err((inner, e)) => dead_letter(&producer, &msg, &inner, &e).await,
            }
        }
        feed.publish_all(priced);
    }
}

/// What a `processed-events` record brings this node.
enum Inbound {
    /// This node's own record (the bulk of what it reads when it bills a lot).
    Own,
    /// Not a record: its JSON (or the body, when it does not unpack) and why.
    Bad(Vec<u8>, ActorError),
    /// Other nodes' events, each valid or refused (with its own JSON for the letter).
    Events(Vec<Result<UsagePriced, (Vec<u8>, ActorError)>>),
}

fn read_record(raw: Vec<u8>, node_id: &str) -> Inbound {
    if producer_in_prefix(&raw).as_deref() == Some(node_id) {
        // This node's own record, known from its first bytes: not unpacked nor scanned.
        return Inbound::Own;
    }
    let body = match unpack(&raw) {
        Ok(text) => text,
        Err(e) => return Inbound::Bad(raw, e),
    };
    if published_by(&body) == Some(node_id) {
        // Skipped without decoding its events.
        return Inbound::Own;
    }
    let events = match ProcessedRecord::decode(&body) {
        Ok(record) => record.into_events(),
        Err(e) => return Inbound::Bad(body.into_owned(), e),
    };
    let events = events
        .into_iter()
        .filter(|env| env.payload.node_id != node_id)
        .map(|env| match env.payload.validate() {
            // Validated just above, so `priced_of` (which only validates) does not fail.
            Ok(()) => priced_of(env).map_err(|e| (Vec::new(), e)),
            Err(e) => Err((env.encode().unwrap_or_default(), e)),
        })
        .collect();
    Inbound::Events(events)
}

/// The `producer` of a record's envelope, read without decoding the rest; `None` when the
/// body is not an envelope (the full decode then reports why).
fn published_by(body: &[u8]) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        producer: Option<&'a str>,
    }
    serde_json::from_slice::<Probe<'_>>(body).ok().and_then(|p| p.producer)
}

/// Dead-letter `payload` (the record's body, or one event of it) from record `msg`.
async fn dead_letter(producer: &KafkaProducer, msg: &OwnedMessage, payload: &[u8], why: &ActorError) {
    tracing::warn!(code = why.code(), reason = %why, partition = msg.partition(), offset = msg.offset(), "Processed event dead-lettered.");
    let by = producer.config().node_id.clone();
    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let letter = DeadLetter::new(Topic::ProcessedEvents, why.code(), &why.to_string(), payload, &by)
        .from_offset(msg.partition(), msg.offset())
        .keyed(key);
    if let Err(e) = dlq::publish(producer, Topic::ProcessedEvents, &letter, &TraceContext::none()).await {
        // Dashboards are best effort: the event stays in the database either way.
        tracing::warn!(error = %e, "Feed bridge: dead-lettering failed.");
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rust_decimal::Decimal;
    use tally_domain::{Cost, CostLine, Unit, UsageKind};
    use uuid::Uuid;

    use super::*;
    use crate::kafka::envelope::LZ4_FRAME_MAGIC;
    use crate::kafka::producer::MAX_EVENTS_PER_RECORD;

    fn event() -> UsagePriced {
        let line = |kind: UsageKind, q: i64, amount: Decimal| CostLine {
            kind,
            unit: Unit::Tokens,
            quantity: Decimal::from(q),
            unit_price: Decimal::ONE,
            price_version_id: Uuid::now_v7(),
            amount,
        };
        let lines = vec![line(UsageKind::InputTokens, 10, Decimal::new(8, 6)), line(UsageKind::OutputTokens, 5, Decimal::new(20, 6))];
        UsagePriced {
            event_id: Uuid::now_v7(),
            user_id: "alice".into(),
            thread_id: Some(Uuid::now_v7()),
            message_id: None,
            model: "claude-3-5-haiku-20241022".into(),
            occurred_at: Utc::now(),
            committed_at: Utc::now(),
            cost: Cost { total: Decimal::new(28, 6), lines },
            key_id: Some(Uuid::now_v7()),
            origin: None,
            trace: TraceContext::none(),
        }
    }

    #[test]
    fn published_records_are_the_owned_envelopes_json_byte_for_byte() {
        let a = event();
        let mut b = event();
        b.message_id = Some(Uuid::now_v7());
        let mut remote = event();
        remote.origin = Some("node-b".into());
        // Same user: one partition, one record.
        let write = vec![a.clone(), remote, b.clone()];
        let records = encode_local(&write, "node-a", 3);
        assert_eq!(records.len(), 1, "this node's two events in one record; the remote one is not published");
        let r = &records[0];
        assert!(r.body.starts_with(&LZ4_FRAME_MAGIC) || r.body.len() < crate::kafka::envelope::COMPRESS_MIN_BYTES);
        let text = unpack(&r.body).map(|t| t.into_owned()).unwrap_or_default();
        let owned = Envelope::new(r.record_id, a.occurred_at, "node-a", Batch { events: vec![processed_of(&a, "node-a"), processed_of(&b, "node-a")] });
        assert_eq!(String::from_utf8_lossy(&text), String::from_utf8_lossy(&owned.encode().unwrap_or_default()), "a batch");
        let one = encode_local(std::slice::from_ref(&a), "node-a", 3);
        let owned_one = processed_of(&a, "node-a").encode().unwrap_or_default();
        assert_eq!(one.len(), 1, "one record");
        assert_eq!(String::from_utf8_lossy(&one[0].body), String::from_utf8_lossy(&owned_one), "a lone event");
        assert_eq!(one[0].record_id, a.event_id, "a lone event's record id is its own");
    }

    #[test]
    fn a_local_event_round_trips_marked_with_its_origin() {
        let e = event();
        let env = processed_of(&e, "node-a");
        let body = env.encode().unwrap_or_default();
        let back = Envelope::<ProcessedEvent>::decode(&body).and_then(priced_of);
        let back = match back {
            Ok(b) => b,
            Err(err) => panic!("decodes: {err}"),
        };
        assert_eq!(back.origin.as_deref(), Some("node-a"), "origin is the publishing node");
        assert_eq!((back.event_id, back.cost.clone(), back.thread_id), (e.event_id, e.cost, e.thread_id), "same event, same cost lines");
    }

    #[test]
    fn a_writes_events_go_out_one_record_per_partition_and_come_back_whole() {
        let events: Vec<UsagePriced> = (0..600)
            .map(|i| {
                let mut e = event();
                e.user_id = format!("user-{}", i % 30);
                e
            })
            .collect();
        let refs: Vec<&UsagePriced> = events.iter().collect();
        let records = records_of(&refs, 3);
        assert!(records.len() <= 3 * 600usize.div_ceil(MAX_EVENTS_PER_RECORD), "few records: {}", records.len());
        let mut ids = Vec::new();
        for group in &records {
            assert!(!group.is_empty() && group.len() <= MAX_EVENTS_PER_RECORD, "bounded");
            let p = partition_for_user(&group[0].user_id, 3);
            assert!(group.iter().all(|e| partition_for_user(&e.user_id, 3) == p), "one partition per record");
            let batch = Batch { events: group.iter().map(|e| processed_of(e, "node-a")).collect() };
            let body = Envelope::new(Uuid::now_v7(), Utc::now(), "node-a", batch).encode().unwrap_or_default();
            let back = ProcessedRecord::decode(&body).map(ProcessedRecord::into_events).unwrap_or_default();
            assert_eq!(back.len(), group.len(), "the record gives back its events");
            ids.extend(back.into_iter().map(|e| e.event_id));
        }
        let mut expected: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        ids.sort_unstable();
        expected.sort_unstable();
        assert_eq!(ids, expected, "every event exactly once");
    }

    #[test]
    fn a_records_publisher_is_read_without_decoding_it() {
        let one = processed_of(&event(), "node-a").encode().unwrap_or_default();
        assert_eq!(published_by(&one), Some("node-a"), "a single-event record");
        let batch = Batch { events: vec![processed_of(&event(), "node-a")] };
        let many = Envelope::new(Uuid::now_v7(), Utc::now(), "node-b", batch).encode().unwrap_or_default();
        assert_eq!(published_by(&many), Some("node-b"), "a batch names its publisher on the outside");
        assert_eq!(published_by(b"{not json"), None, "garbage");
        assert_eq!(published_by(br#"{"producer":7}"#), None, "not a name");
    }

    #[test]
    fn inconsistent_or_bad_records_are_refused() {
        let mut env = processed_of(&event(), "node-a");
        env.payload.cost_total += Decimal::ONE;
        assert_eq!(priced_of(env).err().map(|e| e.code()), Some("inconsistent_cost"), "total must equal the lines");
        let mut env = processed_of(&event(), "node-a");
        env.payload.user_id = String::new();
        assert_eq!(priced_of(env).err().map(|e| e.code()), Some("invalid_user_id"), "user id required");
        let mut env = processed_of(&event(), "node-a");
        env.payload.user_id = "two words".into();
        assert_eq!(priced_of(env).err().map(|e| e.code()), Some("invalid_user_id"), "the HTTP API's character set");
        assert!(Envelope::<ProcessedEvent>::decode(b"{not json").is_err(), "garbage is refused");
    }
}
