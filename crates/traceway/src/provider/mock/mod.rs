//! `mock/<name>`: answers in process with no network, deterministically.
//!
//! The answer is the request body's `mock_response`, else the deployment's, else the last user
//! message echoed back. A `mock_response` of `error:<status>` or `error:<status>:<message>`
//! (or LiteLLM's `litellm.RateLimitError`, `litellm.InternalServerError`, `litellm.Timeout`, …)
//! fails the call with that status instead, so error paths can be exercised without an upstream.
//! `mock_tool_calls` (a list of OpenAI tool calls) makes a chat answer call tools, and
//! `mock_delay` (seconds) delays the answer.

use super::{Chunk, Request, Response};
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionResponse, ChatDelta,
    ChatMessage, CompletionChoice, CompletionResponse, Embedding, EmbeddingResponse,
    EmbeddingUsage, EmbeddingVector, Extra, FunctionCallDelta, MessageContent, Role, ToolCall,
    ToolCallDelta, Usage, unix_now,
};
use serde_json::Value;
use std::time::Duration;

/// Provider id.
pub const ID: &str = "mock";

/// What the mock was told to do for one call.
#[derive(Debug, Clone)]
pub(crate) struct MockPlan {
    text: String,
    tool_calls: Option<Vec<ToolCall>>,
    /// How long to wait before answering.
    pub delay: Option<Duration>,
}

/// Approximate tokens of a text: about four characters a token, at least one for non-empty text.
fn tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4)
}

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..Usage::default()
    }
}

/// Maps an error directive to the error it stands for, if `text` is one.
fn directive_error(text: &str) -> Option<Error> {
    let lite = |kind: ErrorKind, status: Option<u16>| {
        let mut e = Error::new(kind, format!("mock provider raised {text}")).with_provider(ID);
        e.status = status;
        Some(e)
    };
    match text {
        "litellm.RateLimitError" => return lite(ErrorKind::RateLimited, None),
        "litellm.InternalServerError" => return lite(ErrorKind::UpstreamServer, Some(500)),
        "litellm.ServiceUnavailableError" => return lite(ErrorKind::UpstreamServer, Some(503)),
        "litellm.Timeout" => return lite(ErrorKind::Timeout, None),
        "litellm.AuthenticationError" => return lite(ErrorKind::Authentication, None),
        "litellm.BadRequestError" => return lite(ErrorKind::BadRequest, None),
        "litellm.ContextWindowExceededError" => {
            return lite(ErrorKind::BadRequest, None).map(|e| Error {
                code: Some("context_length_exceeded".into()),
                ..e
            });
        }
        "litellm.ContentPolicyViolationError" => {
            return lite(ErrorKind::BadRequest, None).map(|e| Error {
                code: Some("content_policy_violation".into()),
                ..e
            });
        }
        "litellm.NotFoundError" => return lite(ErrorKind::NotFound, None),
        "litellm.APIConnectionError" => return lite(ErrorKind::Connection, None),
        _ => {}
    }
    let rest = text.strip_prefix("error:")?;
    let (status, message) = match rest.split_once(':') {
        Some((s, m)) => (s, m.to_owned()),
        None => (rest, String::new()),
    };
    let status: u16 = status
        .trim()
        .parse()
        .ok()
        .filter(|s| (400..=599).contains(s))?;
    let kind = ErrorKind::from_upstream_status(status);
    let message = if message.is_empty() {
        format!("mock provider returned {status} as asked by mock_response")
    } else {
        message
    };
    let mut e = Error::new(kind, message).with_provider(ID);
    e.status = Some(status);
    if kind == ErrorKind::RateLimited {
        e.retry_after = Some(Duration::from_secs(1));
    }
    Some(e)
}

fn field<'a>(request: &'a Extra, params: &'a Extra, name: &str) -> Option<&'a Value> {
    request.get(name).or_else(|| params.get(name))
}

/// The most choices one request may ask for (OpenAI's limit): the mock builds every one in
/// memory, so `n: 1000000` must be refused, not answered.
pub const MAX_CHOICES: u32 = 128;

/// Works out what the mock answers for `request`, or the error it was told to raise.
pub(crate) fn plan(
    request: &Request,
    deployment_response: Option<&str>,
    params: &Extra,
) -> Result<MockPlan, Error> {
    let n = match request {
        Request::Chat(r) => r.n,
        Request::Completion(r) => r.n,
        Request::Embedding(_) => None,
    };
    if let Some(n) = n.filter(|n| *n > MAX_CHOICES) {
        return Err(Error::bad_request(
            format!("n must be at most {MAX_CHOICES}, got {n}"),
            Some("n"),
        ));
    }
    let extra = request.extra();
    let configured = extra
        .get("mock_response")
        .and_then(Value::as_str)
        .or(deployment_response);
    if let Some(err) = configured.and_then(directive_error) {
        return Err(err);
    }
    let delay = field(extra, params, "mock_delay")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        // `try_`: a value past what a Duration holds (`1e308`) would panic the request.
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    let tool_calls = match field(extra, params, "mock_tool_calls") {
        Some(v) => Some(
            serde_json::from_value::<Vec<ToolCall>>(v.clone()).map_err(|e| {
                Error::bad_request(
                    format!("mock_tool_calls is not a list of tool calls: {e}"),
                    Some("mock_tool_calls"),
                )
            })?,
        ),
        None => None,
    };
    let text = match configured {
        Some(t) => t.to_owned(),
        None => match request {
            Request::Chat(r) => r
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(ChatMessage::text)
                .unwrap_or_default(),
            Request::Completion(r) => r.prompt_text(),
            Request::Embedding(_) => String::new(),
        },
    };
    Ok(MockPlan {
        text,
        tool_calls,
        delay,
    })
}

fn prompt_tokens(request: &Request) -> u64 {
    match request {
        Request::Chat(r) => {
            r.messages
                .iter()
                .map(|m| tokens(&m.text()) + 3)
                .sum::<u64>()
                + 3
        }
        Request::Completion(r) => tokens(&r.prompt_text()).max(1),
        Request::Embedding(r) => r.input.texts().iter().map(|t| tokens(t).max(1)).sum(),
    }
}

fn choices(request: &Request) -> u32 {
    match request {
        Request::Chat(r) => r.n.unwrap_or(1).max(1),
        Request::Completion(r) => r.n.unwrap_or(1).max(1),
        Request::Embedding(_) => 1,
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A deterministic unit vector for `text`: FNV-1a seeds a small xorshift generator.
fn vector(text: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f64> = (0..dims)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h % 2_000_001) as f64 / 1_000_000.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The complete answer for `request`.
pub(crate) fn respond(model: &str, request: &Request, plan: &MockPlan) -> Response {
    let prompt = prompt_tokens(request);
    let completion = tokens(&plan.text);
    let n = choices(request);
    match request {
        Request::Chat(_) => {
            let finish = if plan.tool_calls.is_some() {
                "tool_calls"
            } else {
                "stop"
            };
            Response::Chat(ChatCompletionResponse {
                id: new_id("chatcmpl-mock"),
                object: "chat.completion".into(),
                created: unix_now(),
                model: model.to_owned(),
                choices: (0..n)
                    .map(|index| ChatChoice {
                        index,
                        message: ChatMessage {
                            role: Role::Assistant,
                            content: if plan.tool_calls.is_some() && plan.text.is_empty() {
                                None
                            } else {
                                Some(MessageContent::Text(plan.text.clone()))
                            },
                            name: None,
                            tool_calls: plan.tool_calls.clone(),
                            tool_call_id: None,
                            extra: Extra::new(),
                        },
                        finish_reason: Some(finish.into()),
                        logprobs: None,
                        extra: Extra::new(),
                    })
                    .collect(),
                usage: Some(usage(prompt, completion * u64::from(n))),
                system_fingerprint: None,
                extra: Extra::new(),
            })
        }
        Request::Completion(_) => Response::Completion(CompletionResponse {
            id: new_id("cmpl-mock"),
            object: "text_completion".into(),
            created: unix_now(),
            model: model.to_owned(),
            choices: (0..n)
                .map(|index| CompletionChoice {
                    text: plan.text.clone(),
                    index,
                    finish_reason: Some("stop".into()),
                    logprobs: None,
                    extra: Extra::new(),
                })
                .collect(),
            usage: Some(usage(prompt, completion * u64::from(n))),
            system_fingerprint: None,
            extra: Extra::new(),
        }),
        Request::Embedding(r) => {
            let dims = r.dimensions.map_or(8, |d| d.clamp(1, 4096) as usize);
            Response::Embedding(EmbeddingResponse {
                object: "list".into(),
                data: r
                    .input
                    .texts()
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        Embedding::new(i as u32, EmbeddingVector::from_floats(&vector(t, dims)))
                    })
                    .collect(),
                model: model.to_owned(),
                usage: Some(EmbeddingUsage {
                    prompt_tokens: prompt,
                    total_tokens: prompt,
                    extra: Extra::new(),
                }),
                extra: Extra::new(),
            })
        }
    }
}

/// Splits text into word pieces that keep their trailing whitespace, so joined they give it back.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if !c.is_whitespace() && in_space {
            out.push(std::mem::take(&mut cur));
        }
        in_space = c.is_whitespace();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The streamed answer for `request`: a role chunk, word chunks, a finish chunk and a usage chunk.
pub(crate) fn stream(model: &str, request: &Request, plan: &MockPlan) -> Vec<Chunk> {
    let prompt = prompt_tokens(request);
    let completion = tokens(&plan.text);
    let n = choices(request);
    let created = unix_now();
    match request {
        Request::Completion(_) => {
            let id = new_id("cmpl-mock");
            let chunk = |choices: Vec<CompletionChoice>, usage: Option<Usage>| {
                Chunk::Completion(CompletionResponse {
                    id: id.clone(),
                    object: "text_completion".into(),
                    created,
                    model: model.to_owned(),
                    choices,
                    usage,
                    system_fingerprint: None,
                    extra: Extra::new(),
                })
            };
            let choice = |index: u32, text: String, finish: Option<&str>| CompletionChoice {
                text,
                index,
                finish_reason: finish.map(str::to_owned),
                logprobs: None,
                extra: Extra::new(),
            };
            let mut out = Vec::new();
            for index in 0..n {
                for p in pieces(&plan.text) {
                    out.push(chunk(vec![choice(index, p, None)], None));
                }
                out.push(chunk(
                    vec![choice(index, String::new(), Some("stop"))],
                    None,
                ));
            }
            out.push(chunk(
                Vec::new(),
                Some(usage(prompt, completion * u64::from(n))),
            ));
            out
        }
        _ => {
            let id = new_id("chatcmpl-mock");
            let chunk = |choices: Vec<ChatChunkChoice>, usage: Option<Usage>| {
                Chunk::Chat(ChatCompletionChunk {
                    id: id.clone(),
                    object: "chat.completion.chunk".into(),
                    created,
                    model: model.to_owned(),
                    choices,
                    usage,
                    system_fingerprint: None,
                    extra: Extra::new(),
                })
            };
            let choice = |index: u32, delta: ChatDelta, finish: Option<&str>| ChatChunkChoice {
                index,
                delta,
                finish_reason: finish.map(str::to_owned),
                logprobs: None,
                extra: Extra::new(),
            };
            let mut out = Vec::new();
            for index in 0..n {
                let role = ChatDelta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..ChatDelta::default()
                };
                out.push(chunk(vec![choice(index, role, None)], None));
                for p in pieces(&plan.text) {
                    let delta = ChatDelta {
                        content: Some(p),
                        ..ChatDelta::default()
                    };
                    out.push(chunk(vec![choice(index, delta, None)], None));
                }
                if let Some(calls) = &plan.tool_calls {
                    for (i, call) in calls.iter().enumerate() {
                        let delta = ChatDelta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: i as u32,
                                id: Some(call.id.clone()),
                                kind: Some("function".into()),
                                function: Some(FunctionCallDelta {
                                    name: Some(call.function.name.clone()),
                                    arguments: Some(call.function.arguments.clone()),
                                }),
                                ..Default::default()
                            }]),
                            ..ChatDelta::default()
                        };
                        out.push(chunk(vec![choice(index, delta, None)], None));
                    }
                }
                let finish = if plan.tool_calls.is_some() {
                    "tool_calls"
                } else {
                    "stop"
                };
                out.push(chunk(
                    vec![choice(index, ChatDelta::default(), Some(finish))],
                    None,
                ));
            }
            out.push(chunk(
                Vec::new(),
                Some(usage(prompt, completion * u64::from(n))),
            ));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ChatCompletionRequest;

    fn chat(text: &str) -> Request {
        Request::Chat(ChatCompletionRequest::new(
            "m",
            vec![ChatMessage::new(Role::User, text)],
        ))
    }

    #[test]
    fn echoes_the_last_user_message_and_streams_it_back_whole() {
        let req = chat("hello there  world");
        let p = plan(&req, None, &Extra::new()).unwrap();
        let Response::Chat(r) = respond("mock", &req, &p) else {
            panic!()
        };
        assert_eq!(r.choices[0].message.text(), "hello there  world");
        let u = r.usage.unwrap();
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
        let text: String = stream("mock", &req, &p)
            .into_iter()
            .filter_map(|c| match c {
                Chunk::Chat(c) => c.choices.first().and_then(|ch| ch.delta.content.clone()),
                Chunk::Completion(_) => None,
            })
            .collect();
        assert_eq!(text, "hello there  world");
    }

    #[test]
    fn error_directives_fail_with_their_status() {
        let mut e = Extra::new();
        for (text, status) in [
            ("error:429", 429),
            ("error:503:down for maintenance", 503),
            ("litellm.RateLimitError", 429),
            ("litellm.Timeout", 504),
        ] {
            let err = plan(&chat("x"), Some(text), &e).unwrap_err();
            assert_eq!(err.status(), status, "{text}");
        }
        e.insert("mock_delay".into(), serde_json::json!(0.5));
        assert_eq!(
            plan(&chat("x"), Some("ok"), &e).unwrap().delay,
            Some(Duration::from_millis(500))
        );
        assert!(directive_error("error:abc").is_none());
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        assert_eq!(vector("a", 8), vector("a", 8));
        assert_ne!(vector("a", 8), vector("b", 8));
        let n: f64 = vector("abc", 16).iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-9);
    }
}
