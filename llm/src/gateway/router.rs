//! [`UpstreamRouter`]: picks the upstream for a model name, simulating providers that have no API key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{AnthropicUpstream, OpenAiUpstream, SimulatedUpstream, Upstream, WireFormat};
use crate::anthropic::AnthropicConfig;
use crate::error::LlmError;
use crate::openai::OpenAiConfig;
use crate::router::ModelFamily;

/// Picks the upstream per model by [`ModelFamily`]: `claude-*` goes to Anthropic,
/// `gpt-*`/`o1*`/`o3*`/`o4*`/`chatgpt-*` to OpenAI; a provider that is not configured is
/// replaced by a [`SimulatedUpstream`] speaking its wire format. Other models have no upstream.
#[derive(Clone)]
pub struct UpstreamRouter {
    anthropic: Arc<dyn Upstream>,
    openai: Arc<dyn Upstream>,
}

impl fmt::Debug for UpstreamRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamRouter")
            .field("anthropic", &self.anthropic.name())
            .field("openai", &self.openai.name())
            .finish()
    }
}

impl UpstreamRouter {
    /// A router over explicitly given upstreams; `None` means "not configured, simulate",
    /// with `sim_token_delay` between streamed deltas.
    pub fn new(
        anthropic: Option<Arc<dyn Upstream>>,
        openai: Option<Arc<dyn Upstream>>,
        sim_token_delay: Duration,
    ) -> Self {
        let simulated =
            |format| Arc::new(SimulatedUpstream::new(format, sim_token_delay)) as Arc<dyn Upstream>;
        Self {
            anthropic: anthropic.unwrap_or_else(|| simulated(WireFormat::Anthropic)),
            openai: openai.unwrap_or_else(|| simulated(WireFormat::OpenAi)),
        }
    }

    /// A router configured from the `ANTHROPIC_*` / `OPENAI_*` environment variables, as
    /// [`crate::ProviderRouter::from_env`] is.
    ///
    /// A provider whose key is missing is simulated; a key that is present but whose
    /// settings are invalid is an error (so a typo does not silently bill nothing).
    pub fn from_env(sim_token_delay: Duration) -> Result<Self, LlmError> {
        let anthropic = AnthropicConfig::from_env()
            .map(AnthropicUpstream::new)
            .transpose()?
            .map(|u| Arc::new(u) as Arc<dyn Upstream>);
        let openai = OpenAiConfig::from_env()
            .map(OpenAiUpstream::new)
            .transpose()?
            .map(|u| Arc::new(u) as Arc<dyn Upstream>);
        tracing::info!(
            anthropic.configured = anthropic.is_some(),
            openai.configured = openai.is_some(),
            "Gateway upstreams configured; others are simulated."
        );
        Ok(Self::new(anthropic, openai, sim_token_delay))
    }

    /// The upstream serving `model`, or `None` for a model of no known family.
    pub fn for_model(&self, model: &str) -> Option<Arc<dyn Upstream>> {
        match ModelFamily::of(model) {
            ModelFamily::Anthropic => Some(Arc::clone(&self.anthropic)),
            ModelFamily::OpenAi => Some(Arc::clone(&self.openai)),
            ModelFamily::Other => None,
        }
    }

    /// Whether answers for `model` will be simulated (`false` for unknown models).
    pub fn is_simulated_for(&self, model: &str) -> bool {
        self.for_model(model).is_some_and(|u| u.is_simulated())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn families_pick_upstreams_and_missing_keys_simulate() {
        let router = UpstreamRouter::new(None, None, Duration::ZERO);
        let claude = router.for_model("claude-sonnet-4-5").unwrap();
        assert_eq!(
            claude.format(),
            WireFormat::Anthropic,
            "claude is answered in Anthropic format"
        );
        assert!(claude.is_simulated(), "without a key claude is simulated");
        let gpt = router.for_model("gpt-4o").unwrap();
        assert_eq!(
            gpt.format(),
            WireFormat::OpenAi,
            "gpt is answered in OpenAI format"
        );
        for model in ["o1", "o3-mini", "o4-mini", "chatgpt-4o-latest"] {
            assert_eq!(
                router.for_model(model).map(|u| u.format()),
                Some(WireFormat::OpenAi),
                "{model} is OpenAI"
            );
        }
        assert!(
            router.for_model("mistral-large").is_none(),
            "other models have no upstream"
        );
        assert!(
            router.is_simulated_for("gpt-4o"),
            "gpt without a key is simulated"
        );
        assert!(
            !router.is_simulated_for("llama-3"),
            "unknown models are not simulated, they are refused"
        );
    }

    #[test]
    fn configured_upstreams_are_used() {
        let mut config = AnthropicConfig::new("sk-ant-x");
        config.base_url = "http://127.0.0.1:9".into();
        let anthropic = Arc::new(AnthropicUpstream::new(config).unwrap()) as Arc<dyn Upstream>;
        let router = UpstreamRouter::new(Some(anthropic), None, Duration::ZERO);
        assert_eq!(
            router.for_model("claude-opus-4").unwrap().name(),
            "anthropic",
            "claude goes to Anthropic"
        );
        assert_eq!(
            router.for_model("gpt-4o").unwrap().name(),
            "simulator",
            "gpt is still simulated"
        );
        assert!(
            format!("{router:?}").contains("anthropic"),
            "Debug names the upstreams"
        );
    }
}
