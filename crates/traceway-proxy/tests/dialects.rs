//! Dialects and destinations (TELEMETRY.md §5, issue on dialects): each tracing callback is its
//! own destination with its own attribute names and queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use traceway_testkit::span_tree::SpanTree;

async fn proxy(callbacks: &str, vars: &[(&str, String)]) -> RunningProxy {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let cfg = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\nlitellm_settings:\n  callbacks: {callbacks}\ngeneral_settings:\n  ui: false\n"
    );
    traceway::client::install_crypto_provider();
    App::build(
        ProxyConfig::parse(&cfg, "dialects.yaml", Arc::new(vars)).unwrap(),
        false,
    )
    .unwrap()
    .spawn("127.0.0.1:0")
    .await
    .unwrap()
}

fn tool_chat() -> Value {
    json!({
        "model": "m",
        "temperature": 0.5,
        "max_tokens": 50,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object"}}}],
        "mock_tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
        "mock_response": ""
    })
}

fn request_span(rx: &OtlpReceiver) -> ReceivedSpan {
    let tree = SpanTree::build(&rx.spans()).unwrap();
    tree.find("Received Proxy Server Request").clone()
}

fn keys(s: &ReceivedSpan) -> BTreeSet<&str> {
    s.attributes.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_dialect_carries_semconv_and_openllmetry_keys() {
    let rx = OtlpReceiver::start().await;
    let p = proxy(
        "[\"otel\"]",
        &[
            ("OTEL_EXPORTER", "otlp_http".into()),
            ("OTEL_ENDPOINT", rx.http_endpoint()),
        ],
    )
    .await;
    assert_eq!(
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&tool_chat())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    p.shutdown().await;
    let s = request_span(&rx);
    let expected: BTreeSet<&str> = [
        "gen_ai.operation.name",
        "gen_ai.system",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.request.max_tokens",
        "gen_ai.request.temperature",
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.total_tokens",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt.0.role",
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.1.role",
        "gen_ai.prompt.1.content",
        "gen_ai.completion.0.role",
        "gen_ai.completion.0.finish_reason",
        "gen_ai.completion.0.tool_calls.0.id",
        "gen_ai.completion.0.tool_calls.0.name",
        "gen_ai.completion.0.tool_calls.0.arguments",
        "llm.request.functions.0.name",
        "llm.request.functions.0.description",
        "llm.request.functions.0.parameters",
        "llm.request.type",
        "llm.is_streaming",
        "litellm.model_group",
        "litellm.provider.model",
        "litellm.model_id",
        "litellm.attempted_retries",
        "litellm.attempted_fallbacks",
        "http.route",
        "http.request.method",
        "url.path",
        "http.response.status_code",
        "metadata.requester_ip_address",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys(&s), expected);
    assert_eq!(
        s.attr_str("gen_ai.completion.0.tool_calls.0.arguments"),
        Some("{\"city\":\"Paris\"}")
    );
    assert_eq!(
        s.attr_str("gen_ai.completion.0.finish_reason"),
        Some("tool_calls")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arize_phoenix_gets_openinference_keys() {
    let rx = OtlpReceiver::start().await;
    let p = proxy(
        "[\"arize_phoenix\"]",
        &[
            ("PHOENIX_COLLECTOR_ENDPOINT", rx.http_endpoint()),
            ("PHOENIX_API_KEY", "phx-key".into()),
        ],
    )
    .await;
    assert_eq!(
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&tool_chat())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "m", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    p.shutdown().await;
    assert_eq!(
        rx.requests()[0].header("authorization"),
        Some("Bearer phx-key")
    );
    let tree = SpanTree::build(&rx.spans()).unwrap();
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    let s = roots[0];
    let expect = [
        ("openinference.span.kind", "LLM"),
        ("llm.model_name", "m"),
        ("llm.provider", "mock"),
        ("llm.system", "mock"),
        ("llm.input_messages.0.message.role", "system"),
        ("llm.input_messages.0.message.content", "Be brief."),
        ("llm.input_messages.1.message.role", "user"),
        ("llm.input_messages.1.message.content", "Weather in Paris?"),
        ("llm.output_messages.0.message.role", "assistant"),
        (
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
            "get_weather",
        ),
        (
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
            "{\"city\":\"Paris\"}",
        ),
        (
            "llm.output_messages.0.message.tool_calls.0.tool_call.id",
            "call_1",
        ),
        ("input.mime_type", "application/json"),
        ("output.mime_type", "application/json"),
    ];
    for (k, v) in expect {
        assert_eq!(s.attr_str(k), Some(v), "{k}");
    }
    for k in [
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.total",
    ] {
        assert!(s.attr_i64(k).is_some(), "{k}");
    }
    let params: Value =
        serde_json::from_str(s.attr_str("llm.invocation_parameters").unwrap()).unwrap();
    assert_eq!(params["temperature"], 0.5);
    assert_eq!(params["max_tokens"], 50);
    let schema: Value =
        serde_json::from_str(s.attr_str("llm.tools.0.tool.json_schema").unwrap()).unwrap();
    assert_eq!(schema["function"]["name"], "get_weather");
    assert!(
        s.attr_str("input.value")
            .unwrap()
            .contains("Weather in Paris?")
    );
    assert!(
        s.attributes
            .keys()
            .all(|k| !k.starts_with("gen_ai.prompt.") && !k.starts_with("gen_ai.completion."))
    );
    assert_eq!(
        tree.children_of(s)[0].attr_str("openinference.span.kind"),
        Some("CHAIN")
    );

    let e = roots[1];
    assert_eq!(e.attr_str("openinference.span.kind"), Some("EMBEDDING"));
    assert_eq!(e.attr_str("embedding.model_name"), Some("m"));
    assert_eq!(
        e.attr_str("embedding.embeddings.1.embedding.text"),
        Some("b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_destinations_each_get_every_span_and_a_dead_one_starves_none() {
    let phoenix = OtlpReceiver::start().await;
    let langfuse = OtlpReceiver::start().await;
    let p = proxy(
        "[\"otel\", \"arize_phoenix\", \"langfuse_otel\"]",
        &[
            ("OTEL_EXPORTER", "otlp_http".into()),
            ("OTEL_ENDPOINT", "http://127.0.0.1:9".into()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
            ("PHOENIX_COLLECTOR_ENDPOINT", phoenix.http_endpoint()),
            ("LANGFUSE_HOST", langfuse.http_endpoint()),
            ("LANGFUSE_PUBLIC_KEY", "pk-lf".into()),
            ("LANGFUSE_SECRET_KEY", "sk-lf".into()),
        ],
    )
    .await;
    let telemetry = p.app.telemetry.clone().unwrap();
    for _ in 0..20 {
        let r = http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    p.shutdown().await;
    assert_eq!(
        phoenix.spans().len(),
        40,
        "the live destinations get every span"
    );
    assert_eq!(langfuse.spans().len(), 40);
    let req = &langfuse.requests()[0];
    assert_eq!(req.path, "/api/public/otel/v1/traces");
    assert_eq!(req.header("authorization"), Some("Basic cGstbGY6c2stbGY="));
    assert!(
        langfuse
            .spans()
            .iter()
            .any(|s| s.has_attr("gen_ai.prompt.0.content")),
        "langfuse reads the default dialect"
    );
    assert!(
        telemetry.spans_dropped() + telemetry.spans_export_failed() >= 40,
        "the dead destination counts its losses"
    );
}
