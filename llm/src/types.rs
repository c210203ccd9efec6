//! The provider contract: request and reply types, token usage, stream events and the [`Provider`] trait.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human (or calling program).
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The wire name of the role (`"user"` / `"assistant"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Plain-text content.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A provider-neutral chat request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Provider model id, e.g. `claude-sonnet-4-5` or `gpt-4o`.
    pub model: String,
    /// Optional system prompt.
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
}

/// Exact usage as reported by the provider (or counted by the simulator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input tokens written to a 5-minute prompt cache.
    pub cache_write_5m_tokens: u64,
    /// Input tokens written to a 1-hour prompt cache.
    pub cache_write_1h_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
}

impl TokenUsage {
    /// Every input-side token (uncached + cache writes + cache reads).
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_write_5m_tokens)
            .saturating_add(self.cache_write_1h_tokens)
            .saturating_add(self.cache_read_tokens)
    }

    /// Whether no token at all was reported.
    pub fn is_zero(&self) -> bool {
        *self == TokenUsage::default()
    }
}

/// A finished (or, inside [`StreamEvent::Failed`], partial) model reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The reply text.
    pub text: String,
    /// Exact token usage; this is what gets billed.
    pub usage: TokenUsage,
    /// The model that actually answered (as reported by the provider).
    pub model: String,
    /// Why generation stopped (`end_turn`, `max_tokens`, `stop`, ...), if known.
    pub stop_reason: Option<String>,
    /// The provider's id for this reply, if any.
    pub provider_message_id: Option<String>,
    /// True when the reply came from the simulator, not a real model.
    pub simulated: bool,
}

/// One event of a streamed reply.
#[derive(Debug)]
pub enum StreamEvent {
    /// Text delta, in order.
    Delta(String),
    /// Cumulative usage known so far (emitted whenever the provider reports usage).
    Usage(TokenUsage),
    /// Terminal: the reply completed.
    Finished(Completion),
    /// Terminal: the stream failed mid-way; `partial` carries text and usage received so far (must still be billed).
    Failed {
        /// What went wrong.
        error: LlmError,
        /// Text and usage received before the failure.
        partial: Completion,
    },
}

impl StreamEvent {
    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, StreamEvent::Finished(_) | StreamEvent::Failed { .. })
    }
}

/// A streamed reply: deltas and usage, then exactly one terminal event.
pub type EventStream = futures::stream::BoxStream<'static, StreamEvent>;

/// A chat model provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Short provider name: `"anthropic"`, `"openai"`, `"simulator"`.
    fn name(&self) -> &'static str;
    /// Whether replies are simulated rather than produced by a real model.
    fn is_simulated(&self) -> bool;
    /// Send the request and wait for the whole reply.
    async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError>;
    /// Errors before the first byte of the reply are returned as Err (after retries); once streaming has started, every stream ends with exactly one terminal event (Finished or Failed), and then ends.
    async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError>;
}

/// An API key or other credential; never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw credential, for putting on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the credential is empty (after trimming whitespace).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-ant-very-secret");
        assert!(
            !format!("{s:?}").contains("very-secret"),
            "Debug must hide the key"
        );
        assert!(
            !format!("{s}").contains("very-secret"),
            "Display must hide the key"
        );
        assert_eq!(
            s.expose(),
            "sk-ant-very-secret",
            "expose returns the raw key"
        );
    }

    #[test]
    fn role_serializes_lowercase() {
        let json = serde_json::to_string(&ChatMessage::user("hi")).unwrap_or_default();
        assert_eq!(
            json, r#"{"role":"user","content":"hi"}"#,
            "role must be lowercase on the wire"
        );
    }

    #[test]
    fn total_input_adds_cache_buckets() {
        let u = TokenUsage {
            input_tokens: 1,
            output_tokens: 100,
            cache_write_5m_tokens: 2,
            cache_write_1h_tokens: 3,
            cache_read_tokens: 4,
        };
        assert_eq!(
            u.total_input_tokens(),
            10,
            "total input = uncached + writes + reads"
        );
    }
}
