//! The OpenAI-compatible presets (`mistral/`, `groq/`, `deepseek/`, `xai/`, `openrouter/`,
//! `together_ai/`, `fireworks_ai/`, `perplexity/`, `hosted_vllm/`) through the library against
//! the testkit's OpenAI-compatible upstream: each preset's path and Bearer key, its quirks, its
//! stream variant and its error bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod provider_support;

use provider_support::*;
use serde_json::json;
use traceway::types::{EmbeddingInput, EmbeddingRequest, Extra};
use traceway::{Client, DeploymentConfig, ErrorKind};
use traceway_testkit::mock_upstream::Reply;
use traceway_testkit::openai_compatible_upstream::{self as fixtures, OpenAiCompatibleUpstream};
use traceway_testkit::openai_upstream;

const KEY: &str = "sk-compatible-secret";

/// (prefix, the path part of its default base URL, model).
const PRESETS: &[(&str, &str, &str)] = &[
    ("mistral", "/v1", "mistral-small-latest"),
    ("groq", "/openai/v1", "llama-3.3-70b-versatile"),
    ("deepseek", "/beta", "deepseek-chat"),
    ("xai", "/v1", "grok-3"),
    ("openrouter", "/api/v1", "anthropic/claude-3.5-sonnet"),
    (
        "together_ai",
        "/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ),
    (
        "fireworks_ai",
        "/inference/v1",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
    ),
    ("perplexity", "", "sonar"),
    ("hosted_vllm", "/v1", "meta-llama/Llama-3.1-8B-Instruct"),
];

fn preset(up: &OpenAiCompatibleUpstream, prefix: &str) -> Client {
    let (_, path, model) = PRESETS.iter().find(|p| p.0 == prefix).unwrap();
    client(
        &format!("{prefix}/{model}"),
        &up.api_base(path),
        Some(KEY),
        None,
    )
}

#[tokio::test]
async fn every_preset_sends_openais_format_with_its_key() {
    let up = OpenAiCompatibleUpstream::start().await;
    for (prefix, path, model) in PRESETS {
        let r = preset(&up, prefix).chat(ask("Hello")).await.unwrap();
        assert_eq!(
            r.choices[0].message.text(),
            "Hello! How can I assist you today?",
            "{prefix}"
        );
        let sent = up.last_request();
        assert_eq!(sent.path, format!("{path}/chat/completions"), "{prefix}");
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let authority = up.api_base("");
        assert_eq!(
            sent.header("host"),
            authority.strip_prefix("http://"),
            "the Host header names the upstream's address and port"
        );
        assert_eq!(sent.body["model"], *model, "{prefix}");
        assert_eq!(
            sent.body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
    }
}

#[tokio::test]
async fn streams_tools_and_embeddings_pass_through() {
    let up = OpenAiCompatibleUpstream::start().await;
    let c = preset(&up, "together_ai");
    let chunks = ok_chunks(collect(&c, with_usage(ask("Hi"))).await.unwrap());
    assert_eq!(text(&chunks), "Hello! How can I help?");
    assert_eq!(
        chunks.last().unwrap().usage.as_ref().unwrap().total_tokens,
        15
    );
    let mut req = ask("Weather?");
    req.tools = Some(vec![weather_tool()]);
    let r = c.chat(req).await.unwrap();
    assert_eq!(
        r.choices[0].message.tool_calls.as_ref().unwrap()[0]
            .function
            .name,
        "get_current_weather"
    );
    let e = preset(&up, "mistral")
        .embeddings(EmbeddingRequest {
            model: "m".into(),
            input: EmbeddingInput::Many(vec!["a".into()]),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    assert_eq!(e.data.len(), 1);
    assert_eq!(up.last_request().path, "/v1/embeddings");
}

#[tokio::test]
async fn mistral_and_groq_streams_carry_usage_their_own_way() {
    let up = OpenAiCompatibleUpstream::start().await;
    up.push(Reply::sse(fixtures::MISTRAL_STREAM));
    let mut req = with_usage(ask("Hi"));
    req.seed = Some(3);
    let chunks = ok_chunks(collect(&preset(&up, "mistral"), req).await.unwrap());
    assert_eq!(text(&chunks), "Hello! How can I help?");
    assert!(
        chunks
            .iter()
            .any(|c| c.usage.as_ref().is_some_and(|u| u.total_tokens == 15))
    );
    let sent = up.last_request().body;
    assert!(
        sent.get("stream_options").is_none(),
        "Mistral refuses stream_options"
    );
    assert_eq!(sent["random_seed"], 3);

    up.push(Reply::sse(fixtures::GROQ_STREAM));
    let chunks = ok_chunks(
        collect(&preset(&up, "groq"), with_usage(ask("Hi")))
            .await
            .unwrap(),
    );
    assert!(
        chunks
            .iter()
            .any(|c| c.usage.as_ref().is_some_and(|u| u.total_tokens == 15))
    );

    up.push(Reply::ok(fixtures::DEEPSEEK_CHAT_COMPLETION));
    let r = preset(&up, "deepseek").chat(ask("Hi")).await.unwrap();
    assert_eq!(
        r.choices[0].message.extra["reasoning_content"],
        "The user greets me; greet back."
    );
    assert_eq!(
        r.usage
            .unwrap()
            .completion_tokens_details
            .unwrap()
            .reasoning_tokens,
        Some(7)
    );
}

#[tokio::test]
async fn each_familys_error_body_keeps_its_message() {
    let cases: [(&str, u16, &str, ErrorKind, &str); 7] = [
        (
            "mistral",
            401,
            fixtures::MISTRAL_ERROR_401,
            ErrorKind::Authentication,
            "Unauthorized",
        ),
        (
            "mistral",
            422,
            fixtures::MISTRAL_ERROR_422,
            ErrorKind::BadRequest,
            "Field required",
        ),
        (
            "xai",
            400,
            fixtures::XAI_ERROR_400,
            ErrorKind::BadRequest,
            "Incorrect API key",
        ),
        (
            "hosted_vllm",
            404,
            fixtures::VLLM_ERROR_404,
            ErrorKind::NotFound,
            "does not exist",
        ),
        (
            "groq",
            429,
            fixtures::GROQ_ERROR_429,
            ErrorKind::RateLimited,
            "Rate limit reached",
        ),
        (
            "openrouter",
            402,
            fixtures::OPENROUTER_ERROR_402,
            ErrorKind::BadRequest,
            "Insufficient credits",
        ),
        (
            "perplexity",
            500,
            openai_upstream::ERROR_500,
            ErrorKind::UpstreamServer,
            "server had an error",
        ),
    ];
    for (prefix, status, body, kind, text) in cases {
        let up = OpenAiCompatibleUpstream::start().await;
        up.push(Reply::error_retry_after(status, body, 2));
        let e = preset(&up, prefix).chat(ask("x")).await.unwrap_err();
        assert_eq!(e.kind, kind, "{prefix} {status}");
        if status == 402 {
            assert_eq!(
                e.status(),
                402,
                "an unlisted 4xx keeps the upstream's status"
            );
        }
        assert!(e.message.contains(text), "{prefix}: {}", e.message);
        assert_eq!(e.provider.as_deref(), Some(prefix));
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(2)));
        assert_no_secret(&e, KEY);
    }
}

#[tokio::test]
async fn hosted_vllm_works_without_a_key_and_needs_a_base() {
    let up = OpenAiCompatibleUpstream::start().await;
    let c = client("hosted_vllm/llama", &up.api_base("/v1"), None, None);
    c.chat(ask("x")).await.unwrap();
    assert!(up.last_request().header("authorization").is_none());
    if std::env::var("HOSTED_VLLM_API_BASE").is_err() {
        let e = Client::builder()
            .deployment(DeploymentConfig {
                model_name: "m".into(),
                model: "hosted_vllm/llama".into(),
                ..DeploymentConfig::default()
            })
            .build()
            .unwrap()
            .chat(ask("x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("HOSTED_VLLM_API_BASE"), "{}", e.message);
    }
}

#[tokio::test]
async fn malformed_and_truncated_answers_are_clean_errors() {
    let up = OpenAiCompatibleUpstream::start().await;
    up.push(Reply::ok("not json"));
    let e = preset(&up, "groq").chat(ask("x")).await.unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
    up.push(Reply::sse_truncated(fixtures::GROQ_STREAM, 2));
    let e = stream_error(collect(&preset(&up, "deepseek"), ask("x")).await.unwrap());
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
}
