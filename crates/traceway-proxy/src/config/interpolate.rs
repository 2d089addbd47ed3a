//! Secrets in config values: `os.environ/VAR` (LiteLLM's form, the whole value) and `${VAR}`
//! (anywhere in a string), resolved against the process environment with the config's own
//! `environment_variables` laid over it.

use super::ConfigProblem;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use traceway_otel::env::{Env, ProcessEnv};

/// The process environment (or a test's map) with `environment_variables` over it.
#[derive(Clone)]
pub struct OverlayEnv {
    overlay: HashMap<String, String>,
    base: Arc<dyn Env>,
}

impl std::fmt::Debug for OverlayEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets: show names only.
        f.debug_struct("OverlayEnv")
            .field("overlay", &self.overlay.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OverlayEnv {
    /// `overlay` over `base`.
    pub fn new(overlay: HashMap<String, String>, base: Arc<dyn Env>) -> Self {
        OverlayEnv { overlay, base }
    }

    /// The real process environment with nothing over it.
    pub fn process() -> Self {
        OverlayEnv {
            overlay: HashMap::new(),
            base: Arc::new(ProcessEnv),
        }
    }
}

impl Env for OverlayEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.overlay
            .get(name)
            .cloned()
            .or_else(|| self.base.var(name))
    }
}

/// Replaces every `os.environ/VAR` and `${VAR}` in string values, recording missing variables.
pub(super) fn resolve(
    value: &mut Value,
    path: &str,
    env: &dyn Env,
    problems: &mut Vec<ConfigProblem>,
) {
    match value {
        Value::String(s) => {
            if let Some(var) = s.strip_prefix("os.environ/") {
                match env.var(var) {
                    Some(v) => *s = v,
                    None => problems.push(ConfigProblem {
                        path: path.to_owned(),
                        message: format!(
                            "environment variable {var} is not set (referenced as os.environ/{var})"
                        ),
                    }),
                }
            } else if s.contains("${") {
                match expand(s, env) {
                    Ok(v) => *s = v,
                    Err(msg) => problems.push(ConfigProblem {
                        path: path.to_owned(),
                        message: msg,
                    }),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve(v, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                resolve(v, &p, env, problems);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("has \"${\" without a closing \"}\"".into());
        };
        let var = &after[..end];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"${{{var}}}\" is not a valid variable reference"));
        }
        match env.var(var) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable {var} is not set (referenced as ${{{var}}})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
