//! Anthropic Messages API wire types (`POST /v1/messages`), request, response and stream events.
//!
//! Content blocks, deltas and stream events are "known or unknown": a block type or event this
//! version does not name is kept as JSON instead of failing the call.

use crate::types::Extra;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `POST /v1/messages`.
#[derive(Debug, Clone, Serialize)]
pub struct MessagesRequest {
    /// Model name.
    pub model: String,
    /// The conversation, alternating user and assistant turns.
    pub messages: Vec<Message>,
    /// System prompt: text, or text blocks (which may carry `cache_control`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Output token limit; required by Anthropic.
    pub max_tokens: u64,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Stream the answer as server-sent events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Tools the model may call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// How the model picks tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `{user_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Extended thinking: `{type: enabled, budget_tokens}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// Anthropic fields the caller sent that OpenAI does not name (`top_k`, `container` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The system prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(String),
    /// Text blocks.
    Blocks(Vec<Block>),
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// Its content blocks.
    pub content: Vec<Block>,
}

/// A content block: a type Traceway knows, or any other kept as it came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Block {
    /// A block type with a typed shape.
    Known(KnownBlock),
    /// A block type this version does not know (`server_tool_use`, `web_search_tool_result` …).
    Unknown(Value),
}

/// Content block types with a typed shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Other fields (`cache_control`, `citations` …).
        #[serde(flatten)]
        extra: Extra,
    },
    /// An image, by base64 data or URL.
    Image {
        /// `{type: base64, media_type, data}` or `{type: url, url}`.
        source: Value,
        /// Other fields (`cache_control` …).
        #[serde(flatten)]
        extra: Extra,
    },
    /// A document (PDF), by base64 data or URL.
    Document {
        /// `{type: base64, media_type, data}` or `{type: url, url}`.
        source: Value,
        /// Other fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// A tool call by the model.
    ToolUse {
        /// Call id (`toolu_…`).
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as a JSON object.
        #[serde(default)]
        input: Value,
        /// Other fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// The result of a tool call, sent in a user turn.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// Text, or content blocks.
        content: Value,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        /// Other fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// The model's visible reasoning.
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
        /// Signature that must be sent back with the block.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Other fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// Reasoning the model keeps encrypted.
    RedactedThinking {
        /// Opaque data to send back.
        data: String,
        /// Other fields.
        #[serde(flatten)]
        extra: Extra,
    },
}

impl Block {
    /// A plain text block.
    pub fn text(text: impl Into<String>) -> Block {
        Block::Known(KnownBlock::Text {
            text: text.into(),
            extra: Extra::new(),
        })
    }
}

/// Token counts as Anthropic reports them (input excludes cache reads and writes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens not read from or written to the cache.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Other fields (`server_tool_use`, `service_tier` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A non-streamed response (also the `message` of `message_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// Message id (`msg_…`).
    pub id: String,
    /// Model that answered.
    #[serde(default)]
    pub model: String,
    /// The answer's content blocks.
    #[serde(default)]
    pub content: Vec<Block>,
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence hit, if one was.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
    /// Other fields (`type`, `role`, `container` …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The inside of an Anthropic error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Error class (`invalid_request_error`, `overloaded_error` …).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
}

/// An Anthropic error body: `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// Anthropic's request id, for support.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One stream event: a type Traceway knows, or any other (skipped).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StreamEvent {
    /// An event type with a typed shape.
    Known(KnownEvent),
    /// An event type this version does not know.
    Unknown(Value),
}

/// Stream event types with a typed shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownEvent {
    /// The message begins: id, model, input usage.
    MessageStart {
        /// The message so far (no content yet).
        message: MessagesResponse,
    },
    /// A content block begins.
    ContentBlockStart {
        /// Block position.
        index: u32,
        /// The block's start (a `tool_use` carries id and name).
        content_block: Block,
    },
    /// A piece of a content block.
    ContentBlockDelta {
        /// Block position.
        index: u32,
        /// The piece.
        delta: Delta,
    },
    /// A content block ends.
    ContentBlockStop {
        /// Block position.
        index: u32,
    },
    /// Top-level changes: stop reason and output usage.
    MessageDelta {
        /// `{stop_reason, stop_sequence}`.
        delta: MessageDeltaBody,
        /// Cumulative usage.
        #[serde(default)]
        usage: Option<Usage>,
    },
    /// The message is complete.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// The upstream failed mid-stream.
    Error {
        /// What failed.
        error: ErrorDetail,
    },
}

/// The event types [`KnownEvent`] names; an event of one of these types that does not parse is
/// a broken stream, not an unknown event.
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

/// The `delta` of `message_delta`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MessageDeltaBody {
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence hit.
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// A piece of a content block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Delta {
    /// A delta type with a typed shape.
    Known(KnownDelta),
    /// A delta type this version does not know (`citations_delta` …).
    Unknown(Value),
}

/// Delta types with a typed shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownDelta {
    /// Text.
    TextDelta {
        /// The text piece.
        text: String,
    },
    /// A piece of a tool call's JSON arguments.
    InputJsonDelta {
        /// The JSON piece.
        partial_json: String,
    },
    /// A piece of reasoning.
    ThinkingDelta {
        /// The reasoning piece.
        thinking: String,
    },
    /// The signature of a thinking block.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
}
