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
