//! The HTTP path shared by the real upstreams: one POST retried until an answer may be handed out, read as JSON or as SSE frames.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::usage::{anthropic_event_type, ANTHROPIC_ERROR, ANTHROPIC_MESSAGE_STOP};
use super::{wants_stream, FrameStream, SseFrame, UpstreamReply, WireFormat};
use crate::error::LlmError;
use crate::openai::DONE_MARKER;
use crate::retry::{self, AttemptError, RetryPolicy};
use crate::transport::{self, ErrorResponse};
use crate::types::TokenUsage;

/// The event name `eventsource-stream` gives a frame without an `event:` line.
const DEFAULT_EVENT_NAME: &str = "message";
/// Error type put in the provider-shaped body that wraps a non-JSON upstream error page.
const NON_JSON_ERROR_KIND: &str = "upstream_error";
/// Media type of request bodies.
const JSON_MEDIA_TYPE: &str = "application/json";
/// Media type a streaming request accepts.
const SSE_MEDIA_TYPE: &str = "text/event-stream";

/// One provider endpoint: where to POST, with which headers, and how to judge its errors.
pub(crate) struct Endpoint {
    /// Wire format of bodies and answers.
    pub(crate) format: WireFormat,
    /// Provider name, for logs.
    pub(crate) provider: &'static str,
    /// Full URL of the endpoint.
    pub(crate) url: String,
    /// Provider headers (credentials marked sensitive).
    pub(crate) headers: HeaderMap,
    /// HTTP client; its read timeout is the idle timeout of a stream.
    pub(crate) client: reqwest::Client,
    /// Total deadline of a non-streaming request.
    pub(crate) timeout: Duration,
    /// Retry policy for failures before the answer is handed out.
    pub(crate) retry: RetryPolicy,
    /// The provider's error classification; its retryability decides what is retried.
    pub(crate) classify: fn(ErrorResponse) -> AttemptError,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers are left out: they hold the API key.
        f.debug_struct("Endpoint")
            .field("format", &self.format)
            .field("provider", &self.provider)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A credential header value, marked sensitive so it is never printed.
pub(crate) fn secret_header(value: &str, name: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        LlmError::Config(format!(
            "{name} contains characters not allowed in an HTTP header"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// What one POST ended in, once it may be handed out.
pub(crate) enum Answered {
    /// A complete JSON answer (success, or an error status passed through).
    Reply(UpstreamReply),
    /// A 2xx answer to a streaming request, not read yet.
    Stream {
        /// The 2xx status.
        status: u16,
        /// The request id header, if sent.
        request_id: Option<String>,
        /// The response whose body is the SSE stream.
        response: reqwest::Response,
    },
}

impl Endpoint {
    /// POST `body` as it is, retrying failures before anything is handed out.
    ///
    /// When the policy runs out on a retryable status, that status and body are the answer;
    /// when it runs out on a transport failure, that is the error.
    pub(crate) async fn send(&self, body: &Value) -> Result<Answered, LlmError> {
        let stream = wants_stream(body);
        let payload = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| LlmError::Decode(format!("cannot encode the request body: {e}")))?,
        );
        // The retryable error answer of the latest attempt, handed out if it was the last one.
        let last_failure: Mutex<Option<UpstreamReply>> = Mutex::new(None);
        let outcome = retry::run(&self.retry, self.provider, || {
            self.attempt(payload.clone(), stream, &last_failure)
        })
        .await;
        match outcome {
            Ok(answered) => Ok(answered),
            Err(error) => {
                let failure = last_failure
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                match failure {
                    Some(reply) => {
                        tracing::warn!(
                            provider = self.provider,
                            http.status = reply.status,
                            error.message = %error,
                            "Upstream still failing after retries; passing its answer through."
                        );
                        Ok(Answered::Reply(reply))
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// One POST. A retryable error answer is recorded in `last_failure` and returned as `Err`
    /// so the policy retries it; any other answer is `Ok`.
    async fn attempt(
        &self,
        payload: Bytes,
        stream: bool,
        last_failure: &Mutex<Option<UpstreamReply>>,
    ) -> Result<Answered, AttemptError> {
        *last_failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, JSON_MEDIA_TYPE)
            .body(payload);
        let request = if stream {
            request.header(ACCEPT, SSE_MEDIA_TYPE)
        } else {
            request.timeout(self.timeout)
        };
        let response = request
            .send()
            .await
            .map_err(|e| AttemptError::from(transport::transport_error(&e)))?;
        let status = response.status().as_u16();
        let header_id = header_text(response.headers(), self.format.request_id_header());
        if response.status().is_success() && stream {
            return Ok(Answered::Stream {
                status,
                request_id: header_id,
                response,
            });
        }
        let success = response.status().is_success();
        let retry_after = retry::parse_retry_after(response.headers());
        // A body that breaks off is a transport failure: nothing was handed out yet, so retry.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AttemptError::from(transport::transport_error(&e)))?;
        if success {
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                AttemptError::from(LlmError::Decode(format!(
                    "{} response body: {e}",
                    self.provider
                )))
            })?;
            let reply = UpstreamReply {
                status,
                usage: self.format.usage_from_body(&body),
                request_id: header_id.or_else(|| body_request_id(&body)),
                body,
                simulated: false,
            };
            tracing::debug!(
                provider = self.provider,
                usage.input_tokens = reply.usage.input_tokens,
                usage.output_tokens = reply.usage.output_tokens,
                "Upstream reply completed."
            );
            return Ok(Answered::Reply(reply));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| {
            self.format.error_body(
                NON_JSON_ERROR_KIND,
                &format!(
                    "upstream answered HTTP {status}: {}",
                    transport::truncate(&text)
                ),
            )
        });
        let reply = UpstreamReply {
            status,
            usage: TokenUsage::default(),
            request_id: header_id.or_else(|| body_request_id(&body)),
            body,
            simulated: false,
        };
        let classified = (self.classify)(ErrorResponse {
            status,
            retry_after,
            body: text,
        });
        if classified.error.is_retryable() {
            *last_failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reply);
            return Err(classified);
        }
        Ok(Answered::Reply(reply))
    }
}

/// A header's value as text, if present and printable.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The id a body carries: Anthropic error bodies' `request_id`, else the reply's `id`.
pub(crate) fn body_request_id(body: &Value) -> Option<String> {
    ["request_id", "id"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Whether `frame` is the last one the provider sends: Anthropic `message_stop` or `error`,
/// OpenAI `[DONE]` or an error chunk.
fn is_terminal(format: WireFormat, frame: &SseFrame) -> bool {
    match format {
        WireFormat::Anthropic => {
            let data = if frame.event.is_none() {
                serde_json::from_str::<Value>(&frame.data).ok()
            } else {
                None
            };
            matches!(
                anthropic_event_type(frame, data.as_ref()),
                Some(ANTHROPIC_MESSAGE_STOP | ANTHROPIC_ERROR)
            )
        }
        WireFormat::OpenAi => {
            let data = frame.data.trim();
            data == DONE_MARKER
                // Cheap test first: only chunks that mention an error are parsed.
                || (data.contains("\"error\"")
                    && serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|v| v.get("error").cloned())
                        .is_some_and(|e| !e.is_null()))
        }
    }
}

/// What marks a complete stream, for error messages.
fn completion_marker(format: WireFormat) -> &'static str {
    match format {
        WireFormat::Anthropic => ANTHROPIC_MESSAGE_STOP,
        WireFormat::OpenAi => "data: [DONE]",
    }
}

fn frame_of(event: Event) -> SseFrame {
    SseFrame {
        event: (event.event != DEFAULT_EVENT_NAME).then_some(event.event),
        data: event.data,
    }
}

struct Reader<S> {
    source: S,
    format: WireFormat,
    done: bool,
}

/// Turn an SSE byte stream into frames, in order, ending after the provider's terminal frame.
///
/// The source is not read past the terminal frame. A stream that breaks, or closes before
/// its terminal frame, ends with one `Err` ([`LlmError::Interrupted`]; [`LlmError::Decode`]
/// when it is not valid SSE).
pub(crate) fn sse_frames<S, B, E>(bytes: S, format: WireFormat) -> FrameStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let reader = Reader {
        source: Box::pin(bytes.eventsource()),
        format,
        done: false,
    };
    futures::stream::unfold(reader, |mut r| async move {
        if r.done {
            return None;
        }
        let item = match r.source.next().await {
            Some(Ok(event)) => {
                let frame = frame_of(event);
                r.done = is_terminal(r.format, &frame);
                Ok(frame)
            }
            Some(Err(EventStreamError::Transport(e))) => {
                r.done = true;
                Err(LlmError::Interrupted(format!(
                    "reading the upstream stream failed: {e}"
                )))
            }
            Some(Err(e @ (EventStreamError::Utf8(_) | EventStreamError::Parser(_)))) => {
                r.done = true;
                Err(LlmError::Decode(format!(
                    "malformed upstream SSE stream: {e}"
                )))
            }
            None => {
                r.done = true;
                Err(LlmError::Interrupted(format!(
                    "connection closed before {}",
                    completion_marker(r.format)
                )))
            }
        };
        Some((item, r))
    })
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn read(
        format: WireFormat,
        chunks: Vec<Result<&'static str, String>>,
    ) -> Vec<Result<SseFrame, LlmError>> {
        sse_frames(futures::stream::iter(chunks), format)
            .collect()
            .await
    }

    #[tokio::test]
    async fn anthropic_frames_end_at_message_stop() {
        let frames = read(
            WireFormat::Anthropic,
            vec![
                Ok("event: ping\ndata: {\"type\": \"ping\"}\n\nevent: message_st"),
                Ok("op\ndata: {\"type\":\"message_stop\"}\n\nevent: ping\ndata: {}\n\n"),
            ],
        )
        .await;
        assert_eq!(
            frames.len(),
            2,
            "nothing is read after message_stop: {frames:?}"
        );
        assert_eq!(
            frames[1].as_ref().unwrap(),
            &SseFrame::named("message_stop", "{\"type\":\"message_stop\"}"),
            "a frame split across chunks is reassembled"
        );
    }

    #[tokio::test]
    async fn openai_frames_have_no_event_and_end_at_done() {
        let frames = read(
            WireFormat::OpenAi,
            vec![Ok("data: {\"choices\":[]}\n\ndata: [DONE]\n\n")],
        )
        .await;
        let frames: Vec<SseFrame> = frames.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            frames,
            vec![SseFrame::data("{\"choices\":[]}"), SseFrame::data("[DONE]")],
            "OpenAI frames carry data only"
        );
    }

    #[tokio::test]
    async fn early_close_and_broken_reads_end_with_one_error() {
        let frames = read(WireFormat::OpenAi, vec![Ok("data: {}\n\n")]).await;
        assert_eq!(frames.len(), 2, "one frame then one error: {frames:?}");
        assert!(
            matches!(&frames[1], Err(LlmError::Interrupted(m)) if m.contains("[DONE]")),
            "closing before [DONE] interrupts the stream: {frames:?}"
        );
        let frames = read(
            WireFormat::Anthropic,
            vec![
                Ok("event: ping\ndata: {}\n\n"),
                Err("reset".to_owned()),
                Ok("event: ping\ndata: {}\n\n"),
            ],
        )
        .await;
        assert_eq!(
            frames.len(),
            2,
            "nothing is read after a failure: {frames:?}"
        );
        assert!(
            matches!(&frames[1], Err(LlmError::Interrupted(m)) if m.contains("reset")),
            "a read failure interrupts the stream"
        );
    }

    #[tokio::test]
    async fn error_frames_are_terminal() {
        let frames = read(
            WireFormat::Anthropic,
            vec![Ok("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")],
        )
        .await;
        assert_eq!(
            frames.len(),
            1,
            "an Anthropic error event ends the frames: {frames:?}"
        );
        assert!(frames[0].is_ok(), "the error event itself is passed on");
        let frames = read(
            WireFormat::OpenAi,
            vec![Ok("data: {\"error\":{\"message\":\"boom\"}}\n\n")],
        )
        .await;
        assert_eq!(
            frames.len(),
            1,
            "an OpenAI error chunk ends the frames: {frames:?}"
        );
        assert!(
            !is_terminal(
                WireFormat::OpenAi,
                &SseFrame::data(r#"{"choices":[],"error":null}"#)
            ),
            "a null error is no error"
        );
    }

    #[test]
    fn body_ids_prefer_request_id() {
        let body = serde_json::json!({"type":"error","request_id":"req_1","id":"x"});
        assert_eq!(
            body_request_id(&body).as_deref(),
            Some("req_1"),
            "request_id first"
        );
        let body = serde_json::json!({"id":"msg_1"});
        assert_eq!(body_request_id(&body).as_deref(), Some("msg_1"), "then id");
        assert_eq!(body_request_id(&Value::Null), None, "none in garbage");
    }
}
