//! `config.yaml` in LiteLLM's format: read, interpolate secrets, validate every entry, and
//! produce the runtime configuration. Every problem found is reported, not just the first.

mod interpolate;
pub mod key_store;
mod known_keys;
mod raw;
mod routing;
pub mod ui;

pub use interpolate::OverlayEnv;

use raw::{RawConfig, RawModelEntry};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use traceway::{DeploymentConfig, Secret};
use traceway_otel::env::Env;

/// Request body limit when `general_settings.max_request_size_mb` is not set.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// One problem in a config file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `model_list[0].litellm_params.model`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, or `<embedded defaults>`.
    pub source_name: String,
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} found",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            if p.path.is_empty() {
                writeln!(f, "  - {}", p.message)?;
            } else {
                writeln!(f, "  - {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

/// The proxy's runtime configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where it came from, for messages.
    pub source_name: String,
    /// The deployments of `model_list`.
    pub deployments: Vec<DeploymentConfig>,
    /// Callback names from `callbacks`, `success_callback` and `failure_callback`.
    pub callbacks: Vec<String>,
    /// `general_settings.master_key`.
    pub master_key: Option<Secret>,
    /// Default timeout of one upstream attempt.
    pub request_timeout: Option<Duration>,
    /// Largest accepted request body.
    pub max_request_bytes: usize,
    /// `litellm_settings.turn_off_message_logging`.
    pub turn_off_message_logging: bool,
    /// The environment with `environment_variables` laid over the process's.
    pub env: OverlayEnv,
    /// Keys accepted but not acted on yet, one line each.
    pub warnings: Vec<String>,
    /// Retries, fallbacks, load balancing and cooldowns.
    pub router: traceway::RouterSettings,
    /// Virtual keys: their database, cache and Redis.
    pub key_store: key_store::KeyStoreSettings,
    /// The web page at `/ui` and its trace buffer.
    pub ui: ui::UiSettings,
}

impl ProxyConfig {
    /// Whether a callback turns on OpenTelemetry tracing.
    pub fn otel_enabled(&self) -> bool {
        !self.tracing_callbacks(false).is_empty()
    }

    /// The tracing callbacks (`otel`, `arize_phoenix`, `arize`, `langfuse_otel`) in order;
    /// `force_otel` (the `--otel` flag) adds `otel`.
    pub fn tracing_callbacks(&self, force_otel: bool) -> Vec<String> {
        let mut names: Vec<String> = self
            .callbacks
            .iter()
            .filter(|c| traceway::client::TRACING_CALLBACKS.contains(&c.as_str()))
            .cloned()
            .collect();
        if force_otel && !names.iter().any(|n| n == "otel") {
            names.insert(0, "otel".to_owned());
        }
        names
    }

    /// The configuration a newcomer gets with no `--config`: a `mock` model and console traces.
    pub fn embedded_defaults(env: OverlayEnv) -> ProxyConfig {
        // No file to report problems against: a bad variable becomes a start-up warning.
        let mut problems = Vec::new();
        let master_key = key_store::master_key(None, &env, &mut problems);
        let key_store = key_store::settings(&Json::Null, &env, &mut problems);
        let ui = ui::settings(&Json::Null, &env, &mut problems);
        let warnings = problems
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        ProxyConfig {
            source_name: "<embedded defaults>".to_owned(),
            deployments: vec![DeploymentConfig {
                model_name: "mock".to_owned(),
                model: "mock/mock".to_owned(),
                ..DeploymentConfig::default()
            }],
            callbacks: vec!["otel".to_owned()],
            master_key,
            request_timeout: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            turn_off_message_logging: false,
            env,
            warnings,
            router: traceway::RouterSettings::default(),
            key_store,
            ui,
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path, env: Arc<dyn Env>) -> Result<ProxyConfig, ConfigError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: source_name.clone(),
            problems: vec![ConfigProblem {
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text, &source_name, env)
    }

    /// Validates config text; `source_name` names it in messages.
    pub fn parse(
        text: &str,
        source_name: &str,
        env: Arc<dyn Env>,
    ) -> Result<ProxyConfig, ConfigError> {
        let fail = |problems: Vec<ConfigProblem>| ConfigError {
            source_name: source_name.to_owned(),
            problems,
        };
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            fail(vec![ConfigProblem {
                path: String::new(),
                message: format!("not valid YAML: {e}"),
            }])
        })?;
        let mut json: Json = match serde_json::to_value(&value) {
            Ok(Json::Null) => Json::Object(Default::default()),
            Ok(v @ Json::Object(_)) => v,
            Ok(_) => {
                return Err(fail(vec![ConfigProblem {
                    path: String::new(),
                    message: "the top level must be a mapping (model_list, litellm_settings, …)"
                        .into(),
                }]));
            }
            Err(e) => {
                return Err(fail(vec![ConfigProblem {
                    path: String::new(),
                    message: format!("unsupported YAML value: {e}"),
                }]));
            }
        };
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        known_keys::check(&json, &mut problems, &mut warnings);

        // environment_variables first: later values may refer to them.
        let mut overlay = HashMap::new();
        if let Some(vars) = json.get("environment_variables") {
            match vars.as_object() {
                Some(map) => {
                    for (k, v) in map {
                        match v {
                            Json::String(s) => {
                                overlay.insert(k.clone(), s.clone());
                            }
                            Json::Number(n) => {
                                overlay.insert(k.clone(), n.to_string());
                            }
                            Json::Bool(b) => {
                                overlay.insert(k.clone(), b.to_string());
                            }
                            _ => problems.push(ConfigProblem {
                                path: format!("environment_variables.{k}"),
                                message: "must be a string".into(),
                            }),
                        }
                    }
                }
                None => problems.push(ConfigProblem {
                    path: "environment_variables".into(),
                    message: "must be a mapping of NAME: value".into(),
                }),
            }
        }
        let env = OverlayEnv::new(overlay, env);
        interpolate::resolve(&mut json, "", &env, &mut problems);

        let raw: RawConfig = match serde_path_to_error::deserialize(json.clone()) {
            Ok(r) => r,
            Err(e) => {
                problems.push(ConfigProblem {
                    path: e.path().to_string(),
                    message: e.inner().to_string(),
                });
                return Err(fail(problems));
            }
        };

        let mut deployments = Vec::new();
        for (i, entry) in raw.model_list.into_iter().enumerate() {
            let entry: RawModelEntry = match serde_path_to_error::deserialize(entry) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(ConfigProblem {
                        path: format!("model_list[{i}].{}", e.path()),
                        message: e.inner().to_string(),
                    });
                    continue;
                }
            };
            match deployment(i, &entry, &env, &mut warnings) {
                Ok(d) => deployments.push(d),
                Err(mut p) => problems.append(&mut p),
            }
        }

        let groups: Vec<String> = deployments.iter().map(|d| d.model_name.clone()).collect();
        let router = routing::router_settings(&json, &groups, &mut problems);
        let ls = raw.litellm_settings.unwrap_or_default();
        let gs = raw.general_settings.unwrap_or_default();
        let rs = raw.router_settings.unwrap_or_default();
        let mut callbacks = Vec::new();
        for list in [&ls.callbacks, &ls.success_callback, &ls.failure_callback] {
            for c in list.iter().flatten() {
                if !callbacks.contains(c) {
                    callbacks.push(c.clone());
                }
            }
        }
        for c in &callbacks {
            // `prometheus` is served: /metrics is always on.
            if !traceway::client::TRACING_CALLBACKS.contains(&c.as_str()) && c != "prometheus" {
                warnings.push(format!(
                    "litellm_settings: callback \"{c}\" is not supported yet and is ignored"
                ));
            }
        }
        let mut request_timeout = None;
        for (path, secs) in [
            ("router_settings.timeout", rs.timeout),
            ("litellm_settings.request_timeout", ls.request_timeout),
        ] {
            if let Some(s) = secs {
                match positive_secs(s) {
                    Some(d) => request_timeout = request_timeout.or(Some(d)),
                    None => problems.push(ConfigProblem {
                        path: path.into(),
                        message: "must be a positive number of seconds".into(),
                    }),
                }
            }
        }
        let max_request_bytes = match gs.max_request_size_mb {
            Some(mb) if mb.is_finite() && mb > 0.0 => (mb * 1024.0 * 1024.0) as usize,
            Some(_) => {
                problems.push(ConfigProblem {
                    path: "general_settings.max_request_size_mb".into(),
                    message: "must be a positive number".into(),
                });
                DEFAULT_MAX_REQUEST_BYTES
            }
            None => DEFAULT_MAX_REQUEST_BYTES,
        };
        let master_key = key_store::master_key(gs.master_key.clone(), &env, &mut problems);
        let key_store = key_store::settings(&json, &env, &mut problems);
        let ui = ui::settings(&json, &env, &mut problems);
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(ProxyConfig {
            source_name: source_name.to_owned(),
            deployments,
            callbacks,
            master_key,
            request_timeout,
            max_request_bytes,
            turn_off_message_logging: ls.turn_off_message_logging.unwrap_or(false),
            env,
            warnings,
            router,
            key_store,
            ui,
        })
    }

    /// Path of the config file, if it came from one.
    pub fn source_path(&self) -> Option<PathBuf> {
        (!self.source_name.starts_with('<')).then(|| PathBuf::from(&self.source_name))
    }
}

fn positive_secs(s: f64) -> Option<Duration> {
    // `try_`: past what a Duration holds (`1e308`) is a problem reported, not a panic.
    (s.is_finite() && s > 0.0)
        .then(|| Duration::try_from_secs_f64(s).ok())
        .flatten()
}

/// `litellm_params` keys LiteLLM's router reads that Traceway does not use yet; never sent upstream.
const ROUTING_PARAMS: &[&str] = &[
    "max_parallel_requests",
    "tags",
    "max_retries",
    "input_cost_per_second",
    "output_cost_per_second",
    "custom_llm_provider",
    "region_name",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
];

fn deployment(
    i: usize,
    entry: &RawModelEntry,
    env: &dyn Env,
    warnings: &mut Vec<String>,
) -> Result<DeploymentConfig, Vec<ConfigProblem>> {
    let base = format!("model_list[{i}]");
    let mut problems = Vec::new();
    let p = &entry.litellm_params;
    if entry.model_name.trim().is_empty() {
        problems.push(ConfigProblem {
            path: format!("{base}.model_name"),
            message: "must not be empty".into(),
        });
    }
    if let Err(e) = traceway::deployment::split_provider_model(&p.model) {
        problems.push(ConfigProblem {
            path: format!("{base}.litellm_params.model"),
            message: e.message,
        });
    }
    let mut secs = |name: &str, v: Option<f64>| match v {
        Some(s) => match positive_secs(s) {
            Some(d) => Some(d),
            None => {
                problems.push(ConfigProblem {
                    path: format!("{base}.litellm_params.{name}"),
                    message: "must be a positive number of seconds".into(),
                });
                None
            }
        },
        None => None,
    };
    let timeout = secs("timeout", p.timeout);
    let stream_timeout = secs("stream_timeout", p.stream_timeout);
    if let Some(base_url) = &p.api_base
        && url::Url::parse(base_url).is_err()
    {
        problems.push(ConfigProblem {
            path: format!("{base}.litellm_params.api_base"),
            message: format!(
                "\"{base_url}\" is not a URL (expected e.g. https://api.openai.com/v1)"
            ),
        });
    }
    let mut params = p.extra.clone();
    let mut routing = DeploymentConfig::default();
    routing::deployment_routing(&base, &mut params, &mut routing, &mut problems);
    // Custom prices, as LiteLLM reads them: `litellm_params` first, then `model_info`.
    for (key, slot) in [
        ("input_cost_per_token", &mut routing.input_cost_per_token),
        ("output_cost_per_token", &mut routing.output_cost_per_token),
    ] {
        let (value, at) = match params.remove(key) {
            Some(v) => (Some(v), "litellm_params"),
            None => (
                entry.model_info.as_ref().and_then(|m| m.get(key)).cloned(),
                "model_info",
            ),
        };
        let Some(value) = value else { continue };
        match value.as_f64() {
            Some(price) if price.is_finite() && price >= 0.0 => *slot = Some(price),
            _ => problems.push(ConfigProblem {
                path: format!("{base}.{at}.{key}"),
                message: format!(
                    "must be a price per token, a number 0 or more (e.g. 2.5e-06), not {value}"
                ),
            }),
        }
    }
    for key in ROUTING_PARAMS {
        if params.remove(*key).is_some() {
            warnings.push(format!(
                "{base}.litellm_params.{key}: accepted but not supported yet; it has no effect"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let id = entry
        .model_info
        .as_ref()
        .and_then(|m| m.get("id"))
        .and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        });
    Ok(DeploymentConfig {
        model_name: entry.model_name.clone(),
        model: p.model.clone(),
        api_base: p.api_base.clone(),
        api_key: p
            .api_key
            .clone()
            .or_else(|| provider_key_from_env(&p.model, env))
            .map(Secret::new),
        timeout,
        stream_timeout,
        mock_response: p.mock_response.clone(),
        params,
        id,
        model_info: entry.model_info.clone().unwrap_or_default(),
        ..routing
    })
}

/// The provider's own key variable (`OPENAI_API_KEY` …) when the entry names no `api_key`,
/// read through the config's environment so `environment_variables` can supply it.
fn provider_key_from_env(model: &str, env: &dyn Env) -> Option<String> {
    let prefix = model.split_once('/')?.0;
    let backend = traceway::provider::backend_for(prefix)?;
    env.first_set(backend.api_key_env())
}

#[cfg(test)]
mod tests;
