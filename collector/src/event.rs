//! An ingested inference event: its wire shape, validation, and the event id derived from an idempotency key.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use tally_actors::kafka::envelope::{valid_user_id, MAX_MODEL_LEN, MAX_USER_ID_LEN};
use tally_actors::kafka::InferenceEvent;
use tally_domain::text::check_text;
use tally_domain::{Usage, UsageKind};
use uuid::Uuid;

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest `source`, `provider` and `event_type`.
pub const MAX_LABEL_LEN: usize = 64;
/// Largest quantity of one kind in one event (keeps cost arithmetic far from overflow).
pub const MAX_QUANTITY: u64 = 1_000_000_000_000_000;
/// `source` of events that do not say.
pub const DEFAULT_SOURCE: &str = "ingest";

/// One event as clients send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    event_id: Option<String>,
    idempotency_key: Option<String>,
    user_id: String,
    model: String,
    provider: Option<String>,
    event_type: String,
    quantities: BTreeMap<String, serde_json::Value>,
    occurred_at: String,
    thread_id: Option<Uuid>,
    message_id: Option<Uuid>,
    source: Option<String>,
    task: Option<String>,
    was_successful: Option<bool>,
}

/// An event that passed validation, ready to publish or bill.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// Given, derived from the idempotency key, or new (UUIDv7).
    pub event_id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What to bill.
    pub payload: InferenceEvent,
}

/// Why an event was rejected (nothing was billed for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable code.
    pub code: &'static str,
    /// Explanation.
    pub reason: String,
}

impl Rejection {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Rejection { code, reason: reason.into() }
    }
}

/// The event id for an idempotency key: a UUIDv8 (RFC 9562 "custom") made of a
/// 128-bit FNV-1a hash of the user id and key, so every retry, through any
/// collector, gets the same id and is billed once. The hash is written out here
/// (not `std`'s hasher) so it never changes between builds.
pub fn event_id_for_key(user_id: &str, key: &str) -> Uuid {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for b in b"tally-idempotency\0".iter().chain(user_id.as_bytes()).chain(b"\0").chain(key.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    let mut bytes = h.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    Uuid::from_bytes(bytes)
}

fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL_LEN && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

fn user_ok(s: &str) -> bool {
    valid_user_id(s)
}

fn quantity(kind: &str, v: &serde_json::Value) -> Result<Decimal, Rejection> {
    let q = match v {
        serde_json::Value::String(s) => {
            Decimal::from_str(s.trim()).map_err(|_| Rejection::new("invalid_quantity", format!("{kind}: {s:?} is not a decimal number")))?
        }
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Decimal::from(i),
            (None, Some(u)) => Decimal::from(u),
            // Binary floats cannot carry exact quantities.
            _ => {
                return Err(Rejection::new("invalid_quantity", format!("{kind}: {n} is not an integer; send fractions as decimal strings")))
            }
        },
        other => return Err(Rejection::new("invalid_quantity", format!("{kind}: {other} is not a number or decimal string"))),
    };
    if q > Decimal::from(MAX_QUANTITY) {
        return Err(Rejection::new("quantity_too_large", format!("{kind}: {q} is larger than {MAX_QUANTITY}")));
    }
    Ok(q)
}

/// Validate one event's JSON text. `now` and `max_future_skew` bound `occurred_at`.
pub fn validate(raw: &str, now: DateTime<Utc>, max_future_skew: Duration) -> Result<ValidEvent, Rejection> {
    let w: WireEvent = serde_json::from_str(raw).map_err(|e| Rejection::new("invalid_event", format!("malformed event: {e}")))?;
    // One rule for text on every backend (PostgreSQL cannot store NUL): before any other check.
    let texts = [
        ("event_id", w.event_id.as_deref()),
        ("idempotency_key", w.idempotency_key.as_deref()),
        ("user_id", Some(w.user_id.as_str())),
        ("model", Some(w.model.as_str())),
        ("provider", w.provider.as_deref()),
        ("event_type", Some(w.event_type.as_str())),
        ("occurred_at", Some(w.occurred_at.as_str())),
        ("source", w.source.as_deref()),
        ("task", w.task.as_deref()),
    ];
    for (field, value) in texts.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))).chain(w.quantities.keys().map(|k| ("quantities", k.as_str()))) {
        check_text(field, value).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
    }
    if !user_ok(&w.user_id) {
        return Err(Rejection::new(
            "invalid_user_id",
            format!("user id must be 1-{MAX_USER_ID_LEN} characters of letters, digits, '_', '.', '@', '-'"),
        ));
    }
    if w.model.is_empty() || w.model.len() > MAX_MODEL_LEN || w.model.chars().any(char::is_control) {
        return Err(Rejection::new("invalid_model", format!("model must be 1-{MAX_MODEL_LEN} printable characters")));
    }
    if !label_ok(&w.event_type) {
        return Err(Rejection::new("invalid_event_type", format!("event_type {:?} is not a valid name", w.event_type)));
    }
    if w.task.as_deref().is_some_and(|t| !label_ok(t)) {
        return Err(Rejection::new(
            "invalid_task",
            format!("task must be 1-{MAX_LABEL_LEN} characters of letters, digits, '_', '-', '.', ':'"),
        ));
    }
    for (field, v) in [("provider", &w.provider), ("source", &w.source)] {
        if v.as_deref().is_some_and(|s| !label_ok(s)) {
            return Err(Rejection::new(
                "invalid_event",
                format!("{field} must be 1-{MAX_LABEL_LEN} characters of letters, digits, '_', '-', '.', ':'"),
            ));
        }
    }
    if let Some(k) = &w.idempotency_key {
        if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(Rejection::new("invalid_idempotency_key", format!("idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} bytes")));
        }
    }
    let occurred_at = DateTime::parse_from_rfc3339(&w.occurred_at)
        .map_err(|e| Rejection::new("invalid_occurred_at", format!("occurred_at {:?} is not RFC 3339: {e}", w.occurred_at)))?
        .with_timezone(&Utc);
    let skew = chrono::Duration::from_std(max_future_skew).unwrap_or(chrono::Duration::zero());
    if occurred_at > now + skew {
        return Err(Rejection::new(
            "occurred_in_future",
            format!("occurred_at {occurred_at} is more than {}s in the future", skew.num_seconds()),
        ));
    }
    let mut usage = Usage::new();
    for (name, v) in &w.quantities {
        let kind = UsageKind::from_str(name).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
        let q = quantity(name, v)?;
        usage.add(kind, q).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
    }
    if usage.is_empty() {
        return Err(Rejection::new("empty_usage", "quantities has no non-zero quantity"));
    }
    let event_id = match (&w.event_id, &w.idempotency_key) {
        (Some(id), _) => {
            let id = Uuid::parse_str(id).map_err(|e| Rejection::new("invalid_event_id", format!("event_id: {e}")))?;
            if !matches!(id.get_version_num(), 7 | 8) {
                return Err(Rejection::new("invalid_event_id", "event_id must be a UUIDv7 (or an id this API returned)"));
            }
            id
        }
        (None, Some(key)) => event_id_for_key(&w.user_id, key),
        (None, None) => Uuid::now_v7(),
    };
    Ok(ValidEvent {
        event_id,
        occurred_at,
        payload: InferenceEvent {
            user_id: w.user_id,
            model: w.model,
            provider: w.provider,
            event_type: w.event_type,
            usage,
            thread_id: w.thread_id,
            message_id: w.message_id,
            source: w.source.unwrap_or_else(|| DEFAULT_SOURCE.to_string()),
            idempotency_key: w.idempotency_key,
            task: w.task,
            was_successful: w.was_successful,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(300);

    fn event(patch: serde_json::Value) -> String {
        let mut v = serde_json::json!({
            "user_id": "alice", "model": "claude-3-5-haiku-20241022", "event_type": "token_usage",
            "quantities": {"input_tokens": "12", "output_tokens": 40}, "occurred_at": "2025-01-01T00:00:00Z"
        });
        if let (Some(base), Some(p)) = (v.as_object_mut(), patch.as_object()) {
            for (k, val) in p {
                if val.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), val.clone());
                }
            }
        }
        v.to_string()
    }

    fn code(patch: serde_json::Value) -> Option<&'static str> {
        validate(&event(patch), Utc::now(), SKEW).err().map(|r| r.code)
    }

    #[test]
    fn nul_in_any_text_field_is_rejected_as_invalid_text() {
        for field in ["idempotency_key", "user_id", "model", "provider", "event_type", "occurred_at", "source", "task", "event_id"] {
            assert_eq!(code(serde_json::json!({ field: "a\u{0}b" })), Some("invalid_text"), "NUL in {field} is invalid_text");
        }
        let nul_kind = serde_json::json!({"quantities": {"input\u{0}tokens": 1}});
        assert_eq!(code(nul_kind), Some("invalid_text"), "NUL in a quantity name is invalid_text");
        assert_eq!(code(serde_json::json!({"idempotency_key": "k-1"})), None, "the same event without NUL is valid");
    }

    #[test]
    fn task_and_success_are_carried_and_validated() {
        let ok = validate(&event(serde_json::json!({"task": "summarize", "was_successful": false})), Utc::now(), SKEW).ok();
        assert_eq!(
            ok.map(|e| (e.payload.task, e.payload.was_successful)),
            Some((Some("summarize".to_string()), Some(false))),
            "task label and failure reach the billed event"
        );
        assert_eq!(code(serde_json::json!({"task": "has space"})), Some("invalid_task"), "bad task label");
        assert_eq!(code(serde_json::json!({"task": ""})), Some("invalid_task"), "empty task label");
        assert_eq!(code(serde_json::json!({"was_successful": "yes"})), Some("invalid_event"), "success is a boolean");
    }

    #[test]
    fn accepts_strings_and_integers() {
        let ok = validate(&event(serde_json::json!({})), Utc::now(), SKEW);
        let usage = ok.as_ref().map(|e| (e.payload.usage.get(&UsageKind::InputTokens), e.payload.usage.get(&UsageKind::OutputTokens)));
        assert_eq!(usage.ok(), Some((Decimal::from(12), Decimal::from(40))), "decimal strings and integers both parse");
        let ok = ok.ok();
        assert_eq!(ok.as_ref().map(|e| e.event_id.get_version_num()), Some(7), "a fresh id is UUIDv7");
        assert_eq!(ok.map(|e| e.payload.source), Some("ingest".to_string()), "default source");
        let images =
            validate(&event(serde_json::json!({"event_type": "image_generation", "quantities": {"images": "2"}})), Utc::now(), SKEW);
        assert!(images.is_ok(), "resources are accepted");
    }

    #[test]
    fn rejects_bad_quantities_and_fields() {
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": "-1"}})), Some("negative_quantity"), "negative");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": -1}})), Some("negative_quantity"), "negative integer");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": "1.5"}})), Some("fractional_tokens"), "fractional tokens");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": 1.5}})), Some("invalid_quantity"), "JSON floats refused");
        assert_eq!(code(serde_json::json!({"quantities": {"inptu_tokens": "1"}})), Some("invalid_usage_kind"), "unknown token kind");
        assert_eq!(code(serde_json::json!({"quantities": {"Images": "1"}})), Some("invalid_usage_kind"), "bad kind name");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": "abc"}})), Some("invalid_quantity"), "not a number");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": "1e30"}})), Some("invalid_quantity"), "exponent strings refused");
        assert_eq!(
            code(serde_json::json!({"quantities": {"input_tokens": "10000000000000000000"}})),
            Some("quantity_too_large"),
            "too large"
        );
        assert_eq!(code(serde_json::json!({"quantities": {}})), Some("empty_usage"), "nothing to bill");
        assert_eq!(code(serde_json::json!({"quantities": {"input_tokens": 0}})), Some("empty_usage"), "only zeros");
        assert_eq!(code(serde_json::json!({"user_id": "a b"})), Some("invalid_user_id"), "user id");
        assert_eq!(code(serde_json::json!({"user_id": null})), Some("invalid_event"), "missing user");
        assert_eq!(code(serde_json::json!({"model": ""})), Some("invalid_model"), "model");
        assert_eq!(code(serde_json::json!({"event_type": "Token Usage"})), Some("invalid_event_type"), "event type");
        assert_eq!(code(serde_json::json!({"occurred_at": "yesterday"})), Some("invalid_occurred_at"), "time format");
        assert_eq!(code(serde_json::json!({"occurred_at": "2999-01-01T00:00:00Z"})), Some("occurred_in_future"), "far future");
        assert_eq!(code(serde_json::json!({"event_id": "nope"})), Some("invalid_event_id"), "event id format");
        assert_eq!(code(serde_json::json!({"event_id": "8c1f6a2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"})), Some("invalid_event_id"), "v4 refused");
        assert_eq!(code(serde_json::json!({"colour": "red"})), Some("invalid_event"), "unknown fields refused");
        assert_eq!(validate("[1]", Utc::now(), SKEW).err().map(|r| r.code), Some("invalid_event"), "not an object");
    }

    #[test]
    fn idempotency_keys_give_stable_ids() {
        let a = validate(&event(serde_json::json!({"idempotency_key": "k-1"})), Utc::now(), SKEW).ok().map(|e| e.event_id);
        let b = validate(&event(serde_json::json!({"idempotency_key": "k-1", "occurred_at": "2025-02-01T00:00:00Z"})), Utc::now(), SKEW)
            .ok()
            .map(|e| e.event_id);
        let c = validate(&event(serde_json::json!({"idempotency_key": "k-2"})), Utc::now(), SKEW).ok().map(|e| e.event_id);
        let d =
            validate(&event(serde_json::json!({"idempotency_key": "k-1", "user_id": "bob"})), Utc::now(), SKEW).ok().map(|e| e.event_id);
        assert!(a.is_some() && a == b, "same user and key, same id");
        assert_ne!(a, c, "another key, another id");
        assert_ne!(a, d, "another user, another id");
        assert_eq!(a.map(|i| i.get_version_num()), Some(8), "derived ids are UUIDv8");
        assert_eq!(event_id_for_key("alice", "k-1").to_string(), event_id_for_key("alice", "k-1").to_string(), "deterministic");
        let given = Uuid::now_v7();
        let e = validate(&event(serde_json::json!({"idempotency_key": "k-1", "event_id": given.to_string()})), Utc::now(), SKEW);
        assert_eq!(e.ok().map(|e| e.event_id), Some(given), "an explicit event id wins");
        let back = validate(&event(serde_json::json!({"event_id": a.map(|i| i.to_string())})), Utc::now(), SKEW);
        assert_eq!(back.ok().map(|e| e.event_id), a, "a derived id can be sent back as event_id");
    }
}
