//! OpenAI wire types: the one call shape Traceway speaks on both sides.
//!
//! Every struct keeps the fields it does not name in an `extra` map, so a field a newer client
//! sends reaches an OpenAI-compatible upstream untouched, and a field a newer upstream returns
//! reaches the client.

pub mod chat;
pub mod completion;
pub mod embedding;
pub mod error_body;
pub mod model;
pub(crate) mod open;

use open::open_struct;

pub use chat::*;
pub use completion::*;
pub use embedding::*;
pub use error_body::*;
pub use model::*;

/// Parses a JSON body. The body's UTF-8 is checked once, up front, and the text parsed as a
/// `str`: `serde_json::from_slice` checks each string it meets separately, which cost more
/// than the check of the whole body (BENCHMARKS.md, "Profile"). A body that is not UTF-8 is
/// parsed as bytes, for the same error `from_slice` gives.
pub fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// Fields a JSON object carries that its struct does not name.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// Request fields that steer the gateway and are never sent upstream (LiteLLM's names).
pub(crate) const GATEWAY_ONLY_FIELDS: &[&str] = &[
    "mock_response",
    "mock_delay",
    "metadata",
    "litellm_metadata",
    "num_retries",
    "fallbacks",
    "mock_testing_fallbacks",
    "timeout",
    "stream_timeout",
    "api_key",
    "api_base",
];

/// `stop` as OpenAI accepts it: one string or several.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopSequences {
    /// The stop strings as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s.clone()],
            StopSequences::Many(v) => v.clone(),
        }
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamOptions {
    /// Ask for a final chunk that carries the whole stream's usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(StreamOptions {
    include_usage: "include_usage"[default]
});

/// Token counts of one call.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Input plus output tokens.
    pub total_tokens: u64,
    /// Breakdown of the input tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(Usage {
    prompt_tokens: "prompt_tokens"[default],
    completion_tokens: "completion_tokens"[default],
    total_tokens: "total_tokens"[default],
    prompt_tokens_details: "prompt_tokens_details"[default],
    completion_tokens_details: "completion_tokens_details"[default]
});

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PromptTokensDetails {
    /// Input tokens read from the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache (Anthropic-style providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<u64>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(PromptTokensDetails {
    cached_tokens: "cached_tokens"[default],
    cache_creation_tokens: "cache_creation_tokens"[default]
});

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompletionTokensDetails {
    /// Output tokens spent on reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(CompletionTokensDetails {
    reasoning_tokens: "reasoning_tokens"[default]
});

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
