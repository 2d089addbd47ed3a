//! End-to-end telemetry: the span tree and attributes of proxy requests, exported over real
//! OTLP to the testkit receiver, which decodes what it gets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, openai_config, sse_events};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::openai_upstream::{self, OpenAiUpstream, Reply, StreamEnd};
use traceway_testkit::otlp::{AttrValue, OtlpReceiver, ReceivedSpan, SpanKind, Status};
use traceway_testkit::span_tree::SpanTree;

const OTEL: &str = "litellm_settings:\n  callbacks: [\"otel\"]\n";
const DEFAULT_TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";
const NESTED_TREE: &str = "Received Proxy Server Request [SERVER]\n  litellm_request [INTERNAL]\n    raw_gen_ai_request [CLIENT]";
const SECRETS: &[&str] = &["sk-provider-secret", "sk-master-key-1"];

async fn traced(config: &str, receiver: &OtlpReceiver, extra: &[(&str, &str)]) -> RunningProxy {
    let endpoint = receiver.http_endpoint();
    let mut vars: HashMap<String, String> = [
        ("OTEL_EXPORTER", "otlp_http"),
        ("OTEL_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    traceway::client::install_crypto_provider();
    let cfg = ProxyConfig::parse(config, "test.yaml", Arc::new(vars)).unwrap();
    App::build(cfg, false)
        .unwrap()
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

/// Stops the proxy (flushing spans) and returns the tree of what the receiver decoded.
async fn flushed_tree(p: RunningProxy, receiver: &OtlpReceiver) -> SpanTree {
    p.shutdown().await;
    let spans = receiver.spans();
    assert!(
        receiver.duplicate_key_errors().is_empty(),
        "duplicate attribute keys: {:?}",
        receiver.duplicate_key_errors()
    );
    for s in &spans {
        for (k, v) in &s.attributes {
            let text = format!("{v:?}");
            for secret in SECRETS {
                assert!(
                    !text.contains(secret) && !k.contains(secret),
                    "secret in {}.{k}",
                    s.name
                );
            }
        }
    }
    SpanTree::build(&spans).unwrap()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
}

fn str_array(span: &ReceivedSpan, key: &str) -> Vec<String> {
    match span.attr(key) {
        Some(AttrValue::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("{key} is not an array: {other:?}"),
    }
}

fn assert_error(span: &ReceivedSpan, class: &str) {
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{} status {:?}",
        span.name,
        span.status
    );
    assert_eq!(span.attr_str("error.type"), Some(class), "{}", span.name);
    assert!(span.has_attr("error.message"));
    assert!(
        !span.events_named("exception").is_empty(),
        "{} has no exception event",
        span.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_call_is_one_server_span_with_a_client_child_and_every_attribute() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, &[]).await;
    let mut body = chat("gpt");
    body["temperature"] = json!(0);
    body["max_tokens"] = json!(64);
    body["top_p"] = json!(0.9);
    body["stop"] = json!(["\n\n", "END"]);
    body["seed"] = json!(42);
    body["n"] = json!(2);
    body["user"] = json!("end-user-7");
    body["response_format"] = json!({"type": "json_object"});
    body["metadata"] = json!({"tag": "t1", "nested": {"a": 1}, "conversation_id": "conv-9"});
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}]);
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .header("user-agent", "tests/1.0")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tree = flushed_tree(p, &rx).await;
    assert_eq!(tree.render(), DEFAULT_TREE);
    let server = tree.find("Received Proxy Server Request");
    let client = tree.find("raw_gen_ai_request");
    assert_eq!(server.status, Status::Unset);
    assert_eq!(client.status, Status::Unset);
    assert_eq!(server.parent_span_id, None);
    assert_eq!(server.resource_str("service.name"), Some("traceway"));

    let strs = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.system", "openai"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("litellm.model_group", "gpt"),
        ("litellm.provider.model", "openai/gpt-4o-mini"),
        ("gen_ai.output.type", "json"),
        ("gen_ai.conversation.id", "conv-9"),
        ("llm.request.type", "chat"),
        ("llm.user", "end-user-7"),
        ("metadata.user_api_key_end_user_id", "end-user-7"),
        ("metadata.tag", "t1"),
        ("metadata.nested", "{\"a\":1}"),
        ("metadata.user_agent", "tests/1.0"),
        ("metadata.requester_ip_address", "127.0.0.1"),
        (
            "gen_ai.response.id",
            "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        ),
        ("gen_ai.response.model", "gpt-4.1-2025-04-14"),
        ("gen_ai.prompt.0.role", "system"),
        ("gen_ai.prompt.0.content", "Be brief."),
        ("gen_ai.prompt.1.role", "user"),
        ("gen_ai.prompt.1.content", "Hello"),
        ("gen_ai.completion.0.role", "assistant"),
        (
            "gen_ai.completion.0.content",
            "Hello! How can I assist you today?",
        ),
        ("gen_ai.completion.0.finish_reason", "stop"),
        ("llm.request.functions.0.name", "get_weather"),
        ("llm.request.functions.0.description", "Weather"),
        ("http.route", "/v1/chat/completions"),
        ("http.request.method", "POST"),
        ("url.path", "/v1/chat/completions"),
    ];
    for (k, v) in strs {
        assert_eq!(server.attr_str(k), Some(v), "server attribute {k}");
    }
    let ints = [
        ("gen_ai.request.max_tokens", 64),
        ("gen_ai.request.seed", 42),
        ("gen_ai.request.choice.count", 2),
        ("gen_ai.usage.input_tokens", 19),
        ("gen_ai.usage.output_tokens", 10),
        ("gen_ai.usage.total_tokens", 29),
        ("gen_ai.usage.prompt_tokens", 19),
        ("gen_ai.usage.completion_tokens", 10),
        ("gen_ai.usage.cache_read.input_tokens", 0),
        ("gen_ai.usage.reasoning.output_tokens", 0),
        ("http.response.status_code", 200),
    ];
    for (k, v) in ints {
        assert_eq!(server.attr_i64(k), Some(v), "server attribute {k}");
    }
    assert_eq!(
        server.attr_f64("gen_ai.request.temperature"),
        Some(0.0),
        "temperature 0 is recorded"
    );
    assert_eq!(server.attr_f64("gen_ai.request.top_p"), Some(0.9));
    assert_eq!(server.attr_bool("llm.is_streaming"), Some(false));
    assert!(
        !server.has_attr("gen_ai.request.stream"),
        "only set when streaming"
    );
    assert_eq!(
        str_array(server, "gen_ai.request.stop_sequences"),
        ["\n\n", "END"]
    );
    assert_eq!(
        str_array(server, "gen_ai.response.finish_reasons"),
        ["stop"]
    );
    let input: Value =
        serde_json::from_str(server.attr_str("gen_ai.input.messages").unwrap()).unwrap();
    assert_eq!(
        input,
        json!([{"role": "user", "parts": [{"type": "text", "content": "Hello"}]}])
    );
    let system: Value =
        serde_json::from_str(server.attr_str("gen_ai.system_instructions").unwrap()).unwrap();
    assert_eq!(system, json!([{"type": "text", "content": "Be brief."}]));
    let output: Value =
        serde_json::from_str(server.attr_str("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(
        output[0]["parts"][0]["content"],
        "Hello! How can I assist you today?"
    );
    assert_eq!(output[0]["finish_reason"], "stop");

    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client.attr_i64("server.port"),
        Some(i64::from(up.addr().port()))
    );
    assert_eq!(client.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(client.attr_str("gen_ai.provider.name"), Some("openai"));
    assert_eq!(client.attr_i64("litellm.attempt"), Some(1));

    let sent = up.last_request();
    let traceparent = sent.headers["traceparent"].to_str().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client.trace_id, client.span_id),
        "the upstream sees the CLIENT span as parent"
    );
    assert!(
        client.start_unix_nanos >= server.start_unix_nanos
            && client.end_unix_nanos <= server.end_unix_nanos
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_becomes_the_parent() {
    let rx = OtlpReceiver::start().await;
    let p = traced(
        &format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{OTEL}"
        ),
        &rx,
        &[],
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tree = flushed_tree(p, &rx).await;
    let server = tree.find("Received Proxy Server Request");
    assert_eq!(server.trace_id, trace);
    assert_eq!(server.parent_span_id.as_deref(), Some(parent));
    assert_eq!(tree.find("raw_gen_ai_request").trace_id, trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_mode_moves_the_request_onto_litellm_request() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(
        &openai_config(&up.api_base(), OTEL),
        &rx,
        &[("USE_OTEL_LITELLM_REQUEST_SPAN", "true")],
    )
    .await;
    http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat("gpt"))
        .send()
        .await
        .unwrap();
    up.push(Reply::error(500, openai_upstream::ERROR_500));
    let failed = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat("gpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let tree = flushed_tree(p, &rx).await;
    let roots = tree.roots();
    assert_eq!(roots.len(), 2);
    let ok_root = roots.iter().find(|r| r.status == Status::Unset).unwrap();
    let llm = tree.children_of(ok_root)[0];
    assert_eq!(llm.name, "litellm_request");
    assert_eq!(llm.kind, SpanKind::Internal);
    assert_eq!(tree.children_of(llm)[0].name, "raw_gen_ai_request");
    assert_eq!(llm.attr_str("gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(llm.attr_i64("gen_ai.usage.total_tokens"), Some(29));
    assert_eq!(
        llm.attr_str("metadata.requester_ip_address"),
        Some("127.0.0.1")
    );
    assert!(
        !ok_root.has_attr("gen_ai.request.model"),
        "the parent carries HTTP attributes only"
    );
    assert_eq!(ok_root.attr_i64("http.response.status_code"), Some(200));

    let bad_root = roots.iter().find(|r| r.status != Status::Unset).unwrap();
    let children: Vec<&str> = tree
        .children_of(bad_root)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(children, ["litellm_request", "Failed Proxy Server Request"]);
    let llm = tree.children_of(bad_root)[0];
    assert_error(bad_root, "upstream_error");
    assert_error(llm, "upstream_error");
    assert_error(tree.children_of(llm)[0], "upstream_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_its_spans_at_the_last_chunk_with_the_whole_usage() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, &[]).await;
    let mut body = chat("gpt");
    body["stream"] = json!(true);
    let events = sse_events(
        &http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "the client did not ask for usage"
    );
    let tree = flushed_tree(p, &rx).await;
    assert_eq!(tree.render(), DEFAULT_TREE);
    let server = tree.find("Received Proxy Server Request");
    assert_eq!(server.attr_bool("gen_ai.request.stream"), Some(true));
    assert_eq!(server.attr_bool("llm.is_streaming"), Some(true));
    assert_eq!(server.attr_i64("gen_ai.usage.input_tokens"), Some(9));
    assert_eq!(server.attr_i64("gen_ai.usage.output_tokens"), Some(6));
    assert_eq!(
        server.attr_i64("gen_ai.usage.cache_read.input_tokens"),
        Some(2)
    );
    assert_eq!(
        server.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert_eq!(server.attr_str("gen_ai.response.id"), Some("chatcmpl-123"));
    assert_eq!(
        str_array(server, "gen_ai.response.finish_reasons"),
        ["stop"]
    );
    let ttfc = server
        .attr_f64("gen_ai.response.time_to_first_chunk")
        .unwrap();
    assert!(ttfc > 0.0 && ttfc < 5.0, "{ttfc}");
    let client = tree.find("raw_gen_ai_request");
    assert!(client.end_unix_nanos <= server.end_unix_nanos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_mark_every_span_and_add_the_failed_child() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let cfg = openai_config(&up.api_base(), OTEL).replace(
        "api_key: sk-provider-secret",
        "api_key: sk-provider-secret\n      timeout: 0.3",
    );
    let p = traced(&cfg, &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let cases: [(Reply, u16, &str); 4] = [
        (
            Reply::Json {
                status: 429,
                body: openai_upstream::ERROR_429.into(),
                headers: vec![],
            },
            429,
            "rate_limited",
        ),
        (
            Reply::error(500, openai_upstream::ERROR_500),
            500,
            "upstream_error",
        ),
        (
            Reply::error(401, openai_upstream::ERROR_401),
            401,
            "auth_error",
        ),
        (
            Reply::Delay(Duration::from_secs(2), Box::new(Reply::Fixture)),
            504,
            "timeout",
        ),
    ];
    for (reply, status, _) in &cases {
        up.push(reply.clone());
        assert_eq!(
            http()
                .post(&url)
                .json(&chat("gpt"))
                .send()
                .await
                .unwrap()
                .status(),
            *status
        );
    }
    let tree = flushed_tree(p, &rx).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for (root, (_, status, class)) in roots.iter().zip(&cases) {
        assert_error(root, class);
        assert_eq!(
            root.attr_i64("http.response.status_code"),
            Some(i64::from(*status))
        );
        assert_eq!(root.attr_str("error.llm_provider"), Some("openai"));
        let children = tree.children_of(root);
        let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["raw_gen_ai_request", "Failed Proxy Server Request"],
            "{class}"
        );
        assert_error(children[0], class);
        let failed = children[1];
        assert!(matches!(failed.status, Status::Error { .. }));
        assert!(failed.attr_str("exception").unwrap().len() > 5);
    }
    assert_eq!(roots[0].attr_str("error.code"), Some("rate_limit_exceeded"));
    assert_eq!(
        tree.children_of(roots[0])[0].attr_i64("http.response.status_code"),
        Some(429)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_call_are_traced_without_the_presented_key() {
    let rx = OtlpReceiver::start().await;
    let cfg = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{OTEL}general_settings:\n  master_key: sk-master-key-1\n"
    );
    let p = traced(&cfg, &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let r = http()
        .post(&url)
        .bearer_auth("sk-master-key-1-but-wrong")
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(&url)
        .bearer_auth("sk-master-key-1")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .post(&url)
        .bearer_auth("sk-master-key-1")
        .json(&chat("unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let tree = flushed_tree(p, &rx).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    let classes: Vec<&str> = roots
        .iter()
        .map(|r| r.attr_str("error.type").unwrap())
        .collect();
    assert_eq!(classes, ["auth_error", "bad_request", "not_found"]);
    for r in &roots {
        let names: Vec<&str> = tree
            .children_of(r)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["Failed Proxy Server Request"],
            "no upstream attempt for a refusal"
        );
    }
    assert_eq!(roots[2].attr_str("litellm.model_group"), Some("unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_stream_still_gets_every_span_ended_once() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, &[]).await;
    let chunk = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tick "},"finish_reason":null}]}"#;
    up.push(Reply::Sse {
        events: vec![chunk.to_owned(); 50],
        gap: Duration::from_millis(40),
        end: StreamEnd::Complete,
    });
    let mut body = chat("gpt");
    body["stream"] = json!(true);
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tick"));
    drop(stream);
    let tree =
        after_the_client_left(&up, OpenAiUpstream::streams_cancelled, p, &rx, DEFAULT_TREE).await;
    let server = tree.find("Received Proxy Server Request");
    assert!(!server.events_named("client_disconnected").is_empty());
    assert!(
        server
            .attr_str("gen_ai.completion.0.content")
            .unwrap()
            .starts_with("tick")
    );
}

/// Waits for the upstream to see its answer (`cancelled` counts them: streams or delayed
/// requests) cancelled once the client has gone away, then the spans: each ended exactly once
/// (`shape`), the attempt marked `client_disconnected` (attribute and event).
async fn after_the_client_left(
    up: &OpenAiUpstream,
    cancelled: fn(&OpenAiUpstream) -> usize,
    p: RunningProxy,
    rx: &OtlpReceiver,
    shape: &str,
) -> SpanTree {
    for _ in 0..100 {
        if cancelled(up) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cancelled(up),
        1,
        "the upstream connection is closed when the client goes away"
    );
    let tree = flushed_tree(p, rx).await;
    assert_eq!(tree.render(), shape, "every span ended exactly once");
    assert_marked_left(tree.find("raw_gen_ai_request"));
    tree
}

/// A span whose caller went away before its end: `error.type` and one event
/// `client_disconnected`, and no ERROR status (nothing failed).
fn assert_marked_left(span: &ReceivedSpan) {
    assert_eq!(span.attr_str("error.type"), Some("client_disconnected"));
    assert_eq!(span.events_named("client_disconnected").len(), 1);
    assert_eq!(span.status, Status::Unset);
}

/// The same, on a span of the gateway's own whose answer never started: no response status.
fn assert_left_unanswered(span: &ReceivedSpan) {
    assert_marked_left(span);
    assert!(!span.has_attr("http.response.status_code"));
}

/// Posts `body` as a chat and gives up on it after 300 ms, as a client that goes away.
async fn give_up_on(p: &RunningProxy, body: &Value) {
    let sent = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .timeout(Duration::from_millis(300))
        .json(body)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
}

/// A client that gives up while the stream's first chunk is still awaited (the answer waits for
/// it): the attempt is ended once, marked `client_disconnected`, and the upstream is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_before_the_first_chunk_leaves_the_attempt_marked() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, &[]).await;
    up.push(Reply::Sse {
        events: Vec::new(),
        gap: Duration::ZERO,
        end: StreamEnd::Hang,
    });
    let mut body = chat("gpt");
    body["stream"] = json!(true);
    give_up_on(&p, &body).await;
    let tree =
        after_the_client_left(&up, OpenAiUpstream::streams_cancelled, p, &rx, DEFAULT_TREE).await;
    assert_left_unanswered(tree.find("Received Proxy Server Request"));
}

/// A client that gives up while a non-streamed answer is still on its way: the attempt is
/// ended once, marked `client_disconnected`, and the upstream request is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_before_the_answer_leaves_the_attempt_marked() {
    let tree = leave_a_delayed_answer(&[], DEFAULT_TREE).await;
    assert_left_unanswered(tree.find("Received Proxy Server Request"));
}

/// The same in nested mode: `litellm_request`, which the call opened, is marked and ended once
/// as well as the SERVER span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_nested_mode_a_client_that_goes_away_leaves_every_span_marked() {
    let tree =
        leave_a_delayed_answer(&[("USE_OTEL_LITELLM_REQUEST_SPAN", "true")], NESTED_TREE).await;
    assert_left_unanswered(tree.find("Received Proxy Server Request"));
    assert_left_unanswered(tree.find("litellm_request"));
}

/// A proxy (with `extra` environment) whose upstream delays its answer, and a client that gives
/// up on it: the spans once the upstream request is let go, checked by `after_the_client_left`.
async fn leave_a_delayed_answer(extra: &[(&str, &str)], shape: &str) -> SpanTree {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, extra).await;
    up.push(Reply::Delay(
        Duration::from_secs(5),
        Box::new(Reply::Fixture),
    ));
    give_up_on(&p, &chat("gpt")).await;
    after_the_client_left(&up, OpenAiUpstream::requests_cancelled, p, &rx, shape).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_embeddings_are_traced_with_their_operation() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let p = traced(&openai_config(&up.api_base(), OTEL), &rx, &[]).await;
    http()
        .post(format!("{}/v1/completions", p.url()))
        .json(&json!({"model": "gpt", "prompt": "Say this"}))
        .send()
        .await
        .unwrap();
    http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "gpt", "input": ["one", "two"]}))
        .send()
        .await
        .unwrap();
    let events = sse_events(
        &http()
            .post(format!("{}/v1/completions", p.url()))
            .json(&json!({"model": "gpt", "prompt": "x", "stream": true}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let tree = flushed_tree(p, &rx).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    let ops: Vec<&str> = roots
        .iter()
        .map(|r| r.attr_str("gen_ai.operation.name").unwrap())
        .collect();
    assert_eq!(ops, ["text_completion", "embeddings", "text_completion"]);
    assert_eq!(
        roots[0].attr_str("gen_ai.prompt.0.content"),
        Some("Say this")
    );
    assert_eq!(
        roots[0].attr_str("gen_ai.completion.0.content"),
        Some("\n\nThis is indeed a test")
    );
    assert_eq!(roots[1].attr_str("gen_ai.prompt.1.content"), Some("two"));
    assert_eq!(roots[1].attr_i64("gen_ai.usage.input_tokens"), Some(8));
    assert_eq!(roots[2].attr_i64("gen_ai.usage.total_tokens"), Some(9));
    assert_eq!(
        roots[2].attr_str("gen_ai.completion.0.content"),
        Some("This is a test")
    );
    for r in roots {
        assert_eq!(tree.children_of(r).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exporter_protocol_delivers_the_same_spans() {
    let mut shapes = Vec::new();
    for (exporter, protocol) in [
        ("otlp_http", "http/protobuf"),
        ("otlp_http", "http/json"),
        ("otlp_grpc", "grpc"),
    ] {
        let rx = OtlpReceiver::start().await;
        let endpoint = if protocol == "grpc" {
            rx.grpc_endpoint()
        } else {
            rx.http_endpoint()
        };
        let cfg = format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{OTEL}"
        );
        let p = traced(
            &cfg,
            &rx,
            &[
                ("OTEL_EXPORTER", exporter),
                ("OTEL_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_HEADERS", "Authorization=Bearer%20k"),
            ],
        )
        .await;
        assert_eq!(
            http()
                .post(format!("{}/v1/chat/completions", p.url()))
                .json(&chat("m"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let tree = flushed_tree(p, &rx).await;
        let server = tree.find("Received Proxy Server Request");
        shapes.push((
            tree.render(),
            server
                .attr_str("gen_ai.completion.0.content")
                .map(str::to_owned),
            server.attributes.len(),
        ));
        let req = rx.requests().into_iter().next().unwrap();
        assert_eq!(
            req.header("authorization"),
            Some("Bearer k"),
            "{protocol}: OTEL_HEADERS is URL-decoded"
        );
        if protocol == "http/json" {
            assert_eq!(req.content_type.as_deref(), Some("application/json"));
        }
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
    assert_eq!(shapes[0].0, DEFAULT_TREE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_requests_nothing_but_a_counter() {
    let rx = OtlpReceiver::start().await;
    let cfg =
        format!("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{OTEL}");
    let p = traced(
        &cfg,
        &rx,
        &[
            ("OTEL_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
    )
    .await;
    let telemetry = p.app.telemetry.clone().unwrap();
    for _ in 0..40 {
        let r = http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&chat("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    p.shutdown().await;
    assert_eq!(telemetry.spans_exported(), 0);
    assert_eq!(
        telemetry.spans_dropped() + telemetry.spans_export_failed(),
        80,
        "every span is counted as dropped or failed"
    );
    assert!(
        telemetry.spans_dropped() > 0,
        "a full queue drops and counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_spans_still_queued() {
    let rx = OtlpReceiver::start().await;
    let cfg =
        format!("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{OTEL}");
    let p = traced(&cfg, &rx, &[("OTEL_BSP_SCHEDULE_DELAY", "600000")]).await;
    for _ in 0..5 {
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&chat("m"))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.spans().is_empty(),
        "nothing is exported before the schedule delay"
    );
    let tree = flushed_tree(p, &rx).await;
    assert_eq!(tree.spans().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_otel_callback_nothing_is_traced() {
    let rx = OtlpReceiver::start().await;
    // The web UI's trace buffer is a span destination of its own (tests/ui.rs); without it,
    // no span work happens at all.
    let p = traced(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  ui: false\n",
        &rx,
        &[],
    )
    .await;
    assert!(p.app.telemetry.is_none());
    http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    p.shutdown().await;
    assert!(rx.spans().is_empty() && rx.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_off_message_logging_replaces_content_and_keeps_the_rest() {
    let rx = OtlpReceiver::start().await;
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\nlitellm_settings:\n  callbacks: [\"otel\"]\n  turn_off_message_logging: true\n";
    let p = traced(cfg, &rx, &[]).await;
    let r: Value = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat("m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"], "Hello",
        "the client still gets the full response"
    );
    let tree = flushed_tree(p, &rx).await;
    let server = tree.find("Received Proxy Server Request");
    assert_eq!(
        server.attr_str("gen_ai.prompt.1.content"),
        Some("redacted-by-traceway")
    );
    assert_eq!(server.attr_str("gen_ai.prompt.1.role"), Some("user"));
    assert_eq!(
        server.attr_str("gen_ai.completion.0.content"),
        Some("redacted-by-traceway")
    );
    assert!(server.attr_i64("gen_ai.usage.total_tokens").unwrap() > 0);
    assert!(!format!("{:?}", server.attributes).contains("Hello"));
}

/// `input_cost_per_token` / `output_cost_per_token` (in `litellm_params` or `model_info`, as
/// LiteLLM reads them) price a call: `gen_ai.cost.total_cost` on the request's span, for a
/// whole answer, a stream (from its usage chunk) and embeddings; none without a price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_token_prices_give_the_calls_cost() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let base = up.api_base();
    let cfg = format!(
        "model_list:
  - model_name: priced
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: sk-provider-secret
      input_cost_per_token: 2.5e-06
      output_cost_per_token: 0.00001
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {base}
      api_key: sk-provider-secret
    model_info:
      input_cost_per_token: 2.0e-08
  - model_name: free
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: sk-provider-secret
{OTEL}"
    );
    let p = traced(&cfg, &rx, &[]).await;
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    for (path, body) in [
        ("/v1/chat/completions", chat("priced", false)),
        ("/v1/chat/completions", chat("priced", true)),
        ("/v1/embeddings", json!({"model": "embed", "input": "hi"})),
        ("/v1/chat/completions", chat("free", false)),
    ] {
        let resp = http()
            .post(format!("{}{path}", p.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let tree = flushed_tree(p, &rx).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    let cost = |i: usize| roots[i].attr_f64("gen_ai.cost.total_cost");
    let close = |got: Option<f64>, want: f64| {
        let got = got.unwrap_or_else(|| panic!("no cost, want {want}"));
        assert!((got - want).abs() < 1e-12, "cost {got}, want {want}");
    };
    // The fixture's usage: 19 + 10 tokens whole, 9 + 6 streamed.
    close(cost(0), 19.0 * 2.5e-6 + 10.0 * 1e-5);
    close(cost(1), 9.0 * 2.5e-6 + 6.0 * 1e-5);
    let embedded = roots[2].attr_i64("gen_ai.usage.input_tokens").unwrap() as f64;
    close(cost(2), embedded * 2.0e-8);
    assert_eq!(cost(3), None, "no price, no cost");
}

#[test]
fn a_price_that_is_not_a_non_negative_number_stops_start_up_naming_it() {
    for (line, path) in [
        (
            "      input_cost_per_token: -1",
            "model_list[0].litellm_params.input_cost_per_token",
        ),
        (
            "      output_cost_per_token: cheap",
            "model_list[0].litellm_params.output_cost_per_token",
        ),
    ] {
        let cfg = format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n{line}\n"
        );
        let err = ProxyConfig::parse(
            &cfg,
            "test.yaml",
            Arc::new(HashMap::<String, String>::new()),
        )
        .err()
        .unwrap_or_else(|| panic!("{line}: accepted"))
        .to_string();
        assert!(
            err.contains(path) && err.contains("price per token"),
            "{err}"
        );
    }
}
