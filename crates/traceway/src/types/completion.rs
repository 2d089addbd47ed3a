//! `/v1/completions`: the legacy text completion request, response and stream chunk.

use super::open::open_struct;
use super::{Extra, StopSequences, StreamOptions, Usage};
use serde::Serialize;
use serde_json::Value;

/// The body of `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    /// Model group (proxy) or `provider/model` (library).
    pub model: String,
    /// A string, a list of strings, or token arrays.
    pub prompt: Value,
    /// Stream the answer as server-sent events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options of a streamed answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// How many choices to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, passed on untouched (gateway fields excepted).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(CompletionRequest {
    model: "model"[required],
    prompt: "prompt"[required],
    stream: "stream"[default],
    stream_options: "stream_options"[default],
    max_tokens: "max_tokens"[default],
    temperature: "temperature"[default],
    top_p: "top_p"[default],
    n: "n"[default],
    stop: "stop"[default],
    seed: "seed"[default],
    user: "user"[default]
});

impl CompletionRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The prompt as text: strings joined by newlines, token arrays left out.
    pub fn prompt_text(&self) -> String {
        match &self.prompt {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// One choice of a text completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionChoice {
    /// The generated text (a fragment, in a stream).
    pub text: String,
    /// Position among the choices.
    pub index: u32,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Log probabilities, when asked for.
    pub logprobs: Option<Value>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(CompletionChoice {
    text: "text"[default],
    index: "index"[default],
    finish_reason: "finish_reason"[default],
    logprobs: "logprobs"[default]
});

/// A text completion response, and also each chunk of a streamed one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionResponse {
    /// Response id.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Model that answered.
    pub model: String,
    /// The choices.
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(CompletionResponse {
    id: "id"[required],
    object: "object"[default = text_completion_object()],
    created: "created"[default],
    model: "model"[default],
    choices: "choices"[default],
    usage: "usage"[default],
    system_fingerprint: "system_fingerprint"[default]
});

fn text_completion_object() -> String {
    "text_completion".to_owned()
}
