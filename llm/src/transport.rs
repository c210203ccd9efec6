//! HTTP plumbing shared by the HTTP providers: client construction, error bodies, and driving an SSE body into an [`EventStream`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

use crate::error::LlmError;
use crate::retry::AttemptError;
use crate::types::{Completion, EventStream, StreamEvent};

/// Default time allowed to establish a TCP/TLS connection to a provider.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default request timeout: the idle read timeout of a stream and the total deadline of a non-streaming request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Error bodies longer than this are truncated before being put into an [`LlmError`].
const MAX_ERROR_BODY_CHARS: usize = 2048;

/// Build the HTTP client used by one provider.
///
/// `timeout` is the idle read timeout: a stream that goes silent for this long fails.
/// Non-streaming requests additionally use it as their total deadline (see callers).
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
        .read_timeout(timeout)
        .build()
        .map_err(|e| LlmError::Config(format!("cannot build HTTP client: {e}")))
}

/// Check a base URL and strip its trailing slash; `key` names the setting in the error.
pub(crate) fn normalize_base_url(key: &str, url: &str) -> Result<String, LlmError> {
    let trimmed = url.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(LlmError::Config(format!(
            "{key} must start with http:// or https://, got {trimmed:?}"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Map a `reqwest` error to a transport error, keeping the full source chain.
pub(crate) fn transport_error(err: &reqwest::Error) -> LlmError {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    LlmError::Transport(msg)
}

/// Send one attempt of a provider request. A non-streaming request gets `timeout` as its total
/// deadline (a stream only has the client's idle read timeout). A success response is returned;
/// a transport failure is a (retryable) transport error; any other status is read in full and
/// classified by the provider's `classify`.
pub(crate) async fn send_attempt(
    request: reqwest::RequestBuilder,
    stream: bool,
    timeout: Duration,
    classify: fn(ErrorResponse) -> AttemptError,
) -> Result<reqwest::Response, AttemptError> {
    let request = if stream { request } else { request.timeout(timeout) };
    let resp = request.send().await.map_err(|e| AttemptError::from(transport_error(&e)))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(classify(ErrorResponse::read(resp).await))
}

/// Read a whole JSON response body. A body that breaks off is a transport failure (nothing was
/// handed out yet, so the attempt may be retried); one that does not parse is a decode error
/// naming `what`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T, AttemptError> {
    let bytes = resp.bytes().await.map_err(|e| AttemptError::from(transport_error(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| AttemptError::from(LlmError::Decode(format!("{what}: {e}"))))
}

/// An HTTP error response, read in full so it can be classified.
pub(crate) struct ErrorResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `retry-after` hint, if the provider sent one.
    pub retry_after: Option<Duration>,
    /// The full body text.
    pub body: String,
}

impl ErrorResponse {
    /// Read status, `retry-after` and body of a non-success response.
    pub(crate) async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let retry_after = crate::retry::parse_retry_after(resp.headers());
        let body = match resp.text().await {
            Ok(text) => text,
            Err(e) => format!("<unreadable body: {e}>"),
        };
        Self {
            status,
            retry_after,
            body,
        }
    }

    /// A [`LlmError::Status`] carrying this response's (truncated) body.
    pub(crate) fn into_status_error(self) -> LlmError {
        LlmError::Status {
            status: self.status,
            body: truncate(&self.body),
        }
    }
}

/// Shorten `text` to at most `MAX_ERROR_BODY_CHARS` characters.
pub(crate) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_BODY_CHARS) {
        Some((idx, _)) => format!("{}...", &text[..idx]),
        None => text.to_owned(),
    }
}

/// What a decoder wants after one SSE event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// The provider said the reply is complete.
    Done,
}

/// Provider-specific interpretation of SSE events, accumulating text and usage.
pub(crate) trait SseDecoder: Send + 'static {
    /// The event that marks a complete reply, for error messages (`message_stop`, `[DONE]`).
    const COMPLETION_MARKER: &'static str;

    /// Handle one SSE event, pushing any events for the caller into `out`.
    ///
    /// An `Err` is a mid-stream failure reported by the provider; the stream then fails
    /// with [`Self::snapshot`] as the partial reply.
    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<Flow, LlmError>;

    /// The reply as accumulated so far.
    fn snapshot(&self) -> Completion;
}

struct Driver<S, D> {
    source: S,
    decoder: D,
    pending: VecDeque<StreamEvent>,
    done: bool,
}

impl<S, D: SseDecoder> Driver<S, D> {
    fn fail(&mut self, error: LlmError) {
        tracing::warn!(error.code = error.code(), error.message = %error, "Reply stream failed.");
        let partial = self.decoder.snapshot();
        self.pending
            .push_back(StreamEvent::Failed { error, partial });
        self.done = true;
    }
}

/// Turn an SSE byte stream into an [`EventStream`] that ends with exactly one terminal event.
///
/// The source is not polled after the terminal event, so trailing bytes are ignored.
pub(crate) fn drive<S, B, E, D>(bytes: S, decoder: D) -> EventStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: fmt::Display + Send + 'static,
    D: SseDecoder,
{
    let driver = Driver {
        source: Box::pin(bytes.eventsource()),
        decoder,
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(ev) = d.pending.pop_front() {
                return Some((ev, d));
            }
            if d.done {
                return None;
            }
            match d.source.next().await {
                Some(Ok(event)) => {
                    let mut out = Vec::new();
                    let flow = d.decoder.on_event(&event, &mut out);
                    d.pending.extend(out);
                    match flow {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Done) => {
                            let completion = d.decoder.snapshot();
                            d.pending.push_back(StreamEvent::Finished(completion));
                            d.done = true;
                        }
                        Err(error) => d.fail(error),
                    }
                }
                Some(Err(EventStreamError::Transport(e))) => {
                    d.fail(LlmError::Interrupted(format!(
                        "reading reply stream failed: {e}"
                    )));
                }
                Some(Err(e @ (EventStreamError::Utf8(_) | EventStreamError::Parser(_)))) => {
                    d.fail(LlmError::Decode(format!("malformed SSE stream: {e}")));
                }
                None => {
                    d.fail(LlmError::Interrupted(format!(
                        "connection closed before {}",
                        D::COMPLETION_MARKER
                    )));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::types::TokenUsage;

    /// Counts `data:` lines as text; `done` finishes; `boom` fails.
    struct Echo {
        text: String,
    }

    impl SseDecoder for Echo {
        const COMPLETION_MARKER: &'static str = "done";

        fn on_event(
            &mut self,
            event: &Event,
            out: &mut Vec<StreamEvent>,
        ) -> Result<Flow, LlmError> {
            match event.data.as_str() {
                "done" => Ok(Flow::Done),
                "boom" => Err(LlmError::Overloaded),
                other => {
                    self.text.push_str(other);
                    out.push(StreamEvent::Delta(other.to_owned()));
                    Ok(Flow::Continue)
                }
            }
        }

        fn snapshot(&self) -> Completion {
            Completion {
                text: self.text.clone(),
                usage: TokenUsage::default(),
                model: "m".into(),
                stop_reason: None,
                provider_message_id: None,
                simulated: false,
            }
        }
    }

    async fn collect(chunks: Vec<Result<&'static str, String>>) -> Vec<StreamEvent> {
        let source = futures::stream::iter(chunks);
        drive(
            source,
            Echo {
                text: String::new(),
            },
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn finishes_once_and_ignores_trailing_bytes() {
        let events = collect(vec![
            Ok("data: a\n\ndata: b"),
            Ok("\n\ndata: done\n\ndata: x\n\n"),
        ])
        .await;
        assert_eq!(
            events.len(),
            3,
            "two deltas then one terminal event: {events:?}"
        );
        match &events[2] {
            StreamEvent::Finished(c) => assert_eq!(c.text, "ab", "finished text joins deltas"),
            other => panic!("expected Finished, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn eof_before_marker_fails_with_partial() {
        let events = collect(vec![
            Ok("data: a\n\n"),
            Ok("data: partial-line-without-end"),
        ])
        .await;
        match events.last() {
            Some(StreamEvent::Failed {
                error: LlmError::Interrupted(_),
                partial,
            }) => {
                assert_eq!(partial.text, "a", "partial keeps text received so far");
            }
            other => panic!("expected Failed(Interrupted), got {other:?}"),
        }
        assert_eq!(
            events.iter().filter(|e| e.is_terminal()).count(),
            1,
            "exactly one terminal event"
        );
    }

    #[tokio::test]
    async fn transport_error_fails_and_decoder_error_fails() {
        let events = collect(vec![Ok("data: a\n\n"), Err("reset".to_owned())]).await;
        assert!(
            matches!(
                events.last(),
                Some(StreamEvent::Failed {
                    error: LlmError::Interrupted(_),
                    ..
                })
            ),
            "a read error interrupts the stream: {events:?}"
        );
        let events = collect(vec![Ok("data: a\n\ndata: boom\n\ndata: c\n\n")]).await;
        assert_eq!(
            events.len(),
            2,
            "nothing is read after a provider error: {events:?}"
        );
        assert!(
            matches!(
                events.last(),
                Some(StreamEvent::Failed {
                    error: LlmError::Overloaded,
                    ..
                })
            ),
            "decoder error becomes Failed"
        );
    }

    #[test]
    fn base_url_is_checked_and_trimmed() {
        assert_eq!(
            normalize_base_url("X_BASE_URL", "http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9",
            "trailing slash is stripped"
        );
        let err = normalize_base_url("X_BASE_URL", "ftp://x").unwrap_err();
        assert!(
            err.to_string().contains("X_BASE_URL"),
            "error names the bad key"
        );
    }
}
