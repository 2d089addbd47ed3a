//! Anthropic stream events → OpenAI chat chunks.
//!
//! `message_start` gives the id, model and input usage (a first chunk with the role);
//! `content_block_start`/`_delta` give text, tool calls (numbered in the order they start, as
//! OpenAI's `tool_calls[].index`) and thinking; `message_delta` gives the stop reason (a chunk
//! with `finish_reason`) and output usage; `message_stop` ends the stream after a usage-only
//! chunk, as OpenAI sends with `stream_options.include_usage`.

use super::wire::{self, Block, Delta, KnownBlock, KnownDelta, KnownEvent};
use super::{ID, JSON_TOOL_NAME};
use crate::error::Error;
use crate::provider::{Chunk, StreamEvent, StreamParser};
use crate::sse::SseEvent;
use crate::types::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, Extra, FunctionCallDelta, Role, ToolCallDelta,
    unix_now,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// What an open content block is, by its index.
#[derive(Debug)]
enum Open {
    Text,
    /// A tool call and its OpenAI index.
    Tool(u32),
    /// The JSON `response_format` tool: its arguments are the answer's content.
    Json,
    /// Thinking, with its text so far (sent back whole with its signature).
    Thinking(String),
    Other,
}

/// State of one Anthropic stream.
#[derive(Debug, Default)]
pub struct AnthropicStream {
    id: String,
    model: String,
    created: i64,
    usage: wire::Usage,
    open: HashMap<u32, Open>,
    tools: u32,
    json_answer: bool,
}

impl AnthropicStream {
    fn chunk(&self, delta: ChatDelta, finish: Option<&str>) -> StreamEvent {
        StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_owned),
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        }))
    }

    fn text(&self, text: String) -> StreamEvent {
        self.chunk(
            ChatDelta {
                content: Some(text),
                ..ChatDelta::default()
            },
            None,
        )
    }

    fn extra(&self, key: &str, value: Value) -> StreamEvent {
        let mut extra = Extra::new();
        extra.insert(key.to_owned(), value);
        self.chunk(
            ChatDelta {
                extra,
                ..ChatDelta::default()
            },
            None,
        )
    }

    fn tool(
        &self,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        args: String,
    ) -> StreamEvent {
        let first = id.is_some();
        self.chunk(
            ChatDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id,
                    kind: first.then(|| "function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name,
                        arguments: Some(args),
                    }),
                    ..Default::default()
                }]),
                ..ChatDelta::default()
            },
            None,
        )
    }

    fn usage_chunk(&self) -> StreamEvent {
        StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(super::usage(&self.usage)),
            system_fingerprint: None,
            extra: Extra::new(),
        }))
    }

    fn merge_usage(&mut self, u: wire::Usage) {
        let wire::Usage {
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            ..
        } = u;
        // message_delta usage is cumulative; a field it leaves out keeps message_start's value.
        self.usage.input_tokens = input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = output_tokens.or(self.usage.output_tokens);
        self.usage.cache_creation_input_tokens =
            cache_creation_input_tokens.or(self.usage.cache_creation_input_tokens);
        self.usage.cache_read_input_tokens =
            cache_read_input_tokens.or(self.usage.cache_read_input_tokens);
    }

    fn block_start(&mut self, index: u32, block: Block) -> Vec<StreamEvent> {
        match block {
            Block::Known(KnownBlock::Text { text, .. }) => {
                self.open.insert(index, Open::Text);
                if text.is_empty() {
                    Vec::new()
                } else {
                    vec![self.text(text)]
                }
            }
            Block::Known(KnownBlock::ToolUse { name, .. }) if name == JSON_TOOL_NAME => {
                self.json_answer = true;
                self.open.insert(index, Open::Json);
                Vec::new()
            }
            Block::Known(KnownBlock::ToolUse { id, name, .. }) => {
                let i = self.tools;
                self.tools += 1;
                self.open.insert(index, Open::Tool(i));
                vec![self.tool(i, Some(id), Some(name), String::new())]
            }
            Block::Known(KnownBlock::Thinking { thinking, .. }) => {
                let out = if thinking.is_empty() {
                    Vec::new()
                } else {
                    vec![self.extra("reasoning_content", Value::String(thinking.clone()))]
                };
                self.open.insert(index, Open::Thinking(thinking));
                out
            }
            Block::Known(b @ KnownBlock::RedactedThinking { .. }) => {
                self.open.insert(index, Open::Other);
                match serde_json::to_value(&b) {
                    Ok(v) => vec![self.extra("thinking_blocks", Value::Array(vec![v]))],
                    Err(_) => Vec::new(),
                }
            }
            _ => {
                self.open.insert(index, Open::Other);
                Vec::new()
            }
        }
    }

    fn block_delta(&mut self, index: u32, delta: Delta) -> Vec<StreamEvent> {
        let Delta::Known(delta) = delta else {
            return Vec::new();
        };
        match (self.open.get_mut(&index), delta) {
            (_, KnownDelta::TextDelta { text }) => vec![self.text(text)],
            (Some(Open::Tool(i)), KnownDelta::InputJsonDelta { partial_json }) => {
                let i = *i;
                vec![self.tool(i, None, None, partial_json)]
            }
            (Some(Open::Json), KnownDelta::InputJsonDelta { partial_json }) => {
                vec![self.text(partial_json)]
            }
            (Some(Open::Thinking(so_far)), KnownDelta::ThinkingDelta { thinking }) => {
                so_far.push_str(&thinking);
                vec![self.extra("reasoning_content", Value::String(thinking))]
            }
            (open, KnownDelta::ThinkingDelta { thinking }) => {
                if open.is_none() {
                    self.open.insert(index, Open::Thinking(thinking.clone()));
                }
                vec![self.extra("reasoning_content", Value::String(thinking))]
            }
            (open, KnownDelta::SignatureDelta { signature }) => {
                let thinking = match open {
                    Some(Open::Thinking(t)) => std::mem::take(t),
                    _ => String::new(),
                };
                let block =
                    json!({"type": "thinking", "thinking": thinking, "signature": signature});
                vec![self.extra("thinking_blocks", Value::Array(vec![block]))]
            }
            (_, KnownDelta::InputJsonDelta { .. }) => Vec::new(),
        }
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    crate::provider::openai::invalid(ID, what, e)
}

impl StreamParser for AnthropicStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(vec![StreamEvent::Skip]);
        }
        let event: wire::StreamEvent =
            serde_json::from_str(data).map_err(|e| invalid("a stream event", e))?;
        let event = match event {
            wire::StreamEvent::Known(e) => e,
            wire::StreamEvent::Unknown(v) => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
                if wire::KNOWN_EVENT_TYPES.contains(&kind) {
                    return Err(invalid(
                        &format!("a {kind} event"),
                        "it does not have the documented shape",
                    ));
                }
                return Ok(vec![StreamEvent::Skip]);
            }
        };
        Ok(match event {
            KnownEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = unix_now();
                self.usage = message.usage;
                vec![self.chunk(
                    ChatDelta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..ChatDelta::default()
                    },
                    None,
                )]
            }
            KnownEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block),
            KnownEvent::ContentBlockDelta { index, delta } => self.block_delta(index, delta),
            KnownEvent::ContentBlockStop { .. } | KnownEvent::Ping => vec![StreamEvent::Skip],
            KnownEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(u);
                }
                match delta.stop_reason.as_deref() {
                    Some(r) => {
                        let finish = if r == "tool_use" && self.json_answer && self.tools == 0 {
                            "stop"
                        } else {
                            super::finish_reason(r)
                        };
                        vec![self.chunk(ChatDelta::default(), Some(finish))]
                    }
                    None => vec![StreamEvent::Skip],
                }
            }
            KnownEvent::MessageStop => vec![self.usage_chunk(), StreamEvent::Done],
            KnownEvent::Error { error } => return Err(super::stream_error(&error)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn run(events: &[&str]) -> Result<Vec<StreamEvent>, Error> {
        let mut p = AnthropicStream::default();
        let mut out = Vec::new();
        for e in events {
            out.extend(p.parse(&SseEvent {
                event: None,
                data: (*e).to_owned(),
            })?);
        }
        Ok(out)
    }

    fn chunks(events: &[StreamEvent]) -> Vec<&ChatCompletionChunk> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(Chunk::Chat(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_calls_are_numbered_and_arguments_streamed() {
        let out = run(&[
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":20,"output_tokens":1,"cache_read_input_tokens":4}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}}"#,
            r#"{"type":"some_future_event","x":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap();
        assert!(matches!(out.last(), Some(StreamEvent::Done)));
        let c = chunks(&out);
        assert_eq!(c[0].choices[0].delta.role, Some(Role::Assistant));
        assert!(c.iter().all(|c| c.id == "msg_1" && c.model == "claude-x"));
        let calls: Vec<&ToolCallDelta> = c
            .iter()
            .flat_map(|c| c.choices.iter())
            .flat_map(|ch| ch.delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls[0].id.as_deref(), Some("toolu_a"));
        assert_eq!(calls[0].index, 0);
        let args: String = calls
            .iter()
            .filter(|d| d.index == 0)
            .filter_map(|d| d.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
        assert_eq!(calls.last().unwrap().index, 1);
        let finish = c
            .iter()
            .find(|c| {
                c.choices
                    .first()
                    .is_some_and(|ch| ch.finish_reason.is_some())
            })
            .unwrap();
        assert_eq!(
            finish.choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let usage = c.last().unwrap().usage.clone().unwrap();
        assert!(c.last().unwrap().choices.is_empty());
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (24, 30));
    }

    #[test]
    fn thinking_streams_as_reasoning_with_its_signed_block() {
        let out = run(&[
            r#"{"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{"input_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm. "}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Yes."}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            r#"{"type":"ping"}"#,
        ])
        .unwrap();
        let c = chunks(&out);
        let reasoning: String = c
            .iter()
            .filter_map(|c| c.choices[0].delta.extra.get("reasoning_content")?.as_str())
            .collect();
        assert_eq!(reasoning, "Hmm. Yes.");
        let block = &c.last().unwrap().choices[0].delta.extra["thinking_blocks"][0];
        assert_eq!(block["thinking"], "Hmm. Yes.");
        assert_eq!(block["signature"], "EqQB");
    }

    #[test]
    fn error_events_and_broken_events_are_errors() {
        let e = run(&[
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ])
        .unwrap_err();
        assert_eq!((e.kind, e.status()), (ErrorKind::UpstreamServer, 503));
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
        let e =
            run(&[r#"{"type":"content_block_delta","delta":{"type":"text_delta"}}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
        let e = run(&["{not json"]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }
}
