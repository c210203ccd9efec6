//! [`SimulatedUpstream`]: answers raw bodies in the Anthropic or OpenAI wire format without network access.
//!
//! Replies come from the crate's simulator (deterministic text from the last user message,
//! exact `cl100k_base` counts), written in the provider's real shapes so the official SDKs
//! parse them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{json, Value};

use super::openai::{client_asked_for_usage, withhold_usage_chunks};
use super::{
    wants_stream, FrameStream, SseFrame, Upstream, UpstreamReply, UpstreamResponse, UpstreamStream,
    WireFormat, WithheldUsage,
};
use crate::error::LlmError;
use crate::simulator::{self, Simulated, SimulatorProvider};
use crate::types::{ChatMessage, ChatRequest, Role, TokenUsage};

/// Status of a simulated success.
const STATUS_OK: u16 = 200;
/// Status of a request the simulator cannot answer.
const STATUS_BAD_REQUEST: u16 = 400;
/// Error type of a request the simulator cannot answer (the same in both formats).
const INVALID_REQUEST: &str = "invalid_request_error";
/// Most choices an OpenAI request may ask for with `n`.
const MAX_CHOICES: u64 = 128;
/// Stop reason the crate's simulator gives a reply cut at its token limit.
const SIM_STOP_MAX_TOKENS: &str = "max_tokens";
/// Anthropic stop reasons.
const ANTHROPIC_END_TURN: &str = "end_turn";
const ANTHROPIC_MAX_TOKENS: &str = "max_tokens";
/// OpenAI finish reasons.
const OPENAI_STOP: &str = "stop";
const OPENAI_LENGTH: &str = "length";
/// Output tokens Anthropic reports in `message_start`, before the reply is written.
const ANTHROPIC_START_OUTPUT_TOKENS: u64 = 1;

/// Counter mixed into simulated ids so that two identical requests get different ids.
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An [`Upstream`] that answers every request locally, in its wire format, marked simulated.
///
/// Input tokens are counted with the crate's simulator: string contents and the text parts
/// of content arrays, the system prompt too (Anthropic `system`, OpenAI `system`/`developer`
/// messages), plus [`crate::MESSAGE_OVERHEAD_TOKENS`] per message. Replies stop at
/// `max_tokens` (OpenAI: `max_completion_tokens` or `max_tokens`) with `max_tokens` /
/// `length`. OpenAI's `n` gives `n` identical choices, their completion tokens summed. A
/// streamed OpenAI reply always ends with a usage chunk; when the request did not set
/// `stream_options.include_usage` that chunk is withheld, as [`super::OpenAiUpstream`] does.
/// A body the simulator cannot read gets a 400 reply with a provider-shaped error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedUpstream {
    format: WireFormat,
    token_delay: Duration,
}

impl SimulatedUpstream {
    /// A simulator answering in `format`, pausing `token_delay` between streamed deltas.
    pub fn new(format: WireFormat, token_delay: Duration) -> Self {
        Self {
            format,
            token_delay,
        }
    }

    /// The pause between two streamed deltas.
    pub fn token_delay(&self) -> Duration {
        self.token_delay
    }

    fn bad_request(&self, message: &str) -> UpstreamResponse {
        UpstreamResponse::Reply(UpstreamReply {
            status: STATUS_BAD_REQUEST,
            body: self.format.error_body(INVALID_REQUEST, message),
            usage: TokenUsage::default(),
            request_id: None,
            simulated: true,
        })
    }
}

#[async_trait::async_trait]
impl Upstream for SimulatedUpstream {
    fn format(&self) -> WireFormat {
        self.format
    }

    fn name(&self) -> &'static str {
        simulator::PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        true
    }

    async fn send(&self, body: Value) -> Result<UpstreamResponse, LlmError> {
        let request = match SimRequest::parse(self.format, &body) {
            Ok(request) => request,
            Err(message) => return Ok(self.bad_request(&message)),
        };
        let reply = SimulatorProvider::simulate(&request.chat).await?;
        let id = unique_id(self.format, &request.chat.model);
        let created = unix_now();
        let response = match (self.format, request.stream) {
            (WireFormat::Anthropic, false) => {
                reply_of(anthropic_body(&id, &request, &reply), WireFormat::Anthropic)
            }
            (WireFormat::OpenAi, false) => reply_of(
                openai_body(&id, created, &request, &reply),
                WireFormat::OpenAi,
            ),
            (WireFormat::Anthropic, true) => {
                let frames = paced(anthropic_frames(&id, &request, &reply), self.token_delay);
                stream_of(id, frames, WithheldUsage::new())
            }
            (WireFormat::OpenAi, true) => {
                let withheld = WithheldUsage::new();
                let mut frames = paced(
                    openai_frames(&id, created, &request, &reply),
                    self.token_delay,
                );
                if !request.include_usage {
                    frames = withhold_usage_chunks(frames, withheld.clone());
                }
                stream_of(id, frames, withheld)
            }
        };
        Ok(response)
    }
}

/// What the simulator reads from a body.
struct SimRequest {
    /// Model, system prompt, messages (as text) and output limit.
    chat: ChatRequest,
    /// OpenAI `n`; 1 for Anthropic.
    choices: u64,
    /// Whether a streamed OpenAI reply shows its usage chunk.
    include_usage: bool,
    /// Whether the body asks for a stream.
    stream: bool,
}

impl SimRequest {
    /// Read a body; the error is the message of a 400 answer.
    fn parse(format: WireFormat, body: &Value) -> Result<Self, String> {
        if !body.is_object() {
            return Err("the request body must be a JSON object".into());
        }
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or("model: a non-empty string is required")?
            .to_owned();
        let raw_messages = body
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("messages: an array is required")?;
        let mut system = Vec::new();
        if let Some(s) = body
            .get("system")
            .filter(|_| format == WireFormat::Anthropic)
        {
            system.push(content_text(s).map_err(|e| format!("system: {e}"))?);
        }
        let mut messages = Vec::with_capacity(raw_messages.len());
        for (i, message) in raw_messages.iter().enumerate() {
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages.{i}.role: a string is required"))?;
            let text = content_text(message.get("content").unwrap_or(&Value::Null))
                .map_err(|e| format!("messages.{i}.content: {e}"))?;
            let role = match (format, role) {
                (_, "user") => Role::User,
                (_, "assistant") => Role::Assistant,
                (WireFormat::OpenAi, "system" | "developer") => {
                    system.push(text);
                    continue;
                }
                (WireFormat::OpenAi, "tool" | "function") => Role::User,
                (_, other) => return Err(format!("messages.{i}.role: unexpected role {other:?}")),
            };
            messages.push(ChatMessage {
                role,
                content: text,
            });
        }
        let max_tokens = match format {
            WireFormat::Anthropic => match body.get("max_tokens") {
                None | Some(Value::Null) => return Err("max_tokens: Field required".into()),
                Some(v) => token_limit("max_tokens", v)?,
            },
            WireFormat::OpenAi => match ["max_completion_tokens", "max_tokens"]
                .iter()
                .find_map(|key| body.get(*key).filter(|v| !v.is_null()).map(|v| (*key, v)))
            {
                Some((key, v)) => token_limit(key, v)?,
                None => u32::MAX,
            },
        };
        let choices = match (format, body.get("n")) {
            (WireFormat::OpenAi, Some(n)) if !n.is_null() => n
                .as_u64()
                .filter(|n| (1..=MAX_CHOICES).contains(n))
                .ok_or_else(|| format!("n: an integer from 1 to {MAX_CHOICES} is required"))?,
            _ => 1,
        };
        Ok(Self {
            chat: ChatRequest {
                model,
                system: (!system.is_empty()).then(|| system.join("\n")),
                messages,
                max_tokens,
            },
            choices,
            include_usage: format == WireFormat::OpenAi && client_asked_for_usage(body),
            stream: wants_stream(body),
        })
    }
}

/// A non-negative integer token limit; larger than `u32` means "no limit".
fn token_limit(key: &str, value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        .ok_or_else(|| format!("{key}: a non-negative integer is required"))
}

/// The text of a content value: a string, or the `text` of the `text` parts of an array.
fn content_text(content: &Value) -> Result<String, String> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")),
        Value::Null => Ok(String::new()),
        _ => Err("a string or an array of content parts is required".into()),
    }
}

/// A fresh id in the provider's style, marked as simulated.
fn unique_id(format: WireFormat, seed: &str) -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = seed.as_bytes().to_vec();
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes.extend_from_slice(&nanos.to_le_bytes());
    let suffix = format!("{:016x}{:08x}", simulator::fnv1a64(&bytes), n & 0xffff_ffff);
    match format {
        WireFormat::Anthropic => format!("msg_sim_{suffix}"),
        WireFormat::OpenAi => format!("chatcmpl-sim{suffix}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cut_at_limit(reply: &Simulated) -> bool {
    reply.completion.stop_reason.as_deref() == Some(SIM_STOP_MAX_TOKENS)
}

fn anthropic_stop_reason(reply: &Simulated) -> &'static str {
    if cut_at_limit(reply) {
        ANTHROPIC_MAX_TOKENS
    } else {
        ANTHROPIC_END_TURN
    }
}

fn openai_finish_reason(reply: &Simulated) -> &'static str {
    if cut_at_limit(reply) {
        OPENAI_LENGTH
    } else {
        OPENAI_STOP
    }
}

fn anthropic_usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn openai_usage(request: &SimRequest, reply: &Simulated) -> Value {
    let prompt = reply.completion.usage.input_tokens;
    let completion = reply
        .completion
        .usage
        .output_tokens
        .saturating_mul(request.choices);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": { "cached_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0 },
    })
}

/// A complete Messages API response.
fn anthropic_body(id: &str, request: &SimRequest, reply: &Simulated) -> Value {
    let usage = reply.completion.usage;
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": request.chat.model,
        "content": [{ "type": "text", "text": reply.completion.text }],
        "stop_reason": anthropic_stop_reason(reply),
        "stop_sequence": null,
        "usage": anthropic_usage(usage.input_tokens, usage.output_tokens),
    })
}

/// A complete `chat.completion` with `n` choices.
fn openai_body(id: &str, created: u64, request: &SimRequest, reply: &Simulated) -> Value {
    let choices: Vec<Value> = (0..request.choices)
        .map(|index| {
            json!({
                "index": index,
                "message": { "role": "assistant", "content": reply.completion.text, "refusal": null },
                "logprobs": null,
                "finish_reason": openai_finish_reason(reply),
            })
        })
        .collect();
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": request.chat.model,
        "choices": choices,
        "usage": openai_usage(request, reply),
    })
}

/// One frame to stream, and whether the token delay comes before it.
type Paced = (bool, SseFrame);

/// The text pieces that make deltas (a token completing no character yields an empty piece).
fn deltas(reply: &Simulated) -> impl Iterator<Item = &str> {
    reply
        .pieces
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
}

fn anthropic_frame(data: &Value) -> SseFrame {
    let event = data.get("type").and_then(Value::as_str).unwrap_or_default();
    SseFrame::named(event, data.to_string())
}

/// A streamed Messages API reply, event by event.
fn anthropic_frames(id: &str, request: &SimRequest, reply: &Simulated) -> Vec<Paced> {
    let usage = reply.completion.usage;
    let mut frames = vec![
        (
            false,
            anthropic_frame(&json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": request.chat.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": anthropic_usage(
                        usage.input_tokens,
                        usage.output_tokens.min(ANTHROPIC_START_OUTPUT_TOKENS),
                    ),
                },
            })),
        ),
        (
            false,
            anthropic_frame(&json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": { "type": "text", "text": "" },
            })),
        ),
        (false, anthropic_frame(&json!({ "type": "ping" }))),
    ];
    frames.extend(deltas(reply).enumerate().map(|(i, text)| {
        (
            i > 0,
            anthropic_frame(&json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": { "type": "text_delta", "text": text },
            })),
        )
    }));
    frames.extend([
        (
            false,
            anthropic_frame(&json!({ "type": "content_block_stop", "index": 0 })),
        ),
        (
            false,
            anthropic_frame(&json!({
                "type": "message_delta",
                "delta": { "stop_reason": anthropic_stop_reason(reply), "stop_sequence": null },
                "usage": { "output_tokens": usage.output_tokens },
            })),
        ),
        (false, anthropic_frame(&json!({ "type": "message_stop" }))),
    ]);
    frames
}

/// A streamed chat completion: role chunks, content chunks, finish chunks (one per choice
/// each), the usage-only chunk, then `[DONE]`.
fn openai_frames(id: &str, created: u64, request: &SimRequest, reply: &Simulated) -> Vec<Paced> {
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.chat.model,
            "choices": choices,
        });
        if request.include_usage {
            // With include_usage, OpenAI puts `"usage": null` on every chunk but the last.
            chunk["usage"] = Value::Null;
        }
        SseFrame::data(chunk.to_string())
    };
    let choice = |index: u64, delta: Value, finish: Value| json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let mut frames: Vec<Paced> = (0..request.choices)
        .map(|i| {
            (
                false,
                chunk(choice(
                    i,
                    json!({ "role": "assistant", "content": "", "refusal": null }),
                    Value::Null,
                )),
            )
        })
        .collect();
    for (n, text) in deltas(reply).enumerate() {
        frames.extend((0..request.choices).map(|i| {
            (
                n > 0 && i == 0,
                chunk(choice(i, json!({ "content": text }), Value::Null)),
            )
        }));
    }
    frames.extend((0..request.choices).map(|i| {
        (
            false,
            chunk(choice(i, json!({}), json!(openai_finish_reason(reply)))),
        )
    }));
    let usage_chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.chat.model,
        "choices": [],
        "usage": openai_usage(request, reply),
    });
    frames.push((false, SseFrame::data(usage_chunk.to_string())));
    frames.push((false, SseFrame::data(crate::openai::DONE_MARKER)));
    frames
}

fn reply_of(body: Value, format: WireFormat) -> UpstreamResponse {
    UpstreamResponse::Reply(UpstreamReply {
        status: STATUS_OK,
        usage: format.usage_from_body(&body),
        request_id: body.get("id").and_then(Value::as_str).map(str::to_owned),
        body,
        simulated: true,
    })
}

fn stream_of(id: String, frames: FrameStream, withheld_usage: WithheldUsage) -> UpstreamResponse {
    UpstreamResponse::Stream(UpstreamStream {
        status: STATUS_OK,
        request_id: Some(id),
        simulated: true,
        frames,
        withheld_usage,
    })
}

/// Stream `frames`, sleeping `delay` before each frame marked for it.
fn paced(frames: Vec<Paced>, delay: Duration) -> FrameStream {
    futures::stream::iter(frames)
        .then(move |(pause, frame)| async move {
            if pause && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(frame)
        })
        .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats() {
        let anthropic = json!({
            "model": "claude-x", "max_tokens": 10,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {}}, {"type": "text", "text": "b"}]}],
        });
        let r = SimRequest::parse(WireFormat::Anthropic, &anthropic).unwrap();
        assert_eq!(
            r.chat.system.as_deref(),
            Some("Be brief."),
            "system text blocks are read"
        );
        assert_eq!(
            r.chat.messages[0].content, "a\nb",
            "text parts are joined, others skipped"
        );
        assert_eq!(
            (r.chat.max_tokens, r.choices, r.stream),
            (10, 1, false),
            "limits and defaults"
        );

        let openai = json!({
            "model": "gpt-x", "n": 3, "max_completion_tokens": 5, "stream": true,
            "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": null}],
        });
        let r = SimRequest::parse(WireFormat::OpenAi, &openai).unwrap();
        assert_eq!(
            r.chat.system.as_deref(),
            Some("Be brief."),
            "developer messages are the system prompt"
        );
        assert_eq!(
            r.chat.messages.len(),
            2,
            "user and assistant messages remain"
        );
        assert_eq!(
            (r.chat.max_tokens, r.choices, r.stream, r.include_usage),
            (5, 3, true, false),
            "n, limit, stream"
        );
        let r = SimRequest::parse(
            WireFormat::OpenAi,
            &json!({"model": "gpt-x", "messages": []}),
        )
        .unwrap();
        assert_eq!(r.chat.max_tokens, u32::MAX, "no limit unless one is set");
    }

    #[test]
    fn garbage_is_a_message_not_a_panic() {
        for (format, body) in [
            (WireFormat::Anthropic, json!(null)),
            (
                WireFormat::Anthropic,
                json!({"model": "claude-x", "messages": []}),
            ),
            (
                WireFormat::Anthropic,
                json!({"model": "claude-x", "max_tokens": -1, "messages": []}),
            ),
            (
                WireFormat::Anthropic,
                json!({"model": "claude-x", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            ),
            (WireFormat::OpenAi, json!({"model": 3, "messages": []})),
            (
                WireFormat::OpenAi,
                json!({"model": "gpt-x", "messages": {}}),
            ),
            (
                WireFormat::OpenAi,
                json!({"model": "gpt-x", "messages": [{"content": "x"}]}),
            ),
            (
                WireFormat::OpenAi,
                json!({"model": "gpt-x", "messages": [{"role": "user", "content": 5}]}),
            ),
            (
                WireFormat::OpenAi,
                json!({"model": "gpt-x", "n": 0, "messages": []}),
            ),
            (
                WireFormat::OpenAi,
                json!({"model": "gpt-x", "max_tokens": "many", "messages": []}),
            ),
        ] {
            assert!(
                SimRequest::parse(format, &body).is_err(),
                "{body} is rejected"
            );
        }
    }

    #[test]
    fn ids_are_unique_and_styled() {
        let a = unique_id(WireFormat::Anthropic, "m");
        let b = unique_id(WireFormat::Anthropic, "m");
        assert_ne!(a, b, "two replies never share an id");
        assert!(a.starts_with("msg_"), "Anthropic ids start with msg_: {a}");
        assert!(
            unique_id(WireFormat::OpenAi, "m").starts_with("chatcmpl-"),
            "OpenAI ids start with chatcmpl-"
        );
    }
}
