//! An in-process Ollama server: `/api/chat`, `/api/generate` (NDJSON streams, Ollama streams
//! unless `"stream": false`) and `/api/embed`, with fixtures from Ollama's API reference in
//! `fixtures/ollama/` and its `{"error": …}` bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scripted_upstream::{Recorded, Reply, ScriptedUpstream};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// A `/api/chat` response.
pub const CHAT: &str = include_str!("../fixtures/ollama/chat.json");
/// A `/api/chat` response that calls a tool (arguments as an object).
pub const CHAT_TOOL_CALLS: &str = include_str!("../fixtures/ollama/chat_tool_calls.json");
/// A streamed `/api/chat` response.
pub const CHAT_STREAM: &str = include_str!("../fixtures/ollama/chat_stream.ndjson");
/// A streamed `/api/chat` response that calls a tool.
pub const CHAT_STREAM_TOOL_CALLS: &str =
    include_str!("../fixtures/ollama/chat_stream_tool_calls.ndjson");
/// A streamed `/api/chat` response that fails with an error line.
pub const CHAT_STREAM_ERROR: &str = include_str!("../fixtures/ollama/chat_stream_error.ndjson");
/// A `/api/generate` response.
pub const GENERATE: &str = include_str!("../fixtures/ollama/generate.json");
/// A streamed `/api/generate` response.
pub const GENERATE_STREAM: &str = include_str!("../fixtures/ollama/generate_stream.ndjson");
/// A `/api/embed` response (two inputs).
pub const EMBED: &str = include_str!("../fixtures/ollama/embed.json");
/// 400 body.
pub const ERROR_400: &str = include_str!("../fixtures/ollama/error_400.json");
/// 401 body (Ollama behind a key, or ollama.com).
pub const ERROR_401: &str = include_str!("../fixtures/ollama/error_401.json");
/// 404 body: the model is not pulled.
pub const ERROR_404: &str = include_str!("../fixtures/ollama/error_404.json");
/// 429 body (ollama.com usage limit).
pub const ERROR_429: &str = include_str!("../fixtures/ollama/error_429.json");
/// 500 body.
pub const ERROR_500: &str = include_str!("../fixtures/ollama/error_500.json");
/// 503 body: the server's queue is full.
pub const ERROR_503: &str = include_str!("../fixtures/ollama/error_503.json");

/// The content type Ollama streams with.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// The lines of an NDJSON fixture, each with its newline.
pub fn lines(text: &str) -> Vec<Bytes> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Bytes::from(format!("{l}\n")))
        .collect()
}

/// A 200 NDJSON stream of a fixture.
pub fn stream_reply(text: &str) -> Reply {
    Reply::stream(NDJSON_CONTENT_TYPE, lines(text))
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
    // Ollama streams unless told not to.
    let stream = r.body.get("stream").and_then(Value::as_bool) != Some(false);
    match r.path.as_str() {
        "/api/chat" => match (stream, wants_tool(r)) {
            (true, true) => stream_reply(CHAT_STREAM_TOOL_CALLS),
            (true, false) => stream_reply(CHAT_STREAM),
            (false, true) => Reply::ok(CHAT_TOOL_CALLS),
            (false, false) => Reply::ok(CHAT),
        },
        "/api/generate" if stream => stream_reply(GENERATE_STREAM),
        "/api/generate" => Reply::ok(GENERATE),
        "/api/embed" => Reply::ok(EMBED),
        _ => Reply::json(404, "404 page not found").with_header("content-type", "text/plain"),
    }
}

/// The running mock; stops when dropped. Derefs to the [`ScriptedUpstream`] it runs on.
pub struct OllamaUpstream(ScriptedUpstream);

impl std::ops::Deref for OllamaUpstream {
    type Target = ScriptedUpstream;
    fn deref(&self) -> &ScriptedUpstream {
        &self.0
    }
}

impl OllamaUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> OllamaUpstream {
        OllamaUpstream(ScriptedUpstream::start(Arc::new(fixture), None).await)
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.0.url()
    }
}
