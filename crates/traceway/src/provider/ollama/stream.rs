//! Ollama's NDJSON stream lines → OpenAI chunks.
//!
//! Each line carries a piece of the message; the line with `done: true` carries the finish
//! reason and the token counts, which become the finish chunk and OpenAI's usage chunk. A line
//! with `error` ends the stream with that error.

use super::wire::{ChatResponse, GenerateResponse, ToolCallEntry};
use super::{chat_finish_reason, completion_usage, mid_stream_error, new_call_id, usage};
use crate::error::Error;
use crate::provider::openai::invalid;
use crate::provider::{Chunk, StreamEvent, StreamParser};
use crate::sse::SseEvent;
use crate::types::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, CompletionChoice, CompletionResponse, Extra,
    FunctionCallDelta, Role, ToolCallDelta, unix_now,
};

/// The state of one `/api/chat` stream.
#[derive(Debug)]
pub(crate) struct ChatStream {
    provider: &'static str,
    id: String,
    created: i64,
    model: String,
    started: bool,
    tool_calls: u32,
}

impl ChatStream {
    /// A parser for a stream from `model` (replaced by the model each line names).
    pub(crate) fn new(provider: &'static str, model: &str) -> Self {
        ChatStream {
            provider,
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: model.to_owned(),
            started: false,
            tool_calls: 0,
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
}

impl StreamParser for ChatStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let line: ChatResponse = serde_json::from_str(&frame.data)
            .map_err(|e| invalid(self.provider, "a stream line", e))?;
        if let Some(e) = line.error {
            return Err(mid_stream_error(self.provider, &e));
        }
        if !line.model.is_empty() {
            self.model = line.model.clone();
        }
        let mut events = Vec::new();
        let message = line.message.unwrap_or_default();
        let mut delta = ChatDelta::default();
        if !self.started {
            self.started = true;
            delta.role = Some(Role::Assistant);
        }
        if !message.content.is_empty() || delta.role.is_some() {
            delta.content = Some(message.content);
        }
        if let Some(t) = message.thinking.filter(|t| !t.is_empty()) {
            delta.extra.insert("reasoning_content".into(), t.into());
        }
        let mut calls = Vec::new();
        for entry in message.tool_calls {
            let ToolCallEntry::Known(call) = entry else {
                continue;
            };
            calls.push(ToolCallDelta {
                index: self.tool_calls,
                id: Some(call.id.clone().unwrap_or_else(new_call_id)),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some(call.function.name.clone()),
                    arguments: Some(call.function.arguments_string()),
                }),
                ..Default::default()
            });
            self.tool_calls += 1;
        }
        if !calls.is_empty() {
            delta.tool_calls = Some(calls);
        }
        if delta != ChatDelta::default() {
            events.push(self.chunk(delta, None));
        }
        if line.done {
            let finish = chat_finish_reason(line.done_reason.as_deref(), self.tool_calls > 0);
            events.push(self.chunk(ChatDelta::default(), Some(finish)));
            events.push(StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.created,
                model: self.model.clone(),
                choices: Vec::new(),
                usage: Some(usage(line.prompt_eval_count, line.eval_count)),
                system_fingerprint: None,
                extra: Extra::new(),
            })));
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }
}

/// The state of one `/api/generate` stream.
#[derive(Debug)]
pub(crate) struct GenerateStream {
    provider: &'static str,
    id: String,
    created: i64,
    model: String,
}

impl GenerateStream {
    /// A parser for a stream from `model`.
    pub(crate) fn new(provider: &'static str, model: &str) -> Self {
        GenerateStream {
            provider,
            id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: model.to_owned(),
        }
    }

    fn chunk(
        &self,
        choices: Vec<CompletionChoice>,
        usage: Option<crate::types::Usage>,
    ) -> StreamEvent {
        StreamEvent::Chunk(Chunk::Completion(CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            system_fingerprint: None,
            extra: Extra::new(),
        }))
    }
}

fn choice(text: String, finish: Option<String>) -> CompletionChoice {
    CompletionChoice {
        text,
        index: 0,
        finish_reason: finish,
        logprobs: None,
        extra: Extra::new(),
    }
}

impl StreamParser for GenerateStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let line: GenerateResponse = serde_json::from_str(&frame.data)
            .map_err(|e| invalid(self.provider, "a stream line", e))?;
        if let Some(e) = line.error {
            return Err(mid_stream_error(self.provider, &e));
        }
        if !line.model.is_empty() {
            self.model = line.model.clone();
        }
        let mut events = Vec::new();
        if !line.response.is_empty() {
            events.push(self.chunk(vec![choice(line.response, None)], None));
        }
        if line.done {
            let finish = chat_finish_reason(line.done_reason.as_deref(), false);
            events.push(self.chunk(vec![choice(String::new(), Some(finish))], None));
            events.push(self.chunk(
                Vec::new(),
                Some(completion_usage(line.prompt_eval_count, line.eval_count)),
            ));
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn line(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    fn chat_chunks(events: &[StreamEvent]) -> Vec<&ChatCompletionChunk> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(Chunk::Chat(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lines_become_chunks_and_the_last_carries_finish_and_usage() {
        let mut p = ChatStream::new("ollama", "llama3.2");
        let mut out = Vec::new();
        for l in [
            r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The"},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" sky"},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":4883583458,"prompt_eval_count":26,"eval_count":2}"#,
        ] {
            out.extend(p.parse(&line(l)).unwrap());
        }
        assert!(matches!(out.last(), Some(StreamEvent::Done)));
        let c = chat_chunks(&out);
        assert_eq!(c[0].choices[0].delta.role, Some(Role::Assistant));
        let text: String = c
            .iter()
            .filter_map(|c| c.choices.first()?.delta.content.clone())
            .collect();
        assert_eq!(text, "The sky");
        let finish = c
            .iter()
            .find_map(|c| c.choices.first()?.finish_reason.clone());
        assert_eq!(finish.as_deref(), Some("length"));
        let u = c.last().unwrap().usage.clone().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (26, 2, 28)
        );
    }

    #[test]
    fn tool_calls_arrive_whole_with_object_arguments() {
        let mut p = ChatStream::new("ollama", "m");
        let out = p
            .parse(&line(r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}},{"weird":true}]},"done":false}"#))
            .unwrap();
        let c = chat_chunks(&out);
        let call = &c[0].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.index, 0);
        assert!(call.id.as_deref().unwrap().starts_with("call_"));
        assert_eq!(
            call.function.as_ref().unwrap().arguments.as_deref(),
            Some(r#"{"city":"Tokyo"}"#)
        );
        let out = p
            .parse(&line(r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":1}"#))
            .unwrap();
        let finish = chat_chunks(&out)
            .iter()
            .find_map(|c| c.choices.first()?.finish_reason.clone());
        assert_eq!(finish.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn error_lines_and_garbage_are_errors() {
        let mut p = ChatStream::new("ollama", "m");
        let e = p
            .parse(&line(
                r#"{"error":"an error was encountered while running the model"}"#,
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamServer);
        assert!(e.message.contains("while running the model"));
        let e = p.parse(&line("not json")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }

    #[test]
    fn generate_lines_become_completion_chunks() {
        let mut p = GenerateStream::new("ollama", "m");
        let mut out = p
            .parse(&line(r#"{"model":"m","response":"Hi","done":false}"#))
            .unwrap();
        out.extend(
            p.parse(&line(r#"{"model":"m","response":"","done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#))
                .unwrap(),
        );
        let texts: Vec<String> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(Chunk::Completion(c)) => Some(c),
                _ => None,
            })
            .flat_map(|c| c.choices.iter().map(|ch| ch.text.clone()))
            .collect();
        assert_eq!(texts.concat(), "Hi");
        assert!(matches!(out.last(), Some(StreamEvent::Done)));
    }
}
