//! End-to-end: `anthropic/` through the proxy against the testkit's Anthropic upstream — the
//! OpenAI-shaped answers a client gets (plain, streamed, tool calls, errors) and the span tree
//! each call leaves, with Anthropic's provider attributes, exported over real OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, proxy, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::anthropic_upstream::{self as fixtures, AnthropicUpstream};
use traceway_testkit::mock_upstream::Reply;
use traceway_testkit::otlp::{AttrValue, OtlpReceiver, ReceivedSpan, SpanKind, Status};

const KEY: &str = "sk-ant-proxy-secret";
const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";

fn config(up: &AnthropicUpstream, tail: &str) -> String {
    provider_config(
        "claude",
        "anthropic/claude-sonnet-4-20250514",
        &up.api_base(),
        Some(KEY),
        &[],
        tail,
    )
}

fn chat() -> Value {
    json!({"model": "claude", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
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
    let up = AnthropicUpstream::start().await;
    let p = traced_proxy(&config(&up, OTEL_SETTINGS), &rx, &[]).await;
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
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    let sent = up.last_request();
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.body["system"], "Be brief.");
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
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
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
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "San Francisco, CA");

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 3);
    for r in &roots {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.status, Status::Unset);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(r.attr_str("gen_ai.system"), Some("anthropic"));
        assert_eq!(
            r.attr_str("gen_ai.request.model"),
            Some("claude-sonnet-4-20250514")
        );
        assert_eq!(r.attr_str("litellm.model_group"), Some("claude"));
        let client = tree.children_of(r)[0];
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.attr_str("gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(client.attr_str("server.address"), Some("127.0.0.1"));
        assert_eq!(
            client.attr_i64("server.port"),
            Some(i64::from(up.addr().port()))
        );
        assert_eq!(client.attr_i64("http.response.status_code"), Some(200));
    }
    let (plain, stream, tools) = (roots[0], roots[1], roots[2]);
    let client = tree.children_of(plain)[0];
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client.trace_id, client.span_id)
    );
    assert_eq!(
        plain.attr_str("gen_ai.response.id"),
        Some("msg_01XFDUDYJgAACzvnptvVoYEL")
    );
    assert_eq!(
        plain.attr_str("gen_ai.response.model"),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(plain.attr_f64("gen_ai.request.temperature"), Some(0.0));
    for (k, v) in [
        ("gen_ai.usage.input_tokens", 24),
        ("gen_ai.usage.output_tokens", 10),
        ("gen_ai.usage.total_tokens", 34),
        ("gen_ai.usage.cache_read.input_tokens", 8),
        ("gen_ai.usage.cache_creation.input_tokens", 4),
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
    assert_eq!(stream.attr_i64("gen_ai.usage.input_tokens"), Some(31));
    assert_eq!(stream.attr_i64("gen_ai.usage.output_tokens"), Some(15));
    assert_eq!(
        stream.attr_i64("gen_ai.usage.cache_read.input_tokens"),
        Some(6)
    );
    assert_eq!(
        stream.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert!(stream.has_attr("gen_ai.response.time_to_first_chunk"));
    assert_eq!(
        stream.attr_str("gen_ai.response.id"),
        Some("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY")
    );
    assert_eq!(
        strs(tools, "gen_ai.response.finish_reasons"),
        ["tool_calls"]
    );
    assert_eq!(
        tools.attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_weather")
    );
    assert_eq!(
        tools.attr_str("llm.request.functions.0.name"),
        Some("get_weather")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_openai_errors_on_failed_spans() {
    let rx = OtlpReceiver::start().await;
    let up = AnthropicUpstream::start().await;
    let p = traced_proxy(&config(&up, OTEL_SETTINGS), &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let cases: [(Reply, u16, &str, &str); 4] = [
        (
            Reply::error(529, fixtures::ERROR_529),
            503,
            "upstream_error",
            "Overloaded",
        ),
        (
            Reply::error_retry_after(429, fixtures::ERROR_429, 9),
            429,
            "rate_limited",
            "rate limit",
        ),
        (
            Reply::error(401, fixtures::ERROR_401),
            401,
            "auth_error",
            "invalid x-api-key",
        ),
        (
            Reply::ok("{\"id\": 1}"),
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
            assert_eq!(resp.headers()["retry-after"], "9");
        }
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{status}: {message}");
        assert!(!message.contains(KEY));
        assert!(body["error"]["type"].is_string() && body["error"].get("code").is_some());
    }
    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for (root, (_, status, class, _)) in roots.iter().zip(&cases) {
        assert_eq!(
            shape(&tree, root),
            format!("{TREE}\n  Failed Proxy Server Request [INTERNAL]")
        );
        assert!(matches!(root.status, Status::Error { .. }), "{class}");
        assert_eq!(root.attr_str("error.type"), Some(*class));
        assert_eq!(root.attr_str("error.llm_provider"), Some("anthropic"));
        assert_eq!(
            root.attr_i64("http.response.status_code"),
            Some(i64::from(*status))
        );
        assert_eq!(root.attr_str("gen_ai.provider.name"), Some("anthropic"));
        let attempt = tree.children_of(root)[0];
        assert_eq!(attempt.name, "raw_gen_ai_request");
        assert_eq!(attempt.attr_str("error.type"), Some(*class));
    }
    assert_eq!(roots[0].attr_str("error.code"), Some("overloaded_error"));
}

#[tokio::test]
async fn the_key_comes_from_anthropic_api_key_when_the_entry_names_none() {
    let up = AnthropicUpstream::start().await;
    let cfg = provider_config(
        "claude",
        "anthropic/claude-3-5-haiku",
        &up.api_base(),
        None,
        &["max_tokens: 100"],
        "",
    );
    let p = proxy(&cfg, &[("ANTHROPIC_API_KEY", "sk-ant-from-env")]).await;
    let r = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = up.last_request();
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-from-env"));
    assert_eq!(
        sent.body["max_tokens"], 100,
        "litellm_params fill the request"
    );
    assert_eq!(sent.body["model"], "claude-3-5-haiku");
}

/// `/v1/completions` on a chat-only provider, as LiteLLM serves it: the prompt goes up as one
/// user message (several prompts as one chat each), the answer (and each stream chunk) comes
/// back as a text completion, and the spans say `text_completion`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_completions_go_up_as_one_message_chats() {
    let rx = OtlpReceiver::start().await;
    let up = AnthropicUpstream::start().await;
    let p = traced_proxy(&config(&up, OTEL_SETTINGS), &rx, &[]).await;
    let url = format!("{}/v1/completions", p.url());
    let body = json!({"model": "claude", "prompt": "Say hello", "max_tokens": 30, "echo": true, "logprobs": 1});
    let r: Value = http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "text_completion", "{r}");
    assert_eq!(r["choices"][0]["text"], "Hello! How can I help you today?");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 10);
    let sent = up.last_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}])
    );
    assert_eq!(sent.body["max_tokens"], 30);
    assert!(sent.body.get("echo").is_none() && sent.body.get("logprobs").is_none());

    let mut body = body;
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
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c["object"] == "text_completion"),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello! How can I help?");

    // Several prompts go up as one chat each, in order, within one attempt (one CLIENT span,
    // whose context both upstream requests carry); the answers come back as one completion.
    let before = up.requests().len();
    let r: Value = http()
        .post(&url)
        .json(&json!({"model": "claude", "prompt": ["First?", "Second?"], "max_tokens": 30}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = up.requests()[before..].to_vec();
    assert_eq!(sent.len(), 2, "{r}");
    for (req, prompt) in sent.iter().zip(["First?", "Second?"]) {
        assert_eq!(
            req.body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": prompt}]}])
        );
    }
    let parents: Vec<&str> = sent
        .iter()
        .map(|req| req.header("traceparent").unwrap())
        .collect();
    assert_eq!(parents[0], parents[1], "one attempt, one span");
    let choices: Vec<(Value, Value)> = r["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].clone(), c["text"].clone()))
        .collect();
    assert_eq!(
        choices,
        [
            (json!(0), json!("Hello! How can I help you today?")),
            (json!(1), json!("Hello! How can I help you today?"))
        ]
    );
    assert_eq!(r["usage"]["completion_tokens"], 20, "{r}");

    // A stream answers one prompt: several are a 400 naming `prompt`, nothing sent upstream.
    let before = up.requests().len();
    let resp = http()
        .post(&url)
        .json(&json!({"model": "claude", "prompt": ["a", "b"], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "prompt");
    assert_eq!(up.requests().len(), before);

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for r in &roots[..3] {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.attr_str("gen_ai.operation.name"), Some("text_completion"));
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("anthropic"));
        let client = tree.children_of(r)[0];
        assert_eq!(
            client.attr_str("gen_ai.operation.name"),
            Some("text_completion")
        );
    }
    assert_eq!(
        roots[0].attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(
        roots[1].attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    let client = tree.children_of(roots[2])[0];
    assert!(parents[0].contains(&client.span_id), "{}", parents[0]);
    assert_eq!(
        roots[2].attr_str("gen_ai.completion.1.content"),
        Some("Hello! How can I help you today?")
    );
    assert!(matches!(roots[3].status, Status::Error { .. }));
}
