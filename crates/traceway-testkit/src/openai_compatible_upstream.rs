//! An in-process upstream for the OpenAI-compatible presets (Mistral, Groq, DeepSeek, xAI,
//! OpenRouter, Together AI, Fireworks AI, Perplexity, vLLM): OpenAI's wire format at any base
//! path (`…/chat/completions`, `…/completions`, `…/embeddings`), with each family's own error
//! bodies and stream variants in `fixtures/openai_compatible/`. Records every request and
//! answers on cue; un-cued requests get OpenAI's fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::azure_upstream::openai_stream;
use crate::mock_upstream::{MockUpstream, Recorded, Reply};
use crate::openai_upstream;
use serde_json::Value;

pub use crate::mock_upstream::StreamEnd;

/// Mistral's 401 (`{"message","request_id"}`).
pub const MISTRAL_ERROR_401: &str =
    include_str!("../fixtures/openai_compatible/mistral_error_401.json");
/// Mistral's 422 validation error (the message is an object).
pub const MISTRAL_ERROR_422: &str =
    include_str!("../fixtures/openai_compatible/mistral_error_422.json");
/// A Mistral stream: no `stream_options`, usage on the last choice chunk.
pub const MISTRAL_STREAM: &str = include_str!("../fixtures/openai_compatible/mistral_stream.sse");
/// xAI's 400 for a bad key (`{"code","error"}`).
pub const XAI_ERROR_400: &str = include_str!("../fixtures/openai_compatible/xai_error_400.json");
/// vLLM's 404 (`{"object":"error","message",…,"code":404}`).
pub const VLLM_ERROR_404: &str = include_str!("../fixtures/openai_compatible/vllm_error_404.json");
/// Groq's 429.
pub const GROQ_ERROR_429: &str = include_str!("../fixtures/openai_compatible/groq_error_429.json");
/// A Groq stream: usage in `x_groq.usage` on the last chunk.
pub const GROQ_STREAM: &str = include_str!("../fixtures/openai_compatible/groq_stream.sse");
/// OpenRouter's 402 (numeric code).
pub const OPENROUTER_ERROR_402: &str =
    include_str!("../fixtures/openai_compatible/openrouter_error_402.json");
/// A DeepSeek reasoner answer with `reasoning_content`.
pub const DEEPSEEK_CHAT_COMPLETION: &str =
    include_str!("../fixtures/openai_compatible/deepseek_chat_completion.json");

/// The running upstream (a [`MockUpstream`] answering OpenAI's format); stops when dropped.
pub struct OpenAiCompatibleUpstream(MockUpstream);

crate::deref_mock_upstream!(OpenAiCompatibleUpstream);

impl OpenAiCompatibleUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> OpenAiCompatibleUpstream {
        OpenAiCompatibleUpstream(MockUpstream::start(fixture).await)
    }

    /// An `api_base` on this server with `path` (each preset's own, e.g. `/openai/v1`).
    pub fn api_base(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }
}

fn fixture(r: &Recorded) -> Reply {
    let stream = r.body["stream"] == Value::Bool(true);
    let tools = r.body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let p = r.path.as_str();
    if p.ends_with("/chat/completions") {
        if stream {
            openai_stream(openai_upstream::CHAT_COMPLETION_STREAM, &r.body)
        } else if tools {
            Reply::ok(openai_upstream::CHAT_COMPLETION_TOOL_CALLS)
        } else {
            Reply::ok(openai_upstream::CHAT_COMPLETION)
        }
    } else if p.ends_with("/completions") {
        if stream {
            openai_stream(openai_upstream::COMPLETION_STREAM, &r.body)
        } else {
            Reply::ok(openai_upstream::COMPLETION)
        }
    } else if p.ends_with("/embeddings") {
        Reply::ok(openai_upstream::EMBEDDING)
    } else {
        Reply::error(404, r#"{"detail":"Not Found"}"#)
    }
}
