//! `gemini/` through the library against the testkit's Gemini upstream: translation both ways,
//! streams, function calls, embeddings, every error class and broken answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod provider_support;

use provider_support::*;
use serde_json::{Value, json};
use std::time::Duration;
use traceway::types::{ChatMessage, EmbeddingInput, EmbeddingRequest, Extra, ResponseFormat, Role};
use traceway::{Client, ErrorKind};
use traceway_testkit::gemini_upstream::{self as fixtures, GeminiUpstream, StreamEnd};
use traceway_testkit::mock_upstream::Reply;

const KEY: &str = "AIza-gemini-test-secret";
const MODEL: &str = "gemini/gemini-2.5-flash";

fn gemini(up: &GeminiUpstream) -> Client {
    client(MODEL, &up.api_base(), Some(KEY), None)
}

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let up = GeminiUpstream::start().await;
    let mut req = ask("Hello");
    req.temperature = Some(0.0);
    req.max_completion_tokens = Some(256);
    req.response_format = Some(ResponseFormat {
        kind: "json_object".into(),
        extra: Extra::new(),
    });
    req.extra
        .insert("metadata".into(), json!({"tag": "gateway-only"}));
    let r = gemini(&up).chat(req).await.unwrap();
    assert_eq!(r.id, "mBPraJyoFuiJ1dkP3beEkQQ");
    assert_eq!(r.model, "gemini-2.5-flash");
    assert_eq!(
        r.choices[0].message.text(),
        "Hello! How can I help you today?"
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 15, 20)
    );
    assert_eq!(
        u.completion_tokens_details.unwrap().reasoning_tokens,
        Some(6)
    );

    let sent = up.last_request();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert!(sent.header("authorization").is_none());
    assert_eq!(
        sent.body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 0.0, "maxOutputTokens": 256, "responseMimeType": "application/json"}
        })
    );
}

#[tokio::test]
async fn streams_text_with_usage_on_the_last_chunk() {
    let up = GeminiUpstream::start().await;
    let c = gemini(&up);
    let chunks = ok_chunks(collect(&c, with_usage(ask("Hi"))).await.unwrap());
    assert_eq!(text(&chunks), "Hello! How can I help?");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    assert!(chunks.iter().all(|c| c.id == "strm01"));
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let u = last.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 11, 16)
    );
    let sent = up.last_request();
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(sent.query.as_deref(), Some("alt=sse"));
    assert!(sent.body.get("stream").is_none() && sent.body.get("stream_options").is_none());

    let chunks = ok_chunks(collect(&c, ask("Hi")).await.unwrap());
    assert!(
        chunks.iter().all(|c| c.usage.is_none()),
        "usage only when asked"
    );
}

#[tokio::test]
async fn function_calls_round_trip_plain_and_streamed() {
    let up = GeminiUpstream::start().await;
    let c = gemini(&up);
    let mut req = ask("Weather in Boston?");
    req.tools = Some(vec![weather_tool()]);
    req.tool_choice = Some(json!("required"));
    let r = c.chat(req.clone()).await.unwrap();
    let ch = &r.choices[0];
    assert_eq!(ch.finish_reason.as_deref(), Some("tool_calls"));
    let call = &ch.message.tool_calls.as_ref().unwrap()[0];
    assert!(call.id.starts_with("call_"));
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(call.function.arguments, "{\"location\":\"Boston, MA\"}");
    let sent = up.last_request().body;
    let decl = &sent["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert_eq!(
        decl["parameters"]["properties"]["unit"]["enum"],
        json!(["celsius", "fahrenheit"])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );

    // The call and its result go back as functionCall / functionResponse, signature included.
    let mut next = req.clone();
    next.messages.push(ch.message.clone());
    let mut result = ChatMessage::new(Role::Tool, "{\"temp_c\": 21}");
    result.tool_call_id = Some(call.id.clone());
    next.messages.push(result);
    c.chat(next).await.unwrap();
    let contents = &up.last_request().body["contents"];
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Boston, MA"}}, "thoughtSignature": "CiQB0e2Kb3fM9ihkjsNSBNSl"}]})
    );
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": {"temp_c": 21}}}}]})
    );

    let chunks = ok_chunks(collect(&c, req).await.unwrap());
    let calls = tool_calls(&chunks);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[1].1, "get_time");
    assert!(calls.iter().all(|c| c.0.starts_with("call_")) && calls[0].0 != calls[1].0);
    let args: Value = serde_json::from_str(&calls[1].2).unwrap();
    assert_eq!(args, json!({"tz": "America/New_York"}));
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn embeddings_one_and_many() {
    let up = GeminiUpstream::start().await;
    let c = gemini(&up);
    let req = |input, dims| EmbeddingRequest {
        model: "m".into(),
        input,
        encoding_format: None,
        dimensions: dims,
        user: None,
        extra: Extra::new(),
    };
    let r = c
        .embeddings(req(
            EmbeddingInput::One("The food was delicious".into()),
            Some(4),
        ))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].embedding.floats().unwrap()[0], 0.013168517);
    assert_eq!(r.object, "list");
    let sent = up.last_request();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:embedContent");
    assert_eq!(
        sent.body,
        json!({"content": {"parts": [{"text": "The food was delicious"}]}, "outputDimensionality": 4})
    );
    let r = c
        .embeddings(req(
            EmbeddingInput::Many(vec!["a".into(), "b".into(), "c".into()]),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        r.data.iter().map(|d| d.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let sent = up.last_request();
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    );
    assert_eq!(sent.body["requests"][2]["model"], "models/gemini-2.5-flash");
    assert_eq!(sent.body["requests"][2]["content"]["parts"][0]["text"], "c");
}

#[tokio::test]
async fn each_error_class_keeps_googles_message() {
    let cases: [(u16, &str, ErrorKind, u16, &str); 8] = [
        (
            400,
            fixtures::ERROR_400,
            ErrorKind::BadRequest,
            400,
            "contents is not specified",
        ),
        (
            400,
            fixtures::ERROR_400_API_KEY,
            ErrorKind::Authentication,
            401,
            "API key not valid",
        ),
        (
            403,
            fixtures::ERROR_403,
            ErrorKind::PermissionDenied,
            403,
            "unregistered callers",
        ),
        (
            404,
            fixtures::ERROR_404,
            ErrorKind::NotFound,
            404,
            "is not found for API version",
        ),
        (
            429,
            fixtures::ERROR_429,
            ErrorKind::RateLimited,
            429,
            "exceeded your current quota",
        ),
        (
            500,
            fixtures::ERROR_500,
            ErrorKind::UpstreamServer,
            500,
            "internal error",
        ),
        (
            503,
            fixtures::ERROR_503,
            ErrorKind::UpstreamServer,
            503,
            "overloaded",
        ),
        (
            504,
            r#"{"error":{"code":504,"message":"Deadline expired before operation could complete.","status":"DEADLINE_EXCEEDED"}}"#,
            ErrorKind::Timeout,
            504,
            "Deadline expired",
        ),
    ];
    for (status, body, kind, answer, text) in cases {
        let up = GeminiUpstream::start().await;
        up.push(Reply::error(status, body));
        let e = gemini(&up).chat(ask("x")).await.unwrap_err();
        assert_eq!(e.kind, kind, "{status} {text}");
        assert_eq!(e.status(), answer, "{status} {text}");
        assert!(e.message.contains(text), "{status}: {}", e.message);
        assert_eq!(e.provider.as_deref(), Some("gemini"));
        assert_no_secret(&e, KEY);
    }
    // The retry delay comes from RetryInfo, or from a retry-after header when one is sent.
    let up = GeminiUpstream::start().await;
    up.push(Reply::error(429, fixtures::ERROR_429));
    let e = gemini(&up).chat(ask("x")).await.unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(37)));
    assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
    let up = GeminiUpstream::start().await;
    up.push(Reply::error_retry_after(429, fixtures::ERROR_429, 5));
    let e = gemini(&up).chat(ask("x")).await.unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(5)));

    let up = GeminiUpstream::start().await;
    let e = client(MODEL, &up.api_base(), None, None)
        .chat(ask("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert!(up.last_request().header("x-goog-api-key").is_none());
}

#[tokio::test]
async fn malformed_truncated_broken_and_stalled_answers_are_clean_errors() {
    let up = GeminiUpstream::start().await;
    up.push(Reply::ok("<html>not json</html>"));
    let e = gemini(&up).chat(ask("x")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // Cut before any candidate finished: the stream did not end, whatever the socket says.
    let up = GeminiUpstream::start().await;
    up.push(Reply::sse_truncated(fixtures::STREAM_GENERATE_CONTENT, 2));
    let e = stream_error(collect(&gemini(&up), ask("x")).await.unwrap());
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    let up = GeminiUpstream::start().await;
    up.push(Reply::Stream {
        pieces: vec!["data: {\"candidates\": [{\"content\": \r\n\r\n".into()],
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Complete,
    });
    // Broken before its first chunk: the call itself fails (and could have been retried).
    let e = collect(&gemini(&up), ask("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidResponse);

    let up = GeminiUpstream::start().await;
    up.push(Reply::Stream {
        pieces: vec!["data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n".into()],
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Complete,
    });
    let e = collect(&gemini(&up), ask("x")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::UpstreamServer, 503));

    let first_two = || -> Vec<String> {
        traceway_testkit::mock_upstream::sse_pieces(fixtures::STREAM_GENERATE_CONTENT)
            .into_iter()
            .take(2)
            .collect()
    };
    let up = GeminiUpstream::start().await;
    up.push(Reply::Stream {
        pieces: first_two(),
        content_type: "text/event-stream".into(),
        gap: Duration::ZERO,
        end: StreamEnd::Abort,
    });
    let e = stream_failure(&gemini(&up), ask("x")).await;
    assert!(
        matches!(e.kind, ErrorKind::Connection | ErrorKind::InvalidResponse),
        "{:?}",
        e.kind
    );

    let up = GeminiUpstream::start().await;
    up.push(Reply::Stream {
        pieces: first_two(),
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
    let e = stream_error(collect(&c, ask("x")).await.unwrap());
    assert_eq!(e.kind, ErrorKind::Timeout);
}
