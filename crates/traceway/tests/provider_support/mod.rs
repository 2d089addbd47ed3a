//! Helpers shared by the `provider_*` library tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use std::time::Duration;
use traceway::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Extra, FunctionDef, Role,
    StreamOptions, Tool,
};
use traceway::{Client, DeploymentConfig, Error, Secret};

/// A client with one deployment `m` of `model` at `api_base` with `key`.
pub fn client(model: &str, api_base: &str, key: Option<&str>, timeout: Option<Duration>) -> Client {
    Client::builder()
        .deployment(DeploymentConfig {
            model_name: "m".into(),
            model: model.into(),
            api_base: Some(api_base.into()),
            api_key: key.map(Secret::new),
            timeout,
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap()
}

/// A chat request to group `m`: a system prompt and one user message.
pub fn ask(text: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(
        "m",
        vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, text),
        ],
    )
}

/// The `get_weather` tool.
pub fn weather_tool() -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: "get_weather".into(),
            description: Some("Current weather of a place".into()),
            parameters: Some(serde_json::json!({
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"]
            })),
            extra: Extra::new(),
        },
        extra: Extra::new(),
    }
}

/// Asks for the usage chunk.
pub fn with_usage(mut r: ChatCompletionRequest) -> ChatCompletionRequest {
    r.stream_options = Some(StreamOptions {
        include_usage: Some(true),
        extra: Extra::new(),
    });
    r
}

/// Every item of a chat stream, bounded in time so a hang fails the test instead of stalling it.
pub async fn collect(
    client: &Client,
    request: ChatCompletionRequest,
) -> Result<Vec<Result<ChatCompletionChunk, Error>>, Error> {
    let stream = client.chat_stream(request).await?;
    Ok(
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ended"),
    )
}

/// The error a cut stream fails with: the call's own when nothing was parsed before the cut (a
/// stream's attempt lasts until its first chunk), else the stream's last item. Which one depends
/// on whether the gateway read the bytes before the cut arrived.
pub async fn stream_failure(client: &Client, request: ChatCompletionRequest) -> Error {
    match collect(client, request).await {
        Err(e) => e,
        Ok(items) => stream_error(items),
    }
}

/// The content text of chunks.
pub fn text(chunks: &[ChatCompletionChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|ch| ch.delta.content.clone())
        .collect()
}

/// Tool calls assembled from chunk deltas: (id, name, arguments) by index.
pub fn tool_calls(chunks: &[ChatCompletionChunk]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for d in chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .flat_map(|ch| ch.delta.tool_calls.iter().flatten())
    {
        let i = d.index as usize;
        while out.len() <= i {
            out.push(Default::default());
        }
        if let Some(id) = &d.id {
            out[i].0.clone_from(id);
        }
        if let Some(f) = &d.function {
            out[i].1.push_str(f.name.as_deref().unwrap_or_default());
            out[i]
                .2
                .push_str(f.arguments.as_deref().unwrap_or_default());
        }
    }
    out
}

/// The finish reasons of chunks, in order.
pub fn finish_reasons(chunks: &[ChatCompletionChunk]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|ch| ch.finish_reason.clone())
        .collect()
}

/// The chunks of a stream that must have succeeded.
pub fn ok_chunks(items: Vec<Result<ChatCompletionChunk, Error>>) -> Vec<ChatCompletionChunk> {
    items.into_iter().map(|c| c.unwrap()).collect()
}

/// The error a stream ended with (it must end with one).
pub fn stream_error(items: Vec<Result<ChatCompletionChunk, Error>>) -> Error {
    let n = items.len();
    let last = items
        .into_iter()
        .last()
        .expect("the stream yielded something");
    let err = last.expect_err("the stream ends with an error");
    assert!(n >= 1);
    err
}

/// Asserts `secret` appears nowhere in an error a caller or a span could see.
pub fn assert_no_secret(e: &Error, secret: &str) {
    let text = format!("{e:?} {}", serde_json::to_string(&e.to_body()).unwrap());
    assert!(!text.contains(secret), "the key leaked into {text}");
}
