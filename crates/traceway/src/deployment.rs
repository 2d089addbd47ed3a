//! Deployments: one `model_list` entry each, the unit a model group is served by.

use crate::error::{Error, ErrorKind};
use crate::provider::{self, Backend, KNOWN_PROVIDERS};
use crate::router::DeploymentStats;
use crate::types::Extra;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A secret string (a provider key) whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a deployment is described by its user (a `model_list` entry, or a library call).
#[derive(Clone, Default)]
pub struct DeploymentConfig {
    /// The model group (alias) clients ask for.
    pub model_name: String,
    /// `provider/model`, as LiteLLM's `litellm_params.model`.
    pub model: String,
    /// Base URL of the upstream API.
    pub api_base: Option<String>,
    /// Provider key.
    pub api_key: Option<Secret>,
    /// Timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Timeout to the first byte of a streamed attempt.
    pub stream_timeout: Option<Duration>,
    /// Canned answer or error directive (mock provider, or any provider under test).
    pub mock_response: Option<String>,
    /// Other `litellm_params`, put into the upstream request body where the caller did not set them.
    pub params: Extra,
    /// Explicit deployment id (`model_info.id`); derived from the entry when absent.
    pub id: Option<String>,
    /// Share of traffic under simple-shuffle routing.
    pub weight: Option<f64>,
    /// Requests per minute this deployment takes (routing weight and usage-based limit).
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment takes (routing weight and usage-based limit).
    pub tpm: Option<u64>,
    /// Priority: lower orders are tried first.
    pub order: Option<u32>,
    /// Retries of a failed attempt on this deployment's group.
    pub num_retries: Option<u32>,
    /// Price of one input (prompt) token (`input_cost_per_token`), for `gen_ai.cost.total_cost`.
    pub input_cost_per_token: Option<f64>,
    /// Price of one output (completion) token (`output_cost_per_token`).
    pub output_cost_per_token: Option<f64>,
    /// The entry's `model_info` (mode, description, limits …): metadata for listings such as
    /// the proxy's `/model/info`, never sent upstream.
    pub model_info: Extra,
}

/// What a deployment's tokens cost, when its entry says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per input (prompt) token.
    pub input_per_token: f64,
    /// Per output (completion) token.
    pub output_per_token: f64,
}

impl Price {
    /// The price of a configuration's per-token costs; `None` when it names neither.
    pub fn of(input: Option<f64>, output: Option<f64>) -> Option<Price> {
        (input.is_some() || output.is_some()).then(|| Price {
            input_per_token: input.unwrap_or(0.0),
            output_per_token: output.unwrap_or(0.0),
        })
    }

    /// The cost of a call with these token counts.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        input_tokens as f64 * self.input_per_token + output_tokens as f64 * self.output_per_token
    }
}

/// A deployment ready to serve.
#[derive(Clone)]
pub struct Deployment {
    /// Stable id (`x-litellm-model-id`).
    pub id: String,
    /// The model group it serves.
    pub model_group: String,
    /// `provider/model` as configured.
    pub provider_model: String,
    /// The model name sent upstream.
    pub model: String,
    /// Base URL of the upstream API.
    pub api_base: Option<String>,
    /// Provider key.
    pub api_key: Option<Secret>,
    /// Timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Timeout to the first byte of a streamed attempt.
    pub stream_timeout: Option<Duration>,
    /// Canned answer or error directive.
    pub mock_response: Option<String>,
    /// Extra body params.
    pub params: Extra,
    /// The provider that serves it.
    pub backend: Backend,
    /// Share of traffic under simple-shuffle routing.
    pub weight: Option<f64>,
    /// Requests per minute it takes.
    pub rpm: Option<u64>,
    /// Tokens per minute it takes.
    pub tpm: Option<u64>,
    /// Priority: lower orders are tried first.
    pub order: Option<u32>,
    /// Retries of a failed attempt on its group.
    pub num_retries: Option<u32>,
    /// What its tokens cost, when configured.
    pub price: Option<Price>,
    /// Its configuration's `model_info` metadata, never sent upstream.
    pub model_info: Extra,
    /// Health and usage the router keeps.
    pub stats: Arc<DeploymentStats>,
    /// Its span attribute values, built once so that each call only bumps reference counts.
    pub(crate) span_values: Arc<crate::telemetry::SpanValues>,
    /// The last upstream URL built for it (as text), parsed once for as long as it stays the same.
    upstream_url: Arc<OnceLock<(String, UpstreamUrl)>>,
}

/// An upstream URL parsed, with the span attributes it gives.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamUrl {
    /// For the HTTP client behind a proxy (reqwest).
    pub(crate) url: url::Url,
    /// For the direct HTTP client (hyper-util), the same address.
    pub(crate) uri: http::Uri,
    /// `url.full`, `server.address` … for the attempt's CLIENT span.
    pub(crate) span_attributes: Vec<opentelemetry::KeyValue>,
    /// The `Host` header, built once (the HTTP client would `format!` it per request).
    pub(crate) host: Option<http::HeaderValue>,
}

impl UpstreamUrl {
    /// `text` parsed, or why it is not a URL the client can send to.
    fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        let uri = http::Uri::try_from(url.as_str()).map_err(|e| e.to_string())?;
        let host = url.host_str().and_then(|h| {
            let text = match url.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            };
            http::HeaderValue::try_from(text).ok()
        });
        Ok(UpstreamUrl {
            span_attributes: crate::telemetry::url_attributes(&url),
            host,
            uri,
            url,
        })
    }
}

/// Whether a `litellm_params` key holds a secret (`aws_secret_access_key`, `vertex_credentials`
/// …): such values are never printed and never feed the derived deployment id.
pub fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "key", "token", "password", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// Param names only: values may be secrets.
struct ParamNames<'a>(&'a Extra);

impl fmt::Debug for ParamNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl fmt::Debug for DeploymentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentConfig")
            .field("model_name", &self.model_name)
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key)
            .field("params", &ParamNames(&self.params))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("model_group", &self.model_group)
            .field("provider_model", &self.provider_model)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key)
            .field("params", &ParamNames(&self.params))
            .finish_non_exhaustive()
    }
}

/// Splits `provider/model`, rejecting an unknown provider with a message listing the known ones.
pub fn split_provider_model(model: &str) -> Result<(&str, &str), Error> {
    let Some((prefix, rest)) = model.split_once('/') else {
        return Err(Error::bad_request(
            format!(
                "model \"{model}\" has no provider prefix; write it as provider/model (known providers: {})",
                KNOWN_PROVIDERS.join(", ")
            ),
            Some("model"),
        ));
    };
    if provider::backend_for(prefix).is_none() {
        return Err(Error::bad_request(
            format!(
                "unknown provider \"{prefix}\" in \"{model}\" (known providers: {})",
                KNOWN_PROVIDERS.join(", ")
            ),
            Some("model"),
        ));
    }
    if rest.is_empty() {
        return Err(Error::bad_request(
            format!("model \"{model}\" names no model after the provider"),
            Some("model"),
        ));
    }
    Ok((prefix, rest))
}

impl Deployment {
    /// Builds a deployment, checking its provider prefix; a key it leaves out comes from the
    /// process environment.
    pub fn new(config: DeploymentConfig) -> Result<Self, Error> {
        Self::with_env(config, &traceway_otel::env::ProcessEnv)
    }

    /// Builds a deployment, reading a key it leaves out (`OPENAI_API_KEY` …) from `env`.
    pub fn with_env(
        config: DeploymentConfig,
        env: &dyn traceway_otel::env::Env,
    ) -> Result<Self, Error> {
        let (prefix, model) = split_provider_model(&config.model)?;
        let backend = provider::backend_for(prefix)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "provider vanished"))?;
        let id = match config.id {
            Some(id) => id,
            None => derive_id(
                &config.model_name,
                &config.model,
                config.api_base.as_deref(),
                &config.params,
            ),
        };
        // No key, base or setting configured: the provider's env vars, as LiteLLM reads them.
        let api_key = config
            .api_key
            .or_else(|| env.first_set(backend.api_key_env()).map(Secret::new));
        let api_base = config
            .api_base
            .or_else(|| env.first_set(backend.api_base_env()));
        let mut params = config.params;
        for (param, vars) in backend.params_env() {
            if !params.contains_key(*param)
                && let Some(value) = env.first_set(vars)
            {
                params.insert((*param).to_owned(), serde_json::Value::String(value));
            }
        }
        let span_values = Arc::new(crate::telemetry::SpanValues::new(
            &id,
            &config.model_name,
            &config.model,
            model,
        ));
        Ok(Deployment {
            span_values,
            upstream_url: Arc::default(),
            id,
            model_group: config.model_name,
            model: model.to_owned(),
            provider_model: config.model.clone(),
            api_base,
            api_key,
            timeout: config.timeout,
            stream_timeout: config.stream_timeout,
            mock_response: config.mock_response,
            params,
            backend,
            weight: config.weight,
            rpm: config.rpm,
            tpm: config.tpm,
            order: config.order,
            num_retries: config.num_retries,
            price: Price::of(config.input_cost_per_token, config.output_cost_per_token),
            model_info: config.model_info,
            stats: Arc::new(DeploymentStats::default()),
        })
    }

    /// `url` parsed, from the cache when it is the URL this deployment last used (the common
    /// case: most providers' URL depends only on the deployment).
    pub(crate) fn parse_upstream_url(
        &self,
        url: &str,
    ) -> Result<std::borrow::Cow<'_, UpstreamUrl>, String> {
        let cached = match self.upstream_url.get() {
            Some(c) => c,
            None => {
                let parsed = UpstreamUrl::parse(url)?;
                self.upstream_url.get_or_init(|| (url.to_owned(), parsed))
            }
        };
        if cached.0 == url {
            Ok(std::borrow::Cow::Borrowed(&cached.1))
        } else {
            UpstreamUrl::parse(url).map(std::borrow::Cow::Owned)
        }
    }

    /// Provider prefix (`openai`, `mock` …).
    pub fn provider(&self) -> &'static str {
        self.backend.id()
    }

    /// The `gen_ai.provider.name` value (`openai`, `gcp.gemini` …).
    pub fn semconv_provider(&self) -> &'static str {
        self.backend.semconv_name()
    }
}

/// A stable id from the entry's public parts (never its key), as hex SHA-256.
fn derive_id(group: &str, model: &str, api_base: Option<&str>, params: &Extra) -> String {
    let mut h = Sha256::new();
    h.update(group.as_bytes());
    h.update([0]);
    h.update(model.as_bytes());
    h.update([0]);
    h.update(api_base.unwrap_or("").as_bytes());
    h.update([0]);
    let public: Extra = params
        .iter()
        .filter(|(k, _)| !is_secret_param(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    h.update(serde_json::Value::Object(public).to_string().as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_providers_and_bare_names() {
        assert!(
            split_provider_model("opena/gpt-4o")
                .unwrap_err()
                .message
                .contains("unknown provider \"opena\"")
        );
        assert!(
            split_provider_model("gpt-4o")
                .unwrap_err()
                .message
                .contains("no provider prefix")
        );
        assert_eq!(
            split_provider_model("openai/ft:gpt/x").unwrap(),
            ("openai", "ft:gpt/x")
        );
    }

    #[test]
    fn ids_are_stable_and_distinct_and_secrets_stay_hidden() {
        let c = |base: &str| DeploymentConfig {
            model_name: "g".into(),
            model: "openai/m".into(),
            api_base: Some(base.into()),
            api_key: Some(Secret::new("sk-secret")),
            ..DeploymentConfig::default()
        };
        let a = Deployment::new(c("http://a")).unwrap();
        assert_eq!(a.id, Deployment::new(c("http://a")).unwrap().id);
        assert_ne!(a.id, Deployment::new(c("http://b")).unwrap().id);
        assert!(!format!("{a:?}").contains("sk-secret"));
        let mut c = c("http://a");
        c.params
            .insert("aws_secret_access_key".into(), "wJalrXUtnFEMI".into());
        let with_secret = Deployment::new(c).unwrap();
        assert!(!format!("{with_secret:?}").contains("wJalrXUtnFEMI"));
        assert_eq!(with_secret.id, a.id, "secrets never feed the id");
    }
}
