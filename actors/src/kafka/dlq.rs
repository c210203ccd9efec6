//! Dead letters: records that could not be used, kept on `<topic>.dlq` with the reason; list and replay them.
//!
//! A dead letter's body is a JSON [`DeadLetter`] (the reason, where the record came
//! from, and the original body as text); its headers repeat the reason code and text
//! so tools can filter without parsing. Replaying republishes the original body to
//! its source topic with its key: consumers dedupe on event id, so replaying twice
//! bills nothing twice.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tally_observability::TraceContext;
use uuid::Uuid;

use crate::error::ActorError;
use crate::kafka::config::KafkaConfig;
use crate::kafka::kafka_error;
use crate::kafka::producer::{Delivered, Destination, KafkaProducer};
use crate::kafka::topics::{partitions_of, Topic};

/// Header: the reason's stable code.
pub const HEADER_DLQ_CODE: &str = "tally-dlq-code";
/// Header: the reason in words.
pub const HEADER_DLQ_REASON: &str = "tally-dlq-reason";
/// Header: the topic the record was meant for.
pub const HEADER_DLQ_SOURCE: &str = "tally-dlq-source";
/// How long listing waits for metadata and each fetch.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reason kept (a reason quoting a huge body is cut).
const MAX_REASON_LEN: usize = 1_000;

/// A record that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Topic the record was meant for (without prefix), e.g. `inference-events`.
    pub source_topic: String,
    /// Partition it was read from, when it was read from Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_partition: Option<i32>,
    /// Offset it was read from, when it was read from Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_offset: Option<i64>,
    /// Stable reason code (`invalid_envelope`, `no_price`, `negative_quantity`, ...).
    pub code: String,
    /// The reason in words.
    pub reason: String,
    /// Record key (user id on usage topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Event id, when the record had a usable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// The original body as text (lossy if it was not UTF-8).
    pub payload: String,
    /// Who dead-lettered it.
    pub dead_lettered_by: String,
    /// When.
    pub dead_lettered_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A dead letter for `payload` meant for `topic`.
    pub fn new(topic: Topic, code: &str, reason: &str, payload: &[u8], by: &str) -> Self {
        let mut reason = reason.to_string();
        if reason.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        DeadLetter {
            source_topic: topic.name().into(),
            source_partition: None,
            source_offset: None,
            code: code.into(),
            reason,
            key: None,
            event_id: None,
            payload: String::from_utf8_lossy(payload).into_owned(),
            dead_lettered_by: by.into(),
            dead_lettered_at: Utc::now(),
        }
    }

    /// Where it was read from.
    pub fn from_offset(mut self, partition: i32, offset: i64) -> Self {
        self.source_partition = Some(partition);
        self.source_offset = Some(offset);
        self
    }

    /// With its key.
    pub fn keyed(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    /// With its event id.
    pub fn with_event_id(mut self, id: Option<Uuid>) -> Self {
        self.event_id = id;
        self
    }
}

/// A dead letter as listed: where it sits on the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// Dead-letter topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Publish a dead letter to `<topic>.dlq` in a `kafka.produce` span (see
/// [`KafkaProducer::send_traced`]); resolves once the broker acknowledged it.
pub async fn publish(producer: &KafkaProducer, topic: Topic, letter: &DeadLetter, trace: &TraceContext) -> Result<Delivered, ActorError> {
    let body = serde_json::to_vec(letter)
        .map_err(|e| ActorError::Invalid { code: "invalid_dead_letter", message: format!("encoding a dead letter: {e}") })?;
    let headers = OwnedHeaders::new_with_capacity(5)
        .insert(Header { key: HEADER_DLQ_CODE, value: Some(letter.code.as_bytes()) })
        .insert(Header { key: HEADER_DLQ_REASON, value: Some(letter.reason.as_bytes()) })
        .insert(Header { key: HEADER_DLQ_SOURCE, value: Some(letter.source_topic.as_bytes()) });
    let key = letter.key.clone().or_else(|| letter.event_id.map(|i| i.to_string())).unwrap_or_default();
    let dlq = producer.config().dlq_topic(topic);
    producer.send_traced(Destination::topic(&dlq), &key, &body, headers, letter.event_id, trace).await
}

/// Read every dead letter of `topic` (from the start of `<topic>.dlq` to its end now), at most `limit`.
/// Blocking: call it from a blocking thread. Commits nothing (a throwaway reader, no group offsets).
pub fn list(config: &KafkaConfig, topic: Topic, limit: usize) -> Result<Vec<DeadLetterRecord>, ActorError> {
    config.validate()?;
    let name = config.dlq_topic(topic);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap())
        .set("group.id", format!("{}-dlq-reader-{}", config.node_id, Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| kafka_error("creating the dead-letter reader", &e))?;
    let partitions = partitions_of(&consumer, &name, LIST_TIMEOUT)?;
    if partitions.is_empty() {
        return Err(ActorError::NotFound(format!("dead-letter topic {name}")));
    }
    // Read each partition up to its end as of now.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&name, *p, LIST_TIMEOUT).map_err(|e| kafka_error("reading watermarks", &e))?;
        if high > low {
            ends.insert(*p, high);
            tpl.add_partition_offset(&name, *p, Offset::Offset(low)).map_err(|e| kafka_error("assigning", &e))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| kafka_error("assigning dead-letter partitions", &e))?;
    let deadline = std::time::Instant::now() + LIST_TIMEOUT * 3;
    while !ends.is_empty() && out.len() < limit {
        if std::time::Instant::now() > deadline {
            return Err(ActorError::Unavailable(format!("timed out reading {name}")));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else { continue };
        let msg = msg.map_err(|e| kafka_error("reading dead letters", &e))?;
        let (p, off) = (msg.partition(), msg.offset());
        if ends.get(&p).is_some_and(|end| off + 1 >= *end) {
            ends.remove(&p);
        }
        let letter = match msg.payload().map(serde_json::from_slice::<DeadLetter>) {
            Some(Ok(l)) => l,
            // Not written by this bridge: show it as it is rather than hide it.
            other => {
                let why = match other {
                    Some(Err(e)) => format!("not a dead letter: {e}"),
                    _ => "empty record".to_string(),
                };
                DeadLetter::new(topic, "unreadable_dead_letter", &why, msg.payload().unwrap_or_default(), "unknown")
            }
        };
        out.push(DeadLetterRecord { topic: name.clone(), partition: p, offset: off, letter });
    }
    out.sort_by_key(|r| (r.letter.dead_lettered_at, r.partition, r.offset));
    Ok(out)
}

/// Write the dead letters of `topic` to `out` as JSON lines (what `tally dlq list` prints); returns how many.
/// Blocking, like [`list`].
pub fn write_json_lines(config: &KafkaConfig, topic: Topic, limit: usize, out: &mut impl std::io::Write) -> Result<usize, ActorError> {
    let letters = list(config, topic, limit)?;
    let io = |e: std::io::Error| ActorError::Unavailable(format!("writing dead letters: {e}"));
    for l in &letters {
        let line = serde_json::to_string(l).map_err(|e| ActorError::Invalid { code: "invalid_dead_letter", message: e.to_string() })?;
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(letters.len())
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Records republished to their source topic.
    pub replayed: usize,
    /// Records left alone (filtered out, or without an event id: replaying them would only dead-letter them again).
    pub skipped: usize,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, r#"{{"replayed":{},"skipped":{}}}"#, self.replayed, self.skipped)
    }
}

/// Republish the dead letters of `topic` (those with `code`, when given) to the source topic.
pub async fn replay(producer: &KafkaProducer, topic: Topic, code: Option<&str>, limit: usize) -> Result<ReplayReport, ActorError> {
    let config = producer.config().clone();
    let letters = tokio::task::spawn_blocking(move || list(&config, topic, limit))
        .await
        .map_err(|e| ActorError::Unavailable(format!("dead-letter reader failed: {e}")))??;
    let mut report = ReplayReport::default();
    let source = producer.config().topic(topic);
    let mut pending = Vec::new();
    for r in letters {
        let l = r.letter;
        if code.is_some_and(|c| c != l.code) || l.event_id.is_none() {
            report.skipped += 1;
            continue;
        }
        let key = l.key.clone().unwrap_or_default();
        pending.push(producer.send(&source, &key, l.payload.as_bytes(), OwnedHeaders::new()));
    }
    for r in futures::future::join_all(pending).await {
        r?;
        report.replayed += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_and_cut_long_reasons() {
        let l = DeadLetter::new(Topic::InferenceEvents, "no_price", &"x".repeat(5_000), b"{\"a\":1}", "node-1")
            .from_offset(2, 40)
            .keyed(Some("alice".into()));
        assert_eq!(l.reason.len(), MAX_REASON_LEN, "reason cut to the limit");
        let json = serde_json::to_string(&l).unwrap_or_default();
        let back: Option<DeadLetter> = serde_json::from_str(&json).ok();
        assert_eq!(back.as_ref(), Some(&l), "round trip");
        assert_eq!(l.payload, "{\"a\":1}", "payload kept as text");
        assert_eq!(l.source_topic, "inference-events", "source topic without prefix");
    }
}
