//! Translation between the OpenAI Chat Completions and Anthropic Messages wire formats.
//!
//! Pure functions over `serde_json::Value` (no I/O): an OpenAI chat request becomes an
//! Anthropic Messages request, and the Anthropic answer (a message, an error body, or a
//! stream of SSE events) becomes what the OpenAI SDK expects back.
//!
//! Choices made where the two APIs differ (each is also noted where it is made):
//! - `system` and `developer` messages, wherever they stand, go to the top-level `system`
//!   string, joined with a blank line; Anthropic has no system turns.
//! - Consecutive messages of the same Anthropic role are merged (tool results become user
//!   turns), and in a user turn `tool_result` blocks are put first, as Anthropic requires.
//!   Empty text is dropped (Anthropic rejects empty text blocks); a message left with no
//!   content at all is dropped. A conversation ending on an assistant message is passed
//!   as is: Anthropic then continues that message (a prefill) rather than starting anew.
//! - `n` > 1, the deprecated `functions`/`function_call`, audio input, `file_id` files,
//!   custom (non-function) tools and `allowed_tools` tool choices are refused: they would
//!   change what the client gets back, so dropping them silently would be wrong.
//! - OpenAI-only knobs that only tune sampling or the response envelope are dropped
//!   silently: `logprobs`, `top_logprobs`, `logit_bias`, `presence_penalty`,
//!   `frequency_penalty`, `seed`, `response_format` (Anthropic has no JSON mode without a
//!   beta header, so a `json_object`/`json_schema` request gets plain text back),
//!   `reasoning_effort`, `service_tier`, `store`, `metadata`, `modalities`, `audio`,
//!   `prediction`, `prompt_cache_key`, `web_search_options`, `stream_options` (read by the
//!   caller, see [`stream_include_usage`]) and message `name`s.
//! - `temperature` is clamped into Anthropic's 0..=1 (OpenAI allows 0..=2); `top_p` is
//!   copied. `user` (or its successor `safety_identifier`) becomes `metadata.user_id`.
//! - Answers keep Anthropic's message and tool-use ids; thinking, citations and server-tool
//!   blocks have no Chat Completions equivalent and are skipped.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Media types Anthropic accepts in base64 image blocks.
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Why a request cannot be translated; `code()` is a stable snake_case code, `param()` names
/// the offending field (for OpenAI error bodies
/// `{"error":{"message","type":"invalid_request_error","param","code"}}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// `messages` is missing, empty, not an array, or holds an entry that cannot be read
    /// (not an object, unknown role, content of the wrong shape, missing ids).
    #[error("{0}")]
    InvalidMessages(String),
    /// A tool call's `arguments` is not a JSON object (Anthropic's `input` must be one).
    #[error("{message}")]
    InvalidToolArguments {
        /// Path of the arguments, e.g. `messages[2].tool_calls[0].function.arguments`.
        param: String,
        /// Explanation.
        message: String,
    },
    /// A parameter Anthropic cannot honour (`n` > 1, deprecated functions, custom tools).
    #[error("{message}")]
    UnsupportedParameter {
        /// The parameter.
        param: String,
        /// Explanation.
        message: String,
    },
    /// A content part Anthropic cannot read (audio, uploaded files, unsupported image type).
    #[error("{message}")]
    UnsupportedContent {
        /// Path of the part, e.g. `messages[0].content[1]`.
        param: String,
        /// Explanation.
        message: String,
    },
    /// A parameter of the wrong type or value.
    #[error("{message}")]
    InvalidParameter {
        /// The parameter.
        param: String,
        /// Explanation.
        message: String,
    },
}

impl TranslateError {
    /// Stable snake_case code, one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            TranslateError::InvalidMessages(_) => "invalid_messages",
            TranslateError::InvalidToolArguments { .. } => "invalid_tool_arguments",
            TranslateError::UnsupportedParameter { .. } => "unsupported_parameter",
            TranslateError::UnsupportedContent { .. } => "unsupported_content",
            TranslateError::InvalidParameter { .. } => "invalid_parameter",
        }
    }

    /// The offending field.
    pub fn param(&self) -> Option<String> {
        match self {
            TranslateError::InvalidMessages(_) => Some("messages".to_string()),
            TranslateError::InvalidToolArguments { param, .. }
            | TranslateError::UnsupportedParameter { param, .. }
            | TranslateError::UnsupportedContent { param, .. }
            | TranslateError::InvalidParameter { param, .. } => Some(param.clone()),
        }
    }

    fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::InvalidParameter { param: param.into(), message: message.into() }
    }

    fn unsupported_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::UnsupportedParameter { param: param.into(), message: message.into() }
    }

    fn unsupported_content(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::UnsupportedContent { param: param.into(), message: message.into() }
    }
}

/// Whether an OpenAI streaming request asked for a final usage chunk
/// (`stream_options.include_usage`), to pass to [`StreamTranslator::new`].
pub fn stream_include_usage(req: &Value) -> bool {
    req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// Request: OpenAI chat completion -> Anthropic message
// ---------------------------------------------------------------------------------------

/// OpenAI chat request -> Anthropic Messages request. `default_max_tokens` is used when the
/// client gave neither max_tokens nor max_completion_tokens (the gateway passes the model's
/// max output).
pub fn openai_request_to_anthropic(req: &Value, default_max_tokens: u64) -> Result<Value, TranslateError> {
    let messages = match req.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => {
            return Err(TranslateError::InvalidMessages(
                "`messages` must be a non-empty array of message objects.".to_string(),
            ))
        }
    };
    let (system, turns) = translate_messages(messages)?;

    let model = match req.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err(TranslateError::invalid_param("model", "`model` must be a non-empty string.")),
    };
    check_n(req.get("n"))?;
    for legacy in ["functions", "function_call"] {
        if req.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::unsupported_param(
                legacy,
                format!("`{legacy}` is deprecated and not supported for this model; use `tools` and `tool_choice`."),
            ));
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::String(model));
    out.insert("max_tokens".into(), json!(max_tokens(req, default_max_tokens)?));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    out.insert(
        "messages".into(),
        Value::Array(turns.into_iter().map(|t| json!({"role": t.role, "content": t.blocks})).collect()),
    );
    if let Some(stop) = stop_sequences(req.get("stop"))? {
        out.insert("stop_sequences".into(), stop);
    }
    if let Some(t) = number_param(req, "temperature")? {
        // OpenAI samples over 0..=2, Anthropic over 0..=1: clamp rather than rescale, so
        // the common values (0, 0.2, 0.7, 1) keep their meaning.
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").filter(|v| !v.is_null()) {
        if !p.is_number() {
            return Err(TranslateError::invalid_param("top_p", "`top_p` must be a number."));
        }
        out.insert("top_p".into(), p.clone());
    }
    match req.get("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(stream)) => {
            out.insert("stream".into(), Value::Bool(*stream));
        }
        Some(_) => return Err(TranslateError::invalid_param("stream", "`stream` must be a boolean.")),
    }
    if let Some(user) = user_id(req)? {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let tools = translate_tools(req.get("tools"))?;
    let tool_choice = translate_tool_choice(req.get("tool_choice"), tools.is_some())?;
    if let Some(tools) = tools {
        let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true);
        let mut choice = tool_choice.unwrap_or_else(|| json!({"type": "auto"}));
        // Anthropic's switch lives on tool_choice, and `none` takes no options.
        if !parallel && choice.get("type").and_then(Value::as_str) != Some("none") {
            if let Value::Object(map) = &mut choice {
                map.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
        out.insert("tools".into(), Value::Array(tools));
        out.insert("tool_choice".into(), choice);
    }
    Ok(Value::Object(out))
}

/// One Anthropic turn being built.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// The system texts and the alternating turns of an OpenAI `messages` array.
fn translate_messages(messages: &[Value]) -> Result<(Vec<String>, Vec<Turn>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let Some(obj) = message.as_object() else {
            return Err(TranslateError::InvalidMessages(format!("messages[{i}] must be an object.")));
        };
        let (role, blocks) = match obj.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                system.extend(system_texts(i, obj.get("content"))?);
                continue;
            }
            Some("user") => ("user", user_blocks(i, obj.get("content"))?),
            Some("assistant") => ("assistant", assistant_blocks(i, obj)?),
            Some("tool") => ("user", vec![tool_result_block(i, obj)?]),
            Some("function") => {
                return Err(TranslateError::InvalidMessages(format!(
                    "messages[{i}]: the deprecated `function` role is not supported; use `tool` messages with a `tool_call_id`."
                )))
            }
            Some(other) => {
                return Err(TranslateError::InvalidMessages(format!(
                    "messages[{i}]: unknown role `{other}` (expected system, developer, user, assistant or tool)."
                )))
            }
            None => {
                return Err(TranslateError::InvalidMessages(format!("messages[{i}]: `role` must be a string.")))
            }
        };
        if blocks.is_empty() {
            // Anthropic rejects empty content; an empty message says nothing, so it goes.
            continue;
        }
        match turns.last_mut() {
            // Anthropic wants alternating turns: same-role neighbours become one turn.
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    for turn in turns.iter_mut().filter(|t| t.role == "user") {
        // Anthropic requires tool results to open the user turn that answers a tool use;
        // the sort is stable, so the order within each group is kept.
        turn.blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
    }
    if turns.is_empty() {
        return Err(TranslateError::InvalidMessages(
            "`messages` must hold at least one user or assistant message with content.".to_string(),
        ));
    }
    Ok((system, turns))
}

/// The texts of a system/developer message: a string, or an array of text parts.
fn system_texts(i: usize, content: Option<&Value>) -> Result<Vec<String>, TranslateError> {
    let texts = match content {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                (Some("text"), Some(Value::String(text))) => Ok(text.clone()),
                _ => Err(TranslateError::InvalidMessages(format!(
                    "messages[{i}].content[{j}]: system and developer content parts must be text parts."
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(TranslateError::InvalidMessages(format!(
                "messages[{i}]: system and developer content must be a string or an array of text parts."
            )))
        }
    };
    Ok(texts.into_iter().filter(|t| !t.is_empty()).collect())
}

/// Which content parts a message may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PartsOf {
    /// User messages: text, images, PDF files.
    User,
    /// Assistant messages: text and refusals.
    Assistant,
    /// Tool results: text and images (Anthropic's tool_result content).
    Tool,
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// The blocks of a user message's content.
fn user_blocks(i: usize, content: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(if s.is_empty() { Vec::new() } else { vec![text_block(s)] }),
        Some(Value::Array(parts)) => content_parts(i, parts, PartsOf::User),
        _ => Err(TranslateError::InvalidMessages(format!(
            "messages[{i}]: user content must be a string or an array of content parts."
        ))),
    }
}

/// Content parts -> Anthropic blocks, empty texts dropped.
fn content_parts(i: usize, parts: &[Value], of: PartsOf) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let path = format!("messages[{i}].content[{j}]");
        let Some(kind) = part.get("type").and_then(Value::as_str) else {
            return Err(TranslateError::InvalidMessages(format!("{path} must be an object with a string `type`.")));
        };
        let block = match (kind, of) {
            ("text", _) => match part.get("text") {
                Some(Value::String(text)) if text.is_empty() => None,
                Some(Value::String(text)) => Some(text_block(text)),
                _ => return Err(TranslateError::InvalidMessages(format!("{path}: `text` must be a string."))),
            },
            ("refusal", PartsOf::Assistant) => match part.get("refusal") {
                Some(Value::String(text)) if text.is_empty() => None,
                Some(Value::String(text)) => Some(text_block(text)),
                _ => return Err(TranslateError::InvalidMessages(format!("{path}: `refusal` must be a string."))),
            },
            ("image_url", PartsOf::User | PartsOf::Tool) => {
                // The API takes {"url", "detail"}; a bare string is accepted as the URL too.
                let url = match part.get("image_url") {
                    Some(Value::String(url)) => Some(url.as_str()),
                    Some(obj) => obj.get("url").and_then(Value::as_str),
                    None => None,
                };
                let Some(url) = url else {
                    return Err(TranslateError::InvalidMessages(format!("{path}: `image_url.url` must be a string.")));
                };
                Some(image_block(url, &format!("{path}.image_url.url"))?)
            }
            ("file", PartsOf::User) => Some(file_block(part, &path)?),
            ("input_audio", _) => {
                return Err(TranslateError::unsupported_content(path, "Audio input is not supported for this model."))
            }
            (other, PartsOf::Assistant) => {
                return Err(TranslateError::InvalidMessages(format!(
                    "{path}: assistant content parts must be text or refusal parts, not `{other}`."
                )))
            }
            (other, _) => {
                return Err(TranslateError::unsupported_content(
                    path,
                    format!("Content parts of type `{other}` are not supported for this model."),
                ))
            }
        };
        blocks.extend(block);
    }
    Ok(blocks)
}

/// `data:<media type>[;param]*;base64,<data>` -> (media type, data).
fn parse_base64_data_url(url: &str) -> Option<(String, &str)> {
    let rest = url.get(..5).filter(|p| p.eq_ignore_ascii_case("data:")).and(url.get(5..))?;
    let (header, data) = rest.split_once(',')?;
    let mut params = header.split(';');
    let media_type = params.next()?.trim().to_ascii_lowercase();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) || data.is_empty() {
        return None;
    }
    Some((media_type, data))
}

/// An OpenAI image URL (data: or http(s)) -> Anthropic image block.
fn image_block(url: &str, param: &str) -> Result<Value, TranslateError> {
    let scheme_is = |scheme: &str| url.get(..scheme.len()).is_some_and(|p| p.eq_ignore_ascii_case(scheme));
    if scheme_is("data:") {
        let Some((media_type, data)) = parse_base64_data_url(url) else {
            return Err(TranslateError::unsupported_content(
                param,
                "Image data URLs must be base64: data:<media type>;base64,<data>.",
            ));
        };
        // `image/jpg` is common in the wild and means JPEG.
        let media_type = if media_type == "image/jpg" { "image/jpeg".to_string() } else { media_type };
        if !IMAGE_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(TranslateError::unsupported_content(
                param,
                format!("Image type `{media_type}` is not supported; use JPEG, PNG, GIF or WebP."),
            ));
        }
        Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
    } else if scheme_is("https://") || scheme_is("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(TranslateError::unsupported_content(param, "Image URLs must be http(s) or base64 data URLs."))
    }
}

/// An OpenAI `file` part holding a PDF as a base64 data URL -> Anthropic document block.
fn file_block(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let file = part.get("file");
    let data_url = file.and_then(|f| f.get("file_data")).and_then(Value::as_str);
    let Some((media_type, data)) = data_url.and_then(parse_base64_data_url) else {
        // `file_id` names a file in OpenAI's store, which Anthropic cannot read.
        return Err(TranslateError::unsupported_content(
            path,
            "Only files given inline as a base64 PDF data URL in `file.file_data` are supported for this model.",
        ));
    };
    if media_type != "application/pdf" {
        return Err(TranslateError::unsupported_content(
            path,
            format!("Files of type `{media_type}` are not supported; only application/pdf is."),
        ));
    }
    let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}});
    if let (Some(name), Value::Object(map)) = (file.and_then(|f| f.get("filename")).and_then(Value::as_str), &mut block)
    {
        map.insert("title".into(), Value::String(name.to_string()));
    }
    Ok(block)
}

/// The blocks of an assistant message: its text, then its tool calls as `tool_use`.
fn assistant_blocks(i: usize, obj: &Map<String, Value>) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = match obj.get("content") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![text_block(s)],
        Some(Value::Array(parts)) => content_parts(i, parts, PartsOf::Assistant)?,
        Some(_) => {
            return Err(TranslateError::InvalidMessages(format!(
                "messages[{i}]: assistant content must be a string, an array of parts, or null."
            )))
        }
    };
    if blocks.is_empty() {
        if let Some(refusal) = obj.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            blocks.push(text_block(refusal));
        }
    }
    match obj.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                blocks.push(tool_use_block(i, j, call)?);
            }
        }
        Some(_) => {
            return Err(TranslateError::InvalidMessages(format!("messages[{i}]: `tool_calls` must be an array.")))
        }
    }
    Ok(blocks)
}

/// One OpenAI tool call -> Anthropic `tool_use` block.
fn tool_use_block(i: usize, j: usize, call: &Value) -> Result<Value, TranslateError> {
    let path = format!("messages[{i}].tool_calls[{j}]");
    match call.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "function" => {}
        Some(other) => {
            return Err(TranslateError::unsupported_param(
                format!("{path}.type"),
                format!("Tool calls of type {other} are not supported for this model; only `function`."),
            ))
        }
    }
    let Some(id) = call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
        return Err(TranslateError::InvalidMessages(format!("{path}: `id` must be a non-empty string.")));
    };
    let function = call.get("function");
    let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err(TranslateError::InvalidMessages(format!("{path}: `function.name` must be a non-empty string.")));
    };
    let param = format!("{path}.function.arguments");
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => json!({}),
        // Some clients send "" for a function without parameters.
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(TranslateError::InvalidToolArguments {
                    param,
                    message: format!("{path}: `function.arguments` must encode a JSON object."),
                })
            }
            Err(e) => {
                return Err(TranslateError::InvalidToolArguments {
                    param,
                    message: format!("{path}: `function.arguments` is not valid JSON ({e})."),
                })
            }
        },
        // Lenient: an already-parsed object is what Anthropic wants anyway.
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(TranslateError::InvalidToolArguments {
                param,
                message: format!("{path}: `function.arguments` must be a string holding a JSON object."),
            })
        }
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// An OpenAI `tool` message -> Anthropic `tool_result` block.
fn tool_result_block(i: usize, obj: &Map<String, Value>) -> Result<Value, TranslateError> {
    let Some(id) = obj.get("tool_call_id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
        return Err(TranslateError::InvalidMessages(format!(
            "messages[{i}]: tool messages need a non-empty string `tool_call_id`."
        )));
    };
    let mut block = Map::new();
    block.insert("type".into(), json!("tool_result"));
    block.insert("tool_use_id".into(), json!(id));
    match obj.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                block.insert("content".into(), json!(s));
            }
        }
        Some(Value::Array(parts)) => {
            let blocks = content_parts(i, parts, PartsOf::Tool)?;
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
        Some(_) => {
            return Err(TranslateError::InvalidMessages(format!(
                "messages[{i}]: tool content must be a string or an array of text parts."
            )))
        }
    }
    Ok(Value::Object(block))
}

/// `n`: absent or 1; Anthropic returns exactly one choice.
fn check_n(n: Option<&Value>) -> Result<(), TranslateError> {
    match n {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_u64() {
            Some(1) => Ok(()),
            Some(k) if k > 1 => Err(TranslateError::unsupported_param(
                "n",
                "Only n=1 is supported for this model: it returns one choice per request.",
            )),
            _ => Err(TranslateError::invalid_param("n", "`n` must be a positive integer.")),
        },
    }
}

/// `max_completion_tokens`, else the deprecated `max_tokens`, else the default.
fn max_tokens(req: &Value, default_max_tokens: u64) -> Result<u64, TranslateError> {
    for param in ["max_completion_tokens", "max_tokens"] {
        match req.get(param) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    TranslateError::invalid_param(param, format!("`{param}` must be a positive integer."))
                })
            }
        }
    }
    // Anthropic requires at least 1.
    Ok(default_max_tokens.max(1))
}

/// `stop` (string or array of strings) -> `stop_sequences`; empty strings are dropped.
fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let invalid = || TranslateError::invalid_param("stop", "`stop` must be a string or an array of strings.");
    let sequences: Vec<&str> = match stop {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().ok_or_else(invalid)).collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid()),
    };
    let sequences: Vec<&str> = sequences.into_iter().filter(|s| !s.is_empty()).collect();
    Ok((!sequences.is_empty()).then(|| json!(sequences)))
}

/// An optional numeric parameter.
fn number_param(req: &Value, param: &str) -> Result<Option<f64>, TranslateError> {
    match req.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| TranslateError::invalid_param(param, format!("`{param}` must be a number."))),
    }
}

/// `safety_identifier` (OpenAI's successor of `user`), else `user`.
fn user_id(req: &Value) -> Result<Option<String>, TranslateError> {
    for param in ["safety_identifier", "user"] {
        match req.get(param) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(_) => return Err(TranslateError::invalid_param(param, format!("`{param}` must be a string."))),
        }
    }
    Ok(None)
}

/// OpenAI function tools -> Anthropic tools; `None` when there are none.
fn translate_tools(tools: Option<&Value>) -> Result<Option<Vec<Value>>, TranslateError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) if tools.is_empty() => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(TranslateError::invalid_param("tools", "`tools` must be an array of tools.")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(TranslateError::unsupported_param(
                    format!("tools[{k}].type"),
                    format!("Tools of type `{other}` are not supported for this model; only `function`."),
                ))
            }
            None => {
                return Err(TranslateError::invalid_param(
                    format!("tools[{k}].type"),
                    "Each tool needs `type`: \"function\".",
                ))
            }
        }
        let function = tool.get("function");
        let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Err(TranslateError::invalid_param(
                format!("tools[{k}].function.name"),
                "Each function tool needs a non-empty string `name`.",
            ));
        };
        let mut schema = match function.and_then(|f| f.get("parameters")) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(schema)) => schema.clone(),
            Some(_) => {
                return Err(TranslateError::invalid_param(
                    format!("tools[{k}].function.parameters"),
                    "`parameters` must be a JSON Schema object.",
                ))
            }
        };
        // Anthropic requires an object schema; OpenAI lets a function omit its parameters.
        schema.entry("type").or_insert_with(|| json!("object"));
        if schema.get("type").and_then(Value::as_str) == Some("object") {
            schema.entry("properties").or_insert_with(|| json!({}));
        }
        let mut anthropic = Map::new();
        anthropic.insert("name".into(), json!(name));
        if let Some(description) = function.and_then(|f| f.get("description")).and_then(Value::as_str) {
            anthropic.insert("description".into(), json!(description));
        }
        anthropic.insert("input_schema".into(), Value::Object(schema));
        out.push(Value::Object(anthropic));
    }
    Ok(Some(out))
}

/// OpenAI `tool_choice` -> Anthropic `tool_choice`; `None` when absent (or moot without tools).
fn translate_tool_choice(choice: Option<&Value>, has_tools: bool) -> Result<Option<Value>, TranslateError> {
    let invalid = || {
        TranslateError::invalid_param(
            "tool_choice",
            "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}.",
        )
    };
    let translated = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            // Anthropic's own `none` keeps the tool definitions, which earlier tool_use
            // blocks in the conversation may refer to.
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => return Err(invalid()),
        },
        Some(obj @ Value::Object(_)) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj.get("function").and_then(|f| f.get("name")).and_then(Value::as_str);
                match name {
                    Some(name) if !name.is_empty() => json!({"type": "tool", "name": name}),
                    _ => return Err(invalid()),
                }
            }
            Some(other @ ("allowed_tools" | "custom")) => {
                return Err(TranslateError::unsupported_param(
                    "tool_choice",
                    format!("`tool_choice` of type `{other}` is not supported for this model."),
                ))
            }
            _ => return Err(invalid()),
        },
        Some(_) => return Err(invalid()),
    };
    if has_tools {
        return Ok(Some(translated));
    }
    match translated.get("type").and_then(Value::as_str) {
        // Without tools, "auto" and "none" both mean "answer in text", which is all there is.
        Some("auto" | "none") => Ok(None),
        _ => Err(TranslateError::invalid_param("tool_choice", "`tool_choice` is only allowed when `tools` are given.")),
    }
}

// ---------------------------------------------------------------------------------------
// Response: Anthropic message -> OpenAI chat completion
// ---------------------------------------------------------------------------------------

/// Token counts read from Anthropic `usage` objects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Usage {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl Usage {
    /// Overwrite the counts this report carries; Anthropic's counts are cumulative.
    fn apply(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage else { return };
        let read = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(v) = read("input_tokens") {
            self.input = v;
        }
        if let Some(v) = read("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
        if let Some(v) = read("cache_read_input_tokens") {
            self.cache_read = v;
        }
        if let Some(v) = read("output_tokens") {
            self.output = v;
        }
    }

    /// OpenAI's usage object: prompt tokens count every input token, cached or not, as
    /// OpenAI's do; the cache reads are the cached part.
    fn to_openai(self) -> Value {
        let prompt = self.input.saturating_add(self.cache_creation).saturating_add(self.cache_read);
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": {"cached_tokens": self.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn (server tools, which are never requested
        // here) and any future reason: the model stopped on its own.
        _ => "stop",
    }
}

/// A fresh OpenAI-style id, for an upstream answer that lacks one.
fn new_completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

/// A tool_use block's input as OpenAI's `arguments` string.
fn arguments_of(input: Option<&Value>) -> String {
    match input {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    }
}

/// Anthropic Messages response -> OpenAI chat.completion (id, object, created, model,
/// choices[0].message {role, content, tool_calls}, finish_reason mapping
/// end_turn/stop_sequence->stop, max_tokens->length, tool_use->tool_calls; usage
/// {prompt_tokens = input + cache_creation + cache_read, completion_tokens, total_tokens,
/// prompt_tokens_details.cached_tokens = cache_read_input_tokens}).
///
/// The Anthropic message id is kept as the completion id, so both sides' logs match.
pub fn anthropic_response_to_openai(resp: &Value, created: i64) -> Value {
    let id = resp.get("id").and_then(Value::as_str).map_or_else(new_completion_id, str::to_string);
    let model = resp.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": arguments_of(block.get("input")),
                }
            })),
            _ => {}
        }
    }
    // OpenAI answers content null when the reply is only tool calls.
    let content = if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null, "annotations": []});
    if !tool_calls.is_empty() {
        if let Value::Object(map) = &mut message {
            map.insert("tool_calls".into(), Value::Array(tool_calls));
        }
    }
    let finish = resp.get("stop_reason").and_then(Value::as_str).map(finish_reason);
    let mut usage = Usage::default();
    usage.apply(resp.get("usage"));
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage.to_openai(),
    })
}

/// Anthropic error body {"type":"error","error":{"type","message"}} -> OpenAI error body
/// {"error":{"message","type","param":null,"code"}}.
///
/// `code` keeps Anthropic's error type verbatim (`overloaded_error`, ...) so nothing is
/// lost; `type` is the matching OpenAI category, as the gateway's own errors use them.
/// A body of another shape becomes code `upstream_error`.
pub fn anthropic_error_to_openai(body: &Value) -> Value {
    let error = body.get("error");
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .or_else(|| body.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or("The upstream provider returned an error.");
    let openai_type = match kind {
        Some("invalid_request_error" | "not_found_error" | "request_too_large") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error") => "permission_error",
        Some("rate_limit_error") => "rate_limit_error",
        Some("billing_error") => "insufficient_quota",
        // api_error, overloaded_error, timeout_error, unknown kinds.
        _ => "api_error",
    };
    json!({
        "error": {
            "message": message,
            "type": openai_type,
            "param": null,
            "code": kind.unwrap_or("upstream_error"),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Stream: Anthropic SSE events -> OpenAI chat.completion.chunk
// ---------------------------------------------------------------------------------------

/// A tool_use content block being streamed.
#[derive(Debug, Clone, Copy)]
struct StreamedTool {
    /// Position among the reply's tool calls (OpenAI's `tool_calls[].index`).
    index: u64,
    /// Whether any non-empty argument text went out yet.
    arguments_sent: bool,
}

/// Stateful: Anthropic SSE events (event name + parsed data JSON) -> OpenAI
/// chat.completion.chunk JSON values (zero or more per event).
///
/// Chunks carry the Anthropic message id and model from `message_start` (the constructor's
/// model until then). With `include_usage`, every chunk has `"usage": null` and
/// `message_stop` adds a final chunk with `choices: []` and the usage, as OpenAI's
/// `stream_options.include_usage` does; without it, chunks have no `usage` key.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    started: bool,
    finish_sent: bool,
    finished: bool,
    usage: Usage,
    /// Tool blocks by Anthropic content block index.
    tools: HashMap<u64, StreamedTool>,
    next_tool_index: u64,
}

impl StreamTranslator {
    /// A translator for one streamed reply.
    pub fn new(model: &str, created: i64, include_usage: bool) -> Self {
        StreamTranslator {
            id: new_completion_id(),
            model: model.to_string(),
            created,
            include_usage,
            started: false,
            finish_sent: false,
            finished: false,
            usage: Usage::default(),
            tools: HashMap::new(),
            next_tool_index: 0,
        }
    }

    /// Whether `message_stop` was seen: the stream is complete (send `data: [DONE]`).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunks one Anthropic event becomes. `event` is the SSE event name; when it is
    /// empty or the SSE default `message`, the data's `type` is used instead. `ping`,
    /// `error` (the caller answers errors) and unknown events give nothing, as does any
    /// event after `message_stop`.
    pub fn on_event(&mut self, event: &str, data: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let kind = match event {
            "" | "message" => data.get("type").and_then(Value::as_str).unwrap_or_default(),
            named => named,
        };
        match kind {
            "message_start" => {
                if !self.started {
                    let message = data.get("message");
                    if let Some(id) = message.and_then(|m| m.get("id")).and_then(Value::as_str) {
                        self.id = id.to_string();
                    }
                    if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                        if !model.is_empty() {
                            self.model = model.to_string();
                        }
                    }
                    self.usage.apply(message.and_then(|m| m.get("usage")));
                }
                self.start(&mut out);
            }
            "content_block_start" => self.on_block_start(data, &mut out),
            "content_block_delta" => self.on_block_delta(data, &mut out),
            "content_block_stop" => {
                let index = data.get("index").and_then(Value::as_u64);
                if let Some(tool) = index.and_then(|i| self.tools.get_mut(&i)) {
                    if !tool.arguments_sent {
                        // A tool without parameters streams no JSON at all, but OpenAI
                        // clients parse the accumulated arguments: give them "{}".
                        tool.arguments_sent = true;
                        let delta = json!({"tool_calls": [{"index": tool.index, "function": {"arguments": "{}"}}]});
                        out.push(self.chunk(delta, Value::Null));
                    }
                }
            }
            "message_delta" => {
                self.usage.apply(data.get("usage"));
                let stop = data.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                if let Some(stop) = stop {
                    self.finish(finish_reason(stop), &mut out);
                }
            }
            "message_stop" => {
                // A stream that never said why it stopped still ends with a finish reason.
                self.finish("stop", &mut out);
                self.finished = true;
                if self.include_usage {
                    let mut last = self.envelope(Value::Array(Vec::new()));
                    if let Value::Object(map) = &mut last {
                        map.insert("usage".into(), self.usage.to_openai());
                    }
                    out.push(last);
                }
            }
            _ => {}
        }
        out
    }

    /// The opening chunk (role), once.
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
    }

    /// The finish chunk, once.
    fn finish(&mut self, reason: &str, out: &mut Vec<Value>) {
        if !self.finish_sent {
            self.start(out);
            self.finish_sent = true;
            out.push(self.chunk(json!({}), json!(reason)));
        }
    }

    fn on_block_start(&mut self, data: &Value, out: &mut Vec<Value>) {
        let Some(block) = data.get("content_block") else { return };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.start(out);
                    out.push(self.chunk(json!({"content": text}), Value::Null));
                }
            }
            Some("tool_use") => {
                let Some(block_index) = data.get("index").and_then(Value::as_u64) else {
                    return;
                };
                if self.tools.contains_key(&block_index) {
                    return;
                }
                self.start(out);
                let index = self.next_tool_index;
                self.next_tool_index += 1;
                let mut tool = StreamedTool { index, arguments_sent: false };
                out.push(self.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                        "type": "function",
                        "function": {
                            "name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                            "arguments": ""
                        }
                    }]}),
                    Value::Null,
                ));
                // Streamed tool_use blocks open with `input: {}` and send the JSON as
                // deltas; an input given up front is sent whole instead.
                if let Some(input) = block.get("input").and_then(Value::as_object).filter(|i| !i.is_empty()) {
                    tool.arguments_sent = true;
                    let arguments = Value::Object(input.clone()).to_string();
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                        Value::Null,
                    ));
                }
                self.tools.insert(block_index, tool);
            }
            // thinking, redacted_thinking, server tools: nothing in Chat Completions.
            _ => {}
        }
    }

    fn on_block_delta(&mut self, data: &Value, out: &mut Vec<Value>) {
        let Some(delta) = data.get("delta") else { return };
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                if let Some(text) = delta.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.start(out);
                    out.push(self.chunk(json!({"content": text}), Value::Null));
                }
            }
            Some("input_json_delta") => {
                let partial = delta.get("partial_json").and_then(Value::as_str).filter(|p| !p.is_empty());
                let index = data.get("index").and_then(Value::as_u64);
                let (Some(partial), Some(block_index)) = (partial, index) else {
                    return;
                };
                let Some(tool) = self.tools.get_mut(&block_index) else {
                    return;
                };
                tool.arguments_sent = true;
                let index = tool.index;
                out.push(
                    self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": partial}}]}),
                        Value::Null,
                    ),
                );
            }
            // thinking_delta, signature_delta, citations_delta: no equivalent.
            _ => {}
        }
    }

    /// A chunk with one choice.
    fn chunk(&self, delta: Value, finish_reason: Value) -> Value {
        self.envelope(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]))
    }

    /// The chunk envelope around `choices`.
    fn envelope(&self, choices: Value) -> Value {
        let mut chunk = Map::new();
        chunk.insert("id".into(), json!(self.id));
        chunk.insert("object".into(), json!("chat.completion.chunk"));
        chunk.insert("created".into(), json!(self.created));
        chunk.insert("model".into(), json!(self.model));
        chunk.insert("choices".into(), choices);
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Translate a request that must succeed.
    fn ok(req: Value) -> Value {
        match openai_request_to_anthropic(&req, 4096) {
            Ok(v) => v,
            Err(e) => panic!("request should translate, got {e:?} for {req}"),
        }
    }

    /// Translate a request that must fail.
    fn err(req: Value) -> TranslateError {
        match openai_request_to_anthropic(&req, 4096) {
            Ok(v) => panic!("request should be refused, got {v} for {req}"),
            Err(e) => e,
        }
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    // ---- request ------------------------------------------------------------------

    #[test]
    fn minimal_request_gets_model_default_max_tokens_and_text_blocks() {
        let out = ok(json!({"model": "claude-sonnet-4-5", "messages": [user("Hello")]}));
        assert_eq!(
            out,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
            }),
            "a bare request maps to model, default max_tokens and one user turn, nothing else"
        );
    }

    #[test]
    fn system_and_developer_messages_go_to_top_level_system() {
        let out = ok(json!({"model": "m", "messages": [
            {"role": "system", "content": "You are terse."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}, {"type": "text", "text": ""}]},
            {"role": "system", "content": ""},
        ]}));
        assert_eq!(out["system"], "You are terse.\n\nAnswer in French.", "system texts are joined with a blank line");
        assert_eq!(out["messages"].as_array().map(Vec::len), Some(1), "system messages leave the turns");
        let e =
            err(json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url"}]}, user("x")]}));
        assert_eq!(e.code(), "invalid_messages", "system content must be text parts");
    }

    #[test]
    fn no_system_key_without_system_messages() {
        let out = ok(json!({"model": "m", "messages": [user("Hi")]}));
        assert!(out.get("system").is_none(), "no system key when the client sent no system text");
    }

    #[test]
    fn user_content_parts_map_text_and_images() {
        let out = ok(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            ]),
            "text parts become text blocks, data URLs base64 image blocks, http(s) URLs url image blocks"
        );
    }

    #[test]
    fn bad_images_audio_and_file_ids_are_refused_with_the_part_path() {
        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}},
        ]}]}));
        assert_eq!(e.code(), "unsupported_content", "TIFF is not an Anthropic image type");
        assert_eq!(e.param().as_deref(), Some("messages[0].content[1].image_url.url"), "param points at the URL");
        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
        ]}]}));
        assert_eq!(e.code(), "unsupported_content", "only http(s) and data URLs");
        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]}]}));
        assert_eq!(e.code(), "unsupported_content", "audio input is refused, not dropped");
        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-abc"}},
        ]}]}));
        assert_eq!(e.param().as_deref(), Some("messages[0].content[0]"), "file_id is refused with its path");
    }

    #[test]
    fn inline_pdf_file_becomes_a_document_block() {
        let out = ok(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"}},
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"][0],
            json!({"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}),
            "a base64 PDF becomes an Anthropic document block titled by its file name"
        );
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_blocks() {
        let out = ok(json!({"model": "m", "messages": [
            user("Weather?"),
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]},
        ]}));
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            ]}),
            "text first, then one tool_use per call with parsed arguments (empty arguments = {{}})"
        );
    }

    #[test]
    fn invalid_tool_arguments_name_their_param() {
        let e = err(json!({"model": "m", "messages": [
            user("x"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{not json"}},
            ]},
        ]}));
        assert_eq!(e.code(), "invalid_tool_arguments", "unparsable arguments are refused");
        assert_eq!(
            e.param().as_deref(),
            Some("messages[1].tool_calls[1].function.arguments"),
            "param names the exact arguments field"
        );
        let e = err(json!({"model": "m", "messages": [
            user("x"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]},
        ]}));
        assert_eq!(e.code(), "invalid_tool_arguments", "arguments must encode an object, as Anthropic's input must be");
    }

    #[test]
    fn tool_messages_become_one_user_turn_of_tool_results() {
        let out = ok(json!({"model": "m", "messages": [
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        ]}));
        assert_eq!(
            out["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            ]}),
            "consecutive tool messages merge into one user turn of tool_result blocks"
        );
        let e = err(json!({"model": "m", "messages": [user("x"), {"role": "tool", "content": "r"}]}));
        assert_eq!(e.code(), "invalid_messages", "a tool message needs its tool_call_id");
    }

    #[test]
    fn consecutive_same_role_messages_are_merged() {
        let out = ok(json!({"model": "m", "messages": [
            user("one"), user("two"),
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            user("three"),
        ]}));
        let roles: Vec<&str> =
            out["messages"].as_array().into_iter().flatten().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user"], "turns alternate");
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]),
            "two user messages become one turn of two text blocks"
        );
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            "empty assistant text is dropped and the rest merged"
        );
    }

    #[test]
    fn tool_results_open_a_merged_user_turn() {
        let out = ok(json!({"model": "m", "messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            user("also this"),
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ]}));
        assert_eq!(
            out["messages"][2]["content"][0]["type"], "tool_result",
            "tool results come first in the user turn, as Anthropic requires"
        );
        assert_eq!(out["messages"][2]["content"][1]["text"], "also this", "the text follows");
    }

    #[test]
    fn tools_and_tool_choice_map() {
        let base = json!({"model": "m", "messages": [user("x")], "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}},
        ]});
        let out = ok(base.clone());
        assert_eq!(
            out["tools"],
            json!([
                {"name": "get_weather", "description": "Weather now",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ]),
            "function tools become Anthropic tools; a missing schema becomes an empty object schema"
        );
        assert_eq!(out["tool_choice"], json!({"type": "auto"}), "tools without tool_choice default to auto");
        let cases = [
            (json!("auto"), json!({"type": "auto"})),
            (json!("none"), json!({"type": "none"})),
            (json!("required"), json!({"type": "any"})),
            (json!({"type": "function", "function": {"name": "now"}}), json!({"type": "tool", "name": "now"})),
        ];
        for (choice, expected) in cases {
            let mut req = base.clone();
            req["tool_choice"] = choice.clone();
            assert_eq!(ok(req)["tool_choice"], expected, "tool_choice {choice} maps to {expected}");
        }
        let mut req = base.clone();
        req["parallel_tool_calls"] = json!(false);
        assert_eq!(
            ok(req)["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true}),
            "parallel_tool_calls false disables parallel tool use"
        );
        let mut req = base.clone();
        req["tools"] = json!([{"type": "custom", "custom": {"name": "x"}}]);
        assert_eq!(err(req).param().as_deref(), Some("tools[0].type"), "custom tools are refused");
        let e = err(json!({"model": "m", "messages": [user("x")], "tool_choice": "required"}));
        assert_eq!(e.param().as_deref(), Some("tool_choice"), "required without tools is refused, as OpenAI does");
        let out = ok(json!({"model": "m", "messages": [user("x")], "tool_choice": "none", "tools": []}));
        assert!(out.get("tool_choice").is_none() && out.get("tools").is_none(), "none without tools is moot");
    }

    #[test]
    fn max_tokens_prefer_max_completion_tokens() {
        let m = |extra: Value| {
            let mut req = json!({"model": "m", "messages": [user("x")]});
            if let (Value::Object(r), Value::Object(e)) = (&mut req, extra) {
                r.extend(e);
            }
            ok(req)["max_tokens"].clone()
        };
        assert_eq!(m(json!({"max_tokens": 100})), 100, "max_tokens is copied");
        assert_eq!(m(json!({"max_completion_tokens": 200})), 200, "max_completion_tokens is copied");
        assert_eq!(m(json!({"max_tokens": 100, "max_completion_tokens": 200})), 200, "the newer name wins");
        assert_eq!(m(json!({"max_tokens": null})), 4096, "null falls back to the default");
        let e = err(json!({"model": "m", "messages": [user("x")], "max_tokens": 0}));
        assert_eq!((e.code(), e.param().as_deref()), ("invalid_parameter", Some("max_tokens")), "0 is refused");
        let zero_default = openai_request_to_anthropic(&json!({"model": "m", "messages": [user("x")]}), 0);
        assert_eq!(zero_default.map(|v| v["max_tokens"].clone()), Ok(json!(1)), "Anthropic needs at least 1");
    }

    #[test]
    fn stop_maps_to_stop_sequences() {
        let s = |stop: Value| {
            ok(json!({"model": "m", "messages": [user("x")], "stop": stop})).get("stop_sequences").cloned()
        };
        assert_eq!(s(json!("END")), Some(json!(["END"])), "a string becomes a one-item list");
        assert_eq!(s(json!(["a", "", "b"])), Some(json!(["a", "b"])), "arrays are copied without empty strings");
        assert_eq!(s(json!(null)), None, "null means no stop sequences");
        assert_eq!(s(json!([])), None, "an empty list means none");
        let e = err(json!({"model": "m", "messages": [user("x")], "stop": [1]}));
        assert_eq!(e.param().as_deref(), Some("stop"), "non-string stops are refused");
    }

    #[test]
    fn sampling_stream_and_user_map() {
        let out = ok(json!({"model": "m", "messages": [user("x")], "temperature": 1.6, "top_p": 0.9,
            "stream": true, "user": "user-42"}));
        assert_eq!(out["temperature"], json!(1.0), "temperature above 1 is clamped to Anthropic's maximum");
        assert_eq!(out["top_p"], json!(0.9), "top_p is copied");
        assert_eq!(out["stream"], json!(true), "stream is copied");
        assert_eq!(out["metadata"], json!({"user_id": "user-42"}), "user becomes metadata.user_id");
        let out = ok(json!({"model": "m", "messages": [user("x")], "temperature": 0.3}));
        assert_eq!(out["temperature"], json!(0.3), "temperatures within 0..=1 are kept");
        let out = ok(json!({"model": "m", "messages": [user("x")], "temperature": -1}));
        assert_eq!(out["temperature"], json!(0.0), "negative temperatures are clamped to 0");
        let e = err(json!({"model": "m", "messages": [user("x")], "temperature": "hot"}));
        assert_eq!(e.param().as_deref(), Some("temperature"), "a non-numeric temperature is refused");
    }

    #[test]
    fn n_above_one_is_unsupported() {
        let e = err(json!({"model": "m", "messages": [user("x")], "n": 2}));
        assert_eq!(e.code(), "unsupported_parameter", "Anthropic has no n");
        assert_eq!(e.param().as_deref(), Some("n"), "param is n");
        ok(json!({"model": "m", "messages": [user("x")], "n": 1}));
        let e = err(json!({"model": "m", "messages": [user("x")], "functions": [{"name": "f"}]}));
        assert_eq!(e.code(), "unsupported_parameter", "deprecated functions are refused, not dropped");
    }

    #[test]
    fn openai_only_fields_are_dropped() {
        let out = ok(json!({"model": "m", "messages": [user("x")], "logprobs": true, "top_logprobs": 3,
            "presence_penalty": 0.5, "frequency_penalty": 0.5, "seed": 7, "logit_bias": {"1": 2},
            "response_format": {"type": "json_object"}, "stream_options": {"include_usage": true},
            "store": true, "metadata": {"a": "b"}, "reasoning_effort": "low", "service_tier": "auto"}));
        let mut keys: Vec<&String> = out.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        keys.sort();
        assert_eq!(keys, ["max_tokens", "messages", "model"], "OpenAI-only knobs do not reach Anthropic");
    }

    #[test]
    fn stream_include_usage_reads_stream_options() {
        assert!(stream_include_usage(&json!({"stream_options": {"include_usage": true}})), "set");
        assert!(!stream_include_usage(&json!({"stream": true})), "absent means no usage chunk");
        assert!(!stream_include_usage(&json!([1])), "odd bodies mean no");
    }

    #[test]
    fn invalid_messages_are_refused_with_code_and_param() {
        let cases = [
            json!({"model": "m"}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": "hi"}),
            json!({"model": "m", "messages": [1]}),
            json!({"model": "m", "messages": [{"content": "no role"}]}),
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            json!({"model": "m", "messages": [{"role": "user"}]}),
            json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}),
            json!({"model": "m", "messages": [user("x"), {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}),
            json!(null),
        ];
        for req in cases {
            let e = err(req.clone());
            assert_eq!(e.code(), "invalid_messages", "{req} has invalid messages");
            assert_eq!(e.param().as_deref(), Some("messages"), "{req} blames messages");
        }
        let e = err(json!({"messages": [user("x")]}));
        assert_eq!(e.param().as_deref(), Some("model"), "a missing model is blamed on model");
    }

    // ---- response -----------------------------------------------------------------

    #[test]
    fn text_response_maps_to_chat_completion() {
        let resp = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world!"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 6}});
        assert_eq!(
            anthropic_response_to_openai(&resp, 1_700_000_000),
            json!({
                "id": "msg_01",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world!", "refusal": null, "annotations": []},
                    "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
            }),
            "a text reply becomes a chat.completion with one choice and usage"
        );
    }

    #[test]
    fn cache_tokens_count_as_prompt_tokens() {
        let resp = json!({"id": "msg_1", "model": "c", "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 21, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 3000, "output_tokens": 6}});
        let usage = &anthropic_response_to_openai(&resp, 0)["usage"];
        assert_eq!(usage["prompt_tokens"], 4521, "prompt = input + cache creation + cache read");
        assert_eq!(usage["completion_tokens"], 6, "completion = output");
        assert_eq!(usage["total_tokens"], 4527, "total = prompt + completion");
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3000, "cached = cache reads");
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let resp = json!({"id": "m", "content": [], "stop_reason": stop});
            assert_eq!(
                anthropic_response_to_openai(&resp, 0)["choices"][0]["finish_reason"],
                finish,
                "{stop} maps to {finish}"
            );
        }
    }

    #[test]
    fn tool_use_response_maps_to_tool_calls_with_string_arguments() {
        let resp = json!({"id": "msg_2", "model": "c", "stop_reason": "tool_use", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        ], "usage": {"input_tokens": 5, "output_tokens": 3}});
        let out = anthropic_response_to_openai(&resp, 0);
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null, "content is null when the reply is only tool calls");
        assert_eq!(message["tool_calls"][0]["id"], "toolu_1", "the tool use id is kept");
        assert_eq!(message["tool_calls"][0]["type"], "function", "tool calls are functions");
        assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather", "name copied");
        let arguments = message["tool_calls"][0]["function"]["arguments"].as_str().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(arguments).unwrap(),
            json!({"city": "Paris", "unit": "c"}),
            "arguments are the input as a JSON string"
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls", "tool_use -> tool_calls");
    }

    #[test]
    fn anthropic_errors_map_to_openai_errors() {
        let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(
            anthropic_error_to_openai(&body),
            json!({"error": {"message": "Overloaded", "type": "api_error", "param": null, "code": "overloaded_error"}}),
            "overloaded becomes an api_error keeping Anthropic's type as code"
        );
        let body =
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}});
        let out = anthropic_error_to_openai(&body);
        assert_eq!(out["error"]["type"], "invalid_request_error", "invalid requests stay invalid_request_error");
        assert_eq!(out["error"]["message"], "max_tokens: too big", "message kept");
        let body = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        assert_eq!(anthropic_error_to_openai(&body)["error"]["type"], "rate_limit_error", "rate limits map");
        let out = anthropic_error_to_openai(&json!("<html>502</html>"));
        assert_eq!(out["error"]["code"], "upstream_error", "unrecognised bodies get a generic code");
        assert_eq!(out["error"]["message"], "<html>502</html>", "a text body is the message");
    }

    // ---- stream -------------------------------------------------------------------

    /// Feed events; one Vec of chunks per event.
    fn run(t: &mut StreamTranslator, events: &[(&str, Value)]) -> Vec<Vec<Value>> {
        events.iter().map(|(name, data)| t.on_event(name, data)).collect()
    }

    fn chunk(delta: Value, finish: Value) -> Value {
        json!({"id": "msg_01", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "claude-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null})
    }

    #[test]
    fn recorded_text_stream_translates_chunk_by_chunk() {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
                "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", world"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 15}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let mut t = StreamTranslator::new("claude-requested", 1_700_000_000, true);
        let out = run(&mut t, &events);
        assert_eq!(
            out[0],
            vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)],
            "message_start opens with the role"
        );
        assert!(out[1].is_empty(), "an empty text block start says nothing");
        assert!(out[2].is_empty(), "ping says nothing");
        assert_eq!(out[3], vec![chunk(json!({"content": "Hello"}), Value::Null)], "first text delta");
        assert_eq!(out[4], vec![chunk(json!({"content": ", world"}), Value::Null)], "second text delta");
        assert!(out[5].is_empty(), "a text block stop says nothing");
        assert_eq!(out[6], vec![chunk(json!({}), json!("stop"))], "message_delta carries the finish reason");
        assert!(!t.finished() || out.len() == 8, "finished only after message_stop");
        assert_eq!(
            out[7],
            vec![
                json!({"id": "msg_01", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "claude-x",
                "choices": [],
                "usage": {"prompt_tokens": 35, "completion_tokens": 15, "total_tokens": 50,
                    "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}})
            ],
            "message_stop adds the usage chunk: prompt 25+10, completion 15 from message_delta"
        );
        assert!(t.finished(), "message_stop finishes the stream");
        assert!(t.on_event("message_stop", &json!({})).is_empty(), "nothing after the end");
    }

    #[test]
    fn stream_without_include_usage_has_no_usage_key_nor_usage_chunk() {
        let mut t = StreamTranslator::new("claude-x", 1, false);
        let mut chunks = Vec::new();
        for (name, data) in [
            ("message_start", json!({"message": {"id": "msg_9", "usage": {"input_tokens": 3}}})),
            ("content_block_delta", json!({"index": 0, "delta": {"type": "text_delta", "text": "hi"}})),
            ("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
            ("message_delta", json!({"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 1}})),
            ("message_stop", json!({})),
        ] {
            chunks.extend(t.on_event(name, &data));
        }
        assert_eq!(chunks.len(), 3, "role, text and finish chunks; the error event and message_stop add none");
        assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage key without include_usage");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length", "max_tokens -> length");
        assert!(t.finished(), "finished after message_stop");
    }

    #[test]
    fn stream_uses_the_data_type_when_the_event_name_is_missing() {
        let mut t = StreamTranslator::new("claude-x", 1, false);
        let out = t.on_event("", &json!({"type": "message_start", "message": {"id": "msg_3"}}));
        assert_eq!(out.len(), 1, "the data type stands in for the event name");
        assert_eq!(out[0]["id"], "msg_3", "id from message_start");
    }

    // ---- full tool round trip -------------------------------------------------------

    #[test]
    fn tool_call_round_trip() {
        // 1. The client asks with tools; the model answers with a tool call.
        let req = json!({"model": "claude-x", "stream": false, "messages": [user("Weather in Paris?")],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "auto"});
        let anthropic_req = ok(req);
        assert_eq!(anthropic_req["tools"][0]["name"], "get_weather", "tool defined upstream");

        let resp = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 50, "output_tokens": 20}});
        let completion = anthropic_response_to_openai(&resp, 0);
        let assistant = completion["choices"][0]["message"].clone();
        assert_eq!(assistant["content"], "Let me check.", "text kept beside the tool call");
        assert_eq!(
            assistant["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}",
            "arguments as a JSON string"
        );

        // 2. The client sends the assistant message back with the tool's result.
        let follow_up = json!({"model": "claude-x", "messages": [
            user("Weather in Paris?"),
            assistant,
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C and sunny"},
        ], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]});
        let anthropic_follow_up = ok(follow_up);
        assert_eq!(
            anthropic_follow_up["messages"][1]["content"],
            json!([{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]),
            "the tool call goes back as the same tool_use block"
        );
        assert_eq!(
            anthropic_follow_up["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C and sunny"}]),
            "the tool message answers the tool_use by id"
        );

        // 3. The same reply streamed: tool calls arrive as OpenAI tool_call deltas.
        let events = [
            (
                "message_start",
                json!({"message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 50, "output_tokens": 1}}}),
            ),
            ("content_block_start", json!({"index": 0, "content_block": {"type": "text", "text": ""}})),
            ("content_block_delta", json!({"index": 0, "delta": {"type": "text_delta", "text": "Let me check."}})),
            ("content_block_stop", json!({"index": 0})),
            (
                "content_block_start",
                json!({"index": 1, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
            ),
            ("content_block_delta", json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}})),
            (
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ),
            (
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            ("content_block_stop", json!({"index": 1})),
            (
                "content_block_start",
                json!({"index": 2, "content_block": {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}}}),
            ),
            ("content_block_stop", json!({"index": 2})),
            ("message_delta", json!({"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}})),
            ("message_stop", json!({})),
        ];
        let mut t = StreamTranslator::new("claude-x", 0, false);
        let out = run(&mut t, &events);
        assert_eq!(
            out[4][0]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            "a tool_use block start opens tool call 0 with id, name and empty arguments"
        );
        assert!(out[5].is_empty(), "an empty partial_json sends nothing");
        assert_eq!(
            out[6][0]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
            "input_json_delta becomes an arguments fragment"
        );
        assert!(out[8].is_empty(), "a tool block that sent arguments ends silently");
        assert_eq!(
            out[9][0]["choices"][0]["delta"]["tool_calls"][0]["index"], 1,
            "the second tool call is index 1, not block 2"
        );
        assert_eq!(
            out[10][0]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            "a tool without input still gets parseable arguments"
        );
        assert_eq!(out[11][0]["choices"][0]["finish_reason"], "tool_calls", "tool_use -> tool_calls");

        let mut arguments: Vec<String> = vec![String::new(); 2];
        for c in out.iter().flatten() {
            for call in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = call["index"].as_u64().unwrap() as usize;
                arguments[i].push_str(call["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        assert_eq!(serde_json::from_str::<Value>(&arguments[0]).unwrap(), json!({"city": "Paris"}), "fragments add up");
        assert_eq!(serde_json::from_str::<Value>(&arguments[1]).unwrap(), json!({}), "empty input is {{}}");
        assert!(t.finished(), "stream done");
    }

    // ---- robustness ---------------------------------------------------------------

    /// xorshift64*: deterministic, dependency-free randomness for the fuzz test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] = &[
        "model",
        "messages",
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "url",
        "tool_calls",
        "id",
        "function",
        "name",
        "arguments",
        "tool_call_id",
        "tools",
        "parameters",
        "tool_choice",
        "stop",
        "temperature",
        "top_p",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "user",
        "file",
        "file_data",
        "refusal",
        "message",
        "usage",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "stop_reason",
        "delta",
        "partial_json",
        "index",
        "content_block",
        "error",
        "input",
        "parallel_tool_calls",
        "safety_identifier",
        "functions",
    ];
    const STRINGS: &[&str] = &[
        "",
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "function",
        "text",
        "image_url",
        "tool_use",
        "text_delta",
        "input_json_delta",
        "input_json",
        "auto",
        "none",
        "required",
        "data:",
        "data:image/png;base64,",
        "data:image/png;base64,AA",
        "data:,",
        "https://x",
        "http://",
        "{",
        "[1]",
        "{}",
        "null",
        "é",
        "\u{0}",
        "日本",
        "file",
        "refusal",
        "input_audio",
        "end_turn",
        "tool_use",
        "max_tokens",
        "message_start",
    ];
    const EVENTS: &[&str] = &[
        "",
        "message",
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "unknown",
    ];

    fn odd(rng: &mut Rng, depth: u32) -> Value {
        let kinds = if depth == 0 { 4 } else { 7 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => rng
                .pick(&[
                    json!(0),
                    json!(1),
                    json!(2),
                    json!(-1),
                    json!(1.5),
                    json!(-0.0),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!(1e300),
                ])
                .clone(),
            3 => json!(rng.pick(STRINGS)),
            4 | 5 => {
                let mut map = Map::new();
                for _ in 0..rng.below(6) {
                    map.insert(rng.pick(KEYS).to_string(), odd(rng, depth - 1));
                }
                Value::Object(map)
            }
            _ => Value::Array((0..rng.below(5)).map(|_| odd(rng, depth - 1)).collect()),
        }
    }

    /// Replace one random spot of `v` with an odd value.
    fn mutate(v: &mut Value, rng: &mut Rng) {
        let descend = rng.below(4) != 0;
        match v {
            Value::Object(map) if descend && !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
                if let Some(child) = map.get_mut(&key) {
                    mutate(child, rng);
                }
            }
            Value::Array(items) if descend && !items.is_empty() => {
                let i = rng.below(items.len());
                mutate(&mut items[i], rng);
            }
            _ => *v = odd(rng, 3),
        }
    }

    /// What must hold of any successful translation.
    fn check_request_invariants(input: &Value, out: &Value) {
        let turns = out["messages"].as_array().unwrap_or_else(|| panic!("messages array for {input}"));
        assert!(!turns.is_empty(), "at least one turn for {input}");
        for pair in turns.windows(2) {
            assert_ne!(pair[0]["role"], pair[1]["role"], "turns alternate for {input}");
        }
        for turn in turns {
            assert!(matches!(turn["role"].as_str(), Some("user" | "assistant")), "Anthropic roles only for {input}");
            assert!(turn["content"].as_array().is_some_and(|c| !c.is_empty()), "non-empty content for {input}");
        }
        assert!(out["max_tokens"].as_u64().is_some_and(|m| m >= 1), "max_tokens >= 1 for {input}");
        if let Some(t) = out.get("temperature") {
            assert!(t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)), "temperature within 0..=1 for {input}");
        }
    }

    /// Run every entry point on `input`; whether the request translated.
    fn exercise(input: &Value, rng: &mut Rng) -> bool {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let translated = openai_request_to_anthropic(input, rng.next() % 3);
            if let Ok(out) = &translated {
                check_request_invariants(input, out);
            }
            let resp = anthropic_response_to_openai(input, 0);
            assert_eq!(resp["choices"].as_array().map(Vec::len), Some(1), "one choice for {input}");
            let error = anthropic_error_to_openai(input);
            assert!(error["error"]["message"].is_string(), "error message is a string for {input}");
            let mut t = StreamTranslator::new("m", 0, rng.below(2) == 0);
            for _ in 0..4 {
                let event = *rng.pick(EVENTS);
                for c in t.on_event(event, input) {
                    assert_eq!(c["object"], "chat.completion.chunk", "chunks are chunks for {input}");
                }
            }
            translated.is_ok()
        }));
        match outcome {
            Ok(translated) => translated,
            Err(_) => panic!("translation panicked or broke an invariant on {input}"),
        }
    }

    #[test]
    fn odd_json_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let input = odd(&mut rng, 4);
            exercise(&input, &mut rng);
        }
        let base = json!({"model": "m", "max_tokens": 10, "temperature": 0.5, "stop": ["x"], "n": 1, "user": "u",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "s"}]},
                {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
                {"role": "assistant", "content": "a", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "r"},
            ],
            "message": {"id": "msg", "usage": {"input_tokens": 1}}, "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
            "delta": {"type": "input_json_delta", "partial_json": "{", "stop_reason": "tool_use"},
            "content": [{"type": "tool_use", "id": "t", "input": {}}], "error": {"type": "api_error", "message": "m"}});
        assert!(exercise(&base, &mut rng), "the unmutated base request translates");
        let mut translated = 0;
        for _ in 0..5_000 {
            let mut input = base.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut input, &mut rng);
            }
            translated += usize::from(exercise(&input, &mut rng));
        }
        // The invariants are only checked on successes: make sure there are many.
        assert!(translated > 500, "enough mutated requests still translate ({translated} of 5000)");
    }
}
