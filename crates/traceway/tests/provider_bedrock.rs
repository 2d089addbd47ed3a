//! `bedrock/…` through the library against the testkit's Bedrock Runtime, which checks every
//! SigV4 signature by recomputing it: Converse, ConverseStream (AWS event-stream frames), tool
//! calls, Titan and Cohere embeddings, each error class, and broken answers.
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
use traceway_testkit::bedrock_upstream::{
    self as bedrock, BedrockUpstream, TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY,
    TEST_SESSION_TOKEN, TestCredentials,
};
use traceway_testkit::scripted_upstream::{Reply, StreamEnd};

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const CLAUDE_PATH: &str = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0";

fn aws_params(secret: &str) -> Extra {
    let mut p = Extra::new();
    p.insert("aws_access_key_id".into(), json!(TEST_ACCESS_KEY_ID));
    p.insert("aws_secret_access_key".into(), json!(secret));
    p.insert("aws_session_token".into(), json!(TEST_SESSION_TOKEN));
    p.insert("aws_region_name".into(), json!(TEST_REGION));
    p
}

fn deployment(name: &str, model: &str, up: &BedrockUpstream, params: Extra) -> DeploymentConfig {
    DeploymentConfig {
        model_name: name.into(),
        model: format!("bedrock/{model}"),
        api_base: Some(up.api_base()),
        params,
        timeout: Some(Duration::from_secs(5)),
        ..DeploymentConfig::default()
    }
}

/// A fresh client (so no failure of one case affects the next) with chat and embedding models.
fn client(up: &BedrockUpstream) -> Client {
    Client::builder()
        .deployment(deployment(
            "claude",
            CLAUDE,
            up,
            aws_params(TEST_SECRET_ACCESS_KEY),
        ))
        .deployment(deployment(
            "titan",
            "amazon.titan-embed-text-v2:0",
            up,
            aws_params(TEST_SECRET_ACCESS_KEY),
        ))
        .deployment(deployment(
            "cohere-embed",
            "cohere.embed-english-v3",
            up,
            aws_params(TEST_SECRET_ACCESS_KEY),
        ))
        .deployment(deployment(
            "wrong-secret",
            CLAUDE,
            up,
            aws_params("not-the-secret"),
        ))
        .build()
        .unwrap()
}

fn ask(model: &str, text: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(model, vec![ChatMessage::new(Role::User, text)])
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}}])
}

async fn collect(
    client: &Client,
    req: ChatCompletionRequest,
) -> Vec<Result<ChatCompletionChunk, Error>> {
    client.chat_stream(req).await.unwrap().collect().await
}

fn no_secrets(text: &str) {
    for s in [TEST_SECRET_ACCESS_KEY, TEST_SESSION_TOKEN, "not-the-secret"] {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[tokio::test]
async fn converse_is_signed_translated_and_answered() {
    let up = BedrockUpstream::start().await;
    let c = client(&up);
    let mut req = ChatCompletionRequest::new(
        "claude",
        vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hello"),
        ],
    );
    req.temperature = Some(0.0);
    req.max_tokens = Some(256);
    req.stop = Some(traceway::types::StopSequences::Many(vec![
        "\n\nHuman:".into(),
    ]));
    req.extra.insert("top_k".into(), json!(40));
    req.extra.insert("metadata".into(), json!({"tag": "t"}));
    let r = c.chat(req).await.unwrap();
    assert_eq!(
        r.choices[0].message.text(),
        "Hello! How can I help you today?"
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.model, CLAUDE);
    assert!(r.id.starts_with("chatcmpl-"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (12, 9, 21)
    );

    let sent = up.last_request();
    assert_eq!(sent.path, format!("{CLAUDE_PATH}/converse"));
    let auth = sent.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/"
        )) && auth.contains(&format!(
            "/{TEST_REGION}/bedrock/aws4_request, SignedHeaders="
        )) && auth.contains("x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(
        sent.header("x-amz-security-token"),
        Some(TEST_SESSION_TOKEN)
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert!(
        sent.header("traceparent").is_none(),
        "not traced: no traceparent"
    );
    up.verify_all().unwrap();
    assert_eq!(
        sent.body,
        json!({
            "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.0, "stopSequences": ["\n\nHuman:"]},
            "additionalModelRequestFields": {"top_k": 40}
        })
    );
    no_secrets(&String::from_utf8_lossy(&sent.raw));
}

#[tokio::test]
async fn tool_calls_round_trip_with_cached_usage() {
    let up = BedrockUpstream::start().await;
    let c = client(&up);
    let mut req = ask("claude", "Weather in Seattle?");
    req.tools = Some(serde_json::from_value(weather_tool()).unwrap());
    req.tool_choice = Some(json!("required"));
    let r = c.chat(req.clone()).await.unwrap();
    let choice = &r.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    let call = &choice.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"city": "Seattle", "unit": "celsius"}));
    let u = r.usage.unwrap();
    assert_eq!(u.prompt_tokens, 395 + 128);
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(128));
    let sent = up.last_request().body;
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["city"])
    );

    // The tool's answer goes back as a toolResult in a user turn.
    req.messages.push(choice.message.clone());
    let mut result = ChatMessage::new(Role::Tool, "12C and raining");
    result.tool_call_id = Some(call.id.clone());
    req.messages.push(result);
    req.tool_choice = None;
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    let sent = up.last_request().body;
    let turns = sent["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(
        turns[1]["content"][1]["toolUse"]["input"],
        json!({"city": "Seattle", "unit": "celsius"})
    );
    assert_eq!(
        turns[2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": call.id, "content": [{"text": "12C and raining"}]}}]})
    );
    up.verify_all().unwrap();
}

#[tokio::test]
async fn converse_stream_frames_become_openai_chunks() {
    let up = BedrockUpstream::start().await;
    let c = client(&up);
    let mut req = ask("claude", "Hello");
    req.stream_options = Some(traceway::types::StreamOptions {
        include_usage: Some(true),
        extra: Extra::new(),
    });
    let chunks = collect(&c, req).await;
    let chunks: Vec<ChatCompletionChunk> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        up.last_request().path,
        format!("{CLAUDE_PATH}/converse-stream")
    );
    assert_eq!(
        up.last_request().header("accept"),
        Some(bedrock::EVENT_STREAM_CONTENT_TYPE)
    );
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(text, "Hello! How can I help?");
    assert!(chunks.iter().all(|c| c.id == chunks[0].id));
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.finish_reason.clone())
        .collect();
    assert_eq!(finish, ["stop"]);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.as_ref().unwrap().total_tokens, 19);

    // Without include_usage the usage chunk is recorded but not passed on.
    let chunks = collect(&c, ask("claude", "Hello")).await;
    assert!(chunks.iter().all(|c| c.as_ref().unwrap().usage.is_none()));
    up.verify_all().unwrap();
}

#[tokio::test]
async fn streamed_tool_calls_assemble() {
    let up = BedrockUpstream::start().await;
    let c = client(&up);
    let mut req = ask("claude", "Weather in Seattle?");
    req.tools = Some(serde_json::from_value(weather_tool()).unwrap());
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
    assert_eq!(
        deltas[0].id.as_deref(),
        Some("tooluse_Qb2ldOSYTWS0RBlH0kmKTA")
    );
    assert_eq!(
        deltas[0].function.as_ref().unwrap().name.as_deref(),
        Some("get_weather")
    );
    assert!(deltas.iter().all(|d| d.index == 0));
    let args: String = deltas
        .iter()
        .filter_map(|d| d.function.as_ref()?.arguments.clone())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Seattle", "unit": "celsius"})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c.choices.first()?.finish_reason.clone());
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn titan_and_cohere_embeddings_through_invoke_model() {
    let up = BedrockUpstream::start().await;
    let c = client(&up);
    let emb = |model: &str, input: EmbeddingInput| EmbeddingRequest {
        model: model.into(),
        input,
        encoding_format: None,
        dimensions: None,
        user: None,
        extra: Extra::new(),
    };
    let r = c
        .embeddings(emb("titan", EmbeddingInput::One("hello world".into())))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].embedding.floats().unwrap().len(), 8);
    assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, 4);
    let sent = up.last_request();
    assert_eq!(sent.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(sent.body, json!({"inputText": "hello world"}));

    let r = c
        .embeddings(emb(
            "cohere-embed",
            EmbeddingInput::Many(vec!["hello".into(), "world".into()]),
        ))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.data[1].index, 1);
    let sent = up.last_request();
    assert_eq!(sent.path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        sent.body,
        json!({"texts": ["hello", "world"], "input_type": "search_document"})
    );
    up.verify_all().unwrap();

    let e = c
        .embeddings(emb(
            "titan",
            EmbeddingInput::Many(vec!["a".into(), "b".into()]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn every_error_class_keeps_bedrocks_message() {
    let up = BedrockUpstream::start().await;
    let cases: &[(u16, &str, &str, ErrorKind, u16, &str)] = &[
        (
            400,
            "ValidationException",
            bedrock::VALIDATION_EXCEPTION,
            ErrorKind::BadRequest,
            400,
            "bad_request",
        ),
        (
            403,
            "AccessDeniedException",
            bedrock::ACCESS_DENIED_EXCEPTION,
            ErrorKind::PermissionDenied,
            403,
            "permission_denied",
        ),
        (
            403,
            "UnrecognizedClientException",
            bedrock::UNRECOGNIZED_CLIENT_EXCEPTION,
            ErrorKind::Authentication,
            401,
            "auth_error",
        ),
        (
            404,
            "ResourceNotFoundException",
            bedrock::RESOURCE_NOT_FOUND_EXCEPTION,
            ErrorKind::NotFound,
            404,
            "not_found",
        ),
        (
            429,
            "ThrottlingException",
            bedrock::THROTTLING_EXCEPTION,
            ErrorKind::RateLimited,
            429,
            "rate_limited",
        ),
        (
            429,
            "ModelNotReadyException",
            bedrock::MODEL_NOT_READY_EXCEPTION,
            ErrorKind::UpstreamServer,
            503,
            "upstream_error",
        ),
        (
            503,
            "ServiceUnavailableException",
            bedrock::SERVICE_UNAVAILABLE_EXCEPTION,
            ErrorKind::UpstreamServer,
            503,
            "upstream_error",
        ),
        (
            500,
            "InternalServerException",
            bedrock::INTERNAL_SERVER_EXCEPTION,
            ErrorKind::UpstreamServer,
            500,
            "upstream_error",
        ),
    ];
    for (status, kind_name, body, kind, answer, class) in cases {
        up.push(bedrock::exception(*status, kind_name, body).with_header("retry-after", "3"));
        let e = client(&up).chat(ask("claude", "hi")).await.unwrap_err();
        let message: Value = serde_json::from_str(body).unwrap();
        assert_eq!(e.kind, *kind, "{kind_name}");
        assert_eq!(e.status(), *answer, "{kind_name}");
        assert_eq!(e.kind.error_class(), *class);
        assert_eq!(e.code.as_deref(), Some(*kind_name));
        assert_eq!(e.provider.as_deref(), Some("bedrock"));
        assert!(
            e.message.contains(message["message"].as_str().unwrap()),
            "{}",
            e.message
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)), "{kind_name}");
        no_secrets(&format!("{e:?}"));
    }
}

#[tokio::test]
async fn a_wrong_secret_fails_the_real_signature_check() {
    let up = BedrockUpstream::start().await;
    let e = client(&up)
        .chat(ask("wrong-secret", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.code.as_deref(), Some("InvalidSignatureException"));
    assert!(e.message.contains("signature we calculated does not match"));
    no_secrets(&format!("{e:?}"));
    assert!(up.verify_all().unwrap_err().contains("signature mismatch"));
}

#[tokio::test]
async fn api_keys_are_sent_as_bearer_tokens_instead_of_signing() {
    let up = BedrockUpstream::start_with(TestCredentials {
        bearer_token: Some("bedrock-api-key-1".into()),
        ..TestCredentials::default()
    })
    .await;
    let c = Client::builder()
        .deployment(DeploymentConfig {
            api_key: Some(Secret::new("bedrock-api-key-1")),
            ..deployment("claude", CLAUDE, &up, Extra::new())
        })
        .build()
        .unwrap();
    c.chat(ask("claude", "hi")).await.unwrap();
    let sent = up.last_request();
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer bedrock-api-key-1")
    );
    assert!(sent.header("x-amz-date").is_none());
}

#[tokio::test]
async fn broken_answers_are_clean_502s_never_panics_or_hangs() {
    let up = BedrockUpstream::start().await;
    let frames = bedrock::stream_frames(bedrock::CONVERSE_STREAM);

    // A body that is not Converse JSON.
    up.push(Reply::ok("{\"output\": "));
    let e = client(&up).chat(ask("claude", "hi")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));

    // A stream that stops between frames, before messageStop.
    up.push(bedrock::stream_reply(bedrock::CONVERSE_STREAM).truncated(3));
    let chunks = collect(&client(&up), ask("claude", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
    assert!(e.message.contains("before it finished"), "{}", e.message);

    // A stream cut inside a frame.
    let mut cut: Vec<Bytes> = frames[..2].to_vec();
    cut.push(frames[2].slice(..frames[2].len() / 2));
    up.push(Reply::stream(bedrock::EVENT_STREAM_CONTENT_TYPE, cut));
    let chunks = collect(&client(&up), ask("claude", "hi")).await;
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidResponse);
    assert!(e.message.contains("inside a message"), "{}", e.message);

    // A frame whose checksum is wrong.
    let mut bad = frames[1].to_vec();
    let n = bad.len();
    bad[n - 6] ^= 0x20;
    up.push(Reply::stream(
        bedrock::EVENT_STREAM_CONTENT_TYPE,
        vec![frames[0].clone(), Bytes::from(bad)],
    ));
    let chunks = collect(&client(&up), ask("claude", "hi")).await;
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::InvalidResponse
    );

    // Not an event stream at all: broken before its first chunk, so the call itself fails.
    up.push(Reply::stream(
        bedrock::EVENT_STREAM_CONTENT_TYPE,
        vec![Bytes::from_static(b"<html>502 Bad Gateway</html>\n")],
    ));
    let e = client(&up)
        .chat_stream(ask("claude", "hi"))
        .await
        .err()
        .expect("a stream broken before its first chunk fails the call");
    assert_eq!(e.kind, ErrorKind::InvalidResponse);

    // An exception frame mid-stream ends it with that error, after the text before it.
    up.push(bedrock::stream_reply(bedrock::CONVERSE_STREAM_THROTTLED));
    let chunks = collect(&client(&up), ask("claude", "hi")).await;
    assert_eq!(
        chunks[1].as_ref().unwrap().choices[0]
            .delta
            .content
            .as_deref(),
        Some("Hello")
    );
    let e = chunks.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.message.contains("Too many tokens"));

    // A stream that goes silent ends with a timeout, not a hang.
    up.push(
        bedrock::stream_reply(bedrock::CONVERSE_STREAM)
            .truncated(2)
            .paced(Duration::ZERO, StreamEnd::Hang),
    );
    let quick = Client::builder()
        .deployment(DeploymentConfig {
            timeout: Some(Duration::from_millis(500)),
            ..deployment("claude", CLAUDE, &up, aws_params(TEST_SECRET_ACCESS_KEY))
        })
        .build()
        .unwrap();
    let chunks = tokio::time::timeout(
        Duration::from_secs(10),
        collect(&quick, ask("claude", "hi")),
    )
    .await
    .expect("the stream ends on its own");
    assert_eq!(
        chunks.last().unwrap().as_ref().unwrap_err().kind,
        ErrorKind::Timeout
    );
}

#[tokio::test]
async fn missing_credentials_are_an_auth_error_before_any_request() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_BEARER_TOKEN_BEDROCK").is_some()
    {
        return; // the environment supplies credentials
    }
    let up = BedrockUpstream::start().await;
    let c = Client::builder()
        .deployment(deployment("claude", CLAUDE, &up, Extra::new()))
        .build()
        .unwrap();
    let e = c.chat(ask("claude", "hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(e.message.contains("AWS_ACCESS_KEY_ID"));
    assert!(up.requests().is_empty());
}
