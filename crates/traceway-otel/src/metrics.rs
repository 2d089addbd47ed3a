//! Metrics (TELEMETRY.md §7): the OTel GenAI client metrics (v1.41 names and recommended
//! buckets), exported over OTLP/HTTP with the same settings as spans, and rendered for
//! Prometheus on the proxy's `/metrics`, with the span pipeline's own counters.
//!
//! Labels stay low-cardinality: operation, provider, request and response model, error class
//! and team — never addresses, keys or prompts.

use crate::config::{Compression, ExporterKind, OtelConfig, TRACES_PATH};
use crate::exporter::{ExporterError, Telemetry, resource};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram as OtelHistogram, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

/// `gen_ai.client.operation.duration` bucket bounds (s): 0.01 … 81.92, doubling.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.client.token.usage` bucket bounds: 1, 4, 16 … 67108864.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket bounds (s) of the per-chunk stream timings.
pub const CHUNK_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
];

/// Metric names (OTel GenAI semconv v1.41).
pub mod names {
    /// Duration of one client operation.
    pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Tokens used, by `gen_ai.token.type`.
    pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Time to the first chunk of a stream.
    pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
    /// Time between chunks of a stream after the first.
    pub const TIME_PER_OUTPUT_CHUNK: &str = "gen_ai.client.operation.time_per_output_chunk";
    /// The token type label.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
}

/// The low-cardinality labels of one operation.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub struct OperationLabels {
    /// `chat`, `text_completion`, `embeddings`.
    pub operation: &'static str,
    /// `gen_ai.provider.name`.
    pub provider: &'static str,
    /// Model asked of the provider.
    pub request_model: String,
    /// Model that answered, when known.
    pub response_model: Option<String>,
    /// Error class, on failure.
    pub error_type: Option<&'static str>,
    /// Team of the caller's key, when known.
    pub team_id: Option<String>,
}

/// Prometheus label names of [`OperationLabels`] (Prometheus names cannot hold dots).
mod prom_names {
    pub const OPERATION: &str = "gen_ai_operation_name";
    pub const PROVIDER: &str = "gen_ai_provider_name";
    pub const REQUEST_MODEL: &str = "gen_ai_request_model";
    pub const RESPONSE_MODEL: &str = "gen_ai_response_model";
    pub const ERROR_TYPE: &str = "error_type";
    pub const TEAM_ID: &str = "metadata_user_api_key_team_id";
    pub const TOKEN_TYPE: &str = "gen_ai_token_type";
}

/// One operation's Prometheus label set, built once per call and shared by all its records:
/// static names and borrowed-once values instead of a `Vec` of fresh strings per record.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PromLabels {
    operation: &'static str,
    provider: &'static str,
    request_model: String,
    response_model: Option<String>,
    error_type: Option<&'static str>,
    team_id: Option<String>,
}

impl EncodeLabelSet for PromLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let labels = [
            (prom_names::OPERATION, Some(self.operation)),
            (prom_names::PROVIDER, Some(self.provider)),
            (prom_names::REQUEST_MODEL, Some(self.request_model.as_str())),
            (prom_names::RESPONSE_MODEL, self.response_model.as_deref()),
            (prom_names::ERROR_TYPE, self.error_type),
            (prom_names::TEAM_ID, self.team_id.as_deref()),
        ];
        for (key, value) in labels {
            if let Some(value) = value {
                (key, value).encode(encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

/// The token type label of `gen_ai.client.token.usage`.
type TokenTypeLabel = [(&'static str, &'static str); 1];

impl OperationLabels {
    fn prometheus(&self) -> PromLabels {
        PromLabels {
            operation: self.operation,
            provider: self.provider,
            request_model: self.request_model.clone(),
            response_model: self.response_model.clone(),
            error_type: self.error_type,
            team_id: self.team_id.clone(),
        }
    }

    fn otel(&self) -> Vec<KeyValue> {
        let mut v = Vec::with_capacity(7);
        v.extend([
            KeyValue::new(crate::keys::GEN_AI_OPERATION_NAME, self.operation),
            KeyValue::new(crate::keys::GEN_AI_PROVIDER_NAME, self.provider),
            KeyValue::new(
                crate::keys::GEN_AI_REQUEST_MODEL,
                self.request_model.clone(),
            ),
        ]);
        if let Some(m) = &self.response_model {
            v.push(KeyValue::new(crate::keys::GEN_AI_RESPONSE_MODEL, m.clone()));
        }
        if let Some(e) = self.error_type {
            v.push(KeyValue::new(crate::keys::ERROR_TYPE, e));
        }
        if let Some(t) = &self.team_id {
            v.push(KeyValue::new(
                crate::keys::METADATA_USER_API_KEY_TEAM_ID,
                t.clone(),
            ));
        }
        v
    }
}

/// What one finished operation measured, recorded in one go by [`Metrics::record_call`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMeasures {
    /// Whole duration, seconds.
    pub seconds: f64,
    /// Input and output tokens, when the answer said.
    pub tokens: Option<(u64, u64)>,
    /// A stream's time to its first chunk, seconds.
    pub time_to_first_chunk: Option<f64>,
    /// A stream's mean time per chunk after the first, seconds.
    pub time_per_output_chunk: Option<f64>,
}

/// The label set of `traceway_proxy_requests`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
    model_group: String,
}

type HistogramFamily = Family<PromLabels, Histogram, fn() -> Histogram>;
type TokenFamily = Family<(PromLabels, TokenTypeLabel), Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn token_histogram() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}
fn chunk_histogram() -> Histogram {
    Histogram::new(CHUNK_BUCKETS)
}

struct OtlpInstruments {
    provider: SdkMeterProvider,
    duration: OtelHistogram<f64>,
    tokens: OtelHistogram<u64>,
    first_chunk: OtelHistogram<f64>,
    per_chunk: OtelHistogram<f64>,
}

struct Inner {
    registry: Registry,
    duration: HistogramFamily,
    tokens: TokenFamily,
    first_chunk: HistogramFamily,
    per_chunk: HistogramFamily,
    requests: Family<RequestLabels, Counter>,
    otlp: Option<OtlpInstruments>,
    series: RwLock<SeriesCache>,
}

/// Label sets seen so far, each with its recording handles.
type SeriesCache = HashMap<OperationLabels, Arc<Series>, foldhash::fast::RandomState>;

/// How many label sets keep their handles; past it (a flood of unknown model names, say) calls
/// are recorded through the label lookups directly.
const SERIES_CACHED: usize = 1024;

/// The recording handles of one label set, each taken on its first use (a series holding no
/// measurement would otherwise be exported with a zero count).
#[derive(Default)]
struct Series {
    duration: OnceLock<Histogram>,
    first_chunk: OnceLock<Histogram>,
    per_chunk: OnceLock<Histogram>,
    tokens: OnceLock<[Histogram; 2]>,
    otlp_duration: OnceLock<BoundHistogram<f64>>,
    otlp_first_chunk: OnceLock<BoundHistogram<f64>>,
    otlp_per_chunk: OnceLock<BoundHistogram<f64>>,
    otlp_tokens: OnceLock<[BoundHistogram<u64>; 2]>,
}

/// The metrics of one process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("otlp", &self.inner.otlp.is_some())
            .finish()
    }
}

/// The OTLP/HTTP metrics endpoint for a traces endpoint: `…/v1/traces` becomes `…/v1/metrics`.
fn metrics_endpoint(cfg: &OtelConfig) -> Option<String> {
    let url = cfg.endpoint.as_ref()?;
    let s = url.as_str();
    Some(match s.strip_suffix(TRACES_PATH) {
        Some(base) => format!("{base}/v1/metrics"),
        None => format!("{}/v1/metrics", s.trim_end_matches('/')),
    })
}

fn otlp_instruments(cfg: &OtelConfig) -> Result<Option<OtlpInstruments>, ExporterError> {
    let protocol = match cfg.exporter {
        ExporterKind::OtlpHttpProtobuf => Protocol::HttpBinary,
        ExporterKind::OtlpHttpJson => Protocol::HttpJson,
        ExporterKind::OtlpGrpc => return Ok(Some(instruments(grpc_provider(cfg)?))),
        _ => return Ok(None),
    };
    let Some(endpoint) = metrics_endpoint(cfg) else {
        return Ok(None);
    };
    let headers: HashMap<String, String> = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.replace('%', "%25")))
        .collect();
    let timeout = cfg.timeout;
    let gzip = cfg.compression == Compression::Gzip;
    let interval = cfg.metric_export_interval;
    let tls = cfg.tls.rustls().map_err(|e| ExporterError::Build {
        what: "OTLP/HTTP metrics",
        reason: e.to_string(),
    })?;
    let res = resource(cfg);
    // The blocking client must be created (and later dropped) off any async runtime.
    let build = move || -> Result<SdkMeterProvider, ExporterError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| ExporterError::Build {
                what: "OTLP/HTTP metrics",
                reason: format!("HTTP client: {e}"),
            })?;
        let mut builder = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .with_headers(headers)
            .with_http_client(client);
        if gzip {
            builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let exporter = builder.build().map_err(|e| ExporterError::Build {
            what: "OTLP/HTTP metrics",
            reason: e.to_string(),
        })?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        Ok(SdkMeterProvider::builder()
            .with_resource(res)
            .with_reader(reader)
            .build())
    };
    let provider = std::thread::Builder::new()
        .name("traceway-otel-metrics-setup".to_owned())
        .spawn(build)
        .map_err(|e| ExporterError::Thread(format!("starting the metrics exporter setup: {e}")))?
        .join()
        .map_err(|_| ExporterError::Thread("the metrics exporter setup panicked".to_owned()))??;
    Ok(Some(instruments(provider)))
}

/// A meter provider exporting over OTLP/gRPC. tonic needs a tokio runtime, so the reader is the
/// SDK's async-runtime variant: its exports run as a background task, never on a request task.
fn grpc_provider(cfg: &OtelConfig) -> Result<SdkMeterProvider, ExporterError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ExporterError::GrpcNeedsRuntime);
    }
    let (endpoint, https, metadata) = crate::exporter::grpc_target(cfg);
    let mut builder = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(cfg.timeout)
        .with_metadata(metadata);
    if https {
        builder = builder.with_tls_config(cfg.tls.tonic());
    }
    if cfg.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = builder.build().map_err(|e| ExporterError::Build {
        what: "OTLP/gRPC metrics",
        reason: e.to_string(),
    })?;
    let reader =
        opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_interval(cfg.metric_export_interval)
        .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource(cfg))
        .with_reader(reader)
        .build())
}

fn instruments(provider: SdkMeterProvider) -> OtlpInstruments {
    let meter = provider.meter("traceway");
    OtlpInstruments {
        duration: meter
            .f64_histogram(names::OPERATION_DURATION)
            .with_unit("s")
            .with_description("GenAI operation duration")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build(),
        tokens: meter
            .u64_histogram(names::TOKEN_USAGE)
            .with_unit("{token}")
            .with_description("Number of input and output tokens used")
            .with_boundaries(TOKEN_BUCKETS.to_vec())
            .build(),
        first_chunk: meter
            .f64_histogram(names::TIME_TO_FIRST_CHUNK)
            .with_unit("s")
            .with_description("Time to receive the first chunk of a streamed response")
            .with_boundaries(CHUNK_BUCKETS.to_vec())
            .build(),
        per_chunk: meter
            .f64_histogram(names::TIME_PER_OUTPUT_CHUNK)
            .with_unit("s")
            .with_description("Time between chunks of a streamed response after the first")
            .with_boundaries(CHUNK_BUCKETS.to_vec())
            .build(),
        provider,
    }
}

impl Metrics {
    /// Metrics for Prometheus, and over OTLP/HTTP too when `otlp` names an OTLP/HTTP destination.
    pub fn new(otlp: Option<&OtelConfig>) -> Result<Metrics, ExporterError> {
        let mut registry = Registry::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let tokens: TokenFamily = Family::new_with_constructor(token_histogram);
        let first_chunk: HistogramFamily = Family::new_with_constructor(chunk_histogram);
        let per_chunk: HistogramFamily = Family::new_with_constructor(chunk_histogram);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "GenAI operation duration",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used",
            tokens.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time to receive the first chunk of a streamed response",
            Unit::Seconds,
            first_chunk.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_time_per_output_chunk",
            "Time between chunks of a streamed response after the first",
            Unit::Seconds,
            per_chunk.clone(),
        );
        registry.register(
            "traceway_proxy_requests",
            "Proxy requests by route, status and model group",
            requests.clone(),
        );
        let otlp = match otlp {
            Some(cfg) if !cfg.sdk_disabled => otlp_instruments(cfg)?,
            _ => None,
        };
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                duration,
                tokens,
                first_chunk,
                per_chunk,
                requests,
                otlp,
                series: RwLock::new(SeriesCache::default()),
            }),
        })
    }

    /// Records one finished operation: its duration, tokens and stream timings, all under one
    /// label set. Each label set's handles are looked up once and kept, so a call costs one
    /// cache lookup instead of a hashed label lookup per record in each metrics library.
    pub fn record_call(&self, labels: &OperationLabels, m: CallMeasures) {
        // Past the cache, fresh handles record this one call.
        let series = self.series(labels).unwrap_or_default();
        self.record_into(&series, labels, m);
    }

    /// The cached handles of `labels`, added on first sight while the cache has room.
    fn series(&self, labels: &OperationLabels) -> Option<Arc<Series>> {
        let cache = &self.inner.series;
        if let Some(found) = cache.read().ok()?.get(labels) {
            return Some(Arc::clone(found));
        }
        let mut cache = cache.write().ok()?;
        if cache.len() >= SERIES_CACHED {
            return None;
        }
        Some(Arc::clone(cache.entry(labels.clone()).or_default()))
    }

    fn record_into(&self, series: &Series, labels: &OperationLabels, m: CallMeasures) {
        let inner = &*self.inner;
        let prom = |family: &HistogramFamily| family.get_or_create(&labels.prometheus()).clone();
        series
            .duration
            .get_or_init(|| prom(&inner.duration))
            .observe(m.seconds);
        if let Some(t) = m.time_to_first_chunk {
            series
                .first_chunk
                .get_or_init(|| prom(&inner.first_chunk))
                .observe(t);
        }
        if let Some(t) = m.time_per_output_chunk {
            series
                .per_chunk
                .get_or_init(|| prom(&inner.per_chunk))
                .observe(t);
        }
        if let Some((input, output)) = m.tokens {
            let [i, o] = series.tokens.get_or_init(|| {
                let p = labels.prometheus();
                ["input", "output"].map(|kind| {
                    let key = (p.clone(), [(prom_names::TOKEN_TYPE, kind)]);
                    inner.tokens.get_or_create(&key).clone()
                })
            });
            i.observe(input as f64);
            o.observe(output as f64);
        }
        let Some(o) = &inner.otlp else {
            return;
        };
        series
            .otlp_duration
            .get_or_init(|| o.duration.bind(&labels.otel()))
            .record(m.seconds);
        if let Some(t) = m.time_to_first_chunk {
            series
                .otlp_first_chunk
                .get_or_init(|| o.first_chunk.bind(&labels.otel()))
                .record(t);
        }
        if let Some(t) = m.time_per_output_chunk {
            series
                .otlp_per_chunk
                .get_or_init(|| o.per_chunk.bind(&labels.otel()))
                .record(t);
        }
        if let Some((input, output)) = m.tokens {
            let [i, out] = series.otlp_tokens.get_or_init(|| {
                ["input", "output"].map(|kind| {
                    let mut a = labels.otel();
                    a.push(KeyValue::new(names::TOKEN_TYPE, kind));
                    o.tokens.bind(&a)
                })
            });
            i.record(input);
            out.record(output);
        }
    }

    /// Counts one proxy request.
    pub fn record_request(&self, route: &str, status: u16, model_group: &str) {
        let labels = RequestLabels {
            route: route.to_owned(),
            status,
            model_group: model_group.to_owned(),
        };
        self.inner.requests.get_or_create(&labels).inc();
    }

    /// The Prometheus (OpenMetrics) text of every metric, plus the span pipeline's counters.
    pub fn render(&self, telemetry: Option<&Telemetry>) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        // The span counters live in the pipeline; they go before the closing `# EOF`.
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_owned();
        let mut text = body;
        if let Some(t) = telemetry {
            for (name, help, value) in [
                (
                    crate::exporter::SPANS_DROPPED_METRIC,
                    "Spans dropped because an export queue was full",
                    t.spans_dropped(),
                ),
                (
                    crate::exporter::SPANS_EXPORT_FAILED_METRIC,
                    "Spans lost to failed exports",
                    t.spans_export_failed(),
                ),
                (
                    "traceway_otel_spans_exported_total",
                    "Spans exported",
                    t.spans_exported(),
                ),
            ] {
                let base = name.strip_suffix("_total").unwrap_or(name);
                let _ = writeln!(
                    text,
                    "# HELP {base} {help}.\n# TYPE {base} counter\n{base}_total {value}"
                );
            }
            let _ = writeln!(
                text,
                "# HELP traceway_otel_queue_depth Spans queued for export.\n# TYPE traceway_otel_queue_depth gauge\ntraceway_otel_queue_depth {}",
                t.queue_depth()
            );
        }
        text.push_str("# EOF\n");
        text
    }

    /// Flushes and stops the OTLP metrics export.
    pub fn shutdown(&self) {
        if let Some(o) = &self.inner.otlp {
            let _ = o.provider.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prometheus_names_are_the_dotted_keys_with_underscores() {
        for (prom, dotted) in [
            (prom_names::OPERATION, crate::keys::GEN_AI_OPERATION_NAME),
            (prom_names::PROVIDER, crate::keys::GEN_AI_PROVIDER_NAME),
            (prom_names::REQUEST_MODEL, crate::keys::GEN_AI_REQUEST_MODEL),
            (
                prom_names::RESPONSE_MODEL,
                crate::keys::GEN_AI_RESPONSE_MODEL,
            ),
            (prom_names::ERROR_TYPE, crate::keys::ERROR_TYPE),
            (
                prom_names::TEAM_ID,
                crate::keys::METADATA_USER_API_KEY_TEAM_ID,
            ),
            (prom_names::TOKEN_TYPE, names::TOKEN_TYPE),
        ] {
            assert_eq!(prom, dotted.replace('.', "_"));
        }
    }

    #[test]
    fn one_call_records_every_series_under_one_label_set() {
        let m = Metrics::new(None).unwrap();
        let labels = OperationLabels {
            operation: "chat",
            provider: "openai",
            request_model: "gpt-4o".into(),
            response_model: Some("gpt-4o-2024".into()),
            error_type: None,
            team_id: Some("team-a".into()),
        };
        let measures = CallMeasures {
            seconds: 0.5,
            tokens: Some((12, 34)),
            time_to_first_chunk: Some(0.05),
            time_per_output_chunk: Some(0.01),
        };
        m.record_call(&labels, measures);
        m.record_call(&labels, measures);
        m.record_request("/v1/chat/completions", 200, "gpt");
        let text = m.render(None);
        let set = "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"gpt-4o\",gen_ai_response_model=\"gpt-4o-2024\",metadata_user_api_key_team_id=\"team-a\"";
        assert!(
            text.contains(&format!(
                "gen_ai_client_operation_duration_seconds_count{{{set}}} 2"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "gen_ai_client_token_usage_sum{{{set},gen_ai_token_type=\"input\"}} 24"
        )));
        assert!(text.contains(&format!(
            "gen_ai_client_token_usage_sum{{{set},gen_ai_token_type=\"output\"}} 68"
        )));
        assert!(text.contains(&format!(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count{{{set}}} 2"
        )));
        assert!(!text.contains("error_type"), "absent labels are left out");
        assert!(text.contains(
            "traceway_proxy_requests_total{route=\"/v1/chat/completions\",status=\"200\",model_group=\"gpt\"} 1"
        ));
    }

    #[test]
    fn series_appear_on_first_use_and_past_the_cache_too() {
        let m = Metrics::new(None).unwrap();
        let labels = |model: String| OperationLabels {
            operation: "chat",
            provider: "openai",
            request_model: model,
            ..OperationLabels::default()
        };
        m.record_call(
            &labels("whole".into()),
            CallMeasures {
                seconds: 0.1,
                ..CallMeasures::default()
            },
        );
        let text = m.render(None);
        assert!(text.contains("gen_ai_request_model=\"whole\"} 1"), "{text}");
        assert!(
            !text.contains("time_to_first_chunk_seconds_count{")
                && !text.contains("token_usage_count{"),
            "a series nothing was measured in is not shown: {text}"
        );
        for i in 0..SERIES_CACHED + 10 {
            let measures = CallMeasures {
                seconds: 0.1,
                tokens: Some((1, 2)),
                ..CallMeasures::default()
            };
            m.record_call(&labels(format!("model-{i}")), measures);
            m.record_call(&labels(format!("model-{i}")), measures);
        }
        let text = m.render(None);
        let past = SERIES_CACHED + 9;
        assert!(
            text.contains(&format!(
                "gen_ai_client_operation_duration_seconds_count{{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"model-{past}\"}} 2"
            )),
            "label sets past the cache are still recorded"
        );
        assert!(text.contains(&format!(
            "gen_ai_client_token_usage_sum{{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"model-{past}\",gen_ai_token_type=\"output\"}} 4"
        )));
    }
}
