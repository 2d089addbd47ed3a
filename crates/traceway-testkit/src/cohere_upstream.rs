//! An in-process Cohere v2 API: `/v2/chat` (server-sent events when `stream` is true, with
//! Cohere's event names) and `/v2/embed`, with fixtures from Cohere's API reference in
//! `fixtures/cohere/` and its `{"id", "message"}` error bodies. Requests without a bearer key
//! get Cohere's 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scripted_upstream::{Recorded, Reply, ScriptedUpstream};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// A Chat v2 response.
pub const CHAT: &str = include_str!("../fixtures/cohere/chat.json");
/// A Chat v2 response that calls a tool, with a tool plan.
pub const CHAT_TOOL_CALLS: &str = include_str!("../fixtures/cohere/chat_tool_calls.json");
/// A streamed Chat v2 response.
pub const CHAT_STREAM: &str = include_str!("../fixtures/cohere/chat_stream.sse");
/// A streamed Chat v2 response that calls a tool.
pub const CHAT_STREAM_TOOL_CALLS: &str =
    include_str!("../fixtures/cohere/chat_stream_tool_calls.sse");
/// An Embed v2 response (two inputs, float vectors).
pub const EMBED: &str = include_str!("../fixtures/cohere/embed.json");
/// 400 body.
pub const ERROR_400: &str = include_str!("../fixtures/cohere/error_400.json");
/// 401 body.
pub const ERROR_401: &str = include_str!("../fixtures/cohere/error_401.json");
/// 404 body.
pub const ERROR_404: &str = include_str!("../fixtures/cohere/error_404.json");
/// 429 body (trial key limit).
pub const ERROR_429: &str = include_str!("../fixtures/cohere/error_429.json");
/// 500 body.
pub const ERROR_500: &str = include_str!("../fixtures/cohere/error_500.json");
/// 503 body (overloaded).
pub const ERROR_503: &str = include_str!("../fixtures/cohere/error_503.json");

/// The events of an SSE fixture, each with its blank line.
pub fn events(text: &str) -> Vec<Bytes> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| Bytes::from(format!("{}\n\n", e.trim_matches('\n'))))
        .collect()
}

/// A 200 SSE stream of a fixture.
pub fn stream_reply(text: &str) -> Reply {
    Reply::stream("text/event-stream", events(text))
}

fn wants_tool(r: &Recorded) -> bool {
    let offers = r
        .body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let answering = r
        .body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    offers && !answering
}

fn fixture(r: &Recorded) -> Reply {
    let stream = r.body.get("stream").and_then(Value::as_bool) == Some(true);
    match r.path.as_str() {
        "/v2/chat" => match (stream, wants_tool(r)) {
            (true, true) => stream_reply(CHAT_STREAM_TOOL_CALLS),
            (true, false) => stream_reply(CHAT_STREAM),
            (false, true) => Reply::ok(CHAT_TOOL_CALLS),
            (false, false) => Reply::ok(CHAT),
        },
        "/v2/embed" => Reply::ok(EMBED),
        _ => Reply::json(404, r#"{"message":"Not Found"}"#),
    }
}

/// The running mock; stops when dropped. Derefs to the [`ScriptedUpstream`] it runs on.
pub struct CohereUpstream(ScriptedUpstream);

impl std::ops::Deref for CohereUpstream {
    type Target = ScriptedUpstream;
    fn deref(&self) -> &ScriptedUpstream {
        &self.0
    }
}

impl CohereUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> CohereUpstream {
        let check = Arc::new(|r: &Recorded| {
            let keyed = r
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|k| !k.is_empty());
            (!keyed).then(|| Reply::json(401, ERROR_401))
        });
        CohereUpstream(ScriptedUpstream::start(Arc::new(fixture), Some(check)).await)
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.0.url()
    }
}
