//! `ollama/<model>` (and LiteLLM's `ollama_chat/<model>`): Ollama's native API. Chat through
//! `/api/chat`, text completions through `/api/generate`, embeddings through `/api/embed`;
//! streams are newline-delimited JSON.
//!
//! The server is `api_base` (or `OLLAMA_API_BASE`), `http://localhost:11434` by default; an
//! `api_key` (or `OLLAMA_API_KEY`) is sent as a bearer token, for Ollama behind a proxy or
//! Ollama's hosted service.

mod stream;
mod wire;

use super::{
    FrameDecoder, HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest,
};
use crate::error::{Error, ErrorKind};
use crate::provider::openai::{invalid, retry_after};
use crate::sse::NdjsonDecoder;
use crate::types::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, CompletionChoice,
    CompletionRequest, CompletionResponse, ContentPart, Embedding, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, Extra, FunctionCall, GATEWAY_ONLY_FIELDS,
    KnownContentPart, MessageContent, Role, ToolCall, Usage, unix_now,
};
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Provider id.
pub const ID: &str = "ollama";
/// LiteLLM's prefix for Ollama's `/api/chat`, served by the same translation.
pub const CHAT_ID: &str = "ollama_chat";
/// The OTel `gen_ai.provider.name` of Ollama.
pub const SEMCONV_NAME: &str = "ollama";
/// Where requests go when neither the deployment nor the environment names a server.
pub const DEFAULT_API_BASE: &str = "http://localhost:11434";
/// Env var: the Ollama server, when the deployment names no `api_base`.
pub const OLLAMA_API_BASE: &str = "OLLAMA_API_BASE";
/// Env var: a key sent as a bearer token, when the deployment names no `api_key`.
pub const OLLAMA_API_KEY: &str = "OLLAMA_API_KEY";

/// Request fields that sit at the top level of an Ollama body; any other extra field is a
/// model option and goes into `options`.
const TOP_LEVEL: &[&str] = &[
    "format",
    "keep_alive",
    "think",
    "template",
    "raw",
    "suffix",
    "context",
    "system",
    "truncate",
    "options",
];

/// OpenAI request fields with no Ollama counterpart, dropped rather than sent as options.
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
];

/// LiteLLM `litellm_params` that configure the gateway, never a body field.
const SETTINGS: &[&str] = &[
    "drop_params",
    "additional_drop_params",
    "api_version",
    "api_type",
    "organization",
];

/// Ollama's native wire format, under one of its prefixes.
#[derive(Debug, Clone, Copy)]
pub struct Ollama {
    id: &'static str,
}

impl Ollama {
    /// The provider under prefix `id` (`ollama` or `ollama_chat`).
    pub const fn new(id: &'static str) -> Self {
        Ollama { id }
    }
}

impl Default for Ollama {
    fn default() -> Self {
        Ollama::new(ID)
    }
}

/// A fresh tool-call id (Ollama's calls often have none).
pub(crate) fn new_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// `done_reason` as an OpenAI `finish_reason`; a turn that called tools finishes with
/// `tool_calls`, which Ollama reports as `stop`.
pub(crate) fn chat_finish_reason(done_reason: Option<&str>, called_tools: bool) -> String {
    if called_tools {
        return "tool_calls".to_owned();
    }
    match done_reason {
        Some("length") => "length",
        Some(other) if other != "load" && other != "unload" => other,
        _ => "stop",
    }
    .to_owned()
}

/// Ollama's token counts as OpenAI usage.
pub(crate) fn usage(prompt: Option<u64>, completion: Option<u64>) -> Usage {
    let (p, c) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
        ..Usage::default()
    }
}

/// Same as [`usage`], for text completions.
pub(crate) fn completion_usage(prompt: Option<u64>, completion: Option<u64>) -> Usage {
    usage(prompt, completion)
}

/// The error for an `{"error": …}` line in a stream that had started fine.
pub(crate) fn mid_stream_error(provider: &str, message: &str) -> Error {
    Error::new(
        ErrorKind::UpstreamServer,
        format!("{provider} failed mid-stream: {message}"),
    )
    .with_provider(provider)
}

fn part_error(message: &str) -> Error {
    Error::bad_request(format!("ollama: {message}"), Some("messages"))
}

/// The base64 data of a `data:` URL image; Ollama takes images inline only.
fn image_data(image_url: &Value) -> Result<String, Error> {
    let url = match image_url {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("url").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    url.strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, data)| data.to_owned())
        .ok_or_else(|| {
            part_error(
                "images must be sent inline as base64 data URLs (data:image/png;base64,…); Ollama does not fetch image URLs",
            )
        })
}

fn message(m: &ChatMessage, tool_names: &HashMap<&str, &str>) -> Result<Value, Error> {
    let role = match m.role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool | Role::Function => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), json!(role));
    let mut text = String::new();
    let mut images = Vec::new();
    match &m.content {
        None => {}
        Some(MessageContent::Text(t)) => text.push_str(t),
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                match p {
                    ContentPart::Known(KnownContentPart::Text { text: t, .. }) => text.push_str(t),
                    ContentPart::Known(KnownContentPart::ImageUrl { image_url, .. }) => {
                        images.push(image_data(image_url)?)
                    }
                    ContentPart::Unknown(v) => {
                        let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
                        return Err(part_error(&format!(
                            "content part type \"{kind}\" is not supported"
                        )));
                    }
                }
            }
        }
    }
    out.insert("content".into(), json!(text));
    if !images.is_empty() {
        out.insert("images".into(), json!(images));
    }
    if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
        let calls: Result<Vec<Value>, Error> = calls
            .iter()
            .map(|c| {
                let args = if c.function.arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&c.function.arguments).map_err(|e| {
                        Error::bad_request(
                            format!("a tool call's arguments are not valid JSON: {e}"),
                            Some("messages"),
                        )
                    })?
                };
                Ok(json!({"function": {"name": c.function.name, "arguments": args}}))
            })
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls?));
    }
    if let Some(name) = m.tool_call_id.as_deref().and_then(|id| tool_names.get(id)) {
        out.insert("tool_name".into(), json!(name));
    }
    Ok(Value::Object(out))
}

/// Sampling settings every Ollama endpoint takes in `options`, from OpenAI's names.
struct Sampling<'a> {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    stop: Option<Vec<String>>,
    seed: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    extra: &'a Extra,
}

/// Fills `body` (and its `options`) from the sampling settings, then from the caller's extra
/// fields and the deployment's params where neither set them.
fn fill(body: &mut Map<String, Value>, s: &Sampling<'_>, target: &Target<'_>) {
    let mut options = Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            options.insert(k.to_owned(), v);
        }
    };
    set("temperature", s.temperature.map(|v| json!(v)));
    set("top_p", s.top_p.map(|v| json!(v)));
    set("num_predict", s.max_tokens.map(|v| json!(v)));
    set("stop", s.stop.as_ref().map(|v| json!(v)));
    set("seed", s.seed.map(|v| json!(v)));
    set("frequency_penalty", s.frequency_penalty.map(|v| json!(v)));
    set("presence_penalty", s.presence_penalty.map(|v| json!(v)));
    let caller = s
        .extra
        .iter()
        .filter(|(k, _)| !GATEWAY_ONLY_FIELDS.contains(&k.as_str()));
    let deployment = target
        .params
        .iter()
        .filter(|(k, _)| !SETTINGS.contains(&k.as_str()));
    for (k, v) in caller.chain(deployment) {
        let key = k.as_str();
        if OPENAI_ONLY_FIELDS.contains(&key) {
            continue;
        }
        if key == "options" {
            if let Value::Object(o) = v {
                for (ok, ov) in o {
                    options.entry(ok.clone()).or_insert_with(|| ov.clone());
                }
            }
        } else if TOP_LEVEL.contains(&key) {
            body.entry(key).or_insert_with(|| v.clone());
        } else {
            let key = match key {
                "max_tokens" | "max_completion_tokens" => "num_predict",
                other => other,
            };
            let value = match (key, v) {
                ("stop", Value::String(s)) => json!([s]),
                _ => v.clone(),
            };
            options.entry(key).or_insert(value);
        }
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
}

fn chat_body(target: &Target<'_>, r: &ChatCompletionRequest) -> Result<Value, Error> {
    let tool_names: HashMap<&str, &str> = r
        .messages
        .iter()
        .flat_map(|m| m.tool_calls.iter().flatten())
        .map(|c| (c.id.as_str(), c.function.name.as_str()))
        .collect();
    let messages: Result<Vec<Value>, Error> =
        r.messages.iter().map(|m| message(m, &tool_names)).collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("messages".into(), Value::Array(messages?));
    body.insert("stream".into(), json!(r.is_stream()));
    let choice_none = matches!(&r.tool_choice, Some(Value::String(s)) if s == "none");
    if let Some(tools) = r.tools.as_ref().filter(|t| !t.is_empty() && !choice_none) {
        body.insert("tools".into(), json!(tools));
    }
    if let Some(f) = r.response_format.as_ref().filter(|f| f.is_json()) {
        let format = f
            .extra
            .get("json_schema")
            .and_then(|s| s.get("schema"))
            .cloned()
            .unwrap_or_else(|| json!("json"));
        body.insert("format".into(), format);
    }
    fill(
        &mut body,
        &Sampling {
            temperature: r.temperature,
            top_p: r.top_p,
            max_tokens: r.max_completion_tokens.or(r.max_tokens),
            stop: r.stop.as_ref().map(|s| s.to_vec()),
            seed: r.seed,
            frequency_penalty: r.frequency_penalty,
            presence_penalty: r.presence_penalty,
            extra: &r.extra,
        },
        target,
    );
    Ok(Value::Object(body))
}

fn generate_body(target: &Target<'_>, r: &CompletionRequest) -> Result<Value, Error> {
    let prompt = match &r.prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => r.prompt_text(),
        _ => {
            return Err(Error::bad_request(
                "ollama completes one prompt string per call",
                Some("prompt"),
            ));
        }
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("prompt".into(), json!(prompt));
    body.insert("stream".into(), json!(r.is_stream()));
    fill(
        &mut body,
        &Sampling {
            temperature: r.temperature,
            top_p: r.top_p,
            max_tokens: r.max_tokens,
            stop: r.stop.as_ref().map(|s| s.to_vec()),
            seed: r.seed,
            frequency_penalty: None,
            presence_penalty: None,
            extra: &r.extra,
        },
        target,
    );
    Ok(Value::Object(body))
}

fn embed_body(target: &Target<'_>, r: &EmbeddingRequest) -> Result<Value, Error> {
    let input = match &r.input {
        EmbeddingInput::One(s) => json!([s]),
        EmbeddingInput::Many(v) => json!(v),
        EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => {
            return Err(Error::bad_request(
                "ollama embeds text input, not token arrays",
                Some("input"),
            ));
        }
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("input".into(), input);
    if let Some(d) = r.dimensions {
        body.insert("dimensions".into(), json!(d));
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
    Ok(Value::Object(body))
}

fn to_bytes(value: &Value) -> Result<bytes::Bytes, Error> {
    serde_json::to_vec(value).map(Into::into).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })
}

fn chat_response(provider: &str, body: &[u8]) -> Result<ChatCompletionResponse, Error> {
    let r: wire::ChatResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "a response", e))?;
    if let Some(e) = r.error {
        return Err(mid_stream_error(provider, &e));
    }
    let m = r
        .message
        .ok_or_else(|| invalid(provider, "a response", "it has no message"))?;
    let calls: Vec<ToolCall> = m
        .tool_calls
        .iter()
        .filter_map(|c| match c {
            wire::ToolCallEntry::Known(c) => Some(c),
            wire::ToolCallEntry::Unknown(_) => None,
        })
        .map(|c| ToolCall {
            id: c.id.clone().unwrap_or_else(new_call_id),
            kind: "function".into(),
            function: FunctionCall {
                name: c.function.name.clone(),
                arguments: c.function.arguments_string(),
            },
            extra: Extra::new(),
        })
        .collect();
    let mut extra = Extra::new();
    if let Some(t) = m.thinking.filter(|t| !t.is_empty()) {
        extra.insert("reasoning_content".into(), t.into());
    }
    let content = if m.content.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(MessageContent::Text(m.content))
    };
    let finish = chat_finish_reason(r.done_reason.as_deref(), !calls.is_empty());
    Ok(ChatCompletionResponse {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        object: "chat.completion".into(),
        created: unix_now(),
        model: r.model,
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
        usage: Some(usage(r.prompt_eval_count, r.eval_count)),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}

fn generate_response(provider: &str, body: &[u8]) -> Result<CompletionResponse, Error> {
    let r: wire::GenerateResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "a response", e))?;
    if let Some(e) = r.error {
        return Err(mid_stream_error(provider, &e));
    }
    Ok(CompletionResponse {
        id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
        object: "text_completion".into(),
        created: unix_now(),
        model: r.model,
        choices: vec![CompletionChoice {
            text: r.response,
            index: 0,
            finish_reason: Some(chat_finish_reason(r.done_reason.as_deref(), false)),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(completion_usage(r.prompt_eval_count, r.eval_count)),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}

fn embed_response(provider: &str, body: &[u8]) -> Result<EmbeddingResponse, Error> {
    let r: wire::EmbedResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "an embeddings response", e))?;
    let tokens = r.prompt_eval_count.unwrap_or(0);
    Ok(EmbeddingResponse {
        object: "list".into(),
        data: r
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(i, v)| Embedding::new(i as u32, v))
            .collect(),
        model: r.model,
        usage: Some(EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

impl HttpProvider for Ollama {
    fn id(&self) -> &'static str {
        self.id
    }

    fn semconv_name(&self) -> &'static str {
        SEMCONV_NAME
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &[OLLAMA_API_KEY]
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        let (path, body) = match request {
            Request::Chat(r) => ("/api/chat", chat_body(target, r)?),
            Request::Completion(r) => ("/api/generate", generate_body(target, r)?),
            Request::Embedding(r) => ("/api/embed", embed_body(target, r)?),
        };
        let env_base = target.env.var(OLLAMA_API_BASE).filter(|v| !v.is_empty());
        let base = target
            .api_base
            .or(env_base.as_deref())
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/');
        // A base given as `…/api` (the API root rather than the server) is accepted too.
        let base = base.strip_suffix("/api").unwrap_or(base);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = target.api_key {
            let mut v = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                Error::bad_request(
                    "the deployment's api_key contains characters not allowed in an HTTP header",
                    None,
                )
            })?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        Ok(UpstreamRequest {
            url: format!("{base}{path}"),
            headers,
            body: to_bytes(&body)?,
        })
    }

    fn parse_response(
        &self,
        _target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        match operation {
            Operation::Chat => chat_response(self.id, body).map(Response::Chat),
            Operation::Completion => generate_response(self.id, body).map(Response::Completion),
            Operation::Embedding => embed_response(self.id, body).map(Response::Embedding),
        }
    }

    fn frame_decoder(&self) -> Box<dyn FrameDecoder> {
        Box::new(NdjsonDecoder::default())
    }

    fn stream_parser(&self, target: &Target<'_>, operation: Operation) -> Box<dyn StreamParser> {
        match operation {
            Operation::Completion => Box::new(stream::GenerateStream::new(self.id, target.model)),
            Operation::Chat | Operation::Embedding => {
                Box::new(stream::ChatStream::new(self.id, target.model))
            }
        }
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        let kind = ErrorKind::from_upstream_status(status);
        let message = match serde_json::from_slice::<wire::ErrorBody>(body) {
            Ok(b) => b.error,
            Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
        };
        let mut e = Error::new(kind, format!("{} returned {status}: {message}", self.id))
            .with_provider(self.id);
        if kind == ErrorKind::UpstreamServer {
            e.status = Some(status);
        }
        e.retry_after = retry_after(headers);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(params: &Extra) -> Target<'_> {
        Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "llama3.2",
            api_base: Some("http://h:11434/"),
            api_key: None,
            params,
        }
    }

    #[test]
    fn chat_bodies_carry_options_tools_images_and_format() {
        let mut r: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "x",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C"}],
            "max_tokens": 100, "temperature": 0, "stop": "END", "seed": 7,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_object"},
            "num_ctx": 4096, "keep_alive": "5m", "metadata": {"a": 1}
        }))
        .unwrap();
        let mut p = Extra::new();
        p.insert("top_k".into(), json!(20));
        p.insert("temperature".into(), json!(0.9));
        p.insert("drop_params".into(), json!(true));
        let up = Ollama::default()
            .build_request(&target(&p), &Request::Chat(r.clone()))
            .unwrap();
        assert_eq!(up.url, "http://h:11434/api/chat");
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(b["model"], "llama3.2");
        assert_eq!(b["stream"], false);
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(b["messages"][1]["images"], json!(["iVBORw0KGgo="]));
        assert_eq!(
            b["messages"][2]["tool_calls"],
            json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])
        );
        assert_eq!(b["messages"][3]["tool_name"], "get_weather");
        assert_eq!(
            b["options"],
            json!({"temperature": 0.0, "num_predict": 100, "stop": ["END"], "seed": 7, "num_ctx": 4096, "top_k": 20})
        );
        assert_eq!(b["keep_alive"], "5m");
        assert_eq!(b["format"], "json");
        assert!(b.get("metadata").is_none() && b.get("drop_params").is_none());
        assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
        r.tool_choice = Some(json!("none"));
        r.response_format = Some(
            serde_json::from_value(
                json!({"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}),
            )
            .unwrap(),
        );
        let up = Ollama::default()
            .build_request(&target(&p), &Request::Chat(r))
            .unwrap();
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(b.get("tools").is_none());
        assert_eq!(b["format"], json!({"type": "object"}));
    }

    #[test]
    fn responses_translate_with_object_arguments_and_errors_keep_the_message() {
        let r = chat_response(
            ID,
            br#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.123648Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done_reason":"stop","done":true,"prompt_eval_count":20,"eval_count":9}"#,
        )
        .unwrap();
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert!(c.message.content.is_none());
        assert_eq!(
            c.message.tool_calls.as_ref().unwrap()[0].function.arguments,
            r#"{"city":"Tokyo"}"#
        );
        assert_eq!(r.usage.unwrap().total_tokens, 29);
        let e = Ollama::default().parse_error(
            404,
            &HeaderMap::new(),
            br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("try pulling it first"));
        assert_eq!(chat_response(ID, b"[1]").unwrap_err().status(), 502);
        assert_eq!(
            chat_response(ID, br#"{"done":true}"#).unwrap_err().status(),
            502
        );
    }
}
