//! The email channel: one plain-text message per recipient through an SMTP relay (lettre).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Alert, NotifyError, SmtpConfig};

/// Sends alert emails through one relay. Cheap to clone.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// A sender for `smtp` (plain SMTP, no TLS: a local relay or loopback), each exchange
    /// limited to `timeout`.
    pub fn new(smtp: SmtpConfig, timeout: Duration) -> Self {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
                .port(smtp.port)
                .timeout(Some(timeout));
        if let Some(user) = &smtp.username {
            let password = smtp
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        EmailSender {
            transport: builder.build(),
            from: smtp.from,
        }
    }

    /// Send `alert` to `to`: subject = title, body = text and the details as JSON.
    pub async fn send(&self, to: &str, alert: &Alert) -> Result<(), NotifyError> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| NotifyError::permanent(format!("bad sender {:?}: {e}", self.from)))?;
        let to_box: Mailbox = to
            .parse()
            .map_err(|e| NotifyError::permanent(format!("bad recipient {to:?}: {e}")))?;
        let details = serde_json::to_string_pretty(&alert.data).unwrap_or_default();
        let message = Message::builder()
            .from(from)
            .to(to_box)
            .subject(alert.title.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{}\n\nDetails:\n{details}\n", alert.text))
            .map_err(|e| NotifyError::permanent(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx replies and client-side errors (a bad address) will not change on retry;
            // connection failures, timeouts and 4xx replies may.
            Err(e) if e.is_permanent() || e.is_client() => {
                Err(NotifyError::permanent(format!("SMTP: {e}")))
            }
            Err(e) => Err(NotifyError::transient(format!("SMTP: {e}"))),
        }
    }
}
