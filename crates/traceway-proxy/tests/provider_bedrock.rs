//! End-to-end: `bedrock/` through the proxy against the testkit's Bedrock Runtime (which
//! recomputes every SigV4 signature) — OpenAI-shaped answers (plain, streamed from AWS
//! event-stream frames, tool calls, embeddings, errors) and the span tree each call leaves,
//! with `aws.bedrock` attributes, exported over real OTLP. AWS secrets never reach a span, an
//! error or the request body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::bedrock_upstream::{
    self as bedrock, BedrockUpstream, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY,
    TEST_SESSION_TOKEN,
};
use traceway_testkit::otlp::{AttrValue, OtlpReceiver, ReceivedSpan, SpanKind, Status};
use traceway_testkit::scripted_upstream::Reply;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";
/// Failure tests send one failing request after another: no cooldown may hide the next one.
const NO_COOLDOWN: &str = "router_settings:\n  disable_cooldowns: true\n";
const SECRETS: &[&str] = &[
    TEST_SECRET_ACCESS_KEY,
    TEST_SESSION_TOKEN,
    "wrong-secret-value",
];

/// Credentials the way LiteLLM configs name them: `os.environ/…` in `litellm_params`.
const AWS_PARAMS: &[&str] = &[
    "aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID",
    "aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY",
    "aws_session_token: os.environ/AWS_SESSION_TOKEN",
    "aws_region_name: us-east-1",
];

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", TEST_SESSION_TOKEN),
    ]
}

fn config(up: &BedrockUpstream) -> String {
    let base = up.api_base();
    let chat = provider_config(
        "claude",
        &format!("bedrock/{MODEL}"),
        &base,
        None,
        AWS_PARAMS,
        "",
    );
    let titan = provider_config(
        "titan",
        "bedrock/amazon.titan-embed-text-v2:0",
        &base,
        None,
        AWS_PARAMS,
        "",
    );
    let wrong = provider_config(
        "wrong-secret",
        &format!("bedrock/{MODEL}"),
        &base,
        None,
        &[
            "aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID",
            "aws_secret_access_key: wrong-secret-value",
            "aws_region_name: us-east-1",
        ],
        &format!("{OTEL_SETTINGS}{NO_COOLDOWN}"),
    );
    let entry = |cfg: String| cfg.replacen("model_list:\n", "", 1);
    format!("{chat}{}{}", entry(titan), entry(wrong))
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
}

fn strs(span: &ReceivedSpan, key: &str) -> Vec<String> {
    match span.attr(key) {
        Some(AttrValue::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_openai_shaped_and_each_call_is_one_traced_tree() {
    let rx = OtlpReceiver::start().await;
    let up = BedrockUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &env()).await;
    let url = format!("{}/v1/chat/completions", p.url());

    let mut body = chat("claude");
    body["temperature"] = json!(0);
    body["max_tokens"] = json!(256);
    let r: Value = http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["total_tokens"], 21);
    let sent = up.last_request();
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(sent.body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        sent.body["inferenceConfig"],
        json!({"maxTokens": 256, "temperature": 0.0})
    );
    let traceparent = sent.header("traceparent").unwrap().to_owned();

    let mut body = chat("claude");
    body["stream"] = json!(true);
    let resp = http().post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none())
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello! How can I help?");

    let mut body = chat("claude");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r: Value = http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Seattle", "unit": "celsius"}));
    assert_eq!(r["usage"]["prompt_tokens_details"]["cached_tokens"], 128);

    let r: Value = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "titan", "input": "hello world"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "list");
    assert_eq!(r["data"][0]["object"], "embedding");
    assert_eq!(r["usage"]["prompt_tokens"], 4);
    assert_eq!(
        up.last_request().path,
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );

    up.verify_all().unwrap();
    for r in up.requests() {
        let raw = String::from_utf8_lossy(&r.raw).into_owned();
        for s in SECRETS {
            assert!(!raw.contains(s), "a secret in the body sent upstream");
        }
    }

    let tree = spans_without(p, &rx, SECRETS).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for r in &roots {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.status, Status::Unset);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("aws.bedrock"));
        assert_eq!(r.attr_str("gen_ai.system"), Some("aws.bedrock"));
        let client = tree.children_of(r)[0];
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.attr_str("gen_ai.provider.name"), Some("aws.bedrock"));
        assert_eq!(client.attr_str("server.address"), Some("127.0.0.1"));
        assert_eq!(
            client.attr_i64("server.port"),
            Some(i64::from(up.addr().port()))
        );
        assert_eq!(client.attr_i64("http.response.status_code"), Some(200));
    }
    let (plain, stream, tools, embed) = (roots[0], roots[1], roots[2], roots[3]);
    let client = tree.children_of(plain)[0];
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client.trace_id, client.span_id)
    );
    assert_eq!(plain.attr_str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(plain.attr_str("gen_ai.request.model"), Some(MODEL));
    assert_eq!(plain.attr_str("gen_ai.response.model"), Some(MODEL));
    assert_eq!(plain.attr_str("litellm.model_group"), Some("claude"));
    assert_eq!(
        plain.attr_str("litellm.provider.model"),
        Some(format!("bedrock/{MODEL}").as_str())
    );
    assert_eq!(plain.attr_f64("gen_ai.request.temperature"), Some(0.0));
    assert_eq!(plain.attr_i64("gen_ai.request.max_tokens"), Some(256));
    for (k, v) in [
        ("gen_ai.usage.input_tokens", 12),
        ("gen_ai.usage.output_tokens", 9),
        ("gen_ai.usage.total_tokens", 21),
    ] {
        assert_eq!(plain.attr_i64(k), Some(v), "{k}");
    }
    assert_eq!(strs(plain, "gen_ai.response.finish_reasons"), ["stop"]);
    assert_eq!(plain.attr_str("gen_ai.prompt.0.content"), Some("Be brief."));
    assert_eq!(
        plain.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(stream.attr_bool("gen_ai.request.stream"), Some(true));
    assert_eq!(stream.attr_i64("gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(stream.attr_i64("gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(
        stream.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert!(stream.has_attr("gen_ai.response.time_to_first_chunk"));
    assert_eq!(strs(stream, "gen_ai.response.finish_reasons"), ["stop"]);
    assert_eq!(
        strs(tools, "gen_ai.response.finish_reasons"),
        ["tool_calls"]
    );
    assert_eq!(
        tools.attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_weather")
    );
    assert_eq!(tools.attr_i64("gen_ai.usage.input_tokens"), Some(395 + 128));
    assert_eq!(
        tools.attr_i64("gen_ai.usage.cache_read.input_tokens"),
        Some(128)
    );
    assert_eq!(
        tools.attr_str("llm.request.functions.0.name"),
        Some("get_weather")
    );
    assert_eq!(embed.attr_str("gen_ai.operation.name"), Some("embeddings"));
    assert_eq!(
        embed.attr_str("gen_ai.request.model"),
        Some("amazon.titan-embed-text-v2:0")
    );
    assert_eq!(embed.attr_i64("gen_ai.usage.input_tokens"), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_openai_errors_on_failed_spans() {
    let rx = OtlpReceiver::start().await;
    let up = BedrockUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &env()).await;
    let url = format!("{}/v1/chat/completions", p.url());
    // (model group, cued reply, status, error.type, message text, error.code)
    type Case<'a> = (
        &'a str,
        Option<Reply>,
        u16,
        &'a str,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "claude",
            Some(
                bedrock::exception(429, "ThrottlingException", bedrock::THROTTLING_EXCEPTION)
                    .with_header("retry-after", "7"),
            ),
            429,
            "rate_limited",
            "Too many requests",
            Some("ThrottlingException"),
        ),
        (
            "claude",
            Some(bedrock::exception(
                403,
                "AccessDeniedException",
                bedrock::ACCESS_DENIED_EXCEPTION,
            )),
            403,
            "permission_denied",
            "don't have access",
            Some("AccessDeniedException"),
        ),
        (
            "claude",
            Some(bedrock::exception(
                400,
                "ValidationException",
                bedrock::VALIDATION_EXCEPTION,
            )),
            400,
            "bad_request",
            "model identifier is invalid",
            Some("ValidationException"),
        ),
        (
            "claude",
            Some(bedrock::exception(
                503,
                "ServiceUnavailableException",
                bedrock::SERVICE_UNAVAILABLE_EXCEPTION,
            )),
            503,
            "upstream_error",
            "unable to process",
            Some("ServiceUnavailableException"),
        ),
        (
            "claude",
            Some(Reply::ok("{\"output\": 1}")),
            502,
            "invalid_response",
            "could not be parsed",
            None,
        ),
        // The real signature check fails: the mock answers as Bedrock does.
        (
            "wrong-secret",
            None,
            401,
            "auth_error",
            "signature we calculated",
            Some("InvalidSignatureException"),
        ),
    ];
    for (model, reply, status, _, text, _) in &cases {
        if let Some(r) = reply {
            up.push(r.clone());
        }
        let resp = http().post(&url).json(&chat(model)).send().await.unwrap();
        assert_eq!(resp.status(), *status, "{text}");
        if *status == 429 {
            assert_eq!(resp.headers()["retry-after"], "7");
        }
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{status}: {message}");
        for s in SECRETS {
            assert!(!body.to_string().contains(s));
        }
    }
    let tree = spans_without(p, &rx, SECRETS).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), cases.len());
    for (root, (_, _, status, class, _, code)) in roots.iter().zip(&cases) {
        assert!(matches!(root.status, Status::Error { .. }), "{class}");
        assert_eq!(root.attr_str("error.type"), Some(*class));
        assert_eq!(root.attr_str("error.llm_provider"), Some("bedrock"));
        assert_eq!(
            root.attr_i64("http.response.status_code"),
            Some(i64::from(*status))
        );
        assert_eq!(root.attr_str("gen_ai.provider.name"), Some("aws.bedrock"));
        if let Some(code) = code {
            assert_eq!(root.attr_str("error.code"), Some(*code));
        }
        let attempt = tree.children_of(root)[0];
        assert_eq!(attempt.name, "raw_gen_ai_request");
        assert_eq!(attempt.attr_str("error.type"), Some(*class));
    }
}
