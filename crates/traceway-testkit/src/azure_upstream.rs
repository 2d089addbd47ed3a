//! An in-process upstream that speaks Azure OpenAI
//! (`/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=…`,
//! `api-key` header): OpenAI's wire format with Azure's additions (content filter results,
//! a first stream chunk with `prompt_filter_results` and no choices) and Azure's error bodies,
//! in `fixtures/azure/`. Records every request and answers on cue.
//!
//! Un-cued requests get what Azure sends: 404 `Resource not found` without an `api-version`,
//! 401 without `api-key`, the tool-call answer when the request offers tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::mock_upstream::{MockUpstream, Recorded, Reply, StreamEnd};
use crate::openai_upstream;
use serde_json::Value;
use std::time::Duration;

/// A chat completion with Azure's content filter results.
pub const CHAT_COMPLETION: &str = include_str!("../fixtures/azure/chat_completion.json");
/// A streamed chat completion, opening with Azure's `prompt_filter_results` chunk; usage chunk
/// included.
pub const CHAT_COMPLETION_STREAM: &str =
    include_str!("../fixtures/azure/chat_completion_stream.sse");
/// 401 (Azure's own shape: `{"statusCode","message"}`).
pub const ERROR_401: &str = include_str!("../fixtures/azure/error_401.json");
/// 404 `DeploymentNotFound`.
pub const ERROR_404: &str = include_str!("../fixtures/azure/error_404.json");
/// 404 `Resource not found` (wrong path or no `api-version`).
pub const ERROR_404_RESOURCE: &str = include_str!("../fixtures/azure/error_404_resource.json");
/// 429 token rate limit.
pub const ERROR_429: &str = include_str!("../fixtures/azure/error_429.json");
/// 400 `content_filter`.
pub const ERROR_400_CONTENT_FILTER: &str =
    include_str!("../fixtures/azure/error_400_content_filter.json");
/// 500 `InternalServerError`.
pub const ERROR_500: &str = include_str!("../fixtures/azure/error_500.json");

/// The running upstream (a [`MockUpstream`] with Azure's fixtures); stops when dropped.
pub struct AzureUpstream(MockUpstream);

crate::deref_mock_upstream!(AzureUpstream);

impl AzureUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> AzureUpstream {
        AzureUpstream(MockUpstream::start(fixture).await)
    }

    /// The `api_base` to configure (the resource endpoint): `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.url()
    }
}

/// A stream fixture's events, the usage-only chunk kept only when the request asked for it.
pub(crate) fn openai_stream(text: &str, request: &Value) -> Reply {
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let pieces = crate::mock_upstream::sse_pieces(text)
        .into_iter()
        .filter(|p| include_usage || !(p.contains("\"choices\":[]") && p.contains("\"usage\":{")))
        .collect();
    Reply::Stream {
        pieces,
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Complete,
    }
}

fn fixture(r: &Recorded) -> Reply {
    let has_version = r
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=")));
    let Some(rest) = r.path.strip_prefix("/openai/deployments/") else {
        return Reply::error(404, ERROR_404_RESOURCE);
    };
    let Some((_deployment, endpoint)) = rest.split_once('/') else {
        return Reply::error(404, ERROR_404_RESOURCE);
    };
    if !has_version {
        return Reply::error(404, ERROR_404_RESOURCE);
    }
    if r.header("api-key").is_none() {
        return Reply::error(401, ERROR_401);
    }
    let stream = r.body["stream"] == Value::Bool(true);
    let tools = r.body["tools"].as_array().is_some_and(|t| !t.is_empty());
    match endpoint {
        "chat/completions" if stream => openai_stream(CHAT_COMPLETION_STREAM, &r.body),
        "chat/completions" if tools => Reply::ok(openai_upstream::CHAT_COMPLETION_TOOL_CALLS),
        "chat/completions" => Reply::ok(CHAT_COMPLETION),
        "completions" if stream => openai_stream(openai_upstream::COMPLETION_STREAM, &r.body),
        "completions" => Reply::ok(openai_upstream::COMPLETION),
        "embeddings" => Reply::ok(openai_upstream::EMBEDDING),
        _ => Reply::error(404, ERROR_404_RESOURCE),
    }
}
