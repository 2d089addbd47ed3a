//! Ollama's native wire types: `/api/chat`, `/api/generate` and `/api/embed` responses, and
//! the lines of their NDJSON streams (each line has the shape of a response).

use crate::types::EmbeddingVector;
use serde::Deserialize;
use serde_json::Value;

/// A `/api/chat` response, or one line of its stream.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ChatResponse {
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The message, or this line's piece of it.
    #[serde(default)]
    pub message: Option<Message>,
    /// Whether this is the last line.
    #[serde(default)]
    pub done: bool,
    /// Why generation stopped (`stop`, `length`, `load` …), on the last line.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Input tokens, on the last line.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Output tokens, on the last line.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// An error, when the server failed mid-stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// An assistant message (or a piece of one).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Message {
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Reasoning of a thinking model.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Tool calls, each complete (Ollama does not split a call across lines).
    #[serde(default)]
    pub tool_calls: Vec<ToolCallEntry>,
}

/// A tool call: the shape this version reads, or any other kept as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ToolCallEntry {
    /// A function call.
    Known(ToolCall),
    /// Any other call shape, skipped.
    Unknown(#[allow(dead_code)] Value),
}

/// A function call.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ToolCall {
    /// Call id, which newer servers send.
    #[serde(default)]
    pub id: Option<String>,
    /// The call.
    pub function: Function,
}

/// Name and arguments of a call.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Function {
    /// Function name.
    pub name: String,
    /// Arguments, as a JSON object (not a string, unlike OpenAI).
    #[serde(default)]
    pub arguments: Value,
}

impl Function {
    /// The arguments as OpenAI's JSON string.
    pub(crate) fn arguments_string(&self) -> String {
        match &self.arguments {
            Value::String(s) => s.clone(),
            Value::Null => "{}".to_owned(),
            other => other.to_string(),
        }
    }
}

/// A `/api/generate` response, or one line of its stream.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct GenerateResponse {
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Generated text, or this line's piece of it.
    #[serde(default)]
    pub response: String,
    /// Whether this is the last line.
    #[serde(default)]
    pub done: bool,
    /// Why generation stopped.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Input tokens.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// An error, when the server failed mid-stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// A `/api/embed` response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EmbedResponse {
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<EmbeddingVector>,
    /// Input tokens.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
}

/// Ollama's error body: `{"error": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    /// The message.
    pub error: String,
}
