//! Model providers for Tally: one [`Provider`] trait, Anthropic/OpenAI clients, a simulator and a router,
//! plus raw pass-through upstreams for the gateway ([`gateway`]).
//!
//! Token usage reported here is billed, so every reply — complete, streamed, or failed
//! mid-stream — carries the exact [`TokenUsage`] known at that point.

#![warn(missing_docs)]

mod anthropic;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
mod openai;
mod retry;
mod router;
mod simulator;
mod transport;
mod types;

pub use anthropic::{
    AnthropicConfig, AnthropicProvider, ANTHROPIC_API_KEY_ENV, ANTHROPIC_BASE_URL_ENV,
    ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_BASE_URL,
};
pub use error::LlmError;
pub use openai::{
    OpenAiConfig, OpenAiProvider, DEFAULT_OPENAI_BASE_URL, OPENAI_API_KEY_ENV, OPENAI_BASE_URL_ENV,
};
pub use retry::{
    RetryPolicy, DEFAULT_INITIAL_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY,
    DEFAULT_MAX_RETRY_AFTER,
};
pub use router::{ModelFamily, ProviderRouter};
pub use simulator::{
    count_input_tokens, count_tokens, SimulatorConfig, SimulatorProvider, DEFAULT_TOKEN_DELAY,
    MESSAGE_OVERHEAD_TOKENS,
};
pub use transport::DEFAULT_REQUEST_TIMEOUT;
pub use types::{
    ChatMessage, ChatRequest, Completion, EventStream, Provider, Role, Secret, StreamEvent,
    TokenUsage,
};
