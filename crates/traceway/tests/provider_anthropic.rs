//! `anthropic/` through the library against the testkit's Anthropic upstream: translation both
//! ways, streams, tool calls, JSON mode, thinking, every error class and broken answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod provider_support;

use provider_support::*;
use serde_json::{Value, json};
use std::time::Duration;
use traceway::types::{EmbeddingInput, EmbeddingRequest, Extra, ResponseFormat, StopSequences};
use traceway::{Client, ErrorKind};
use traceway_testkit::anthropic_upstream::{self as fixtures, AnthropicUpstream, StreamEnd};
use traceway_testkit::mock_upstream::Reply;

const KEY: &str = "sk-ant-test-secret-key";
const MODEL: &str = "anthropic/claude-sonnet-4-20250514";

fn anthropic(up: &AnthropicUpstream) -> Client {
    client(MODEL, &up.api_base(), Some(KEY), None)
}

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let up = AnthropicUpstream::start().await;
    let mut req = ask("Hello");
    req.temperature = Some(0.0);
    req.stop = Some(StopSequences::Many(vec!["END".into()]));
    req.user = Some("user-7".into());
    req.extra.insert("top_k".into(), json!(3));
    req.extra
        .insert("metadata".into(), json!({"tag": "gateway-only"}));
    let r = anthropic(&up).chat(req).await.unwrap();
    assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.model, "claude-sonnet-4-20250514");
    assert_eq!(
        r.choices[0].message.text(),
        "Hello! How can I help you today?"
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (24, 10, 34)
    );
    let d = u.prompt_tokens_details.unwrap();
    assert_eq!(
        (d.cached_tokens, d.cache_creation_tokens),
        (Some(8), Some(4))
    );

    let sent = up.last_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert!(sent.header("authorization").is_none());
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-20250514",
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "max_tokens": 4096,
            "stop_sequences": ["END"],
            "temperature": 0.0,
            "metadata": {"user_id": "user-7"},
            "top_k": 3
        })
    );
}

#[tokio::test]
async fn streams_text_with_usage_on_the_last_chunk() {
    let up = AnthropicUpstream::start().await;
    let c = anthropic(&up);
    let chunks = ok_chunks(collect(&c, with_usage(ask("Hi"))).await.unwrap());
    assert_eq!(text(&chunks), "Hello! How can I help?");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY")
    );
    assert_eq!(chunks[0].object, "chat.completion.chunk");
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let u = last.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (31, 15, 46)
    );
    assert_eq!(up.last_request().body["stream"], true);
    assert!(up.last_request().body.get("stream_options").is_none());

    let chunks = ok_chunks(collect(&c, ask("Hi")).await.unwrap());
    assert!(
        chunks.iter().all(|c| c.usage.is_none()),
        "usage only when asked"
    );
}

#[tokio::test]
async fn tool_calls_round_trip_plain_and_streamed() {
    let up = AnthropicUpstream::start().await;
    let c = anthropic(&up);
    let mut req = ask("Weather in SF?");
    req.tools = Some(vec![weather_tool()]);
    req.tool_choice = Some(json!({"type": "function", "function": {"name": "get_weather"}}));
    let r = c.chat(req.clone()).await.unwrap();
    let ch = &r.choices[0];
    assert_eq!(ch.finish_reason.as_deref(), Some("tool_calls"));
    let call = &ch.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    let sent = up.last_request().body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["location"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );

    // The answer goes back as tool_use + tool_result blocks.
    let mut next = req.clone();
    next.messages.push(ch.message.clone());
    let mut result = traceway::types::ChatMessage::new(traceway::types::Role::Tool, "15 degrees");
    result.tool_call_id = Some(call.id.clone());
    next.messages.push(result);
    c.chat(next).await.unwrap();
    let m = &up.last_request().body["messages"];
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[1]["content"][1]["input"]["unit"], "celsius");
    assert_eq!(
        m[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"})
    );

    let chunks = ok_chunks(collect(&c, req).await.unwrap());
    let calls = tool_calls(&chunks);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn json_mode_and_thinking_blocks() {
    let up = AnthropicUpstream::start().await;
    let c = anthropic(&up);
    let mut req = ask("Biggest city of France as JSON");
    let mut rf = Extra::new();
    rf.insert(
        "json_schema".into(),
        json!({"name": "city", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}),
    );
    req.response_format = Some(ResponseFormat {
        kind: "json_schema".into(),
        extra: rf,
    });
    let r = c.chat(req).await.unwrap();
    let content: Value = serde_json::from_str(&r.choices[0].message.text()).unwrap();
    assert_eq!(content, json!({"city": "Paris", "population": 2102650}));
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        up.last_request().body["tool_choice"],
        json!({"type": "tool", "name": "json_tool_call"})
    );

    up.push(Reply::ok(fixtures::MESSAGE_THINKING));
    let mut req = ask("27 * 453?");
    req.extra.insert("reasoning_effort".into(), json!("low"));
    let r = c.chat(req).await.unwrap();
    let m = &r.choices[0].message;
    assert_eq!(m.text(), "27 * 453 = 12,231");
    assert!(
        m.extra["reasoning_content"]
            .as_str()
            .unwrap()
            .contains("12231")
    );
    let blocks = m.extra["thinking_blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1]["type"], "redacted_thinking");
    assert_eq!(
        up.last_request().body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
}

#[tokio::test]
async fn each_error_class_keeps_anthropics_message() {
    let cases: [(u16, &str, ErrorKind, u16, &str); 7] = [
        (
            400,
            fixtures::ERROR_400,
            ErrorKind::BadRequest,
            400,
            "roles must alternate",
        ),
        (
            401,
            fixtures::ERROR_401,
            ErrorKind::Authentication,
            401,
            "invalid x-api-key",
        ),
        (
            403,
            fixtures::ERROR_403,
            ErrorKind::PermissionDenied,
            403,
            "does not have permission",
        ),
        (
            404,
            fixtures::ERROR_404,
            ErrorKind::NotFound,
            404,
            "claude-nonexistent",
        ),
        (
            429,
            fixtures::ERROR_429,
            ErrorKind::RateLimited,
            429,
            "exceed the rate limit",
        ),
        (
            500,
            fixtures::ERROR_500,
            ErrorKind::UpstreamServer,
            500,
            "Internal server error",
        ),
        (
            529,
            fixtures::ERROR_529,
            ErrorKind::UpstreamServer,
            503,
            "Overloaded",
        ),
    ];
    for (status, body, kind, answer, text) in cases {
        // A fresh deployment each time: repeated failures would put one into cooldown.
        let up = AnthropicUpstream::start().await;
        up.push(Reply::error_retry_after(status, body, 7));
        let e = anthropic(&up).chat(ask("x")).await.unwrap_err();
        assert_eq!(e.kind, kind, "{status}");
        assert_eq!(e.status(), answer, "{status}");
        assert!(e.message.contains(text), "{status}: {}", e.message);
        assert_eq!(e.provider.as_deref(), Some("anthropic"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)), "{status}");
        assert_no_secret(&e, KEY);
    }
    let up = AnthropicUpstream::start().await;
    up.push(Reply::error(429, fixtures::ERROR_429));
    let e = anthropic(&up).chat(ask("x")).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("rate_limit_error"));

    // No key at all: the upstream's own 401, and no key header sent.
    let up = AnthropicUpstream::start().await;
    let e = client(MODEL, &up.api_base(), None, None)
        .chat(ask("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(up.last_request().header("x-api-key").is_none());
}

#[tokio::test]
async fn malformed_truncated_broken_and_stalled_answers_are_clean_errors() {
    let up = AnthropicUpstream::start().await;
    up.push(Reply::ok("{\"id\": \"msg_1\", \"content\": 42"));
    let e = anthropic(&up).chat(ask("x")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    let up = AnthropicUpstream::start().await;
    up.push(Reply::sse_truncated(fixtures::MESSAGE_STREAM, 4));
    let items = collect(&anthropic(&up), ask("x")).await.unwrap();
    let e = stream_error(items);
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
    assert!(
        e.message.contains("closed the stream before it finished"),
        "{}",
        e.message
    );

    let up = AnthropicUpstream::start().await;
    up.push(Reply::Stream {
        pieces: vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"\n\n"
                .into(),
        ],
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Complete,
    });
    // Broken before its first chunk: the call itself fails (and could have been retried).
    let e = collect(&anthropic(&up), ask("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidResponse);

    let up = AnthropicUpstream::start().await;
    up.push(Reply::sse_with(
        fixtures::MESSAGE_STREAM,
        Duration::ZERO,
        StreamEnd::Abort,
    ));
    up.push(Reply::Stream {
        pieces: mock_pieces(),
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Abort,
    });
    // A stream cut after message_stop is complete; one cut mid-way is a broken connection.
    assert!(
        collect(&anthropic(&up), ask("x"))
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let e = stream_failure(&anthropic(&up), ask("x")).await;
    assert!(
        matches!(e.kind, ErrorKind::Connection | ErrorKind::InvalidResponse),
        "{:?}",
        e.kind
    );

    let up = AnthropicUpstream::start().await;
    up.push(Reply::sse_with(
        fixtures::MESSAGE_STREAM,
        Duration::ZERO,
        StreamEnd::Hang,
    ));
    up.push(Reply::Stream {
        pieces: mock_pieces(),
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Hang,
    });
    let c = client(
        MODEL,
        &up.api_base(),
        Some(KEY),
        Some(Duration::from_millis(500)),
    );
    assert!(
        collect(&c, ask("x"))
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let e = stream_error(collect(&c, ask("x")).await.unwrap());
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.provider.as_deref(), Some("anthropic"));
}

/// The first three events of the text stream: started, never finished.
fn mock_pieces() -> Vec<String> {
    traceway_testkit::mock_upstream::sse_pieces(fixtures::MESSAGE_STREAM)
        .into_iter()
        .take(3)
        .collect()
}

#[tokio::test]
async fn embeddings_and_text_completions_are_refused_before_any_call() {
    let up = AnthropicUpstream::start().await;
    let c = anthropic(&up);
    let e = c
        .embeddings(EmbeddingRequest {
            model: "m".into(),
            input: EmbeddingInput::One("x".into()),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("anthropic does not serve embeddings"));
    assert!(up.requests().is_empty());
}
