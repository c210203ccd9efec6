//! OpenAI Chat Completions provider: request/response wire format, SSE chunk decoding and usage mapping.

use std::time::Duration;

use eventsource_stream::Event;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::retry::{self, AttemptError, RetryPolicy};
use crate::transport::{self, ErrorResponse, Flow, SseDecoder};
use crate::types::{
    ChatRequest, Completion, EventStream, Provider, Secret, StreamEvent, TokenUsage,
};

/// Default OpenAI API base URL.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com";
/// Environment variable holding the OpenAI API key.
pub const OPENAI_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Environment variable overriding the OpenAI base URL.
pub const OPENAI_BASE_URL_ENV: &str = "OPENAI_BASE_URL";

pub(crate) const PROVIDER_NAME: &str = "openai";
/// The SSE data payload that ends a Chat Completions stream.
pub(crate) const DONE_MARKER: &str = "[DONE]";
/// Error code of a 429 that means "out of credit", which no amount of waiting fixes.
const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// Settings for [`OpenAiProvider`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The API key, sent as `Authorization: Bearer`.
    pub api_key: Secret,
    /// Base URL without the `/v1/chat/completions` path (default [`DEFAULT_OPENAI_BASE_URL`]).
    pub base_url: String,
    /// Idle read timeout for streams and total deadline for non-streaming requests.
    pub timeout: Duration,
    /// Retry policy for requests that fail before the reply starts.
    pub retry: RetryPolicy,
}

impl OpenAiConfig {
    /// A config with the given key and default everything else.
    pub fn new(api_key: impl Into<Secret>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            timeout: transport::DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// Read `OPENAI_API_KEY` and `OPENAI_BASE_URL`; `None` when no (non-blank) key is set.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup` (for tests and layered config).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let key = lookup(OPENAI_API_KEY_ENV).filter(|k| !k.trim().is_empty())?;
        let mut config = Self::new(key.trim());
        if let Some(url) = lookup(OPENAI_BASE_URL_ENV).filter(|u| !u.trim().is_empty()) {
            config.base_url = url.trim().to_owned();
        }
        Some(config)
    }

    /// Check the settings; the error names the bad key.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.api_key.is_blank() {
            return Err(LlmError::Config(format!("{OPENAI_API_KEY_ENV} is empty")));
        }
        transport::normalize_base_url(OPENAI_BASE_URL_ENV, &self.base_url)?;
        if self.timeout.is_zero() {
            return Err(LlmError::Config("openai.timeout must be positive".into()));
        }
        self.retry.validate()
    }
}

/// A [`Provider`] for OpenAI's Chat Completions API.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    config: OpenAiConfig,
    completions_url: String,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// Validate the config and build the HTTP client.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        config.validate()?;
        let base = transport::normalize_base_url(OPENAI_BASE_URL_ENV, &config.base_url)?;
        let client = transport::build_client(config.timeout)?;
        Ok(Self {
            completions_url: format!("{base}/v1/chat/completions"),
            config,
            client,
        })
    }

    /// The provider's configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// One POST attempt; non-success statuses become classified errors.
    async fn post(&self, body: &CompletionsRequest<'_>) -> Result<reqwest::Response, AttemptError> {
        let request = self
            .client
            .post(&self.completions_url)
            .bearer_auth(self.config.api_key.expose())
            .json(body);
        transport::send_attempt(request, body.stream, self.config.timeout, classify_error).await
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        false
    }

    async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        let body = CompletionsRequest::new(req, false);
        let completion = retry::run(&self.config.retry, PROVIDER_NAME, || async {
            let resp = self.post(&body).await?;
            // A body that breaks off is a transport failure: nothing was handed out yet, so retry.
            let parsed: CompletionsResponse = transport::read_json(resp, "chat completion response").await?;
            Ok(parsed.into_completion(&req.model))
        })
        .await?;
        tracing::debug!(
            provider = PROVIDER_NAME,
            model = %completion.model,
            usage.input_tokens = completion.usage.input_tokens,
            usage.output_tokens = completion.usage.output_tokens,
            "OpenAI reply completed."
        );
        Ok(completion)
    }

    async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        let body = CompletionsRequest::new(req, true);
        let resp = retry::run(&self.config.retry, PROVIDER_NAME, || self.post(&body)).await?;
        Ok(transport::drive(
            resp.bytes_stream(),
            OpenAiDecoder::new(&req.model),
        ))
    }
}

/// Map an OpenAI error response: 429 by status (unless out of quota), other 4xx via the error JSON.
pub(crate) fn classify_error(resp: ErrorResponse) -> AttemptError {
    let retry_after = resp.retry_after;
    let api = serde_json::from_str::<WireErrorEnvelope>(&resp.body)
        .ok()
        .map(|e| e.error);
    let error = match (resp.status, api) {
        (429, Some(api)) if api.is_insufficient_quota() => api.into_error(),
        (429, _) => LlmError::RateLimited { retry_after },
        (400..=499, Some(api)) => api.into_error(),
        _ => resp.into_status_error(),
    };
    AttemptError { error, retry_after }
}

#[derive(Debug, Serialize)]
struct CompletionsRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    /// `max_tokens` is deprecated and rejected by reasoning models; this works for all.
    max_completion_tokens: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> CompletionsRequest<'a> {
    fn new(req: &'a ChatRequest, stream: bool) -> Self {
        let system = req.system.as_deref().map(|content| WireMessage {
            role: "system",
            content,
        });
        let messages = system
            .into_iter()
            .chain(req.messages.iter().map(|m| WireMessage {
                role: m.role.as_str(),
                content: &m.content,
            }))
            .collect();
        Self {
            model: &req.model,
            messages,
            max_completion_tokens: req.max_tokens,
            stream,
            // Without include_usage a streamed reply carries no usage at all, and could not be billed.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
}

impl WireUsage {
    /// OpenAI's prompt_tokens include cached ones; we bill them separately as cache reads.
    pub(crate) fn to_usage(&self) -> TokenUsage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        TokenUsage {
            input_tokens: self.prompt_tokens.saturating_sub(cached),
            output_tokens: self.completion_tokens,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            cache_read_tokens: cached,
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompletionsResponse {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<ResponseMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseMessage {
    content: Option<String>,
}

impl CompletionsResponse {
    fn into_completion(self, requested_model: &str) -> Completion {
        let usage = self
            .usage
            .as_ref()
            .map(WireUsage::to_usage)
            .unwrap_or_default();
        let first = self.choices.into_iter().next();
        let stop_reason = first.as_ref().and_then(|c| c.finish_reason.clone());
        let text = first
            .and_then(|c| c.message)
            .and_then(|m| m.content)
            .unwrap_or_default();
        Completion {
            text,
            usage,
            model: self.model.unwrap_or_else(|| requested_model.to_owned()),
            stop_reason,
            provider_message_id: self.id,
            simulated: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireErrorEnvelope {
    error: WireError,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: String,
}

impl WireError {
    fn code_str(&self) -> Option<&str> {
        self.code.as_ref().and_then(serde_json::Value::as_str)
    }

    fn is_insufficient_quota(&self) -> bool {
        self.code_str() == Some(INSUFFICIENT_QUOTA)
            || self.kind.as_deref() == Some(INSUFFICIENT_QUOTA)
    }

    fn into_error(self) -> LlmError {
        let kind = self
            .kind
            .clone()
            .or_else(|| self.code_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown_error".to_owned());
        LlmError::Api {
            kind,
            message: self.message,
        }
    }
}

/// One `data:` chunk of a streamed chat completion.
#[derive(Debug, Deserialize)]
struct WireChunk {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
}

/// Accumulates text and usage of one streamed chat completion.
#[derive(Debug)]
pub(crate) struct OpenAiDecoder {
    text: String,
    usage: TokenUsage,
    model: String,
    id: Option<String>,
    stop_reason: Option<String>,
}

impl OpenAiDecoder {
    /// A decoder for a reply to `requested_model` (replaced by the model the chunks report).
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

impl SseDecoder for OpenAiDecoder {
    const COMPLETION_MARKER: &'static str = "data: [DONE]";

    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<Flow, LlmError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        if data == DONE_MARKER {
            return Ok(Flow::Done);
        }
        let chunk: WireChunk = serde_json::from_str(data)
            .map_err(|e| LlmError::Decode(format!("chat completion chunk: {e}")))?;
        if let Some(error) = chunk.error {
            return Err(error.into_error());
        }
        if let Some(id) = chunk.id.filter(|id| !id.is_empty()) {
            self.id = Some(id);
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        // We request one choice; ignore any others so their text is not interleaved.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice
                .delta
                .and_then(|d| d.content)
                .filter(|t| !t.is_empty())
            {
                self.text.push_str(&text);
                out.push(StreamEvent::Delta(text));
            }
            if choice.finish_reason.is_some() {
                self.stop_reason = choice.finish_reason;
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage.to_usage();
            out.push(StreamEvent::Usage(self.usage));
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

    fn data(d: &str) -> Event {
        Event {
            event: "message".to_owned(),
            data: d.to_owned(),
            id: String::new(),
            retry: None,
        }
    }

    #[test]
    fn stream_chunks_accumulate_text_and_map_cached_usage() {
        let mut d = OpenAiDecoder::new("gpt-x");
        let mut out = Vec::new();
        let chunks = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-x-2024","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-x-2024","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-x-2024","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-x-2024","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_tokens_details":{"cached_tokens":64}}}"#,
        ];
        for c in chunks {
            assert_eq!(
                d.on_event(&data(c), &mut out),
                Ok(Flow::Continue),
                "chunks continue the stream"
            );
        }
        assert_eq!(
            d.on_event(&data("[DONE]"), &mut out),
            Ok(Flow::Done),
            "[DONE] ends the stream"
        );
        let snap = d.snapshot();
        assert_eq!(snap.text, "Hi", "text from deltas");
        assert_eq!(
            snap.stop_reason.as_deref(),
            Some("stop"),
            "finish_reason kept"
        );
        assert_eq!(
            snap.usage,
            TokenUsage {
                input_tokens: 36,
                output_tokens: 5,
                cache_read_tokens: 64,
                ..TokenUsage::default()
            },
            "cached tokens are split out of prompt_tokens"
        );
        assert!(
            matches!(out.last(), Some(StreamEvent::Usage(_))),
            "the usage chunk emits a Usage event"
        );
    }

    #[test]
    fn cached_greater_than_prompt_saturates() {
        let w = WireUsage {
            prompt_tokens: 3,
            completion_tokens: 1,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(5),
            }),
        };
        assert_eq!(w.to_usage().input_tokens, 0, "input tokens never underflow");
    }

    #[test]
    fn error_chunk_fails() {
        let mut d = OpenAiDecoder::new("gpt-x");
        let r = d.on_event(
            &data(r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#),
            &mut Vec::new(),
        );
        assert_eq!(
            r,
            Err(LlmError::Api {
                kind: "server_error".into(),
                message: "boom".into()
            }),
            "error chunk becomes an Api error"
        );
    }

    #[test]
    fn insufficient_quota_is_not_rate_limited() {
        let resp = ErrorResponse {
            status: 429,
            retry_after: None,
            body: r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#.into(),
        };
        let err = classify_error(resp).error;
        assert!(
            !err.is_retryable(),
            "running out of quota is not retryable: {err:?}"
        );
    }

    #[test]
    fn system_prompt_is_a_system_message() {
        let req = ChatRequest {
            model: "gpt-4o".into(),
            system: Some("be brief".into()),
            messages: vec![crate::ChatMessage::user("hi")],
            max_tokens: 10,
        };
        let json = serde_json::to_value(CompletionsRequest::new(&req, true)).unwrap();
        assert_eq!(json["messages"][0]["role"], "system", "system prompt first");
        assert_eq!(
            json["messages"][1]["content"], "hi",
            "then the conversation"
        );
        assert_eq!(
            json["stream_options"]["include_usage"], true,
            "usage requested when streaming"
        );
    }
}
