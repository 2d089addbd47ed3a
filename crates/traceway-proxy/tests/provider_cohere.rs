//! End-to-end: `cohere/` through the proxy against the testkit's Cohere v2 API — OpenAI-shaped
//! answers (plain, streamed from Cohere's SSE events, tool calls, embeddings, errors), the key
//! from `COHERE_API_KEY` / `CO_API_KEY`, and the span tree each call leaves, with `cohere`
//! attributes, exported over real OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, proxy, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::cohere_upstream::{self as cohere, CohereUpstream};
use traceway_testkit::otlp::{AttrValue, OtlpReceiver, ReceivedSpan, SpanKind, Status};
use traceway_testkit::scripted_upstream::Reply;

const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";
const KEY: &str = "co-proxy-secret-key";
/// Failure tests send one failing request after another: no cooldown may hide the next one.
const NO_COOLDOWN: &str = "router_settings:\n  disable_cooldowns: true\n";

fn config(up: &CohereUpstream, tail: &str) -> String {
    let chat = provider_config(
        "command",
        "cohere/command-r-plus-08-2024",
        &up.api_base(),
        None,
        &[],
        "",
    );
    let embed = provider_config(
        "embed",
        "cohere/embed-english-v3.0",
        &up.api_base(),
        None,
        &[],
        tail,
    );
    format!("{chat}{}", embed.replacen("model_list:\n", "", 1))
}

fn chat() -> Value {
    json!({"model": "command", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
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
    let up = CohereUpstream::start().await;
    let p = traced_proxy(&config(&up, OTEL_SETTINGS), &rx, &[("COHERE_API_KEY", KEY)]).await;
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
    assert_eq!(r["id"], "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
    assert!(
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("LLMs stands for")
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let sent = up.last_request();
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
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
    assert_eq!(text, "Hello! How can I help?");

    let mut body = chat();
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    body["stream"] = json!(true);
    let resp = http().post(&url).json(&body).send().await.unwrap();
    let events = sse_events(&resp.text().await.unwrap());
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Toronto"})
    );

    let r: Value = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "embed", "input": ["hello", "goodbye"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    assert_eq!(up.last_request().body["input_type"], "search_document");

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for r in &roots {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.status, Status::Unset);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("cohere"));
        let client = tree.children_of(r)[0];
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.attr_str("gen_ai.provider.name"), Some("cohere"));
        assert_eq!(
            client.attr_i64("server.port"),
            Some(i64::from(up.addr().port()))
        );
    }
    let (plain, stream, tools, embed) = (roots[0], roots[1], roots[2], roots[3]);
    let client = tree.children_of(plain)[0];
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client.trace_id, client.span_id)
    );
    assert_eq!(
        plain.attr_str("gen_ai.request.model"),
        Some("command-r-plus-08-2024")
    );
    assert_eq!(
        plain.attr_str("gen_ai.response.id"),
        Some("c14c80c3-18eb-4519-9460-6c92edd8cfb4")
    );
    for (k, v) in [
        ("gen_ai.usage.input_tokens", 71),
        ("gen_ai.usage.output_tokens", 20),
        ("gen_ai.usage.total_tokens", 91),
    ] {
        assert_eq!(plain.attr_i64(k), Some(v), "{k}");
    }
    assert_eq!(strs(plain, "gen_ai.response.finish_reasons"), ["stop"]);
    assert_eq!(
        stream.attr_str("gen_ai.response.id"),
        Some("29f14a5a-11de-4cae-9800-25e4747408ea")
    );
    assert_eq!(stream.attr_i64("gen_ai.usage.input_tokens"), Some(69));
    assert_eq!(
        stream.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert!(stream.has_attr("gen_ai.response.time_to_first_chunk"));
    assert_eq!(
        strs(tools, "gen_ai.response.finish_reasons"),
        ["tool_calls"]
    );
    assert_eq!(
        tools.attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_weather")
    );
    assert_eq!(tools.attr_i64("gen_ai.usage.output_tokens"), Some(83));
    assert_eq!(embed.attr_str("gen_ai.operation.name"), Some("embeddings"));
    assert_eq!(embed.attr_i64("gen_ai.usage.input_tokens"), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_openai_errors_on_failed_spans() {
    let rx = OtlpReceiver::start().await;
    let up = CohereUpstream::start().await;
    let tail = format!("{OTEL_SETTINGS}{NO_COOLDOWN}");
    let p = traced_proxy(&config(&up, &tail), &rx, &[("CO_API_KEY", KEY)]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let cases: [(Reply, u16, &str, &str); 5] = [
        (
            Reply::json(429, cohere::ERROR_429).with_header("retry-after", "11"),
            429,
            "rate_limited",
            "Trial key",
        ),
        (
            Reply::json(401, cohere::ERROR_401),
            401,
            "auth_error",
            "invalid api token",
        ),
        (
            Reply::json(400, cohere::ERROR_400),
            400,
            "bad_request",
            "at least 1 token",
        ),
        (
            Reply::json(503, cohere::ERROR_503),
            503,
            "upstream_error",
            "overloaded",
        ),
        (
            Reply::ok("{\"id\": \"x\"}"),
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
            assert_eq!(resp.headers()["retry-after"], "11");
        }
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{status}: {message}");
        assert!(!message.contains(KEY));
    }
    assert_eq!(
        up.last_request().header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "CO_API_KEY is read when COHERE_API_KEY is unset"
    );
    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), cases.len());
    for (root, (_, status, class, _)) in roots.iter().zip(&cases) {
        assert!(matches!(root.status, Status::Error { .. }), "{class}");
        assert_eq!(root.attr_str("error.type"), Some(*class));
        assert_eq!(root.attr_str("error.llm_provider"), Some("cohere"));
        assert_eq!(
            root.attr_i64("http.response.status_code"),
            Some(i64::from(*status))
        );
        assert_eq!(
            tree.children_of(root)[0].attr_str("error.type"),
            Some(*class)
        );
    }
}

#[tokio::test]
async fn a_missing_key_is_a_401_before_any_upstream_call() {
    let up = CohereUpstream::start().await;
    let p = proxy(&config(&up, ""), &[]).await;
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("COHERE_API_KEY")
    );
    assert!(up.requests().is_empty());
}
