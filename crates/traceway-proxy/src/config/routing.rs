//! `router_settings` (and the routing keys LiteLLM also accepts in `litellm_settings`) into the
//! client's [`RouterSettings`]; `router_settings` wins where both set a key.

use super::ConfigProblem;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use traceway::router::{RouterSettings, RoutingStrategy};

/// The two sections a routing key may sit in, most specific first.
struct Sections<'a>(Option<&'a Value>, Option<&'a Value>);

impl<'a> Sections<'a> {
    fn get(&self, key: &str) -> Option<(&'static str, &'a Value)> {
        if let Some(v) = self.0.and_then(|s| s.get(key)).filter(|v| !v.is_null()) {
            return Some(("router_settings", v));
        }
        self.1
            .and_then(|s| s.get(key))
            .filter(|v| !v.is_null())
            .map(|v| ("litellm_settings", v))
    }
}

fn problem(
    problems: &mut Vec<ConfigProblem>,
    section: &str,
    key: &str,
    message: impl Into<String>,
) {
    problems.push(ConfigProblem {
        path: format!("{section}.{key}"),
        message: message.into(),
    });
}

fn count(s: &Sections<'_>, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<u32> {
    let (section, v) = s.get(key)?;
    match v.as_u64() {
        Some(n) if n <= 1000 => Some(n as u32),
        _ => {
            problem(
                problems,
                section,
                key,
                "must be a whole number from 0 to 1000",
            );
            None
        }
    }
}

fn seconds(s: &Sections<'_>, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<Duration> {
    let (section, v) = s.get(key)?;
    // `try_`: past what a Duration holds (`1e308`) is a problem reported, not a panic.
    match v
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
    {
        Some(d) => Some(d),
        None => {
            problem(
                problems,
                section,
                key,
                "must be a number of seconds, 0 or more",
            );
            None
        }
    }
}

fn group_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|g| g.as_str().map(str::to_owned))
        .collect()
}

/// Reads `[{group: [fallback, …]}, …]` (LiteLLM's form) or `{group: [fallback, …]}`.
fn fallback_map(
    s: &Sections<'_>,
    key: &str,
    groups: &[String],
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some((section, v)) = s.get(key) else {
        return out;
    };
    let entries: Vec<(&String, &Value)> = match v {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter())
            .collect(),
        Value::Object(o) => o.iter().collect(),
        _ => Vec::new(),
    };
    let shape_ok = match v {
        Value::Array(items) => items.iter().all(Value::is_object),
        Value::Object(_) => true,
        _ => false,
    };
    if !shape_ok {
        problem(
            problems,
            section,
            key,
            "must be a list of {model_group: [fallback_group, …]} entries",
        );
        return out;
    }
    for (from, to) in entries {
        let Some(list) = group_list(to) else {
            problem(
                problems,
                section,
                &format!("{key}.{from}"),
                "must be a list of model group names",
            );
            continue;
        };
        for g in list.iter().chain(std::iter::once(from)) {
            if !groups.contains(g) {
                problem(
                    problems,
                    section,
                    &format!("{key}.{from}"),
                    format!("\"{g}\" is not a model_name in model_list"),
                );
            }
        }
        out.insert(from.clone(), list);
    }
    out
}

/// Builds the router settings, recording every bad value in `problems`.
pub(super) fn router_settings(
    root: &Value,
    groups: &[String],
    problems: &mut Vec<ConfigProblem>,
) -> RouterSettings {
    let s = Sections(root.get("router_settings"), root.get("litellm_settings"));
    let mut r = RouterSettings::default();
    if let Some((section, v)) = s.get("routing_strategy") {
        match v.as_str().and_then(RoutingStrategy::parse) {
            Some(strategy) => r.strategy = strategy,
            None => problem(
                problems,
                section,
                "routing_strategy",
                format!(
                    "unknown strategy {v} (expected simple-shuffle, least-busy, latency-based-routing or usage-based-routing)"
                ),
            ),
        }
    }
    if let Some(n) = count(&s, "num_retries", problems) {
        r.num_retries = n;
    }
    if let Some(d) = seconds(&s, "retry_after", problems) {
        r.retry_after = d;
    }
    if let Some(n) = count(&s, "allowed_fails", problems) {
        r.allowed_fails = n;
    }
    if let Some(d) = seconds(&s, "cooldown_time", problems) {
        r.cooldown_time = d;
    }
    if let Some(n) = count(&s, "max_fallbacks", problems) {
        r.max_fallbacks = n as usize;
    }
    if let Some((section, v)) = s.get("disable_cooldowns") {
        match v.as_bool() {
            Some(b) => r.disable_cooldowns = b,
            None => problem(
                problems,
                section,
                "disable_cooldowns",
                "must be true or false",
            ),
        }
    }
    match seconds(&s, "stream_timeout", problems) {
        Some(d) if d.is_zero() => problem(
            problems,
            "router_settings",
            "stream_timeout",
            "must be more than 0 seconds",
        ),
        other => r.stream_timeout = other,
    }
    r.fallbacks = fallback_map(&s, "fallbacks", groups, problems);
    r.context_window_fallbacks = fallback_map(&s, "context_window_fallbacks", groups, problems);
    r.content_policy_fallbacks = fallback_map(&s, "content_policy_fallbacks", groups, problems);
    if let Some((section, v)) = s.get("default_fallbacks") {
        match group_list(v) {
            Some(list) => {
                for g in &list {
                    if !groups.contains(g) {
                        problem(
                            problems,
                            section,
                            "default_fallbacks",
                            format!("\"{g}\" is not a model_name in model_list"),
                        );
                    }
                }
                r.default_fallbacks = list;
            }
            None => problem(
                problems,
                section,
                "default_fallbacks",
                "must be a list of model group names",
            ),
        }
    }
    r
}

/// Reads a deployment's routing params (`rpm`, `tpm`, `weight`, `order`, `num_retries`) out of
/// its `litellm_params`, so they are never sent upstream.
pub(super) fn deployment_routing(
    base: &str,
    params: &mut serde_json::Map<String, Value>,
    d: &mut traceway::DeploymentConfig,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut whole = |key: &str| -> Option<u64> {
        let v = params.remove(key)?;
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                problems.push(ConfigProblem {
                    path: format!("{base}.litellm_params.{key}"),
                    message: "must be a whole number, 0 or more".into(),
                });
                None
            }
        }
    };
    d.rpm = whole("rpm");
    d.tpm = whole("tpm");
    d.order = whole("order").map(|n| n.min(u64::from(u32::MAX)) as u32);
    d.num_retries = whole("num_retries").map(|n| n.min(1000) as u32);
    if let Some(v) = params.remove("weight") {
        match v.as_f64() {
            Some(w) if w.is_finite() && w >= 0.0 => d.weight = Some(w),
            _ => problems.push(ConfigProblem {
                path: format!("{base}.litellm_params.weight"),
                message: "must be a number, 0 or more".into(),
            }),
        }
    }
}
