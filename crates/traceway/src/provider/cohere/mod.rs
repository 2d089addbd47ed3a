//! `cohere/<model>` (and LiteLLM's `cohere_chat/<model>`): Cohere's v2 API. Chat through
//! `POST /v2/chat` (server-sent events when streaming), embeddings through `POST /v2/embed`.
//!
//! The key is the deployment's `api_key`, else `COHERE_API_KEY`, else `CO_API_KEY` (the Cohere
//! SDK's name), sent as `Authorization: Bearer`.

mod stream;
mod wire;

use super::{HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest};
use crate::error::{Error, ErrorKind};
use crate::provider::openai::{invalid, retry_after};
use crate::types::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ContentPart, Embedding,
    EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, Extra, FunctionCall,
    GATEWAY_ONLY_FIELDS, KnownContentPart, MessageContent, Role, ToolCall, Usage, unix_now,
};
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

/// Provider id.
pub const ID: &str = "cohere";
/// LiteLLM's prefix for Cohere's chat API, served by the same translation.
pub const CHAT_ID: &str = "cohere_chat";
/// The OTel `gen_ai.provider.name` of Cohere.
pub const SEMCONV_NAME: &str = "cohere";
/// Where requests go when the deployment names no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.cohere.com";
/// Env var: the Cohere key (LiteLLM's name), read first.
pub const COHERE_API_KEY: &str = "COHERE_API_KEY";
/// Env var: the Cohere key (the Cohere SDK's name), read when `COHERE_API_KEY` is unset.
pub const CO_API_KEY: &str = "CO_API_KEY";

/// OpenAI request fields with no Cohere counterpart, dropped rather than sent.
const OPENAI_ONLY_FIELDS: &[&str] = &[
    "store",
    "modalities",
    "service_tier",
    "prediction",
    "audio",
    "web_search_options",
    "reasoning_effort",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
    "n",
    "user",
];

/// LiteLLM `litellm_params` that configure the gateway, never a body field.
const SETTINGS: &[&str] = &[
    "drop_params",
    "additional_drop_params",
    "api_version",
    "api_type",
    "organization",
];

/// Cohere's v2 wire format, under one of its prefixes.
#[derive(Debug, Clone, Copy)]
pub struct Cohere {
    id: &'static str,
}

impl Cohere {
    /// The provider under prefix `id` (`cohere` or `cohere_chat`).
    pub const fn new(id: &'static str) -> Self {
        Cohere { id }
    }
}

impl Default for Cohere {
    fn default() -> Self {
        Cohere::new(ID)
    }
}

/// Cohere's `finish_reason` as OpenAI's.
pub(crate) fn finish_reason(reason: Option<&str>, called_tools: bool) -> String {
    match reason {
        Some("COMPLETE") | Some("STOP_SEQUENCE") | None => {
            if called_tools {
                "tool_calls"
            } else {
                "stop"
            }
        }
        Some("MAX_TOKENS") => "length",
        Some("TOOL_CALL") => "tool_calls",
        Some("ERROR") => "error",
        Some("TIMEOUT") => "timeout",
        Some(other) => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

/// Cohere usage as OpenAI usage: the tokens the model processed, or the billed units when the
/// response gives only those.
pub(crate) fn usage(u: Option<&wire::CohereUsage>) -> Usage {
    let pick = |f: fn(&wire::Tokens) -> Option<f64>| -> u64 {
        u.and_then(|u| {
            u.tokens
                .as_ref()
                .and_then(f)
                .or_else(|| u.billed_units.as_ref().and_then(f))
        })
        .map(|v| v.max(0.0).round() as u64)
        .unwrap_or(0)
    };
    let prompt = pick(|t| t.input_tokens);
    let completion = pick(|t| t.output_tokens);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..Usage::default()
    }
}

/// The API root: `api_base` without a trailing `/`, `/v2`, `/v2/chat` or `/v1`, so both
/// `https://api.cohere.com` and `https://api.cohere.com/v2` work.
fn api_root<'a>(target: &Target<'a>) -> &'a str {
    let base = target
        .api_base
        .unwrap_or(DEFAULT_API_BASE)
        .trim_end_matches('/');
    ["/v2/chat", "/v2/embed", "/v2", "/v1"]
        .iter()
        .find_map(|s| base.strip_suffix(s))
        .unwrap_or(base)
}

fn message(m: &ChatMessage) -> Result<Value, Error> {
    let mut out = Map::new();
    match m.role {
        Role::System | Role::Developer => {
            out.insert("role".into(), json!("system"));
            out.insert("content".into(), json!(m.text()));
        }
        Role::User => {
            out.insert("role".into(), json!("user"));
            let content = match &m.content {
                None => json!(""),
                Some(MessageContent::Text(t)) => json!(t),
                Some(MessageContent::Parts(parts)) => {
                    let items: Result<Vec<Value>, Error> = parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Known(KnownContentPart::Text { text, .. }) => {
                                Ok(json!({"type": "text", "text": text}))
                            }
                            ContentPart::Known(KnownContentPart::ImageUrl {
                                image_url, ..
                            }) => {
                                let image = match image_url {
                                    Value::String(url) => json!({"url": url}),
                                    other => other.clone(),
                                };
                                Ok(json!({"type": "image_url", "image_url": image}))
                            }
                            ContentPart::Unknown(v) => {
                                let kind =
                                    v.get("type").and_then(Value::as_str).unwrap_or("unknown");
                                Err(Error::bad_request(
                                    format!(
                                        "cohere: content part type \"{kind}\" is not supported"
                                    ),
                                    Some("messages"),
                                ))
                            }
                        })
                        .collect();
                    Value::Array(items?)
                }
            };
            out.insert("content".into(), content);
        }
        Role::Assistant => {
            out.insert("role".into(), json!("assistant"));
            let text = m.text();
            if !text.is_empty() {
                out.insert("content".into(), json!(text));
            }
            if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                out.insert(
                    "tool_calls".into(),
                    Value::Array(
                        calls
                            .iter()
                            .map(|c| {
                                json!({"id": c.id, "type": "function", "function": {
                                    "name": c.function.name, "arguments": c.function.arguments}})
                            })
                            .collect(),
                    ),
                );
            }
            // The plan Cohere gave with its tool calls, handed back by the client.
            if let Some(plan) = m.extra.get("tool_plan").filter(|p| p.is_string()) {
                out.insert("tool_plan".into(), plan.clone());
            }
        }
        Role::Tool | Role::Function => {
            let Some(id) = &m.tool_call_id else {
                return Err(Error::bad_request(
                    "a tool message needs the tool_call_id of the call it answers",
                    Some("messages"),
                ));
            };
            out.insert("role".into(), json!("tool"));
            out.insert("tool_call_id".into(), json!(id));
            out.insert("content".into(), json!(m.text()));
        }
    }
    Ok(Value::Object(out))
}

fn chat_body(target: &Target<'_>, r: &ChatCompletionRequest) -> Result<Value, Error> {
    let messages: Result<Vec<Value>, Error> = r.messages.iter().map(message).collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("messages".into(), Value::Array(messages?));
    body.insert("stream".into(), json!(r.is_stream()));
    let mut tools: Vec<&crate::types::Tool> = r.tools.iter().flatten().collect();
    match &r.tool_choice {
        None => {}
        Some(Value::String(s)) => match s.as_str() {
            "auto" => {}
            "required" => {
                body.insert("tool_choice".into(), json!("REQUIRED"));
            }
            "none" => {
                body.insert("tool_choice".into(), json!("NONE"));
            }
            other => {
                return Err(Error::bad_request(
                    format!("tool_choice \"{other}\" is not one of auto, required, none"),
                    Some("tool_choice"),
                ));
            }
        },
        Some(Value::Object(o)) => {
            // Cohere cannot name a tool to call: offer only that tool, and require a call.
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::bad_request("tool_choice names no function", Some("tool_choice"))
                })?;
            tools.retain(|t| t.function.name == name);
            body.insert("tool_choice".into(), json!("REQUIRED"));
        }
        Some(_) => {
            return Err(Error::bad_request(
                "tool_choice must be a string or an object",
                Some("tool_choice"),
            ));
        }
    }
    if !tools.is_empty() {
        body.insert("tools".into(), json!(tools));
    }
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.to_owned(), v);
        }
    };
    set(
        "max_tokens",
        r.max_completion_tokens.or(r.max_tokens).map(|v| json!(v)),
    );
    set("temperature", r.temperature.map(|v| json!(v)));
    set("p", r.top_p.map(|v| json!(v)));
    set("stop_sequences", r.stop.as_ref().map(|s| json!(s.to_vec())));
    set("seed", r.seed.map(|v| json!(v)));
    set("frequency_penalty", r.frequency_penalty.map(|v| json!(v)));
    set("presence_penalty", r.presence_penalty.map(|v| json!(v)));
    set("logprobs", r.logprobs.map(|v| json!(v)));
    if let Some(f) = r.response_format.as_ref().filter(|f| f.is_json()) {
        let mut format = json!({"type": "json_object"});
        if let Some(schema) = f.extra.get("json_schema").and_then(|s| s.get("schema")) {
            format["json_schema"] = schema.clone();
        }
        body.insert("response_format".into(), format);
    }
    let caller = r
        .extra
        .iter()
        .filter(|(k, _)| !GATEWAY_ONLY_FIELDS.contains(&k.as_str()));
    let deployment = target
        .params
        .iter()
        .filter(|(k, _)| !SETTINGS.contains(&k.as_str()));
    for (k, v) in caller.chain(deployment) {
        let key = match k.as_str() {
            k if OPENAI_ONLY_FIELDS.contains(&k) => continue,
            "top_p" => "p",
            "top_k" => "k",
            "stop" => "stop_sequences",
            "max_completion_tokens" => "max_tokens",
            other => other,
        };
        let value = match (key, v) {
            ("stop_sequences", Value::String(s)) => json!([s]),
            _ => v.clone(),
        };
        body.entry(key).or_insert(value);
    }
    Ok(Value::Object(body))
}

fn embed_body(target: &Target<'_>, r: &EmbeddingRequest) -> Result<Value, Error> {
    let texts = match &r.input {
        EmbeddingInput::One(s) => vec![s.clone()],
        EmbeddingInput::Many(v) => v.clone(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => {
            return Err(Error::bad_request(
                "cohere embeds text input, not token arrays",
                Some("input"),
            ));
        }
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("texts".into(), json!(texts));
    // Only float vectors are read back; OpenAI's `encoding_format` has no Cohere counterpart.
    body.insert("embedding_types".into(), json!(["float"]));
    if let Some(d) = r.dimensions {
        body.insert("output_dimension".into(), json!(d));
    }
    let caller = r
        .extra
        .iter()
        .filter(|(k, _)| !GATEWAY_ONLY_FIELDS.contains(&k.as_str()));
    let deployment = target
        .params
        .iter()
        .filter(|(k, _)| !SETTINGS.contains(&k.as_str()));
    for (k, v) in caller.chain(deployment) {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    body.entry("input_type")
        .or_insert_with(|| json!("search_document"));
    Ok(Value::Object(body))
}

fn chat_response(
    provider: &str,
    model: &str,
    body: &[u8],
) -> Result<ChatCompletionResponse, Error> {
    let r: wire::ChatResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "a response", e))?;
    let mut text = String::new();
    let mut thinking = String::new();
    for item in &r.message.content {
        match item {
            wire::ContentItem::Known(wire::KnownContent::Text { text: t }) => text.push_str(t),
            wire::ContentItem::Known(wire::KnownContent::Thinking { thinking: t }) => {
                thinking.push_str(t)
            }
            wire::ContentItem::Unknown(_) => {}
        }
    }
    let calls: Vec<ToolCall> = r
        .message
        .tool_calls
        .iter()
        .map(|c| ToolCall {
            id: c.id.clone(),
            kind: "function".into(),
            function: FunctionCall {
                name: c.function.name.clone(),
                arguments: c.function.arguments.clone(),
            },
            extra: Extra::new(),
        })
        .collect();
    let mut extra = Extra::new();
    if !thinking.is_empty() {
        extra.insert("reasoning_content".into(), thinking.into());
    }
    if let Some(plan) = r.message.tool_plan.filter(|p| !p.is_empty()) {
        extra.insert("tool_plan".into(), plan.into());
    }
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(MessageContent::Text(text))
    };
    let finish = finish_reason(r.finish_reason.as_deref(), !calls.is_empty());
    Ok(ChatCompletionResponse {
        id: r.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessage {
                role: Role::Assistant,
                content,
                name: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                tool_call_id: None,
                extra,
            },
            finish_reason: Some(finish),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(usage(r.usage.as_ref())),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}

fn embed_response(provider: &str, model: &str, body: &[u8]) -> Result<EmbeddingResponse, Error> {
    let r: wire::EmbedResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "an embeddings response", e))?;
    let tokens = r
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.input_tokens)
        .map(|t| t.max(0.0).round() as u64)
        .unwrap_or(0);
    Ok(EmbeddingResponse {
        object: "list".into(),
        data: r
            .embeddings
            .float
            .into_iter()
            .enumerate()
            .map(|(i, v)| Embedding::new(i as u32, v))
            .collect(),
        model: model.to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

fn to_bytes(value: &Value) -> Result<bytes::Bytes, Error> {
    serde_json::to_vec(value).map(Into::into).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })
}

impl HttpProvider for Cohere {
    fn id(&self) -> &'static str {
        self.id
    }

    fn semconv_name(&self) -> &'static str {
        SEMCONV_NAME
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &[COHERE_API_KEY, CO_API_KEY]
    }

    fn serves_completions(&self) -> bool {
        false
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        let (path, body) = match request {
            Request::Chat(r) => ("/v2/chat", chat_body(target, r)?),
            Request::Embedding(r) => ("/v2/embed", embed_body(target, r)?),
            Request::Completion(_) => {
                return Err(Error::bad_request(
                    "cohere serves chat completions and embeddings; send text completions as a chat request",
                    Some("model"),
                ));
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if request.is_stream() {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        let Some(key) = target.api_key else {
            return Err(Error::new(
                ErrorKind::Authentication,
                format!("no Cohere key: set api_key, {COHERE_API_KEY} or {CO_API_KEY}"),
            )
            .with_provider(self.id));
        };
        let mut v = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
            Error::bad_request(
                "the deployment's api_key contains characters not allowed in an HTTP header",
                None,
            )
        })?;
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
        Ok(UpstreamRequest {
            url: format!("{}{path}", api_root(target)),
            headers,
            body: to_bytes(&body)?,
        })
    }

    fn parse_response(
        &self,
        target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        match operation {
            Operation::Chat => chat_response(self.id, target.model, body).map(Response::Chat),
            Operation::Embedding => {
                embed_response(self.id, target.model, body).map(Response::Embedding)
            }
            Operation::Completion => Err(Error::new(
                ErrorKind::Internal,
                "cohere does not serve text completions",
            )),
        }
    }

    fn stream_parser(&self, target: &Target<'_>, _operation: Operation) -> Box<dyn StreamParser> {
        Box::new(stream::ChatStream::new(self.id, target.model))
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        // 498 is Cohere's "invalid token", 499 a request cancelled upstream.
        let kind = match status {
            498 => ErrorKind::Authentication,
            499 => ErrorKind::UpstreamServer,
            s => ErrorKind::from_upstream_status(s),
        };
        let message = match serde_json::from_slice::<wire::ErrorBody>(body) {
            Ok(b) => b.message,
            Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
        };
        let mut e = Error::new(kind, format!("{} returned {status}: {message}", self.id))
            .with_provider(self.id);
        if kind == ErrorKind::UpstreamServer {
            e.status = Some(if status >= 500 { status } else { 502 });
        }
        e.retry_after = retry_after(headers);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(params: &'a Extra, base: Option<&'a str>) -> Target<'a> {
        Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "command-r-plus-08-2024",
            api_base: base,
            api_key: Some("co-secret"),
            params,
        }
    }

    #[test]
    fn chat_bodies_translate_roles_tools_and_params() {
        let r: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "x",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
                {"role": "assistant", "content": null, "tool_plan": "I will check.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C"}],
            "max_tokens": 50, "top_p": 0.9, "stop": ["END"], "seed": 1, "temperature": 0,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                      {"type": "function", "function": {"name": "other"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_object"},
            "top_k": 5, "user": "u1", "metadata": {"a": 1}
        }))
        .unwrap();
        let mut p = Extra::new();
        p.insert("safety_mode".into(), json!("OFF"));
        p.insert("drop_params".into(), json!(true));
        let up = Cohere::default()
            .build_request(&target(&p, Some("http://h/v2/")), &Request::Chat(r))
            .unwrap();
        assert_eq!(up.url, "http://h/v2/chat");
        assert_eq!(up.headers[header::AUTHORIZATION], "Bearer co-secret");
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(b["model"], "command-r-plus-08-2024");
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            b["messages"][1]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
        );
        assert_eq!(b["messages"][2]["tool_plan"], "I will check.");
        assert_eq!(
            b["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"Paris\"}"
        );
        assert!(b["messages"][2].get("content").is_none());
        assert_eq!(
            b["messages"][3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "18C"})
        );
        assert_eq!(b["tools"].as_array().unwrap().len(), 1);
        assert_eq!(b["tool_choice"], "REQUIRED");
        assert_eq!(b["p"], 0.9);
        assert_eq!(b["k"], 5);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["max_tokens"], 50);
        assert_eq!(b["response_format"], json!({"type": "json_object"}));
        assert_eq!(b["safety_mode"], "OFF");
        for absent in ["metadata", "user", "drop_params", "top_p", "stop"] {
            assert!(b.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn responses_usage_finish_reasons_and_errors() {
        let r = chat_response(ID, "m", br#"{"id":"c14c80c3-18eb-4519-9460-6c92edd8cfb4","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[{"type":"text","text":"LLMs are"}]},"usage":{"billed_units":{"input_tokens":5,"output_tokens":3},"tokens":{"input_tokens":71,"output_tokens":3}}}"#).unwrap();
        assert_eq!(r.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(r.usage.unwrap().prompt_tokens, 71);
        let e = Cohere::default().parse_error(
            498,
            &HeaderMap::new(),
            br#"{"id":"x","message":"invalid api token"}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(e.message.contains("invalid api token"));
        assert!(chat_response(ID, "m", br#"{"id":"x"}"#).is_err());
        let e = Cohere::default()
            .build_request(
                &Target {
                    env: &traceway_otel::env::ProcessEnv,
                    model: "m",
                    api_base: None,
                    api_key: None,
                    params: &Extra::new(),
                },
                &Request::Chat(ChatCompletionRequest::new("m", vec![])),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Authentication);
    }
}
