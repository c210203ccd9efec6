//! Entry points for the fuzz targets (`fuzz/`): the private SSE stream parsers, fed from bytes.
//!
//! Not an API: hidden from the docs, kept to the narrowest surface the fuzzers need. Each
//! function runs the same code the providers and the gateway run on a live response body,
//! with the body arriving in the given chunks, and returns everything the stream yielded.

use std::convert::Infallible;

use futures::StreamExt;

use crate::anthropic::AnthropicDecoder;
use crate::gateway::{SseFrame, WireFormat};
use crate::openai::OpenAiDecoder;
use crate::transport::drive;
use crate::{LlmError, StreamEvent};

fn source(chunks: Vec<Vec<u8>>) -> impl futures::Stream<Item = Result<Vec<u8>, Infallible>> + Send + 'static {
    futures::stream::iter(chunks.into_iter().map(Ok))
}

/// What the Anthropic provider's stream parser yields for a body arriving in `chunks`.
pub fn anthropic_stream(chunks: Vec<Vec<u8>>, requested_model: &str) -> Vec<StreamEvent> {
    futures::executor::block_on(drive(source(chunks), AnthropicDecoder::new(requested_model)).collect())
}

/// What the OpenAI provider's stream parser yields for a body arriving in `chunks`.
pub fn openai_stream(chunks: Vec<Vec<u8>>, requested_model: &str) -> Vec<StreamEvent> {
    futures::executor::block_on(drive(source(chunks), OpenAiDecoder::new(requested_model)).collect())
}

/// The frames the gateway reads from an upstream body in `format` arriving in `chunks`.
pub fn gateway_frames(chunks: Vec<Vec<u8>>, format: WireFormat) -> Vec<Result<SseFrame, LlmError>> {
    futures::executor::block_on(crate::gateway::http::sse_frames(source(chunks), format).collect())
}
