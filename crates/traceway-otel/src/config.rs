//! Telemetry configuration from the environment (TELEMETRY.md §2), as one pure function.
//!
//! [`OtelConfig::from_env`] reads only through [`Env`], decides every precedence rule and
//! default in one place, and turns a malformed value into a [`ConfigError`] that names the
//! variable and the bad part. Header values are secrets: they appear in no error message and
//! no `Debug` output.

use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::env::{self, Env};

/// Default OTLP/HTTP traces endpoint when no endpoint variable is set.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// Default OTLP/gRPC endpoint when no endpoint variable is set.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "traceway";
/// Path that OTLP/HTTP appends to a base endpoint for traces.
pub(crate) const TRACES_PATH: &str = "/v1/traces";
/// The `OTEL_SEMCONV_STABILITY_OPT_IN` entry that selects strict GenAI naming.
const SEMCONV_GEN_AI_LATEST: &str = "gen_ai_latest_experimental";

/// Where finished spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExporterKind {
    /// Human-readable spans on stdout (the default).
    #[default]
    Console,
    /// OTLP over HTTP, protobuf body.
    OtlpHttpProtobuf,
    /// OTLP over HTTP, JSON body.
    OtlpHttpJson,
    /// OTLP over gRPC.
    OtlpGrpc,
    /// Kept in memory for tests.
    InMemory,
    /// Spans are not exported at all.
    None,
}

impl ExporterKind {
    /// Whether this exporter sends spans over the network with OTLP.
    pub fn is_otlp(self) -> bool {
        matches!(
            self,
            Self::OtlpHttpProtobuf | Self::OtlpHttpJson | Self::OtlpGrpc
        )
    }
}

/// Compression of export request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Bodies are sent as they are (the default).
    #[default]
    None,
    /// Bodies are gzip-compressed.
    Gzip,
}

/// Where message content is recorded (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureContent {
    /// Content as span attributes (the default, LiteLLM's behaviour).
    #[default]
    SpanOnly,
    /// No message content at all.
    NoContent,
    /// Content as span events only.
    EventOnly,
    /// Content as span attributes and as span events.
    SpanAndEvent,
}

/// Batch span processor settings (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans held in the queue before new ones are dropped.
    pub max_queue_size: usize,
    /// Time between two scheduled exports.
    pub scheduled_delay: Duration,
    /// Most spans in one export request (never more than `max_queue_size`).
    pub max_export_batch_size: usize,
    /// Time one export, and the flush on shutdown, may take.
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            // The OTel default is 5 s; a gateway's spans are worth seeing sooner, and a batch per
            // second is still cheap for any collector.
            scheduled_delay: Duration::from_millis(1000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

/// Export headers in the order given. `Debug` shows the names only: the values are secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Headers from `(name, value)` pairs, unvalidated (`OtelConfig::from_env` validates; the
    /// exporters skip a pair that is not valid HTTP).
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The headers as `(name, value)` pairs, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The last value given for `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k, "<redacted>")))
            .finish()
    }
}

/// Everything the telemetry layer takes from the environment, resolved and validated.
#[derive(Clone, PartialEq)]
pub struct OtelConfig {
    /// Where spans go.
    pub exporter: ExporterKind,
    /// The collector URL the exporter sends to: the full traces URL for HTTP, scheme + host +
    /// port for gRPC; `None` for the console, in-memory and none exporters.
    pub endpoint: Option<Url>,
    /// Headers (HTTP) or metadata (gRPC) sent with every export.
    pub headers: Headers,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// Compression of export bodies.
    pub compression: Compression,
    /// Roots and client certificate for `https://` collectors.
    pub tls: crate::exporter_tls::ExporterTls,
    /// Resource `service.name`.
    pub service_name: String,
    /// Resource `service.version` (this crate's version).
    pub service_version: String,
    /// Resource `deployment.environment`, from `OTEL_ENVIRONMENT_NAME`.
    pub deployment_environment: Option<String>,
    /// Extra resource attributes from `OTEL_RESOURCE_ATTRIBUTES`, in the order given.
    pub resource_attributes: Vec<(String, String)>,
    /// Batch span processor settings.
    pub batch: BatchSettings,
    /// Time between two periodic metric exports.
    pub metric_export_interval: Duration,
    /// Time one metric export may take.
    pub metric_export_timeout: Duration,
    /// `OTEL_SDK_DISABLED=true`: no telemetry at all.
    pub sdk_disabled: bool,
    /// `OTEL_DEBUG` / `DEBUG_OTEL`: print export problems to stderr.
    pub debug: bool,
    /// `USE_OTEL_LITELLM_REQUEST_SPAN`: nested `litellm_request` span mode.
    pub nested_request_span: bool,
    /// Where message content is recorded.
    pub capture: CaptureContent,
    /// `OTEL_SEMCONV_STABILITY_OPT_IN` contains `gen_ai_latest_experimental`.
    pub semconv_latest: bool,
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`: longest attribute value in characters (none by default).
    pub attribute_value_length_limit: Option<usize>,
    /// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`: most attributes on one span.
    pub span_attribute_count_limit: usize,
    /// Attribute names this destination reads (set by the callback, not by a variable).
    pub dialect: crate::dialect::Dialect,
}

/// Attributes per span when `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` is not set.
///
/// Higher than the SDK's 128 because one chat call's indexed prompt keys alone can pass 128;
/// the recording code still budgets content so that usage and identity are never the ones dropped.
pub const DEFAULT_SPAN_ATTRIBUTE_COUNT_LIMIT: usize = 1024;

impl Default for OtelConfig {
    /// The configuration of an empty environment.
    fn default() -> Self {
        Self {
            exporter: ExporterKind::Console,
            endpoint: None,
            headers: Headers::default(),
            timeout: Duration::from_millis(10_000),
            compression: Compression::None,
            tls: crate::exporter_tls::ExporterTls::default(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            deployment_environment: None,
            resource_attributes: Vec::new(),
            batch: BatchSettings::default(),
            metric_export_interval: Duration::from_millis(60_000),
            metric_export_timeout: Duration::from_millis(30_000),
            sdk_disabled: false,
            debug: false,
            nested_request_span: false,
            capture: CaptureContent::SpanOnly,
            semconv_latest: false,
            attribute_value_length_limit: None,
            span_attribute_count_limit: DEFAULT_SPAN_ATTRIBUTE_COUNT_LIMIT,
            dialect: crate::dialect::Dialect::GenAi,
        }
    }
}

impl fmt::Debug for OtelConfig {
    // Written out by hand so that a password in the endpoint's userinfo is never printed
    // (header values are already redacted by `Headers`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.endpoint.as_ref().map(|url| {
            let mut shown = url.clone();
            if shown.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one does.
                let _ = shown.set_password(Some("redacted"));
            }
            shown.to_string()
        });
        f.debug_struct("OtelConfig")
            .field("exporter", &self.exporter)
            .field("endpoint", &endpoint)
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("tls", &self.tls)
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("deployment_environment", &self.deployment_environment)
            .field("resource_attributes", &self.resource_attributes)
            .field("batch", &self.batch)
            .field("metric_export_interval", &self.metric_export_interval)
            .field("metric_export_timeout", &self.metric_export_timeout)
            .field("sdk_disabled", &self.sdk_disabled)
            .field("debug", &self.debug)
            .field("nested_request_span", &self.nested_request_span)
            .field("capture", &self.capture)
            .field("semconv_latest", &self.semconv_latest)
            .finish()
    }
}

/// A malformed telemetry variable. Every message starts with the variable's name and shows the
/// bad part, never a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable a callback needs is not set.
    #[error("{var} is not set ({why})")]
    Missing {
        /// The variable.
        var: &'static str,
        /// Which callback needs it and for what.
        why: &'static str,
    },
    /// A value outside the variable's fixed set.
    #[error("{var}: unknown {what} \"{value}\" (expected {expected})")]
    UnknownValue {
        /// The variable.
        var: &'static str,
        /// What the value names (`exporter`, `protocol`, ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A `k=v` list segment without `=`.
    #[error("{var}: segment \"{segment}\" has no '=' (expected key=value)")]
    MissingEquals {
        /// The variable.
        var: &'static str,
        /// The segment given.
        segment: String,
    },
    /// A `k=v` list segment whose key is empty (the segment is not shown: it is all value).
    #[error("{var}: segment {position} has an empty key (expected key=value)")]
    EmptyKey {
        /// The variable.
        var: &'static str,
        /// 1-based position of the segment in the list.
        position: usize,
    },
    /// A header name that HTTP does not allow.
    #[error("{var}: \"{name}\" is not a valid HTTP header name")]
    InvalidHeaderName {
        /// The variable.
        var: &'static str,
        /// The header name given.
        name: String,
    },
    /// A header value that HTTP does not allow (the value itself is a secret and not shown).
    #[error(
        "{var}: the value of header \"{name}\" is not a valid HTTP header value (control characters are not allowed)"
    )]
    InvalidHeaderValue {
        /// The variable.
        var: &'static str,
        /// The header whose value is bad.
        name: String,
    },
    /// A value that is not UTF-8 once its `%XX` escapes are decoded.
    #[error("{var}: the value of \"{key}\" is not valid UTF-8 after percent-decoding")]
    NotUtf8 {
        /// The variable.
        var: &'static str,
        /// The key whose value is bad.
        key: String,
    },
    /// An endpoint the `url` crate cannot parse.
    #[error("{var}: \"{value}\" is not a valid URL ({reason})")]
    InvalidUrl {
        /// The variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An endpoint that is a URL but not an `http`/`https` one with a host.
    #[error("{var}: \"{value}\" {problem} (expected http://host:port or https://host)")]
    UnsupportedUrl {
        /// The variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value that should be a whole number.
    #[error("{var}: \"{value}\" is not a whole number{unit}")]
    InvalidNumber {
        /// The variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// ` of milliseconds` for durations, empty for counts.
        unit: &'static str,
    },
    /// A number that must be positive but is 0.
    #[error("{var}: must be greater than 0")]
    Zero {
        /// The variable.
        var: &'static str,
    },
    /// A file named by a certificate or key variable that cannot be read or used.
    #[error("{var}: \"{path}\" {problem}")]
    BadFile {
        /// The variable.
        var: &'static str,
        /// The path it names.
        path: String,
        /// What is wrong with the file (never its contents).
        problem: String,
    },
    /// The exporters' TLS could not be set up with the process's crypto provider.
    #[error("{var}: TLS cannot be set up with this crypto provider ({reason})")]
    Tls {
        /// The certificate variable, as the nearest setting to the problem.
        var: &'static str,
        /// What rustls said.
        reason: String,
    },
}

impl ConfigError {
    /// The environment variable the error is about.
    pub fn var(&self) -> &'static str {
        match self {
            Self::UnknownValue { var, .. }
            | Self::MissingEquals { var, .. }
            | Self::EmptyKey { var, .. }
            | Self::InvalidHeaderName { var, .. }
            | Self::InvalidHeaderValue { var, .. }
            | Self::NotUtf8 { var, .. }
            | Self::InvalidUrl { var, .. }
            | Self::UnsupportedUrl { var, .. }
            | Self::InvalidNumber { var, .. }
            | Self::Zero { var }
            | Self::BadFile { var, .. }
            | Self::Tls { var, .. }
            | Self::Missing { var, .. } => var,
        }
    }
}

impl OtelConfig {
    /// Resolves the telemetry configuration from `env` (TELEMETRY.md §2).
    ///
    /// Precedence, highest first: `_TRACES_*` variables, then the standard `OTEL_EXPORTER_OTLP_*`
    /// ones, then LiteLLM's `OTEL_EXPORTER` / `OTEL_ENDPOINT` / `OTEL_HEADERS`. Only the winning
    /// variable of each chain is read. An empty variable counts as unset. The protocol variables
    /// choose the OTLP transport over `OTEL_EXPORTER`, except that `none` and `in_memory` stay:
    /// they are not transports, and a globally set protocol must not re-enable an exporter that
    /// was switched off. An endpoint set while the exporter is still `console` selects
    /// OTLP/HTTP protobuf.
    pub fn from_env(env: &dyn Env) -> Result<OtelConfig, ConfigError> {
        let mut cfg = OtelConfig::default();

        cfg.exporter = resolve_exporter(env)?;
        cfg.endpoint = resolve_endpoint(env, cfg.exporter)?;
        if let Some((var, raw)) = first_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                env::OTEL_EXPORTER_OTLP_HEADERS,
                env::OTEL_HEADERS,
            ],
        ) {
            cfg.headers = parse_headers(var, &raw)?;
        }
        if let Some((var, raw)) = first_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                env::OTEL_EXPORTER_OTLP_TIMEOUT,
            ],
        ) {
            cfg.timeout = parse_millis(var, &raw)?;
        }
        if let Some((var, raw)) = first_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
                env::OTEL_EXPORTER_OTLP_COMPRESSION,
            ],
        ) {
            cfg.compression = parse_compression(var, &raw)?;
        }
        cfg.tls = crate::exporter_tls::ExporterTls::from_env(env)?;

        if let Some(raw) = read(env, env::OTEL_RESOURCE_ATTRIBUTES) {
            cfg.resource_attributes = parse_pairs(env::OTEL_RESOURCE_ATTRIBUTES, &raw)?;
        }
        // OTel resource precedence: OTEL_SERVICE_NAME, then a `service.name` given in
        // OTEL_RESOURCE_ATTRIBUTES, then our default.
        if let Some(name) = read(env, env::OTEL_SERVICE_NAME) {
            cfg.service_name = name;
        } else if let Some((_, name)) = cfg
            .resource_attributes
            .iter()
            .rev()
            .find(|(key, _)| key == "service.name")
        {
            cfg.service_name = name.clone();
        }
        cfg.deployment_environment = read(env, env::OTEL_ENVIRONMENT_NAME);

        if let Some(raw) = read(env, env::OTEL_BSP_MAX_QUEUE_SIZE) {
            cfg.batch.max_queue_size = parse_count(env::OTEL_BSP_MAX_QUEUE_SIZE, &raw)?;
        }
        if let Some(raw) = read(env, env::OTEL_BSP_SCHEDULE_DELAY) {
            cfg.batch.scheduled_delay = parse_millis(env::OTEL_BSP_SCHEDULE_DELAY, &raw)?;
        }
        if let Some(raw) = read(env, env::OTEL_BSP_MAX_EXPORT_BATCH_SIZE) {
            cfg.batch.max_export_batch_size =
                parse_count(env::OTEL_BSP_MAX_EXPORT_BATCH_SIZE, &raw)?;
        }
        if let Some(raw) = read(env, env::OTEL_BSP_EXPORT_TIMEOUT) {
            cfg.batch.export_timeout = parse_millis(env::OTEL_BSP_EXPORT_TIMEOUT, &raw)?;
        }
        // The OTel spec (and the SDK) clamp the batch to the queue rather than reject it.
        cfg.batch.max_export_batch_size = cfg
            .batch
            .max_export_batch_size
            .min(cfg.batch.max_queue_size);

        if let Some(raw) = read(env, env::OTEL_METRIC_EXPORT_INTERVAL) {
            cfg.metric_export_interval = parse_millis(env::OTEL_METRIC_EXPORT_INTERVAL, &raw)?;
        }
        if let Some(raw) = read(env, env::OTEL_METRIC_EXPORT_TIMEOUT) {
            cfg.metric_export_timeout = parse_millis(env::OTEL_METRIC_EXPORT_TIMEOUT, &raw)?;
        }

        cfg.sdk_disabled = read_bool(env, env::OTEL_SDK_DISABLED)?;
        // Either spelling turns debugging on.
        cfg.debug = read_bool(env, env::OTEL_DEBUG)? | read_bool(env, env::DEBUG_OTEL)?;
        cfg.nested_request_span = read_bool(env, env::USE_OTEL_LITELLM_REQUEST_SPAN)?;
        if let Some(raw) = read(env, env::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) {
            cfg.capture = parse_capture(&raw)?;
        }
        if let Some(raw) = read(env, env::OTEL_SEMCONV_STABILITY_OPT_IN) {
            cfg.semconv_latest = raw
                .split(',')
                .any(|entry| entry.trim() == SEMCONV_GEN_AI_LATEST);
        }
        if let Some(raw) = read(env, env::OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT) {
            cfg.attribute_value_length_limit =
                Some(parse_count(env::OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, &raw)?);
        }
        if let Some(raw) = read(env, env::OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT) {
            cfg.span_attribute_count_limit =
                parse_count(env::OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, &raw)?;
        }
        Ok(cfg)
    }
}

/// A variable's value, trimmed; `None` when unset or blank.
fn read(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The first set variable of a precedence chain, with its name.
pub(crate) fn first_of(env: &dyn Env, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|name| read(env, name).map(|value| (*name, value)))
}

fn resolve_exporter(env: &dyn Env) -> Result<ExporterKind, ConfigError> {
    let mut kind = match read(env, env::OTEL_EXPORTER) {
        None => ExporterKind::Console,
        Some(raw) => match raw.to_ascii_lowercase().as_str() {
            "console" => ExporterKind::Console,
            // `otlp` is what several LiteLLM examples write; it means the HTTP transport.
            "otlp_http" | "otlp" => ExporterKind::OtlpHttpProtobuf,
            "otlp_grpc" => ExporterKind::OtlpGrpc,
            "in_memory" => ExporterKind::InMemory,
            "none" => ExporterKind::None,
            _ => {
                return Err(ConfigError::UnknownValue {
                    var: env::OTEL_EXPORTER,
                    what: "exporter",
                    value: raw,
                    expected: "console, otlp_http, otlp_grpc, in_memory, none",
                });
            }
        },
    };

    if let Some((var, raw)) = first_of(
        env,
        &[
            env::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            env::OTEL_EXPORTER_OTLP_PROTOCOL,
        ],
    ) {
        let transport = match raw.to_ascii_lowercase().as_str() {
            "http/protobuf" => ExporterKind::OtlpHttpProtobuf,
            "http/json" => ExporterKind::OtlpHttpJson,
            "grpc" => ExporterKind::OtlpGrpc,
            _ => {
                return Err(ConfigError::UnknownValue {
                    var,
                    what: "protocol",
                    value: raw,
                    expected: "http/protobuf, http/json, grpc",
                });
            }
        };
        if !matches!(kind, ExporterKind::None | ExporterKind::InMemory) {
            kind = transport;
        }
    }

    let endpoint_set = first_of(
        env,
        &[
            env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            env::OTEL_EXPORTER_OTLP_ENDPOINT,
            env::OTEL_ENDPOINT,
        ],
    )
    .is_some();
    if endpoint_set && kind == ExporterKind::Console {
        kind = ExporterKind::OtlpHttpProtobuf;
    }
    Ok(kind)
}

fn resolve_endpoint(env: &dyn Env, kind: ExporterKind) -> Result<Option<Url>, ConfigError> {
    let traces = read(env, env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        .map(|v| (env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, v));
    let base = first_of(env, &[env::OTEL_EXPORTER_OTLP_ENDPOINT, env::OTEL_ENDPOINT]);
    match kind {
        ExporterKind::OtlpHttpProtobuf | ExporterKind::OtlpHttpJson => {
            if let Some((var, raw)) = traces {
                // A signal-specific endpoint is the full URL already (OTLP exporter spec).
                return parse_url(var, &raw).map(Some);
            }
            let Some((var, raw)) = base else {
                return parse_url("default endpoint", DEFAULT_HTTP_ENDPOINT).map(Some);
            };
            let mut url = parse_url(var, &raw)?;
            if !url.path().ends_with(TRACES_PATH) {
                let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
                url.set_path(&path);
            }
            Ok(Some(url))
        }
        ExporterKind::OtlpGrpc => {
            let Some((var, raw)) = traces.or(base) else {
                return parse_url("default endpoint", DEFAULT_GRPC_ENDPOINT).map(Some);
            };
            // gRPC routes by service name, not URL path: keep scheme, host and port only.
            let url = parse_url(var, &raw)?;
            parse_url(var, &url.origin().ascii_serialization()).map(Some)
        }
        ExporterKind::Console | ExporterKind::InMemory | ExporterKind::None => Ok(None),
    }
}

pub(crate) fn parse_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::InvalidUrl {
        var,
        value: raw.to_owned(),
        reason: e.to_string(),
    })?;
    // `localhost:4318` parses as a URL with scheme `localhost`; catch that here with a hint.
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::UnsupportedUrl {
            var,
            value: raw.to_owned(),
            problem: format!("has scheme \"{}\"", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::UnsupportedUrl {
            var,
            value: raw.to_owned(),
            problem: "has no host".to_owned(),
        });
    }
    Ok(url)
}

/// Parses a `k=v,k2=v2` list: keys trimmed, values trimmed then percent-decoded, blank
/// segments skipped.
fn parse_pairs(var: &'static str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for (index, segment) in raw.split(',').enumerate() {
        if segment.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            return Err(ConfigError::MissingEquals {
                var,
                segment: segment.trim().to_owned(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::EmptyKey {
                var,
                position: index + 1,
            });
        }
        let value = percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| ConfigError::NotUtf8 {
                var,
                key: key.to_owned(),
            })?;
        pairs.push((key.to_owned(), value.into_owned()));
    }
    Ok(pairs)
}

fn parse_headers(var: &'static str, raw: &str) -> Result<Headers, ConfigError> {
    let pairs = parse_pairs(var, raw)?;
    for (name, value) in &pairs {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::InvalidHeaderName {
                var,
                name: name.clone(),
            });
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(ConfigError::InvalidHeaderValue {
                var,
                name: name.clone(),
            });
        }
    }
    Ok(Headers(pairs))
}

fn parse_u64(var: &'static str, raw: &str, unit: &'static str) -> Result<u64, ConfigError> {
    let n: u64 = raw.parse().map_err(|_| ConfigError::InvalidNumber {
        var,
        value: raw.to_owned(),
        unit,
    })?;
    // Zero is never meaningful here: a zero timeout fails every export, a zero delay spins
    // (and makes tokio's interval panic), a zero queue drops everything.
    if n == 0 {
        return Err(ConfigError::Zero { var });
    }
    Ok(n)
}

fn parse_millis(var: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    parse_u64(var, raw, " of milliseconds").map(Duration::from_millis)
}

fn parse_count(var: &'static str, raw: &str) -> Result<usize, ConfigError> {
    let n = parse_u64(var, raw, "")?;
    usize::try_from(n).map_err(|_| ConfigError::InvalidNumber {
        var,
        value: raw.to_owned(),
        unit: "",
    })
}

fn parse_compression(var: &'static str, raw: &str) -> Result<Compression, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err(ConfigError::UnknownValue {
            var,
            what: "compression",
            value: raw.to_owned(),
            expected: "gzip, none",
        }),
    }
}

/// Reads a boolean variable: unset is false; anything but a known spelling is an error, so a
/// typo never silently means "off".
fn read_bool(env: &dyn Env, var: &'static str) -> Result<bool, ConfigError> {
    let Some(raw) = read(env, var) else {
        return Ok(false);
    };
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::UnknownValue {
            var,
            what: "boolean",
            value: raw,
            expected: "true, false, 1, 0, yes, no",
        }),
    }
}

fn parse_capture(raw: &str) -> Result<CaptureContent, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "span_only" | "true" => Ok(CaptureContent::SpanOnly),
        "no_content" | "false" => Ok(CaptureContent::NoContent),
        "event_only" => Ok(CaptureContent::EventOnly),
        "span_and_event" => Ok(CaptureContent::SpanAndEvent),
        _ => Err(ConfigError::UnknownValue {
            var: env::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
            what: "capture mode",
            value: raw.to_owned(),
            expected: "SPAN_ONLY, NO_CONTENT, EVENT_ONLY, SPAN_AND_EVENT, true, false",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::env::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn cfg(pairs: &[(&str, &str)]) -> OtelConfig {
        OtelConfig::from_env(&env_of(pairs)).expect("valid config")
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        OtelConfig::from_env(&env_of(pairs))
            .expect_err("invalid config")
            .to_string()
    }

    fn endpoint(c: &OtelConfig) -> &str {
        c.endpoint.as_ref().expect("endpoint").as_str()
    }

    #[test]
    fn empty_env_gives_defaults() {
        let c = cfg(&[]);
        assert_eq!(c, OtelConfig::default());
        assert_eq!(c.exporter, ExporterKind::Console);
        assert_eq!(c.endpoint, None);
        assert!(c.headers.is_empty());
        assert_eq!(c.timeout, Duration::from_millis(10_000));
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.service_name, "traceway");
        assert_eq!(c.service_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.batch.scheduled_delay, Duration::from_millis(1000));
        assert_eq!(c.batch.max_export_batch_size, 512);
        assert_eq!(c.batch.export_timeout, Duration::from_millis(30_000));
        assert_eq!(c.metric_export_interval, Duration::from_millis(60_000));
        assert_eq!(c.metric_export_timeout, Duration::from_millis(30_000));
        assert!(!c.sdk_disabled && !c.debug && !c.nested_request_span && !c.semconv_latest);
        assert_eq!(c.capture, CaptureContent::SpanOnly);
    }

    #[test]
    fn exporter_names() {
        let cases = [
            ("console", ExporterKind::Console),
            ("otlp_http", ExporterKind::OtlpHttpProtobuf),
            ("otlp", ExporterKind::OtlpHttpProtobuf),
            ("OTLP_GRPC", ExporterKind::OtlpGrpc),
            ("in_memory", ExporterKind::InMemory),
            ("none", ExporterKind::None),
        ];
        for (value, kind) in cases {
            assert_eq!(cfg(&[(OTEL_EXPORTER, value)]).exporter, kind, "{value}");
        }
    }

    #[test]
    fn protocol_wins_over_exporter_and_traces_protocol_wins_over_protocol() {
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_grpc"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpJson);
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_http"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
            (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "grpc"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpGrpc);
        let c = cfg(&[(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpProtobuf);
        assert_eq!(endpoint(&c), DEFAULT_HTTP_ENDPOINT);
    }

    #[test]
    fn protocol_does_not_revive_none_or_in_memory() {
        let c = cfg(&[
            (OTEL_EXPORTER, "none"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
        ]);
        assert_eq!(c.exporter, ExporterKind::None);
        let c = cfg(&[
            (OTEL_EXPORTER, "in_memory"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_ENDPOINT, "http://collector:4317"),
        ]);
        assert_eq!(c.exporter, ExporterKind::InMemory);
        assert_eq!(c.endpoint, None);
    }

    #[test]
    fn endpoint_switches_console_to_otlp_http() {
        let c = cfg(&[(OTEL_ENDPOINT, "http://collector:4318")]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpProtobuf);
        let c = cfg(&[
            (OTEL_EXPORTER, "console"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://c/x"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpProtobuf);
        assert_eq!(endpoint(&c), "http://c/x");
    }

    #[test]
    fn http_endpoint_normalisation() {
        let cases = [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
            ),
            (
                "https://example.com/otlp",
                "https://example.com/otlp/v1/traces",
            ),
            (
                "https://example.com/otlp/",
                "https://example.com/otlp/v1/traces",
            ),
        ];
        for (given, want) in cases {
            let c = cfg(&[(OTEL_EXPORTER, "otlp_http"), (OTEL_ENDPOINT, given)]);
            assert_eq!(endpoint(&c), want, "OTEL_ENDPOINT={given}");
            let c = cfg(&[(OTEL_EXPORTER_OTLP_ENDPOINT, given)]);
            assert_eq!(endpoint(&c), want, "OTEL_EXPORTER_OTLP_ENDPOINT={given}");
        }
    }

    #[test]
    fn traces_endpoint_is_used_as_given() {
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_http"),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "https://c.example/custom",
            ),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "https://other.example"),
        ]);
        assert_eq!(endpoint(&c), "https://c.example/custom");
    }

    #[test]
    fn endpoint_precedence() {
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://standard:4318"),
            (OTEL_ENDPOINT, "http://litellm:4318"),
        ]);
        assert_eq!(endpoint(&c), "http://standard:4318/v1/traces");
    }

    #[test]
    fn grpc_endpoint_drops_the_path() {
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_grpc"),
            (OTEL_ENDPOINT, "http://collector:4317/some/path"),
        ]);
        assert_eq!(endpoint(&c), "http://collector:4317/");
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "https://api.lmnr.ai:8443/v1/traces",
            ),
        ]);
        assert_eq!(endpoint(&c), "https://api.lmnr.ai:8443/");
        let c = cfg(&[(OTEL_EXPORTER, "otlp_grpc")]);
        assert_eq!(endpoint(&c), "http://localhost:4317/");
    }

    #[test]
    fn traceloop_preset() {
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_http"),
            (OTEL_ENDPOINT, "https://api.traceloop.com"),
            (OTEL_HEADERS, "Authorization=Bearer%20k"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpProtobuf);
        assert_eq!(endpoint(&c), "https://api.traceloop.com/v1/traces");
        assert_eq!(c.headers.get("authorization"), Some("Bearer k"));
        assert_eq!(
            c.headers.iter().collect::<Vec<_>>(),
            [("Authorization", "Bearer k")]
        );
    }

    #[test]
    fn laminar_preset() {
        let c = cfg(&[
            (OTEL_EXPORTER, "otlp_grpc"),
            (OTEL_ENDPOINT, "https://api.lmnr.ai:8443"),
            (OTEL_HEADERS, "authorization=Bearer lmnr-key"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpGrpc);
        assert_eq!(endpoint(&c), "https://api.lmnr.ai:8443/");
        assert_eq!(c.headers.get("Authorization"), Some("Bearer lmnr-key"));
    }

    #[test]
    fn plain_collector_presets() {
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector:4318"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpHttpJson);
        assert_eq!(endpoint(&c), "http://otel-collector:4318/v1/traces");
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector:4317"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
        ]);
        assert_eq!(c.exporter, ExporterKind::OtlpGrpc);
        assert_eq!(endpoint(&c), "http://otel-collector:4317/");
    }

    #[test]
    fn header_precedence_and_parsing() {
        let c = cfg(&[
            (OTEL_HEADERS, "a=1"),
            (OTEL_EXPORTER_OTLP_HEADERS, "b=2"),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, " c = 3 , d=x%2Cy%3Dz ,"),
        ]);
        assert_eq!(
            c.headers.iter().collect::<Vec<_>>(),
            [("c", "3"), ("d", "x,y=z")]
        );
        let c = cfg(&[(OTEL_HEADERS, "a=1"), (OTEL_EXPORTER_OTLP_HEADERS, "b=2")]);
        assert_eq!(c.headers.iter().collect::<Vec<_>>(), [("b", "2")]);
        // A value may contain '=' (base64 padding): only the first one splits.
        let c = cfg(&[(OTEL_HEADERS, "x-api-key=abc==")]);
        assert_eq!(c.headers.get("x-api-key"), Some("abc=="));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = cfg(&[
            (OTEL_ENDPOINT, "https://user:hunter2@collector.example"),
            (OTEL_HEADERS, "Authorization=Bearer%20supersecret"),
        ]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
    }

    #[test]
    fn resource_settings() {
        let c = cfg(&[
            (OTEL_SERVICE_NAME, "gateway"),
            (OTEL_ENVIRONMENT_NAME, "prod"),
            (OTEL_RESOURCE_ATTRIBUTES, "team=ml,region=eu%20west"),
        ]);
        assert_eq!(c.service_name, "gateway");
        assert_eq!(c.deployment_environment.as_deref(), Some("prod"));
        assert_eq!(
            c.resource_attributes,
            [
                ("team".to_owned(), "ml".to_owned()),
                ("region".to_owned(), "eu west".to_owned())
            ]
        );
    }

    #[test]
    fn service_name_from_resource_attributes_unless_set() {
        let c = cfg(&[(OTEL_RESOURCE_ATTRIBUTES, "service.name=from-attrs")]);
        assert_eq!(c.service_name, "from-attrs");
        let c = cfg(&[
            (OTEL_RESOURCE_ATTRIBUTES, "service.name=from-attrs"),
            (OTEL_SERVICE_NAME, "from-var"),
        ]);
        assert_eq!(c.service_name, "from-var");
    }

    #[test]
    fn numbers_compression_and_timeouts() {
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_TIMEOUT, "500"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "GZIP"),
            (OTEL_BSP_MAX_QUEUE_SIZE, "100"),
            (OTEL_BSP_SCHEDULE_DELAY, "250"),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "1000"),
            (OTEL_BSP_EXPORT_TIMEOUT, "2000"),
            (OTEL_METRIC_EXPORT_INTERVAL, "15000"),
            (OTEL_METRIC_EXPORT_TIMEOUT, "5000"),
        ]);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.batch.max_queue_size, 100);
        assert_eq!(c.batch.scheduled_delay, Duration::from_millis(250));
        // Clamped to the queue size.
        assert_eq!(c.batch.max_export_batch_size, 100);
        assert_eq!(c.batch.export_timeout, Duration::from_millis(2000));
        assert_eq!(c.metric_export_interval, Duration::from_millis(15_000));
        assert_eq!(c.metric_export_timeout, Duration::from_millis(5000));
        let c = cfg(&[
            (OTEL_EXPORTER_OTLP_TIMEOUT, "500"),
            (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "700"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
            (OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "none"),
        ]);
        assert_eq!(c.timeout, Duration::from_millis(700));
        assert_eq!(c.compression, Compression::None);
    }

    #[test]
    fn flags_and_modes() {
        let c = cfg(&[
            (OTEL_SDK_DISABLED, "true"),
            (OTEL_DEBUG, "True"),
            (USE_OTEL_LITELLM_REQUEST_SPAN, "1"),
            (
                OTEL_SEMCONV_STABILITY_OPT_IN,
                "http, gen_ai_latest_experimental",
            ),
            (
                OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
                "NO_CONTENT",
            ),
        ]);
        assert!(c.sdk_disabled && c.debug && c.nested_request_span && c.semconv_latest);
        assert_eq!(c.capture, CaptureContent::NoContent);
        assert!(cfg(&[(DEBUG_OTEL, "yes")]).debug);
        assert!(!cfg(&[(OTEL_DEBUG, "false")]).debug);
        assert!(!cfg(&[(OTEL_SEMCONV_STABILITY_OPT_IN, "http")]).semconv_latest);
        let capture = |v| cfg(&[(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, v)]).capture;
        assert_eq!(capture("true"), CaptureContent::SpanOnly);
        assert_eq!(capture("False"), CaptureContent::NoContent);
        assert_eq!(capture("span_only"), CaptureContent::SpanOnly);
        assert_eq!(capture("EVENT_ONLY"), CaptureContent::EventOnly);
        assert_eq!(capture("SPAN_AND_EVENT"), CaptureContent::SpanAndEvent);
    }

    #[test]
    fn blank_variables_count_as_unset() {
        let c = cfg(&[
            (OTEL_EXPORTER, " "),
            (OTEL_ENDPOINT, ""),
            (OTEL_HEADERS, ""),
        ]);
        assert_eq!(c, OtelConfig::default());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_bad_part() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(OTEL_EXPORTER, "otlp_htp")],
                "OTEL_EXPORTER: unknown exporter \"otlp_htp\" (expected console, otlp_http, otlp_grpc, in_memory, none)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_PROTOCOL, "http")],
                "OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol \"http\" (expected http/protobuf, http/json, grpc)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "thrift")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unknown protocol \"thrift\" (expected http/protobuf, http/json, grpc)",
            ),
            (
                &[(OTEL_HEADERS, "foo")],
                "OTEL_HEADERS: segment \"foo\" has no '=' (expected key=value)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_HEADERS, "a=1, =secret")],
                "OTEL_EXPORTER_OTLP_HEADERS: segment 2 has an empty key (expected key=value)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_HEADERS, "bad header=1")],
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS: \"bad header\" is not a valid HTTP header name",
            ),
            (
                &[(OTEL_HEADERS, "Authorization=Bearer%0Asecret")],
                "OTEL_HEADERS: the value of header \"Authorization\" is not a valid HTTP header value (control characters are not allowed)",
            ),
            (
                &[(OTEL_HEADERS, "Authorization=%FF%FE")],
                "OTEL_HEADERS: the value of \"Authorization\" is not valid UTF-8 after percent-decoding",
            ),
            (
                &[(OTEL_ENDPOINT, "http://")],
                "OTEL_ENDPOINT: \"http://\" is not a valid URL (empty host)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_ENDPOINT, "not a url")],
                "OTEL_EXPORTER_OTLP_ENDPOINT: \"not a url\" is not a valid URL (relative URL without a base)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "localhost:4318")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: \"localhost:4318\" has scheme \"localhost\" (expected http://host:port or https://host)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TIMEOUT, "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT: \"10s\" is not a whole number of milliseconds",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "0")],
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: must be greater than 0",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_COMPRESSION, "zstd")],
                "OTEL_EXPORTER_OTLP_COMPRESSION: unknown compression \"zstd\" (expected gzip, none)",
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "br")],
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: unknown compression \"br\" (expected gzip, none)",
            ),
            (
                &[(OTEL_RESOURCE_ATTRIBUTES, "team=ml,oops")],
                "OTEL_RESOURCE_ATTRIBUTES: segment \"oops\" has no '=' (expected key=value)",
            ),
            (
                &[(OTEL_BSP_MAX_QUEUE_SIZE, "lots")],
                "OTEL_BSP_MAX_QUEUE_SIZE: \"lots\" is not a whole number",
            ),
            (
                &[(OTEL_BSP_SCHEDULE_DELAY, "-5")],
                "OTEL_BSP_SCHEDULE_DELAY: \"-5\" is not a whole number of milliseconds",
            ),
            (
                &[(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "1.5")],
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: \"1.5\" is not a whole number",
            ),
            (
                &[(OTEL_BSP_EXPORT_TIMEOUT, "0")],
                "OTEL_BSP_EXPORT_TIMEOUT: must be greater than 0",
            ),
            (
                &[(OTEL_METRIC_EXPORT_INTERVAL, "1m")],
                "OTEL_METRIC_EXPORT_INTERVAL: \"1m\" is not a whole number of milliseconds",
            ),
            (
                &[(OTEL_METRIC_EXPORT_TIMEOUT, "x")],
                "OTEL_METRIC_EXPORT_TIMEOUT: \"x\" is not a whole number of milliseconds",
            ),
            (
                &[(OTEL_SDK_DISABLED, "maybe")],
                "OTEL_SDK_DISABLED: unknown boolean \"maybe\" (expected true, false, 1, 0, yes, no)",
            ),
            (
                &[(DEBUG_OTEL, "verbose")],
                "DEBUG_OTEL: unknown boolean \"verbose\" (expected true, false, 1, 0, yes, no)",
            ),
            (
                &[(USE_OTEL_LITELLM_REQUEST_SPAN, "y")],
                "USE_OTEL_LITELLM_REQUEST_SPAN: unknown boolean \"y\" (expected true, false, 1, 0, yes, no)",
            ),
            (
                &[(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, "ALL")],
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: unknown capture mode \"ALL\" (expected SPAN_ONLY, NO_CONTENT, EVENT_ONLY, SPAN_AND_EVENT, true, false)",
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(err(pairs), *want);
        }
    }

    #[test]
    fn header_errors_never_show_the_value() {
        for raw in [
            "Authorization=Bearer%0Dsupersecret",
            "=supersecret",
            "Authorization=supersecret%FF",
        ] {
            let e = OtelConfig::from_env(&env_of(&[(OTEL_HEADERS, raw)])).expect_err(raw);
            assert_eq!(e.var(), OTEL_HEADERS);
            assert!(!e.to_string().contains("supersecret"), "{e}");
            assert!(!format!("{e:?}").contains("supersecret"), "{e:?}");
        }
    }
}
