//! Shared set-up of the end-to-end tests: a proxy on a free port built from config text.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;

/// Starts a proxy from YAML `config` with `vars` as its whole environment.
pub async fn proxy(config: &str, vars: &[(&str, &str)]) -> RunningProxy {
    traceway::client::install_crypto_provider();
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = ProxyConfig::parse(config, "test.yaml", Arc::new(env)).expect("test config is valid");
    App::build(cfg, false)
        .expect("proxy builds")
        .spawn("127.0.0.1:0")
        .await
        .expect("proxy binds")
}

/// An HTTP client for calling the proxy.
pub fn http() -> reqwest::Client {
    traceway::client::install_crypto_provider();
    reqwest::Client::new()
}

/// A config with one OpenAI deployment `gpt` at `api_base`, plus extra YAML appended.
pub fn openai_config(api_base: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {api_base}\n      api_key: sk-provider-secret\n{extra}"
    )
}

/// The `data:` payloads of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The YAML that turns on the `otel` callback.
pub const OTEL_SETTINGS: &str = "litellm_settings:\n  callbacks: [\"otel\"]\n";

/// A config with one deployment `model_name` of `model` at `api_base`, optional key, and extra
/// `litellm_params` lines (each `key: value`), plus `tail` YAML appended.
pub fn provider_config(
    model_name: &str,
    model: &str,
    api_base: &str,
    api_key: Option<&str>,
    params: &[&str],
    tail: &str,
) -> String {
    let mut s = format!(
        "model_list:\n  - model_name: {model_name}\n    litellm_params:\n      model: {model}\n      api_base: {api_base}\n"
    );
    if let Some(k) = api_key {
        s.push_str(&format!("      api_key: {k}\n"));
    }
    for p in params {
        s.push_str(&format!("      {p}\n"));
    }
    s.push_str(tail);
    s
}

/// Starts a proxy exporting spans over OTLP/HTTP to `receiver`, with `vars` added to its env.
pub async fn traced_proxy(
    config: &str,
    receiver: &traceway_testkit::otlp::OtlpReceiver,
    vars: &[(&str, &str)],
) -> RunningProxy {
    let endpoint = receiver.http_endpoint();
    let mut all: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER", "otlp_http"),
        ("OTEL_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    all.extend_from_slice(vars);
    proxy(config, &all).await
}

/// Stops the proxy (flushing its spans) and rebuilds their tree, asserting no attribute key is
/// duplicated and none of `secrets` appears in any span name, attribute or event.
pub async fn spans_without(
    p: RunningProxy,
    receiver: &traceway_testkit::otlp::OtlpReceiver,
    secrets: &[&str],
) -> traceway_testkit::span_tree::SpanTree {
    p.shutdown().await;
    let spans = receiver.spans();
    assert!(
        receiver.duplicate_key_errors().is_empty(),
        "duplicate attribute keys: {:?}",
        receiver.duplicate_key_errors()
    );
    for s in &spans {
        let text = format!("{} {:?} {:?}", s.name, s.attributes, s.events);
        for secret in secrets {
            assert!(!text.contains(secret), "secret {secret} in span {}", s.name);
        }
    }
    traceway_testkit::span_tree::SpanTree::build(&spans).unwrap()
}

/// The shape of the tree under `root`, rendered like `SpanTree::render`.
pub fn shape(
    tree: &traceway_testkit::span_tree::SpanTree,
    root: &traceway_testkit::otlp::ReceivedSpan,
) -> String {
    fn walk(
        tree: &traceway_testkit::span_tree::SpanTree,
        s: &traceway_testkit::otlp::ReceivedSpan,
        depth: usize,
        lines: &mut Vec<String>,
    ) {
        lines.push(format!(
            "{}{} [{}]",
            "  ".repeat(depth),
            s.name,
            s.kind.as_str()
        ));
        for c in tree.children_of(s) {
            walk(tree, c, depth + 1, lines);
        }
    }
    let mut lines = Vec::new();
    walk(tree, root, 0, &mut lines);
    lines.join("\n")
}
