//! `gemini/<model>`: Google's Gemini API (Google AI Studio) —
//! `POST {api_base}/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:embedContent` (one input) and `:batchEmbedContents` (several).
//!
//! Translation, following LiteLLM's conventions:
//! - `system`/`developer` messages become `systemInstruction`; `assistant` turns are `model`
//!   turns; tool calls become `functionCall` parts and tool messages `functionResponse` parts
//!   (`{"content": <tool output>}`, named after the call they answer); consecutive turns of one
//!   role are merged.
//! - Images and files: data URLs become `inlineData`, other URLs `fileData` (media type from
//!   the extension).
//! - Tools become `functionDeclarations`; their JSON schemas are reduced to the OpenAPI subset
//!   Gemini accepts (unknown keywords dropped, `["T","null"]` types made `nullable`).
//!   `tool_choice`: `auto`/`none` → `AUTO`/`NONE`, `required` → `ANY`, a named function → `ANY`
//!   limited to it.
//! - `generationConfig`: temperature, top_p, max tokens, stop, `n` (`candidateCount`),
//!   penalties, seed, logprobs, JSON `response_format` (`responseMimeType: application/json`,
//!   plus `responseSchema` for `json_schema`), `reasoning_effort` → `thinkingConfig`.
//! - Answers: text parts joined; `thought` parts become `reasoning_content`; function calls
//!   get an id when Gemini gives none, and their `thoughtSignature` is kept in the tool call's
//!   `provider_specific_fields` (streamed ones too, on the tool-call delta) and sent back on the
//!   next turn.
//! - Finish reasons: `STOP` → `stop` (`tool_calls` when the answer calls functions),
//!   `MAX_TOKENS` → `length`, `SAFETY`/`RECITATION`/`BLOCKLIST`/`PROHIBITED_CONTENT`/`SPII` →
//!   `content_filter`; a blocked prompt is one `content_filter` choice.
//! - Usage: `completion_tokens` includes reasoning (`thoughtsTokenCount`, also reported as
//!   `reasoning_tokens`); `cachedContentTokenCount` → `cached_tokens`.

pub mod stream;
pub mod wire;

use super::common::{self, arguments_value};
use super::{HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest};
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    CompletionTokensDetails, ContentPart, Embedding, EmbeddingInput, EmbeddingResponse, Extra,
    FunctionCall, KnownContentPart, MessageContent, PromptTokensDetails, Role, ToolCall, Usage,
    unix_now,
};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use wire::{Content, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part};

/// Provider id.
pub const ID: &str = "gemini";
/// The OTel `gen_ai.provider.name` value.
pub const SEMCONV_NAME: &str = "gcp.gemini";
/// Where requests go when the deployment names no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com";

/// The Gemini API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

/// `{api_base}/v1beta/models/{model}`; an `api_base` that already names a version keeps it.
fn model_url(target: &Target<'_>) -> String {
    let base = target
        .api_base
        .unwrap_or(DEFAULT_API_BASE)
        .trim_end_matches('/');
    let versioned =
        base.ends_with("/v1beta") || base.ends_with("/v1") || base.ends_with("/v1alpha");
    let model = target.model.strip_prefix("models/").unwrap_or(target.model);
    if versioned {
        format!("{base}/models/{model}")
    } else {
        format!("{base}/v1beta/models/{model}")
    }
}

fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

fn media_part(url: &str) -> Part {
    match common::parse_data_url(url) {
        Some((mime, data)) => Part {
            inline_data: Some(json!({"mimeType": mime, "data": data})),
            ..Part::default()
        },
        None => Part {
            file_data: Some(json!({"mimeType": common::mime_from_url(url), "fileUri": url})),
            ..Part::default()
        },
    }
}

fn user_parts(content: &MessageContent) -> Result<Vec<Part>, Error> {
    let parts = match content {
        MessageContent::Text(s) => return Ok(vec![Part::text(s.clone())]),
        MessageContent::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            ContentPart::Known(KnownContentPart::Text { text, .. }) => {
                out.push(Part::text(text.clone()));
            }
            ContentPart::Known(KnownContentPart::ImageUrl { image_url, .. }) => {
                let url = common::image_url(image_url)
                    .ok_or_else(|| Error::bad_request("image_url has no url", Some("messages")))?;
                out.push(media_part(url));
            }
            ContentPart::Unknown(v) => match v.get("type").and_then(Value::as_str) {
                Some("file") => {
                    let url = v
                        .get("file")
                        .and_then(|f| f.get("file_data").or_else(|| f.get("file_id")))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(
                                "a file part needs file.file_data (a data: URL) or a file_id URI",
                                Some("messages"),
                            )
                        })?;
                    out.push(media_part(url));
                }
                Some("input_audio") => {
                    let audio = v.get("input_audio");
                    let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
                    let format = audio
                        .and_then(|a| a.get("format"))
                        .and_then(Value::as_str)
                        .unwrap_or("wav");
                    let data = data.ok_or_else(|| {
                        Error::bad_request("input_audio needs data", Some("messages"))
                    })?;
                    out.push(Part {
                        inline_data: Some(
                            json!({"mimeType": format!("audio/{format}"), "data": data}),
                        ),
                        ..Part::default()
                    });
                }
                other => {
                    return Err(Error::bad_request(
                        format!(
                            "gemini cannot take a content part of type {}",
                            other.unwrap_or("(none)")
                        ),
                        Some("messages"),
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// The JSON-schema keywords Gemini's `Schema` (an OpenAPI subset) accepts.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// A JSON schema reduced to what Gemini accepts, so a schema written for OpenAI is not a 400.
pub fn clean_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        match k.as_str() {
            "type" => match v {
                // ["string", "null"] → "string" + nullable.
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), Value::Array(vec![v.clone()]));
            }
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(n, s)| (n.clone(), clean_schema(s)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), clean_schema(v));
            }
            "anyOf" => {
                let items = v
                    .as_array()
                    .map(|a| a.iter().map(clean_schema).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Array(items));
            }
            key if SCHEMA_KEYS.contains(&key) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// Whether a schema is an object with no properties (Gemini refuses those as parameters).
fn empty_object(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        && schema
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| p.is_empty())
}

fn tool_config(choice: &Value) -> Option<Value> {
    let (mode, names) = match choice {
        Value::String(s) => match s.as_str() {
            "none" => ("NONE", None),
            "required" | "any" => ("ANY", None),
            _ => ("AUTO", None),
        },
        Value::Object(o) => match o.get("function").and_then(|f| f.get("name")) {
            Some(name) => ("ANY", Some(json!([name]))),
            None => return Some(choice.clone()),
        },
        _ => return None,
    };
    let mut cfg = json!({"mode": mode});
    if let Some(n) = names {
        cfg["allowedFunctionNames"] = n;
    }
    Some(json!({"functionCallingConfig": cfg}))
}

/// Translates an OpenAI chat request into a `generateContent` request.
pub fn to_gemini_request(mut chat: ChatCompletionRequest) -> Result<GenerateContentRequest, Error> {
    // A tool message names only its call; Gemini wants the function's name.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for m in &chat.messages {
        for c in m.tool_calls.iter().flatten() {
            call_names.insert(c.id.clone(), c.function.name.clone());
        }
    }
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    for m in &chat.messages {
        match m.role {
            Role::System | Role::Developer => {
                if let Some(c) = &m.content {
                    system.extend(user_parts(c)?);
                }
            }
            Role::User => {
                let parts = match &m.content {
                    Some(c) => user_parts(c)?,
                    None => Vec::new(),
                };
                push_turn(&mut contents, "user", parts);
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = m.text();
                if !text.is_empty() {
                    parts.push(Part::text(text));
                }
                for call in m.tool_calls.iter().flatten() {
                    let signature = call
                        .extra
                        .get("provider_specific_fields")
                        .and_then(|p| p.get("thought_signature"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    parts.push(Part {
                        function_call: Some(wire::FunctionCall {
                            id: None,
                            name: call.function.name.clone(),
                            args: Some(arguments_value(
                                &call.function.arguments,
                                &call.function.name,
                            )?),
                        }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                push_turn(&mut contents, "model", parts);
            }
            Role::Tool | Role::Function => {
                let name = m
                    .tool_call_id
                    .as_ref()
                    .and_then(|id| call_names.get(id))
                    .or(m.name.as_ref())
                    .cloned()
                    .ok_or_else(|| {
                        Error::bad_request(
                            "a tool message must answer a tool call of an earlier assistant message (tool_call_id) or name its function",
                            Some("messages"),
                        )
                    })?;
                let output = m.text();
                let content = match serde_json::from_str::<Value>(&output) {
                    Ok(v @ Value::Object(_)) | Ok(v @ Value::Array(_)) => v,
                    _ => Value::String(output),
                };
                push_turn(
                    &mut contents,
                    "user",
                    vec![Part {
                        function_response: Some(
                            json!({"name": name, "response": {"content": content}}),
                        ),
                        ..Part::default()
                    }],
                );
            }
        }
    }

    let mut extra = std::mem::take(&mut chat.extra);
    common::drop_openai_only(&mut extra);
    let mut gen_extra = Extra::new();
    if let Some(Value::Object(native)) = extra.remove("generationConfig") {
        gen_extra.extend(native);
    }
    if let Some(k) = extra.remove("top_k") {
        gen_extra.insert("topK".into(), k);
    }
    let mut thinking = extra.remove("thinkingConfig");
    if let Some(t) = extra.remove("thinking")
        && thinking.is_none()
    {
        let budget = t.get("budget_tokens").cloned().unwrap_or(json!(0));
        let enabled = t.get("type").and_then(Value::as_str) == Some("enabled");
        thinking = Some(if enabled {
            json!({"thinkingBudget": budget, "includeThoughts": true})
        } else {
            json!({"thinkingBudget": 0})
        });
    }
    if let Some(effort) = extra.remove("reasoning_effort")
        && thinking.is_none()
        && let Some(budget) = effort.as_str().and_then(common::reasoning_budget)
    {
        thinking = Some(if budget > 0 {
            json!({"thinkingBudget": budget, "includeThoughts": true})
        } else {
            json!({"thinkingBudget": 0})
        });
    }
    // Fields this translation writes itself are not also passed through (no duplicate keys).
    for own in ["contents", "systemInstruction", "tools", "toolConfig"] {
        extra.remove(own);
    }

    let (mime, schema) = match chat.response_format.as_ref().filter(|f| f.is_json()) {
        Some(rf) => (
            Some("application/json".to_owned()),
            rf.extra
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .map(clean_schema),
        ),
        None => (None, None),
    };
    let generation = GenerationConfig {
        temperature: chat.temperature,
        top_p: chat.top_p,
        max_output_tokens: chat.max_completion_tokens.or(chat.max_tokens),
        stop_sequences: chat.stop.as_ref().map(|s| s.to_vec()),
        candidate_count: chat.n,
        response_mime_type: mime,
        response_schema: schema,
        presence_penalty: chat.presence_penalty,
        frequency_penalty: chat.frequency_penalty,
        seed: chat.seed,
        response_logprobs: chat.logprobs,
        logprobs: chat.top_logprobs,
        thinking_config: thinking,
        extra: gen_extra,
    };
    let declarations: Vec<Value> = chat
        .tools
        .iter()
        .flatten()
        .map(|t| {
            let mut d = json!({"name": t.function.name});
            if let Some(desc) = &t.function.description {
                d["description"] = Value::String(desc.clone());
            }
            if let Some(p) = t.function.parameters.as_ref().filter(|p| !empty_object(p)) {
                d["parameters"] = clean_schema(p);
            }
            d
        })
        .collect();
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: (!declarations.is_empty())
            .then(|| vec![json!({"functionDeclarations": declarations})]),
        tool_config: chat.tool_choice.as_ref().and_then(tool_config),
        generation_config: (generation != GenerationConfig::default()).then_some(generation),
        extra,
    })
}

/// OpenAI's finish reason for Gemini's (`has_calls`: the candidate calls functions).
pub fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI usage from Gemini's `usageMetadata`.
pub fn usage(u: &wire::UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count.unwrap_or(0);
    let thoughts = u.thoughts_token_count;
    let completion = u.candidates_token_count.unwrap_or(0) + thoughts.unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: u.total_token_count.unwrap_or(prompt + completion),
        prompt_tokens_details: u.cached_content_token_count.map(|c| PromptTokensDetails {
            cached_tokens: Some(c),
            cache_creation_tokens: None,
            extra: Extra::new(),
        }),
        completion_tokens_details: thoughts.map(|t| CompletionTokensDetails {
            reasoning_tokens: Some(t),
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    }
}

/// The tool call for a `functionCall` part, with an id made up when Gemini sends none.
pub(crate) fn tool_call(call: &wire::FunctionCall, signature: Option<&String>) -> ToolCall {
    let mut extra = Extra::new();
    if let Some(sig) = signature {
        extra.insert(
            "provider_specific_fields".into(),
            json!({"thought_signature": sig}),
        );
    }
    ToolCall {
        id: call.id.clone().unwrap_or_else(common::tool_call_id),
        kind: "function".into(),
        function: FunctionCall {
            name: call.name.clone(),
            arguments: call
                .args
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".to_owned()),
        },
        extra,
    }
}

/// Translates a `generateContent` response into an OpenAI chat completion.
pub fn from_gemini_response(resp: GenerateContentResponse, model: &str) -> ChatCompletionResponse {
    let mut choices = Vec::new();
    for (pos, cand) in resp.candidates.into_iter().enumerate() {
        let mut text = String::new();
        let mut reasoning: Option<String> = None;
        let mut calls = Vec::new();
        for part in cand.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = &part.function_call {
                calls.push(tool_call(call, part.thought_signature.as_ref()));
            } else if let Some(t) = part.text {
                if part.thought == Some(true) {
                    reasoning.get_or_insert_with(String::new).push_str(&t);
                } else {
                    text.push_str(&t);
                }
            }
        }
        let mut extra = Extra::new();
        if let Some(r) = reasoning {
            extra.insert("reasoning_content".into(), Value::String(r));
        }
        let finish = cand
            .finish_reason
            .as_deref()
            .map(|r| finish_reason(r, !calls.is_empty()).to_owned());
        choices.push(ChatChoice {
            index: cand.index.unwrap_or(pos as u32),
            message: ChatMessage {
                role: Role::Assistant,
                content: (!text.is_empty() || calls.is_empty())
                    .then_some(MessageContent::Text(text)),
                name: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                tool_call_id: None,
                extra,
            },
            finish_reason: finish,
            logprobs: None,
            extra: Extra::new(),
        });
    }
    if choices.is_empty() && resp.prompt_feedback.is_some() {
        // The prompt itself was blocked: no candidates, one filtered choice as OpenAI would say.
        choices.push(ChatChoice {
            index: 0,
            message: ChatMessage {
                role: Role::Assistant,
                content: None,
                name: None,
                tool_calls: None,
                tool_call_id: None,
                extra: Extra::new(),
            },
            finish_reason: Some("content_filter".into()),
            logprobs: None,
            extra: Extra::new(),
        });
    }
    ChatCompletionResponse {
        id: resp.response_id.unwrap_or_else(common::response_id),
        object: "chat.completion".into(),
        created: unix_now(),
        model: resp.model_version.unwrap_or_else(|| model.to_owned()),
        choices,
        usage: resp.usage_metadata.as_ref().map(usage),
        system_fingerprint: None,
        extra: Extra::new(),
    }
}

/// The error kind for a Google canonical status, when the HTTP status is not enough.
fn kind_for_status(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::BadRequest,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNAVAILABLE" | "UNKNOWN" => ErrorKind::UpstreamServer,
        _ => return None,
    })
}

/// `RetryInfo.retryDelay` (`"37s"`, `"1.5s"`) from a Google error's details.
fn retry_delay(details: &[Value]) -> Option<std::time::Duration> {
    details
        .iter()
        .filter_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .filter_map(|s| s.strip_suffix('s')?.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        // `try_`: a value past what a Duration holds (`1e308s`) would panic the request.
        .find_map(|s| std::time::Duration::try_from_secs_f64(s).ok())
}

fn api_key_invalid(detail: &wire::ErrorDetail) -> bool {
    detail
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
}

fn error_from_detail(http_status: u16, detail: &wire::ErrorDetail, prefix: &str) -> Error {
    let by_status = ErrorKind::from_upstream_status(http_status);
    let mut kind = match (
        by_status,
        detail.status.as_deref().and_then(kind_for_status),
    ) {
        (ErrorKind::InvalidResponse, Some(k)) => k,
        (k, _) => k,
    };
    // Google answers a wrong key with 400 INVALID_ARGUMENT; it is an authentication failure.
    if api_key_invalid(detail) {
        kind = ErrorKind::Authentication;
    }
    let mut e = Error::new(kind, format!("{prefix}: {}", detail.message)).with_provider(ID);
    e.code = detail.status.clone();
    if kind == ErrorKind::UpstreamServer {
        e.status = Some(if (500..=599).contains(&http_status) {
            http_status
        } else {
            500
        });
    }
    e.retry_after = retry_delay(&detail.details);
    e
}

/// An error from a non-2xx answer, keeping Google's message, status and retry delay.
pub fn error_from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    // Google sometimes wraps the error body in a one-element array. (Checked first: serde would
    // also read a struct from an array, field by position, and lose the message.)
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if array {
        serde_json::from_slice::<Vec<wire::ErrorBody>>(body)
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        serde_json::from_slice::<wire::ErrorBody>(body).ok()
    };
    let mut err = match parsed {
        Some(b) => error_from_detail(status, &b.error, &format!("gemini returned {status}")),
        None => {
            let kind = ErrorKind::from_upstream_status(status);
            let mut e = Error::new(
                kind,
                format!(
                    "gemini returned {status} with a body that is not a Google error: {}",
                    common::snippet(body)
                ),
            )
            .with_provider(ID);
            if kind == ErrorKind::UpstreamServer {
                e.status = Some(status);
            }
            e
        }
    };
    if let Some(h) = super::openai::retry_after(headers) {
        err.retry_after = Some(h);
    }
    err
}

/// An error from an `{"error": …}` event in the middle of a stream.
pub(crate) fn stream_error(detail: &wire::ErrorDetail) -> Error {
    let status = detail.code.unwrap_or(500);
    error_from_detail(status, detail, "gemini failed mid-stream")
}

fn embed_request(
    target: &Target<'_>,
    request: &crate::types::EmbeddingRequest,
) -> Result<(String, bytes::Bytes), Error> {
    let texts = match &request.input {
        EmbeddingInput::One(s) => vec![s.clone()],
        EmbeddingInput::Many(v) => v.clone(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => {
            return Err(common::unsupported(
                ID,
                "embeddings of token arrays; send text",
            ));
        }
    };
    let dims = request.dimensions.or_else(|| {
        target
            .params
            .get("dimensions")
            .and_then(Value::as_u64)
            .map(|d| d as u32)
    });
    let task_type = request
        .extra
        .get("task_type")
        .or_else(|| target.params.get("task_type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let one = |text: String, model: Option<String>| wire::EmbedContentRequest {
        model,
        content: Content {
            role: None,
            parts: vec![Part::text(text)],
        },
        task_type: task_type.clone(),
        output_dimensionality: dims,
    };
    let url = model_url(target);
    let model = format!(
        "models/{}",
        target.model.strip_prefix("models/").unwrap_or(target.model)
    );
    match (&request.input, texts.as_slice()) {
        (EmbeddingInput::One(_), [text]) => Ok((
            format!("{url}:embedContent"),
            common::to_body(&one(text.clone(), None))?,
        )),
        _ => Ok((
            format!("{url}:batchEmbedContents"),
            common::to_body(&wire::BatchEmbedContentsRequest {
                requests: texts
                    .into_iter()
                    .map(|t| one(t, Some(model.clone())))
                    .collect(),
            })?,
        )),
    }
}

impl HttpProvider for Gemini {
    fn id(&self) -> &'static str {
        ID
    }

    fn semconv_name(&self) -> &'static str {
        SEMCONV_NAME
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &["GEMINI_API_KEY"]
    }

    fn serves_completions(&self) -> bool {
        false
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        let (url, body) = match request {
            Request::Chat(_) => {
                let chat = common::merged_chat(target, request)?;
                let stream = chat.is_stream();
                let body = common::to_body(&to_gemini_request(chat)?)?;
                let url = if stream {
                    format!("{}:streamGenerateContent?alt=sse", model_url(target))
                } else {
                    format!("{}:generateContent", model_url(target))
                };
                (url, body)
            }
            Request::Embedding(e) => embed_request(target, e)?,
            Request::Completion(_) => {
                return Err(common::unsupported(
                    ID,
                    "text completions; call /chat/completions",
                ));
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = target.api_key {
            headers.insert(
                HeaderName::from_static("x-goog-api-key"),
                common::secret_header(key, "api_key")?,
            );
        }
        Ok(UpstreamRequest { url, headers, body })
    }

    fn parse_response(
        &self,
        target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        let invalid = |e: serde_json::Error| super::openai::invalid(ID, "a response", e);
        match operation {
            Operation::Chat => {
                let resp: GenerateContentResponse =
                    serde_json::from_slice(body).map_err(invalid)?;
                Ok(Response::Chat(from_gemini_response(resp, target.model)))
            }
            Operation::Embedding => {
                let resp: wire::EmbedResponse = serde_json::from_slice(body).map_err(invalid)?;
                let vectors = match (resp.embedding, resp.embeddings) {
                    (Some(one), _) => vec![one],
                    (None, Some(many)) => many,
                    (None, None) => {
                        return Err(super::openai::invalid(
                            ID,
                            "an embeddings response",
                            "it has neither embedding nor embeddings",
                        ));
                    }
                };
                Ok(Response::Embedding(EmbeddingResponse {
                    object: "list".into(),
                    data: vectors
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Embedding::new(i as u32, v.values))
                        .collect(),
                    model: target.model.to_owned(),
                    usage: None,
                    extra: Extra::new(),
                }))
            }
            Operation::Completion => Err(common::unsupported(ID, "text completions")),
        }
    }

    fn stream_parser(&self, target: &Target<'_>, _operation: Operation) -> Box<dyn StreamParser> {
        Box::new(stream::GeminiStream::new(target.model))
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from_response(status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FunctionDef, ResponseFormat, Tool};

    fn msg(role: Role, text: &str) -> ChatMessage {
        ChatMessage::new(role, text)
    }

    fn body(chat: ChatCompletionRequest) -> Value {
        serde_json::to_value(to_gemini_request(chat).unwrap()).unwrap()
    }

    #[test]
    fn roles_tools_and_results_take_geminis_shape() {
        let mut assistant = msg(Role::Assistant, "");
        let mut extra = Extra::new();
        extra.insert(
            "provider_specific_fields".into(),
            json!({"thought_signature": "sig"}),
        );
        assistant.tool_calls = Some(vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            },
            extra,
        }]);
        let mut tool = msg(Role::Tool, "{\"temp\":18}");
        tool.tool_call_id = Some("call_1".into());
        let mut chat = ChatCompletionRequest::new(
            "gemini-2.0-flash",
            vec![
                msg(Role::System, "Be brief."),
                msg(Role::User, "Weather?"),
                assistant,
                tool,
            ],
        );
        chat.temperature = Some(0.0);
        chat.max_tokens = Some(100);
        chat.n = Some(2);
        chat.tools = Some(vec![Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: Some(json!({
                    "type": "object", "additionalProperties": false, "$schema": "x",
                    "properties": {"city": {"type": ["string", "null"], "const": "Paris"}}
                })),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }]);
        chat.tool_choice = Some(json!({"type": "function", "function": {"name": "get_weather"}}));
        let b = body(chat);
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            b["contents"][0],
            json!({"role": "user", "parts": [{"text": "Weather?"}]})
        );
        assert_eq!(
            b["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig"}]})
        );
        assert_eq!(
            b["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "get_weather", "response": {"content": {"temp": 18}}})
        );
        let g = &b["generationConfig"];
        assert_eq!(g["temperature"], 0.0);
        assert_eq!(g["maxOutputTokens"], 100);
        assert_eq!(g["candidateCount"], 2);
        let params = &b["tools"][0]["functionDeclarations"][0]["parameters"];
        assert_eq!(
            params,
            &json!({"type": "object", "properties": {"city": {"type": "string", "nullable": true, "enum": ["Paris"]}}})
        );
        assert_eq!(
            b["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
    }

    #[test]
    fn json_mode_images_and_reasoning_effort() {
        let parts: Vec<ContentPart> = serde_json::from_value(json!([
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
            {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}}
        ]))
        .unwrap();
        let mut user = msg(Role::User, "");
        user.content = Some(MessageContent::Parts(parts));
        let mut chat = ChatCompletionRequest::new("gemini-2.5-flash", vec![user]);
        chat.response_format = Some(ResponseFormat {
            kind: "json_object".into(),
            extra: Extra::new(),
        });
        chat.extra.insert("reasoning_effort".into(), json!("low"));
        chat.extra.insert("safetySettings".into(), json!([]));
        chat.extra.insert("store".into(), json!(false));
        let b = body(chat);
        let p = &b["contents"][0]["parts"];
        assert_eq!(
            p[1]["inlineData"],
            json!({"mimeType": "image/jpeg", "data": "/9j/"})
        );
        assert_eq!(
            p[2]["fileData"],
            json!({"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"})
        );
        assert_eq!(
            b["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(
            b["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        assert_eq!(b["safetySettings"], json!([]));
        assert!(b.get("store").is_none() && b.get("reasoning_effort").is_none());
    }

    #[test]
    fn responses_map_calls_thoughts_usage_and_blocked_prompts() {
        let resp: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Thinking...", "thought": true},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "abc"}
                ]},
                "finishReason": "STOP", "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 20, "thoughtsTokenCount": 5, "cachedContentTokenCount": 4},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
        }))
        .unwrap();
        let r = from_gemini_response(resp, "gemini-2.5-flash");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert!(call.id.starts_with("call_"));
        assert_eq!(call.function.arguments, "{\"city\":\"Paris\"}");
        assert_eq!(
            call.extra["provider_specific_fields"]["thought_signature"],
            "abc"
        );
        assert_eq!(c.message.extra["reasoning_content"], "Thinking...");
        assert!(c.message.content.is_none());
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (10, 10, 20)
        );
        assert_eq!(
            u.completion_tokens_details.unwrap().reasoning_tokens,
            Some(5)
        );
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(4));
        assert_eq!(r.id, "resp-1");

        let blocked: GenerateContentResponse = serde_json::from_value(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}
        }))
        .unwrap();
        let r = from_gemini_response(blocked, "m");
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(finish_reason("RECITATION", false), "content_filter");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    }

    #[test]
    fn google_errors_keep_status_and_retry_delay_and_bad_keys_are_auth() {
        let e = error_from_response(
            400,
            &HeaderMap::new(),
            br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        let e = error_from_response(
            429,
            &HeaderMap::new(),
            br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(37)));
        let e = error_from_response(503, &HeaderMap::new(), br#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#);
        assert_eq!((e.kind, e.status()), (ErrorKind::UpstreamServer, 503));
        assert!(e.message.contains("overloaded"), "{}", e.message);
    }

    #[test]
    fn urls_for_each_operation() {
        let params = Extra::new();
        let t = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "gemini-2.0-flash",
            api_base: None,
            api_key: Some("k"),
            params: &params,
        };
        let chat = |stream: bool| {
            let mut c = ChatCompletionRequest::new("x", vec![msg(Role::User, "hi")]);
            c.stream = Some(stream);
            Request::Chat(c)
        };
        let up = Gemini.build_request(&t, &chat(false)).unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        assert!(up.headers["x-goog-api-key"].is_sensitive());
        let up = Gemini.build_request(&t, &chat(true)).unwrap();
        assert!(up.url.ends_with(":streamGenerateContent?alt=sse"));
        let embed = |input| {
            Request::Embedding(crate::types::EmbeddingRequest {
                model: "x".into(),
                input,
                encoding_format: None,
                dimensions: Some(8),
                user: None,
                extra: Extra::new(),
            })
        };
        let up = Gemini
            .build_request(&t, &embed(EmbeddingInput::One("a".into())))
            .unwrap();
        assert!(up.url.ends_with("/models/gemini-2.0-flash:embedContent"));
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            b,
            json!({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8})
        );
        let up = Gemini
            .build_request(
                &t,
                &embed(EmbeddingInput::Many(vec!["a".into(), "b".into()])),
            )
            .unwrap();
        assert!(up.url.ends_with(":batchEmbedContents"));
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(b["requests"][1]["model"], "models/gemini-2.0-flash");
    }
}
