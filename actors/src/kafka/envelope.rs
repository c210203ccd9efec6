//! The typed envelope every bridged record travels in, and the payloads of the usage topics.
//!
//! Body: JSON `{schema_version, event_id, occurred_at, producer, payload}`. Headers carry
//! the W3C trace context when the sender had one (`traceparent`, and `tracestate` only when
//! it is not empty) and nothing else, see [`Envelope::headers`].
//! Decoding never panics: a malformed body or an unknown version is an
//! `ActorError::Invalid` with a stable code.
//!
//! On the usage topics a body of [`COMPRESS_MIN_BYTES`] or more (a packed record) is
//! published as an LZ4 frame of that JSON ([`pack`]); readers tell the two apart by the
//! frame's magic number ([`unpack`]), so plain JSON records (lone events, `tally dlq
//! replay`, other producers) stay valid. Kafka's own `compression.type` is not used: tansu
//! 0.6 unpacks and repacks compressed batches itself, which cut what it accepted from
//! ~70k to ~19k events/s; a compressed value is opaque bytes to it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tally_domain::{Cost, Usage};
use tally_observability::TraceContext;
use uuid::Uuid;

use crate::billing::UsageEvent;
use crate::error::ActorError;

/// Version of the envelope and payload layout this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Header: W3C trace context of the span that produced the record.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Longest accepted user id in a payload (same rule as the HTTP API).
pub const MAX_USER_ID_LEN: usize = 64;
/// Longest accepted model name in a payload.
pub const MAX_MODEL_LEN: usize = 128;

/// A record: metadata plus a typed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Layout version ([`SCHEMA_VERSION`] when written by this build).
    pub schema_version: u32,
    /// Unique event id (UUIDv7, or derived from an idempotency key); consumers dedupe on it.
    pub event_id: Uuid,
    /// When the thing happened.
    pub occurred_at: DateTime<Utc>,
    /// Node or collector that produced the record.
    pub producer: String,
    /// The message itself.
    pub payload: T,
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: Option<u32>,
}

impl<T: Serialize> Envelope<T> {
    /// A current-version envelope (its payload may borrow: only decoding needs an owned one).
    pub fn new(
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        producer: impl Into<String>,
        payload: T,
    ) -> Self {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id,
            occurred_at,
            producer: producer.into(),
            payload,
        }
    }

    /// The JSON body.
    pub fn encode(&self) -> Result<Vec<u8>, ActorError> {
        serde_json::to_vec(self).map_err(|e| ActorError::Invalid {
            code: "invalid_envelope",
            message: format!("encoding envelope: {e}"),
        })
    }
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    /// Decode a body; unknown versions and malformed bodies are reported with distinct codes.
    pub fn decode(body: &[u8]) -> Result<Self, ActorError> {
        match serde_json::from_slice::<Envelope<T>>(body) {
            Ok(env) if env.schema_version == SCHEMA_VERSION => Ok(env),
            Ok(env) => Err(unknown_version(env.schema_version)),
            Err(e) => match serde_json::from_slice::<VersionProbe>(body) {
                Ok(VersionProbe {
                    schema_version: Some(v),
                }) if v != SCHEMA_VERSION => Err(unknown_version(v)),
                _ => Err(ActorError::Invalid {
                    code: "invalid_envelope",
                    message: format!("undecodable envelope: {e}"),
                }),
            },
        }
    }

    /// Headers for this record: the trace context when there is one (`traceparent`, plus
    /// `tracestate` only when it is not empty), nothing otherwise.
    ///
    /// The schema version and event id travel only in the body: tansu 0.6 keeps headers in a
    /// table without an index and scans it for every record it serves, so each header on every
    /// record makes consuming quadratically slower (measured: a 20k-event run collapsed to
    /// ~100 events/s with three headers per record).
    pub fn headers(&self, trace: &TraceContext) -> OwnedHeaders {
        with_trace(OwnedHeaders::new(), trace)
    }
}

/// `headers` plus the trace context (`traceparent`, and `tracestate` only when not empty);
/// `headers` unchanged when `trace` is empty.
pub fn with_trace(headers: OwnedHeaders, trace: &TraceContext) -> OwnedHeaders {
    trace
        .to_headers()
        .iter()
        .fold(headers, |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

/// The trace context a record carries (empty when it has none or it is malformed).
pub fn trace_of<H: Headers>(headers: Option<&H>) -> TraceContext {
    match headers {
        Some(h) => TraceContext::from_headers(h.iter().filter_map(|h| Some((h.key, h.value?)))),
        None => TraceContext::none(),
    }
}

/// The first bytes of an LZ4 frame: its magic number 0x184D2204, little-endian.
pub const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];
/// Usage-topic bodies at least this long are published as LZ4 frames (in practice: packed
/// records; one event's JSON is well under it).
pub const COMPRESS_MIN_BYTES: usize = 4 << 10;
/// The longest body a compressed record may unpack to; a longer one is refused
/// (`record_too_large`) without unpacking the rest. A full packed record is ~75 KB
/// (`inference-events`) to ~170 KB (`processed-events`) of JSON.
pub const MAX_UNPACKED_BYTES: usize = 16 << 20;

/// `body` as published on a usage topic: as is below [`COMPRESS_MIN_BYTES`], else an LZ4
/// frame of it. Packed JSON shrinks ~5-8x (its keys and ids repeat), so the broker stores,
/// copies and serves that much less.
pub fn pack(body: Vec<u8>) -> Vec<u8> {
    if body.len() < COMPRESS_MIN_BYTES {
        return body;
    }
    // 64 KiB blocks: a reader that wants only the start (`producer_in_prefix`) unpacks one.
    let info = lz4_flex::frame::FrameInfo::new().block_size(lz4_flex::frame::BlockSize::Max64KB);
    let mut frame = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(body.len() / 4));
    let written = std::io::Write::write_all(&mut frame, &body).map_err(lz4_flex::frame::Error::from);
    match written.and_then(|()| frame.finish()) {
        Ok(packed) => packed,
        // Writing into a Vec does not fail; should the encoder, the JSON goes as is.
        Err(_) => body,
    }
}

/// The JSON of a record body: `body` itself, or what its LZ4 frame unpacks to (at most
/// [`MAX_UNPACKED_BYTES`]). A frame that does not unpack is `invalid_compression`.
pub fn unpack(body: &[u8]) -> Result<Cow<'_, [u8]>, ActorError> {
    if !body.starts_with(&LZ4_FRAME_MAGIC) {
        return Ok(Cow::Borrowed(body));
    }
    let limit = u64::try_from(MAX_UNPACKED_BYTES).unwrap_or(u64::MAX);
    let mut text = Vec::with_capacity(body.len().saturating_mul(6).min(MAX_UNPACKED_BYTES));
    let read = lz4_flex::frame::FrameDecoder::new(body).take(limit + 1).read_to_end(&mut text);
    match read {
        Ok(n) if n > MAX_UNPACKED_BYTES => Err(ActorError::Invalid {
            code: "record_too_large",
            message: format!("the record unpacks to more than {MAX_UNPACKED_BYTES} bytes"),
        }),
        Ok(0) => Err(ActorError::Invalid { code: "invalid_compression", message: "the LZ4 frame holds no data".into() }),
        Ok(_) => Ok(Cow::Owned(text)),
        Err(e) => Err(ActorError::Invalid { code: "invalid_compression", message: format!("undecodable LZ4 frame: {e}") }),
    }
}

/// How much of a record's JSON [`producer_in_prefix`] looks at.
const PREFIX_BYTES: usize = 256;

/// The `producer` of a record written by this build, read from the start of its JSON alone
/// (for a compressed record, its first block is unpacked, not the rest). `None` unless the
/// start is exactly this build's layout, `{"schema_version":N,"event_id":"<uuid>",
/// "occurred_at":"<time>","producer":"<name>"`, with a name of letters, digits, `.`, `_`,
/// `-`; the caller then reads the whole record. Lets a node skip its own records on
/// `processed-events` without unpacking and scanning each (~0.2 ms for 250 events).
pub fn producer_in_prefix(body: &[u8]) -> Option<String> {
    let mut buf = [0u8; PREFIX_BYTES];
    let text: &[u8] = if body.starts_with(&LZ4_FRAME_MAGIC) {
        let mut frame = lz4_flex::frame::FrameDecoder::new(body);
        let mut n = 0;
        while n < buf.len() {
            match frame.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        &buf[..n]
    } else {
        &body[..body.len().min(PREFIX_BYTES)]
    };
    fn take_while(s: &[u8], ok: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
        let n = s.iter().take_while(|b| ok(**b)).count();
        s.split_at(n)
    }
    let rest = text.strip_prefix(br#"{"schema_version":"#)?;
    let (version, rest) = take_while(rest, |b| b.is_ascii_digit());
    let rest = rest.strip_prefix(br#","event_id":""#).filter(|_| !version.is_empty())?;
    let (id, rest) = take_while(rest, |b| b.is_ascii_hexdigit() || b == b'-');
    let rest = rest.strip_prefix(br#"","occurred_at":""#).filter(|_| id.len() == 36)?;
    let (at, rest) = take_while(rest, |b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'+' | b'-'));
    let rest = rest.strip_prefix(br#"","producer":""#).filter(|_| !at.is_empty())?;
    let (name, rest) = take_while(rest, |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || !rest.starts_with(b"\"") {
        return None;
    }
    String::from_utf8(name.to_vec()).ok()
}

fn unknown_version(v: u32) -> ActorError {
    ActorError::Invalid {
        code: "unknown_schema_version",
        message: format!(
            "envelope schema version {v} is not supported (this build reads {SCHEMA_VERSION})"
        ),
    }
}

/// The value of a text header, if present and valid UTF-8.
pub fn header_str<'a, H: Headers>(headers: Option<&'a H>, key: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A user id as the HTTP API accepts it: 1-[`MAX_USER_ID_LEN`] bytes of ASCII letters, digits
/// and `_ . @ -`. Records from the broker are held to the same rule.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && user_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

/// Longest label (task, source, provider).
pub const MAX_LABEL_LEN: usize = 64;

/// A label (task, source, provider) as the ingest API accepts it: 1-[`MAX_LABEL_LEN`] bytes of
/// ASCII letters, digits and `_ - . :`.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Payload of `inference-events`: usage to bill, keyed by user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceEvent {
    /// Billed user.
    pub user_id: String,
    /// Model name as priced in the catalogue.
    pub model: String,
    /// Provider, when the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `token_usage`, `image_generation`, ...
    pub event_type: String,
    /// Quantities by kind (decimal strings).
    pub usage: Usage,
    /// Thread, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<Uuid>,
    /// Message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// Where it came from (`ingest`, `chat`, `import:...`).
    pub source: String,
    /// Client idempotency key, kept for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Task label for analytics, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Whether the call succeeded (absent: it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_successful: Option<bool>,
}

impl InferenceEvent {
    /// Validate and turn an envelope into the BillingActor's usage event.
    pub fn into_usage_event(env: Envelope<InferenceEvent>) -> Result<UsageEvent, ActorError> {
        let p = env.payload;
        // One rule for text on every backend (PostgreSQL cannot store NUL): such an event is
        // dead-lettered with `invalid_text`, never handed to the persister.
        for (field, value) in [
            ("user_id", Some(p.user_id.as_str())),
            ("model", Some(p.model.as_str())),
            ("provider", p.provider.as_deref()),
            ("event_type", Some(p.event_type.as_str())),
            ("source", Some(p.source.as_str())),
            ("idempotency_key", p.idempotency_key.as_deref()),
            ("task", p.task.as_deref()),
        ] {
            if let Some(v) = value {
                tally_domain::text::check_text(field, v)?;
            }
        }
        let invalid = |code: &'static str, message: String| ActorError::Invalid { code, message };
        let user_ok = valid_user_id(&p.user_id);
        if !user_ok {
            return Err(invalid(
                "invalid_user_id",
                format!("user id {:?} is not valid", p.user_id),
            ));
        }
        if p.model.is_empty() || p.model.len() > MAX_MODEL_LEN {
            return Err(invalid(
                "invalid_model",
                format!("model {:?} is not valid", p.model),
            ));
        }
        if p.task.as_deref().is_some_and(|t| !valid_label(t)) {
            return Err(invalid("invalid_task", format!("task {:?} is not a valid label", p.task)));
        }
        p.usage.validate()?;
        if p.usage.is_empty() {
            return Err(invalid("empty_usage", "the event has no quantities".into()));
        }
        Ok(UsageEvent {
            event_id: env.event_id,
            user_id: p.user_id,
            thread_id: p.thread_id,
            message_id: p.message_id,
            model: p.model,
            occurred_at: env.occurred_at,
            usage: p.usage,
            source: p.source,
            idempotency_key: p.idempotency_key,
            key_id: None,
            task: p.task,
            successful: p.was_successful.unwrap_or(true),
        })
    }
}

/// Payload of a record that carries several events of one topic: on `inference-events`,
/// those of one ingest request whose users share a partition
/// ([`crate::kafka::producer::partition_for_user`]); on `processed-events`, those of one
/// write. Each keeps its own envelope (its own event id, time and producer). The broker
/// stores and serves one record instead of one per event; consumers still see, dedupe and
/// dead-letter every event on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "T: DeserializeOwned"))]
pub struct Batch<T> {
    /// The events, in order.
    pub events: Vec<Envelope<T>>,
}

/// A batch of `inference-events`.
pub type InferenceBatch = Batch<InferenceEvent>;
/// A record of `inference-events`.
pub type InferenceRecord = Record<InferenceEvent>;
/// A batch of `processed-events`.
pub type ProcessedBatch = Batch<ProcessedEvent>;
/// A record of `processed-events`.
pub type ProcessedRecord = Record<ProcessedEvent>;

/// A record of a usage topic: one event, or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<T> {
    /// One event per record (lone events, `tally dlq replay`, other producers).
    One(Envelope<T>),
    /// Several events in one record.
    Many(Envelope<Batch<T>>),
}

impl<T: Serialize + DeserializeOwned> Record<T> {
    /// Decode a record body. A body that is neither layout is reported with the single-event
    /// layout's error (unknown version, or undecodable).
    ///
    /// The packed layout is tried first: a packed record then takes one pass over its JSON,
    /// and a single-event record fails it at its payload's first key (`Batch` allows only
    /// `events`). Trying the single layout first cost packed records two more passes (the
    /// failed attempt, then the version probe): a record of 250 events decodes in ~410 us
    /// instead of ~475-560 us.
    ///
    /// A compressed body is unpacked first ([`unpack`], whose codes it reports).
    pub fn decode(body: &[u8]) -> Result<Self, ActorError> {
        let body = unpack(body)?;
        match serde_json::from_slice::<Envelope<Batch<T>>>(&body) {
            Ok(env) if env.schema_version == SCHEMA_VERSION => Ok(Record::Many(env)),
            _ => Envelope::<T>::decode(&body).map(Record::One),
        }
    }

    /// The events it carries.
    pub fn into_events(self) -> Vec<Envelope<T>> {
        match self {
            Record::One(env) => vec![env],
            Record::Many(env) => env.payload.events,
        }
    }
}

/// Payload of `processed-events`: a usage event after it was priced and stored, published
/// once by the node that stored it (other nodes fold it into their live dashboards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedEvent {
    /// Billed user.
    pub user_id: String,
    /// Model.
    pub model: String,
    /// Exact cost (JSON string).
    pub cost_total: Decimal,
    /// True when the event had been billed before (a redelivery): nothing new was billed.
    pub duplicate: bool,
    /// When the billing node saw it durable.
    pub priced_at: DateTime<Utc>,
    /// Billing node.
    pub node_id: String,
    /// Thread, when the usage came from a chat.
    #[serde(default)]
    pub thread_id: Option<Uuid>,
    /// Message the usage belongs to.
    #[serde(default)]
    pub message_id: Option<Uuid>,
    /// Cost by kind (lines and exact total); `cost.total` equals `cost_total`.
    #[serde(default)]
    pub cost: Cost,
    /// The gateway's virtual key, when the usage came through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
}

impl ProcessedEvent {
    /// Check a received payload: ids, lines that add up to the total.
    pub fn validate(&self) -> Result<(), ActorError> {
        let invalid =
            |code: &'static str, message: String| Err(ActorError::Invalid { code, message });
        tally_domain::text::check_text("model", &self.model)?;
        if !valid_user_id(&self.user_id) {
            return invalid("invalid_user_id", format!("user id {:?} is not valid", self.user_id));
        }
        if self.model.is_empty() || self.model.len() > MAX_MODEL_LEN {
            return invalid(
                "invalid_model",
                format!("model must be 1-{MAX_MODEL_LEN} bytes"),
            );
        }
        let sum: Decimal = self.cost.lines.iter().map(|l| l.amount).sum();
        if sum != self.cost.total || self.cost.total != self.cost_total {
            return invalid(
                "inconsistent_cost",
                format!(
                    "lines sum to {sum}, cost.total is {}, cost_total is {}",
                    self.cost.total, self.cost_total
                ),
            );
        }
        if self
            .cost
            .lines
            .iter()
            .any(|l| l.quantity.is_sign_negative() || l.amount.is_sign_negative())
        {
            return invalid(
                "negative_quantity",
                "cost lines must not be negative".into(),
            );
        }
        Ok(())
    }
}

/// Payload of `raw-messages` (user messages) and `llm-responses` (model replies): a chat
/// message once it is stored, keyed by thread.
pub type ChatMessageRecord = tally_store::MessageRecord;

/// Payload of `token-metrics`: the tokens and cost of one model reply, keyed by thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenMetrics {
    /// Thread of the reply.
    pub thread_id: Uuid,
    /// The reply (assistant message).
    pub message_id: Uuid,
    /// Billed user.
    pub user_id: String,
    /// Model that answered.
    pub model: String,
    /// The usage event that billed it.
    pub usage_event_id: Uuid,
    /// Quantities by kind (decimal strings).
    pub usage: BTreeMap<String, Decimal>,
    /// Cost by kind and exact total.
    pub cost: Cost,
    /// True when the reply came from the built-in simulator.
    pub simulated: bool,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rdkafka::message::OwnedHeaders;
    use tally_domain::UsageKind;

    use super::*;

    fn sample() -> Envelope<InferenceEvent> {
        let mut usage = Usage::new();
        usage.add_tokens(UsageKind::InputTokens, 12);
        let payload = InferenceEvent {
            user_id: "alice".into(),
            model: "claude-3-5-haiku-20241022".into(),
            provider: None,
            event_type: "token_usage".into(),
            usage,
            thread_id: None,
            message_id: None,
            source: "ingest".into(),
            idempotency_key: Some("k1".into()),
            task: None,
            was_successful: None,
        };
        Envelope::new(Uuid::now_v7(), Utc::now(), "collector-1", payload)
    }

    #[test]
    fn task_and_success_reach_the_usage_event_and_bad_tasks_are_refused() {
        let mut env = sample();
        env.payload.task = Some("summarize".into());
        env.payload.was_successful = Some(false);
        let ev = InferenceEvent::into_usage_event(env.clone()).ok();
        assert_eq!(
            ev.map(|e| (e.task, e.successful)),
            Some((Some("summarize".to_string()), false)),
            "task and failure carried"
        );
        env.payload.task = Some("no spaces allowed".into());
        let code = InferenceEvent::into_usage_event(env).err().map(|e| match e {
            ActorError::Invalid { code, .. } => code,
            _ => "other",
        });
        assert_eq!(code, Some("invalid_task"), "a bad task is dead-lettered with its code");
        assert!(InferenceEvent::into_usage_event(sample()).is_ok_and(|e| e.successful), "absent: successful");
    }

    #[test]
    fn nul_in_any_text_field_is_refused_as_invalid_text_before_persisting() {
        type Set = fn(&mut InferenceEvent);
        let cases: [(&str, Set); 6] = [
            ("model", |p| p.model = "claude\0".into()),
            ("provider", |p| p.provider = Some("anth\0ropic".into())),
            ("event_type", |p| p.event_type = "token\0usage".into()),
            ("source", |p| p.source = "in\0gest".into()),
            ("idempotency_key", |p| p.idempotency_key = Some("k\0-1".into())),
            ("task", |p| p.task = Some("t\0".into())),
        ];
        for (field, set) in cases {
            let mut env = sample();
            set(&mut env.payload);
            let code = InferenceEvent::into_usage_event(env).err().map(|e| e.code());
            assert_eq!(code, Some("invalid_text"), "NUL in {field} is refused (dead-lettered) as invalid_text");
        }
        assert!(InferenceEvent::into_usage_event(sample()).is_ok(), "the same event without NUL is billed");
    }

    #[test]
    fn round_trips() {
        let env = sample();
        let body = env.encode().unwrap_or_default();
        let back = Envelope::<InferenceEvent>::decode(&body).ok();
        assert_eq!(back.as_ref(), Some(&env), "decode(encode(e)) == e");
        let text = String::from_utf8(body).unwrap_or_default();
        assert!(
            text.contains(r#""input_tokens":"12""#),
            "quantities travel as decimal strings: {text}"
        );
    }

    #[test]
    fn a_record_holds_one_event_or_a_batch() {
        let (a, b) = (sample(), sample());
        let one = a.encode().unwrap_or_default();
        assert_eq!(
            InferenceRecord::decode(&one).ok(),
            Some(InferenceRecord::One(a.clone())),
            "one event"
        );
        let batch = Envelope::new(
            Uuid::now_v7(),
            Utc::now(),
            "collector-1",
            InferenceBatch {
                events: vec![a.clone(), b.clone()],
            },
        );
        let many = batch.encode().unwrap_or_default();
        let events = InferenceRecord::decode(&many)
            .map(InferenceRecord::into_events)
            .ok();
        assert_eq!(
            events,
            Some(vec![a, b]),
            "a batch gives its events in order"
        );
        let err = InferenceRecord::decode(b"{\"schema_version\":1,\"payload\":{\"events\":7}}")
            .err()
            .map(|e| e.code());
        assert_eq!(err, Some("invalid_envelope"), "neither layout");
        let mut v = serde_json::to_value(&batch).unwrap_or_default();
        v["schema_version"] = 99.into();
        let err = InferenceRecord::decode(&serde_json::to_vec(&v).unwrap_or_default())
            .err()
            .map(|e| e.code());
        assert_eq!(
            err,
            Some("unknown_schema_version"),
            "a batch of a future version is named by version"
        );
    }

    #[test]
    fn packed_records_travel_compressed_and_decode_the_same() {
        let events: Vec<_> = (0..50).map(|_| sample()).collect();
        let batch = Envelope::new(Uuid::now_v7(), Utc::now(), "collector-1", InferenceBatch { events: events.clone() });
        let json = batch.encode().unwrap_or_default();
        assert!(json.len() >= COMPRESS_MIN_BYTES, "50 events make a body worth compressing ({} bytes)", json.len());
        let packed = pack(json.clone());
        assert!(packed.starts_with(&LZ4_FRAME_MAGIC), "an LZ4 frame");
        assert!(packed.len() * 4 < json.len(), "repeated keys and ids shrink: {} -> {} bytes", json.len(), packed.len());
        assert_eq!(unpack(&packed).map(|t| t.into_owned()).ok(), Some(json.clone()), "unpacks to the JSON");
        assert_eq!(
            InferenceRecord::decode(&packed).map(InferenceRecord::into_events).ok(),
            Some(events),
            "a compressed record decodes like the JSON"
        );
        // Small bodies and plain JSON are left alone, and still decode.
        let one = sample().encode().unwrap_or_default();
        assert_eq!(pack(one.clone()), one, "one event stays JSON");
        assert!(matches!(unpack(&one), Ok(std::borrow::Cow::Borrowed(_))), "JSON is read in place");
    }

    #[test]
    fn the_producer_is_read_from_the_start_of_a_record() {
        let events: Vec<_> = (0..600).map(|_| sample()).collect();
        let batch = Envelope::new(Uuid::now_v7(), Utc::now(), "node-a_1.x", InferenceBatch { events });
        let json = batch.encode().unwrap_or_default();
        let packed = pack(json.clone());
        assert!(json.len() > 128 << 10, "several 64 KiB blocks: {} bytes", json.len());
        assert_eq!(producer_in_prefix(&packed).as_deref(), Some("node-a_1.x"), "compressed");
        assert_eq!(producer_in_prefix(&json).as_deref(), Some("node-a_1.x"), "plain");
        let one = Envelope::new(Uuid::now_v7(), Utc::now(), "collector-1", sample().payload).encode().unwrap_or_default();
        assert_eq!(producer_in_prefix(&one).as_deref(), Some("collector-1"), "a lone event");
        // Anything but this build's exact layout is left to the full decode.
        for other in [
            br#"{"producer":"node-a","schema_version":1}"#.to_vec(),
            br#"{"schema_version":1,"event_id":"x","occurred_at":"2025-01-01T00:00:00Z","producer":"node-a"}"#.to_vec(),
            br#"{"schema_version":1,"event_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","occurred_at":"2025-01-01T00:00:00Z","producer":"node\u002da"}"#.to_vec(),
            br#"{"schema_version":1,"event_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","occurred_at":"2025-01-01T00:00:00Z","producer":"node-a"#.to_vec(),
            LZ4_FRAME_MAGIC.to_vec(),
            Vec::new(),
        ] {
            assert_eq!(producer_in_prefix(&other), None, "{}", String::from_utf8_lossy(&other));
        }
    }

    #[test]
    fn broken_or_oversized_frames_are_refused_with_codes() {
        let packed = pack(vec![b' '; 64 << 10]);
        let mut cut = packed.clone();
        cut.truncate(packed.len() / 2);
        let code = |b: &[u8]| InferenceRecord::decode(b).err().map(|e| e.code());
        assert_eq!(code(&cut), Some("invalid_compression"), "a truncated frame");
        assert_eq!(code(&LZ4_FRAME_MAGIC), Some("invalid_compression"), "the magic alone");
        // A small frame that unpacks past the limit is stopped at the limit, not unpacked whole.
        let bomb = pack(vec![b' '; MAX_UNPACKED_BYTES + 1]);
        assert!(bomb.len() < MAX_UNPACKED_BYTES / 100, "{} bytes", bomb.len());
        assert_eq!(code(&bomb), Some("record_too_large"), "an oversized record");
        let fits = pack(vec![b' '; MAX_UNPACKED_BYTES]);
        assert_eq!(unpack(&fits).map(|t| t.len()).ok(), Some(MAX_UNPACKED_BYTES), "exactly the limit unpacks");
    }

    #[test]
    fn unknown_version_and_garbage_are_reported() {
        let mut v = serde_json::to_value(sample()).unwrap_or_default();
        v["schema_version"] = 99.into();
        let body = serde_json::to_vec(&v).unwrap_or_default();
        let err = Envelope::<InferenceEvent>::decode(&body)
            .err()
            .map(|e| e.code());
        assert_eq!(
            err,
            Some("unknown_schema_version"),
            "a future version is named as such"
        );
        v["payload"] = serde_json::json!({"new_shape": true});
        let body = serde_json::to_vec(&v).unwrap_or_default();
        let err = Envelope::<InferenceEvent>::decode(&body)
            .err()
            .map(|e| e.code());
        assert_eq!(
            err,
            Some("unknown_schema_version"),
            "a future version with a new payload is still named by version"
        );
        for garbage in [
            &b"not json"[..],
            b"{}",
            b"[1,2]",
            b"",
            b"{\"schema_version\":1}",
        ] {
            let err = Envelope::<InferenceEvent>::decode(garbage)
                .err()
                .map(|e| e.code());
            assert_eq!(
                err,
                Some("invalid_envelope"),
                "garbage {garbage:?} is invalid_envelope, not a panic"
            );
        }
    }

    #[test]
    fn validation_refuses_bad_payloads() {
        let mut env = sample();
        env.payload.user_id = "bad user".into();
        assert_eq!(
            InferenceEvent::into_usage_event(env)
                .err()
                .map(|e| e.code()),
            Some("invalid_user_id"),
            "user id checked"
        );
        let mut env = sample();
        env.payload.usage = Usage::new();
        assert_eq!(
            InferenceEvent::into_usage_event(env)
                .err()
                .map(|e| e.code()),
            Some("empty_usage"),
            "empty usage refused"
        );
        // A negative quantity smuggled in through deserialization is caught by validate().
        let mut v = serde_json::to_value(sample()).unwrap_or_default();
        v["payload"]["usage"]["input_tokens"] = "-5".into();
        let env = serde_json::from_value::<Envelope<InferenceEvent>>(v).ok();
        let code = env
            .and_then(|e| InferenceEvent::into_usage_event(e).err())
            .map(|e| e.code());
        assert_eq!(
            code,
            Some("negative_quantity"),
            "negative quantities refused"
        );
        let ok = InferenceEvent::into_usage_event(sample()).ok();
        assert_eq!(
            ok.map(|u| u
                .usage
                .get(&UsageKind::from_str("input_tokens").unwrap_or(UsageKind::InputTokens))),
            Some(Decimal::from(12)),
            "valid event converts"
        );
    }

    #[test]
    fn headers_carry_only_the_trace() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let env = sample();
        let h: OwnedHeaders = env.headers(&TraceContext::from_parts(Some(TP), None));
        assert_eq!(
            header_str(Some(&h), HEADER_TRACEPARENT),
            Some(TP),
            "traceparent passed through"
        );
        assert_eq!(
            h.count(),
            1,
            "nothing but the traceparent when there is no tracestate"
        );
        assert_eq!(
            trace_of(Some(&h)).traceparent(),
            Some(TP),
            "the context reads back"
        );
        let h = env.headers(&TraceContext::from_parts(Some(TP), Some("tally=1")));
        assert_eq!(h.count(), 2, "tracestate only when there is one");
        assert_eq!(
            trace_of(Some(&h)).tracestate(),
            Some("tally=1"),
            "tracestate reads back"
        );
        let h = env.headers(&TraceContext::none());
        assert_eq!(h.count(), 0, "no headers without a trace");
        assert!(trace_of(Some(&h)).is_empty(), "no headers: no context");
    }
}
