//! Routes each request to a provider by model name, falling back to the simulator when no key is configured.

use std::sync::Arc;

use crate::anthropic::{AnthropicConfig, AnthropicProvider};
use crate::error::LlmError;
use crate::openai::{OpenAiConfig, OpenAiProvider};
use crate::simulator::{SimulatorConfig, SimulatorProvider};
use crate::types::{ChatRequest, Completion, EventStream, Provider};

/// Model-name prefixes served by Anthropic.
const ANTHROPIC_PREFIXES: [&str; 1] = ["claude-"];
/// Model-name prefixes served by OpenAI.
const OPENAI_PREFIXES: [&str; 5] = ["gpt-", "o1", "o3", "o4", "chatgpt-"];

/// Which vendor a model name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// `claude-*`.
    Anthropic,
    /// `gpt-*`, `o1*`, `o3*`, `o4*`, `chatgpt-*`.
    OpenAi,
    /// Anything else; always simulated.
    Other,
}

impl ModelFamily {
    /// Classify a model name by its prefix.
    pub fn of(model: &str) -> Self {
        if ANTHROPIC_PREFIXES.iter().any(|p| model.starts_with(p)) {
            ModelFamily::Anthropic
        } else if OPENAI_PREFIXES.iter().any(|p| model.starts_with(p)) {
            ModelFamily::OpenAi
        } else {
            ModelFamily::Other
        }
    }
}

/// A [`Provider`] that dispatches each request to the provider for its model.
#[derive(Clone)]
pub struct ProviderRouter {
    anthropic: Option<Arc<dyn Provider>>,
    openai: Option<Arc<dyn Provider>>,
    simulator: Arc<dyn Provider>,
}

impl std::fmt::Debug for ProviderRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRouter")
            .field("anthropic", &self.anthropic.as_ref().map(|p| p.name()))
            .field("openai", &self.openai.as_ref().map(|p| p.name()))
            .field("simulator", &self.simulator.name())
            .finish()
    }
}

impl ProviderRouter {
    /// A router over explicitly given providers; `None` means "not configured, simulate".
    pub fn new(
        anthropic: Option<Arc<dyn Provider>>,
        openai: Option<Arc<dyn Provider>>,
        simulator: SimulatorProvider,
    ) -> Self {
        Self {
            anthropic,
            openai,
            simulator: Arc::new(simulator),
        }
    }

    /// A router configured from `ANTHROPIC_*` / `OPENAI_*` environment variables.
    ///
    /// A provider whose key is missing is simulated; a key that is present but whose
    /// settings are invalid is an error (so a typo does not silently bill nothing).
    pub fn from_env(sim: SimulatorConfig) -> Result<Self, LlmError> {
        let anthropic = AnthropicConfig::from_env()
            .map(AnthropicProvider::new)
            .transpose()?
            .map(|p| Arc::new(p) as Arc<dyn Provider>);
        let openai = OpenAiConfig::from_env()
            .map(OpenAiProvider::new)
            .transpose()?
            .map(|p| Arc::new(p) as Arc<dyn Provider>);
        tracing::info!(
            anthropic.configured = anthropic.is_some(),
            openai.configured = openai.is_some(),
            "Model providers configured; others are simulated."
        );
        Ok(Self::new(anthropic, openai, SimulatorProvider::new(sim)))
    }

    /// The provider that will serve `model`.
    pub fn provider_for(&self, model: &str) -> &dyn Provider {
        let configured = match ModelFamily::of(model) {
            ModelFamily::Anthropic => self.anthropic.as_deref(),
            ModelFamily::OpenAi => self.openai.as_deref(),
            ModelFamily::Other => None,
        };
        configured.unwrap_or(self.simulator.as_ref())
    }

    /// Whether replies for `model` will be simulated.
    pub fn is_simulated_for(&self, model: &str) -> bool {
        self.provider_for(model).is_simulated()
    }
}

#[async_trait::async_trait]
impl Provider for ProviderRouter {
    fn name(&self) -> &'static str {
        "router"
    }

    /// The router as a whole is not simulated; see [`Completion::simulated`] per reply.
    fn is_simulated(&self) -> bool {
        false
    }

    async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        self.provider_for(&req.model).complete(req).await
    }

    async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        self.provider_for(&req.model).stream(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_by_prefix() {
        assert_eq!(
            ModelFamily::of("claude-sonnet-4-5"),
            ModelFamily::Anthropic,
            "claude-* is Anthropic"
        );
        for m in [
            "gpt-4o",
            "o1",
            "o1-mini",
            "o3-mini",
            "o4-mini",
            "chatgpt-4o-latest",
        ] {
            assert_eq!(ModelFamily::of(m), ModelFamily::OpenAi, "{m} is OpenAI");
        }
        for m in ["llama-3", "mistral-large", "", "claude"] {
            assert_eq!(ModelFamily::of(m), ModelFamily::Other, "{m:?} is unknown");
        }
    }

    #[test]
    fn unconfigured_families_are_simulated() {
        let router = ProviderRouter::new(None, None, SimulatorProvider::default());
        assert!(
            router.is_simulated_for("claude-opus-4"),
            "claude without a key is simulated"
        );
        assert!(
            router.is_simulated_for("gpt-4o"),
            "gpt without a key is simulated"
        );
        assert_eq!(
            router.provider_for("gpt-4o").name(),
            "simulator",
            "simulator serves it"
        );
    }
}
