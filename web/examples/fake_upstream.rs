//! A fast fake LLM provider speaking OpenAI Chat Completions and Anthropic Messages on the wire
//! (streaming and not, tool calls, cache tokens), with deterministic usage, for the gateway's
//! tests and benchmark.
//!
//! ```text
//! cargo run --release -p tally-web --example fake_upstream -- \
//!     [--bind 127.0.0.1:0] [--latency-ms 0] [--token-delay-ms 0] [--workers 1]
//! ```
//! Prints `fake upstream listening on http://ADDR` on stdout once it accepts connections.
//!
//! Routes: `POST /v1/chat/completions` (needs `Authorization: Bearer <non-empty>`),
//! `POST /v1/messages` (needs `x-api-key`, or `Authorization: Bearer` as the Anthropic Python
//! SDK 2.x sends it), and for tests `GET /_fake/stats` (requests
//! received per route) and `GET /_fake/last` (the last request to each route: headers and body).
//!
//! Usage is a fixed function of the request, so tests can compute costs:
//! - input tokens = ceil(C / 4), at least 1, where C is the number of Unicode characters of all
//!   message text: every string `content`, every `text` of a content part/block, the content of
//!   Anthropic `tool_result` blocks, and Anthropic's `system` (string or text blocks). Tool
//!   definitions, tool-call arguments and `tool_use` inputs are not counted (so an OpenAI request
//!   and its translation to Anthropic count the same).
//! - output tokens per choice = min(limit, 12) where limit is `max_completion_tokens`, else
//!   `max_tokens`, else 16; OpenAI `completion_tokens` = that x `n`. The reply is the first that
//!   many words of a fixed 12-word sentence, one stream delta per token; a reply cut below 12
//!   ends with `length` / `max_tokens`, else `stop` / `end_turn`.
//! - header `x-fake-cache-read: N`: N cache-read tokens. OpenAI: `prompt_tokens` = input + N and
//!   `prompt_tokens_details.cached_tokens` = N. Anthropic: `cache_read_input_tokens` = N, apart
//!   from `input_tokens`.
//! - header `x-fake-cache-write: N` (Anthropic): `cache_creation_input_tokens` = N (all 5-minute).
//! - the same three controls as markers in the message text, `[[x-fake-cache-read:N]]`,
//!   `[[x-fake-cache-write:N]]`, `[[x-fake-slow-stream-ms:N]]`, for callers (a gateway) that do not
//!   forward custom headers; the header wins when both are given. A marker is ordinary text: it
//!   counts as input.
//!
//! With `tools` and a last message from the user (for Anthropic: a user message without a
//! `tool_result` block), the answer is a call of the first tool with arguments `{}`.
//!
//! Timing: `--latency-ms L` waits L ms before answering (time to first byte); stream deltas
//! follow each other with no delay unless `--token-delay-ms` is given or the request carries
//! `x-fake-slow-stream-ms: N` (N ms between deltas, for tests that cut a stream mid-way).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use serde_json::{json, Value};

/// Words of the fixed reply; its natural length is their number.
const REPLY_WORDS: [&str; 12] =
    ["Hello", " from", " the", " fake", " upstream", ",", " a", " deterministic", " reply", " for", " tests", "."];
/// Output limit when the request gives none (OpenAI's side; Anthropic requires `max_tokens`).
const DEFAULT_MAX_TOKENS: u64 = 16;
/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Process flags.
#[derive(Debug, Clone)]
struct Options {
    bind: String,
    latency: Duration,
    token_delay: Duration,
    workers: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut opts =
        Options { bind: "127.0.0.1:0".into(), latency: Duration::ZERO, token_delay: Duration::ZERO, workers: 1 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        if name == "--help" || name == "-h" {
            return Err(String::new());
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{name}: not a whole number: {v:?}"));
        match name.as_str() {
            "--bind" => opts.bind = value,
            "--latency-ms" => opts.latency = Duration::from_millis(num(&value)?),
            "--token-delay-ms" => opts.token_delay = Duration::from_millis(num(&value)?),
            "--workers" => opts.workers = num(&value)?.max(1) as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(opts)
}

/// The last request to a route: its headers and body.
type LastRequest = (Vec<(String, String)>, Bytes);

/// What the fake remembers for tests.
#[derive(Default)]
struct Stats {
    chat_completions: AtomicU64,
    messages: AtomicU64,
    /// Last request per route: (headers, body).
    last: Mutex<HashMap<&'static str, LastRequest>>,
}

struct State {
    opts: Options,
    stats: Stats,
    seq: AtomicU64,
}

impl State {
    fn id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}{n:06x}", uuid::Uuid::now_v7().simple())
    }

    fn record(&self, route: &'static str, req: &HttpRequest, body: &Bytes) {
        match route {
            "chat_completions" => self.stats.chat_completions.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.messages.fetch_add(1, Ordering::Relaxed),
        };
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        if let Ok(mut last) = self.stats.last.lock() {
            last.insert(route, (headers, body.clone()));
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A control from the header `name`, else from a `[[name:N]]` marker anywhere in the raw body.
fn control(headers: &HeaderMap, raw: &[u8], name: &str) -> u64 {
    match header_u64(headers, name) {
        0 => marker(raw, name).unwrap_or(0),
        n => n,
    }
}

fn marker(raw: &[u8], name: &str) -> Option<u64> {
    let pat = format!("[[{name}:");
    let pos = raw.windows(pat.len()).position(|w| w == pat.as_bytes())?;
    let rest = &raw[pos + pat.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Unicode characters of the text in a `content` value (string, or parts/blocks).
fn text_chars(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let mut n = item.get("text").and_then(Value::as_str).map_or(0, |t| t.chars().count() as u64);
                if item.get("type").and_then(Value::as_str) == Some("tool_result") {
                    n += item.get("content").map_or(0, text_chars);
                }
                n
            })
            .sum(),
        _ => 0,
    }
}

fn input_tokens(body: &Value) -> u64 {
    let mut chars = body.get("system").map_or(0, text_chars);
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        chars += msgs.iter().map(|m| m.get("content").map_or(0, text_chars)).sum::<u64>();
    }
    chars.div_ceil(4).max(1)
}

/// (tokens per choice, cut by the limit).
fn output_tokens(body: &Value) -> (u64, bool) {
    let limit = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let natural = REPLY_WORDS.len() as u64;
    (limit.min(natural), limit < natural)
}

fn reply_words(n: u64) -> &'static [&'static str] {
    &REPLY_WORDS[..n as usize]
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn sse_event(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

/// An SSE response: `frames` are (delay before it, bytes); without any delay it goes as one chunk.
fn sse_response(mut resp: actix_web::HttpResponseBuilder, frames: Vec<(Duration, Bytes)>) -> HttpResponse {
    resp.content_type("text/event-stream").insert_header(("cache-control", "no-cache"));
    if frames.iter().all(|(d, _)| d.is_zero()) {
        let mut all = Vec::with_capacity(frames.iter().map(|(_, b)| b.len()).sum());
        for (_, b) in &frames {
            all.extend_from_slice(b);
        }
        return resp.streaming(futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(all)) }));
    }
    let stream = futures::stream::iter(frames).then(|(delay, bytes)| async move {
        if !delay.is_zero() {
            actix_web::rt::time::sleep(delay).await;
        }
        Ok::<_, Infallible>(bytes)
    });
    resp.streaming(stream)
}

fn delta_delay(state: &State, req: &HttpRequest, raw: &[u8]) -> Duration {
    match control(req.headers(), raw, "x-fake-slow-stream-ms") {
        0 => state.opts.token_delay,
        ms => Duration::from_millis(ms),
    }
}

fn openai_error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"error": {"message": message, "type": kind, "param": param, "code": code}}))
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// The first tool's name when the model should call it.
fn tool_to_call(body: &Value, anthropic: bool) -> Option<String> {
    let first = body.get("tools")?.as_array()?.first()?;
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    if anthropic {
        let has_result = last.get("content").and_then(Value::as_array).is_some_and(|blocks| {
            blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
        if has_result {
            return None;
        }
        first.get("name").and_then(Value::as_str).map(str::to_string)
    } else {
        first.pointer("/function/name").and_then(Value::as_str).map(str::to_string)
    }
}

/// Whether the request carries `Authorization: Bearer <non-empty>`.
fn bearer_present(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| !k.trim().is_empty())
}

async fn chat_completions(req: HttpRequest, raw: Bytes, state: web::Data<State>) -> HttpResponse {
    state.record("chat_completions", &req, &raw);
    if !bearer_present(&req) {
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        );
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return openai_error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
                None,
            )
        }
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_string) else {
        return openai_error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
        );
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return openai_error(
            400,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    }
    if !state.opts.latency.is_zero() {
        actix_web::rt::time::sleep(state.opts.latency).await;
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let cache_read = control(req.headers(), &raw, "x-fake-cache-read");
    let input = input_tokens(&body);
    let (out, cut) = output_tokens(&body);
    let tool = tool_to_call(&body, false);
    let finish = if tool.is_some() {
        "tool_calls"
    } else if cut {
        "length"
    } else {
        "stop"
    };
    let usage = json!({
        "prompt_tokens": input + cache_read,
        "completion_tokens": out * n,
        "total_tokens": input + cache_read + out * n,
        "prompt_tokens_details": {"cached_tokens": cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    });
    let id = state.id("chatcmpl-");
    let created = chrono::Utc::now().timestamp();
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("x-request-id", state.id("req_")));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                let message = match &tool {
                    Some(name) => json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                        "tool_calls": [{"id": state.id("call_"), "type": "function",
                            "function": {"name": name, "arguments": "{}"}}]}),
                    None => json!({"role": "assistant", "content": reply_words(out).concat(), "refusal": null,
                        "annotations": []}),
                };
                json!({"index": i, "message": message, "logprobs": null, "finish_reason": finish})
            })
            .collect();
        return resp.json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fake",
        }));
    }
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let delay = delta_delay(&state, &req, &raw);
    let chunk = |choices: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake", "choices": choices});
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut frames = Vec::new();
    for i in 0..n {
        match &tool {
            Some(name) => {
                let call_id = state.id("call_");
                frames.push((Duration::ZERO, chunk(json!([{"index": i, "delta": {"role": "assistant", "content": null,
                    "refusal": null, "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]))));
                frames.push((delay, chunk(json!([{"index": i, "delta": {"tool_calls": [{"index": 0,
                    "function": {"arguments": "{}"}}]}, "logprobs": null, "finish_reason": null}]))));
            }
            None => {
                frames.push((Duration::ZERO, chunk(json!([{"index": i, "delta": {"role": "assistant", "content": "",
                    "refusal": null}, "logprobs": null, "finish_reason": null}]))));
                for (k, word) in reply_words(out).iter().enumerate() {
                    let d = if k == 0 && i == 0 { Duration::ZERO } else { delay };
                    frames.push((d, chunk(json!([{"index": i, "delta": {"content": word}, "logprobs": null,
                        "finish_reason": null}]))));
                }
            }
        }
    }
    for i in 0..n {
        frames.push((Duration::ZERO, chunk(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]))));
    }
    if include_usage {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake", "choices": [], "usage": usage});
        frames.push((Duration::ZERO, sse_data(&c)));
    }
    frames.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
    sse_response(resp, frames)
}

async fn messages(req: HttpRequest, raw: Bytes, state: web::Data<State>) -> HttpResponse {
    state.record("messages", &req, &raw);
    // Anthropic takes `x-api-key`; its Python SDK 2.x sends the key as `Authorization: Bearer`.
    let authed = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).is_some_and(|k| !k.trim().is_empty())
        || bearer_present(&req);
    if !authed {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => return anthropic_error(400, "invalid_request_error", "The request body is not valid JSON."),
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_string) else {
        return anthropic_error(400, "invalid_request_error", "model: Field required");
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return anthropic_error(400, "invalid_request_error", "messages: Field required");
    }
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if !state.opts.latency.is_zero() {
        actix_web::rt::time::sleep(state.opts.latency).await;
    }
    let cache_read = control(req.headers(), &raw, "x-fake-cache-read");
    let cache_write = control(req.headers(), &raw, "x-fake-cache-write");
    let input = input_tokens(&body);
    let (out, cut) = output_tokens(&body);
    let tool = tool_to_call(&body, true);
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else if cut {
        "max_tokens"
    } else {
        "end_turn"
    };
    let usage = |output: u64| {
        json!({"input_tokens": input, "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output, "service_tier": "standard"})
    };
    let id = state.id("msg_");
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("request-id", state.id("req_")));
    let tool_id = tool.as_ref().map(|_| state.id("toolu_"));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let content = match (&tool, &tool_id) {
            (Some(name), Some(tid)) => json!([{"type": "tool_use", "id": tid, "name": name, "input": {}}]),
            _ => json!([{"type": "text", "text": reply_words(out).concat()}]),
        };
        return resp.json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": usage(out),
        }));
    }
    let delay = delta_delay(&state, &req, &raw);
    let mut frames = vec![(
        Duration::ZERO,
        sse_event("message_start", &json!({"type": "message_start", "message": {"id": id, "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(out.min(1))}})),
    )];
    match (&tool, &tool_id) {
        (Some(name), Some(tid)) => {
            frames.push((Duration::ZERO, sse_event("content_block_start", &json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "tool_use", "id": tid, "name": name, "input": {}}}))));
            frames.push((Duration::ZERO, sse_event("ping", &json!({"type": "ping"}))));
            frames.push((delay, sse_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{}"}}))));
        }
        _ => {
            frames.push((Duration::ZERO, sse_event("content_block_start", &json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "text", "text": ""}}))));
            frames.push((Duration::ZERO, sse_event("ping", &json!({"type": "ping"}))));
            for (k, word) in reply_words(out).iter().enumerate() {
                let d = if k == 0 { Duration::ZERO } else { delay };
                frames.push((d, sse_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": word}}))));
            }
        }
    }
    frames.push((Duration::ZERO, sse_event("content_block_stop", &json!({"type": "content_block_stop", "index": 0}))));
    frames.push((Duration::ZERO, sse_event("message_delta", &json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": out}}))));
    frames.push((Duration::ZERO, sse_event("message_stop", &json!({"type": "message_stop"}))));
    sse_response(resp, frames)
}

async fn stats(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "chat_completions": state.stats.chat_completions.load(Ordering::Relaxed),
        "messages": state.stats.messages.load(Ordering::Relaxed),
    }))
}

async fn last(state: web::Data<State>) -> HttpResponse {
    let last = match state.stats.last.lock() {
        Ok(l) => l,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let out: serde_json::Map<String, Value> = last
        .iter()
        .map(|(route, (headers, body))| {
            let body = serde_json::from_slice::<Value>(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            let headers: serde_json::Map<String, Value> =
                headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            (route.to_string(), json!({"headers": headers, "body": body}))
        })
        .collect();
    HttpResponse::Ok().json(Value::Object(out))
}

fn main() -> std::io::Result<()> {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fake_upstream: {e}");
            }
            eprintln!("usage: fake_upstream [--bind ADDR] [--latency-ms L] [--token-delay-ms D] [--workers N]");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(&opts.bind)?;
    let addr = listener.local_addr()?;
    let workers = opts.workers;
    let state = web::Data::new(State { opts, stats: Stats::default(), seq: AtomicU64::new(0) });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .route("/v1/chat/completions", web::post().to(chat_completions))
                .route("/v1/messages", web::post().to(messages))
                .route("/_fake/stats", web::get().to(stats))
                .route("/_fake/last", web::get().to(last))
        })
        .workers(workers)
        .backlog(4096)
        .max_connection_rate(4096)
        .listen(listener)?
        .run();
        println!("fake upstream listening on http://{addr}");
        std::io::stdout().flush()?;
        server.await
    })
}
