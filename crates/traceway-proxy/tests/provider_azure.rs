//! End-to-end: `azure/` through the proxy against the testkit's Azure OpenAI upstream — the
//! deployments URL with `api_version` from `litellm_params` or `AZURE_API_VERSION`, the
//! `api-key` header, Azure's answers and errors, and the span tree with
//! `gen_ai.provider.name = azure.ai.openai`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, proxy, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::azure_upstream::{self as fixtures, AzureUpstream};
use traceway_testkit::mock_upstream::Reply;
use traceway_testkit::otlp::{OtlpReceiver, Status};

const KEY: &str = "azure-proxy-secret-key";
const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";
const FAILED: &str = "  Failed Proxy Server Request [INTERNAL]";

/// Posts [`chat`] to the proxy's chat route.
async fn ask_chat(p: &traceway_proxy::app::RunningProxy) -> reqwest::Response {
    http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat())
        .send()
        .await
        .unwrap()
}

fn chat() -> Value {
    json!({"model": "gpt4o", "messages": [{"role": "user", "content": "Hello"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_and_errors_through_azure_are_traced() {
    let rx = OtlpReceiver::start().await;
    let up = AzureUpstream::start().await;
    let cfg = provider_config(
        "gpt4o",
        "azure/my-gpt-4o",
        &up.api_base(),
        Some(KEY),
        &["api_version: \"2024-10-21\""],
        OTEL_SETTINGS,
    );
    let p = traced_proxy(&cfg, &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let r: Value = http()
        .post(&url)
        .json(&chat())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! How can I assist you today?"
    );
    let sent = up.last_request();
    assert_eq!(sent.path, "/openai/deployments/my-gpt-4o/chat/completions");
    assert_eq!(sent.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(sent.header("api-key"), Some(KEY));
    assert!(sent.body.get("api_version").is_none());

    let mut body = chat();
    body["stream"] = json!(true);
    let events = sse_events(
        &http()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");

    up.push(Reply::error_retry_after(429, fixtures::ERROR_429, 6));
    let resp = http().post(&url).json(&chat()).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "6");
    up.push(Reply::error(401, fixtures::ERROR_401));
    let resp = http().post(&url).json(&chat()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Access token is missing")
    );

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for (i, r) in roots.iter().enumerate() {
        let expected = if i < 2 {
            TREE.to_owned()
        } else {
            format!("{TREE}\n{FAILED}")
        };
        assert_eq!(shape(&tree, r), expected);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("azure.ai.openai"));
        assert_eq!(r.attr_str("gen_ai.request.model"), Some("my-gpt-4o"));
    }
    assert_eq!(roots[0].attr_i64("gen_ai.usage.total_tokens"), Some(27));
    assert_eq!(
        roots[0].attr_str("gen_ai.response.model"),
        Some("gpt-4o-2024-05-13")
    );
    assert_eq!(roots[1].attr_i64("gen_ai.usage.total_tokens"), Some(15));
    assert_eq!(
        roots[1].attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert_eq!(roots[2].attr_str("error.type"), Some("rate_limited"));
    assert_eq!(roots[3].attr_str("error.type"), Some("auth_error"));
    assert!(matches!(roots[3].status, Status::Error { .. }));
    assert_eq!(roots[3].attr_str("error.llm_provider"), Some("azure"));
}

#[tokio::test]
async fn api_version_from_env_and_a_missing_one_is_a_400_that_says_what_to_set() {
    let up = AzureUpstream::start().await;
    let cfg = provider_config("gpt4o", "azure/dep", &up.api_base(), None, &[], "");
    let p = proxy(&cfg, &[("AZURE_API_KEY", "azure-env-key")]).await;
    let resp = ask_chat(&p).await;
    // The proxy's environment (this test's map) carries the key but no AZURE_API_VERSION.
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("litellm_params.api_version") && msg.contains("AZURE_API_VERSION"),
        "{msg}"
    );
    assert!(up.requests().is_empty());
    let cfg = provider_config(
        "gpt4o",
        "azure/dep",
        &up.api_base(),
        None,
        &["api_version: \"2024-06-01\""],
        "",
    );
    let p = proxy(&cfg, &[("AZURE_API_KEY", "azure-env-key")]).await;
    let resp = ask_chat(&p).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last_request().header("api-key"), Some("azure-env-key"));
    assert_eq!(
        up.last_request().query.as_deref(),
        Some("api-version=2024-06-01")
    );
}

/// LiteLLM sets a config's `environment_variables` in its process, so provider settings come
/// from there as well as keys: here the endpoint, API version and key of an `azure/` entry
/// that names none of them.
#[tokio::test]
async fn environment_variables_supply_the_azure_endpoint_version_and_key() {
    let up = AzureUpstream::start().await;
    let cfg = format!(
        "model_list:\n  - model_name: gpt4o\n    litellm_params:\n      model: azure/dep\nenvironment_variables:\n  AZURE_API_BASE: {}\n  AZURE_API_VERSION: \"2024-08-01-preview\"\n  AZURE_API_KEY: azure-overlay-key\n",
        up.api_base()
    );
    let p = proxy(&cfg, &[("AZURE_API_VERSION", "1999-01-01")]).await;
    let resp = ask_chat(&p).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = up.last_request();
    assert_eq!(sent.path, "/openai/deployments/dep/chat/completions");
    // The config's value wins over the environment's, as a LiteLLM config's would.
    assert_eq!(
        sent.query.as_deref(),
        Some("api-version=2024-08-01-preview")
    );
    assert_eq!(sent.header("api-key"), Some("azure-overlay-key"));
}
