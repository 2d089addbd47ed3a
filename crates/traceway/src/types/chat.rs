//! `/v1/chat/completions`: request, response and stream chunk.

use super::open::open_struct;
use super::{Extra, StopSequences, StreamOptions, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message. An unknown role is a 400, as OpenAI answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// Developer instructions (newer name of `system`).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
    /// A legacy function result.
    Function,
}

impl Role {
    /// The wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// A message's content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text, images, audio and files.
    Parts(Vec<ContentPart>),
}

// By hand rather than `#[serde(untagged)]`, which copies the value into serde's buffer and
// parses it again for each variant it tries: a string or an array is told by its first token.
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = MessageContent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E>(self, v: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<MessageContent, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(MessageContent::Parts)
            }
        }
        d.deserialize_any(ContentVisitor)
    }
}

impl MessageContent {
    /// The text of the content, parts joined; non-text parts are left out.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Known(KnownContentPart::Text { text, .. }) => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// One part of a list content: a part type Traceway knows, or any other kept as it came.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ContentPart {
    /// A part type with a typed shape.
    Known(KnownContentPart),
    /// A part type this version does not know, or a known type in a shape it does not know
    /// (a `text` part without a string `text`); passed on untouched.
    Unknown(Value),
}

// By hand rather than `#[serde(untagged)]` over an internally tagged enum with flattened
// fields, which buffered each part up to three times: the part is read once, as a `Value`,
// and its fields are moved into the typed shape when it has one.
impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ContentPart::from_value(Value::deserialize(d)?))
    }
}

impl ContentPart {
    fn from_value(value: Value) -> ContentPart {
        let Value::Object(mut fields) = value else {
            return ContentPart::Unknown(value);
        };
        match fields.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(Value::String(t)) = fields.get_mut("text") {
                    let text = std::mem::take(t);
                    fields.remove("text");
                    fields.remove("type");
                    return ContentPart::Known(KnownContentPart::Text {
                        text,
                        extra: fields,
                    });
                }
            }
            Some("image_url") => {
                if let Some(image_url) = fields.remove("image_url") {
                    fields.remove("type");
                    return ContentPart::Known(KnownContentPart::ImageUrl {
                        image_url,
                        extra: fields,
                    });
                }
            }
            _ => {}
        }
        ContentPart::Unknown(Value::Object(fields))
    }
}

/// Content part types with a typed shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Fields not named above.
        #[serde(flatten)]
        extra: Extra,
    },
    /// An image by URL or data URL.
    ImageUrl {
        /// `{url, detail}`.
        image_url: Value,
        /// Fields not named above.
        #[serde(flatten)]
        extra: Extra,
    },
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Arguments as a JSON string.
    #[serde(default)]
    pub arguments: String,
}

/// A tool call in an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// Call id, echoed by the tool message that answers it.
    pub id: String,
    /// Always `function` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call.
    pub function: FunctionCall,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ToolCall {
    id: "id"[required],
    kind: "type"[default = function_type()],
    function: "function"[required]
});

fn function_type() -> String {
    "function".to_owned()
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its content; absent on an assistant message that only calls tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls of an assistant message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Which call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Fields not named above (`refusal`, `audio`, `reasoning_content` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatMessage {
    role: "role"[required],
    content: "content"[default],
    name: "name"[default],
    tool_calls: "tool_calls"[default],
    tool_call_id: "tool_call_id"[default]
});

impl ChatMessage {
    /// A message with plain text content.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Extra::new(),
        }
    }

    /// The message's text (parts joined), empty when it has none.
    pub fn text(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDef {
    /// Function name.
    pub name: String,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Fields not named above (`strict` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(FunctionDef {
    name: "name"[required],
    description: "description"[default],
    parameters: "parameters"[default]
});

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    /// Always `function` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(Tool {
    kind: "type"[default = function_type()],
    function: "function"[required]
});

/// `response_format`: `text`, `json_object` or `json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat {
    /// The format type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fields not named above (`json_schema` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ResponseFormat {
    kind: "type"[required]
});

impl ResponseFormat {
    /// Whether the format asks for JSON output.
    pub fn is_json(&self) -> bool {
        self.kind == "json_object" || self.kind == "json_schema"
    }
}

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionRequest {
    /// Model group (proxy) or `provider/model` (library).
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Stream the answer as server-sent events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options of a streamed answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
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
    /// Output token limit (older name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token bias map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Value>,
    /// Return log probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many top log probabilities per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Tools the model may call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto`, `required` or a named tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Let the model call several tools at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Every other field: gateway fields (`mock_response`, `metadata` …) and upstream fields
    /// this version does not name, which OpenAI-compatible upstreams receive untouched.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatCompletionRequest {
    model: "model"[required],
    messages: "messages"[required],
    stream: "stream"[default],
    stream_options: "stream_options"[default],
    temperature: "temperature"[default],
    top_p: "top_p"[default],
    n: "n"[default],
    stop: "stop"[default],
    max_tokens: "max_tokens"[default],
    max_completion_tokens: "max_completion_tokens"[default],
    presence_penalty: "presence_penalty"[default],
    frequency_penalty: "frequency_penalty"[default],
    logit_bias: "logit_bias"[default],
    logprobs: "logprobs"[default],
    top_logprobs: "top_logprobs"[default],
    user: "user"[default],
    seed: "seed"[default],
    tools: "tools"[default],
    tool_choice: "tool_choice"[default],
    parallel_tool_calls: "parallel_tool_calls"[default],
    response_format: "response_format"[default]
});

impl ChatCompletionRequest {
    /// A request for `model` with `messages` and nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatCompletionRequest {
            model: model.into(),
            messages,
            stream: None,
            stream_options: None,
            temperature: None,
            top_p: None,
            n: None,
            stop: None,
            max_tokens: None,
            max_completion_tokens: None,
            presence_penalty: None,
            frequency_penalty: None,
            logit_bias: None,
            logprobs: None,
            top_logprobs: None,
            user: None,
            seed: None,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            extra: Extra::new(),
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// One choice of a chat response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: u32,
    /// The assistant message.
    pub message: ChatMessage,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Log probabilities, when asked for (`null` otherwise, as OpenAI sends it).
    pub logprobs: Option<Value>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatChoice {
    index: "index"[default],
    message: "message"[required],
    finish_reason: "finish_reason"[default],
    logprobs: "logprobs"[default]
});

/// The body of a non-streamed chat response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionResponse {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Model that answered.
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Fields not named above (`service_tier` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatCompletionResponse {
    id: "id"[required],
    object: "object"[default = chat_completion_object()],
    created: "created"[default],
    model: "model"[default],
    choices: "choices"[default],
    usage: "usage"[default],
    system_fingerprint: "system_fingerprint"[default]
});

fn chat_completion_object() -> String {
    "chat.completion".to_owned()
}

/// A tool-call fragment in a stream delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ToolCallDelta {
    /// Which tool call this fragment extends.
    pub index: u32,
    /// Call id, on the first fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the first fragment.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    /// Fields not named above (`provider_specific_fields` with Gemini's `thought_signature` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ToolCallDelta {
    index: "index"[default],
    id: "id"[default],
    kind: "type"[default],
    function: "function"[default]
});

/// Name and argument fragments of a streamed tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// Function name, on the first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// The change one chunk makes to a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatDelta {
    /// Role, on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A piece of the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Fields not named above (`refusal`, `reasoning_content` …).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatDelta {
    role: "role"[default],
    content: "content"[default],
    tool_calls: "tool_calls"[default]
});

/// One choice of a stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChunkChoice {
    /// Position among the choices.
    pub index: u32,
    /// What this chunk adds.
    pub delta: ChatDelta,
    /// Why generation stopped, on the last chunk of the choice.
    pub finish_reason: Option<String>,
    /// Log probabilities, when asked for (`null` otherwise, as OpenAI sends it).
    pub logprobs: Option<Value>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatChunkChoice {
    index: "index"[default],
    delta: "delta"[default],
    finish_reason: "finish_reason"[default],
    logprobs: "logprobs"[default]
});

/// One `data:` event of a streamed chat response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    /// Response id (the same on every chunk).
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Model that answers.
    pub model: String,
    /// Choice deltas; empty on the usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// The whole stream's usage, on the last chunk when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(ChatCompletionChunk {
    id: "id"[required],
    object: "object"[default = chat_chunk_object()],
    created: "created"[default],
    model: "model"[default],
    choices: "choices"[default],
    usage: "usage"[default],
    system_fingerprint: "system_fingerprint"[default]
});

fn chat_chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}
