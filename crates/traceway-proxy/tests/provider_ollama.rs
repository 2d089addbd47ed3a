//! End-to-end: `ollama/` through the proxy against the testkit's Ollama server — OpenAI-shaped
//! answers (plain, streamed from NDJSON, tool calls, embeddings, text completions, errors) and
//! the span tree each call leaves, with `ollama` attributes, exported over real OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::ollama_upstream::{self as ollama, OllamaUpstream};
use traceway_testkit::otlp::{AttrValue, OtlpReceiver, ReceivedSpan, SpanKind, Status};
use traceway_testkit::scripted_upstream::Reply;

const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";
const KEY: &str = "ollama-proxy-secret";
/// Failure tests send one failing request after another: no cooldown may hide the next one.
const NO_COOLDOWN: &str = "router_settings:\n  disable_cooldowns: true\n";

fn config(up: &OllamaUpstream) -> String {
    let chat = provider_config(
        "llama",
        "ollama/llama3.2",
        &up.api_base(),
        Some(KEY),
        &["num_ctx: 4096"],
        "",
    );
    let tail = format!("{OTEL_SETTINGS}{NO_COOLDOWN}");
    let embed = provider_config(
        "minilm",
        "ollama_chat/all-minilm",
        &up.api_base(),
        None,
        &[],
        &tail,
    );
    format!("{chat}{}", embed.replacen("model_list:\n", "", 1))
}

fn chat() -> Value {
    json!({"model": "llama", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
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
    let up = OllamaUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());

    let mut body = chat();
    body["temperature"] = json!(0);
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
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! How are you today?"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let sent = up.last_request();
    assert_eq!(sent.path, "/api/chat");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        sent.body["options"],
        json!({"temperature": 0.0, "num_ctx": 4096})
    );
    let traceparent = sent.header("traceparent").unwrap().to_owned();

    let mut body = chat();
    body["stream"] = json!(true);
    let resp = http().post(&url).json(&body).send().await.unwrap();
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
    assert_eq!(text, "The sky is blue.");

    let mut body = chat();
    body["tools"] = json!([{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}]);
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
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "Paris, FR");

    let r: Value = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "minilm", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    assert_eq!(up.last_request().path, "/api/embed");

    let r: Value = http()
        .post(format!("{}/v1/completions", p.url()))
        .json(&json!({"model": "llama", "prompt": "Why is the sky blue?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "text_completion");
    assert!(
        r["choices"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("The sky is blue")
    );
    assert_eq!(up.last_request().path, "/api/generate");

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 5);
    for r in &roots {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.status, Status::Unset);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("ollama"));
        assert_eq!(r.attr_str("gen_ai.system"), Some("ollama"));
        let client = tree.children_of(r)[0];
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.attr_str("gen_ai.provider.name"), Some("ollama"));
        assert_eq!(
            client.attr_i64("server.port"),
            Some(i64::from(up.addr().port()))
        );
        assert_eq!(client.attr_i64("http.response.status_code"), Some(200));
    }
    let (plain, stream, tools, embed, completion) =
        (roots[0], roots[1], roots[2], roots[3], roots[4]);
    let client = tree.children_of(plain)[0];
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client.trace_id, client.span_id)
    );
    assert_eq!(plain.attr_str("gen_ai.request.model"), Some("llama3.2"));
    assert_eq!(plain.attr_str("gen_ai.response.model"), Some("llama3.2"));
    assert_eq!(plain.attr_f64("gen_ai.request.temperature"), Some(0.0));
    for (k, v) in [
        ("gen_ai.usage.input_tokens", 26),
        ("gen_ai.usage.output_tokens", 298),
        ("gen_ai.usage.total_tokens", 324),
    ] {
        assert_eq!(plain.attr_i64(k), Some(v), "{k}");
    }
    assert_eq!(strs(plain, "gen_ai.response.finish_reasons"), ["stop"]);
    assert_eq!(
        plain.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How are you today?")
    );
    assert_eq!(stream.attr_bool("gen_ai.request.stream"), Some(true));
    assert_eq!(stream.attr_i64("gen_ai.usage.input_tokens"), Some(26));
    assert_eq!(stream.attr_i64("gen_ai.usage.output_tokens"), Some(282));
    assert_eq!(
        stream.attr_str("gen_ai.completion.0.content"),
        Some("The sky is blue.")
    );
    assert!(stream.has_attr("gen_ai.response.time_to_first_chunk"));
    assert_eq!(
        strs(tools, "gen_ai.response.finish_reasons"),
        ["tool_calls"]
    );
    assert_eq!(
        tools.attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_current_weather")
    );
    assert_eq!(embed.attr_str("gen_ai.operation.name"), Some("embeddings"));
    assert_eq!(embed.attr_i64("gen_ai.usage.input_tokens"), Some(8));
    assert_eq!(
        completion.attr_str("gen_ai.operation.name"),
        Some("text_completion")
    );
    assert_eq!(completion.attr_i64("gen_ai.usage.output_tokens"), Some(290));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_openai_errors_on_failed_spans() {
    let rx = OtlpReceiver::start().await;
    let up = OllamaUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let cases: [(Reply, u16, &str, &str); 5] = [
        (
            Reply::json(404, ollama::ERROR_404),
            404,
            "not_found",
            "try pulling it first",
        ),
        (
            Reply::json(503, ollama::ERROR_503),
            503,
            "upstream_error",
            "server busy",
        ),
        (
            Reply::json(429, ollama::ERROR_429).with_header("retry-after", "30"),
            429,
            "rate_limited",
            "usage limit",
        ),
        (
            Reply::json(401, ollama::ERROR_401),
            401,
            "auth_error",
            "unauthorized",
        ),
        (
            Reply::ok("[]"),
            502,
            "invalid_response",
            "could not be parsed",
        ),
    ];
    for (reply, status, _, text) in &cases {
        up.push(reply.clone());
        let resp = http().post(&url).json(&chat()).send().await.unwrap();
        assert_eq!(resp.status(), *status);
        if *status == 429 {
            assert_eq!(resp.headers()["retry-after"], "30");
        }
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{status}: {message}");
        assert!(!message.contains(KEY));
    }
    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), cases.len());
    for (root, (_, status, class, _)) in roots.iter().zip(&cases) {
        assert!(matches!(root.status, Status::Error { .. }), "{class}");
        assert_eq!(root.attr_str("error.type"), Some(*class));
        assert_eq!(root.attr_str("error.llm_provider"), Some("ollama"));
        assert_eq!(
            root.attr_i64("http.response.status_code"),
            Some(i64::from(*status))
        );
        let attempt = tree.children_of(root)[0];
        assert_eq!(attempt.name, "raw_gen_ai_request");
        assert_eq!(attempt.attr_str("error.type"), Some(*class));
    }
}
