//! Raw pass-through upstream clients for the gateway: provider wire-format bodies in, provider answers and exact usage out.
//!
//! Unlike [`crate::Provider`], which speaks plain-text chat, an [`Upstream`] forwards the
//! client's JSON body as it is (tools, content blocks, `cache_control`, `n`, ... pass through)
//! and hands back the provider's answer as it came: a JSON body with its HTTP status, or the
//! SSE frames in order. Usage is parsed exactly from what the provider reported
//! ([`usage_from_anthropic_body`], [`usage_from_openai_body`], [`UsageTracker`]), because it
//! is what gets billed.
//!
//! Retries happen only before any byte is returned: connection failures and 429/5xx/529
//! answers are retried with the upstream's [`crate::RetryPolicy`] (honouring `retry-after`);
//! once retries are exhausted, a 429/5xx answer is returned as an [`UpstreamReply`] with the
//! provider's status and body, so the gateway can pass it through.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::LlmError;
use crate::types::TokenUsage;

mod anthropic;
pub(crate) mod http;
mod openai;
mod router;
mod simulator;
mod usage;

pub use anthropic::AnthropicUpstream;
pub use openai::OpenAiUpstream;
pub use router::UpstreamRouter;
pub use simulator::SimulatedUpstream;
pub use usage::{usage_from_anthropic_body, usage_from_openai_body, UsageTracker};

/// The request header naming the Anthropic API version.
pub const ANTHROPIC_VERSION_HEADER: &str = "anthropic-version";
/// The request header carrying the Anthropic API key.
pub const ANTHROPIC_API_KEY_HEADER: &str = "x-api-key";
/// The response header in which Anthropic reports its request id.
pub const ANTHROPIC_REQUEST_ID_HEADER: &str = "request-id";
/// The response header in which OpenAI reports its request id.
pub const OPENAI_REQUEST_ID_HEADER: &str = "x-request-id";

/// Which provider API a body is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Anthropic Messages API (`POST /v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions API (`POST /v1/chat/completions`).
    OpenAi,
}

impl WireFormat {
    /// The response header carrying the provider's request id.
    pub fn request_id_header(self) -> &'static str {
        match self {
            WireFormat::Anthropic => ANTHROPIC_REQUEST_ID_HEADER,
            WireFormat::OpenAi => OPENAI_REQUEST_ID_HEADER,
        }
    }

    /// Exact usage of a complete (non-streaming) success body in this format.
    pub fn usage_from_body(self, body: &serde_json::Value) -> TokenUsage {
        match self {
            WireFormat::Anthropic => usage_from_anthropic_body(body),
            WireFormat::OpenAi => usage_from_openai_body(body),
        }
    }

    /// A provider-shaped error body, for errors Tally produces itself (a non-JSON upstream
    /// error page, a request the simulator cannot answer), so SDKs parse them as usual.
    pub fn error_body(self, kind: &str, message: &str) -> serde_json::Value {
        match self {
            WireFormat::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": kind, "message": message },
            }),
            WireFormat::OpenAi => serde_json::json!({
                "error": { "message": message, "type": kind, "param": null, "code": null },
            }),
        }
    }
}

/// A complete (non-streaming) upstream answer.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamReply {
    /// Upstream HTTP status: 2xx on success; 4xx/5xx are passed through to the client.
    pub status: u16,
    /// The upstream JSON body as received (success or provider error body). A non-JSON error
    /// body (a proxy's HTML page, say) is wrapped in a provider-shaped error body.
    pub body: serde_json::Value,
    /// Exact usage parsed from the body (zero on errors).
    pub usage: TokenUsage,
    /// Upstream request id (Anthropic `request-id`, OpenAI `x-request-id` header), else the body's `request_id` or `id`.
    pub request_id: Option<String>,
    /// True when the answer came from the simulator, not a real model.
    pub simulated: bool,
}

/// One SSE frame, as on the wire.
///
/// `event` is `None` for a frame without an `event:` line (every OpenAI frame). A frame whose
/// `event:` line says `message` also reads as `None`: SSE defines the two as the same, and
/// no provider names an event `message`.
#[derive(Debug, Clone, PartialEq)]
pub struct SseFrame {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` field (several `data:` lines joined with `\n`).
    pub data: String,
}

impl SseFrame {
    /// A frame with an `event:` line (Anthropic style).
    pub fn named(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            event: Some(event.into()),
            data: data.into(),
        }
    }

    /// A frame with only a `data:` line (OpenAI style).
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            event: None,
            data: data.into(),
        }
    }

    /// The frame as SSE text, terminated by its blank line.
    pub fn to_sse(&self) -> String {
        let mut out = String::new();
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// The frames of a streamed answer.
pub type FrameStream = futures::stream::BoxStream<'static, Result<SseFrame, LlmError>>;

/// Usage the upstream reported in frames that were withheld from [`UpstreamStream::frames`].
///
/// OpenAI reports a stream's usage only in a final usage-only chunk, and only when the request
/// sets `stream_options.include_usage`. [`OpenAiUpstream`] (and the simulator) always ask for
/// it, and withhold that chunk from clients that did not; its usage lands here instead, so it
/// is still billed. Feed it to [`UsageTracker::observe_withheld`] once the frames have ended.
#[derive(Debug, Clone, Default)]
pub struct WithheldUsage(Arc<Mutex<Option<TokenUsage>>>);

impl WithheldUsage {
    /// An empty handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usage of the withheld frames, if any was withheld.
    pub fn get(&self) -> Option<TokenUsage> {
        // A poisoned lock still holds a valid `Option<TokenUsage>` (a plain copy is stored).
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record usage read from a withheld frame (the latest report wins: it is cumulative).
    pub(crate) fn set(&self, usage: TokenUsage) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(usage);
    }
}

/// A streaming upstream answer: the frames exactly as the upstream sent them, in order.
///
/// The frames end after the provider's terminal frame (`message_stop` or an `error` event for
/// Anthropic, `data: [DONE]` or an error chunk for OpenAI). A connection that breaks or closes
/// before it yields one final `Err` ([`LlmError::Interrupted`], or [`LlmError::Decode`] for
/// a malformed stream) and ends.
pub struct UpstreamStream {
    /// Upstream HTTP status, always 2xx (a non-2xx status before streaming is an [`UpstreamReply`]).
    pub status: u16,
    /// Upstream request id header, if sent.
    pub request_id: Option<String>,
    /// True when the answer comes from the simulator, not a real model.
    pub simulated: bool,
    /// The SSE frames, in order.
    pub frames: FrameStream,
    /// Usage of frames withheld from `frames` (see [`WithheldUsage`]); empty for Anthropic.
    pub withheld_usage: WithheldUsage,
}

impl fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("status", &self.status)
            .field("request_id", &self.request_id)
            .field("simulated", &self.simulated)
            .field("withheld_usage", &self.withheld_usage)
            .finish_non_exhaustive()
    }
}

/// What an upstream answered.
#[derive(Debug)]
pub enum UpstreamResponse {
    /// A complete JSON answer: a non-streaming success, or any error status.
    Reply(UpstreamReply),
    /// A streaming success.
    Stream(UpstreamStream),
}

/// A provider endpoint that takes bodies in its own wire format and answers in it.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// The wire format of bodies this upstream takes and answers in.
    fn format(&self) -> WireFormat;

    /// Short name: `"anthropic"`, `"openai"` or `"simulator"`.
    fn name(&self) -> &'static str;

    /// Whether answers are simulated rather than produced by a real model.
    fn is_simulated(&self) -> bool;

    /// POST `body` to the provider (Anthropic `{base}/v1/messages`, OpenAI
    /// `{base}/v1/chat/completions`).
    ///
    /// When `body["stream"]` is `true` a 2xx answer is a [`UpstreamResponse::Stream`];
    /// anything else is a [`UpstreamResponse::Reply`]. Connection failures and 429/5xx/529
    /// answers are retried before any byte is returned; when retries run out on such a status,
    /// it is returned as a `Reply` with the provider's body. A transport failure on the last
    /// attempt is `Err(LlmError::Transport)`; a 2xx body that is not JSON is `Err(LlmError::Decode)`.
    async fn send(&self, body: serde_json::Value) -> Result<UpstreamResponse, LlmError>;
}

/// Whether a request body asks for a streamed answer.
pub(crate) fn wants_stream(body: &serde_json::Value) -> bool {
    body.get("stream").and_then(serde_json::Value::as_bool) == Some(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_render_as_sse() {
        assert_eq!(
            SseFrame::named("ping", r#"{"type":"ping"}"#).to_sse(),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "a named frame has an event line"
        );
        assert_eq!(
            SseFrame::data("a\nb").to_sse(),
            "data: a\ndata: b\n\n",
            "multi-line data becomes several data lines"
        );
    }

    #[test]
    fn withheld_usage_is_shared_between_clones() {
        let handle = WithheldUsage::new();
        assert_eq!(handle.get(), None, "nothing withheld yet");
        let clone = handle.clone();
        let usage = TokenUsage {
            input_tokens: 3,
            ..TokenUsage::default()
        };
        clone.set(usage);
        assert_eq!(handle.get(), Some(usage), "clones share one slot");
    }

    #[test]
    fn error_bodies_follow_each_format() {
        let a = WireFormat::Anthropic.error_body("api_error", "boom");
        assert_eq!(a["type"], "error", "Anthropic error envelope");
        assert_eq!(a["error"]["type"], "api_error", "Anthropic error kind");
        let o = WireFormat::OpenAi.error_body("server_error", "boom");
        assert_eq!(o["error"]["type"], "server_error", "OpenAI error kind");
        assert_eq!(o["error"]["message"], "boom", "OpenAI error message");
    }

    #[test]
    fn stream_flag_must_be_true() {
        assert!(
            wants_stream(&serde_json::json!({"stream": true})),
            "true streams"
        );
        assert!(
            !wants_stream(&serde_json::json!({"stream": "yes"})),
            "only a boolean counts"
        );
        assert!(
            !wants_stream(&serde_json::json!([])),
            "garbage does not stream"
        );
    }
}
