//! `azure/` through the library against the testkit's Azure OpenAI upstream: the deployments
//! URL with `api-version`, the `api-key` header, OpenAI's bodies with Azure's additions, every
//! error class in Azure's shapes, and the configuration errors that name what to set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod provider_support;

use provider_support::*;
use serde_json::json;
use std::time::Duration;
use traceway::types::{CompletionRequest, EmbeddingInput, EmbeddingRequest, Extra};
use traceway::{Client, DeploymentConfig, ErrorKind, Secret};
use traceway_testkit::azure_upstream::{self as fixtures, AzureUpstream};
use traceway_testkit::mock_upstream::Reply;

const KEY: &str = "azure-test-secret-key";

fn azure(up: &AzureUpstream, version: Option<&str>) -> Client {
    let mut params = Extra::new();
    if let Some(v) = version {
        params.insert("api_version".into(), json!(v));
    }
    Client::builder()
        .deployment(DeploymentConfig {
            model_name: "m".into(),
            model: "azure/my-gpt-4o".into(),
            api_base: Some(up.api_base()),
            api_key: Some(Secret::new(KEY)),
            params,
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn chat_goes_to_the_deployment_with_api_version_and_api_key() {
    let up = AzureUpstream::start().await;
    let mut req = ask("Hello");
    req.temperature = Some(0.0);
    let r = azure(&up, Some("2024-10-21")).chat(req).await.unwrap();
    assert_eq!(
        r.choices[0].message.text(),
        "Hello! How can I assist you today?"
    );
    assert!(
        r.extra.contains_key("prompt_filter_results"),
        "Azure's fields pass through"
    );
    assert_eq!(r.usage.unwrap().total_tokens, 27);
    let sent = up.last_request();
    assert_eq!(sent.path, "/openai/deployments/my-gpt-4o/chat/completions");
    assert_eq!(sent.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(sent.header("api-key"), Some(KEY));
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.body["model"], "my-gpt-4o");
    assert_eq!(sent.body["temperature"], 0.0);
    assert!(sent.body.get("api_version").is_none());
}

#[tokio::test]
async fn streams_tools_completions_and_embeddings() {
    let up = AzureUpstream::start().await;
    let c = azure(&up, Some("2024-10-21"));
    let chunks = ok_chunks(collect(&c, with_usage(ask("Hi"))).await.unwrap());
    assert_eq!(text(&chunks), "Hello! How can I help?");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    assert_eq!(
        chunks.last().unwrap().usage.as_ref().unwrap().total_tokens,
        15
    );
    assert_eq!(
        up.last_request().body["stream_options"]["include_usage"],
        true
    );

    let mut req = ask("Weather?");
    req.tools = Some(vec![weather_tool()]);
    let r = c.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));

    let r = c
        .completion(CompletionRequest {
            model: "m".into(),
            prompt: json!("Say this is a test"),
            stream: None,
            stream_options: None,
            max_tokens: Some(7),
            temperature: None,
            top_p: None,
            n: None,
            stop: None,
            seed: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    assert!(!r.choices.is_empty());
    assert_eq!(
        up.last_request().path,
        "/openai/deployments/my-gpt-4o/completions"
    );

    let r = c
        .embeddings(EmbeddingRequest {
            model: "m".into(),
            input: EmbeddingInput::One("x".into()),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    assert_eq!(r.data.len(), 1);
    assert_eq!(
        up.last_request().path,
        "/openai/deployments/my-gpt-4o/embeddings"
    );
}

#[tokio::test]
async fn each_error_class_in_azures_shapes() {
    let cases: [(u16, &str, ErrorKind, &str); 5] = [
        (
            400,
            fixtures::ERROR_400_CONTENT_FILTER,
            ErrorKind::BadRequest,
            "content management policy",
        ),
        (
            401,
            fixtures::ERROR_401,
            ErrorKind::Authentication,
            "Access token is missing",
        ),
        (
            404,
            fixtures::ERROR_404,
            ErrorKind::NotFound,
            "deployment for this resource does not exist",
        ),
        (
            429,
            fixtures::ERROR_429,
            ErrorKind::RateLimited,
            "exceeded token rate limit",
        ),
        (
            500,
            fixtures::ERROR_500,
            ErrorKind::UpstreamServer,
            "had an error while processing",
        ),
    ];
    for (status, body, kind, text) in cases {
        let up = AzureUpstream::start().await;
        up.push(Reply::error_retry_after(status, body, 6));
        let e = azure(&up, Some("2024-10-21"))
            .chat(ask("x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{status}");
        assert_eq!(e.status(), status);
        assert!(e.message.contains(text), "{status}: {}", e.message);
        assert_eq!(e.retry_after, Some(Duration::from_secs(6)));
        assert_eq!(e.provider.as_deref(), Some("azure"));
        assert_no_secret(&e, KEY);
    }
    let up = AzureUpstream::start().await;
    up.push(Reply::error(400, fixtures::ERROR_400_CONTENT_FILTER));
    let e = azure(&up, Some("2024-10-21"))
        .chat(ask("x"))
        .await
        .unwrap_err();
    assert!(e.is_content_policy_violation());
}

#[tokio::test]
async fn a_missing_api_version_is_a_400_naming_what_to_set() {
    let up = AzureUpstream::start().await;
    let e = azure(&up, None).chat(ask("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("api_version") && e.message.contains("AZURE_API_VERSION"));
    assert!(up.requests().is_empty(), "nothing is sent");

    let e = Client::builder()
        .deployment(DeploymentConfig {
            model_name: "m".into(),
            model: "azure/dep".into(),
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap()
        .chat(ask("x"))
        .await;
    // Without AZURE_API_BASE in this process's environment, the base is missing.
    if std::env::var("AZURE_API_BASE").is_err() {
        let e = e.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("AZURE_API_BASE"), "{}", e.message);
    }
}

#[tokio::test]
async fn malformed_and_truncated_answers_are_clean_errors() {
    let up = AzureUpstream::start().await;
    up.push(Reply::ok("{\"choices\": 7}"));
    let e = azure(&up, Some("2024-10-21"))
        .chat(ask("x"))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
    let up = AzureUpstream::start().await;
    up.push(Reply::sse_truncated(fixtures::CHAT_COMPLETION_STREAM, 3));
    let e = stream_error(
        collect(&azure(&up, Some("2024-10-21")), ask("x"))
            .await
            .unwrap(),
    );
    assert_eq!((e.kind, e.status()), (ErrorKind::InvalidResponse, 502));
}
