//! ConverseStream events → OpenAI chat chunks.
//!
//! `messageStart` gives the role chunk; `contentBlockStart` of a tool-use block opens a tool
//! call (its id and name), whose `contentBlockDelta`s carry argument fragments; text deltas are
//! content; `messageStop` is the finish chunk; `metadata` carries the usage, sent as the usage
//! chunk OpenAI sends last, and ends the stream. Exceptions end it with an error.

use super::JSON_TOOL;
use super::eventstream::EXCEPTION_PREFIX;
use super::response::{finish_reason, new_id, usage};
use super::wire::{
    BlockStart, ContentBlockDeltaEvent, ContentBlockStartEvent, Delta, ErrorBody, KnownDelta,
    MessageStopEvent, MetadataEvent,
};
use crate::error::Error;
use crate::provider::openai::invalid;
use crate::provider::{Chunk, StreamEvent, StreamParser};
use crate::sse::SseEvent;
use crate::types::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, Extra, FunctionCallDelta, Role, ToolCallDelta,
    unix_now,
};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};

/// The state of one ConverseStream.
#[derive(Debug)]
pub(crate) struct ConverseStream {
    provider: &'static str,
    id: String,
    model: String,
    created: i64,
    /// Content block index → OpenAI tool-call index.
    tools: HashMap<u32, u32>,
    /// Blocks of the forced JSON-mode tool, whose input is streamed as content.
    json_blocks: HashSet<u32>,
}

impl ConverseStream {
    /// A parser for a stream from `model`.
    pub(crate) fn new(provider: &'static str, model: &str) -> Self {
        ConverseStream {
            provider,
            id: new_id(),
            model: model.to_owned(),
            created: unix_now(),
            tools: HashMap::new(),
            json_blocks: HashSet::new(),
        }
    }

    fn chunk(&self, delta: ChatDelta, finish: Option<String>) -> StreamEvent {
        StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        }))
    }

    fn payload<T: DeserializeOwned>(&self, frame: &SseEvent) -> Result<T, Error> {
        serde_json::from_str(&frame.data).map_err(|e| invalid(self.provider, "a stream event", e))
    }

    fn tool_delta(&self, call: ToolCallDelta) -> StreamEvent {
        self.chunk(
            ChatDelta {
                tool_calls: Some(vec![call]),
                ..ChatDelta::default()
            },
            None,
        )
    }
}

impl StreamParser for ConverseStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let kind = frame.event.as_deref().unwrap_or("");
        if let Some(exception) = kind.strip_prefix(EXCEPTION_PREFIX) {
            let body: ErrorBody = serde_json::from_str(&frame.data).unwrap_or_default();
            let message = body.message.unwrap_or_else(|| frame.data.clone());
            return Err(super::stream_exception(self.provider, exception, &message));
        }
        let event = match kind {
            "messageStart" => self.chunk(
                ChatDelta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..ChatDelta::default()
                },
                None,
            ),
            "contentBlockStart" => {
                let e: ContentBlockStartEvent = self.payload(frame)?;
                match e.start {
                    Some(BlockStart::ToolUse { tool_use }) if tool_use.name == JSON_TOOL => {
                        self.json_blocks.insert(e.content_block_index);
                        StreamEvent::Skip
                    }
                    Some(BlockStart::ToolUse { tool_use }) => {
                        let index = self.tools.len() as u32;
                        self.tools.insert(e.content_block_index, index);
                        self.tool_delta(ToolCallDelta {
                            index,
                            id: Some(tool_use.tool_use_id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(tool_use.name),
                                arguments: Some(String::new()),
                            }),
                            ..Default::default()
                        })
                    }
                    Some(BlockStart::Unknown(_)) | None => StreamEvent::Skip,
                }
            }
            "contentBlockDelta" => {
                let e: ContentBlockDeltaEvent = self.payload(frame)?;
                match e.delta {
                    Delta::Known(KnownDelta::Text { text }) => self.chunk(
                        ChatDelta {
                            content: Some(text),
                            ..ChatDelta::default()
                        },
                        None,
                    ),
                    Delta::Known(KnownDelta::ToolUse { tool_use }) => {
                        if self.json_blocks.contains(&e.content_block_index) {
                            self.chunk(
                                ChatDelta {
                                    content: Some(tool_use.input),
                                    ..ChatDelta::default()
                                },
                                None,
                            )
                        } else {
                            let index =
                                *self.tools.get(&e.content_block_index).ok_or_else(|| {
                                    invalid(
                                        self.provider,
                                        "a stream event",
                                        "tool input arrived for a block that never started",
                                    )
                                })?;
                            self.tool_delta(ToolCallDelta {
                                index,
                                id: None,
                                kind: None,
                                function: Some(FunctionCallDelta {
                                    name: None,
                                    arguments: Some(tool_use.input),
                                }),
                                ..Default::default()
                            })
                        }
                    }
                    Delta::Known(KnownDelta::Reasoning { reasoning }) => match reasoning.text {
                        Some(text) => {
                            let mut extra = Extra::new();
                            extra.insert("reasoning_content".into(), text.into());
                            self.chunk(
                                ChatDelta {
                                    extra,
                                    ..ChatDelta::default()
                                },
                                None,
                            )
                        }
                        None => StreamEvent::Skip,
                    },
                    Delta::Unknown(_) => StreamEvent::Skip,
                }
            }
            "messageStop" => {
                let e: MessageStopEvent = self.payload(frame)?;
                let finish = match e.stop_reason.as_deref() {
                    Some("tool_use") if !self.json_blocks.is_empty() && self.tools.is_empty() => {
                        "stop".to_owned()
                    }
                    Some(s) => finish_reason(s),
                    None => "stop".to_owned(),
                };
                self.chunk(ChatDelta::default(), Some(finish))
            }
            "metadata" => {
                let e: MetadataEvent = self.payload(frame)?;
                let mut events = Vec::new();
                if let Some(u) = e.usage {
                    events.push(StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
                        id: self.id.clone(),
                        object: "chat.completion.chunk".into(),
                        created: self.created,
                        model: self.model.clone(),
                        choices: Vec::new(),
                        usage: Some(usage(&u)),
                        system_fingerprint: None,
                        extra: Extra::new(),
                    })));
                }
                events.push(StreamEvent::Done);
                return Ok(events);
            }
            // contentBlockStop, and event types this version does not know.
            _ => StreamEvent::Skip,
        };
        Ok(vec![event])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn frame(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: Some(event.into()),
            data: data.into(),
        }
    }

    fn chunks(events: Vec<StreamEvent>) -> Vec<ChatCompletionChunk> {
        events
            .into_iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(Chunk::Chat(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn text_and_tool_calls_become_openai_deltas() {
        let mut p = ConverseStream::new("bedrock", "m");
        let mut out = Vec::new();
        for (e, d) in [
            ("messageStart", r#"{"role":"assistant","p":"abcdef"}"#),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Let me "}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"check."}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tu1","name":"get_weather"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
            ("someFutureEvent", r#"{}"#),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
        ] {
            out.extend(p.parse(&frame(e, d)).unwrap());
        }
        let end = p
            .parse(&frame("metadata", r#"{"usage":{"inputTokens":5,"outputTokens":7,"totalTokens":12},"metrics":{"latencyMs":1}}"#))
            .unwrap();
        assert!(matches!(end.last(), Some(StreamEvent::Done)));
        let c = chunks(out);
        assert_eq!(c[0].choices[0].delta.role, Some(Role::Assistant));
        let text: String = c
            .iter()
            .filter_map(|c| c.choices[0].delta.content.clone())
            .collect();
        assert_eq!(text, "Let me check.");
        let calls: Vec<&ToolCallDelta> = c
            .iter()
            .flat_map(|c| c.choices[0].delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls[0].id.as_deref(), Some("tu1"));
        assert_eq!(calls[0].index, 0);
        let args: String = calls
            .iter()
            .filter_map(|d| d.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        assert_eq!(
            c.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let u = chunks(end)[0].usage.clone().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (5, 7, 12)
        );
    }

    #[test]
    fn the_json_mode_tool_streams_as_content() {
        let mut p = ConverseStream::new("bedrock", "m");
        let mut out = Vec::new();
        for (e, d) in [
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t","name":"json_tool_call"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"a\":"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"1}"}}}"#,
            ),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
        ] {
            out.extend(p.parse(&frame(e, d)).unwrap());
        }
        let c = chunks(out);
        let text: String = c
            .iter()
            .filter_map(|c| c.choices[0].delta.content.clone())
            .collect();
        assert_eq!(text, r#"{"a":1}"#);
        assert!(c.iter().all(|c| c.choices[0].delta.tool_calls.is_none()));
        assert_eq!(
            c.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("stop")
        );
    }

    #[test]
    fn exceptions_and_bad_payloads_are_errors() {
        let mut p = ConverseStream::new("bedrock", "m");
        let e = p
            .parse(&frame(
                "exception:throttlingException",
                r#"{"message":"Too many tokens"}"#,
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.message.contains("Too many tokens"));
        let e = p
            .parse(&frame(
                "exception:modelStreamErrorException",
                r#"{"message":"boom","originalStatusCode":500}"#,
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamServer);
        let e = p
            .parse(&frame("contentBlockDelta", "{not json"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
        let e = p
            .parse(&frame(
                "contentBlockDelta",
                r#"{"contentBlockIndex":9,"delta":{"toolUse":{"input":"x"}}}"#,
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }
}
