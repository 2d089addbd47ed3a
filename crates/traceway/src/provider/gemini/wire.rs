//! Gemini API wire types (`generateContent`, `streamGenerateContent`, `embedContent`,
//! `batchEmbedContents`), in the API's camelCase.
//!
//! A `Part` is a union keyed by which field is present; every field a part may carry that this
//! version does not name (`executableCode`, `videoMetadata` …) is kept in `extra`, so new part
//! kinds pass through instead of failing.

use crate::types::{EmbeddingVector, Extra};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `models/{model}:generateContent` (and `:streamGenerateContent`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// The conversation (`user` and `model` turns).
    pub contents: Vec<Content>,
    /// System instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// `[{functionDeclarations: [...]}]` and other tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `{functionCallingConfig: {mode, allowedFunctionNames}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    /// Sampling and output settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
    /// Gemini fields the caller sent that OpenAI does not name (`safetySettings`, `cachedContent` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `generationConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// How many candidates to generate (OpenAI's `n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    /// `application/json` for JSON output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    /// The schema JSON output must match (OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Return log probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_logprobs: Option<bool>,
    /// How many top log probabilities per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// `{thinkingBudget, includeThoughts}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<Value>,
    /// Other generation settings (`topK` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A turn: a role and its parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// `user` or `model` (absent on system instructions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a turn; which field is set says what it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text (or reasoning, when `thought` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Whether the text is the model's reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque signature of the model's reasoning, to send back with the part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    /// Inline bytes: `{mimeType, data}` (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Value>,
    /// A file by URI: `{mimeType, fileUri}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<Value>,
    /// A function call by the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// A function's result, sent back to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<Value>,
    /// Part fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Part {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }
}

/// `functionCall`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Call id (newer models send one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Arguments as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

/// A `generateContent` response, and each event of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// The candidates (absent when the prompt was blocked).
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Why the prompt was blocked, if it was.
    #[serde(default)]
    pub prompt_feedback: Option<Value>,
    /// Token counts.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// The model version that answered.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Response id.
    #[serde(default)]
    pub response_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One candidate answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The answer (absent when blocked).
    #[serde(default)]
    pub content: Option<Content>,
    /// Why generation stopped (`STOP`, `MAX_TOKENS`, `SAFETY` …).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Position among the candidates.
    #[serde(default)]
    pub index: Option<u32>,
    /// Other fields (`safetyRatings`, `citationMetadata` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `usageMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Input tokens (cached ones included).
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    /// Output tokens of the candidates (reasoning excluded).
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    /// All tokens.
    #[serde(default)]
    pub total_token_count: Option<u64>,
    /// Input tokens served from the context cache.
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    /// Reasoning tokens.
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    /// Tokens of tool-use prompts.
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
    /// Other fields (per-modality details …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The body of `models/{model}:embedContent` (and each entry of a batch).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentRequest {
    /// `models/{model}`; required inside a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The text to embed.
    pub content: Content,
    /// `RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY` …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Output dimensions (OpenAI's `dimensions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
}

/// The body of `models/{model}:batchEmbedContents`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEmbedContentsRequest {
    /// One request per input.
    pub requests: Vec<EmbedContentRequest>,
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentEmbedding {
    /// The vector.
    #[serde(default)]
    pub values: EmbeddingVector,
}

/// The answer of `embedContent` (`embedding`) or `batchEmbedContents` (`embeddings`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbedResponse {
    /// The one embedding of `embedContent`.
    #[serde(default)]
    pub embedding: Option<ContentEmbedding>,
    /// The embeddings of `batchEmbedContents`.
    #[serde(default)]
    pub embeddings: Option<Vec<ContentEmbedding>>,
}

/// The inside of a Google error body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorDetail {
    /// HTTP status.
    #[serde(default)]
    pub code: Option<u16>,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// Canonical status (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` …).
    #[serde(default)]
    pub status: Option<String>,
    /// Typed details (`ErrorInfo` with a `reason`, `RetryInfo` with a `retryDelay` …).
    #[serde(default)]
    pub details: Vec<Value>,
}

/// A Google error body: `{"error":{"code","message","status","details"}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}
