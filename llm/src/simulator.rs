//! Deterministic simulated provider, used when no API key is configured; counts tokens with tiktoken `cl100k_base`.

use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use tiktoken_rs::CoreBPE;

use crate::error::LlmError;
use crate::types::{ChatRequest, Completion, EventStream, Provider, Role, StreamEvent, TokenUsage};

/// Default pause between two streamed tokens.
pub const DEFAULT_TOKEN_DELAY: Duration = Duration::from_millis(15);
/// Tokens added per message (the system prompt counts as one message) for the role marker and
/// separators around its content, as in ChatML's `<|im_start|>{role}\n{content}<|im_end|>\n`.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;
/// Longest quote of the user's text that goes into a simulated reply, in characters.
const MAX_QUOTE_CHARS: usize = 60;
/// Most words of the user's text that go into a simulated reply.
const MAX_QUOTE_WORDS: usize = 8;
/// Stop reason of a reply that ran to its end.
const STOP_END_TURN: &str = "end_turn";
/// Stop reason of a reply cut at `max_tokens`.
const STOP_MAX_TOKENS: &str = "max_tokens";

pub(crate) const PROVIDER_NAME: &str = "simulator";

/// Canned paragraphs; one is picked per request by a stable hash of the last user message.
const CANNED_PARAGRAPHS: [&str; 5] = [
    "This answer was produced locally so that the rest of the system can be exercised without \
     calling a real model. Token counts are exact for the text you see, so metering and billing \
     behave just as they would for a real reply.",
    "No model was consulted for this reply. Configure an API key for the provider of this model \
     to get real answers; until then every reply is generated deterministically from your message.",
    "Here is a simulated response. It streams token by token at a steady pace, reports usage at \
     the end, and is marked as simulated so it is never confused with a real completion.",
    "Simulated replies are handy for demos and tests: the same question always gets the same \
     answer, the usage numbers come from a real tokenizer, and nothing leaves this machine.",
    "Pretend this is a thoughtful, well-structured answer. In a real deployment a language model \
     would write it; here the simulator stands in so that threads, budgets and invoices still work.",
];

/// Settings for [`SimulatorProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatorConfig {
    /// Pause between two streamed deltas (default [`DEFAULT_TOKEN_DELAY`]).
    pub token_delay: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            token_delay: DEFAULT_TOKEN_DELAY,
        }
    }
}

/// A [`Provider`] that answers deterministically without any network access.
#[derive(Debug, Clone, Default)]
pub struct SimulatorProvider {
    config: SimulatorConfig,
}

impl SimulatorProvider {
    /// A simulator with the given settings.
    pub fn new(config: SimulatorConfig) -> Self {
        Self { config }
    }

    /// The simulator's configuration.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Build the whole reply (text pieces per token, usage, metadata) for `req`.
    pub(crate) async fn simulate(req: &ChatRequest) -> Result<Simulated, LlmError> {
        let bpe = tokenizer().await?;
        let input_tokens = input_token_count(bpe, req);
        let (last_user, reply) = reply_text(req);
        let mut tokens = bpe.encode_ordinary(&reply);
        let limit = usize::try_from(req.max_tokens).unwrap_or(usize::MAX);
        let stop_reason = if tokens.len() > limit {
            tokens.truncate(limit);
            STOP_MAX_TOKENS
        } else {
            STOP_END_TURN
        };
        let pieces = token_pieces(bpe, &tokens)?;
        let completion = Completion {
            text: pieces.concat(),
            usage: TokenUsage {
                input_tokens,
                output_tokens: tokens.len() as u64,
                ..TokenUsage::default()
            },
            model: req.model.clone(),
            stop_reason: Some(stop_reason.to_owned()),
            provider_message_id: Some(format!("sim_{:016x}", fnv1a64(last_user.as_bytes()))),
            simulated: true,
        };
        Ok(Simulated { pieces, completion })
    }
}

/// A whole simulated reply: the text of each generated token, and the reply with its usage.
pub(crate) struct Simulated {
    /// Text per generated token; the pieces concatenate to `completion.text`.
    pub(crate) pieces: Vec<String>,
    /// The reply: text, usage, stop reason and id.
    pub(crate) completion: Completion,
}

#[async_trait::async_trait]
impl Provider for SimulatorProvider {
    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn is_simulated(&self) -> bool {
        true
    }

    async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        Ok(Self::simulate(req).await?.completion)
    }

    async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        let Simulated { pieces, completion } = Self::simulate(req).await?;
        let delay = self.config.token_delay;
        let deltas = futures::stream::iter(
            pieces.into_iter().filter(|p| !p.is_empty()).enumerate(),
        )
        .then(move |(i, piece)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            StreamEvent::Delta(piece)
        });
        let tail = futures::stream::iter([
            StreamEvent::Usage(completion.usage),
            StreamEvent::Finished(completion),
        ]);
        Ok(deltas.chain(tail).boxed())
    }
}

static CL100K: OnceLock<Result<CoreBPE, String>> = OnceLock::new();

/// The shared `cl100k_base` tokenizer, loaded once (blocking; loading takes a while).
fn tokenizer_blocking() -> Result<&'static CoreBPE, LlmError> {
    CL100K
        .get_or_init(|| tiktoken_rs::cl100k_base().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| LlmError::Config(format!("cannot load cl100k_base tokenizer: {e}")))
}

/// The shared tokenizer; the first load runs off the async executor.
async fn tokenizer() -> Result<&'static CoreBPE, LlmError> {
    if CL100K.get().is_some() {
        return tokenizer_blocking();
    }
    tokio::task::spawn_blocking(tokenizer_blocking)
        .await
        .map_err(|e| LlmError::Config(format!("tokenizer loading task failed: {e}")))?
}

/// Number of `cl100k_base` tokens in `text` (special-token text is counted as plain text).
///
/// Blocks on the first call while the tokenizer loads.
pub fn count_tokens(text: &str) -> Result<u64, LlmError> {
    Ok(tokenizer_blocking()?.encode_ordinary(text).len() as u64)
}

/// Input tokens the simulator bills for `req`: content tokens of the system prompt and every
/// message, plus [`MESSAGE_OVERHEAD_TOKENS`] for each of them.
pub fn count_input_tokens(req: &ChatRequest) -> Result<u64, LlmError> {
    Ok(input_token_count(tokenizer_blocking()?, req))
}

fn input_token_count(bpe: &CoreBPE, req: &ChatRequest) -> u64 {
    req.system
        .iter()
        .map(String::as_str)
        .chain(req.messages.iter().map(|m| m.content.as_str()))
        .map(|text| bpe.encode_ordinary(text).len() as u64 + MESSAGE_OVERHEAD_TOKENS)
        .sum()
}

/// The last user message and the full (untruncated) reply text for it.
fn reply_text(req: &ChatRequest) -> (&str, String) {
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str());
    let hash = fnv1a64(last_user.as_bytes());
    // Modulo by a tiny constant: the result always fits in usize.
    let paragraph = CANNED_PARAGRAPHS[(hash % CANNED_PARAGRAPHS.len() as u64) as usize];
    let reply = format!(
        "[Simulated reply from {model}] You wrote: \"{quote}\". {paragraph}",
        model = req.model,
        quote = short_quote(last_user),
    );
    (last_user, reply)
}

/// The first few words of `text`, whitespace collapsed, at most [`MAX_QUOTE_CHARS`] characters.
fn short_quote(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut quote = words
        .iter()
        .take(MAX_QUOTE_WORDS)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut truncated = words.len() > MAX_QUOTE_WORDS;
    if let Some((idx, _)) = quote.char_indices().nth(MAX_QUOTE_CHARS) {
        quote.truncate(idx);
        truncated = true;
    }
    if truncated {
        quote.push_str("...");
    }
    quote
}

/// Decode each token to the text it completes; pieces concatenate to the decoded text exactly.
///
/// A token can end in the middle of a multi-byte character; its bytes are held back until the
/// character is complete, so such a token yields an empty piece and the next one carries it.
fn token_pieces(bpe: &CoreBPE, tokens: &[u32]) -> Result<Vec<String>, LlmError> {
    let mut pieces = Vec::with_capacity(tokens.len());
    let mut pending: Vec<u8> = Vec::new();
    for &token in tokens {
        let bytes = bpe
            .decode_bytes(&[token])
            .map_err(|e| LlmError::Decode(format!("cannot decode token {token}: {e:?}")))?;
        pending.extend_from_slice(&bytes);
        let valid = match std::str::from_utf8(&pending) {
            Ok(_) => pending.len(),
            Err(e) => e.valid_up_to(),
        };
        let rest = pending.split_off(valid);
        pieces.push(String::from_utf8_lossy(&pending).into_owned());
        pending = rest;
    }
    if !pending.is_empty() {
        // Only reachable when max_tokens cut a character in half.
        if let Some(last) = pieces.last_mut() {
            last.push_str(&String::from_utf8_lossy(&pending));
        }
    }
    Ok(pieces)
}

/// 64-bit FNV-1a: stable across runs and platforms, unlike std's `RandomState`.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(
            fnv1a64(b""),
            0xcbf2_9ce4_8422_2325,
            "FNV-1a of empty input is the offset basis"
        );
        assert_eq!(
            fnv1a64(b"a"),
            0xaf63_dc4c_8601_ec8c,
            "FNV-1a reference value for \"a\""
        );
    }

    #[test]
    fn quote_is_short_and_char_safe() {
        let q = short_quote("  one two\nthree  ");
        assert_eq!(q, "one two three", "whitespace is collapsed");
        let long = "é".repeat(200);
        let q = short_quote(&long);
        assert!(
            q.chars().count() <= MAX_QUOTE_CHARS + 3,
            "quote is bounded: {q}"
        );
        assert!(q.ends_with("..."), "a cut quote says so");
    }

    #[test]
    fn pieces_rejoin_multibyte_text() {
        let bpe = tokenizer_blocking().unwrap();
        let text = "naïve 🦀 crab — 東京";
        let tokens = bpe.encode_ordinary(text);
        let pieces = token_pieces(bpe, &tokens).unwrap();
        assert_eq!(pieces.len(), tokens.len(), "one piece per token");
        assert_eq!(
            pieces.concat(),
            text,
            "pieces concatenate to the original text"
        );
    }
}
