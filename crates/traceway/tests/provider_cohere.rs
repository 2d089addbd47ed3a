//! `cohere/…` through the library against the testkit's Cohere v2 API: Chat (SSE streams with
//! Cohere's event types), tool plans and tool calls, Embed, each error class, broken answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use traceway::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, EmbeddingInput, EmbeddingRequest,
    Extra, Role,
};
use traceway::{Client, DeploymentConfig, Error, ErrorKind, Secret};
use traceway_testkit::cohere_upstream::{self as cohere, CohereUpstream};
use traceway_testkit::scripted_upstream::{Reply, StreamEnd};

const KEY: &str = "co-test-secret-key";

fn client_with(up: &CohereUpstream, timeout: Duration) -> Client {
    let d = |name: &str, model: &str| DeploymentConfig {
        model_name: name.into(),
        model: model.into(),
        api_base: Some(up.api_base()),
        api_key: Some(Secret::new(KEY)),
        timeout: Some(timeout),
        ..DeploymentConfig::default()
    };
    Client::builder()
        .deployment(d("command", "cohere/command-r-plus-08-2024"))
        .deployment(d("command-chat", "cohere_chat/command-a-03-2025"))
        .deployment(d("embed", "cohere/embed-english-v3.0"))
        .build()
        .unwrap()
}

fn client(up: &CohereUpstream) -> Client {
    client_with(up, Duration::from_secs(5))
}

fn ask(model: &str, text: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(model, vec![ChatMessage::new(Role::User, text)])
}

async fn collect(
    client: &Client,
    req: ChatCompletionRequest,
) -> Vec<Result<ChatCompletionChunk, Error>> {
    client.chat_stream(req).await.unwrap().collect().await
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
}

#[tokio::test]
async fn chat_translates_params_and_authenticates() {
    let up = CohereUpstream::start().await;
    let c = client(&up);
    let req: ChatCompletionRequest = serde_json::from_value(json!({
        "model": "command",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What are LLMs?"}],
        "temperature": 0.3, "top_p": 0.75, "max_completion_tokens": 100, "stop": "END", "seed": 7,
        "frequency_penalty": 0.1, "response_format": {"type": "json_object"},
        "metadata": {"tag": "x"}, "store": true
    }))
    .unwrap();
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
    assert!(r.choices[0].message.text().starts_with("LLMs stands for"));
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (71, 20, 91)
    );
    let sent = up.last_request();
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "command-r-plus-08-2024",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What are LLMs?"}],
            "stream": false, "temperature": 0.3, "p": 0.75, "max_tokens": 100,
            "stop_sequences": ["END"], "seed": 7, "frequency_penalty": 0.1,
            "response_format": {"type": "json_object"}
        })
    );
    c.chat(ask("command-chat", "hi")).await.unwrap();
    assert_eq!(up.last_request().body["model"], "command-a-03-2025");
}

#[tokio::test]
async fn tool_plans_and_calls_round_trip() {
    let up = CohereUpstream::start().await;
    let c = client(&up);
    let mut req = ask("command", "Weather in Toronto?");
    req.tools = Some(serde_json::from_value(tools()).unwrap());
    req.tool_choice = Some(json!("required"));
    let r = c.chat(req.clone()).await.unwrap();
    let choice = &r.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        choice.message.extra["tool_plan"],
        "I will look up the weather in Toronto."
    );
    let call = &choice.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "get_weather_1byjy32y4hvq");
    assert_eq!(call.function.arguments, r#"{"location":"Toronto"}"#);
    let sent = up.last_request().body;
    assert_eq!(sent["tool_choice"], "REQUIRED");
    assert_eq!(sent["tools"], tools());

    req.messages.push(choice.message.clone());
    let mut result = ChatMessage::new(Role::Tool, r#"{"temperature": "20C"}"#);
    result.tool_call_id = Some(call.id.clone());
    req.messages.push(result);
    req.tool_choice = None;
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let sent = up.last_request().body;
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "tool_plan": "I will look up the weather in Toronto.",
            "tool_calls": [{"id": "get_weather_1byjy32y4hvq", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"Toronto\"}"}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": "get_weather_1byjy32y4hvq", "content": "{\"temperature\": \"20C\"}"})
    );
}

#[tokio::test]
async fn sse_streams_become_chunks_text_and_tools() {
    let up = CohereUpstream::start().await;
    let c = client(&up);
    let mut req = ask("command", "Hello");
    req.stream_options = Some(traceway::types::StreamOptions {
        include_usage: Some(true),
        extra: Extra::new(),
    });
    let chunks: Vec<ChatCompletionChunk> = collect(&c, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(up.last_request().body["stream"], true);
    assert_eq!(
        up.last_request().header("accept"),
        Some("text/event-stream")
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "29f14a5a-11de-4cae-9800-25e4747408ea")
    );
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(text, "Hello! How can I help?");
    let u = chunks.last().unwrap().usage.clone().unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (69, 7));

    let mut req = ask("command", "Weather in Toronto?");
    req.tools = Some(serde_json::from_value(tools()).unwrap());
    let chunks: Vec<ChatCompletionChunk> = collect(&c, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| {
            c.choices
                .iter()
                .flat_map(|ch| ch.delta.tool_calls.iter().flatten())
        })
        .collect();
    assert_eq!(deltas[0].id.as_deref(), Some("get_weather_nsz5zm3w56q3"));
    let args: String = deltas
        .iter()
        .filter_map(|d| d.function.as_ref()?.arguments.clone())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Toronto"})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c.choices.first()?.finish_reason.clone());
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn embed_v2_defaults_input_type_and_float() {
    let up = CohereUpstream::start().await;
    let c = client(&up);
    let mut req = EmbeddingRequest {
        model: "embed".into(),
        input: EmbeddingInput::Many(vec!["hello".into(), "goodbye".into()]),
        encoding_format: Some("float".into()),
        dimensions: None,
        user: None,
        extra: Extra::new(),
    };
    let r = c.embeddings(req.clone()).await.unwrap();
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.data[0].embedding.floats().unwrap().len(), 5);
    assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, 2);
    let sent = up.last_request();
    assert_eq!(sent.path, "/v2/embed");
    assert_eq!(
        sent.body,
        json!({"model": "embed-english-v3.0", "texts": ["hello", "goodbye"],
            "embedding_types": ["float"], "input_type": "search_document"})
    );
    req.extra.insert("input_type".into(), json!("search_query"));
    c.embeddings(req).await.unwrap();
    assert_eq!(up.last_request().body["input_type"], "search_query");
}

#[tokio::test]
async fn every_error_class_keeps_coheres_message() {
    let up = CohereUpstream::start().await;
    let cases: &[(u16, &str, ErrorKind, u16)] = &[
        (400, cohere::ERROR_400, ErrorKind::BadRequest, 400),
        (401, cohere::ERROR_401, ErrorKind::Authentication, 401),
        (498, cohere::ERROR_401, ErrorKind::Authentication, 401),
        (404, cohere::ERROR_404, ErrorKind::NotFound, 404),
        (429, cohere::ERROR_429, ErrorKind::RateLimited, 429),
        (500, cohere::ERROR_500, ErrorKind::UpstreamServer, 500),
        (503, cohere::ERROR_503, ErrorKind::UpstreamServer, 503),
    ];
    for (status, body, kind, answer) in cases {
        up.push(Reply::json(*status, body).with_header("retry-after", "5"));
        let e = client(&up).chat(ask("command", "hi")).await.unwrap_err();
        let message: Value = serde_json::from_str(body).unwrap();
        assert_eq!(e.kind, *kind, "{status}");
        assert_eq!(e.status(), *answer);
        assert_eq!(e.provider.as_deref(), Some("cohere"));
        assert!(
            e.message.contains(message["message"].as_str().unwrap()),
            "{}",
            e.message
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
        assert!(!format!("{e:?}").contains(KEY));
    }
}

#[tokio::test]
async fn broken_answers_are_clean_errors_never_panics_or_hangs() {
    let up = CohereUpstream::start().await;
    up.push(Reply::ok(r#"{"id": "x", "message": "#));
    let e = client(&up).chat(ask("command", "hi")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // The stream ends before message-end.
    up.push(cohere::stream_reply(cohere::CHAT_STREAM).truncated(4));
    let chunks = collect(&client(&up), ask("command", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // A data line that is not JSON.
    let events = cohere::events(cohere::CHAT_STREAM);
    up.push(Reply::stream(
        "text/event-stream",
        vec![
            events[0].clone(),
            Bytes::from_static(b"event: content-delta\ndata: {oops\n\n"),
        ],
    ));
    let chunks = collect(&client(&up), ask("command", "hi")).await;
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::InvalidResponse
    );

    // message-end that reports an error.
    up.push(Reply::stream(
        "text/event-stream",
        vec![
            events[0].clone(),
            Bytes::from_static(b"event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\",\"error\":\"model overloaded\"}}\n\n"),
        ],
    ));
    let chunks = collect(&client(&up), ask("command", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamServer);
    assert!(e.message.contains("model overloaded"));

    // Silence mid-stream is a timeout.
    up.push(
        cohere::stream_reply(cohere::CHAT_STREAM)
            .truncated(2)
            .paced(Duration::ZERO, StreamEnd::Hang),
    );
    let quick = client_with(&up, Duration::from_millis(500));
    let chunks = tokio::time::timeout(
        Duration::from_secs(10),
        collect(&quick, ask("command", "hi")),
    )
    .await
    .expect("the stream ends on its own");
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::Timeout
    );
}

#[tokio::test]
async fn a_missing_key_is_an_auth_error_before_any_request() {
    if std::env::var_os("COHERE_API_KEY").is_some() || std::env::var_os("CO_API_KEY").is_some() {
        return; // the environment supplies a key
    }
    let up = CohereUpstream::start().await;
    let c = Client::builder()
        .deployment(DeploymentConfig {
            model_name: "command".into(),
            model: "cohere/command-r".into(),
            api_base: Some(up.api_base()),
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap();
    let e = c.chat(ask("command", "hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(e.message.contains("COHERE_API_KEY"));
    assert!(up.requests().is_empty());
}
