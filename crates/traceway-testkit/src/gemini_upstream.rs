//! An in-process upstream that speaks the Gemini API (`/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:embedContent`, `:batchEmbedContents`; bodies, CRLF-framed
//! SSE streams and Google error bodies written from Google's API reference, in
//! `fixtures/gemini/`), records every request, and answers on cue.
//!
//! Un-cued requests get the fixture a real server would send: 403 without `x-goog-api-key`,
//! 404 for an unknown method, a `functionCall` answer when the request declares functions,
//! and one embedding per request of a batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::mock_upstream::{MockUpstream, Recorded, Reply};
use serde_json::{Value, json};

pub use crate::mock_upstream::StreamEnd;

/// A text answer (gemini-2.5-flash, with thinking tokens in its usage).
pub const GENERATE_CONTENT: &str = include_str!("../fixtures/gemini/generate_content.json");
/// An answer that calls a function (with a thought signature).
pub const GENERATE_CONTENT_FUNCTION_CALL: &str =
    include_str!("../fixtures/gemini/generate_content_function_call.json");
/// A streamed text answer.
pub const STREAM_GENERATE_CONTENT: &str =
    include_str!("../fixtures/gemini/stream_generate_content.sse");
/// A streamed answer that calls two functions.
pub const STREAM_FUNCTION_CALL: &str = include_str!("../fixtures/gemini/stream_function_call.sse");
/// `embedContent` answer.
pub const EMBED_CONTENT: &str = include_str!("../fixtures/gemini/embed_content.json");
/// `batchEmbedContents` answer for two inputs.
pub const BATCH_EMBED_CONTENTS: &str = include_str!("../fixtures/gemini/batch_embed_contents.json");
/// 400 `INVALID_ARGUMENT`.
pub const ERROR_400: &str = include_str!("../fixtures/gemini/error_400.json");
/// 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID` (Google's answer to a wrong key).
pub const ERROR_400_API_KEY: &str = include_str!("../fixtures/gemini/error_400_api_key.json");
/// 403 `PERMISSION_DENIED` (no key).
pub const ERROR_403: &str = include_str!("../fixtures/gemini/error_403.json");
/// 404 `NOT_FOUND` (unknown model).
pub const ERROR_404: &str = include_str!("../fixtures/gemini/error_404.json");
/// 429 `RESOURCE_EXHAUSTED` with a `RetryInfo` of 37s.
pub const ERROR_429: &str = include_str!("../fixtures/gemini/error_429.json");
/// 500 `INTERNAL`.
pub const ERROR_500: &str = include_str!("../fixtures/gemini/error_500.json");
/// 503 `UNAVAILABLE` (model overloaded).
pub const ERROR_503: &str = include_str!("../fixtures/gemini/error_503.json");

/// The running upstream (a [`MockUpstream`] with Gemini's fixtures); stops when dropped.
pub struct GeminiUpstream(MockUpstream);

crate::deref_mock_upstream!(GeminiUpstream);

impl GeminiUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> GeminiUpstream {
        GeminiUpstream(MockUpstream::start(fixture).await)
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.url()
    }
}

fn fixture(r: &Recorded) -> Reply {
    let Some((model, method)) = r.path.rsplit_once(':') else {
        return Reply::error(404, ERROR_404);
    };
    if !model.starts_with("/v1beta/models/") {
        return Reply::error(404, ERROR_404);
    }
    if r.header("x-goog-api-key").is_none() {
        return Reply::error(403, ERROR_403);
    }
    let functions = r.body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t.get("functionDeclarations").is_some()));
    match method {
        "generateContent" if functions => Reply::ok(GENERATE_CONTENT_FUNCTION_CALL),
        "generateContent" => Reply::ok(GENERATE_CONTENT),
        "streamGenerateContent" if r.query.as_deref() != Some("alt=sse") => Reply::error(
            400,
            r#"{"error":{"code":400,"message":"this mock streams only with alt=sse","status":"INVALID_ARGUMENT"}}"#,
        ),
        "streamGenerateContent" if functions => Reply::sse(STREAM_FUNCTION_CALL),
        "streamGenerateContent" => Reply::sse(STREAM_GENERATE_CONTENT),
        "embedContent" => Reply::ok(EMBED_CONTENT),
        "batchEmbedContents" => {
            let n = r.body["requests"].as_array().map_or(0, Vec::len);
            let all: Value = serde_json::from_str(BATCH_EMBED_CONTENTS).unwrap();
            let pool = all["embeddings"].as_array().unwrap();
            let embeddings: Vec<Value> = (0..n).map(|i| pool[i % pool.len()].clone()).collect();
            Reply::ok(&json!({"embeddings": embeddings}).to_string())
        }
        _ => Reply::error(404, ERROR_404),
    }
}
