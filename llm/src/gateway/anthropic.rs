//! [`AnthropicUpstream`]: client bodies POSTed as they are to Anthropic's Messages API.

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::http::{self, Answered, Endpoint};
use super::{
    Upstream, UpstreamResponse, UpstreamStream, WireFormat, WithheldUsage,
    ANTHROPIC_API_KEY_HEADER, ANTHROPIC_VERSION_HEADER,
};
use crate::anthropic::{
    self, AnthropicConfig, ANTHROPIC_API_KEY_ENV, ANTHROPIC_BASE_URL_ENV, ANTHROPIC_VERSION,
};
use crate::error::LlmError;
use crate::transport;

/// Path of the Messages endpoint under the base URL.
const MESSAGES_PATH: &str = "/v1/messages";

/// An [`Upstream`] for Anthropic's Messages API (`{base}/v1/messages`).
///
/// Sends `x-api-key` and `anthropic-version` ([`ANTHROPIC_VERSION`]); a client's
/// `anthropic-beta` header is not forwarded (the body is).
#[derive(Debug)]
pub struct AnthropicUpstream {
    config: AnthropicConfig,
    endpoint: Endpoint,
}

impl AnthropicUpstream {
    /// Validate the config and build the HTTP client.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        config.validate()?;
        let base = transport::normalize_base_url(ANTHROPIC_BASE_URL_ENV, &config.base_url)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ANTHROPIC_API_KEY_HEADER,
            http::secret_header(config.api_key.expose(), ANTHROPIC_API_KEY_ENV)?,
        );
        headers.insert(
            ANTHROPIC_VERSION_HEADER,
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        let endpoint = Endpoint {
            format: WireFormat::Anthropic,
            provider: anthropic::PROVIDER_NAME,
            url: format!("{base}{MESSAGES_PATH}"),
            headers,
            client: transport::build_client(config.timeout)?,
            timeout: config.timeout,
            retry: config.retry.clone(),
            classify: anthropic::classify_error,
        };
        Ok(Self { config, endpoint })
    }

    /// The upstream's configuration.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl Upstream for AnthropicUpstream {
    fn format(&self) -> WireFormat {
        WireFormat::Anthropic
    }

    fn name(&self) -> &'static str {
        anthropic::PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        false
    }

    async fn send(&self, body: Value) -> Result<UpstreamResponse, LlmError> {
        Ok(match self.endpoint.send(&body).await? {
            Answered::Reply(reply) => UpstreamResponse::Reply(reply),
            Answered::Stream {
                status,
                request_id,
                response,
            } => UpstreamResponse::Stream(UpstreamStream {
                status,
                request_id,
                simulated: false,
                frames: http::sse_frames(response.bytes_stream(), WireFormat::Anthropic),
                withheld_usage: WithheldUsage::new(),
            }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn url_and_headers_follow_the_config() {
        let mut config = AnthropicConfig::new("sk-ant-secret");
        config.base_url = "http://127.0.0.1:9/".into();
        let upstream = AnthropicUpstream::new(config).unwrap();
        assert_eq!(
            upstream.endpoint.url, "http://127.0.0.1:9/v1/messages",
            "path joined like AnthropicProvider"
        );
        assert!(
            !format!("{upstream:?}").contains("sk-ant-secret"),
            "Debug hides the key"
        );
        assert_eq!(upstream.name(), "anthropic", "provider name");
        let blank = AnthropicUpstream::new(AnthropicConfig::new(" "));
        assert!(
            matches!(blank, Err(LlmError::Config(_))),
            "a blank key is a config error"
        );
    }
}
