//! Settings of the web page at `/ui`: whether it is served at all, and how many recent traces it
//! keeps in memory. Read from `general_settings` and the environment.

use super::ConfigProblem;
use serde_json::Value;
use traceway_otel::env::Env;

/// LiteLLM's switch for its admin UI: `true` turns Traceway's page off too.
pub const DISABLE_ADMIN_UI: &str = "DISABLE_ADMIN_UI";
/// Traces the page keeps when `general_settings.ui_trace_buffer_size` is not set.
pub const TRACEWAY_UI_TRACES: &str = "TRACEWAY_UI_TRACES";
/// Traces kept when neither the config nor the environment says.
pub const DEFAULT_TRACE_BUFFER_SIZE: usize = 200;
/// Upper bound on the buffer: each trace holds its spans' attributes (prompts included), so a
/// typo of a few zeros must not be able to eat the machine's memory.
pub const MAX_TRACE_BUFFER_SIZE: usize = 100_000;

/// The web page's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiSettings {
    /// Serve `/ui` and its APIs (`general_settings.ui`, default on; `DISABLE_ADMIN_UI=true` off).
    pub enabled: bool,
    /// Recent traces kept for the page, when the config or the environment says; 0 keeps none,
    /// and then the page adds no span work.
    pub trace_buffer_size: Option<usize>,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: true,
            trace_buffer_size: None,
        }
    }
}

impl UiSettings {
    /// The number of traces to keep, or `None` when the page keeps none: the page is off, the
    /// size is 0, or no size was given and tracing is off (so that "tracing off" means no span
    /// work on the request path unless the operator asks for the page's traces).
    pub fn trace_buffer(&self, tracing_on: bool) -> Option<usize> {
        let size = match self.trace_buffer_size {
            Some(n) => n,
            None if tracing_on => DEFAULT_TRACE_BUFFER_SIZE,
            None => 0,
        };
        (self.enabled && size > 0).then_some(size)
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`/empty, in any case; `None` for anything else.
pub(crate) fn truthy(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn size(v: &Value) -> Option<usize> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_TRACE_BUFFER_SIZE)
}

/// Reads the page's settings from the (interpolated) config and the environment; the config
/// wins over the environment.
pub(super) fn settings(
    root: &Value,
    env: &dyn Env,
    problems: &mut Vec<ConfigProblem>,
) -> UiSettings {
    let general = root.get("general_settings");
    let get = |key: &str| general.and_then(|g| g.get(key)).filter(|v| !v.is_null());
    let mut out = UiSettings::default();

    match get("ui") {
        Some(Value::Bool(b)) => out.enabled = *b,
        Some(_) => problems.push(ConfigProblem {
            path: "general_settings.ui".into(),
            message: "must be true or false".into(),
        }),
        None => {
            if let Some(v) = env.var(DISABLE_ADMIN_UI) {
                match truthy(&v) {
                    Some(disabled) => out.enabled = !disabled,
                    None => problems.push(ConfigProblem {
                        path: DISABLE_ADMIN_UI.into(),
                        message: format!("must be true or false, not \"{v}\""),
                    }),
                }
            }
        }
    }

    let bad_size = || format!("must be a whole number of traces from 0 to {MAX_TRACE_BUFFER_SIZE}");
    match get("ui_trace_buffer_size") {
        Some(v) => match size(v) {
            Some(n) => out.trace_buffer_size = Some(n),
            None => problems.push(ConfigProblem {
                path: "general_settings.ui_trace_buffer_size".into(),
                message: bad_size(),
            }),
        },
        None => {
            if let Some(v) = env.var(TRACEWAY_UI_TRACES).filter(|v| !v.trim().is_empty()) {
                match size(&Value::String(v)) {
                    Some(n) => out.trace_buffer_size = Some(n),
                    None => problems.push(ConfigProblem {
                        path: TRACEWAY_UI_TRACES.into(),
                        message: bad_size(),
                    }),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn on_with_200_traces_by_default_when_tracing_is_on() {
        let mut problems = Vec::new();
        let s = settings(&json!({}), &env(&[]), &mut problems);
        assert!(problems.is_empty());
        assert_eq!(s, UiSettings::default());
        assert_eq!(s.trace_buffer(true), Some(DEFAULT_TRACE_BUFFER_SIZE));
        assert_eq!(s.trace_buffer(false), None, "tracing off: no span work");
        let s = settings(
            &json!({}),
            &env(&[(TRACEWAY_UI_TRACES, "50")]),
            &mut problems,
        );
        assert_eq!(
            s.trace_buffer(false),
            Some(50),
            "asked for: kept with tracing off"
        );
    }

    #[test]
    fn config_wins_over_the_environment() {
        let mut problems = Vec::new();
        let vars = env(&[(DISABLE_ADMIN_UI, "True"), (TRACEWAY_UI_TRACES, "7")]);
        let s = settings(&json!({}), &vars, &mut problems);
        assert_eq!((s.enabled, s.trace_buffer_size), (false, Some(7)));
        assert_eq!(s.trace_buffer(true), None, "off keeps nothing");
        let s = settings(
            &json!({"general_settings": {"ui": true, "ui_trace_buffer_size": 0}}),
            &vars,
            &mut problems,
        );
        assert_eq!((s.enabled, s.trace_buffer_size), (true, Some(0)));
        assert_eq!(s.trace_buffer(true), None, "size 0 keeps nothing");
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn bad_values_are_reported_with_their_path() {
        let mut problems = Vec::new();
        settings(
            &json!({"general_settings": {"ui": "yes please", "ui_trace_buffer_size": -1}}),
            &env(&[]),
            &mut problems,
        );
        settings(
            &json!({}),
            &env(&[(DISABLE_ADMIN_UI, "maybe"), (TRACEWAY_UI_TRACES, "1e9")]),
            &mut problems,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "general_settings.ui",
                "general_settings.ui_trace_buffer_size",
                DISABLE_ADMIN_UI,
                TRACEWAY_UI_TRACES
            ]
        );
    }
}
