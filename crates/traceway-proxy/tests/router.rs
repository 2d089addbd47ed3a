//! End-to-end: retries, fallbacks, timeouts and cooldowns through the proxy, against testkit
//! upstreams that fail on cue — with one CLIENT span per attempt, in order, none leaked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, sse_events};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::openai_upstream::{self, OpenAiUpstream, Reply, StreamEnd};
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan, Status};
use traceway_testkit::span_tree::SpanTree;

async fn traced(config: &str, rx: &OtlpReceiver) -> RunningProxy {
    let vars: HashMap<String, String> = [
        ("OTEL_EXPORTER".to_owned(), "otlp_http".to_owned()),
        ("OTEL_ENDPOINT".to_owned(), rx.http_endpoint()),
    ]
    .into_iter()
    .collect();
    traceway::client::install_crypto_provider();
    let cfg = ProxyConfig::parse(
        &format!("{config}\nlitellm_settings:\n  callbacks: [\"otel\"]\n"),
        "router.yaml",
        Arc::new(vars),
    )
    .unwrap();
    App::build(cfg, false)
        .unwrap()
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

fn entry(name: &str, api_base: &str, extra: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/m-{name}\n      api_base: {api_base}\n      api_key: sk-x\n{extra}"
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(p: &RunningProxy, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_owned()
}

/// The attempts under the single request, in start order.
async fn attempts(p: RunningProxy, rx: &OtlpReceiver) -> (ReceivedSpan, Vec<ReceivedSpan>) {
    p.shutdown().await;
    assert!(
        rx.duplicate_key_errors().is_empty(),
        "{:?}",
        rx.duplicate_key_errors()
    );
    let tree = SpanTree::build(&rx.spans()).unwrap();
    let roots = tree.roots();
    assert_eq!(roots.len(), 1, "{}", tree.render());
    let mut children: Vec<ReceivedSpan> = tree
        .children_of(roots[0])
        .into_iter()
        .filter(|c| c.name == "raw_gen_ai_request")
        .cloned()
        .collect();
    children.sort_by_key(|c| c.start_unix_nanos);
    (roots[0].clone(), children)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_one_span_per_attempt() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}router_settings:\n  num_retries: 2\n  retry_after: 0.01\n",
        entry("a", &up.api_base(), "")
    );
    let p = traced(&cfg, &rx).await;
    up.push(Reply::error(500, openai_upstream::ERROR_500));
    up.push(Reply::Json {
        status: 429,
        body: openai_upstream::ERROR_429.into(),
        headers: vec![("retry-after".into(), "0.2".into())],
    });
    let started = Instant::now();
    let r = post(&p, &chat("a")).await;
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the upstream's retry-after is honoured"
    );
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "2");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "0");
    assert_eq!(up.requests().len(), 3);
    let (root, tries) = attempts(p, &rx).await;
    assert_eq!(root.status, Status::Unset);
    assert_eq!(root.attr_i64("litellm.attempted_retries"), Some(2));
    let numbers: Vec<i64> = tries
        .iter()
        .map(|t| t.attr_i64("litellm.attempt").unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let classes: Vec<Option<&str>> = tries.iter().map(|t| t.attr_str("error.type")).collect();
    assert_eq!(
        classes,
        [Some("upstream_error"), Some("rate_limited"), None]
    );
    assert!(matches!(tries[0].status, Status::Error { .. }) && tries[2].status == Status::Unset);
    assert_eq!(
        root.attr_str("litellm.model_id"),
        tries[2].attr_str("litellm.model_id"),
        "the request span names the deployment that answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_never_retried_nor_falls_back() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let up_b = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 3\n  retry_after: 0.01\n  fallbacks: [{{\"a\": [\"b\"]}}]\n",
        entry("a", &up.api_base(), ""),
        entry("b", &up_b.api_base(), "")
    );
    let p = traced(&cfg, &rx).await;
    up.push(Reply::error(400, openai_upstream::ERROR_400));
    let r = post(&p, &chat("a")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(up.requests().len(), 1);
    assert!(up_b.requests().is_empty());
    let (_, tries) = attempts(p, &rx).await;
    assert_eq!(tries.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_group_falls_back_and_says_so() {
    let rx = OtlpReceiver::start().await;
    let up_a = OpenAiUpstream::start().await;
    let up_b = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 1\n  retry_after: 0.01\n  fallbacks: [{{\"a\": [\"b\"]}}]\n",
        entry("a", &up_a.api_base(), ""),
        entry("b", &up_b.api_base(), "")
    );
    let p = traced(&cfg, &rx).await;
    up_a.push(Reply::error(503, openai_upstream::ERROR_500));
    up_a.push(Reply::error(503, openai_upstream::ERROR_500));
    let r = post(&p, &chat("a")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    assert_eq!(header(&r, "x-litellm-model-group"), "b");
    assert_eq!(up_b.last_request().body["model"], "m-b");
    let (root, tries) = attempts(p, &rx).await;
    let shape: Vec<(Option<&str>, Option<i64>, Option<&str>)> = tries
        .iter()
        .map(|t| {
            (
                t.attr_str("litellm.model_group"),
                t.attr_i64("litellm.fallback_depth"),
                t.attr_str("error.type"),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (Some("a"), Some(0), Some("upstream_error")),
            (Some("a"), Some(0), Some("upstream_error")),
            (Some("b"), Some(1), None)
        ]
    );
    assert_eq!(root.attr_i64("litellm.attempted_fallbacks"), Some(1));
    assert_eq!(
        root.attr_str("litellm.model_group"),
        Some("a"),
        "the group the client asked for"
    );
    assert_eq!(
        root.attr_str("gen_ai.request.model"),
        Some("m-b"),
        "the model that answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_window_content_policy_default_and_per_request_fallbacks() {
    let rx = OtlpReceiver::start().await;
    let cfg = "model_list:
  - model_name: small
    litellm_params: {model: mock/small, mock_response: litellm.ContextWindowExceededError}
  - model_name: strict
    litellm_params: {model: mock/strict, mock_response: litellm.ContentPolicyViolationError}
  - model_name: picky
    litellm_params: {model: mock/picky, mock_response: litellm.BadRequestError}
  - model_name: flaky
    litellm_params: {model: mock/flaky, mock_response: litellm.InternalServerError}
  - model_name: big
    litellm_params: {model: mock/big, mock_response: from big}
  - model_name: lenient
    litellm_params: {model: mock/lenient, mock_response: from lenient}
  - model_name: spare
    litellm_params: {model: mock/spare, mock_response: from spare}
router_settings:
  context_window_fallbacks: [{small: [big]}]
  content_policy_fallbacks: [{strict: [lenient]}]
  fallbacks: [{picky: [big]}]
  default_fallbacks: [spare]
";
    let p = traced(cfg, &rx).await;
    for (model, expect) in [
        ("small", "from big"),
        ("strict", "from lenient"),
        ("flaky", "from spare"),
    ] {
        let r = post(&p, &chat(model)).await;
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], expect, "{model}");
    }
    assert_eq!(
        post(&p, &chat("picky")).await.status(),
        400,
        "a plain bad request does not fall back"
    );
    let mut body = chat("big");
    body["mock_testing_fallbacks"] = json!(true);
    body["fallbacks"] = json!(["lenient"]);
    let r = post(&p, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "lenient");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_cancelled_upstream_and_retried() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}router_settings:\n  num_retries: 1\n  retry_after: 0.01\n",
        entry(
            "a",
            &up.api_base(),
            "      timeout: 0.3\n      stream_timeout: 0.3\n"
        )
    );
    let p = traced(&cfg, &rx).await;
    up.push(Reply::Delay(
        Duration::from_secs(5),
        Box::new(Reply::Fixture),
    ));
    let r = post(&p, &chat("a")).await;
    assert_eq!(r.status(), 200);
    for _ in 0..50 {
        if up.requests_cancelled() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        up.requests_cancelled(),
        1,
        "the timed-out attempt's connection was closed"
    );
    up.push(Reply::Delay(
        Duration::from_secs(5),
        Box::new(Reply::Fixture),
    ));
    up.push(Reply::Delay(
        Duration::from_secs(5),
        Box::new(Reply::Fixture),
    ));
    let mut body = chat("a");
    body["stream"] = json!(true);
    let r = post(&p, &body).await;
    assert_eq!(r.status(), 504, "stream_timeout applies to the first byte");
    p.shutdown().await;
    let tree = SpanTree::build(&rx.spans()).unwrap();
    let timeouts = tree
        .spans()
        .iter()
        .filter(|s| s.attr_str("error.type") == Some("timeout") && s.name == "raw_gen_ai_request")
        .count();
    assert_eq!(timeouts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_retry_before_the_first_chunk_but_never_after() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}router_settings:\n  num_retries: 2\n  retry_after: 0.01\n",
        entry("a", &up.api_base(), "")
    );
    let p = traced(&cfg, &rx).await;
    let mut body = chat("a");
    body["stream"] = json!(true);
    up.push(Reply::error(500, openai_upstream::ERROR_500));
    let r = post(&p, &body).await;
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");

    // A 200 whose stream is cut, or opens with an error event, before its first chunk: nothing
    // reached the client yet, so the attempt failed and the next one answers.
    for first in [
        Reply::Sse {
            events: vec![],
            gap: Duration::ZERO,
            end: StreamEnd::Abort,
        },
        Reply::Sse {
            events: vec![r#"{"error":{"message":"overloaded","type":"server_error"}}"#.into()],
            gap: Duration::ZERO,
            end: StreamEnd::Complete,
        },
    ] {
        let before = up.requests().len();
        up.push(first);
        let r = post(&p, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
        let events = sse_events(&r.text().await.unwrap());
        assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
        assert!(
            !events.iter().any(|e| e.contains("\"error\"")),
            "{events:?}"
        );
        assert_eq!(up.requests().len(), before + 2);
    }

    let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}"#;
    // Paced, so that the first chunk is out before the cut (the answer waits for it).
    up.push(Reply::Sse {
        events: vec![chunk.into(), chunk.into()],
        gap: Duration::from_millis(20),
        end: StreamEnd::Abort,
    });
    let before = up.requests().len();
    let r = post(&p, &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    assert!(events[0].contains("\"par\""), "{events:?}");
    assert!(events.last().unwrap().contains("\"error\""), "{events:?}");
    assert_eq!(
        up.requests().len(),
        before + 1,
        "a stream that already sent bytes is not retried"
    );
    p.shutdown().await;
    // One CLIENT span per upstream request, each ended once; the failed ones (the 500, the two
    // streams that failed before their first chunk, the one cut after it) marked as errors.
    let tree = SpanTree::build(&rx.spans()).unwrap();
    let tries: Vec<&ReceivedSpan> = tree
        .spans()
        .iter()
        .filter(|s| s.name == "raw_gen_ai_request")
        .collect();
    assert_eq!(tries.len(), up.requests().len(), "{}", tree.render());
    let failed = tries
        .iter()
        .filter(|s| matches!(s.status, Status::Error { .. }))
        .count();
    assert_eq!(failed, 4, "{}", tree.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_deployments_all_cool_down_says_so_without_calling_them() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n{}router_settings:\n  allowed_fails: 1\n  cooldown_time: 60\n",
        entry("a", &up.api_base(), "")
    );
    let p = traced(&cfg, &rx).await;
    for _ in 0..2 {
        up.push(Reply::error(500, openai_upstream::ERROR_500));
        assert_eq!(post(&p, &chat("a")).await.status(), 500);
    }
    let r = post(&p, &chat("a")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cooling down"),
        "{body}"
    );
    assert_eq!(up.requests().len(), 2, "a cooling deployment is not called");
    p.shutdown().await;
}
