//! `ollama/…` through the library against the testkit's Ollama server: `/api/chat` (NDJSON
//! streams), tool calls with object arguments, `/api/generate`, `/api/embed`, each error class,
//! and broken answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use traceway::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, CompletionRequest, EmbeddingInput,
    EmbeddingRequest, Extra, Role,
};
use traceway::{Client, DeploymentConfig, Error, ErrorKind, Secret};
use traceway_testkit::ollama_upstream::{self as ollama, OllamaUpstream};
use traceway_testkit::scripted_upstream::{Reply, StreamEnd};

fn client(up: &OllamaUpstream) -> Client {
    let d = |name: &str, model: &str| DeploymentConfig {
        model_name: name.into(),
        model: model.into(),
        api_base: Some(up.api_base()),
        timeout: Some(Duration::from_secs(5)),
        ..DeploymentConfig::default()
    };
    Client::builder()
        .deployment(d("llama", "ollama/llama3.2"))
        .deployment(d("llama-chat", "ollama_chat/llama3.2"))
        .deployment(d("minilm", "ollama/all-minilm"))
        .build()
        .unwrap()
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
    json!([{"type": "function", "function": {"name": "get_current_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "format": {"type": "string"}}}}}])
}

#[tokio::test]
async fn chat_translates_options_images_and_json_mode() {
    let up = OllamaUpstream::start().await;
    let c = client(&up);
    let mut req: ChatCompletionRequest = serde_json::from_value(json!({
        "model": "llama",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Hello"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
        "temperature": 0, "top_p": 0.9, "max_tokens": 64, "stop": ["END"], "seed": 42,
        "response_format": {"type": "json_object"},
        "num_ctx": 8192, "keep_alive": "10m"
    }))
    .unwrap();
    req.extra.insert("metadata".into(), json!({"tag": "x"}));
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.choices[0].message.text(), "Hello! How are you today?");
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.model, "llama3.2");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (26, 298, 324)
    );

    let sent = up.last_request();
    assert_eq!(sent.path, "/api/chat");
    assert!(sent.header("authorization").is_none());
    assert_eq!(
        sent.body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello", "images": ["iVBORw0KGgo="]}],
            "stream": false,
            "format": "json",
            "keep_alive": "10m",
            "options": {"temperature": 0.0, "top_p": 0.9, "num_predict": 64, "stop": ["END"], "seed": 42, "num_ctx": 8192}
        })
    );

    // `ollama_chat/` is the same API.
    c.chat(ask("llama-chat", "hi")).await.unwrap();
    assert_eq!(up.last_request().path, "/api/chat");
    assert_eq!(up.last_request().body["model"], "llama3.2");
}

#[tokio::test]
async fn tool_calls_get_string_arguments_and_go_back_as_objects() {
    let up = OllamaUpstream::start().await;
    let c = client(&up);
    let mut req = ask("llama", "Weather in Paris?");
    req.tools = Some(serde_json::from_value(tools()).unwrap());
    let r = c.chat(req.clone()).await.unwrap();
    let choice = &r.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    let call = &choice.message.tool_calls.as_ref().unwrap()[0];
    assert!(call.id.starts_with("call_"));
    assert_eq!(call.function.name, "get_current_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
        json!({"format": "celsius", "location": "Paris, FR"})
    );
    assert_eq!(
        up.last_request().body["tools"][0]["function"]["name"],
        "get_current_weather"
    );

    req.messages.push(choice.message.clone());
    let mut result = ChatMessage::new(Role::Tool, "22 degrees");
    result.tool_call_id = Some(call.id.clone());
    req.messages.push(result);
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let sent = up.last_request().body;
    assert_eq!(
        sent["messages"][1]["tool_calls"][0],
        json!({"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "22 degrees", "tool_name": "get_current_weather"})
    );
}

#[tokio::test]
async fn ndjson_streams_become_chunks_with_usage_last() {
    let up = OllamaUpstream::start().await;
    let c = client(&up);
    let mut req = ask("llama", "Why is the sky blue?");
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
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(text, "The sky is blue.");
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.finish_reason.clone())
        .collect();
    assert_eq!(finish, ["stop"]);
    let u = chunks.last().unwrap().usage.clone().unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (26, 282));

    let mut req = ask("llama", "Weather in Paris?");
    req.tools = Some(serde_json::from_value(tools()).unwrap());
    let chunks: Vec<ChatCompletionChunk> = collect(&c, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let call = chunks
        .iter()
        .find_map(|c| c.choices.first()?.delta.tool_calls.clone())
        .unwrap();
    assert_eq!(call[0].index, 0);
    assert_eq!(
        call[0].function.as_ref().unwrap().arguments.as_deref(),
        Some(r#"{"format":"celsius","location":"Paris, FR"}"#)
    );
    let finish = chunks
        .iter()
        .find_map(|c| c.choices.first()?.finish_reason.clone());
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn generate_and_embed() {
    let up = OllamaUpstream::start().await;
    let c = client(&up);
    let req: CompletionRequest = serde_json::from_value(json!({
        "model": "llama", "prompt": "Why is the sky blue?", "max_tokens": 20, "suffix": "."
    }))
    .unwrap();
    let r = c.completion(req).await.unwrap();
    assert_eq!(
        r.choices[0].text,
        "The sky is blue because it is the color of the sky."
    );
    assert_eq!(r.usage.unwrap().completion_tokens, 290);
    let sent = up.last_request();
    assert_eq!(sent.path, "/api/generate");
    assert_eq!(
        sent.body,
        json!({"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": false, "suffix": ".", "options": {"num_predict": 20}})
    );

    let r = c
        .embeddings(EmbeddingRequest {
            model: "minilm".into(),
            input: EmbeddingInput::Many(vec![
                "Why is the sky blue?".into(),
                "Why is grass green?".into(),
            ]),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.model, "all-minilm");
    assert_eq!(r.usage.unwrap().prompt_tokens, 8);
    let sent = up.last_request();
    assert_eq!(sent.path, "/api/embed");
    assert_eq!(
        sent.body,
        json!({"model": "all-minilm", "input": ["Why is the sky blue?", "Why is grass green?"]})
    );
}

#[tokio::test]
async fn every_error_class_keeps_ollamas_message() {
    let up = OllamaUpstream::start().await;
    let cases: &[(u16, &str, ErrorKind, u16)] = &[
        (400, ollama::ERROR_400, ErrorKind::BadRequest, 400),
        (401, ollama::ERROR_401, ErrorKind::Authentication, 401),
        (404, ollama::ERROR_404, ErrorKind::NotFound, 404),
        (429, ollama::ERROR_429, ErrorKind::RateLimited, 429),
        (500, ollama::ERROR_500, ErrorKind::UpstreamServer, 500),
        (503, ollama::ERROR_503, ErrorKind::UpstreamServer, 503),
    ];
    for (status, body, kind, answer) in cases {
        up.push(Reply::json(*status, body).with_header("retry-after", "2"));
        let e = client(&up).chat(ask("llama", "hi")).await.unwrap_err();
        let message: Value = serde_json::from_str(body).unwrap();
        assert_eq!(e.kind, *kind, "{status}");
        assert_eq!(e.status(), *answer);
        assert_eq!(e.provider.as_deref(), Some("ollama"));
        assert!(
            e.message.contains(message["error"].as_str().unwrap()),
            "{}",
            e.message
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    }
    // A plain-text 404 (wrong path) keeps its text.
    up.push(Reply::json(404, "404 page not found").with_header("content-type", "text/plain"));
    let e = client(&up).chat(ask("llama", "hi")).await.unwrap_err();
    assert!(e.message.contains("404 page not found"));
}

#[tokio::test]
async fn keys_are_bearer_tokens_and_never_leak() {
    let up = OllamaUpstream::start().await;
    let c = Client::builder()
        .deployment(DeploymentConfig {
            model_name: "llama".into(),
            model: "ollama/llama3.2".into(),
            api_base: Some(format!("{}/api", up.api_base())),
            api_key: Some(Secret::new("ollama-secret-key")),
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap();
    c.chat(ask("llama", "hi")).await.unwrap();
    let sent = up.last_request();
    assert_eq!(
        sent.path, "/api/chat",
        "an api_base ending in /api works too"
    );
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer ollama-secret-key")
    );
    up.push(Reply::json(401, ollama::ERROR_401));
    let e = c.chat(ask("llama", "hi")).await.unwrap_err();
    assert!(!format!("{e:?}").contains("ollama-secret-key"));
}

#[tokio::test]
async fn broken_answers_are_clean_errors_never_panics_or_hangs() {
    let up = OllamaUpstream::start().await;
    up.push(Reply::ok("{\"model\": \"llama3.2\", \"message\": "));
    let e = client(&up).chat(ask("llama", "hi")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // The stream ends before the `done` line.
    up.push(ollama::stream_reply(ollama::CHAT_STREAM).truncated(2));
    let chunks = collect(&client(&up), ask("llama", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // The stream ends inside a line.
    let lines = ollama::lines(ollama::CHAT_STREAM);
    up.push(Reply::stream(
        ollama::NDJSON_CONTENT_TYPE,
        vec![lines[0].clone(), lines[1].slice(..10)],
    ));
    let chunks = collect(&client(&up), ask("llama", "hi")).await;
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::InvalidResponse
    );

    // An error line mid-stream.
    up.push(ollama::stream_reply(ollama::CHAT_STREAM_ERROR));
    let chunks = collect(&client(&up), ask("llama", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamServer);
    assert!(e.message.contains("unexpected EOF"));

    // Garbage between lines.
    up.push(Reply::stream(
        ollama::NDJSON_CONTENT_TYPE,
        vec![lines[0].clone(), Bytes::from_static(b"<html>oops</html>\n")],
    ));
    let chunks = collect(&client(&up), ask("llama", "hi")).await;
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::InvalidResponse
    );

    // Silence mid-stream is a timeout.
    up.push(
        ollama::stream_reply(ollama::CHAT_STREAM)
            .truncated(1)
            .paced(Duration::ZERO, StreamEnd::Hang),
    );
    let quick = Client::builder()
        .deployment(DeploymentConfig {
            model_name: "llama".into(),
            model: "ollama/llama3.2".into(),
            api_base: Some(up.api_base()),
            timeout: Some(Duration::from_millis(500)),
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap();
    let chunks = tokio::time::timeout(Duration::from_secs(10), collect(&quick, ask("llama", "hi")))
        .await
        .expect("the stream ends on its own");
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::Timeout
    );
}

/// `ClientBuilder::env`: a direct `ollama/…` model finds its server through the builder's own
/// environment (`OLLAMA_API_BASE`), never the process's.
#[tokio::test]
async fn the_builders_env_supplies_provider_settings_to_direct_models() {
    let up = OllamaUpstream::start().await;
    let env: std::collections::HashMap<String, String> =
        [("OLLAMA_API_BASE".to_owned(), up.api_base())].into();
    let c = Client::builder()
        .env(std::sync::Arc::new(env))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = c.chat(ask("ollama/llama3.2", "Hello")).await.unwrap();
    assert!(!r.choices.is_empty());
    assert_eq!(up.requests().len(), 1);
    // Without it, the same model goes to Ollama's default address, not this server.
    let plain = Client::builder()
        .env(std::sync::Arc::new(std::collections::HashMap::new()))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let _ = plain.chat(ask("ollama/llama3.2", "Hello")).await;
    assert_eq!(up.requests().len(), 1);
}
