//! Bedrock Runtime wire types: the Converse response, ConverseStream event payloads and the
//! InvokeModel embedding bodies of Titan and Cohere.
//!
//! Bedrock's content blocks and deltas are unions written as an object with one key (`text`,
//! `toolUse` …). Each union is a known-or-unknown enum, so a block type this version does not
//! know (an image, a citation, a guard-rail note) is kept as JSON instead of failing the call.

use crate::types::EmbeddingVector;
use serde::Deserialize;
use serde_json::Value;

/// The body of a Converse response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConverseResponse {
    /// The generated message.
    #[serde(default)]
    pub output: Option<ConverseOutput>,
    /// Why generation stopped (`end_turn`, `tool_use`, `max_tokens` …).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token counts (`metrics`, `trace` and other fields are not read).
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// `output` of a Converse response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConverseOutput {
    /// The assistant message.
    #[serde(default)]
    pub message: Option<Message>,
}

/// A message: a role and its content blocks.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Message {
    /// `assistant` in a response.
    #[serde(default)]
    #[allow(dead_code)]
    pub role: Option<String>,
    /// The content blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

/// One content block: a type with a typed shape, or any other kept as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ContentBlock {
    /// A block type this version reads.
    Known(KnownBlock),
    /// Any other block type (image, document, citations …), ignored by the translation.
    Unknown(#[allow(dead_code)] Value),
}

/// Content block types with a typed shape; matched by the one key each has.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum KnownBlock {
    /// Generated text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool the model calls.
    ToolUse {
        /// The call.
        #[serde(rename = "toolUse")]
        tool_use: ToolUse,
    },
    /// Reasoning the model showed.
    Reasoning {
        /// `{reasoningText: {text, signature}}` or `{redactedContent}`.
        #[serde(rename = "reasoningContent")]
        reasoning: ReasoningContent,
    },
}

/// A complete tool call in a response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolUse {
    /// Call id.
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON value.
    #[serde(default)]
    pub input: Value,
}

/// A reasoning block in a response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReasoningContent {
    /// The visible reasoning.
    #[serde(default)]
    pub reasoning_text: Option<ReasoningText>,
}

/// Visible reasoning text.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReasoningText {
    /// The text.
    #[serde(default)]
    pub text: String,
}

/// Token counts of a Converse call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenUsage {
    /// Input tokens not read from or written to the prompt cache.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

/// `contentBlockStart`: only tool-use blocks announce themselves.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentBlockStartEvent {
    /// Position of the block in the message.
    #[serde(default)]
    pub content_block_index: u32,
    /// What starts.
    #[serde(default)]
    pub start: Option<BlockStart>,
}

/// The start of a block: a tool-use header, or a start type this version does not know.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum BlockStart {
    /// A tool call starts.
    ToolUse {
        /// Its id and name.
        #[serde(rename = "toolUse")]
        tool_use: ToolUseStart,
    },
    /// Any other start.
    Unknown(#[allow(dead_code)] Value),
}

/// The header of a streamed tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolUseStart {
    /// Call id.
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
}

/// `contentBlockDelta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentBlockDeltaEvent {
    /// Position of the block in the message.
    #[serde(default)]
    pub content_block_index: u32,
    /// The change.
    pub delta: Delta,
}

/// One delta: a type with a typed shape, or any other kept as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Delta {
    /// A delta type this version reads.
    Known(KnownDelta),
    /// Any other delta (citations …), skipped.
    Unknown(#[allow(dead_code)] Value),
}

/// Delta types with a typed shape; matched by the one key each has.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum KnownDelta {
    /// A piece of text.
    Text {
        /// The text.
        text: String,
    },
    /// A piece of a tool call's JSON arguments.
    ToolUse {
        /// `{input}`.
        #[serde(rename = "toolUse")]
        tool_use: ToolUseDelta,
    },
    /// A piece of reasoning.
    Reasoning {
        /// `{text}` or `{signature}` or `{redactedContent}`.
        #[serde(rename = "reasoningContent")]
        reasoning: ReasoningDelta,
    },
}

/// A piece of a streamed tool call's arguments.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ToolUseDelta {
    /// A fragment of the JSON arguments string.
    #[serde(default)]
    pub input: String,
}

/// A piece of streamed reasoning.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReasoningDelta {
    /// Visible reasoning text, when this delta carries some.
    #[serde(default)]
    pub text: Option<String>,
}

/// `messageStop`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageStopEvent {
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// `metadata`: the last event, carrying usage.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetadataEvent {
    /// Token counts of the whole stream.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// The body of an exception, in a response or a stream.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    /// The message (`message` in Bedrock's JSON, `Message` from some AWS front ends).
    #[serde(default, alias = "Message")]
    pub message: Option<String>,
    /// The error type when the body names it (`__type`, AWS JSON protocol).
    #[serde(default, rename = "__type")]
    pub kind: Option<String>,
}

/// Titan text embeddings (`amazon.titan-embed-text-*`) InvokeModel response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TitanEmbeddingResponse {
    /// The vector.
    pub embedding: EmbeddingVector,
    /// Input tokens.
    #[serde(default)]
    pub input_text_token_count: u64,
}

/// Cohere embeddings on Bedrock (`cohere.embed-*`) InvokeModel response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CohereEmbeddingResponse {
    /// `[[f64]]` (`embeddings_floats`), or `{"float": [[f64]], …}` (`embeddings_by_type`).
    pub embeddings: CohereEmbeddings,
}

/// The float vectors of Cohere's `embeddings` field, in either of its two shapes: `[[f64]]`, or
/// `{"float": [[f64]], …}` when `embedding_types` was given. Read by hand rather than as an
/// untagged enum, which buffers its input and cannot keep the vectors as raw JSON text.
#[derive(Debug, Clone)]
pub(crate) struct CohereEmbeddings(pub Vec<EmbeddingVector>);

impl<'de> Deserialize<'de> for CohereEmbeddings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> serde::de::Visitor<'de> for ShapeVisitor {
            type Value = CohereEmbeddings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of float vectors or an object of vectors by type")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<CohereEmbeddings, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(CohereEmbeddings)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<CohereEmbeddings, A::Error> {
                let mut float = None;
                while let Some(key) = map.next_key::<crate::types::open::Key<'de>>()? {
                    if key.as_str() == "float" {
                        float = Some(map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                float
                    .map(CohereEmbeddings)
                    .ok_or_else(|| serde::de::Error::missing_field("float"))
            }
        }
        d.deserialize_any(ShapeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_blocks_and_deltas_pass_instead_of_failing() {
        let r: ConverseResponse = serde_json::from_str(
            r#"{"output":{"message":{"role":"assistant","content":[
                {"text":"hi","citations":[]},
                {"image":{"format":"png","source":{"bytes":"AA=="}}},
                {"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}
            ]}},"stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},
            "metrics":{"latencyMs":10}}"#,
        )
        .unwrap();
        let content = r.output.unwrap().message.unwrap().content;
        assert!(
            matches!(&content[0], ContentBlock::Known(KnownBlock::Text { text }) if text == "hi")
        );
        assert!(matches!(content[1], ContentBlock::Unknown(_)));
        assert!(
            matches!(&content[2], ContentBlock::Known(KnownBlock::ToolUse { tool_use }) if tool_use.name == "f")
        );
        let d: ContentBlockDeltaEvent = serde_json::from_str(
            r#"{"contentBlockIndex":0,"delta":{"citation":{"title":"x"}},"p":"abc"}"#,
        )
        .unwrap();
        assert!(matches!(d.delta, Delta::Unknown(_)));
    }

    #[test]
    fn cohere_embeddings_come_in_either_shape_as_raw_vectors() {
        let read = |text: &str| serde_json::from_str::<CohereEmbeddingResponse>(text);
        let plain = read(r#"{"embeddings":[[0.5, -1E-3],[2]],"id":"x"}"#).unwrap();
        let texts: Vec<&str> = plain.embeddings.0.iter().map(|v| v.json()).collect();
        assert_eq!(texts, ["[0.5, -1E-3]", "[2]"]);
        let by_type = read(r#"{"embeddings":{"int8":[[1]],"float":[[0.25]]}}"#).unwrap();
        assert_eq!(by_type.embeddings.0[0].floats(), Some(vec![0.25]));
        let err = read(r#"{"embeddings":{"int8":[[1]]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("missing field `float`"), "{err}");
        assert!(read(r#"{"embeddings":"x"}"#).is_err());
    }
}
