//! Cohere v2 wire types: the Chat response, the Chat stream's events and the Embed response.
//!
//! Content items and stream events are known-or-unknown enums, so a content type or event type
//! this version does not know (citations, debug events …) is skipped instead of failing.

use crate::types::EmbeddingVector;
use serde::Deserialize;
use serde_json::Value;

/// A Chat v2 response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChatResponse {
    /// Response id.
    #[serde(default)]
    pub id: String,
    /// `COMPLETE`, `STOP_SEQUENCE`, `MAX_TOKENS`, `TOOL_CALL`, `ERROR`, `TIMEOUT`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The assistant message.
    pub message: AssistantMessage,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<CohereUsage>,
}

/// The assistant message of a response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AssistantMessage {
    /// Content items.
    #[serde(default)]
    pub content: Vec<ContentItem>,
    /// The model's plan before calling tools.
    #[serde(default)]
    pub tool_plan: Option<String>,
    /// Tool calls, in OpenAI's shape (arguments as a JSON string).
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
}

/// One content item: a type with a typed shape, or any other kept as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ContentItem {
    /// A content type this version reads.
    Known(KnownContent),
    /// Any other content type, skipped.
    Unknown(#[allow(dead_code)] Value),
}

/// Content types with a typed shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum KnownContent {
    /// Text.
    Text {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// A reasoning model's thinking.
    Thinking {
        /// The thinking.
        #[serde(default)]
        thinking: String,
    },
}

/// A tool call.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ToolCall {
    /// Call id.
    #[serde(default)]
    pub id: String,
    /// Name and arguments.
    pub function: Function,
}

/// Name and arguments of a call.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Function {
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Arguments as a JSON string.
    #[serde(default)]
    pub arguments: String,
}

/// Usage: billed units and the tokens the model processed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CohereUsage {
    /// What the call is billed for.
    #[serde(default)]
    pub billed_units: Option<Tokens>,
    /// What the model processed (prompt template included).
    #[serde(default)]
    pub tokens: Option<Tokens>,
}

/// Input and output counts.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Tokens {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: Option<f64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<f64>,
}

/// A Chat v2 stream event: a type this version reads, or any other kept as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StreamEvent {
    /// An event type with a typed shape.
    Known(KnownEvent),
    /// Any other event type (citations, debug …), skipped.
    Unknown(#[allow(dead_code)] Value),
}

/// Stream event types with a typed shape, by their `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum KnownEvent {
    /// The message starts; carries its id.
    MessageStart {
        /// Response id.
        #[serde(default)]
        id: Option<String>,
    },
    /// A content item starts (its text, usually empty).
    ContentStart {
        /// The item.
        #[serde(default)]
        delta: Option<Delta>,
    },
    /// A piece of a content item.
    ContentDelta {
        /// The piece.
        #[serde(default)]
        delta: Option<Delta>,
    },
    /// A piece of the tool plan.
    ToolPlanDelta {
        /// The piece.
        #[serde(default)]
        delta: Option<Delta>,
    },
    /// A tool call starts: id, name and the start of its arguments.
    ToolCallStart {
        /// Position of the call.
        #[serde(default)]
        index: Option<u32>,
        /// The call.
        #[serde(default)]
        delta: Option<Delta>,
    },
    /// A piece of a tool call's arguments.
    ToolCallDelta {
        /// Position of the call.
        #[serde(default)]
        index: Option<u32>,
        /// The piece.
        #[serde(default)]
        delta: Option<Delta>,
    },
    /// The message ends: finish reason and usage.
    MessageEnd {
        /// `{finish_reason, usage, error}`.
        #[serde(default)]
        delta: Option<EndDelta>,
    },
}

/// `delta` of most events: `{message: {…}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Delta {
    /// The message piece.
    #[serde(default)]
    pub message: Option<DeltaMessage>,
}

/// A piece of the message.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct DeltaMessage {
    /// A piece of a content item.
    #[serde(default)]
    pub content: Option<DeltaContent>,
    /// A piece of the tool plan.
    #[serde(default)]
    pub tool_plan: Option<String>,
    /// A piece of a tool call (one call, not a list).
    #[serde(default)]
    pub tool_calls: Option<DeltaToolCall>,
}

/// A piece of a content item.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct DeltaContent {
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// Thinking.
    #[serde(default)]
    pub thinking: Option<String>,
}

/// A piece of a tool call.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct DeltaToolCall {
    /// Call id, on the start event.
    #[serde(default)]
    pub id: Option<String>,
    /// Name (start) and argument pieces.
    #[serde(default)]
    pub function: Option<DeltaFunction>,
}

/// Name and argument pieces.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct DeltaFunction {
    /// Function name, on the start event.
    #[serde(default)]
    pub name: Option<String>,
    /// A piece of the arguments.
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `delta` of `message-end`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct EndDelta {
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<CohereUsage>,
    /// What went wrong, when generation failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// An Embed v2 response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EmbedResponse {
    /// Response id.
    #[serde(default)]
    #[allow(dead_code)]
    pub id: String,
    /// Vectors by type.
    pub embeddings: EmbeddingsByType,
    /// Billing metadata.
    #[serde(default)]
    pub meta: Option<EmbedMeta>,
}

/// Vectors by type (only `float` is asked for).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EmbeddingsByType {
    /// Float vectors, one per input.
    #[serde(default)]
    pub float: Vec<EmbeddingVector>,
}

/// `meta` of an Embed response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EmbedMeta {
    /// Billed input tokens.
    #[serde(default)]
    pub billed_units: Option<Tokens>,
}

/// Cohere's error body: `{"message": "..."}` (an `id` too, at times).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    /// The message.
    pub message: String,
}
