//! OpenAI requests → Bedrock bodies: Converse for chat, InvokeModel for Titan and Cohere
//! embeddings.

use super::JSON_TOOL;
use crate::error::Error;
use crate::provider::Target;
use crate::types::{
    ChatCompletionRequest, ChatMessage, ContentPart, EmbeddingInput, EmbeddingRequest, Extra,
    GATEWAY_ONLY_FIELDS, KnownContentPart, MessageContent, Role,
};
use serde_json::{Map, Value, json};

/// Converse request fields that go at the top level of the body when a caller or a deployment
/// sets them; every other unknown field goes into `additionalModelRequestFields`.
const CONVERSE_TOP_LEVEL: &[&str] = &[
    "guardrailConfig",
    "performanceConfig",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "promptVariables",
    "serviceTier",
];

/// OpenAI request fields with no Converse counterpart: dropped rather than passed to the model
/// (which would reject them as unknown inference parameters).
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

/// LiteLLM `litellm_params` that configure the gateway or another provider, never a body field.
const SETTINGS: &[&str] = &[
    "model_id",
    "drop_params",
    "additional_drop_params",
    "api_version",
    "api_type",
    "organization",
];

/// Whether a deployment param steers the provider (credentials, region, endpoint, model id …)
/// and so must never reach the body.
pub(crate) fn is_provider_setting(key: &str) -> bool {
    key.starts_with("aws_") || SETTINGS.contains(&key)
}

fn part_error(what: &str) -> Error {
    Error::bad_request(format!("bedrock: {what}"), Some("messages"))
}

/// `data:image/png;base64,AAAA` → (`image/png`, `AAAA`).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, data))
}

fn image_block(image_url: &Value) -> Result<Value, Error> {
    let url = match image_url {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("url").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    let Some((mime, data)) = data_url(url) else {
        return Err(part_error(
            "images must be sent inline as base64 data URLs (data:image/png;base64,…); Bedrock does not fetch image URLs",
        ));
    };
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(part_error(&format!(
                "image type \"{other}\" is not supported (png, jpeg, gif, webp)"
            )));
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn cache_point(extra: &Extra, blocks: &mut Vec<Value>) {
    if extra.contains_key("cache_control") {
        blocks.push(json!({"cachePoint": {"type": "default"}}));
    }
}

/// A message's content as Converse blocks (empty text left out: Bedrock rejects blank text).
fn content_blocks(content: Option<&MessageContent>) -> Result<Vec<Value>, Error> {
    let mut blocks = Vec::new();
    match content {
        Some(MessageContent::Text(t)) if !t.is_empty() => blocks.push(json!({"text": t})),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                match p {
                    ContentPart::Known(KnownContentPart::Text { text, extra }) => {
                        if !text.is_empty() {
                            blocks.push(json!({"text": text}));
                        }
                        cache_point(extra, &mut blocks);
                    }
                    ContentPart::Known(KnownContentPart::ImageUrl { image_url, extra }) => {
                        blocks.push(image_block(image_url)?);
                        cache_point(extra, &mut blocks);
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
    Ok(blocks)
}

/// Tool-call arguments (a JSON string) as the JSON object Converse wants.
pub(crate) fn arguments_value(arguments: &str) -> Result<Value, Error> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments).map_err(|e| {
        Error::bad_request(
            format!("a tool call's arguments are not valid JSON: {e}"),
            Some("messages"),
        )
    })
}

fn assistant_blocks(m: &ChatMessage) -> Result<Vec<Value>, Error> {
    let mut blocks = content_blocks(m.content.as_ref())?;
    for call in m.tool_calls.iter().flatten() {
        blocks.push(json!({"toolUse": {
            "toolUseId": call.id,
            "name": call.function.name,
            "input": arguments_value(&call.function.arguments)?,
        }}));
    }
    Ok(blocks)
}

fn tool_result_block(m: &ChatMessage) -> Result<Value, Error> {
    let Some(id) = &m.tool_call_id else {
        return Err(Error::bad_request(
            "a tool message needs the tool_call_id of the call it answers",
            Some("messages"),
        ));
    };
    let text = m.text();
    let content = if text.is_empty() {
        json!([])
    } else {
        json!([{"text": text}])
    };
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}

/// The conversation as Converse `system` blocks and `messages`; consecutive messages of one
/// role are merged, since Converse wants user and assistant turns to alternate (several tool
/// results answering one assistant turn become one user message).
fn conversation(messages: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>, bool), Error> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut uses_tools = false;
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.extend(content_blocks(m.content.as_ref())?);
                continue;
            }
            Role::User => ("user", content_blocks(m.content.as_ref())?),
            Role::Assistant => {
                uses_tools |= m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                ("assistant", assistant_blocks(m)?)
            }
            Role::Tool | Role::Function => {
                uses_tools = true;
                ("user", vec![tool_result_block(m)?])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, messages, uses_tools))
}

fn tool_choice(choice: &Value) -> Result<Option<Value>, Error> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Some(json!({"auto": {}}))),
            "required" => Ok(Some(json!({"any": {}}))),
            "none" => Ok(None),
            other => Err(Error::bad_request(
                format!("tool_choice \"{other}\" is not one of auto, required, none"),
                Some("tool_choice"),
            )),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::bad_request("tool_choice names no function", Some("tool_choice"))
                })?;
            Ok(Some(json!({"tool": {"name": name}})))
        }
        _ => Err(Error::bad_request(
            "tool_choice must be a string or an object",
            Some("tool_choice"),
        )),
    }
}

fn tool_spec(name: &str, description: Option<&str>, schema: Option<&Value>) -> Value {
    let mut spec = Map::new();
    spec.insert("name".into(), json!(name));
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        spec.insert("description".into(), json!(d));
    }
    let schema = schema
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    spec.insert("inputSchema".into(), json!({"json": schema}));
    json!({"toolSpec": spec})
}

/// The Converse body for a chat request.
pub(crate) fn converse_body(
    target: &Target<'_>,
    r: &ChatCompletionRequest,
) -> Result<Value, Error> {
    let (system, messages, uses_tools) = conversation(&r.messages)?;
    let mut body = Map::new();
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }

    let mut inference = Map::new();
    if let Some(v) = r.max_completion_tokens.or(r.max_tokens) {
        inference.insert("maxTokens".into(), json!(v));
    }
    if let Some(v) = r.temperature {
        inference.insert("temperature".into(), json!(v));
    }
    if let Some(v) = r.top_p {
        inference.insert("topP".into(), json!(v));
    }
    if let Some(stop) = &r.stop {
        inference.insert("stopSequences".into(), json!(stop.to_vec()));
    }

    let mut tools: Vec<Value> = r
        .tools
        .iter()
        .flatten()
        .map(|t| {
            tool_spec(
                &t.function.name,
                t.function.description.as_deref(),
                t.function.parameters.as_ref(),
            )
        })
        .collect();
    let mut choice = match &r.tool_choice {
        Some(c) => tool_choice(c)?,
        None => None,
    };
    let choice_none = matches!(&r.tool_choice, Some(Value::String(s)) if s == "none");
    // Converse has no JSON mode: as LiteLLM does, a JSON answer is asked for as a forced call of
    // one tool whose input schema is the wanted schema; the call is turned back into text.
    if tools.is_empty()
        && let Some(format) = r.response_format.as_ref().filter(|f| f.is_json())
    {
        let schema = format
            .extra
            .get("json_schema")
            .and_then(|s| s.get("schema"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        tools.push(tool_spec(
            JSON_TOOL,
            Some("Answer with this tool: its input is the JSON answer."),
            Some(&schema),
        ));
        choice = Some(json!({"tool": {"name": JSON_TOOL}}));
    }
    // `none` has no Converse form: the tools are left out, unless the conversation already has
    // tool calls, which Converse only accepts alongside a tool configuration.
    if !tools.is_empty() && (!choice_none || uses_tools) {
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            config.insert("toolChoice".into(), c);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }

    let mut additional = Map::new();
    let caller = r
        .extra
        .iter()
        .filter(|(k, _)| !GATEWAY_ONLY_FIELDS.contains(&k.as_str()));
    let deployment = target
        .params
        .iter()
        .filter(|(k, _)| !is_provider_setting(k));
    for (k, v) in caller.chain(deployment) {
        if OPENAI_ONLY_FIELDS.contains(&k.as_str()) {
            continue;
        }
        match k.as_str() {
            // A deployment's default inference settings fill what the caller left unset.
            "temperature" | "top_p" | "max_tokens" | "max_completion_tokens" | "stop" => {
                let key = match k.as_str() {
                    "temperature" => "temperature",
                    "top_p" => "topP",
                    "stop" => "stopSequences",
                    _ => "maxTokens",
                };
                let value = match (k.as_str(), v) {
                    ("stop", Value::String(s)) => json!([s]),
                    _ => v.clone(),
                };
                inference.entry(key).or_insert(value);
            }
            key if CONVERSE_TOP_LEVEL.contains(&key) => {
                body.entry(key).or_insert_with(|| v.clone());
            }
            key => {
                additional.entry(key).or_insert_with(|| v.clone());
            }
        }
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok(Value::Object(body))
}

/// Which InvokeModel embedding body a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmbeddingFamily {
    /// `amazon.titan-embed-text-*`: one `inputText` per call.
    Titan,
    /// `cohere.embed-*`: a list of `texts`.
    Cohere,
}

/// The embedding family of a Bedrock model id, if it has one this version speaks.
pub(crate) fn embedding_family(model_id: &str) -> Option<EmbeddingFamily> {
    if model_id.contains("amazon.titan-embed") {
        Some(EmbeddingFamily::Titan)
    } else if model_id.contains("cohere.embed") {
        Some(EmbeddingFamily::Cohere)
    } else {
        None
    }
}

/// The InvokeModel body for an embeddings request.
pub(crate) fn embedding_body(
    target: &Target<'_>,
    model_id: &str,
    r: &EmbeddingRequest,
) -> Result<Value, Error> {
    let texts = match &r.input {
        EmbeddingInput::One(s) => vec![s.clone()],
        EmbeddingInput::Many(v) => v.clone(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => {
            return Err(Error::bad_request(
                "bedrock embeddings take text input, not token arrays",
                Some("input"),
            ));
        }
    };
    let mut body = Map::new();
    let family = embedding_family(model_id).ok_or_else(|| {
        Error::bad_request(
            format!(
                "bedrock embeddings support amazon.titan-embed-* and cohere.embed-* models, not \"{model_id}\""
            ),
            Some("model"),
        )
    })?;
    match family {
        EmbeddingFamily::Titan => {
            let [text] = texts.as_slice() else {
                return Err(Error::bad_request(
                    format!(
                        "Titan embeds one input per call; send {} separate requests",
                        texts.len()
                    ),
                    Some("input"),
                ));
            };
            body.insert("inputText".into(), json!(text));
            if let Some(d) = r.dimensions {
                body.insert("dimensions".into(), json!(d));
            }
        }
        EmbeddingFamily::Cohere => {
            body.insert("texts".into(), json!(texts));
            if let Some(d) = r.dimensions {
                body.insert("output_dimension".into(), json!(d));
            }
        }
    }
    let caller = r
        .extra
        .iter()
        .filter(|(k, _)| !GATEWAY_ONLY_FIELDS.contains(&k.as_str()));
    let deployment = target
        .params
        .iter()
        .filter(|(k, _)| !is_provider_setting(k));
    for (k, v) in caller.chain(deployment) {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if family == EmbeddingFamily::Cohere {
        body.entry("input_type")
            .or_insert_with(|| json!("search_document"));
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FunctionCall, ToolCall};

    fn target(params: &Extra) -> Target<'_> {
        Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0",
            api_base: None,
            api_key: None,
            params,
        }
    }

    fn req(messages: Vec<ChatMessage>) -> ChatCompletionRequest {
        ChatCompletionRequest::new("m", messages)
    }

    #[test]
    fn roles_merge_and_tool_turns_translate() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.content = None;
        assistant.tool_calls = Some(vec![
            ToolCall {
                id: "t1".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                },
                extra: Extra::new(),
            },
            ToolCall {
                id: "t2".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "get_time".into(),
                    arguments: String::new(),
                },
                extra: Extra::new(),
            },
        ]);
        let mut r1 = ChatMessage::new(Role::Tool, "18C");
        r1.tool_call_id = Some("t1".into());
        let mut r2 = ChatMessage::new(Role::Tool, "noon");
        r2.tool_call_id = Some("t2".into());
        let r = req(vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::Developer, "Use metric."),
            ChatMessage::new(Role::User, "Weather?"),
            ChatMessage::new(Role::User, "In Paris."),
            assistant,
            r1,
            r2,
        ]);
        let p = Extra::new();
        let b = converse_body(&target(&p), &r).unwrap();
        assert_eq!(
            b["system"],
            json!([{"text": "Be brief."}, {"text": "Use metric."}])
        );
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0]["content"],
            json!([{"text": "Weather?"}, {"text": "In Paris."}])
        );
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(
            m[1]["content"][0]["toolUse"]["input"],
            json!({"city": "Paris"})
        );
        assert_eq!(m[1]["content"][1]["toolUse"]["input"], json!({}));
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][1]["toolResult"]["toolUseId"], "t2");
        assert_eq!(
            m[2]["content"][1]["toolResult"]["content"],
            json!([{"text": "noon"}])
        );
    }

    #[test]
    fn inference_tools_choice_and_extras() {
        let mut r = req(vec![ChatMessage::new(Role::User, "hi")]);
        r.max_tokens = Some(64);
        r.temperature = Some(0.0);
        r.stop = Some(crate::types::StopSequences::One("END".into()));
        r.tools = Some(vec![serde_json::from_value(json!({"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}})).unwrap()]);
        r.tool_choice = Some(json!({"type":"function","function":{"name":"f"}}));
        r.extra.insert("top_k".into(), json!(5));
        r.extra.insert("metadata".into(), json!({"a": 1}));
        r.extra.insert("store".into(), json!(true));
        r.extra.insert(
            "guardrailConfig".into(),
            json!({"guardrailIdentifier": "g"}),
        );
        let mut p = Extra::new();
        p.insert("aws_secret_access_key".into(), json!("never-in-body"));
        p.insert("aws_region_name".into(), json!("us-east-1"));
        p.insert("top_p".into(), json!(0.5));
        p.insert("temperature".into(), json!(0.9));
        let b = converse_body(&target(&p), &r).unwrap();
        assert_eq!(
            b["inferenceConfig"],
            json!({"maxTokens": 64, "temperature": 0.0, "stopSequences": ["END"], "topP": 0.5})
        );
        assert_eq!(
            b["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert_eq!(
            b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object"})
        );
        assert_eq!(b["additionalModelRequestFields"], json!({"top_k": 5}));
        assert_eq!(b["guardrailConfig"]["guardrailIdentifier"], "g");
        let text = b.to_string();
        assert!(
            !text.contains("never-in-body")
                && !text.contains("us-east-1")
                && !text.contains("metadata")
        );

        r.tool_choice = Some(json!("none"));
        let b = converse_body(&target(&p), &r).unwrap();
        assert!(b.get("toolConfig").is_none(), "none drops the tools");
        r.tool_choice = Some(json!("required"));
        let b = converse_body(&target(&p), &r).unwrap();
        assert_eq!(b["toolConfig"]["toolChoice"], json!({"any": {}}));
    }

    #[test]
    fn json_mode_is_a_forced_tool_and_images_must_be_inline() {
        let mut r = req(vec![ChatMessage::new(Role::User, "hi")]);
        r.response_format = Some(serde_json::from_value(json!({"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"string"}}}}})).unwrap());
        let p = Extra::new();
        let b = converse_body(&target(&p), &r).unwrap();
        assert_eq!(
            b["toolConfig"]["toolChoice"],
            json!({"tool": {"name": JSON_TOOL}})
        );
        assert_eq!(
            b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["a"]["type"],
            "string"
        );

        let img: ChatMessage = serde_json::from_value(json!({"role":"user","content":[
            {"type":"text","text":"what is this?","cache_control":{"type":"ephemeral"}},
            {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/AA=="}}]}))
        .unwrap();
        let b = converse_body(&target(&p), &req(vec![img])).unwrap();
        assert_eq!(
            b["messages"][0]["content"],
            json!([
            {"text": "what is this?"}, {"cachePoint": {"type": "default"}},
            {"image": {"format": "jpeg", "source": {"bytes": "/9j/AA=="}}}])
        );
        let url: ChatMessage = serde_json::from_value(json!({"role":"user","content":[
            {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}))
        .unwrap();
        let e = converse_body(&target(&p), &req(vec![url])).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("data URLs"));
    }

    #[test]
    fn embedding_bodies_per_family() {
        let p = Extra::new();
        let mut r = EmbeddingRequest {
            model: "x".into(),
            input: EmbeddingInput::One("hello".into()),
            encoding_format: None,
            dimensions: Some(256),
            user: None,
            extra: Extra::new(),
        };
        let b = embedding_body(&target(&p), "amazon.titan-embed-text-v2:0", &r).unwrap();
        assert_eq!(b, json!({"inputText": "hello", "dimensions": 256}));
        r.input = EmbeddingInput::Many(vec!["a".into(), "b".into()]);
        let e = embedding_body(&target(&p), "amazon.titan-embed-text-v2:0", &r).unwrap_err();
        assert!(e.message.contains("one input per call"));
        r.dimensions = None;
        let b = embedding_body(&target(&p), "cohere.embed-english-v3", &r).unwrap();
        assert_eq!(
            b,
            json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
        r.extra.insert("input_type".into(), json!("search_query"));
        let b = embedding_body(&target(&p), "cohere.embed-english-v3", &r).unwrap();
        assert_eq!(b["input_type"], "search_query");
        assert!(embedding_body(&target(&p), "meta.llama3", &r).is_err());
    }
}
