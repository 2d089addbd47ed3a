//! Reliability under upstream faults: connection resets and closes before any answer, bodies
//! shorter than their `content-length`, upstreams that never answer or stop mid-body or
//! mid-stream, broken SSE (garbage lines, invalid JSON, invalid UTF-8, no `[DONE]`), absurd
//! `retry-after` values and an unreachable port. Every one must give the client a clean OpenAI
//! error (right status, `error.type`, a message naming the cause) — or, once a stream's first
//! chunk has gone out, a final `data: {"error": …}` event — end every span exactly once with the failure
//! recorded, close every upstream connection, and leave no task behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::sse_events;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use traceway_proxy::app::RunningProxy;
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan, SpanKind, Status};
use traceway_testkit::scripted_upstream::{Reply, ScriptedUpstream, StreamEnd};
use traceway_testkit::span_tree::SpanTree;

const CHAT_OK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// Timeout of one attempt (and idle gap mid-stream), seconds: short so stalls end quickly.
const TIMEOUT: f64 = 0.4;

fn chunk(text: &str, finish: Option<&str>) -> Bytes {
    let c = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",
        "choices":[{"index":0,"delta":{"content":text},"finish_reason":finish}]});
    Bytes::from(format!("data: {c}\n\n"))
}

fn sse(pieces: Vec<Bytes>) -> Reply {
    Reply::stream("text/event-stream", pieces)
}

fn upstream_fixture() -> traceway_testkit::scripted_upstream::FixtureFn {
    Arc::new(|r| {
        if r.body.get("stream") == Some(&Value::Bool(true)) {
            sse(vec![
                chunk("Hi", None),
                chunk("", Some("stop")),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ])
        } else {
            Reply::ok(CHAT_OK)
        }
    })
}

/// A client that keeps no idle connection, so the proxy's connection tasks end with each call.
fn client() -> reqwest::Client {
    traceway::client::install_crypto_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

struct Setup {
    up: ScriptedUpstream,
    rx: OtlpReceiver,
    proxy: RunningProxy,
    url: String,
}

async fn setup() -> Setup {
    let up = ScriptedUpstream::start(upstream_fixture(), None).await;
    // One request per connection: every connection the proxy opened must be closed again.
    up.set_connection_close(true);
    let rx = OtlpReceiver::start().await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {up}/v1
      api_key: sk-provider-secret
      timeout: {TIMEOUT}
      stream_timeout: {TIMEOUT}
  - model_name: dead
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://{dead}/v1
      api_key: sk-provider-secret
      timeout: {TIMEOUT}
litellm_settings:
  callbacks: [\"otel\"]
router_settings:
  disable_cooldowns: true
  retry_after: 0.01
",
        up = up.url()
    );
    let proxy = common::traced_proxy(&cfg, &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    Setup { up, rx, proxy, url }
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hello"}]})
}

/// What one fault must produce.
#[derive(Clone, Copy)]
struct Expect {
    /// HTTP status (200 for a stream that broke after its first chunk).
    status: u16,
    /// OpenAI `error.type`; `None` for a success.
    openai_type: Option<&'static str>,
    /// Span `error.type`.
    class: Option<&'static str>,
    /// Words the message must contain.
    message: &'static str,
    /// Upstream attempts (CLIENT spans).
    attempts: usize,
}

const fn fails(
    status: u16,
    openai_type: &'static str,
    class: &'static str,
    message: &'static str,
) -> Expect {
    Expect {
        status,
        openai_type: Some(openai_type),
        class: Some(class),
        message,
        attempts: 1,
    }
}

/// Sends one request and checks the answer: a JSON error, or an SSE stream ending in an error
/// event (or in `[DONE]` for a success). Returns the error object.
async fn check(s: &Setup, name: &str, request: &Value, expect: &Expect) -> Option<Value> {
    let started = std::time::Instant::now();
    let resp = client().post(&s.url).json(request).send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{name}: took {:?}",
        started.elapsed()
    );
    assert_eq!(status, expect.status, "{name}: {text}");
    let error = if ctype.starts_with("text/event-stream") {
        let events = sse_events(&text);
        let last = events
            .last()
            .unwrap_or_else(|| panic!("{name}: empty stream"));
        match expect.openai_type {
            None => {
                assert_eq!(last, "[DONE]", "{name}: {text}");
                None
            }
            Some(_) => {
                assert!(
                    !events.iter().any(|e| e == "[DONE]"),
                    "{name}: a failed stream must not end with [DONE]: {text}"
                );
                let v: Value = serde_json::from_str(last).unwrap();
                Some(v["error"].clone())
            }
        }
    } else {
        assert!(
            ctype.starts_with("application/json"),
            "{name}: content-type {ctype}"
        );
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        expect.openai_type.map(|_| v["error"].clone())
    };
    if let Some(t) = expect.openai_type {
        let err = error
            .clone()
            .unwrap_or_else(|| panic!("{name}: no error in {text}"));
        assert_eq!(err["type"], t, "{name}: {err}");
        let msg = err["message"].as_str().unwrap();
        eprintln!("{name}: {status} {t}: {msg}");
        assert!(
            msg.contains(expect.message),
            "{name}: message {msg:?} lacks {:?}",
            expect.message
        );
        assert!(
            !msg.contains("sk-provider-secret"),
            "{name}: message leaks the key"
        );
    }
    error
}

fn assert_failed(span: &ReceivedSpan, class: &str, what: &str) {
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{what}: {} status {:?}",
        span.name,
        span.status
    );
    assert_eq!(
        span.attr_str("error.type"),
        Some(class),
        "{what}: {}",
        span.name
    );
}

/// The spans of every request, in order: one SERVER root each, its CLIENT attempts, every span
/// ended once and failures recorded on both.
/// The first `skip` roots (the warm-up's) are left out.
/// After a run of faults: every upstream connection closed, the one stalled request given up,
/// no task left behind, and each case's spans as expected.
async fn assert_ended_cleanly(s: Setup, baseline: usize, expects: &[(&str, Expect)]) {
    assert_eq!(
        s.up.wait_connections_closed(Duration::from_secs(5)).await,
        0,
        "every upstream connection is closed"
    );
    assert_eq!(
        s.up.requests_cancelled(),
        1,
        "the stalled request was given up"
    );
    let alive = tasks_settle(baseline, 0).await;
    assert!(
        alive <= baseline,
        "tasks leaked: {alive} alive, {baseline} before"
    );
    let tree = common::spans_without(s.proxy, &s.rx, &["sk-provider-secret"]).await;
    check_spans(&tree, WARM_UP, expects);
}

fn check_spans(tree: &SpanTree, skip: usize, cases: &[(&str, Expect)]) {
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    let roots: Vec<&ReceivedSpan> = roots.into_iter().skip(skip).collect();
    let names: Vec<&str> = cases.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        roots.len(),
        cases.len(),
        "one SERVER span per request: {names:?}\n{}",
        tree.render()
    );
    for (root, (name, expect)) in roots.iter().zip(cases) {
        assert_eq!(root.kind, SpanKind::Server, "{name}");
        let children = tree.children_of(root);
        let attempts: Vec<&&ReceivedSpan> = children
            .iter()
            .filter(|c| c.name == "raw_gen_ai_request")
            .collect();
        assert_eq!(attempts.len(), expect.attempts, "{name}: attempts");
        match expect.class {
            Some(class) => {
                assert_failed(root, class, name);
                for a in &attempts {
                    assert_eq!(a.kind, SpanKind::Client, "{name}");
                    assert_failed(a, class, name);
                }
                assert!(
                    children
                        .iter()
                        .any(|c| c.name == "Failed Proxy Server Request"),
                    "{name}: no Failed Proxy Server Request child"
                );
            }
            None => {
                assert!(!matches!(root.status, Status::Error { .. }), "{name}");
                assert!(root.attr_str("error.type").is_none(), "{name}");
            }
        }
    }
}

/// Waits until the runtime's live tasks are back to `baseline` (plus `slack`).
async fn tasks_settle(baseline: usize, slack: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let alive = metrics.num_alive_tasks();
        if alive <= baseline + slack || tokio::time::Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests made by [`warm_up`].
const WARM_UP: usize = 2;

async fn warm_up(s: &Setup) -> usize {
    for stream in [false, true] {
        let r = client()
            .post(&s.url)
            .json(&body("gpt", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(
        s.up.wait_connections_closed(Duration::from_secs(5)).await,
        0
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_faults_answer_clean_errors_and_end_every_span_once() {
    let s = setup().await;
    let baseline = warm_up(&s).await;
    let cases: Vec<(&str, Reply, Value, Expect)> = vec![
        (
            "reset before the answer",
            Reply::Reset,
            body("gpt", false),
            fails(
                502,
                "api_connection_error",
                "connection_error",
                "the connection to openai at 127.0.0.1 broke before a complete answer",
            ),
        ),
        (
            "closed before the answer",
            Reply::Close,
            body("gpt", false),
            fails(
                502,
                "api_connection_error",
                "connection_error",
                "the connection to openai at 127.0.0.1 broke before a complete answer",
            ),
        ),
        (
            "body shorter than content-length, then cut",
            Reply::partial(&CHAT_OK[..40], CHAT_OK.len()),
            body("gpt", false),
            fails(502, "api_connection_error", "connection_error", "openai"),
        ),
        (
            "body shorter than content-length, then silent",
            Reply::Partial {
                status: 200,
                content_type: "application/json".into(),
                body: Bytes::from(&CHAT_OK[..40]),
                content_length: CHAT_OK.len(),
                hang: true,
            },
            body("gpt", false),
            fails(504, "timeout_error", "timeout", "did not answer within"),
        ),
        (
            "never answers",
            Reply::Stall,
            body("gpt", false),
            fails(504, "timeout_error", "timeout", "did not answer within"),
        ),
        (
            "200 with a body that is not JSON",
            Reply::ok("{\"id\": \"chatcmpl-1\", \"choices\": [oops"),
            body("gpt", false),
            fails(502, "api_error", "invalid_response", "openai"),
        ),
        (
            "200 with an HTML page",
            Reply::Json {
                status: 200,
                body: "<html><body>Bad gateway</body></html>".into(),
                headers: vec![("content-type".into(), "text/html".into())],
            },
            body("gpt", false),
            fails(502, "api_error", "invalid_response", "openai"),
        ),
        (
            "503 with an HTML page",
            Reply::Json {
                status: 503,
                body: "<html><body>Service Unavailable</body></html>".into(),
                headers: vec![("content-type".into(), "text/html".into())],
            },
            body("gpt", false),
            fails(503, "api_error", "upstream_error", ""),
        ),
        (
            "429 with an absurd retry-after",
            Reply::json(
                429,
                r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
            )
            .with_header("retry-after", "1e308"),
            body("gpt", false),
            fails(429, "rate_limit_error", "rate_limited", "slow down"),
        ),
        (
            "429 with a NaN retry-after",
            Reply::json(
                429,
                r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
            )
            .with_header("retry-after", "NaN"),
            body("gpt", false),
            fails(429, "rate_limit_error", "rate_limited", "slow down"),
        ),
        (
            "reset on every retry",
            Reply::Reset,
            {
                let mut b = body("gpt", false);
                b["num_retries"] = json!(2);
                b
            },
            Expect {
                attempts: 3,
                ..fails(
                    502,
                    "api_connection_error",
                    "connection_error",
                    "broke before a complete answer",
                )
            },
        ),
    ];
    let mut expects = Vec::new();
    for (name, reply, request, expect) in cases {
        s.up.push(reply.clone());
        if expect.attempts > 1 {
            for _ in 1..expect.attempts {
                s.up.push(reply.clone());
            }
        }
        check(&s, name, &request, &expect).await;
        expects.push((name, expect));
    }
    let r = check(
        &s,
        "unreachable upstream",
        &body("dead", false),
        &fails(
            502,
            "api_connection_error",
            "connection_error",
            "could not reach openai",
        ),
    )
    .await;
    assert!(r.is_some());
    expects.push((
        "unreachable upstream",
        fails(502, "api_connection_error", "connection_error", ""),
    ));
    // Still serving.
    check(
        &s,
        "after the faults",
        &body("gpt", false),
        &Expect {
            status: 200,
            openai_type: None,
            class: None,
            message: "",
            attempts: 1,
        },
    )
    .await;
    expects.push((
        "after the faults",
        Expect {
            status: 200,
            openai_type: None,
            class: None,
            message: "",
            attempts: 1,
        },
    ));

    assert_ended_cleanly(s, baseline, &expects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_faults_end_the_stream_with_an_error_event_and_every_span_once() {
    let s = setup().await;
    let baseline = warm_up(&s).await;
    let two = || vec![chunk("one ", None), chunk("two ", None)];
    let with = |mut pieces: Vec<Bytes>, more: &[&[u8]]| {
        pieces.extend(more.iter().map(|m| Bytes::copy_from_slice(m)));
        pieces
    };
    let ok = Expect {
        status: 200,
        openai_type: None,
        class: None,
        message: "",
        attempts: 1,
    };
    let cases: Vec<(&str, Reply, Expect)> = vec![
        (
            "reset before the headers",
            Reply::Reset,
            fails(502, "api_connection_error", "connection_error", "the connection to openai at 127.0.0.1 broke"),
        ),
        (
            "never answers",
            Reply::Stall,
            fails(504, "timeout_error", "timeout", "did not answer within"),
        ),
        (
            "cut mid-stream",
            sse(two()).paced(Duration::from_millis(5), StreamEnd::Abort),
            fails(200, "api_connection_error", "connection_error", "stream broke"),
        ),
        (
            "silent mid-stream",
            sse(two()).paced(Duration::from_millis(5), StreamEnd::Hang),
            fails(200, "timeout_error", "timeout", "sent nothing"),
        ),
        (
            "garbage lines and no end",
            sse(with(two(), &[b"hello world\n\n", b"::::\n\n", b"event\n\n"])),
            fails(200, "api_error", "invalid_response", "closed the stream before it finished"),
        ),
        (
            "invalid JSON in data",
            sse(with(two(), &[b"data: {\"id\": oops}\n\n"])),
            fails(200, "api_error", "invalid_response", "openai"),
        ),
        (
            "a chunk of the wrong shape",
            sse(with(two(), &[b"data: {\"choices\": 7}\n\n"])),
            fails(200, "api_error", "invalid_response", "openai"),
        ),
        (
            "invalid UTF-8",
            sse(with(two(), &[b"data: {\"x\": \"\xff\xfe\"}\n\n"])),
            fails(200, "api_error", "invalid_response", "UTF-8"),
        ),
        (
            "an error event mid-stream",
            sse(with(
                two(),
                &[b"data: {\"error\": {\"message\": \"overloaded\", \"type\": \"server_error\"}}\n\n"],
            )),
            fails(200, "api_error", "upstream_error", "overloaded"),
        ),
        (
            "no [DONE] after the finish chunk",
            sse(with(two(), &[&chunk("", Some("stop"))])),
            Expect { ..ok },
        ),
        (
            "half an event, then the end",
            sse(with(two(), &[b"data: {\"id\":\"c1\",\"obj"])),
            fails(200, "api_error", "invalid_response", "openai"),
        ),
        (
            "a 500 before the stream",
            Reply::json(500, r#"{"error":{"message":"boom","type":"server_error"}}"#),
            fails(500, "api_error", "upstream_error", "boom"),
        ),
        // Before the first chunk nothing has been sent: the answer is a JSON error with the
        // failure's own status, as LiteLLM's proxy answers.
        (
            "cut before the first chunk",
            sse(Vec::new()).paced(Duration::from_millis(5), StreamEnd::Abort),
            fails(502, "api_connection_error", "connection_error", "stream broke"),
        ),
        (
            "silent before the first chunk",
            sse(Vec::new()).paced(Duration::from_millis(5), StreamEnd::Hang),
            fails(504, "timeout_error", "timeout", "sent nothing"),
        ),
        (
            "an error event before any chunk",
            sse(vec![Bytes::from_static(
                b"data: {\"error\": {\"message\": \"overloaded\", \"type\": \"server_error\"}}\n\n",
            )]),
            fails(500, "api_error", "upstream_error", "overloaded"),
        ),
    ];
    let mut expects = Vec::new();
    for (name, reply, expect) in cases {
        s.up.push(reply);
        check(&s, name, &body("gpt", true), &expect).await;
        expects.push((name, expect));
    }
    check(&s, "after the faults", &body("gpt", true), &ok).await;
    expects.push(("after the faults", Expect { ..ok }));

    assert_ended_cleanly(s, baseline, &expects).await;
}
