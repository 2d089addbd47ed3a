//! An in-process upstream that speaks Anthropic's Messages API (`POST /v1/messages`; bodies and
//! SSE streams written from Anthropic's API reference, in `fixtures/anthropic/`), records every
//! request, and answers on cue.
//!
//! Un-cued requests get the fixture a real server would send: 401 without `x-api-key`, 400
//! without `anthropic-version`, a `tool_use` answer when the request offers tools, the JSON
//! tool's answer when `tool_choice` forces `json_tool_call`, and the streamed forms of each
//! when `stream` is true.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::mock_upstream::{MockUpstream, Recorded, Reply};
use serde_json::Value;

pub use crate::mock_upstream::StreamEnd;

/// A text answer, with cache reads and writes in its usage.
pub const MESSAGE: &str = include_str!("../fixtures/anthropic/message.json");
/// An answer that calls a tool.
pub const MESSAGE_TOOL_USE: &str = include_str!("../fixtures/anthropic/message_tool_use.json");
/// An answer with thinking and redacted thinking blocks.
pub const MESSAGE_THINKING: &str = include_str!("../fixtures/anthropic/message_thinking.json");
/// An answer to a JSON `response_format` (the `json_tool_call` tool).
pub const MESSAGE_JSON: &str = include_str!("../fixtures/anthropic/message_json.json");
/// A streamed text answer (`message_start` … `message_stop`, with a `ping`).
pub const MESSAGE_STREAM: &str = include_str!("../fixtures/anthropic/message_stream.sse");
/// A streamed answer that calls a tool (`input_json_delta`s).
pub const MESSAGE_STREAM_TOOL_USE: &str =
    include_str!("../fixtures/anthropic/message_stream_tool_use.sse");
/// 400 `invalid_request_error`.
pub const ERROR_400: &str = include_str!("../fixtures/anthropic/error_400.json");
/// 401 `authentication_error`.
pub const ERROR_401: &str = include_str!("../fixtures/anthropic/error_401.json");
/// 403 `permission_error`.
pub const ERROR_403: &str = include_str!("../fixtures/anthropic/error_403.json");
/// 404 `not_found_error`.
pub const ERROR_404: &str = include_str!("../fixtures/anthropic/error_404.json");
/// 429 `rate_limit_error`.
pub const ERROR_429: &str = include_str!("../fixtures/anthropic/error_429.json");
/// 500 `api_error`.
pub const ERROR_500: &str = include_str!("../fixtures/anthropic/error_500.json");
/// 529 `overloaded_error`.
pub const ERROR_529: &str = include_str!("../fixtures/anthropic/error_529.json");

/// The running upstream (a [`MockUpstream`] with Anthropic's fixtures); stops when dropped.
pub struct AnthropicUpstream(MockUpstream);

crate::deref_mock_upstream!(AnthropicUpstream);

impl AnthropicUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> AnthropicUpstream {
        AnthropicUpstream(MockUpstream::start(fixture).await)
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.url()
    }
}

fn fixture(r: &Recorded) -> Reply {
    if r.path != "/v1/messages" {
        return Reply::error(404, ERROR_404);
    }
    if r.header("x-api-key").is_none() {
        return Reply::error(401, ERROR_401);
    }
    if r.header("anthropic-version").is_none() {
        return Reply::error(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"anthropic-version: header is required"}}"#,
        );
    }
    let stream = r.body["stream"] == Value::Bool(true);
    let json_mode =
        r.body.pointer("/tool_choice/name").and_then(Value::as_str) == Some("json_tool_call");
    let tools = r.body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] != "json_tool_call"));
    match (stream, json_mode, tools) {
        (true, _, true) => Reply::sse(MESSAGE_STREAM_TOOL_USE),
        (true, _, false) => Reply::sse(MESSAGE_STREAM),
        (false, true, _) => Reply::ok(MESSAGE_JSON),
        (false, false, true) => Reply::ok(MESSAGE_TOOL_USE),
        (false, false, false) => Reply::ok(MESSAGE),
    }
}
