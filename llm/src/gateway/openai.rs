//! [`OpenAiUpstream`]: client bodies POSTed to OpenAI's Chat Completions API, with usage always requested on streams.

use futures::StreamExt;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::{Map, Value};

use super::http::{self, Answered, Endpoint};
use super::usage::{is_openai_usage_only_chunk, usage_from_openai_body};
use super::{
    wants_stream, FrameStream, Upstream, UpstreamResponse, UpstreamStream, WireFormat,
    WithheldUsage,
};
use crate::error::LlmError;
use crate::openai::{self, OpenAiConfig, OPENAI_API_KEY_ENV, OPENAI_BASE_URL_ENV};
use crate::transport;

/// Path of the Chat Completions endpoint under the base URL.
const COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// The request field holding stream options.
const STREAM_OPTIONS: &str = "stream_options";
/// The stream option that makes OpenAI report usage in a final chunk.
const INCLUDE_USAGE: &str = "include_usage";

/// An [`Upstream`] for OpenAI's Chat Completions API (`{base}/v1/chat/completions`), sending
/// `Authorization: Bearer`.
///
/// A streamed chat completion reports usage only when the request sets
/// `stream_options.include_usage`; without it the call could not be billed. So for a
/// `"stream": true` body whose `stream_options.include_usage` is not `true`, this upstream
/// sets it (adding `stream_options` if absent, keeping its other options), and then withholds
/// the final usage-only chunk (`"choices": []`) from [`UpstreamStream::frames`], so the client
/// sees the stream it asked for; that chunk's usage goes to
/// [`UpstreamStream::withheld_usage`] instead. The other chunks keep the `"usage": null`
/// field OpenAI adds when usage is requested. A `stream_options` that is not an object is left
/// alone (OpenAI rejects the request).
#[derive(Debug)]
pub struct OpenAiUpstream {
    config: OpenAiConfig,
    endpoint: Endpoint,
}

impl OpenAiUpstream {
    /// Validate the config and build the HTTP client.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        config.validate()?;
        let base = transport::normalize_base_url(OPENAI_BASE_URL_ENV, &config.base_url)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            http::secret_header(
                &format!("Bearer {}", config.api_key.expose()),
                OPENAI_API_KEY_ENV,
            )?,
        );
        let endpoint = Endpoint {
            format: WireFormat::OpenAi,
            provider: openai::PROVIDER_NAME,
            url: format!("{base}{COMPLETIONS_PATH}"),
            headers,
            client: transport::build_client(config.timeout)?,
            timeout: config.timeout,
            retry: config.retry.clone(),
            classify: openai::classify_error,
        };
        Ok(Self { config, endpoint })
    }

    /// The upstream's configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl Upstream for OpenAiUpstream {
    fn format(&self) -> WireFormat {
        WireFormat::OpenAi
    }

    fn name(&self) -> &'static str {
        openai::PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        false
    }

    async fn send(&self, mut body: Value) -> Result<UpstreamResponse, LlmError> {
        let client_wants_usage = !wants_stream(&body) || request_usage(&mut body);
        Ok(match self.endpoint.send(&body).await? {
            Answered::Reply(reply) => UpstreamResponse::Reply(reply),
            Answered::Stream {
                status,
                request_id,
                response,
            } => {
                let withheld_usage = WithheldUsage::new();
                let mut frames = http::sse_frames(response.bytes_stream(), WireFormat::OpenAi);
                if !client_wants_usage {
                    frames = withhold_usage_chunks(frames, withheld_usage.clone());
                }
                UpstreamResponse::Stream(UpstreamStream {
                    status,
                    request_id,
                    simulated: false,
                    frames,
                    withheld_usage,
                })
            }
        })
    }
}

/// Make a streaming body ask for usage; returns whether the client had asked for it itself
/// (then nothing is changed). A body or `stream_options` that is not an object is left alone.
pub(crate) fn request_usage(body: &mut Value) -> bool {
    if client_asked_for_usage(body) {
        return true;
    }
    let Some(fields) = body.as_object_mut() else {
        return true;
    };
    match fields
        .entry(STREAM_OPTIONS)
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(options) => {
            options.insert(INCLUDE_USAGE.to_owned(), Value::Bool(true));
            false
        }
        _ => true,
    }
}

/// Whether a body sets `stream_options.include_usage` to `true`.
pub(crate) fn client_asked_for_usage(body: &Value) -> bool {
    body.get(STREAM_OPTIONS)
        .and_then(|o| o.get(INCLUDE_USAGE))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Drop usage-only chunks from `frames`, recording their usage in `withheld`.
pub(crate) fn withhold_usage_chunks(frames: FrameStream, withheld: WithheldUsage) -> FrameStream {
    frames
        .filter(move |item| {
            let keep = match item {
                Ok(frame) => match serde_json::from_str::<Value>(&frame.data) {
                    Ok(chunk) if is_openai_usage_only_chunk(&chunk) => {
                        withheld.set(usage_from_openai_body(&chunk));
                        false
                    }
                    _ => true,
                },
                Err(_) => true,
            };
            futures::future::ready(keep)
        })
        .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::SseFrame;
    use crate::types::TokenUsage;

    #[test]
    fn include_usage_is_added_only_when_missing() {
        let mut body = json!({"model": "gpt-4o", "stream": true});
        assert!(!request_usage(&mut body), "the client did not ask");
        assert_eq!(
            body["stream_options"],
            json!({"include_usage": true}),
            "stream_options added"
        );

        let mut body = json!({"stream": true, "stream_options": {"include_obfuscation": false}});
        assert!(
            !request_usage(&mut body),
            "other options are not a request for usage"
        );
        assert_eq!(
            body["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true}),
            "other options are kept"
        );

        let mut body = json!({"stream": true, "stream_options": {"include_usage": false}});
        assert!(!request_usage(&mut body), "false is not asking");
        assert_eq!(
            body["stream_options"]["include_usage"], true,
            "usage is requested anyway"
        );

        let asked = json!({"stream": true, "stream_options": {"include_usage": true}});
        let mut body = asked.clone();
        assert!(request_usage(&mut body), "the client asked");
        assert_eq!(body, asked, "a body that asks is unchanged");

        let mut garbage = json!({"stream": true, "stream_options": 3});
        assert!(
            request_usage(&mut garbage),
            "garbage is left for the upstream to reject"
        );
        assert_eq!(garbage["stream_options"], 3, "garbage is untouched");
    }

    #[tokio::test]
    async fn usage_chunks_are_withheld_and_recorded() {
        let frames: FrameStream = futures::stream::iter(vec![
            Ok(SseFrame::data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#)),
            Ok(SseFrame::data(
                r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            )),
            Ok(SseFrame::data("[DONE]")),
        ])
        .boxed();
        let withheld = WithheldUsage::new();
        let out: Vec<_> = withhold_usage_chunks(frames, withheld.clone())
            .collect()
            .await;
        assert_eq!(out.len(), 2, "the usage-only chunk is dropped: {out:?}");
        assert_eq!(
            out[1].as_ref().unwrap(),
            &SseFrame::data("[DONE]"),
            "[DONE] still ends the stream"
        );
        assert_eq!(
            withheld.get(),
            Some(TokenUsage {
                input_tokens: 6,
                output_tokens: 2,
                cache_read_tokens: 4,
                ..TokenUsage::default()
            }),
            "the dropped chunk's usage is kept"
        );
    }
}
