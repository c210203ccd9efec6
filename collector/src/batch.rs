//! Splitting a request body into events: a JSON array (or one object) or NDJSON, within the batch limits.

use serde_json::value::RawValue;

use crate::error::CollectorError;

/// Content types read as NDJSON (one event per line); anything else is JSON.
pub const NDJSON_TYPES: [&str; 3] = ["application/x-ndjson", "application/ndjson", "application/jsonl"];

/// How a body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `[event, ...]` or a single `event` object.
    Json,
    /// One event per line; blank lines are skipped.
    Ndjson,
}

impl BodyFormat {
    /// The format for a `Content-Type` header value.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        let essence = ct.and_then(|c| c.split(';').next()).map(|c| c.trim().to_ascii_lowercase());
        match essence {
            Some(e) if NDJSON_TYPES.contains(&e.as_str()) => BodyFormat::Ndjson,
            _ => BodyFormat::Json,
        }
    }
}

/// Each event's JSON text, in order. A malformed NDJSON line is kept as it is (it is rejected
/// on its own later); a malformed JSON body fails as a whole.
pub fn split(body: &[u8], format: BodyFormat, max_events: usize) -> Result<Vec<&str>, CollectorError> {
    let events: Vec<&str> = match format {
        BodyFormat::Json => {
            let text = std::str::from_utf8(body)
                .map_err(|_| CollectorError::InvalidBody { code: "invalid_json", message: "body is not UTF-8".into() })?;
            match text.trim_start().as_bytes().first() {
                Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text)
                    .map_err(|e| CollectorError::InvalidBody {
                        code: "invalid_json",
                        message: format!("body is not a JSON array of events: {e}"),
                    })?
                    .into_iter()
                    .map(RawValue::get)
                    .collect(),
                Some(b'{') => vec![serde_json::from_str::<&RawValue>(text)
                    .map_err(|e| CollectorError::InvalidBody { code: "invalid_json", message: format!("body is not a JSON event: {e}") })?
                    .get()],
                _ => {
                    return Err(CollectorError::InvalidBody {
                        code: "invalid_json",
                        message: "body must be a JSON array of events, one event object, or NDJSON (Content-Type: application/x-ndjson)"
                            .into(),
                    })
                }
            }
        }
        BodyFormat::Ndjson => {
            let text = std::str::from_utf8(body)
                .map_err(|_| CollectorError::InvalidBody { code: "invalid_ndjson", message: "body is not UTF-8".into() })?;
            text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
        }
    };
    if events.is_empty() {
        return Err(CollectorError::InvalidBody { code: "empty_batch", message: "the batch has no events".into() });
    }
    if events.len() > max_events {
        return Err(CollectorError::TooLarge {
            code: "too_many_events",
            message: format!("the batch has {} events; at most {max_events} per request", events.len()),
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Vec<&str>, CollectorError>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyFormat::from_content_type(Some("application/x-ndjson; charset=utf-8")), BodyFormat::Ndjson, "ndjson with params");
        assert_eq!(BodyFormat::from_content_type(Some("application/json")), BodyFormat::Json, "json");
        assert_eq!(BodyFormat::from_content_type(None), BodyFormat::Json, "json by default");
    }

    #[test]
    fn splits_arrays_objects_and_lines() {
        let arr = split(br#" [ {"a":1}, {"b":[1,2]} ] "#, BodyFormat::Json, 10).unwrap_or_default();
        assert_eq!(arr, vec![r#"{"a":1}"#, r#"{"b":[1,2]}"#], "array elements as raw text");
        let one = split(br#"{"a":1}"#, BodyFormat::Json, 10).unwrap_or_default();
        assert_eq!(one.len(), 1, "a single object is a batch of one");
        let nd = split(b"{\"a\":1}\n\n{broken\r\n{\"c\":3}\n", BodyFormat::Ndjson, 10).unwrap_or_default();
        assert_eq!(nd, vec![r#"{"a":1}"#, "{broken", r#"{"c":3}"#], "lines kept, blanks skipped, broken lines kept for rejection");
    }

    #[test]
    fn refuses_bad_bodies_and_too_many_events() {
        assert_eq!(code(split(b"[1,", BodyFormat::Json, 10)), Some("invalid_json"), "broken array");
        assert_eq!(code(split(b"42", BodyFormat::Json, 10)), Some("invalid_json"), "not an array or object");
        assert_eq!(code(split(b"[]", BodyFormat::Json, 10)), Some("empty_batch"), "empty array");
        assert_eq!(code(split(b"\n\n", BodyFormat::Ndjson, 10)), Some("empty_batch"), "empty ndjson");
        assert_eq!(code(split(b"[{},{},{}]", BodyFormat::Json, 2)), Some("too_many_events"), "count limit on arrays");
        assert_eq!(code(split(b"{}\n{}\n{}", BodyFormat::Ndjson, 2)), Some("too_many_events"), "count limit on ndjson");
        assert_eq!(code(split(&[0xff, 0xfe], BodyFormat::Ndjson, 2)), Some("invalid_ndjson"), "not utf-8");
    }
}
