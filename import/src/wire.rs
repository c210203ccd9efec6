//! Reading the providers' JSON: typed getters over raw JSON values that name the offending field.
//!
//! Objects are read as maps of [`RawValue`]s, so every value keeps its JSON text: money is parsed
//! from that text into a `Decimal` and never passes through a float. Unknown keys are ignored
//! (the providers add fields over time); missing required keys, wrong types and negative
//! counts are [`ImportError::InvalidResponse`] with the field's full path.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::error::ImportError;

/// The error for `field` of `endpoint`.
pub(crate) fn invalid(endpoint: &str, field: impl Into<String>, reason: impl Into<String>) -> ImportError {
    ImportError::InvalidResponse { endpoint: endpoint.to_string(), field: field.into(), reason: reason.into() }
}

/// Whether a raw value is the JSON `null`.
fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// A short quote of a raw value for error messages.
fn quote(raw: &RawValue) -> String {
    let text = raw.get().trim();
    let mut q: String = text.chars().take(60).collect();
    if q.len() < text.len() {
        q.push_str("...");
    }
    q
}

/// One JSON object of a provider answer, with its path.
#[derive(Debug)]
pub(crate) struct Obj<'a> {
    endpoint: &'a str,
    path: String,
    fields: BTreeMap<String, &'a RawValue>,
}

impl<'a> Obj<'a> {
    /// The answer body as an object (`field` is `body`).
    pub(crate) fn body(endpoint: &'a str, body: &'a str) -> Result<Obj<'a>, ImportError> {
        let fields = serde_json::from_str(body)
            .map_err(|e| invalid(endpoint, "body", format!("not a JSON object: {e}")))?;
        Ok(Obj { endpoint, path: String::new(), fields })
    }

    /// A raw value at `path` that must be an object.
    pub(crate) fn nested(endpoint: &'a str, path: String, raw: &'a RawValue) -> Result<Obj<'a>, ImportError> {
        match serde_json::from_str(raw.get()) {
            Ok(fields) => Ok(Obj { endpoint, path, fields }),
            Err(_) => Err(invalid(endpoint, path, format!("must be an object, got {}", quote(raw)))),
        }
    }

    /// The full path of a key of this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The path of this object.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The endpoint (and page) this object came from.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint
    }

    fn bad(&self, key: &str, reason: impl Into<String>) -> ImportError {
        invalid(self.endpoint, self.path_of(key), reason)
    }

    /// A key that must be present (null allowed).
    fn present(&self, key: &str) -> Result<&'a RawValue, ImportError> {
        self.fields.get(key).copied().ok_or_else(|| self.bad(key, "is missing"))
    }

    /// A key that must be present and not null.
    fn required(&self, key: &str) -> Result<&'a RawValue, ImportError> {
        let raw = self.present(key)?;
        if is_null(raw) {
            return Err(self.bad(key, "must not be null"));
        }
        Ok(raw)
    }

    /// A key whose absence and null both mean "not given".
    fn optional(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied().filter(|r| !is_null(r))
    }

    fn parse_count(&self, key: &str, raw: &RawValue) -> Result<u64, ImportError> {
        let text = raw.get().trim();
        if text.starts_with('-') {
            return Err(self.bad(key, format!("must not be negative, got {text}")));
        }
        serde_json::from_str::<u64>(text)
            .map_err(|_| self.bad(key, format!("must be a non-negative integer, got {}", quote(raw))))
    }

    /// A required non-negative integer.
    pub(crate) fn count(&self, key: &str) -> Result<u64, ImportError> {
        let raw = self.required(key)?;
        self.parse_count(key, raw)
    }

    /// An optional non-negative integer (absent or null: `None`).
    pub(crate) fn optional_count(&self, key: &str) -> Result<Option<u64>, ImportError> {
        self.optional(key).map(|raw| self.parse_count(key, raw)).transpose()
    }

    /// A required integer (Unix seconds and the like).
    pub(crate) fn integer(&self, key: &str) -> Result<i64, ImportError> {
        let raw = self.required(key)?;
        serde_json::from_str::<i64>(raw.get()).map_err(|_| self.bad(key, format!("must be an integer, got {}", quote(raw))))
    }

    /// A required boolean.
    pub(crate) fn boolean(&self, key: &str) -> Result<bool, ImportError> {
        let raw = self.required(key)?;
        serde_json::from_str::<bool>(raw.get()).map_err(|_| self.bad(key, format!("must be a boolean, got {}", quote(raw))))
    }

    fn parse_string(&self, key: &str, raw: &RawValue) -> Result<String, ImportError> {
        serde_json::from_str::<String>(raw.get()).map_err(|_| self.bad(key, format!("must be a string, got {}", quote(raw))))
    }

    /// A required string.
    pub(crate) fn string(&self, key: &str) -> Result<String, ImportError> {
        let raw = self.required(key)?;
        self.parse_string(key, raw)
    }

    /// A string that must be present but may be null (the providers' documented shape for
    /// `next_page` and for dimensions).
    pub(crate) fn nullable_string(&self, key: &str) -> Result<Option<String>, ImportError> {
        let raw = self.present(key)?;
        if is_null(raw) {
            return Ok(None);
        }
        self.parse_string(key, raw).map(Some)
    }

    /// A grouping dimension: string, null or absent (`None`); a boolean (OpenAI `batch`) as text.
    pub(crate) fn dimension(&self, key: &str) -> Result<Option<String>, ImportError> {
        let Some(raw) = self.optional(key) else { return Ok(None) };
        match raw.get().trim() {
            "true" => Ok(Some("true".into())),
            "false" => Ok(Some("false".into())),
            _ => self.parse_string(key, raw).map(Some),
        }
    }

    /// A required string that must equal `expected` (OpenAI's `object` tags).
    pub(crate) fn tag(&self, key: &str, expected: &str) -> Result<(), ImportError> {
        let got = self.string(key)?;
        if got != expected {
            return Err(self.bad(key, format!("must be {expected:?}, got {got:?}")));
        }
        Ok(())
    }

    /// A required object.
    pub(crate) fn object(&self, key: &str) -> Result<Obj<'a>, ImportError> {
        let raw = self.required(key)?;
        Obj::nested(self.endpoint, self.path_of(key), raw)
    }

    /// An optional object (absent or null: `None`).
    pub(crate) fn optional_object(&self, key: &str) -> Result<Option<Obj<'a>>, ImportError> {
        self.optional(key).map(|raw| Obj::nested(self.endpoint, self.path_of(key), raw)).transpose()
    }

    /// A required array, as raw items with their paths.
    pub(crate) fn array(&self, key: &str) -> Result<Vec<(String, &'a RawValue)>, ImportError> {
        let raw = self.required(key)?;
        let items: Vec<&'a RawValue> = serde_json::from_str(raw.get())
            .map_err(|_| self.bad(key, format!("must be an array, got {}", quote(raw))))?;
        let base = self.path_of(key);
        Ok(items.into_iter().enumerate().map(|(i, r)| (format!("{base}[{i}]"), r)).collect())
    }

    /// A required array of objects.
    pub(crate) fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>, ImportError> {
        self.array(key)?.into_iter().map(|(path, raw)| Obj::nested(self.endpoint, path, raw)).collect()
    }

    /// A required RFC 3339 timestamp, in UTC.
    pub(crate) fn rfc3339(&self, key: &str) -> Result<DateTime<Utc>, ImportError> {
        let s = self.string(key)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| self.bad(key, format!("must be an RFC 3339 time, got {s:?}")))
    }

    /// A required Unix time in whole seconds.
    pub(crate) fn unix_seconds(&self, key: &str) -> Result<DateTime<Utc>, ImportError> {
        let secs = self.integer(key)?;
        DateTime::from_timestamp(secs, 0).ok_or_else(|| self.bad(key, format!("{secs} is out of range")))
    }

    /// A required non-negative decimal amount, from its JSON text: a string always, a number
    /// too when `numbers` is set. Never read through a float.
    pub(crate) fn amount(&self, key: &str, numbers: bool) -> Result<Decimal, ImportError> {
        let raw = self.required(key)?;
        let text = raw.get().trim();
        let inner = if text.starts_with('"') {
            self.parse_string(key, raw)?
        } else if numbers && text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            text.to_string()
        } else if numbers {
            return Err(self.bad(key, format!("must be a number or a decimal string, got {}", quote(raw))));
        } else {
            return Err(self.bad(key, format!("must be a decimal string, got {}", quote(raw))));
        };
        let value = decimal(inner.trim()).ok_or_else(|| self.bad(key, format!("is not a decimal amount: {}", quote(raw))))?;
        if value.is_sign_negative() && !value.is_zero() {
            return Err(self.bad(key, format!("must not be negative, got {value}")));
        }
        Ok(value)
    }
}

/// Exact decimal of a JSON number's text (`12.5`, `1e-7`, `2E+3`), or `None`.
pub(crate) fn decimal(text: &str) -> Option<Decimal> {
    if text.is_empty() {
        return None;
    }
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        text.parse::<Decimal>().ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EP: &str = "/test";

    fn err_field(r: Result<impl std::fmt::Debug, ImportError>) -> String {
        match r {
            Err(ImportError::InvalidResponse { field, .. }) => field,
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[test]
    fn money_is_read_exactly_from_the_json_text() {
        let body = r#"{"s": "123.78912", "n": 0.06, "tiny": 1.0000001, "exp": 1e-7, "neg": "-1", "word": "abc", "b": true,
                       "big": 12345678901234567.25}"#;
        let o = Obj::body(EP, body).unwrap();
        assert_eq!(o.amount("s", false).unwrap(), "123.78912".parse::<Decimal>().unwrap(), "a decimal string");
        assert_eq!(o.amount("n", true).unwrap(), "0.06".parse::<Decimal>().unwrap(), "a number, not through f64");
        assert_eq!(o.amount("tiny", true).unwrap(), "1.0000001".parse::<Decimal>().unwrap(), "every digit kept");
        assert_eq!(o.amount("exp", true).unwrap(), "0.0000001".parse::<Decimal>().unwrap(), "exponent form");
        assert_eq!(
            o.amount("big", true).unwrap(),
            "12345678901234567.25".parse::<Decimal>().unwrap(),
            "more digits than an f64 holds"
        );
        assert_eq!(err_field(o.amount("n", false)), "n", "a number where a string is required fails");
        assert_eq!(err_field(o.amount("neg", false)), "neg", "a negative amount fails");
        assert_eq!(err_field(o.amount("word", true)), "word", "text that is not a number fails");
        assert_eq!(err_field(o.amount("b", true)), "b", "a boolean fails");
        assert_eq!(err_field(o.amount("missing", true)), "missing", "a missing amount fails");
    }

    #[test]
    fn counts_and_fields_are_checked_with_their_paths() {
        let body = r#"{"a": {"n": -1, "f": 1.5, "s": "7", "ok": 3, "z": null}, "list": [{"x": 1}, 2], "t": "2026-11-01T10:00:00Z"}"#;
        let o = Obj::body(EP, body).unwrap();
        let a = o.object("a").unwrap();
        assert_eq!(a.count("ok").unwrap(), 3, "a count");
        assert_eq!(err_field(a.count("n")), "a.n", "a negative count fails, named by path");
        assert_eq!(err_field(a.count("f")), "a.f", "a fraction is not a count");
        assert_eq!(err_field(a.count("s")), "a.s", "a string is not a count");
        assert_eq!(err_field(a.count("z")), "a.z", "a null required count fails");
        assert_eq!(err_field(a.count("gone")), "a.gone", "a missing count fails");
        assert_eq!(a.optional_count("z").unwrap(), None, "an optional null count is none");
        assert_eq!(a.optional_count("gone").unwrap(), None, "an optional missing count is none");
        assert_eq!(err_field(o.objects("list")), "list[1]", "an array item that is not an object is named by index");
        assert!(o.rfc3339("t").is_ok(), "an RFC 3339 time");
        assert_eq!(err_field(o.rfc3339("list")), "list", "an array is not a time");
        assert!(Obj::body(EP, "{\"data\": [").is_err(), "malformed JSON fails");
        assert!(Obj::body(EP, "[]").is_err(), "a body that is not an object fails");
    }
}
