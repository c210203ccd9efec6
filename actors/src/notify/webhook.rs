//! The webhook channel: a signed JSON POST.
//!
//! The body is signed with HMAC-SHA256 over `"{timestamp}.{body}"` with the shared secret:
//! `x-tally-signature: t=<unix seconds>,v1=<hex>`; the timestamp is also sent alone in
//! `x-tally-timestamp`, and `x-tally-delivery` carries the delivery id (the same on every
//! retry, so a receiver can drop duplicates). Receivers should refuse old timestamps
//! against replays. 429 and 5xx answers and network errors are retried; other 4xx are not.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{NotifyError, Secret};

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-tally-signature";
/// Header carrying the signing timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-tally-timestamp";
/// Header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "x-tally-delivery";

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Posts alert bodies. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    secret: Option<Secret>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender signing with `secret` (unsigned without one), each request limited to `timeout`.
    pub fn new(secret: Option<Secret>, timeout: Duration) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| NotifyError::Config(format!("webhook HTTP client: {e}")))?;
        Ok(WebhookSender { client, secret })
    }

    /// One attempt: POST `body` to `url`.
    pub async fn post(
        &self,
        url: &str,
        delivery_id: &Uuid,
        body: &[u8],
    ) -> Result<(), NotifyError> {
        let ts = Utc::now().timestamp();
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(DELIVERY_HEADER, delivery_id.to_string());
        if let Some(secret) = &self.secret {
            req = req.header(SIGNATURE_HEADER, signature(secret.expose(), ts, body));
        }
        let resp = req.body(body.to_vec()).send().await.map_err(|e| {
            // A request that could not even be built (a bad URL) will not improve.
            if e.is_builder() {
                NotifyError::permanent(format!("webhook request: {e}"))
            } else {
                NotifyError::transient(format!("webhook unreachable: {e}"))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 429 || status.is_server_error() {
            Err(NotifyError::transient(format!(
                "webhook answered HTTP {}",
                status.as_u16()
            )))
        } else {
            Err(NotifyError::permanent(format!(
                "webhook answered HTTP {}",
                status.as_u16()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // Known answer from Python: hmac.new(b"secret", b'1700000000.{"a":1}', sha256).hexdigest().
        assert_eq!(
            signature("secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686",
            "HMAC-SHA256 over \"<t>.<body>\" in the t=,v1= scheme"
        );
        assert_ne!(
            signature("secret", 1, b"x"),
            signature("secret", 2, b"x"),
            "the timestamp is signed"
        );
        assert_ne!(
            signature("secret", 1, b"x"),
            signature("secret!", 1, b"x"),
            "the secret matters"
        );
    }
}
