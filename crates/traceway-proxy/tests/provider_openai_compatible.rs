//! End-to-end: the OpenAI-compatible presets through the proxy against the testkit's
//! OpenAI-compatible upstream — each preset's key and path, and its `gen_ai.provider.name` on
//! the span tree (`mistral_ai`, `groq`, `deepseek`, `x_ai`, `openrouter`, `together_ai`,
//! `fireworks_ai`, `perplexity`, `vllm`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{OTEL_SETTINGS, http, proxy, shape, spans_without, sse_events, traced_proxy};
use serde_json::{Value, json};
use traceway_testkit::mock_upstream::Reply;
use traceway_testkit::openai_compatible_upstream::{self as fixtures, OpenAiCompatibleUpstream};
use traceway_testkit::otlp::OtlpReceiver;

const KEY: &str = "sk-compatible-proxy-secret";
const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";

/// (prefix, base path, model, gen_ai.provider.name).
const PRESETS: &[(&str, &str, &str, &str)] = &[
    ("mistral", "/v1", "mistral-small-latest", "mistral_ai"),
    ("groq", "/openai/v1", "llama-3.3-70b-versatile", "groq"),
    ("deepseek", "/beta", "deepseek-chat", "deepseek"),
    ("xai", "/v1", "grok-3", "x_ai"),
    ("openrouter", "/api/v1", "openai/gpt-4o", "openrouter"),
    (
        "together_ai",
        "/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "together_ai",
    ),
    (
        "fireworks_ai",
        "/inference/v1",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "fireworks_ai",
    ),
    ("perplexity", "", "sonar", "perplexity"),
    (
        "hosted_vllm",
        "/v1",
        "meta-llama/Llama-3.1-8B-Instruct",
        "vllm",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_answers_and_is_traced_with_its_provider_name() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiCompatibleUpstream::start().await;
    let mut cfg = String::from("model_list:\n");
    for (prefix, path, model, _) in PRESETS {
        cfg.push_str(&format!(
            "  - model_name: {prefix}-model\n    litellm_params:\n      model: {prefix}/{model}\n      api_base: {}\n      api_key: {KEY}\n",
            up.api_base(path)
        ));
    }
    cfg.push_str(OTEL_SETTINGS);
    let p = traced_proxy(&cfg, &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    for (prefix, path, model, _) in PRESETS {
        let body = json!({"model": format!("{prefix}-model"), "messages": [{"role": "user", "content": "Hello"}]});
        let r: Value = http()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            r["choices"][0]["message"]["content"], "Hello! How can I assist you today?",
            "{prefix}"
        );
        let sent = up.last_request();
        assert_eq!(sent.path, format!("{path}/chat/completions"));
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(sent.body["model"], *model);
    }
    // Groq's stream carries usage in x_groq; the span still gets it.
    up.push(Reply::sse(fixtures::GROQ_STREAM));
    let body = json!({"model": "groq-model", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
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

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), PRESETS.len() + 1);
    for (r, (prefix, _, model, semconv)) in roots.iter().zip(PRESETS) {
        assert_eq!(shape(&tree, r), TREE, "{prefix}");
        assert_eq!(
            r.attr_str("gen_ai.provider.name"),
            Some(*semconv),
            "{prefix}"
        );
        assert_eq!(r.attr_str("gen_ai.system"), Some(*semconv), "{prefix}");
        assert_eq!(r.attr_str("gen_ai.request.model"), Some(*model));
        assert_eq!(
            r.attr_i64("gen_ai.usage.total_tokens"),
            Some(29),
            "{prefix}"
        );
        assert_eq!(
            tree.children_of(r)[0].attr_str("gen_ai.provider.name"),
            Some(*semconv)
        );
    }
    let groq_stream = roots.last().unwrap();
    assert_eq!(groq_stream.attr_i64("gen_ai.usage.total_tokens"), Some(15));
    assert_eq!(
        groq_stream.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
}

#[tokio::test]
async fn keys_come_from_each_presets_env_vars_and_errors_keep_their_message() {
    let up = OpenAiCompatibleUpstream::start().await;
    let cfg = format!(
        "model_list:\n  - model_name: t\n    litellm_params:\n      model: together_ai/llama\n      api_base: {}\n  - model_name: x\n    litellm_params:\n      model: xai/grok-3\n      api_base: {}\n",
        up.api_base("/v1"),
        up.api_base("/v1")
    );
    let p = proxy(
        &cfg,
        &[
            ("TOGETHERAI_API_KEY", "tg-env-key"),
            ("XAI_API_KEY", "xai-env-key"),
        ],
    )
    .await;
    let url = format!("{}/v1/chat/completions", p.url());
    let body = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "Hi"}]});
    assert_eq!(
        http()
            .post(&url)
            .json(&body("t"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        up.last_request().header("authorization"),
        Some("Bearer tg-env-key")
    );
    up.push(Reply::error(400, fixtures::XAI_ERROR_400));
    let resp = http().post(&url).json(&body("x")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        up.last_request().header("authorization"),
        Some("Bearer xai-env-key")
    );
    let e: Value = resp.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided")
    );
}
