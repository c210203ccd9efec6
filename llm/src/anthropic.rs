//! Anthropic Messages API provider: request/response wire format, SSE stream decoding and usage mapping.

use std::time::Duration;

use eventsource_stream::Event;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::retry::{self, AttemptError, RetryPolicy};
use crate::transport::{self, ErrorResponse, Flow, SseDecoder};
use crate::types::{
    ChatRequest, Completion, EventStream, Provider, Role, Secret, StreamEvent, TokenUsage,
};

/// Default Anthropic API base URL.
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header value this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Environment variable holding the Anthropic API key.
pub const ANTHROPIC_API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// Environment variable overriding the Anthropic base URL.
pub const ANTHROPIC_BASE_URL_ENV: &str = "ANTHROPIC_BASE_URL";

pub(crate) const PROVIDER_NAME: &str = "anthropic";

/// Settings for [`AnthropicProvider`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicConfig {
    /// The API key, sent as `x-api-key`.
    pub api_key: Secret,
    /// Base URL without the `/v1/messages` path (default [`DEFAULT_ANTHROPIC_BASE_URL`]).
    pub base_url: String,
    /// Idle read timeout for streams and total deadline for non-streaming requests.
    pub timeout: Duration,
    /// Retry policy for requests that fail before the reply starts.
    pub retry: RetryPolicy,
}

impl AnthropicConfig {
    /// A config with the given key and default everything else.
    pub fn new(api_key: impl Into<Secret>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: DEFAULT_ANTHROPIC_BASE_URL.to_owned(),
            timeout: transport::DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// Read `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`; `None` when no (non-blank) key is set.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup` (for tests and layered config).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let key = lookup(ANTHROPIC_API_KEY_ENV).filter(|k| !k.trim().is_empty())?;
        let mut config = Self::new(key.trim());
        if let Some(url) = lookup(ANTHROPIC_BASE_URL_ENV).filter(|u| !u.trim().is_empty()) {
            config.base_url = url.trim().to_owned();
        }
        Some(config)
    }

    /// Check the settings; the error names the bad key.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.api_key.is_blank() {
            return Err(LlmError::Config(format!(
                "{ANTHROPIC_API_KEY_ENV} is empty"
            )));
        }
        transport::normalize_base_url(ANTHROPIC_BASE_URL_ENV, &self.base_url)?;
        if self.timeout.is_zero() {
            return Err(LlmError::Config(
                "anthropic.timeout must be positive".into(),
            ));
        }
        self.retry.validate()
    }
}

/// A [`Provider`] for Anthropic's Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    config: AnthropicConfig,
    messages_url: String,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// Validate the config and build the HTTP client.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        config.validate()?;
        let base = transport::normalize_base_url(ANTHROPIC_BASE_URL_ENV, &config.base_url)?;
        let client = transport::build_client(config.timeout)?;
        Ok(Self {
            messages_url: format!("{base}/v1/messages"),
            config,
            client,
        })
    }

    /// The provider's configuration.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    /// One POST attempt; non-success statuses become classified errors.
    async fn post(&self, body: &MessagesRequest<'_>) -> Result<reqwest::Response, AttemptError> {
        let request = self
            .client
            .post(&self.messages_url)
            .header("x-api-key", self.config.api_key.expose())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body);
        transport::send_attempt(request, body.stream, self.config.timeout, classify_error).await
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        false
    }

    async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        let body = MessagesRequest::new(req, false);
        let completion = retry::run(&self.config.retry, PROVIDER_NAME, || async {
            let resp = self.post(&body).await?;
            // A body that breaks off is a transport failure: nothing was handed out yet, so retry.
            let parsed: MessagesResponse = transport::read_json(resp, "messages response").await?;
            Ok(parsed.into_completion())
        })
        .await?;
        tracing::debug!(
            provider = PROVIDER_NAME,
            model = %completion.model,
            usage.input_tokens = completion.usage.input_tokens,
            usage.output_tokens = completion.usage.output_tokens,
            "Anthropic reply completed."
        );
        Ok(completion)
    }

    async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        let body = MessagesRequest::new(req, true);
        let resp = retry::run(&self.config.retry, PROVIDER_NAME, || self.post(&body)).await?;
        Ok(transport::drive(
            resp.bytes_stream(),
            AnthropicDecoder::new(&req.model),
        ))
    }
}

/// Map an Anthropic error response: 429 and 529 by status, other 4xx via the error JSON.
pub(crate) fn classify_error(resp: ErrorResponse) -> AttemptError {
    let retry_after = resp.retry_after;
    let error = match resp.status {
        429 => LlmError::RateLimited { retry_after },
        529 => LlmError::Overloaded,
        400..=499 => match serde_json::from_str::<WireErrorEnvelope>(&resp.body) {
            Ok(envelope) => envelope.error.into_error(),
            Err(_) => resp.into_status_error(),
        },
        _ => resp.into_status_error(),
    };
    AttemptError { error, retry_after }
}

#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: Role,
    content: &'a str,
}

impl<'a> MessagesRequest<'a> {
    fn new(req: &'a ChatRequest, stream: bool) -> Self {
        Self {
            model: &req.model,
            max_tokens: req.max_tokens,
            system: req.system.as_deref(),
            messages: req
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role,
                    content: &m.content,
                })
                .collect(),
            stream,
        }
    }
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    id: String,
    model: String,
    #[serde(default)]
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

impl MessagesResponse {
    fn into_completion(self) -> Completion {
        let mut usage = TokenUsage::default();
        self.usage.apply_to(&mut usage);
        let text = self
            .content
            .into_iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text),
                ContentBlock::Other => None,
            })
            .collect::<String>();
        Completion {
            text,
            usage,
            model: self.model,
            stop_reason: self.stop_reason,
            provider_message_id: Some(self.id),
            simulated: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    /// Tool use, thinking and future block types carry no billable reply text.
    #[serde(other)]
    Other,
}

/// Anthropic's `usage` object; every field optional because `message_delta` may carry only some.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<WireCacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
struct WireCacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Overwrite the fields this report carries; Anthropic's counts are cumulative, never deltas.
    pub(crate) fn apply_to(&self, usage: &mut TokenUsage) {
        if let Some(v) = self.input_tokens {
            usage.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output_tokens = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read_tokens = v;
        }
        match (&self.cache_creation, self.cache_creation_input_tokens) {
            (Some(split), total) => {
                let five = split.ephemeral_5m_input_tokens.unwrap_or(0);
                let hour = split.ephemeral_1h_input_tokens.unwrap_or(0);
                // Never drop billed tokens: cache writes the split does not account for are
                // billed at the default (5-minute) TTL.
                let unsplit = total.map_or(0, |t| t.saturating_sub(five.saturating_add(hour)));
                usage.cache_write_5m_tokens = five.saturating_add(unsplit);
                usage.cache_write_1h_tokens = hour;
            }
            (None, Some(total)) => {
                // No split: everything is 5m, except that a split we already learned
                // (from message_start) is kept when the total still covers it.
                let hour = usage.cache_write_1h_tokens.min(total);
                usage.cache_write_1h_tokens = hour;
                usage.cache_write_5m_tokens = total - hour;
            }
            (None, None) => {}
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireErrorEnvelope {
    error: WireError,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl WireError {
    fn into_error(self) -> LlmError {
        LlmError::Api {
            kind: self.kind,
            message: self.message,
        }
    }
}

/// The SSE events of a streamed Messages reply; unknown types are ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireStreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        content_block: Option<ContentBlock>,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, `content_block_stop` and event types added after this client was written.
    #[serde(other)]
    Ignored,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    id: Option<String>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    /// Tool-input JSON, thinking and signature deltas are not reply text.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

/// Accumulates text and usage of one streamed Anthropic reply.
#[derive(Debug)]
pub(crate) struct AnthropicDecoder {
    text: String,
    usage: TokenUsage,
    model: String,
    id: Option<String>,
    stop_reason: Option<String>,
}

impl AnthropicDecoder {
    /// A decoder for a reply to `requested_model` (replaced by the model `message_start` reports).
    pub(crate) fn new(requested_model: &str) -> Self {
        Self {
            text: String::new(),
            usage: TokenUsage::default(),
            model: requested_model.to_owned(),
            id: None,
            stop_reason: None,
        }
    }
}

impl SseDecoder for AnthropicDecoder {
    const COMPLETION_MARKER: &'static str = "message_stop";

    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<Flow, LlmError> {
        if event.data.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        let parsed: WireStreamEvent = serde_json::from_str(&event.data)
            .map_err(|e| LlmError::Decode(format!("anthropic `{}` event: {e}", event.event)))?;
        match parsed {
            WireStreamEvent::MessageStart { message } => {
                if let Some(id) = message.id {
                    self.id = Some(id);
                }
                if let Some(model) = message.model {
                    self.model = model;
                }
                if let Some(usage) = message.usage {
                    usage.apply_to(&mut self.usage);
                }
                out.push(StreamEvent::Usage(self.usage));
            }
            WireStreamEvent::ContentBlockStart {
                content_block: Some(ContentBlock::Text { text }),
            } if !text.is_empty() => {
                self.text.push_str(&text);
                out.push(StreamEvent::Delta(text));
            }
            WireStreamEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
            } => {
                if !text.is_empty() {
                    self.text.push_str(&text);
                    out.push(StreamEvent::Delta(text));
                }
            }
            WireStreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    usage.apply_to(&mut self.usage);
                }
                out.push(StreamEvent::Usage(self.usage));
            }
            WireStreamEvent::MessageStop => return Ok(Flow::Done),
            WireStreamEvent::Error { error } => return Err(error.into_error()),
            WireStreamEvent::ContentBlockStart { .. }
            | WireStreamEvent::ContentBlockDelta { .. }
            | WireStreamEvent::Ignored => {}
        }
        Ok(Flow::Continue)
    }

    fn snapshot(&self) -> Completion {
        Completion {
            text: self.text.clone(),
            usage: self.usage,
            model: self.model.clone(),
            stop_reason: self.stop_reason.clone(),
            provider_message_id: self.id.clone(),
            simulated: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> Event {
        Event {
            event: name.to_owned(),
            data: data.to_owned(),
            id: String::new(),
            retry: None,
        }
    }

    fn feed(
        decoder: &mut AnthropicDecoder,
        events: &[(&str, &str)],
    ) -> (Vec<StreamEvent>, Result<Flow, LlmError>) {
        let mut out = Vec::new();
        let mut last = Ok(Flow::Continue);
        for (name, data) in events {
            last = decoder.on_event(&ev(name, data), &mut out);
            if !matches!(last, Ok(Flow::Continue)) {
                break;
            }
        }
        (out, last)
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":30,"cache_read_input_tokens":40,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20},"output_tokens":1}}}"#;

    #[test]
    fn output_tokens_are_cumulative_not_summed() {
        let mut d = AnthropicDecoder::new("requested");
        let (out, flow) = feed(
            &mut d,
            &[
                ("message_start", START),
                ("ping", r#"{"type": "ping"}"#),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
                ),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":3}}"#,
                ),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        );
        assert_eq!(flow, Ok(Flow::Done), "message_stop finishes the reply");
        let usages: Vec<TokenUsage> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Usage(u) => Some(*u),
                _ => None,
            })
            .collect();
        assert_eq!(
            usages.len(),
            3,
            "usage after message_start and each message_delta"
        );
        let snap = d.snapshot();
        assert_eq!(snap.text, "Hello", "deltas join into the text");
        assert_eq!(
            snap.usage,
            TokenUsage {
                input_tokens: 25,
                output_tokens: 7,
                cache_write_5m_tokens: 10,
                cache_write_1h_tokens: 20,
                cache_read_tokens: 40
            },
            "last cumulative output_tokens wins; cache split comes from message_start"
        );
        assert_eq!(snap.model, "claude-x", "model from message_start");
        assert_eq!(
            snap.stop_reason.as_deref(),
            Some("end_turn"),
            "stop reason from message_delta"
        );
        assert_eq!(
            snap.provider_message_id.as_deref(),
            Some("msg_1"),
            "id from message_start"
        );
    }

    #[test]
    fn message_delta_may_repeat_input_and_cache_fields() {
        let mut d = AnthropicDecoder::new("m");
        let (_, flow) = feed(
            &mut d,
            &[
                ("message_start", START),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":26,"cache_creation_input_tokens":30,"cache_read_input_tokens":41,"output_tokens":9}}"#,
                ),
            ],
        );
        assert_eq!(flow, Ok(Flow::Continue), "no terminal yet");
        let u = d.snapshot().usage;
        assert_eq!(
            u.input_tokens, 26,
            "input from message_delta overrides message_start"
        );
        assert_eq!(u.cache_read_tokens, 41, "cache read from message_delta");
        assert_eq!(
            (u.cache_write_5m_tokens, u.cache_write_1h_tokens),
            (10, 20),
            "an unsplit total that matches keeps the known 5m/1h split"
        );
        assert_eq!(u.output_tokens, 9, "output from message_delta");
    }

    #[test]
    fn unsplit_cache_creation_counts_as_5m() {
        let mut u = TokenUsage::default();
        let wire: WireUsage = serde_json::from_str(
            r#"{"input_tokens":5,"cache_creation_input_tokens":100,"output_tokens":2}"#,
        )
        .unwrap();
        wire.apply_to(&mut u);
        assert_eq!(u.cache_write_5m_tokens, 100, "unsplit cache writes are 5m");
        assert_eq!(u.cache_write_1h_tokens, 0, "no 1h writes without a split");
    }

    #[test]
    fn split_not_covering_total_bills_rest_as_5m() {
        let mut u = TokenUsage::default();
        let wire: WireUsage = serde_json::from_str(
            r#"{"cache_creation_input_tokens":100,"cache_creation":{"ephemeral_1h_input_tokens":60}}"#,
        )
        .unwrap();
        wire.apply_to(&mut u);
        assert_eq!(
            (u.cache_write_5m_tokens, u.cache_write_1h_tokens),
            (40, 60),
            "no cache write is dropped"
        );
    }

    #[test]
    fn error_event_fails_and_unknown_events_are_ignored() {
        let mut d = AnthropicDecoder::new("m");
        let (out, flow) = feed(
            &mut d,
            &[
                ("message_start", START),
                (
                    "thinking_about_it",
                    r#"{"type":"thinking_about_it","foo":{"bar":1}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
                ),
                (
                    "error",
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ),
            ],
        );
        assert_eq!(
            flow,
            Err(LlmError::Api {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            }),
            "error event becomes an Api error"
        );
        assert!(
            !out.iter().any(|e| matches!(e, StreamEvent::Delta(_))),
            "non-text deltas and unknown events produce no text"
        );
    }

    #[test]
    fn non_stream_response_maps_usage() {
        let body = r#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-y","content":[{"type":"text","text":"Hi "},{"type":"tool_use","id":"t","name":"n","input":{}},{"type":"text","text":"there"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;
        let c = serde_json::from_str::<MessagesResponse>(body)
            .unwrap()
            .into_completion();
        assert_eq!(
            c.text, "Hi there",
            "text blocks are concatenated, others skipped"
        );
        assert_eq!(c.usage.input_tokens, 12, "input tokens");
        assert_eq!(c.usage.output_tokens, 6, "output tokens");
    }

    #[test]
    fn config_from_lookup() {
        let none = AnthropicConfig::from_lookup(|_| None);
        assert!(none.is_none(), "no key means no config");
        let blank =
            AnthropicConfig::from_lookup(|k| (k == ANTHROPIC_API_KEY_ENV).then(|| "  ".to_owned()));
        assert!(blank.is_none(), "a blank key means no config");
        let cfg = AnthropicConfig::from_lookup(|k| match k {
            ANTHROPIC_API_KEY_ENV => Some("sk-1".to_owned()),
            ANTHROPIC_BASE_URL_ENV => Some("http://127.0.0.1:1".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.base_url, "http://127.0.0.1:1", "base url from env");
        assert!(
            !format!("{cfg:?}").contains("sk-1"),
            "config Debug hides the key"
        );
    }
}
