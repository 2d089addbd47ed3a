//! `anthropic/<model>`: Anthropic's Messages API (`POST {api_base}/v1/messages`).
//!
//! Translation, following LiteLLM's conventions:
//! - `system`/`developer` messages become the top-level `system` (text blocks keep
//!   `cache_control`); tool calls become `tool_use` blocks and tool messages `tool_result` blocks
//!   in a user turn; consecutive turns of one role are merged, as Anthropic requires alternation.
//! - `max_tokens` is required upstream: `max_completion_tokens`, else `max_tokens`, else 4096.
//! - `stop` → `stop_sequences`, `user` → `metadata.user_id`, `reasoning_effort` → `thinking`
//!   with LiteLLM's budgets; `n`, penalties, `seed`, `logit_bias` and `logprobs` have no
//!   counterpart and are not sent (`n` > 1 is refused).
//! - `response_format` asking for JSON is served the way LiteLLM does it: a tool named
//!   `json_tool_call` whose input schema is the requested schema (`{"type":"object"}` for
//!   `json_object`), forced with `tool_choice` unless the caller offers tools of its own; the
//!   tool's input comes back as the message content with `finish_reason: "stop"`.
//! - Thinking blocks come back as `reasoning_content` (text) and `thinking_blocks` (the blocks
//!   with their signatures, to send back on the next turn) on the message; block types this
//!   version does not know are kept under `provider_specific_fields.content_blocks`.
//! - Usage: `prompt_tokens` counts every input token (uncached + cache reads + cache writes);
//!   cache reads are `prompt_tokens_details.cached_tokens`, writes `cache_creation_tokens`.

pub mod stream;
pub mod wire;

use super::common::{self, arguments_value};
use super::{HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest};
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ContentPart,
    FunctionCall, KnownContentPart, MessageContent, PromptTokensDetails, Role, ToolCall, Usage,
    unix_now,
};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Value, json};
use wire::{Block, KnownBlock, Message, MessagesRequest, MessagesResponse, SystemPrompt};

/// Provider id.
pub const ID: &str = "anthropic";
/// Where requests go when the deployment names no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the caller gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Name of the tool that carries a JSON `response_format`.
pub const JSON_TOOL_NAME: &str = "json_tool_call";

/// The Anthropic Messages API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

fn push_turn(messages: &mut Vec<Message>, role: &str, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Message {
            role: role.to_owned(),
            content: blocks,
        }),
    }
}

/// An image or PDF block from a data URL or an http(s) URL.
fn media_block(url: &str, extra: crate::types::Extra) -> Result<Block, Error> {
    if let Some((mime, data)) = common::parse_data_url(url) {
        let source = json!({"type": "base64", "media_type": mime, "data": data});
        return Ok(Block::Known(if mime == "application/pdf" {
            KnownBlock::Document { source, extra }
        } else {
            KnownBlock::Image { source, extra }
        }));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let source = json!({"type": "url", "url": url});
        return Ok(Block::Known(
            if common::mime_from_url(url) == "application/pdf" {
                KnownBlock::Document { source, extra }
            } else {
                KnownBlock::Image { source, extra }
            },
        ));
    }
    Err(Error::bad_request(
        "an image_url must be a data: URL with base64 data or an http(s) URL",
        Some("messages"),
    ))
}

/// `cache_control` (and nothing else) from an OpenAI part's extra fields.
fn cache_control(extra: &crate::types::Extra) -> crate::types::Extra {
    let mut out = crate::types::Extra::new();
    if let Some(c) = extra.get("cache_control") {
        out.insert("cache_control".into(), c.clone());
    }
    out
}

/// Content blocks of a user (or tool result) content.
fn user_blocks(content: &MessageContent) -> Result<Vec<Block>, Error> {
    let parts = match content {
        MessageContent::Text(s) => return Ok(vec![Block::text(s.clone())]),
        MessageContent::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            ContentPart::Known(KnownContentPart::Text { text, extra }) => {
                out.push(Block::Known(KnownBlock::Text {
                    text: text.clone(),
                    extra: cache_control(extra),
                }));
            }
            ContentPart::Known(KnownContentPart::ImageUrl { image_url, extra }) => {
                let url = common::image_url(image_url)
                    .ok_or_else(|| Error::bad_request("image_url has no url", Some("messages")))?;
                out.push(media_block(url, cache_control(extra))?);
            }
            ContentPart::Unknown(v) => match v.get("type").and_then(Value::as_str) {
                Some("file") => {
                    let file = v.get("file");
                    let url = file
                        .and_then(|f| f.get("file_data").or_else(|| f.get("file_id")))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(
                                "a file part needs file.file_data (a data: URL) or an http(s) file_id",
                                Some("messages"),
                            )
                        })?;
                    out.push(media_block(url, crate::types::Extra::new())?);
                }
                Some("input_audio") => {
                    return Err(common::unsupported(ID, "audio input"));
                }
                // Anthropic-native blocks a caller sent as parts go through untouched.
                _ => out.push(Block::Unknown(v.clone())),
            },
        }
    }
    Ok(out)
}

/// Blocks of an assistant message: its thinking blocks first (Anthropic wants them back before
/// the tool calls they led to), then text, then tool calls.
fn assistant_blocks(m: &ChatMessage) -> Result<Vec<Block>, Error> {
    let mut out = Vec::new();
    if let Some(Value::Array(blocks)) = m.extra.get("thinking_blocks") {
        for b in blocks {
            if let Ok(block) = serde_json::from_value::<Block>(b.clone()) {
                out.push(block);
            }
        }
    }
    match &m.content {
        Some(MessageContent::Text(t)) if !t.is_empty() => out.push(Block::text(t.clone())),
        Some(MessageContent::Parts(parts)) => {
            for b in user_blocks(&MessageContent::Parts(parts.clone()))? {
                let empty =
                    matches!(&b, Block::Known(KnownBlock::Text { text, .. }) if text.is_empty());
                if !empty {
                    out.push(b);
                }
            }
        }
        _ => {}
    }
    for call in m.tool_calls.iter().flatten() {
        out.push(Block::Known(KnownBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: arguments_value(&call.function.arguments, &call.function.name)?,
            extra: crate::types::Extra::new(),
        }));
    }
    Ok(out)
}

fn tool_result(m: &ChatMessage) -> Result<Block, Error> {
    let id = m
        .tool_call_id
        .clone()
        .or_else(|| m.name.clone())
        .ok_or_else(|| {
            Error::bad_request(
                "a tool message needs the tool_call_id of the call it answers",
                Some("messages"),
            )
        })?;
    let content = match &m.content {
        None => Value::String(String::new()),
        Some(MessageContent::Text(t)) => Value::String(t.clone()),
        Some(parts) => serde_json::to_value(user_blocks(parts)?).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("could not serialise a tool result: {e}"),
            )
        })?,
    };
    Ok(Block::Known(KnownBlock::ToolResult {
        tool_use_id: id,
        content,
        is_error: None,
        extra: crate::types::Extra::new(),
    }))
}

fn tool_choice(choice: &Value) -> Value {
    match choice {
        Value::String(s) => match s.as_str() {
            "required" | "any" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => json!({"type": "auto"}),
        },
        Value::Object(o) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| o.get("name"))
        {
            Some(name) if o.get("type").and_then(Value::as_str) != Some("tool") => {
                json!({"type": "tool", "name": name})
            }
            // Already Anthropic's shape.
            _ => choice.clone(),
        },
        _ => json!({"type": "auto"}),
    }
}

/// The schema a JSON `response_format` asks for, if it asks for JSON.
fn json_schema(chat: &ChatCompletionRequest) -> Option<Value> {
    let rf = chat.response_format.as_ref().filter(|f| f.is_json())?;
    Some(
        rf.extra
            .get("json_schema")
            .and_then(|s| s.get("schema"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"})),
    )
}

/// Translates an OpenAI chat request into a Messages API request.
pub fn to_messages_request(mut chat: ChatCompletionRequest) -> Result<MessagesRequest, Error> {
    if chat.n.is_some_and(|n| n > 1) {
        return Err(Error::bad_request(
            "anthropic returns one choice per request; n must be 1",
            Some("n"),
        ));
    }
    let mut system: Vec<Block> = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for m in &chat.messages {
        match m.role {
            Role::System | Role::Developer => match &m.content {
                Some(MessageContent::Text(t)) => system.push(Block::text(t.clone())),
                Some(parts @ MessageContent::Parts(_)) => system.extend(user_blocks(parts)?),
                None => {}
            },
            Role::User => {
                let blocks = match &m.content {
                    Some(c) => user_blocks(c)?,
                    None => Vec::new(),
                };
                push_turn(&mut messages, "user", blocks);
            }
            Role::Assistant => push_turn(&mut messages, "assistant", assistant_blocks(m)?),
            Role::Tool | Role::Function => push_turn(&mut messages, "user", vec![tool_result(m)?]),
        }
    }
    let system = match system.as_slice() {
        [] => None,
        [Block::Known(KnownBlock::Text { text, extra })] if extra.is_empty() => {
            Some(SystemPrompt::Text(text.clone()))
        }
        _ => Some(SystemPrompt::Blocks(system)),
    };

    let mut extra = std::mem::take(&mut chat.extra);
    common::drop_openai_only(&mut extra);
    let mut thinking = extra.remove("thinking");
    if let Some(effort) = extra.remove("reasoning_effort")
        && thinking.is_none()
        && let Some(budget) = effort.as_str().and_then(common::reasoning_budget)
        && budget > 0
    {
        thinking = Some(json!({"type": "enabled", "budget_tokens": budget}));
    }
    let budget = thinking
        .as_ref()
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    let max_tokens = match chat.max_completion_tokens.or(chat.max_tokens) {
        Some(m) => m,
        // The thinking budget counts against max_tokens and must stay below it.
        None => match budget {
            Some(b) if b >= DEFAULT_MAX_TOKENS => b + DEFAULT_MAX_TOKENS,
            _ => DEFAULT_MAX_TOKENS,
        },
    };

    let mut tools: Vec<Value> = chat
        .tools
        .iter()
        .flatten()
        .map(|t| {
            let mut tool = json!({
                "name": t.function.name,
                "input_schema": t.function.parameters.clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = &t.function.description {
                tool["description"] = Value::String(d.clone());
            }
            if let Some(c) = t
                .extra
                .get("cache_control")
                .or_else(|| t.function.extra.get("cache_control"))
            {
                tool["cache_control"] = c.clone();
            }
            tool
        })
        .collect();
    let caller_has_tools = !tools.is_empty();
    let mut choice = chat.tool_choice.as_ref().map(tool_choice);
    if let Some(schema) = json_schema(&chat) {
        tools.push(json!({
            "name": JSON_TOOL_NAME,
            "description": "Respond with a JSON object that matches the input schema.",
            "input_schema": schema,
        }));
        if !caller_has_tools {
            choice = Some(json!({"type": "tool", "name": JSON_TOOL_NAME}));
        }
    }
    if chat.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }

    let stream = chat.is_stream();
    Ok(MessagesRequest {
        model: chat.model,
        messages,
        system,
        max_tokens,
        stop_sequences: chat.stop.as_ref().map(|s| s.to_vec()),
        stream: stream.then_some(true),
        temperature: chat.temperature,
        top_p: chat.top_p,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice: choice,
        metadata: chat.user.map(|u| json!({"user_id": u})),
        thinking,
        extra,
    })
}

/// OpenAI's finish reason for Anthropic's stop reason.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and reasons this version does not know.
        _ => "stop",
    }
}

/// OpenAI usage from Anthropic's, every input token counted in `prompt_tokens`.
pub fn usage(u: &wire::Usage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let created = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens.unwrap_or(0) + read + created;
    let completion = u.output_tokens.unwrap_or(0);
    let details = (u.cache_read_input_tokens.is_some() || u.cache_creation_input_tokens.is_some())
        .then(|| PromptTokensDetails {
            cached_tokens: Some(read),
            cache_creation_tokens: Some(created),
            extra: crate::types::Extra::new(),
        });
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: details,
        completion_tokens_details: None,
        extra: crate::types::Extra::new(),
    }
}

/// Translates a Messages API response into an OpenAI chat completion.
pub fn from_messages_response(resp: MessagesResponse) -> ChatCompletionResponse {
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks: Vec<Value> = Vec::new();
    let mut other_blocks: Vec<Value> = Vec::new();
    let mut tool_calls: Vec<ToolCall> = Vec::new();
    let mut json_answer = false;
    for block in resp.content {
        match block {
            Block::Known(KnownBlock::Text { text: t, .. }) => text.push_str(&t),
            Block::Known(KnownBlock::ToolUse { name, input, .. }) if name == JSON_TOOL_NAME => {
                json_answer = true;
                text.push_str(&input.to_string());
            }
            Block::Known(KnownBlock::ToolUse {
                id, name, input, ..
            }) => {
                tool_calls.push(ToolCall {
                    id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                    extra: crate::types::Extra::new(),
                });
            }
            Block::Known(b @ KnownBlock::Thinking { .. }) => {
                if let KnownBlock::Thinking { thinking, .. } = &b {
                    reasoning.get_or_insert_with(String::new).push_str(thinking);
                }
                thinking_blocks.extend(serde_json::to_value(&b).ok());
            }
            Block::Known(b @ KnownBlock::RedactedThinking { .. }) => {
                thinking_blocks.extend(serde_json::to_value(&b).ok());
            }
            Block::Known(other) => other_blocks.extend(serde_json::to_value(&other).ok()),
            Block::Unknown(v) => other_blocks.push(v),
        }
    }
    let finish = resp.stop_reason.as_deref().map(|r| {
        if r == "tool_use" && json_answer && tool_calls.is_empty() {
            "stop"
        } else {
            finish_reason(r)
        }
    });
    let mut extra = crate::types::Extra::new();
    if let Some(r) = reasoning {
        extra.insert("reasoning_content".into(), Value::String(r));
    }
    if !thinking_blocks.is_empty() {
        extra.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    if !other_blocks.is_empty() {
        extra.insert(
            "provider_specific_fields".into(),
            json!({"content_blocks": other_blocks}),
        );
    }
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(MessageContent::Text(text));
    ChatCompletionResponse {
        id: resp.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: resp.model,
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessage {
                role: Role::Assistant,
                content,
                name: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                tool_call_id: None,
                extra,
            },
            finish_reason: finish.map(str::to_owned),
            logprobs: None,
            extra: crate::types::Extra::new(),
        }],
        usage: Some(usage(&resp.usage)),
        system_fingerprint: None,
        extra: crate::types::Extra::new(),
    }
}

/// The error kind (and status to answer with) for an Anthropic error type, used when the
/// HTTP status alone does not say (a mid-stream `error` event, a non-standard status).
fn kind_for_type(kind: &str) -> Option<(ErrorKind, Option<u16>)> {
    Some(match kind {
        "invalid_request_error" => (ErrorKind::BadRequest, None),
        "authentication_error" => (ErrorKind::Authentication, None),
        "permission_error" | "billing_error" => (ErrorKind::PermissionDenied, None),
        "not_found_error" => (ErrorKind::NotFound, None),
        "request_too_large" => (ErrorKind::PayloadTooLarge, None),
        "rate_limit_error" => (ErrorKind::RateLimited, None),
        "timeout_error" => (ErrorKind::Timeout, None),
        "api_error" => (ErrorKind::UpstreamServer, Some(500)),
        // 529: Anthropic as a whole is busy; clients know 503 as "try again later".
        "overloaded_error" => (ErrorKind::UpstreamServer, Some(503)),
        _ => return None,
    })
}

/// An error from an Anthropic error event (mid-stream), keeping its type as the code.
pub(crate) fn stream_error(detail: &wire::ErrorDetail) -> Error {
    let (kind, status) =
        kind_for_type(&detail.kind).unwrap_or((ErrorKind::UpstreamServer, Some(500)));
    let mut e = Error::new(
        kind,
        format!("anthropic failed mid-stream: {}", detail.message),
    )
    .with_provider(ID);
    e.status = status;
    e.code = (!detail.kind.is_empty()).then(|| detail.kind.clone());
    e
}

/// An error from a non-2xx answer: the status decides the kind, the body gives the message.
pub fn error_from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let parsed: Option<wire::ErrorBody> = serde_json::from_slice(body).ok();
    let type_kind = parsed.as_ref().and_then(|b| kind_for_type(&b.error.kind));
    let (kind, answer_status) = match (status, ErrorKind::from_upstream_status(status)) {
        (529, _) => (ErrorKind::UpstreamServer, Some(503)),
        (_, ErrorKind::InvalidResponse) => match type_kind {
            Some(k) => k,
            None => (ErrorKind::InvalidResponse, None),
        },
        (_, ErrorKind::UpstreamServer) => (ErrorKind::UpstreamServer, Some(status)),
        (_, k) => (k, None),
    };
    let mut err = match &parsed {
        Some(b) => {
            let mut e = Error::new(
                kind,
                format!("anthropic returned {status}: {}", b.error.message),
            );
            e.code = (!b.error.kind.is_empty()).then(|| b.error.kind.clone());
            e
        }
        None => Error::new(
            kind,
            format!(
                "anthropic returned {status} with a body that is not an Anthropic error: {}",
                common::snippet(body)
            ),
        ),
    };
    err.status = answer_status;
    err.retry_after = super::openai::retry_after(headers);
    err.with_provider(ID)
}

impl HttpProvider for Anthropic {
    fn id(&self) -> &'static str {
        ID
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &["ANTHROPIC_API_KEY"]
    }

    fn serves_completions(&self) -> bool {
        false
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        match request {
            Request::Chat(_) => {}
            Request::Completion(_) => {
                return Err(common::unsupported(
                    ID,
                    "text completions; call /chat/completions",
                ));
            }
            Request::Embedding(_) => return Err(common::unsupported(ID, "embeddings")),
        }
        let chat = common::merged_chat(target, request)?;
        let body = common::to_body(&to_messages_request(chat)?)?;
        let base = target
            .api_base
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        if let Some(key) = target.api_key {
            headers.insert(
                HeaderName::from_static("x-api-key"),
                common::secret_header(key, "api_key")?,
            );
        }
        Ok(UpstreamRequest {
            url: format!("{base}/v1/messages"),
            headers,
            body,
        })
    }

    fn parse_response(
        &self,
        _target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        if operation != Operation::Chat {
            return Err(common::unsupported(ID, operation.semconv_name()));
        }
        let resp: MessagesResponse = serde_json::from_slice(body)
            .map_err(|e| super::openai::invalid(ID, "a response", e))?;
        Ok(Response::Chat(from_messages_response(resp)))
    }

    fn stream_parser(&self, _target: &Target<'_>, _operation: Operation) -> Box<dyn StreamParser> {
        Box::new(stream::AnthropicStream::default())
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from_response(status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Extra, FunctionDef, ResponseFormat, StopSequences, Tool};

    fn msg(role: Role, text: &str) -> ChatMessage {
        ChatMessage::new(role, text)
    }

    fn body(chat: ChatCompletionRequest) -> Value {
        serde_json::to_value(to_messages_request(chat).unwrap()).unwrap()
    }

    #[test]
    fn system_tools_and_results_take_anthropics_shape() {
        let mut assistant = msg(Role::Assistant, "");
        assistant.tool_calls = Some(vec![ToolCall {
            id: "toolu_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            },
            extra: Extra::new(),
        }]);
        let mut tool = msg(Role::Tool, "18C");
        tool.tool_call_id = Some("toolu_1".into());
        let mut chat = ChatCompletionRequest::new(
            "claude",
            vec![
                msg(Role::System, "Be brief."),
                msg(Role::User, "Weather?"),
                assistant,
                tool,
                msg(Role::User, "And tomorrow?"),
            ],
        );
        chat.stop = Some(StopSequences::One("END".into()));
        chat.user = Some("u-1".into());
        chat.tools = Some(vec![Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: Some(json!({"type": "object"})),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }]);
        chat.tool_choice = Some(json!("required"));
        chat.parallel_tool_calls = Some(false);
        chat.extra.insert("top_k".into(), json!(5));
        chat.extra.insert("store".into(), json!(true));
        let b = body(chat);
        assert_eq!(b["system"], "Be brief.");
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(b["top_k"], 5, "Anthropic-native fields pass through");
        assert!(b.get("store").is_none(), "OpenAI-only fields do not");
        assert_eq!(
            b["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
        let m = b["messages"].as_array().unwrap();
        assert_eq!(
            m.len(),
            3,
            "the tool result and the next question share a user turn"
        );
        assert_eq!(
            m[1]["content"],
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}])
        );
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(
            m[2]["content"][1],
            json!({"type": "text", "text": "And tomorrow?"})
        );
    }

    #[test]
    fn images_pdfs_and_cache_control_map_to_blocks() {
        let parts: Vec<ContentPart> = serde_json::from_value(json!([
            {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}}
        ]))
        .unwrap();
        let mut user = msg(Role::User, "");
        user.content = Some(MessageContent::Parts(parts));
        let b = body(ChatCompletionRequest::new("claude", vec![user]));
        let c = &b["messages"][0]["content"];
        assert_eq!(c[0]["cache_control"], json!({"type": "ephemeral"}));
        assert_eq!(
            c[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
        );
        assert_eq!(
            c[2]["source"],
            json!({"type": "url", "url": "https://example.com/cat.jpg"})
        );
        assert_eq!(c[3]["type"], "document");
    }

    #[test]
    fn json_mode_forces_the_json_tool_and_comes_back_as_content() {
        let mut chat = ChatCompletionRequest::new("claude", vec![msg(Role::User, "hi")]);
        let mut rf_extra = Extra::new();
        rf_extra.insert(
            "json_schema".into(),
            json!({"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}),
        );
        chat.response_format = Some(ResponseFormat {
            kind: "json_schema".into(),
            extra: rf_extra,
        });
        let b = body(chat);
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": JSON_TOOL_NAME})
        );
        assert_eq!(
            b["tools"][0]["input_schema"]["properties"]["a"]["type"],
            "integer"
        );
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": JSON_TOOL_NAME, "input": {"a": 1}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}
        }))
        .unwrap();
        let r = from_messages_response(resp);
        assert_eq!(r.choices[0].message.text(), "{\"a\":1}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(r.choices[0].message.tool_calls.is_none());
    }

    #[test]
    fn reasoning_effort_becomes_thinking_with_room_for_the_answer() {
        let mut chat = ChatCompletionRequest::new("claude", vec![msg(Role::User, "hi")]);
        chat.extra.insert("reasoning_effort".into(), json!("high"));
        let b = body(chat);
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        assert_eq!(b["max_tokens"], 8192);
        assert!(b.get("reasoning_effort").is_none());
        let mut chat = ChatCompletionRequest::new("claude", vec![msg(Role::User, "hi")]);
        chat.n = Some(2);
        assert_eq!(
            to_messages_request(chat).unwrap_err().param.as_deref(),
            Some("n")
        );
    }

    #[test]
    fn thinking_unknown_blocks_and_cache_usage_are_kept() {
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "text", "text": "Done."}
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        }))
        .unwrap();
        let r = from_messages_response(resp);
        let m = &r.choices[0].message;
        assert_eq!(m.text(), "Done.");
        assert_eq!(m.extra["reasoning_content"], "Let me think.");
        assert_eq!(m.extra["thinking_blocks"][0]["signature"], "sig==");
        assert_eq!(
            m.extra["provider_specific_fields"]["content_blocks"][0]["type"],
            "server_tool_use"
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (130, 5, 135)
        );
        let d = u.prompt_tokens_details.unwrap();
        assert_eq!(
            (d.cached_tokens, d.cache_creation_tokens),
            (Some(100), Some(20))
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn errors_map_by_status_with_overloaded_as_503() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let e = error_from_response(
            429,
            &h,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"},"request_id":"req_1"}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.code.as_deref(), Some("rate_limit_error"));
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(3)));
        let e = error_from_response(
            529,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!((e.kind, e.status()), (ErrorKind::UpstreamServer, 503));
        assert!(e.message.contains("Overloaded"));
        let e = error_from_response(402, &HeaderMap::new(), br#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"}}"#);
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        let e = error_from_response(502, &HeaderMap::new(), b"<html>bad gateway</html>");
        assert_eq!(e.status(), 502);
        assert!(e.message.contains("<html>bad gateway"));
    }
}
