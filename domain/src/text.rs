//! Text from outside: the one rule every backend enforces alike. PostgreSQL cannot store NUL (U+0000) in text or JSON, SQLite can, so NUL is refused everywhere (`invalid_text`) before anything is stored.

use crate::DomainError;

/// The character no text field may hold.
pub const FORBIDDEN: char = '\0';

/// Refuse `value` when it holds a NUL; `field` names it in the error.
pub fn check_text(field: &str, value: &str) -> Result<(), DomainError> {
    if value.contains(FORBIDDEN) {
        return Err(DomainError::InvalidText { field: field.to_string() });
    }
    Ok(())
}

/// Whether JSON text (or NDJSON) holds a NUL in any string once decoded: a raw NUL byte, or
/// the escape `\u0000` (not an escaped backslash followed by `u0000`). Linear, no allocation.
pub fn json_has_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return true,
            b'\\' => {
                // An escape: `\u0000` is a NUL; any other escape (`\\`, `\"`, `\u0041`) is skipped whole.
                if bytes.get(i + 1) == Some(&b'u') {
                    if bytes.get(i + 2..i + 6) == Some(b"0000") {
                        return true;
                    }
                    i += 2;
                } else {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Whether a URL path or query string holds a percent-encoded NUL (`%00`).
pub fn url_has_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0') || raw.contains(FORBIDDEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_with_the_field_named() {
        let err = check_text("title", "a\0b").err();
        assert_eq!(err.as_ref().map(DomainError::code), Some("invalid_text"), "a NUL is invalid_text");
        assert!(err.is_some_and(|e| e.to_string().contains("title")), "the message names the field");
        assert!(check_text("title", "plain ünïcode \u{1}").is_ok(), "other characters, even controls, pass");
    }

    #[test]
    fn json_scan_finds_escaped_and_raw_nul_only() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#), "escaped NUL");
        assert!(json_has_nul(b"{\"a\":\"x\0\"}"), "raw NUL byte");
        assert!(json_has_nul(br#"["\\\u0000"]"#), "an escaped backslash then an escaped NUL");
        assert!(!json_has_nul(br#"{"a":"x\\u0000y"}"#), "an escaped backslash followed by u0000 is text, not NUL");
        assert!(!json_has_nul(br#"{"a":"\u0041\u00e9\"\\"}"#), "other escapes pass");
        assert!(!json_has_nul(br#"{"a":"\"}"#), "a trailing escape does not read past the end");
    }

    #[test]
    fn url_scan_finds_percent_encoded_nul() {
        assert!(url_has_nul("user_id=a%00b"), "%00 in a query");
        assert!(!url_has_nul("user_id=a%2500b"), "an encoded percent sign is text");
        assert!(!url_has_nul("/api/users/u1"), "plain path");
    }
}
