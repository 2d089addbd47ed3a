//! Environment access for the telemetry layer: every variable it reads, named once.
//!
//! Configuration reads the environment through the [`Env`] trait so that tests can pass a
//! `HashMap` instead of mutating the process environment (`set_var` is racy in a multi-threaded
//! test binary). Nothing else in `traceway-otel` calls `std::env::var`.

use std::collections::HashMap;

/// A source of environment variables.
pub trait Env: Send + Sync {
    /// The value of `name`, or `None` when it is unset or not valid Unicode.
    fn var(&self, name: &str) -> Option<String>;

    /// The value of the first of `names` that is set and not empty (a provider's fallbacks,
    /// `OPENAI_BASE_URL` before `OPENAI_API_BASE` …).
    fn first_set(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|name| self.var(name).filter(|v| !v.is_empty()))
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Which exporter to use: `console` (default), `otlp_http`, `otlp_grpc`, `in_memory` (tests) or `none`.
pub const OTEL_EXPORTER: &str = "OTEL_EXPORTER";
/// Collector URL for `OTEL_EXPORTER`; a base URL that gets `/v1/traces` appended for HTTP.
pub const OTEL_ENDPOINT: &str = "OTEL_ENDPOINT";
/// Extra export headers as `k=v,k2=v2`, values percent-decoded; the lowest-priority header source.
pub const OTEL_HEADERS: &str = "OTEL_HEADERS";
/// Standard OTLP base endpoint (all signals); wins over `OTEL_ENDPOINT`.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Standard OTLP traces endpoint, used exactly as given; wins over every other endpoint variable.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Standard OTLP protocol (`http/protobuf`, `http/json`, `grpc`); wins over `OTEL_EXPORTER`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Standard OTLP traces protocol; wins over `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// Standard OTLP headers (`k=v,...`); wins over `OTEL_HEADERS`.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Standard OTLP traces headers; wins over `OTEL_EXPORTER_OTLP_HEADERS`.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// Export request timeout in milliseconds (default 10000).
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Traces export request timeout in milliseconds; wins over `OTEL_EXPORTER_OTLP_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// Export compression: `gzip` or `none` (default).
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// Traces export compression; wins over `OTEL_EXPORTER_OTLP_COMPRESSION`.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// PEM file of the CA certificates that verify an `https://` collector, instead of the bundled roots.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// Traces CA certificate file; wins over `OTEL_EXPORTER_OTLP_CERTIFICATE`.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// PEM file of the client certificate (chain) presented to the collector, for mutual TLS.
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// Traces client certificate file; wins over `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
/// PEM file of the client certificate's private key.
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// Traces client key file; wins over `OTEL_EXPORTER_OTLP_CLIENT_KEY`.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// Resource `service.name` (default `traceway`).
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Extra resource attributes as `k=v,k2=v2`, values percent-decoded.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// Resource `deployment.environment` (LiteLLM's name for it).
pub const OTEL_ENVIRONMENT_NAME: &str = "OTEL_ENVIRONMENT_NAME";
/// Batch processor: spans held in the export queue before new ones are dropped (default 2048).
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Batch processor: milliseconds between two scheduled exports (Traceway default 1000).
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// Batch processor: most spans sent in one export request (default 512).
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Batch processor: milliseconds one export (and the shutdown flush) may take (default 30000).
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// Milliseconds between two periodic metric exports (default 60000).
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Milliseconds one metric export may take (default 30000).
pub const OTEL_METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// `true` turns all telemetry off.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// Truthy (`true`, `1`, `yes`) prints export problems (failed exports, drops, bad config) to stderr.
pub const OTEL_DEBUG: &str = "OTEL_DEBUG";
/// Alias of `OTEL_DEBUG` that LiteLLM also accepts.
pub const DEBUG_OTEL: &str = "DEBUG_OTEL";
/// Truthy selects the nested `litellm_request` span mode.
pub const USE_OTEL_LITELLM_REQUEST_SPAN: &str = "USE_OTEL_LITELLM_REQUEST_SPAN";
/// Where message content goes: `SPAN_ONLY` (default), `NO_CONTENT`, `EVENT_ONLY`, `SPAN_AND_EVENT`; `true`/`false` too.
pub const OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: &str =
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";
/// Comma list; `gen_ai_latest_experimental` selects strict OTel GenAI semconv naming.
pub const OTEL_SEMCONV_STABILITY_OPT_IN: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";
/// Longest attribute value (characters); longer content is truncated with a marker.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// Most attributes on one span; indexed content keys give way first so usage and identity stay.
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";

/// Arize Phoenix collector (base URL or full traces URL) for the `arize_phoenix` callback.
pub const PHOENIX_COLLECTOR_ENDPOINT: &str = "PHOENIX_COLLECTOR_ENDPOINT";
/// Arize Phoenix HTTP collector; wins over `PHOENIX_COLLECTOR_ENDPOINT`.
pub const PHOENIX_COLLECTOR_HTTP_ENDPOINT: &str = "PHOENIX_COLLECTOR_HTTP_ENDPOINT";
/// Arize Phoenix API key (sent as `authorization: Bearer` and `api_key`).
pub const PHOENIX_API_KEY: &str = "PHOENIX_API_KEY";
/// Arize space key for the `arize` callback.
pub const ARIZE_SPACE_KEY: &str = "ARIZE_SPACE_KEY";
/// Arize space id (newer name of the space key).
pub const ARIZE_SPACE_ID: &str = "ARIZE_SPACE_ID";
/// Arize API key for the `arize` callback.
pub const ARIZE_API_KEY: &str = "ARIZE_API_KEY";
/// Arize OTLP gRPC endpoint (default `https://otlp.arize.com/v1`).
pub const ARIZE_ENDPOINT: &str = "ARIZE_ENDPOINT";
/// Arize OTLP HTTP endpoint; when set, Arize is reached over HTTP instead of gRPC.
pub const ARIZE_HTTP_ENDPOINT: &str = "ARIZE_HTTP_ENDPOINT";
/// Langfuse public key for the `langfuse_otel` callback.
pub const LANGFUSE_PUBLIC_KEY: &str = "LANGFUSE_PUBLIC_KEY";
/// Langfuse secret key for the `langfuse_otel` callback.
pub const LANGFUSE_SECRET_KEY: &str = "LANGFUSE_SECRET_KEY";
/// Langfuse host (default `https://cloud.langfuse.com`).
pub const LANGFUSE_HOST: &str = "LANGFUSE_HOST";
/// Langfuse OTLP host; wins over `LANGFUSE_HOST`.
pub const LANGFUSE_OTEL_HOST: &str = "LANGFUSE_OTEL_HOST";

/// Every variable above, for documentation and for tests that want a clean environment.
pub const ALL: &[&str] = &[
    OTEL_EXPORTER,
    OTEL_ENDPOINT,
    OTEL_HEADERS,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_ENVIRONMENT_NAME,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_SDK_DISABLED,
    OTEL_DEBUG,
    DEBUG_OTEL,
    USE_OTEL_LITELLM_REQUEST_SPAN,
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
    OTEL_SEMCONV_STABILITY_OPT_IN,
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
    PHOENIX_COLLECTOR_ENDPOINT,
    PHOENIX_COLLECTOR_HTTP_ENDPOINT,
    PHOENIX_API_KEY,
    ARIZE_SPACE_KEY,
    ARIZE_SPACE_ID,
    ARIZE_API_KEY,
    ARIZE_ENDPOINT,
    ARIZE_HTTP_ENDPOINT,
    LANGFUSE_PUBLIC_KEY,
    LANGFUSE_SECRET_KEY,
    LANGFUSE_HOST,
    LANGFUSE_OTEL_HOST,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashmap_env_reads_its_entries() {
        let env = HashMap::from([(OTEL_EXPORTER.to_owned(), "none".to_owned())]);
        assert_eq!(env.var(OTEL_EXPORTER).as_deref(), Some("none"));
        assert_eq!(env.var(OTEL_ENDPOINT), None);
    }

    #[test]
    fn every_name_is_listed_once() {
        let mut names: Vec<&str> = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
