//! The web UI's HTTP side: the page and its assets, who may call its JSON APIs, and what those
//! answer after real calls through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, proxy};
use serde_json::{Value, json};
use std::time::Duration;
use traceway_testkit::otlp::OtlpReceiver;

const MASTER: &str = "sk-ui-master";
const MOCK: &str = "model_list:\n  - model_name: mock\n    litellm_params:\n      model: mock/echo\n  - model_name: local\n    litellm_params:\n      model: openai/llama\n      api_base: http://user:pw@127.0.0.1:9/v1?api-key=sk-secret-in-query\n      api_key: sk-provider-secret\n";

/// The page's trace buffer, asked for: without it (and without a tracing callback) the proxy
/// records no spans at all.
const UI_TRACES: &[(&str, &str)] = &[("TRACEWAY_UI_TRACES", "200")];

fn with_master(extra: &str) -> String {
    format!("{MOCK}general_settings:\n  master_key: {MASTER}\n{extra}")
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn chat(base: &str, key: Option<&str>, body: Value) -> u16 {
    let mut req = http()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().status().as_u16()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello from the UI test"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let p = proxy(&with_master(""), UI_TRACES).await;
    for path in ["/ui", "/ui/"] {
        let resp = http()
            .get(format!("{}{path}", p.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{path} needs no key: the page asks for one"
        );
        let h = resp.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = resp.text().await.unwrap();
        assert!(body.contains("/ui/assets/app.js"));
        assert!(!body.contains("<script>"), "no inline script");
    }
    for (asset, kind) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let resp = http()
            .get(format!("{}/ui/assets/{asset}", p.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let (status, body) = get(&format!("{}/ui/assets/nope.js", p.url()), None).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_apis_need_the_master_key_or_an_admin_key() {
    let p = proxy(&with_master(""), UI_TRACES).await;
    let base = p.url();
    for path in [
        "/ui/api/info",
        "/ui/api/traces",
        "/ui/api/models",
        "/ui/api/traces/4bf92f3577b34da6a3ce929d0e0e4736",
    ] {
        for key in [None, Some("sk-wrong")] {
            let (status, body) = get(&format!("{base}{path}"), key).await;
            assert_eq!(status, 401, "{path} with {key:?}");
            assert_eq!(body["error"]["type"], "authentication_error", "{body}");
        }
    }
    let (status, info) = get(&format!("{base}/ui/api/info"), Some(MASTER)).await;
    assert_eq!(status, 200);
    assert_eq!(info["access"], "master_key");
    assert_eq!(info["traces"]["enabled"], true);
    assert_eq!(info["traces"]["capacity"], 200);
    assert_eq!(
        info["traces"]["exporter"], "none",
        "no otel callback: the page is the only destination"
    );
    let resp = http()
        .get(format!("{base}/ui/api/info"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // A proxy_admin user's key may use the page; an ordinary key may not.
    let admin: Value = http()
        .post(format!("{base}/user/new"))
        .bearer_auth(MASTER)
        .json(&json!({"user_id": "ops", "user_role": "proxy_admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_key = admin["key"].as_str().expect("an admin key").to_owned();
    let (status, info) = get(&format!("{base}/ui/api/info"), Some(&admin_key)).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["access"], "admin_key");
    let plain: Value = http()
        .post(format!("{base}/key/generate"))
        .bearer_auth(MASTER)
        .json(&json!({"key_alias": "plain"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, body) = get(&format!("{base}/ui/api/traces"), plain["key"].as_str()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy_admin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_key_the_page_is_open_like_every_route() {
    let p = proxy(MOCK, &[]).await;
    let (status, info) = get(&format!("{}/ui/api/info", p.url()), None).await;
    assert_eq!(status, 200);
    assert_eq!(info["access"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_shows_up_in_the_list_and_its_span_tree_in_the_detail() {
    let p = proxy(&with_master(""), UI_TRACES).await;
    let base = p.url();
    let (_, empty) = get(&format!("{base}/ui/api/traces"), Some(MASTER)).await;
    assert_eq!(empty["traces"], json!([]));
    assert_eq!(chat(&base, Some(MASTER), hello("mock")).await, 200);

    let (status, list) = get(&format!("{base}/ui/api/traces"), Some(MASTER)).await;
    assert_eq!(status, 200);
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{list}");
    let t = &traces[0];
    assert_eq!(t["model_group"], "mock");
    assert_eq!(t["provider"], "mock");
    assert_eq!(t["status"], "ok");
    assert_eq!(t["http_status"], 200);
    assert_eq!(t["operation"], "chat");
    assert!(t["total_tokens"].as_i64().unwrap() > 0);
    assert!(t["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(t["start_ms"].as_f64().unwrap() > 1.6e12);
    assert_eq!(t["attempts"], 1);
    assert_eq!(t["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(list["capacity"], 200);
    assert_eq!(list["facets"]["models"], json!(["mock"]));
    // Key alias and team are there, null for the master key.
    assert!(t.get("key_alias").is_some() && t.get("team").is_some());

    let id = t["trace_id"].as_str().unwrap();
    let (status, detail) = get(&format!("{base}/ui/api/traces/{id}"), Some(MASTER)).await;
    assert_eq!(status, 200);
    let spans = detail["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Received Proxy Server Request", "raw_gen_ai_request"]
    );
    assert_eq!(spans[0]["kind"], "server");
    assert_eq!(spans[0]["parent_span_id"], Value::Null);
    assert_eq!(spans[1]["kind"], "client");
    assert_eq!(spans[1]["parent_span_id"], spans[0]["span_id"]);
    assert!(spans[0]["end_ms"].as_f64().unwrap() >= spans[0]["start_ms"].as_f64().unwrap());
    let attr = |span: &Value, key: &str| -> Value {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        attr(&spans[0], "gen_ai.prompt.0.content"),
        "Hello from the UI test"
    );
    assert_eq!(attr(&spans[0], "gen_ai.completion.0.role"), "assistant");
    assert_eq!(attr(&spans[0], "http.response.status_code"), 200);
    assert!(attr(&spans[0], "metadata.user_api_key_hash").is_string());
    let text = detail.to_string();
    assert!(
        !text.contains(MASTER),
        "the caller's key never reaches the page"
    );

    let (status, missing) = get(
        &format!("{base}/ui/api/traces/{}", "0".repeat(32)),
        Some(MASTER),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last 200 traces")
    );
    let (status, _) = get(&format!("{base}/ui/api/traces/not-hex"), Some(MASTER)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_follows_new_calls() {
    let p = proxy(&with_master(""), UI_TRACES).await;
    let base = p.url();
    assert_eq!(chat(&base, Some(MASTER), hello("mock")).await, 200);
    let mut failing = hello("mock");
    failing["mock_response"] = json!("error:429");
    assert_eq!(chat(&base, Some(MASTER), failing).await, 429);
    let (_, all) = get(&format!("{base}/ui/api/traces"), Some(MASTER)).await;
    assert_eq!(all["traces"].as_array().unwrap().len(), 2);
    let cursor = all["cursor"].as_u64().unwrap();

    let (_, errors) = get(&format!("{base}/ui/api/traces?status=error"), Some(MASTER)).await;
    let errors = errors["traces"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["http_status"], 429);
    assert_eq!(errors[0]["error_type"], "rate_limited");
    assert!(errors[0]["error_message"].is_string());
    let (_, ok) = get(
        &format!("{base}/ui/api/traces?status=ok&model=mock"),
        Some(MASTER),
    )
    .await;
    assert_eq!(ok["traces"].as_array().unwrap().len(), 1);
    let (_, none) = get(&format!("{base}/ui/api/traces?model=other"), Some(MASTER)).await;
    assert_eq!(none["traces"], json!([]));
    let (_, none) = get(
        &format!("{base}/ui/api/traces?key_alias=nobody&team=nobody"),
        Some(MASTER),
    )
    .await;
    assert_eq!(none["traces"], json!([]));

    let (_, since) = get(
        &format!("{base}/ui/api/traces?since={cursor}"),
        Some(MASTER),
    )
    .await;
    assert_eq!(since["traces"], json!([]), "nothing new yet");
    assert_eq!(chat(&base, Some(MASTER), hello("mock")).await, 200);
    let (_, since) = get(
        &format!("{base}/ui/api/traces?since={cursor}"),
        Some(MASTER),
    )
    .await;
    assert_eq!(
        since["traces"].as_array().unwrap().len(),
        1,
        "only the new call"
    );
    assert!(since["cursor"].as_u64().unwrap() > cursor);

    let (status, bad) = get(&format!("{base}/ui/api/traces?status=broken"), Some(MASTER)).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["param"], "status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_view_lists_deployments_without_secrets_and_with_recent_health() {
    let p = proxy(&with_master(""), UI_TRACES).await;
    let base = p.url();
    assert_eq!(chat(&base, Some(MASTER), hello("mock")).await, 200);
    let resp = http()
        .get(format!("{base}/ui/api/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    for secret in [
        "sk-provider-secret",
        "sk-secret-in-query",
        "user:pw",
        MASTER,
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let models = body["models"].as_array().unwrap();
    let by_group = |g: &str| {
        models
            .iter()
            .find(|m| m["model_group"] == g)
            .unwrap()
            .clone()
    };
    let local = by_group("local");
    assert_eq!(local["provider"], "openai");
    assert_eq!(local["api_base"], "http://127.0.0.1:9/v1");
    assert_eq!(local["health"], Value::Null, "no calls yet");
    let mock = by_group("mock");
    assert_eq!(mock["provider"], "mock");
    assert_eq!(mock["health"]["calls"], 1);
    assert_eq!(mock["health"]["errors"], 0);
    assert_eq!(mock["health"]["last_failed"], false);
    assert!(mock["health"]["p50_latency_ms"].is_number());
    assert!(mock["deployment_id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_false_removes_the_page_and_all_span_work() {
    let p = proxy(&with_master("  ui: false\n"), &[]).await;
    assert!(p.app.telemetry.is_none(), "no span work at all");
    assert!(p.app.state.ui_traces.is_none());
    for path in ["/ui", "/ui/api/info"] {
        let (status, body) = get(&format!("{}{path}", p.url()), Some(MASTER)).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no route")
        );
    }
    // LiteLLM's switch does the same.
    let p = proxy(&with_master(""), &[("DISABLE_ADMIN_UI", "True")]).await;
    assert!(p.app.telemetry.is_none());
    let (status, _) = get(&format!("{}/ui", p.url()), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_of_zero_keeps_the_page_and_records_nothing() {
    let p = proxy(&with_master("  ui_trace_buffer_size: 0\n"), &[]).await;
    assert!(
        p.app.telemetry.is_none(),
        "no buffer and no callback: no span work"
    );
    assert_eq!(chat(&p.url(), Some(MASTER), hello("mock")).await, 200);
    let (_, info) = get(&format!("{}/ui/api/info", p.url()), Some(MASTER)).await;
    assert_eq!(info["traces"]["enabled"], false);
    assert!(
        info["traces"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("ui_trace_buffer_size")
    );
    let (status, list) = get(&format!("{}/ui/api/traces", p.url()), Some(MASTER)).await;
    assert_eq!(status, 200);
    assert_eq!(list["traces"], json!([]));
    let p = proxy(&with_master(""), &[("TRACEWAY_UI_TRACES", "2")]).await;
    for _ in 0..3 {
        chat(&p.url(), Some(MASTER), hello("mock")).await;
    }
    let (_, list) = get(&format!("{}/ui/api/traces", p.url()), Some(MASTER)).await;
    assert_eq!(list["capacity"], 2);
    assert_eq!(list["traces"].as_array().unwrap().len(), 2);
    assert_eq!(list["evicted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_is_one_more_destination_beside_the_exporter() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.http_endpoint();
    let vars = [
        ("OTEL_EXPORTER", "otlp_http"),
        ("OTEL_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];

    // Callback on: spans go to the collector and to the page.
    let p = proxy(
        &with_master("litellm_settings:\n  callbacks: [\"otel\"]\n"),
        &vars,
    )
    .await;
    assert_eq!(chat(&p.url(), Some(MASTER), hello("mock")).await, 200);
    let (_, list) = get(&format!("{}/ui/api/traces", p.url()), Some(MASTER)).await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 1);
    let (_, info) = get(&format!("{}/ui/api/info", p.url()), Some(MASTER)).await;
    assert_eq!(info["traces"]["exporter"], "otlp_http (http/protobuf)");
    let id = list["traces"][0]["trace_id"].as_str().unwrap().to_owned();
    p.shutdown().await;
    let exported = rx.spans();
    assert_eq!(exported.len(), 2);
    assert!(
        exported.iter().all(|s| s.trace_id == id),
        "the same trace in both places"
    );

    // Callback off: the page still sees the call, the collector gets nothing.
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.http_endpoint();
    let vars = [
        ("OTEL_EXPORTER", "otlp_http"),
        ("OTEL_ENDPOINT", endpoint.as_str()),
        ("TRACEWAY_UI_TRACES", "200"),
    ];
    let p = proxy(&with_master(""), &vars).await;
    assert_eq!(chat(&p.url(), Some(MASTER), hello("mock")).await, 200);
    let (_, list) = get(&format!("{}/ui/api/traces", p.url()), Some(MASTER)).await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 1);
    p.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.spans().is_empty() && rx.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_the_page_keeps_no_traces_unless_asked() {
    let p = proxy(&with_master(""), &[]).await;
    assert!(
        p.app.telemetry.is_none(),
        "no callback and no buffer asked for: no span work at all"
    );
    assert!(p.app.state.ui_traces.is_none());
    assert_eq!(chat(&p.url(), Some(MASTER), hello("mock")).await, 200);
    let (_, info) = get(&format!("{}/ui/api/info", p.url()), Some(MASTER)).await;
    assert_eq!(info["traces"]["enabled"], false);
    let reason = info["traces"]["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("tracing is off"), "{reason}");
    assert!(reason.contains("TRACEWAY_UI_TRACES"), "{reason}");
    let (status, list) = get(&format!("{}/ui/api/traces", p.url()), Some(MASTER)).await;
    assert_eq!(status, 200);
    assert_eq!(list["traces"], json!([]));
}
