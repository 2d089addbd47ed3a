//! Gemini stream events (`streamGenerateContent?alt=sse`) → OpenAI chat chunks.
//!
//! Every event is a whole `GenerateContentResponse` holding the next piece of each candidate;
//! function calls arrive whole. The stream has no end marker: once every candidate has a
//! finish reason, a usage-only chunk (from the latest `usageMetadata`, which is cumulative)
//! closes it, as OpenAI sends with `stream_options.include_usage`.

use super::wire::{self, GenerateContentResponse};
use super::{ID, finish_reason, tool_call};
use crate::error::Error;
use crate::provider::common;
use crate::provider::{Chunk, StreamEvent, StreamParser};
use crate::sse::SseEvent;
use crate::types::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, Extra, FunctionCallDelta, Role, ToolCallDelta,
    unix_now,
};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
struct Candidate {
    role_sent: bool,
    tools: u32,
    finished: bool,
}

/// State of one Gemini stream.
#[derive(Debug)]
pub struct GeminiStream {
    id: String,
    model: String,
    created: i64,
    usage: Option<wire::UsageMetadata>,
    candidates: BTreeMap<u32, Candidate>,
    usage_sent: bool,
}

impl GeminiStream {
    /// A parser for a stream of `model` (named in chunks until Gemini names its version).
    pub fn new(model: &str) -> Self {
        GeminiStream {
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            usage: None,
            candidates: BTreeMap::new(),
            usage_sent: false,
        }
    }

    fn chunk(
        &self,
        choices: Vec<ChatChunkChoice>,
        usage: Option<crate::types::Usage>,
    ) -> StreamEvent {
        StreamEvent::Chunk(Chunk::Chat(ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            system_fingerprint: None,
            extra: Extra::new(),
        }))
    }

    fn on_response(&mut self, resp: GenerateContentResponse) -> Vec<StreamEvent> {
        if self.id.is_empty() {
            self.id = resp.response_id.clone().unwrap_or_else(common::response_id);
        }
        if let Some(v) = &resp.model_version {
            self.model.clone_from(v);
        }
        if resp.usage_metadata.is_some() {
            self.usage = resp.usage_metadata;
        }
        let mut choices = Vec::new();
        let blocked = resp.candidates.is_empty() && resp.prompt_feedback.is_some();
        for (pos, cand) in resp.candidates.into_iter().enumerate() {
            let index = cand.index.unwrap_or(pos as u32);
            let state = self.candidates.entry(index).or_default();
            let mut delta = ChatDelta::default();
            if !state.role_sent {
                state.role_sent = true;
                delta.role = Some(Role::Assistant);
            }
            let mut reasoning: Option<String> = None;
            for part in cand.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = &part.function_call {
                    let call = tool_call(call, part.thought_signature.as_ref());
                    delta
                        .tool_calls
                        .get_or_insert_with(Vec::new)
                        .push(ToolCallDelta {
                            index: state.tools,
                            id: Some(call.id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                            // The thought signature, which the next turn must send back.
                            extra: call.extra,
                        });
                    state.tools += 1;
                } else if let Some(t) = part.text {
                    let into = if part.thought == Some(true) {
                        reasoning.get_or_insert_with(String::new)
                    } else {
                        delta.content.get_or_insert_with(String::new)
                    };
                    into.push_str(&t);
                }
            }
            if let Some(r) = reasoning {
                delta
                    .extra
                    .insert("reasoning_content".into(), Value::String(r));
            }
            let finish = cand.finish_reason.as_deref().map(|r| {
                state.finished = true;
                finish_reason(r, state.tools > 0).to_owned()
            });
            choices.push(ChatChunkChoice {
                index,
                delta,
                finish_reason: finish,
                logprobs: None,
                extra: Extra::new(),
            });
        }
        if blocked {
            self.candidates.insert(
                0,
                Candidate {
                    role_sent: true,
                    tools: 0,
                    finished: true,
                },
            );
            choices.push(ChatChunkChoice {
                index: 0,
                delta: ChatDelta {
                    role: Some(Role::Assistant),
                    ..ChatDelta::default()
                },
                finish_reason: Some("content_filter".into()),
                logprobs: None,
                extra: Extra::new(),
            });
        }
        let mut out = Vec::new();
        if !choices.is_empty() {
            out.push(self.chunk(choices, None));
        }
        let all_finished =
            !self.candidates.is_empty() && self.candidates.values().all(|c| c.finished);
        if all_finished && !self.usage_sent {
            self.usage_sent = true;
            let usage = self.usage.as_ref().map(super::usage);
            out.push(self.chunk(Vec::new(), Some(usage.unwrap_or_default())));
        }
        if out.is_empty() {
            out.push(StreamEvent::Skip);
        }
        out
    }
}

impl StreamParser for GeminiStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(vec![StreamEvent::Skip]);
        }
        if data == "[DONE]" {
            return Ok(vec![StreamEvent::Done]);
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| crate::provider::openai::invalid(ID, "a stream event", e))?;
        if let Some(err) = value.get("error") {
            let detail: wire::ErrorDetail = serde_json::from_value(err.clone())
                .map_err(|e| crate::provider::openai::invalid(ID, "a stream error", e))?;
            return Err(super::stream_error(&detail));
        }
        let resp: GenerateContentResponse = serde_json::from_value(value)
            .map_err(|e| crate::provider::openai::invalid(ID, "a stream event", e))?;
        Ok(self.on_response(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn run(events: &[&str]) -> Result<Vec<StreamEvent>, Error> {
        let mut p = GeminiStream::new("gemini-2.0-flash");
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
    fn text_then_a_call_then_usage_once_finished() {
        let out = run(&[
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me "}]},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.0-flash-001","responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"check."},{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":7,"totalTokenCount":15},"modelVersion":"gemini-2.0-flash-001","responseId":"r1"}"#,
        ])
        .unwrap();
        let c = chunks(&out);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.id == "r1"));
        assert_eq!(c[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(c[0].choices[0].delta.content.as_deref(), Some("Let me "));
        let call = &c[1].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            call.function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"city\":\"Paris\"}")
        );
        assert_eq!(c[1].choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert!(c[2].choices.is_empty());
        assert_eq!(c[2].usage.as_ref().unwrap().total_tokens, 15);
        assert_eq!(c[2].model, "gemini-2.0-flash-001");
    }

    #[test]
    fn a_streamed_calls_thought_signature_reaches_the_client() {
        let out = run(&[
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQB0e2K"},{"functionCall":{"name":"get_time","args":{}}}]},"finishReason":"STOP","index":0}],"responseId":"r2"}"#,
        ])
        .unwrap();
        let calls = chunks(&out)[0].choices[0].delta.tool_calls.clone().unwrap();
        let wire = serde_json::to_value(&calls).unwrap();
        assert_eq!(
            wire[0]["provider_specific_fields"]["thought_signature"],
            "CiQB0e2K"
        );
        assert!(wire[1].get("provider_specific_fields").is_none());
        assert_eq!(wire[1]["index"], 1);
    }

    #[test]
    fn error_events_and_garbage_are_errors() {
        let e = run(&[
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        ])
        .unwrap_err();
        assert_eq!((e.kind, e.status()), (ErrorKind::UpstreamServer, 503));
        let e = run(&[r#"{"candidates":"nope"}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }
}
