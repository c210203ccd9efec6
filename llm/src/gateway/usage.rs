//! Exact token usage of raw provider answers: complete bodies, and SSE frames accumulated by [`UsageTracker`].
//!
//! The field mapping is the one the typed providers use (`crate::anthropic::WireUsage`,
//! `crate::openai::WireUsage`), so a call is billed the same whichever path it took.

use serde_json::Value;

use super::{SseFrame, WireFormat, WithheldUsage};
use crate::types::TokenUsage;
use crate::{anthropic, openai};

/// Anthropic stream event that opens a reply and reports input usage.
const ANTHROPIC_MESSAGE_START: &str = "message_start";
/// Anthropic stream event that reports cumulative output (and, in newer versions, input) usage.
const ANTHROPIC_MESSAGE_DELTA: &str = "message_delta";
/// Anthropic stream event that completes a reply.
pub(crate) const ANTHROPIC_MESSAGE_STOP: &str = "message_stop";
/// Anthropic stream event that reports a mid-stream failure.
pub(crate) const ANTHROPIC_ERROR: &str = "error";

/// Exact usage of a non-streaming Anthropic Messages response (zero when it carries none).
pub fn usage_from_anthropic_body(body: &Value) -> TokenUsage {
    let mut usage = TokenUsage::default();
    if let Some(wire) = anthropic_usage(body.get("usage")) {
        wire.apply_to(&mut usage);
    }
    usage
}

/// Exact usage of a non-streaming OpenAI chat completion (zero when it carries none).
///
/// `prompt_tokens` include cached ones; those are billed as cache reads, the rest as input.
pub fn usage_from_openai_body(body: &Value) -> TokenUsage {
    openai_usage(body.get("usage"))
        .map(|wire| wire.to_usage())
        .unwrap_or_default()
}

fn anthropic_usage(value: Option<&Value>) -> Option<anthropic::WireUsage> {
    value
        .filter(|v| v.is_object())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn openai_usage(value: Option<&Value>) -> Option<openai::WireUsage> {
    value
        .filter(|v| v.is_object())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// The event type of an Anthropic frame: its `event:` line, else the data's `type` field.
pub(crate) fn anthropic_event_type<'a>(
    frame: &'a SseFrame,
    data: Option<&'a Value>,
) -> Option<&'a str> {
    frame
        .event
        .as_deref()
        .or_else(|| data.and_then(|d| d.get("type")).and_then(Value::as_str))
}

/// Whether an OpenAI chunk is the usage-only chunk sent last when `include_usage` is set.
pub(crate) fn is_openai_usage_only_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
}

/// Accumulates exact usage from a stream's frames, per wire format.
///
/// Anthropic: `message_start.message.usage` gives input, cache writes (5m/1h split when
/// reported) and cache reads; each `message_delta.usage` then overwrites the fields it carries
/// (output is cumulative, never a delta). `message_stop` finishes the reply; an `error` event
/// fails it. OpenAI: a chunk with a `usage` object (the last one, when
/// `stream_options.include_usage` is set) gives the totals, with
/// `prompt_tokens_details.cached_tokens` billed as cache reads; `data: [DONE]` finishes the
/// reply and a chunk with an `error` object fails it. Frames that do not parse are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTracker {
    format: WireFormat,
    usage: TokenUsage,
    model: Option<String>,
    finished: bool,
    failed: bool,
}

impl UsageTracker {
    /// A tracker for a stream in `format`, with zero usage so far.
    pub fn new(format: WireFormat) -> Self {
        Self {
            format,
            usage: TokenUsage::default(),
            model: None,
            finished: false,
            failed: false,
        }
    }

    /// Take one frame into account.
    pub fn observe(&mut self, frame: &SseFrame) {
        match self.format {
            WireFormat::Anthropic => self.observe_anthropic(frame),
            WireFormat::OpenAi => self.observe_openai(frame),
        }
    }

    /// Take usage of withheld frames into account (see [`WithheldUsage`]); call it once the
    /// frames have ended. OpenAI's usage report is a total, so it replaces what was seen.
    pub fn observe_withheld(&mut self, withheld: &WithheldUsage) {
        if let Some(usage) = withheld.get() {
            self.usage = usage;
        }
    }

    /// The exact usage known so far.
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    /// Whether the provider's terminal frame (`message_stop`, `data: [DONE]`) was seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether the provider reported a mid-stream error.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The model the upstream reported, if seen.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The wire format this tracker reads.
    pub fn format(&self) -> WireFormat {
        self.format
    }

    fn observe_anthropic(&mut self, frame: &SseFrame) {
        let data = serde_json::from_str::<Value>(&frame.data).ok();
        match anthropic_event_type(frame, data.as_ref()) {
            Some(ANTHROPIC_MESSAGE_START) => {
                let message = data.as_ref().and_then(|d| d.get("message"));
                if let Some(model) = message
                    .and_then(|m| m.get("model"))
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                {
                    self.model = Some(model.to_owned());
                }
                if let Some(wire) = anthropic_usage(message.and_then(|m| m.get("usage"))) {
                    wire.apply_to(&mut self.usage);
                }
            }
            Some(ANTHROPIC_MESSAGE_DELTA) => {
                if let Some(wire) = anthropic_usage(data.as_ref().and_then(|d| d.get("usage"))) {
                    wire.apply_to(&mut self.usage);
                }
            }
            Some(ANTHROPIC_MESSAGE_STOP) => self.finished = true,
            Some(ANTHROPIC_ERROR) => self.failed = true,
            _ => {}
        }
    }

    fn observe_openai(&mut self, frame: &SseFrame) {
        let data = frame.data.trim();
        if data == openai::DONE_MARKER {
            self.finished = true;
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.failed = true;
        }
        if self.model.is_none() {
            if let Some(model) = chunk
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
            {
                self.model = Some(model.to_owned());
            }
        }
        if let Some(wire) = openai_usage(chunk.get("usage")) {
            self.usage = wire.to_usage();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn track(format: WireFormat, frames: &[SseFrame]) -> UsageTracker {
        let mut tracker = UsageTracker::new(format);
        for frame in frames {
            tracker.observe(frame);
        }
        tracker
    }

    /// A recorded Anthropic stream with a 5m/1h cache-write split and cache reads.
    fn anthropic_recorded() -> Vec<SseFrame> {
        vec![
            SseFrame::named(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":300,"cache_read_input_tokens":1024,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1,"service_tier":"standard"}}}"#,
            ),
            SseFrame::named(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            SseFrame::named("ping", r#"{"type": "ping"}"#),
            SseFrame::named(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            ),
            SseFrame::named(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            SseFrame::named(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
            SseFrame::named("message_stop", r#"{"type":"message_stop"}"#),
        ]
    }

    #[test]
    fn anthropic_stream_usage_is_exact() {
        let frames = anthropic_recorded();
        let tracker = track(WireFormat::Anthropic, &frames);
        assert!(tracker.finished(), "message_stop finishes the stream");
        assert!(!tracker.failed(), "no error event was seen");
        assert_eq!(
            tracker.usage(),
            TokenUsage {
                input_tokens: 472,
                output_tokens: 15,
                cache_write_5m_tokens: 100,
                cache_write_1h_tokens: 200,
                cache_read_tokens: 1024,
            },
            "input and cache from message_start, cumulative output from message_delta"
        );
        assert_eq!(
            tracker.model(),
            Some("claude-sonnet-4-5-20250929"),
            "model from message_start"
        );
    }

    #[test]
    fn anthropic_unfinished_stream_keeps_partial_usage() {
        let frames = anthropic_recorded();
        let tracker = track(WireFormat::Anthropic, &frames[..4]);
        assert!(!tracker.finished(), "no message_stop yet");
        assert_eq!(
            tracker.usage().input_tokens,
            472,
            "input is known from message_start"
        );
        assert_eq!(
            tracker.usage().output_tokens,
            1,
            "output so far is message_start's"
        );
    }

    #[test]
    fn anthropic_message_delta_may_carry_input_and_cache_fields() {
        let mut frames = anthropic_recorded();
        frames[5] = SseFrame::named(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":480,"cache_creation_input_tokens":300,"cache_read_input_tokens":2048,"output_tokens":20}}"#,
        );
        let u = track(WireFormat::Anthropic, &frames).usage();
        assert_eq!(u.input_tokens, 480, "input from message_delta wins");
        assert_eq!(
            u.cache_read_tokens, 2048,
            "cache read from message_delta wins"
        );
        assert_eq!(u.output_tokens, 20, "output from message_delta");
        assert_eq!(
            (u.cache_write_5m_tokens, u.cache_write_1h_tokens),
            (100, 200),
            "an unsplit total matching message_start keeps its 5m/1h split"
        );
    }

    #[test]
    fn anthropic_error_event_fails_and_frames_without_event_line_are_read() {
        let frames = vec![
            SseFrame::data(
                r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":9,"output_tokens":1}}}"#,
            ),
            SseFrame::named(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
        ];
        let tracker = track(WireFormat::Anthropic, &frames);
        assert!(tracker.failed(), "an error event fails the stream");
        assert!(!tracker.finished(), "an error is not a finished reply");
        assert_eq!(
            tracker.usage().input_tokens,
            9,
            "the data's type names the event"
        );
    }

    #[test]
    fn openai_usage_chunk_maps_cached_tokens() {
        let frames = vec![
            SseFrame::data(
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            ),
            SseFrame::data(
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
            ),
            SseFrame::data(
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
            ),
            SseFrame::data("[DONE]"),
        ];
        let tracker = track(WireFormat::OpenAi, &frames);
        assert!(tracker.finished(), "[DONE] finishes the stream");
        assert_eq!(
            tracker.usage(),
            TokenUsage {
                input_tokens: 86,
                output_tokens: 300,
                cache_read_tokens: 1920,
                ..TokenUsage::default()
            },
            "cached prompt tokens are cache reads, the rest input"
        );
        assert_eq!(
            tracker.model(),
            Some("gpt-4o-2024-08-06"),
            "model from the chunks"
        );
        assert!(
            is_openai_usage_only_chunk(&serde_json::from_str(&frames[2].data).unwrap()),
            "the last chunk is usage-only"
        );
        assert!(
            !is_openai_usage_only_chunk(&serde_json::from_str(&frames[1].data).unwrap()),
            "a choice chunk is not"
        );
    }

    #[test]
    fn openai_error_chunk_fails_and_garbage_is_ignored() {
        let frames = vec![
            SseFrame::data("not json"),
            SseFrame::data(r#"{"error":{"message":"boom","type":"server_error"}}"#),
        ];
        let tracker = track(WireFormat::OpenAi, &frames);
        assert!(tracker.failed(), "an error chunk fails the stream");
        assert!(tracker.usage().is_zero(), "no usage was reported");
    }

    #[test]
    fn withheld_usage_replaces_what_was_seen() {
        let mut tracker = UsageTracker::new(WireFormat::OpenAi);
        let withheld = WithheldUsage::new();
        tracker.observe_withheld(&withheld);
        assert!(tracker.usage().is_zero(), "an empty handle changes nothing");
        withheld.set(TokenUsage {
            input_tokens: 7,
            output_tokens: 2,
            ..TokenUsage::default()
        });
        tracker.observe_withheld(&withheld);
        assert_eq!(tracker.usage().input_tokens, 7, "withheld usage is taken");
    }

    #[test]
    fn bodies_map_usage_exactly() {
        let anthropic: Value = serde_json::from_str(
            r#"{"id":"msg_1","type":"message","usage":{"input_tokens":21,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000},"output_tokens":6}}"#,
        )
        .unwrap();
        assert_eq!(
            usage_from_anthropic_body(&anthropic),
            TokenUsage {
                input_tokens: 21,
                output_tokens: 6,
                cache_write_5m_tokens: 500,
                cache_write_1h_tokens: 1000,
                cache_read_tokens: 3000,
            },
            "Anthropic body usage with the 5m/1h split"
        );
        let openai: Value = serde_json::from_str(
            r#"{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,"prompt_tokens_details":{"cached_tokens":64}}}"#,
        )
        .unwrap();
        assert_eq!(
            usage_from_openai_body(&openai),
            TokenUsage {
                input_tokens: 36,
                output_tokens: 10,
                cache_read_tokens: 64,
                ..TokenUsage::default()
            },
            "OpenAI body usage with cached tokens"
        );
        let error = WireFormat::Anthropic.error_body("invalid_request_error", "bad");
        assert!(
            usage_from_anthropic_body(&error).is_zero(),
            "error bodies carry no usage"
        );
        assert!(
            usage_from_openai_body(&Value::Null).is_zero(),
            "garbage carries no usage"
        );
    }
}
