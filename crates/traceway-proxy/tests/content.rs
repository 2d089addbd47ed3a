//! Content capture and redaction (TELEMETRY.md §5–§6): which values the exported spans hold
//! for each rule and combination, with the client always getting the full answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use traceway_testkit::span_tree::SpanTree;

const R: &str = "redacted-by-traceway";

async fn traced(settings: &str, rx: &OtlpReceiver, extra: &[(&str, &str)]) -> RunningProxy {
    let mut vars: HashMap<String, String> = [
        ("OTEL_EXPORTER".to_owned(), "otlp_http".to_owned()),
        ("OTEL_ENDPOINT".to_owned(), rx.http_endpoint()),
    ]
    .into_iter()
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\nlitellm_settings:\n  callbacks: [\"otel\"]\n{settings}"
    );
    traceway::client::install_crypto_provider();
    App::build(
        ProxyConfig::parse(&cfg, "content.yaml", Arc::new(vars)).unwrap(),
        false,
    )
    .unwrap()
    .spawn("127.0.0.1:0")
    .await
    .unwrap()
}

/// Sends one request (with optional headers), checks the client got the full answer, and
/// returns the request's span.
async fn one(
    settings: &str,
    extra: &[(&str, &str)],
    body: Value,
    headers: &[(&str, &str)],
) -> (ReceivedSpan, SpanTree) {
    let rx = OtlpReceiver::start().await;
    let p = traced(settings, &rx, extra).await;
    let path = if body.get("input").is_some() {
        "embeddings"
    } else if body.get("prompt").is_some() {
        "completions"
    } else {
        "chat/completions"
    };
    let mut req = http().post(format!("{}/v1/{path}", p.url())).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(R),
        "redaction never reaches the client: {text}"
    );
    p.shutdown().await;
    assert!(
        rx.duplicate_key_errors().is_empty(),
        "{:?}",
        rx.duplicate_key_errors()
    );
    let tree = SpanTree::build(&rx.spans()).unwrap();
    let root = tree.find("Received Proxy Server Request").clone();
    (root, tree)
}

fn chat(metadata: Value) -> Value {
    json!({"model": "m", "messages": [{"role": "system", "content": "secret system"}, {"role": "user", "content": "secret question"}], "mock_response": "secret answer", "metadata": metadata})
}

fn input_redacted(s: &ReceivedSpan) -> bool {
    s.attr_str("gen_ai.prompt.1.content") == Some(R)
}

fn output_redacted(s: &ReceivedSpan) -> bool {
    s.attr_str("gen_ai.completion.0.content") == Some(R)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metadata_masks_each_side_and_wins_over_everything_else() {
    let (s, _) = one("", &[], chat(json!({"mask_input": true})), &[]).await;
    assert!(input_redacted(&s) && !output_redacted(&s));
    assert_eq!(
        s.attr_str("gen_ai.prompt.0.content"),
        Some(R),
        "system messages too"
    );
    assert_eq!(
        s.attr_str("gen_ai.prompt.1.role"),
        Some("user"),
        "shape is kept"
    );
    assert!(
        !s.attr_str("gen_ai.input.messages")
            .unwrap()
            .contains("secret")
    );
    assert!(
        s.attr_i64("gen_ai.usage.total_tokens").unwrap() > 0,
        "usage is always recorded"
    );

    let (s, _) = one("", &[], chat(json!({"mask_output": true})), &[]).await;
    assert!(!input_redacted(&s) && output_redacted(&s));
    assert!(
        !s.attr_str("gen_ai.output.messages")
            .unwrap()
            .contains("secret")
    );

    // Rule 1 matches first: the header and the global setting do not add to it.
    let (s, _) = one(
        "  turn_off_message_logging: true\n",
        &[],
        chat(json!({"mask_input": false})),
        &[("x-litellm-enable-message-redaction", "true")],
    )
    .await;
    assert!(!input_redacted(&s) && !output_redacted(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redaction_header_masks_both_sides() {
    for header in [
        "x-litellm-enable-message-redaction",
        "litellm-enable-message-redaction",
    ] {
        let (s, _) = one("", &[], chat(json!({})), &[(header, "true")]).await;
        assert!(input_redacted(&s) && output_redacted(&s), "{header}");
        assert!(
            s.attr_str("metadata.requester_ip_address").is_some(),
            "identity stays"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_settings_mask_everything_keeping_shape() {
    let (s, _) = one(
        "  turn_off_message_logging: true\n",
        &[],
        chat(json!({})),
        &[],
    )
    .await;
    assert!(input_redacted(&s) && output_redacted(&s));
    let (s, _) = one(
        "",
        &[(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "NO_CONTENT",
        )],
        chat(json!({})),
        &[],
    )
    .await;
    assert!(input_redacted(&s) && output_redacted(&s));
    let system: Value =
        serde_json::from_str(s.attr_str("gen_ai.system_instructions").unwrap()).unwrap();
    assert_eq!(system, json!([{"type": "text", "content": R}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_tools_completions_and_embeddings_are_masked_too() {
    let calls = json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Secretville\"}"}}]);
    let mut body = chat(json!({}));
    body["stream"] = json!(true);
    body["mock_tool_calls"] = calls;
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather"}}]);
    let (s, _) = one(
        "",
        &[],
        body,
        &[("x-litellm-enable-message-redaction", "true")],
    )
    .await;
    assert_eq!(
        s.attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_weather"),
        "tool names stay"
    );
    assert_eq!(
        s.attr_str("gen_ai.completion.0.tool_calls.0.arguments"),
        Some(R)
    );
    assert!(output_redacted(&s));
    let all = format!("{:?}", s.attributes);
    assert!(
        !all.contains("secret") && !all.contains("Secretville"),
        "{all}"
    );

    let (s, _) = one(
        "",
        &[],
        json!({"model": "m", "input": ["secret one", "secret two"]}),
        &[("x-litellm-enable-message-redaction", "true")],
    )
    .await;
    assert_eq!(s.attr_str("gen_ai.prompt.1.content"), Some(R));
    let (s, _) = one(
        "",
        &[],
        json!({"model": "m", "prompt": "secret prompt"}),
        &[("x-litellm-enable-message-redaction", "true")],
    )
    .await;
    assert_eq!(s.attr_str("gen_ai.prompt.0.content"), Some(R));
    assert_eq!(s.attr_str("gen_ai.completion.0.content"), Some(R));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_only_capture_moves_content_into_one_event() {
    let (s, _) = one(
        "",
        &[(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "EVENT_ONLY",
        )],
        chat(json!({})),
        &[],
    )
    .await;
    assert!(!s.has_attr("gen_ai.prompt.1.content") && !s.has_attr("gen_ai.input.messages"));
    let events = s.events_named("gen_ai.client.inference.operation.details");
    assert_eq!(events.len(), 1);
    let input = events[0]
        .get("gen_ai.input.messages")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(input.contains("secret question"));
    assert!(
        events[0]
            .get("gen_ai.output.messages")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("secret answer")
    );

    let (s, _) = one(
        "",
        &[(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "SPAN_AND_EVENT",
        )],
        chat(json!({})),
        &[],
    )
    .await;
    assert!(s.has_attr("gen_ai.input.messages"));
    assert_eq!(
        s.events_named("gen_ai.client.inference.operation.details")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_semconv_names_the_model_call_and_drops_legacy_keys() {
    let (s, tree) = one(
        "",
        &[(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "http,gen_ai_latest_experimental",
        )],
        chat(json!({})),
        &[],
    )
    .await;
    assert_eq!(
        tree.render(),
        "Received Proxy Server Request [SERVER]\n  chat m [CLIENT]"
    );
    for span in tree.spans() {
        assert!(!span.has_attr("gen_ai.system"), "{}", span.name);
        assert!(
            span.attributes
                .keys()
                .all(|k| !k.starts_with("gen_ai.prompt.") && !k.starts_with("gen_ai.completion."))
        );
    }
    assert_eq!(s.attr_str("gen_ai.provider.name"), Some("mock"));
    assert!(
        s.attr_str("gen_ai.input.messages")
            .unwrap()
            .contains("secret question")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_content_and_long_conversations_stay_one_valid_span() {
    let long = "x".repeat(5_000);
    let mut body = chat(json!({}));
    body["messages"][1]["content"] = json!(long);
    let (s, _) = one(
        "",
        &[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "200")],
        body,
        &[],
    )
    .await;
    let v = s.attr_str("gen_ai.prompt.1.content").unwrap();
    assert_eq!(v.chars().count(), 200);
    assert!(v.ends_with("…[truncated 4800 chars]"), "{v}");

    let messages: Vec<Value> = (0..200).map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")})).collect();
    let body = json!({"model": "m", "messages": messages, "mock_response": "done"});
    for limit in ["1024", "200"] {
        let (s, _) = one(
            "",
            &[("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", limit)],
            body.clone(),
            &[],
        )
        .await;
        assert!(s.attributes.len() <= limit.parse().unwrap());
        assert!(
            s.attr_i64("gen_ai.usage.total_tokens").unwrap() > 0,
            "usage survives the limit {limit}"
        );
        assert_eq!(s.attr_str("gen_ai.completion.0.content"), Some("done"));
        assert_eq!(
            s.attr_str("gen_ai.prompt.199.content"),
            Some("turn 199"),
            "the latest turns are kept"
        );
        let truncated = s.attr_i64("traceway.prompt.truncated_attributes");
        if limit == "1024" {
            assert_eq!(truncated, None, "200 messages fit the default limit");
            assert_eq!(s.attr_str("gen_ai.prompt.0.content"), Some("turn 0"));
        } else {
            assert!(truncated.unwrap() > 0);
        }
        assert!(
            s.attr_str("gen_ai.input.messages")
                .unwrap()
                .contains("turn 0"),
            "the JSON keeps every message"
        );
    }
}
