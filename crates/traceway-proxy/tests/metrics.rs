//! Metrics (TELEMETRY.md §7): `/metrics` scraped and parsed, and OTLP metrics decoded by the
//! receiver, with the GenAI client histograms and their recommended buckets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use traceway_proxy::app::App;
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::otlp::OtlpReceiver;
use traceway_testkit::tls_front::{self, FrontOptions, TlsFront};

/// `name{labels} value` lines of a Prometheus text body, comments left out.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn sample(all: &[(String, f64)], prefix: &str, contains: &[&str]) -> f64 {
    all.iter()
        .filter(|(n, _)| n.starts_with(prefix) && contains.iter().all(|c| n.contains(c)))
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_otlp_metrics_report_every_call() {
    let rx = OtlpReceiver::start().await;
    let vars: HashMap<String, String> = [
        ("OTEL_EXPORTER".to_owned(), "otlp_http".to_owned()),
        ("OTEL_ENDPOINT".to_owned(), rx.http_endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL".to_owned(), "100".to_owned()),
    ]
    .into_iter()
    .collect();
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/echo\n  - model_name: broken\n    litellm_params:\n      model: mock/x\n      mock_response: error:500\nlitellm_settings:\n  callbacks: [\"otel\", \"prometheus\"]\ngeneral_settings:\n  ui: false\n";
    let config = ProxyConfig::parse(cfg, "metrics.yaml", Arc::new(vars)).unwrap();
    assert!(
        config.warnings.iter().all(|w| !w.contains("prometheus")),
        "{:?}",
        config.warnings
    );
    traceway::client::install_crypto_provider();
    let p = App::build(config, false)
        .unwrap()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "one two three four five"}]});
    for _ in 0..3 {
        assert_eq!(
            http()
                .post(format!("{}/v1/chat/completions", p.url()))
                .json(&chat("m", false))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let streamed = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&chat("m", true))
        .send()
        .await
        .unwrap();
    streamed.text().await.unwrap();
    assert_eq!(
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&chat("broken", false))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );

    let resp = http()
        .get(format!("{}/metrics", p.url()))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    let all = samples(&text);
    assert_eq!(
        sample(
            &all,
            "gen_ai_client_operation_duration_seconds_count",
            &["gen_ai_request_model=\"echo\""]
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &all,
            "gen_ai_client_operation_duration_seconds_count",
            &["error_type=\"upstream_error\""]
        ),
        1.0
    );
    assert!(text.contains("le=\"81.92\""), "semconv duration buckets");
    assert!(text.contains("le=\"67108864.0\""), "semconv token buckets");
    assert_eq!(
        sample(
            &all,
            "gen_ai_client_token_usage_count",
            &["gen_ai_token_type=\"input\""]
        ),
        4.0
    );
    assert!(
        sample(
            &all,
            "gen_ai_client_token_usage_sum",
            &["gen_ai_token_type=\"output\""]
        ) > 0.0
    );
    assert_eq!(
        sample(
            &all,
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &[]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &all,
            "traceway_proxy_requests_total",
            &["status=\"200\"", "model_group=\"m\""]
        ),
        4.0
    );
    assert_eq!(
        sample(&all, "traceway_proxy_requests_total", &["status=\"500\""]),
        1.0
    );
    assert!(
        all.iter()
            .any(|(n, _)| n == "traceway_otel_spans_dropped_total")
    );
    assert!(all.iter().any(|(n, _)| n == "traceway_otel_queue_depth"));
    assert!(
        !text.contains("127.0.0.1") && !text.contains("one two"),
        "no addresses or prompts in labels"
    );

    p.shutdown().await;
    let points = rx.histogram_points();
    let durations: Vec<_> = points
        .iter()
        .filter(|p| p.name == "gen_ai.client.operation.duration")
        .collect();
    assert!(!durations.is_empty(), "OTLP metrics arrive: {points:?}");
    assert_eq!(durations[0].unit, "s");
    assert_eq!(durations[0].bounds.last(), Some(&81.92));
    let total: u64 = durations
        .iter()
        .filter(|p| p.attributes.get("gen_ai.request.model").map(String::as_str) == Some("echo"))
        .map(|p| p.count)
        .max()
        .unwrap_or(0);
    assert_eq!(total, 4);
    let tokens = points
        .iter()
        .find(|p| p.name == "gen_ai.client.token.usage")
        .unwrap();
    assert_eq!(tokens.unit, "{token}");
    assert_eq!(tokens.bounds.first(), Some(&1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_also_travel_over_grpc() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.grpc_endpoint();
    one_call_reports_metrics(
        &rx,
        &[("OTEL_EXPORTER", "otlp_grpc"), ("OTEL_ENDPOINT", &endpoint)],
    )
    .await;
}

/// Metrics follow the spans to a collector behind a private CA that asks for a client
/// certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_reach_a_mutual_tls_collector() {
    let file = |name: &str| tls_front::material(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    for protocol in ["http/protobuf", "grpc"] {
        let rx = OtlpReceiver::start().await;
        let grpc = protocol == "grpc";
        let options = FrontOptions {
            alpn: if grpc {
                vec![b"h2".to_vec()]
            } else {
                Vec::new()
            },
            require_client_cert: true,
        };
        let backend = if grpc { rx.grpc_addr() } else { rx.http_addr() };
        let front = TlsFront::start(backend, options).await;
        let endpoint = front.url();
        one_call_reports_metrics(
            &rx,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
            ],
        )
        .await;
        assert_eq!(front.refused(), 0, "{protocol}");
    }
}

/// One chat call through a proxy exporting with `vars`: its duration and token histograms and
/// its two spans reach `rx`.
async fn one_call_reports_metrics(rx: &OtlpReceiver, vars: &[(&str, &str)]) {
    let mut vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.insert("OTEL_METRIC_EXPORT_INTERVAL".to_owned(), "100".to_owned());
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/echo\nlitellm_settings:\n  callbacks: [\"otel\"]\ngeneral_settings:\n  ui: false\n";
    traceway::client::install_crypto_provider();
    let p = App::build(
        ProxyConfig::parse(cfg, "metrics.yaml", Arc::new(vars)).unwrap(),
        false,
    )
    .unwrap()
    .spawn("127.0.0.1:0")
    .await
    .unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    p.shutdown().await;
    let points = rx.histogram_points();
    assert!(
        points
            .iter()
            .any(|p| p.name == "gen_ai.client.operation.duration" && p.count == 1),
        "{points:?}"
    );
    assert!(points.iter().any(|p| p.name == "gen_ai.client.token.usage"));
    assert_eq!(rx.spans().len(), 2, "spans went the same way");
}
