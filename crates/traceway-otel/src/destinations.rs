//! Callbacks to destinations: each tracing callback LiteLLM users name becomes one export
//! destination with its own endpoint, headers, dialect and queue.

use crate::config::{ConfigError, ExporterKind, Headers, OtelConfig, TRACES_PATH, parse_url};
use crate::dialect::Dialect;
use crate::env::{self, Env};
use base64::Engine as _;

/// The default `otel` callback: `OTEL_*` settings, GenAI semconv + OpenLLMetry keys.
pub const OTEL: &str = "otel";
/// Arize Phoenix over OTLP/HTTP, OpenInference keys.
pub const ARIZE_PHOENIX: &str = "arize_phoenix";
/// Arize (cloud) over OTLP, OpenInference keys.
pub const ARIZE: &str = "arize";
/// Langfuse's OTLP endpoint with basic auth.
pub const LANGFUSE_OTEL: &str = "langfuse_otel";
/// Every callback name that exports traces.
pub const TRACING_CALLBACKS: &[&str] = &[OTEL, ARIZE_PHOENIX, ARIZE, LANGFUSE_OTEL];

/// Phoenix's collector when none is named.
pub const DEFAULT_PHOENIX_ENDPOINT: &str = "http://localhost:6006/v1/traces";
/// Arize's OTLP endpoint when none is named.
pub const DEFAULT_ARIZE_ENDPOINT: &str = "https://otlp.arize.com/v1";
/// Langfuse's cloud host when none is named.
pub const DEFAULT_LANGFUSE_HOST: &str = "https://cloud.langfuse.com";

fn read(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn traces_url(var: &'static str, raw: &str) -> Result<url::Url, ConfigError> {
    let mut url = parse_url(var, raw)?;
    if !url.path().ends_with(TRACES_PATH) {
        let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

/// The destination of one tracing callback; `None` for a name that is not one.
///
/// Shared settings (batching, resource, limits, capture) come from the `OTEL_*` variables of
/// `base`; endpoint, headers, protocol and dialect come from the callback's own variables.
pub fn destination(
    name: &str,
    base: &OtelConfig,
    env: &dyn Env,
) -> Result<Option<OtelConfig>, ConfigError> {
    let mut cfg = base.clone();
    match name {
        OTEL => {}
        ARIZE_PHOENIX => {
            let (var, raw) = match read(env, env::PHOENIX_COLLECTOR_HTTP_ENDPOINT) {
                Some(v) => (env::PHOENIX_COLLECTOR_HTTP_ENDPOINT, v),
                None => match read(env, env::PHOENIX_COLLECTOR_ENDPOINT) {
                    Some(v) => (env::PHOENIX_COLLECTOR_ENDPOINT, v),
                    None => ("default endpoint", DEFAULT_PHOENIX_ENDPOINT.to_owned()),
                },
            };
            cfg.exporter = ExporterKind::OtlpHttpProtobuf;
            cfg.endpoint = Some(traces_url(var, &raw)?);
            let mut headers = Vec::new();
            if let Some(key) = read(env, env::PHOENIX_API_KEY) {
                headers.push(("authorization".to_owned(), format!("Bearer {key}")));
                headers.push(("api_key".to_owned(), key));
            }
            cfg.headers = Headers::new(headers);
            cfg.dialect = Dialect::OpenInference;
        }
        ARIZE => {
            let space = read(env, env::ARIZE_SPACE_KEY)
                .or_else(|| read(env, env::ARIZE_SPACE_ID))
                .ok_or(ConfigError::Missing {
                    var: env::ARIZE_SPACE_KEY,
                    why: "the arize callback needs the space key (or ARIZE_SPACE_ID)",
                })?;
            let key = read(env, env::ARIZE_API_KEY).ok_or(ConfigError::Missing {
                var: env::ARIZE_API_KEY,
                why: "the arize callback needs the API key",
            })?;
            match read(env, env::ARIZE_HTTP_ENDPOINT) {
                Some(raw) => {
                    cfg.exporter = ExporterKind::OtlpHttpProtobuf;
                    cfg.endpoint = Some(traces_url(env::ARIZE_HTTP_ENDPOINT, &raw)?);
                }
                None => {
                    let raw = read(env, env::ARIZE_ENDPOINT)
                        .unwrap_or_else(|| DEFAULT_ARIZE_ENDPOINT.to_owned());
                    let url = parse_url(env::ARIZE_ENDPOINT, &raw)?;
                    cfg.exporter = ExporterKind::OtlpGrpc;
                    cfg.endpoint = Some(parse_url(
                        env::ARIZE_ENDPOINT,
                        &url.origin().ascii_serialization(),
                    )?);
                }
            }
            cfg.headers = Headers::new(vec![
                ("space_id".to_owned(), space.clone()),
                ("space_key".to_owned(), space),
                ("api_key".to_owned(), key),
            ]);
            cfg.dialect = Dialect::OpenInference;
        }
        LANGFUSE_OTEL => {
            let public = read(env, env::LANGFUSE_PUBLIC_KEY).ok_or(ConfigError::Missing {
                var: env::LANGFUSE_PUBLIC_KEY,
                why: "the langfuse_otel callback authenticates with it",
            })?;
            let secret = read(env, env::LANGFUSE_SECRET_KEY).ok_or(ConfigError::Missing {
                var: env::LANGFUSE_SECRET_KEY,
                why: "the langfuse_otel callback authenticates with it",
            })?;
            let (var, host) = match read(env, env::LANGFUSE_OTEL_HOST) {
                Some(h) => (env::LANGFUSE_OTEL_HOST, h),
                None => (
                    env::LANGFUSE_HOST,
                    read(env, env::LANGFUSE_HOST)
                        .unwrap_or_else(|| DEFAULT_LANGFUSE_HOST.to_owned()),
                ),
            };
            let base_url = format!("{}/api/public/otel", host.trim_end_matches('/'));
            cfg.exporter = ExporterKind::OtlpHttpProtobuf;
            cfg.endpoint = Some(traces_url(var, &base_url)?);
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{public}:{secret}"));
            cfg.headers =
                Headers::new(vec![("authorization".to_owned(), format!("Basic {token}"))]);
            cfg.dialect = Dialect::GenAi;
        }
        _ => return Ok(None),
    }
    Ok(Some(cfg))
}

/// The destinations of `callbacks`, in order, each named once; non-tracing names are skipped.
pub fn destinations(callbacks: &[String], env: &dyn Env) -> Result<Vec<OtelConfig>, ConfigError> {
    let base = OtelConfig::from_env(env)?;
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for name in callbacks {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        if let Some(d) = destination(name, &base, env)? {
            out.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_callback_gets_its_endpoint_headers_and_dialect() {
        let e = env(&[
            ("PHOENIX_COLLECTOR_ENDPOINT", "http://phoenix:6006"),
            ("PHOENIX_API_KEY", "pk"),
            ("LANGFUSE_PUBLIC_KEY", "pub"),
            ("LANGFUSE_SECRET_KEY", "sec"),
            ("LANGFUSE_HOST", "https://lf.example.com/"),
            ("ARIZE_SPACE_KEY", "space"),
            ("ARIZE_API_KEY", "ak"),
        ]);
        let d = destinations(
            &names(&[
                "otel",
                "arize_phoenix",
                "langfuse_otel",
                "arize",
                "otel",
                "prometheus",
            ]),
            &e,
        )
        .unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].dialect, Dialect::GenAi);
        assert_eq!(
            d[1].endpoint.as_ref().unwrap().as_str(),
            "http://phoenix:6006/v1/traces"
        );
        assert_eq!(d[1].headers.get("authorization"), Some("Bearer pk"));
        assert_eq!(d[1].dialect, Dialect::OpenInference);
        assert_eq!(
            d[2].endpoint.as_ref().unwrap().as_str(),
            "https://lf.example.com/api/public/otel/v1/traces"
        );
        assert_eq!(
            d[2].headers.get("authorization"),
            Some("Basic cHViOnNlYw==")
        );
        assert_eq!(d[3].exporter, ExporterKind::OtlpGrpc);
        assert_eq!(
            d[3].endpoint.as_ref().unwrap().as_str(),
            "https://otlp.arize.com/"
        );
        assert_eq!(d[3].headers.get("space_key"), Some("space"));
    }

    #[test]
    fn missing_keys_name_the_variable() {
        let err = destinations(&names(&["langfuse_otel"]), &env(&[])).unwrap_err();
        assert_eq!(err.var(), "LANGFUSE_PUBLIC_KEY");
        assert!(
            err.to_string()
                .starts_with("LANGFUSE_PUBLIC_KEY is not set")
        );
        let err = destinations(&names(&["arize"]), &env(&[("ARIZE_SPACE_KEY", "s")])).unwrap_err();
        assert_eq!(err.var(), "ARIZE_API_KEY");
        let d = destinations(&names(&["arize_phoenix"]), &env(&[])).unwrap();
        assert_eq!(
            d[0].endpoint.as_ref().unwrap().as_str(),
            DEFAULT_PHOENIX_ENDPOINT
        );
    }
}
