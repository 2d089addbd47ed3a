//! Cohere Chat v2 stream events → OpenAI chunks.
//!
//! `message-start` gives the id and the role chunk; `content-delta` text is content (thinking is
//! `reasoning_content`); `tool-call-start` opens a tool call (id, name) and `tool-call-delta`
//! carries argument pieces; `message-end` carries the finish reason and usage, sent as the
//! finish chunk and OpenAI's usage chunk, and ends the stream.

use super::wire::{Delta, DeltaMessage, KnownEvent, StreamEvent as Event};
use super::{finish_reason, usage};
use crate::error::{Error, ErrorKind};
use crate::provider::openai::invalid;
use crate::provider::{Chunk, StreamEvent, StreamParser};
use crate::sse::SseEvent;
use crate::types::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, Extra, FunctionCallDelta, Role, ToolCallDelta,
    unix_now,
};

/// The state of one Chat v2 stream.
#[derive(Debug)]
pub(crate) struct ChatStream {
    provider: &'static str,
    id: String,
    model: String,
    created: i64,
    called_tools: bool,
}

impl ChatStream {
    /// A parser for a stream from `model`.
    pub(crate) fn new(provider: &'static str, model: &str) -> Self {
        ChatStream {
            provider,
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            called_tools: false,
        }
    }

    fn chunk(&mut self, delta: ChatDelta, finish: Option<String>) -> StreamEvent {
        if self.id.is_empty() {
            self.id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        }
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
}

fn message(delta: Option<Delta>) -> DeltaMessage {
    delta.and_then(|d| d.message).unwrap_or_default()
}

fn content_delta(m: DeltaMessage) -> Option<ChatDelta> {
    let c = m.content?;
    let mut delta = ChatDelta::default();
    if let Some(t) = c.text.filter(|t| !t.is_empty()) {
        delta.content = Some(t);
    }
    if let Some(t) = c.thinking.filter(|t| !t.is_empty()) {
        delta.extra.insert("reasoning_content".into(), t.into());
    }
    (delta != ChatDelta::default()).then_some(delta)
}

impl StreamParser for ChatStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let data = frame.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(vec![if data.is_empty() {
                StreamEvent::Skip
            } else {
                StreamEvent::Done
            }]);
        }
        let event: Event =
            serde_json::from_str(data).map_err(|e| invalid(self.provider, "a stream event", e))?;
        let Event::Known(event) = event else {
            // Not a typed event, but it must at least be a JSON object with a type.
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(data)
                .ok()
                .is_some_and(|m| m.get("type").is_some_and(serde_json::Value::is_string))
            {
                return Ok(vec![StreamEvent::Skip]);
            }
            return Err(invalid(self.provider, "a stream event", "it has no type"));
        };
        let out = match event {
            KnownEvent::MessageStart { id } => {
                if let Some(id) = id.filter(|i| !i.is_empty()) {
                    self.id = id;
                }
                self.chunk(
                    ChatDelta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..ChatDelta::default()
                    },
                    None,
                )
            }
            KnownEvent::ContentStart { delta } | KnownEvent::ContentDelta { delta } => {
                match content_delta(message(delta)) {
                    Some(d) => self.chunk(d, None),
                    None => StreamEvent::Skip,
                }
            }
            KnownEvent::ToolPlanDelta { delta } => match message(delta).tool_plan {
                Some(plan) if !plan.is_empty() => {
                    let mut extra = Extra::new();
                    extra.insert("tool_plan".into(), plan.into());
                    self.chunk(
                        ChatDelta {
                            extra,
                            ..ChatDelta::default()
                        },
                        None,
                    )
                }
                _ => StreamEvent::Skip,
            },
            KnownEvent::ToolCallStart { index, delta } => {
                let call = message(delta).tool_calls.unwrap_or_default();
                let f = call.function.unwrap_or_default();
                self.called_tools = true;
                self.chunk(
                    ChatDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: index.unwrap_or(0),
                            id: call.id,
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: f.name,
                                arguments: Some(f.arguments.unwrap_or_default()),
                            }),
                            ..Default::default()
                        }]),
                        ..ChatDelta::default()
                    },
                    None,
                )
            }
            KnownEvent::ToolCallDelta { index, delta } => {
                let call = message(delta).tool_calls.unwrap_or_default();
                match call.function.and_then(|f| f.arguments) {
                    Some(args) => self.chunk(
                        ChatDelta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: index.unwrap_or(0),
                                id: None,
                                kind: None,
                                function: Some(FunctionCallDelta {
                                    name: None,
                                    arguments: Some(args),
                                }),
                                ..Default::default()
                            }]),
                            ..ChatDelta::default()
                        },
                        None,
                    ),
                    None => StreamEvent::Skip,
                }
            }
            KnownEvent::MessageEnd { delta } => {
                let end = delta.unwrap_or_default();
                if let Some(error) = end.error.filter(|e| !e.is_empty()) {
                    return Err(Error::new(
                        ErrorKind::UpstreamServer,
                        format!("{} failed mid-stream: {error}", self.provider),
                    )
                    .with_provider(self.provider));
                }
                let reason = finish_reason(end.finish_reason.as_deref(), self.called_tools);
                let finish = self.chunk(ChatDelta::default(), Some(reason));
                let usage_chunk = StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
                    id: self.id.clone(),
                    object: "chat.completion.chunk".into(),
                    created: self.created,
                    model: self.model.clone(),
                    choices: Vec::new(),
                    usage: Some(usage(end.usage.as_ref())),
                    system_fingerprint: None,
                    extra: Extra::new(),
                }));
                return Ok(vec![finish, usage_chunk, StreamEvent::Done]);
            }
        };
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
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
    fn tool_plan_tool_calls_and_usage() {
        let mut p = ChatStream::new("cohere", "command-r");
        let mut out = Vec::new();
        for d in [
            r#"{"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#,
            r#"{"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will look up the weather."}}}"#,
            r#"{"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_nsz5zm3w56q3","type":"function","function":{"name":"get_weather","arguments":""}}}}}"#,
            r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"location\":"}}}}}"#,
            r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"Toronto\"}"}}}}}"#,
            r#"{"type":"tool-call-end","index":0}"#,
            r#"{"type":"citation-start","index":0,"delta":{"message":{"citations":{}}}}"#,
        ] {
            out.extend(p.parse(&ev(d)).unwrap());
        }
        let end = p
            .parse(&ev(r#"{"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":913,"output_tokens":83}}}}"#))
            .unwrap();
        let c = chunks(&out);
        assert_eq!(c[0].id, "29f14a5a-11de-4cae-9800-25e4747408ea");
        assert_eq!(
            c[1].choices[0].delta.extra["tool_plan"],
            "I will look up the weather."
        );
        let calls: Vec<&ToolCallDelta> = c
            .iter()
            .flat_map(|c| c.choices[0].delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls[0].id.as_deref(), Some("get_weather_nsz5zm3w56q3"));
        let args: String = calls
            .iter()
            .filter_map(|d| d.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(args, r#"{"location":"Toronto"}"#);
        let e = chunks(&end);
        assert_eq!(e[0].choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let u = e[1].usage.clone().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (913, 83));
        assert!(matches!(end.last(), Some(StreamEvent::Done)));
    }

    #[test]
    fn errors_in_message_end_and_garbage_fail() {
        let mut p = ChatStream::new("cohere", "m");
        let e = p
            .parse(&ev(r#"{"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal failure"}}"#))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamServer);
        assert!(e.message.contains("internal failure"));
        assert_eq!(
            p.parse(&ev("{oops")).unwrap_err().kind,
            ErrorKind::InvalidResponse
        );
        assert_eq!(
            p.parse(&ev("[1,2]")).unwrap_err().kind,
            ErrorKind::InvalidResponse
        );
        assert!(matches!(
            p.parse(&ev(r#"{"type":"debug"}"#)).unwrap()[0],
            StreamEvent::Skip
        ));
    }
}
