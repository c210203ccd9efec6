//! Router: model-name routing and simulator fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_retry, MockServer, Reply};
use tally_llm::{
    AnthropicConfig, AnthropicProvider, ChatMessage, ChatRequest, Provider, ProviderRouter,
    SimulatorConfig, SimulatorProvider,
};

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: None,
        messages: vec![ChatMessage::user("Hello there")],
        max_tokens: 100,
    }
}

fn simulator() -> SimulatorProvider {
    SimulatorProvider::new(SimulatorConfig {
        token_delay: Duration::ZERO,
    })
}

#[tokio::test]
async fn claude_without_anthropic_key_is_simulated() {
    let router = ProviderRouter::new(None, None, simulator());
    assert!(
        router.is_simulated_for("claude-sonnet-4-5"),
        "unconfigured Anthropic means simulated"
    );
    assert_eq!(
        router.provider_for("claude-sonnet-4-5").name(),
        "simulator",
        "the simulator serves claude"
    );
    let c = router
        .complete(&request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert!(c.simulated, "the reply is clearly simulated");
    assert_eq!(
        c.model, "claude-sonnet-4-5",
        "the requested model is echoed"
    );
    assert_eq!(router.name(), "router", "router's own name");
}

#[tokio::test]
async fn configured_anthropic_serves_claude_only() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"real"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}"#;
    let server = MockServer::start(vec![Reply::json(200, body)]).await;
    let mut config = AnthropicConfig::new("sk-ant-router");
    config.base_url = server.base_url();
    config.retry = fast_retry(1);
    let anthropic = Arc::new(AnthropicProvider::new(config).unwrap());
    let router = ProviderRouter::new(Some(anthropic), None, simulator());

    assert!(
        !router.is_simulated_for("claude-sonnet-4-5"),
        "claude goes to the configured provider"
    );
    assert!(
        router.is_simulated_for("gpt-4o"),
        "gpt without an OpenAI key is simulated"
    );
    assert!(
        router.is_simulated_for("mistral-large"),
        "unknown models are simulated"
    );
    let c = router
        .complete(&request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert!(
        !c.simulated && c.text == "real",
        "claude reply comes from the server: {c:?}"
    );
    let s = router.complete(&request("mistral-large")).await.unwrap();
    assert!(s.simulated, "other models get a simulated reply");
    assert_eq!(
        server.requests().len(),
        1,
        "only the claude request reached the server"
    );
}
