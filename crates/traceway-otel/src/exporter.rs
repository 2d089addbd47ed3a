//! The span pipeline built from an [`OtelConfig`]: tracer provider, batch processor, exporter.
//!
//! ```text
//! span.end() ─▶ QueueGate ─▶ batch processor ─▶ CountingExporter ─▶ console / OTLP / memory
//!               (counts drops)  (own thread or     (counts exported and
//!                               tokio task)         failed spans)
//! ```
//!
//! Exports never run on the thread that ends a span: HTTP and console exports run on the SDK's
//! batch thread, gRPC exports on a background tokio task. The SDK's batch processors count
//! dropped spans in a private field that nothing can read, so `QueueGate` keeps its own
//! count of spans between `span.end()` and the end of their export, and drops (and counts) a
//! span when that count would exceed `OTEL_BSP_MAX_QUEUE_SIZE`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, InMemorySpanExporter, Sampler, SdkTracer,
    SdkTracerProvider, SimpleSpanProcessor, Span, SpanData, SpanExporter, SpanLimits,
    SpanProcessor, span_processor_with_async_runtime,
};
use opentelemetry_sdk::{Resource, runtime};

use crate::config::{
    Compression, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, ExporterKind, OtelConfig,
};
use crate::console::ConsoleExporter;
use crate::dialect::DialectExporter;

/// Name under which the proxy exposes [`Telemetry::spans_dropped`] as a metric.
pub const SPANS_DROPPED_METRIC: &str = "traceway_otel_spans_dropped_total";
/// Name under which the proxy exposes [`Telemetry::spans_export_failed`] as a metric.
pub const SPANS_EXPORT_FAILED_METRIC: &str = "traceway_otel_spans_export_failed_total";
/// Instrumentation scope of every Traceway span.
pub const INSTRUMENTATION_SCOPE: &str = "traceway";

/// Resource keys set here (OTel resource semconv).
const RESOURCE_SERVICE_VERSION: &str = "service.version";
const RESOURCE_DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment";

/// Extra room in the SDK processor's channel beyond `max_queue_size`. The gate never lets more
/// than `max_queue_size` spans in, so the channel always has room for the flush and shutdown
/// messages that the async-runtime processor sends through the same channel.
const CONTROL_HEADROOM: usize = 16;
/// How much longer than the processor's own timeout the caller waits for flush or shutdown,
/// so that the processor's timeout error, when it has one, is the one reported.
const WAIT_GRACE: Duration = Duration::from_millis(250);

/// Why the pipeline could not be built, flushed or shut down. Messages never contain header
/// values.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// gRPC export was asked for outside a tokio runtime.
    #[error(
        "OTLP gRPC export needs a tokio runtime: initialise telemetry from inside one (for example from #[tokio::main]), or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    )]
    GrpcNeedsRuntime,
    /// The exporter or its HTTP client could not be built.
    #[error("could not build the {what} exporter: {reason}")]
    Build {
        /// Which exporter.
        what: &'static str,
        /// Why not.
        reason: String,
    },
    /// A helper thread could not be started or died.
    #[error("telemetry helper thread failed: {0}")]
    Thread(String),
    /// Flushing did not finish in time.
    #[error(
        "flushing telemetry did not finish within {0:?} (is the collector reachable?); spans still queued will be retried or dropped"
    )]
    FlushTimeout(Duration),
    /// Flushing finished with an error.
    #[error("flushing telemetry failed: {0}")]
    Flush(String),
    /// Shutdown did not finish in time.
    #[error(
        "telemetry shutdown did not finish within {0:?} (is the collector reachable?); spans still queued are lost"
    )]
    ShutdownTimeout(Duration),
    /// Shutdown finished with an error.
    #[error("telemetry shutdown failed: {0}")]
    Shutdown(String),
}

/// The running span pipeline. Cheap to clone; clones share one pipeline.
///
/// Call [`Telemetry::shutdown`] before exit to flush queued spans. From inside a tokio
/// runtime, flush and shutdown block the calling thread for at most `OTEL_BSP_EXPORT_TIMEOUT`;
/// with the gRPC exporter on a current-thread runtime, call them from
/// `tokio::task::spawn_blocking`, because the export task needs the runtime thread.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    in_memory: Option<InMemorySpanExporter>,
    /// One per destination.
    pipelines: Vec<Arc<Pipeline>>,
    exporter: ExporterKind,
    debug: bool,
    /// Bound on flush and shutdown (`OTEL_BSP_EXPORT_TIMEOUT`).
    flush_timeout: Duration,
    /// Result of the first shutdown, so that later calls return at once.
    shutdown: Mutex<Option<Result<(), String>>>,
    /// The settings the pipeline was built from (span shape settings are read from here).
    config: OtelConfig,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporter", &self.inner.exporter)
            .field("spans_exported", &self.spans_exported())
            .field("spans_dropped", &self.spans_dropped())
            .field("spans_export_failed", &self.spans_export_failed())
            .finish()
    }
}

impl Telemetry {
    /// Builds the pipeline that `cfg` describes; `None` when telemetry is off
    /// (`OTEL_SDK_DISABLED=true` or `OTEL_EXPORTER=none`).
    ///
    /// Works from plain threads and from inside a tokio runtime. The gRPC exporter needs a
    /// tokio runtime (its exports run as a task on it) and fails with
    /// [`ExporterError::GrpcNeedsRuntime`] without one.
    pub fn init(cfg: &OtelConfig) -> Result<Option<Telemetry>, ExporterError> {
        Self::init_with(cfg, Vec::new())
    }

    /// Like [`Telemetry::init`], with more span destinations beside the configured exporter
    /// (the proxy's in-memory trace view), each copied only the spans it asks for
    /// ([`SelectiveProcessor::wants`]). With `OTEL_EXPORTER=none` and extra destinations,
    /// spans go to those alone; `OTEL_SDK_DISABLED=true` still turns everything off.
    pub fn init_with(
        cfg: &OtelConfig,
        extra: Vec<Box<dyn SelectiveProcessor>>,
    ) -> Result<Option<Telemetry>, ExporterError> {
        Self::init_destinations(std::slice::from_ref(cfg), extra)
    }

    /// One pipeline fanning out to several destinations (one per tracing callback), each with
    /// its own exporter, dialect, queue and counters, so a dead one never starves the others.
    /// Span-shape settings (capture, limits, semconv) are read from the first destination.
    pub fn init_destinations(
        destinations: &[OtelConfig],
        extra: Vec<Box<dyn SelectiveProcessor>>,
    ) -> Result<Option<Telemetry>, ExporterError> {
        let Some(first) = destinations.first() else {
            return Ok(None);
        };
        let live: Vec<&OtelConfig> = destinations
            .iter()
            .filter(|c| c.exporter != ExporterKind::None)
            .collect();
        if first.sdk_disabled || (live.is_empty() && extra.is_empty()) {
            return Ok(None);
        }
        let mut processors = Vec::with_capacity(live.len());
        let mut pipelines = Vec::with_capacity(live.len());
        let mut in_memory = None;
        for cfg in live {
            let pipeline = Arc::new(Pipeline::new(cfg.batch.max_queue_size, cfg.debug));
            let (processor, memory) = destination_processor(cfg, &pipeline)?;
            processors.push(processor);
            pipelines.push(pipeline);
            in_memory = in_memory.or(memory);
        }
        Self::finish(first, processors, extra, in_memory, pipelines)
    }

    fn finish(
        cfg: &OtelConfig,
        processors: Vec<Box<dyn SpanProcessor>>,
        extra: Vec<Box<dyn SelectiveProcessor>>,
        in_memory: Option<InMemorySpanExporter>,
        pipelines: Vec<Arc<Pipeline>>,
    ) -> Result<Option<Telemetry>, ExporterError> {
        let builder = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            // Explicit limits, so the SDK's own OTEL_SPAN_*_LIMIT reading (behind the Env
            // trait's back) has no effect; the attribute count comes from our config.
            .with_span_limits(SpanLimits {
                max_attributes_per_span: u32::try_from(cfg.span_attribute_count_limit)
                    .unwrap_or(u32::MAX),
                ..SpanLimits::default()
            })
            .with_resource(resource(cfg));
        // One processor for the SDK: with several it copies every ended span once per
        // processor; `Fanout` copies it once less (the last destination takes the original)
        // and not at all for a selective destination that does not want it.
        let fanout = Fanout {
            selective: extra,
            every: processors,
        };
        let provider = builder.with_span_processor(fanout).build();
        let scope = InstrumentationScope::builder(INSTRUMENTATION_SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(Some(Telemetry {
            inner: Arc::new(Inner {
                provider,
                tracer,
                in_memory,
                pipelines,
                exporter: cfg.exporter,
                debug: cfg.debug,
                flush_timeout: cfg.batch.export_timeout,
                shutdown: Mutex::new(None),
                config: cfg.clone(),
            }),
        }))
    }

    /// The tracer every Traceway span is started from (scope `traceway`, this crate's version).
    pub fn tracer(&self) -> &SdkTracer {
        &self.inner.tracer
    }

    /// The tracer provider, e.g. to install it with `opentelemetry::global::set_tracer_provider`.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.inner.provider
    }

    /// Which exporter the pipeline sends to.
    pub fn exporter(&self) -> ExporterKind {
        self.inner.exporter
    }

    /// The settings the pipeline was built from.
    pub fn config(&self) -> &OtelConfig {
        &self.inner.config
    }

    /// Whether `OTEL_DEBUG` asked for export problems on stderr.
    pub fn debug(&self) -> bool {
        self.inner.debug
    }

    /// Exports every queued span now, waiting at most `OTEL_BSP_EXPORT_TIMEOUT`.
    pub fn force_flush(&self) -> Result<(), ExporterError> {
        let provider = self.inner.provider.clone();
        let limit = self.inner.flush_timeout;
        match run_bounded("traceway-otel-flush", limit + WAIT_GRACE, move || {
            provider.force_flush()
        }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(OTelSdkError::Timeout(t))) => Err(ExporterError::FlushTimeout(t)),
            Ok(Err(e)) => Err(ExporterError::Flush(e.to_string())),
            Err(Bounded::TimedOut) => Err(ExporterError::FlushTimeout(limit)),
            Err(Bounded::Failed(why)) => Err(ExporterError::Thread(why)),
        }
    }

    /// Flushes queued spans and stops the pipeline, waiting at most `OTEL_BSP_EXPORT_TIMEOUT`.
    /// Spans started afterwards are not recorded; spans started before and ended afterwards
    /// are dropped and counted. Safe to call more than once: later calls return the first
    /// call's result at once.
    pub fn shutdown(&self) -> Result<(), ExporterError> {
        // Holding the lock for the whole shutdown makes a concurrent second call wait for the
        // first one's result instead of racing it.
        let mut done = self
            .inner
            .shutdown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = done.as_ref() {
            return previous.clone().map_err(ExporterError::Shutdown);
        }
        for pipeline in &self.inner.pipelines {
            pipeline.closed.store(true, Ordering::Release);
        }
        let provider = self.inner.provider.clone();
        let limit = self.inner.flush_timeout;
        // The SDK's async-runtime processor ignores the shutdown timeout, hence the helper
        // thread and the bounded wait.
        let result = match run_bounded("traceway-otel-shutdown", limit + WAIT_GRACE, move || {
            provider.shutdown_with_timeout(limit)
        }) {
            Ok(Ok(()) | Err(OTelSdkError::AlreadyShutdown)) => Ok(()),
            Ok(Err(OTelSdkError::Timeout(t))) => Err(ExporterError::ShutdownTimeout(t)),
            Ok(Err(e)) => Err(ExporterError::Shutdown(e.to_string())),
            Err(Bounded::TimedOut) => Err(ExporterError::ShutdownTimeout(limit)),
            Err(Bounded::Failed(why)) => Err(ExporterError::Thread(why)),
        };
        *done = Some(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        result
    }

    /// Spans the in-memory exporter holds (test pipelines only; empty for every other exporter).
    pub fn finished_spans(&self) -> Vec<SpanData> {
        self.inner
            .in_memory
            .as_ref()
            .and_then(|memory| memory.get_finished_spans().ok())
            .unwrap_or_default()
    }

    /// Spans dropped before export because the queue was full or the pipeline was shut down
    /// (exposed as [`SPANS_DROPPED_METRIC`]).
    pub fn spans_dropped(&self) -> u64 {
        self.sum(|p| &p.dropped)
    }

    /// Spans lost because their export failed or timed out, after the exporter's retries
    /// (exposed as [`SPANS_EXPORT_FAILED_METRIC`]).
    pub fn spans_export_failed(&self) -> u64 {
        self.sum(|p| &p.export_failed)
    }

    /// Spans the exporter accepted.
    pub fn spans_exported(&self) -> u64 {
        self.sum(|p| &p.exported)
    }

    /// Spans queued or being exported, over every destination.
    pub fn queue_depth(&self) -> u64 {
        self.inner
            .pipelines
            .iter()
            .map(|p| p.in_flight.load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// A counter summed over every destination.
    fn sum(&self, counter: impl Fn(&Pipeline) -> &AtomicU64) -> u64 {
        self.inner
            .pipelines
            .iter()
            .map(|p| counter(p).load(Ordering::Relaxed))
            .sum()
    }
}

/// The processor (gate, batch processor, counting and dialect exporters) of one destination.
fn destination_processor(
    cfg: &OtelConfig,
    pipeline: &Arc<Pipeline>,
) -> Result<(Box<dyn SpanProcessor>, Option<InMemorySpanExporter>), ExporterError> {
    let processor: Box<dyn SpanProcessor> = match cfg.exporter {
        ExporterKind::Console => {
            let console = DialectExporter::new(ConsoleExporter::new(), cfg.dialect);
            let exporter = CountingExporter::new(console, pipeline, true);
            Box::new(QueueGate::new(
                BatchSpanProcessor::new(exporter, batch_config(cfg)),
                pipeline,
            ))
        }
        ExporterKind::OtlpHttpProtobuf => Box::new(QueueGate::new(
            http_processor(cfg, Protocol::HttpBinary, pipeline)?,
            pipeline,
        )),
        ExporterKind::OtlpHttpJson => Box::new(QueueGate::new(
            http_processor(cfg, Protocol::HttpJson, pipeline)?,
            pipeline,
        )),
        ExporterKind::OtlpGrpc => {
            Box::new(QueueGate::new(grpc_processor(cfg, pipeline)?, pipeline))
        }
        ExporterKind::InMemory | ExporterKind::None => {
            // Test-only: the simple processor exports on the thread that ends the span,
            // so spans are readable the moment they end. The in-memory exporter is not
            // shut down with the pipeline, so spans stay readable after shutdown.
            let memory = InMemorySpanExporter::default();
            let exporter = CountingExporter::new(
                DialectExporter::new(memory.clone(), cfg.dialect),
                pipeline,
                false,
            );
            let processor = Box::new(QueueGate::new(SimpleSpanProcessor::new(exporter), pipeline));
            return Ok((processor, Some(memory)));
        }
    };
    Ok((processor, None))
}

/// Counters and queue occupancy shared by the gate, the exporter wrapper and [`Telemetry`].
#[derive(Debug)]
struct Pipeline {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    capacity: usize,
    /// Spans admitted by the gate whose export has not finished yet.
    in_flight: AtomicUsize,
    dropped: AtomicU64,
    export_failed: AtomicU64,
    exported: AtomicU64,
    /// Set by shutdown: later spans are dropped instead of reaching a stopped processor.
    closed: AtomicBool,
    debug: bool,
}

impl Pipeline {
    fn new(capacity: usize, debug: bool) -> Self {
        Self {
            capacity,
            in_flight: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            export_failed: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            debug,
        }
    }

    /// Takes a queue slot for one span, or counts it as dropped. Never blocks.
    fn admit(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            self.record_drop("telemetry is shut down");
            return false;
        }
        // Compare-and-swap rather than add-then-undo, so that the count (the queue-depth
        // gauge) never reads above the capacity, not even for a moment.
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.record_drop("export queue is full (OTEL_BSP_MAX_QUEUE_SIZE)");
        }
        admitted
    }

    /// Frees queue slots; saturating, so a miscount can never wrap and close the gate for good.
    fn release(&self, spans: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(spans))
            });
    }

    fn record_drop(&self, why: &str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // One line at 1, 2, 4, 8, ... drops: visible, but a flood cannot flood stderr.
        if self.debug && total.is_power_of_two() {
            eprintln!(
                "traceway-otel: dropped a span: {why} (capacity {}); {total} dropped so far",
                self.capacity
            );
        }
    }

    fn record_export(&self, spans: usize, outcome: Option<&Result<(), String>>) {
        let n = u64::try_from(spans).unwrap_or(u64::MAX);
        match outcome {
            Some(Ok(())) => {
                self.exported.fetch_add(n, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                self.export_failed.fetch_add(n, Ordering::Relaxed);
                if self.debug {
                    eprintln!("traceway-otel: export of {spans} spans failed: {e}");
                }
            }
            None => {
                self.export_failed.fetch_add(n, Ordering::Relaxed);
                if self.debug {
                    eprintln!(
                        "traceway-otel: export of {spans} spans was abandoned (OTEL_BSP_EXPORT_TIMEOUT)"
                    );
                }
            }
        }
    }
}

/// A span processor in front of the SDK's: bounds the spans in flight and counts drops.
#[derive(Debug)]
struct QueueGate<P> {
    next: P,
    pipeline: Arc<Pipeline>,
}

impl<P> QueueGate<P> {
    fn new(next: P, pipeline: &Arc<Pipeline>) -> Self {
        Self {
            next,
            pipeline: Arc::clone(pipeline),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for QueueGate<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.next.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pipeline.admit() {
            self.next.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.pipeline.closed.store(true, Ordering::Release);
        self.next.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource);
    }
}

/// A span destination beside the exporters that takes only the spans it asks for, so the
/// others are never copied for it (the proxy's trace view keeps a sample under load).
pub trait SelectiveProcessor: SpanProcessor {
    /// Whether `span`, just ended, should be handed to this destination.
    fn wants(&self, span: &SpanData) -> bool;
}

/// Every destination behind one SDK processor: an ended span is copied for all but the last
/// destination taking it, which takes it as it is (the SDK would copy it for each).
#[derive(Debug)]
struct Fanout {
    /// Destinations handed only the spans they want, served first.
    selective: Vec<Box<dyn SelectiveProcessor>>,
    /// The export pipelines, handed every span.
    every: Vec<Box<dyn SpanProcessor>>,
}

impl Fanout {
    fn all(&self) -> impl Iterator<Item = &dyn SpanProcessor> {
        let selective = self
            .selective
            .iter()
            .map(|p| p.as_ref() as &dyn SpanProcessor);
        selective.chain(self.every.iter().map(|p| p.as_ref()))
    }

    /// Runs `f` on every destination, also after one fails; the first failure is reported.
    fn each(&self, f: impl Fn(&dyn SpanProcessor) -> OTelSdkResult) -> OTelSdkResult {
        let mut outcome = Ok(());
        for p in self.all() {
            let r = f(p);
            if outcome.is_ok() {
                outcome = r;
            }
        }
        outcome
    }
}

impl SpanProcessor for Fanout {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        for p in self.all() {
            p.on_start(span, cx);
        }
    }

    fn on_end(&self, span: SpanData) {
        // Each destination gets a copy when the next one taking the span is found; the last
        // one found takes the original.
        let mut pending: Option<&dyn SpanProcessor> = None;
        let selective = self
            .selective
            .iter()
            .filter(|p| p.wants(&span))
            .map(|p| p.as_ref() as &dyn SpanProcessor);
        for p in selective.chain(self.every.iter().map(|p| p.as_ref())) {
            if let Some(before) = pending.replace(p) {
                before.on_end(span.clone());
            }
        }
        if let Some(last) = pending {
            last.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.each(|p| p.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.each(|p| p.shutdown_with_timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        for p in &mut self.selective {
            p.set_resource(resource);
        }
        for p in &mut self.every {
            p.set_resource(resource);
        }
    }
}

/// A span exporter wrapper that frees queue slots and counts exported and failed spans.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pipeline: Arc<Pipeline>,
    forward_shutdown: bool,
}

impl<E> CountingExporter<E> {
    fn new(inner: E, pipeline: &Arc<Pipeline>, forward_shutdown: bool) -> Self {
        Self {
            inner,
            pipeline: Arc::clone(pipeline),
            forward_shutdown,
        }
    }
}

/// Settles one batch when dropped, so that a batch whose export future is abandoned (the
/// async processor drops it on `OTEL_BSP_EXPORT_TIMEOUT`) still frees its slots.
struct BatchInFlight<'a> {
    pipeline: &'a Pipeline,
    spans: usize,
    /// `None` until the export returns; an error is kept as text (`OTelSdkError` is not `Clone`).
    outcome: Option<Result<(), String>>,
}

impl Drop for BatchInFlight<'_> {
    fn drop(&mut self) {
        self.pipeline.release(self.spans);
        self.pipeline
            .record_export(self.spans, self.outcome.as_ref());
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut in_flight = BatchInFlight {
            pipeline: &self.pipeline,
            spans: batch.len(),
            outcome: None,
        };
        let result = self.inner.export(batch).await;
        in_flight.outcome = Some(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.forward_shutdown {
            self.inner.shutdown_with_timeout(timeout)
        } else {
            Ok(())
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The SDK batch settings from `OTEL_BSP_*`. Every field is set, so the SDK's own reading of
/// those variables (in `BatchConfigBuilder::default`) has no effect.
fn batch_config(cfg: &OtelConfig) -> BatchConfig {
    BatchConfigBuilder::default()
        .with_max_queue_size(cfg.batch.max_queue_size.saturating_add(CONTROL_HEADROOM))
        .with_scheduled_delay(cfg.batch.scheduled_delay)
        .with_max_export_batch_size(cfg.batch.max_export_batch_size)
        .with_max_export_timeout(cfg.batch.export_timeout)
        .with_max_concurrent_exports(1)
        .build()
}

pub(crate) fn resource(cfg: &OtelConfig) -> Resource {
    // `Resource::builder()` would also read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from
    // the process; those were read through `Env` already, so start empty and add only the
    // `telemetry.sdk.*` detector. Later attributes win.
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attribute(KeyValue::new(
            RESOURCE_SERVICE_VERSION,
            cfg.service_version.clone(),
        ))
        .with_attributes(
            cfg.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
    if let Some(environment) = &cfg.deployment_environment {
        builder = builder.with_attribute(KeyValue::new(
            RESOURCE_DEPLOYMENT_ENVIRONMENT,
            environment.clone(),
        ));
    }
    builder.with_service_name(cfg.service_name.clone()).build()
}

/// The OTLP/HTTP exporter under the SDK's thread-based batch processor.
///
/// Everything that owns the blocking reqwest client is created on a helper thread: building or
/// dropping that client on a tokio worker panics, and the processor then moves it straight to
/// its own thread, so it never touches the caller's.
fn http_processor(
    cfg: &OtelConfig,
    protocol: Protocol,
    pipeline: &Arc<Pipeline>,
) -> Result<BatchSpanProcessor, ExporterError> {
    let endpoint = cfg
        .endpoint
        .as_ref()
        .map_or_else(|| DEFAULT_HTTP_ENDPOINT.to_owned(), ToString::to_string);
    // `with_headers` percent-decodes values a second time; escaping '%' makes that a no-op.
    let headers: HashMap<String, String> = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.replace('%', "%25")))
        .collect();
    let raw_headers: Vec<(String, String)> = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let timeout = cfg.timeout;
    let gzip = cfg.compression == Compression::Gzip;
    let batch = batch_config(cfg);
    let pipeline = Arc::clone(pipeline);
    let dialect = cfg.dialect;
    let tls = cfg.tls.rustls().map_err(|e| ExporterError::Build {
        what: "OTLP/HTTP",
        reason: e.to_string(),
    })?;
    let build = move || -> Result<BatchSpanProcessor, ExporterError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| ExporterError::Build {
                what: "OTLP/HTTP",
                reason: format!("HTTP client: {e}"),
            })?;
        if protocol == Protocol::HttpBinary {
            // Protobuf is written straight from the spans (otlp_proto.rs): the generic
            // exporter's copy into proto structs cost more than the rest of tracing.
            let exporter = crate::otlp_http::OtlpHttpProtobuf::new(
                client,
                &endpoint,
                raw_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                gzip,
                timeout,
            )
            .map_err(|e| ExporterError::Build {
                what: "OTLP/HTTP",
                reason: e.to_string(),
            })?;
            return Ok(BatchSpanProcessor::new(
                CountingExporter::new(DialectExporter::new(exporter, dialect), &pipeline, true),
                batch,
            ));
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
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
            what: "OTLP/HTTP",
            reason: e.to_string(),
        })?;
        Ok(BatchSpanProcessor::new(
            CountingExporter::new(DialectExporter::new(exporter, dialect), &pipeline, true),
            batch,
        ))
    };
    thread::Builder::new()
        .name("traceway-otel-http-setup".to_owned())
        .spawn(build)
        .map_err(|e| ExporterError::Thread(format!("starting the HTTP exporter setup: {e}")))?
        .join()
        .map_err(|_| ExporterError::Thread("the HTTP exporter setup panicked".to_owned()))?
}

/// The rustls crypto provider for every TLS client: the process-wide one if the binary
/// installed one, else ring (never aws-lc-rs).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The OTLP/gRPC exporter under the SDK's async-runtime batch processor on the current tokio
/// runtime: tonic needs tokio, and a task keeps exports off request tasks.
/// Where a gRPC exporter connects (origin only), whether over TLS, and its metadata headers.
pub(crate) fn grpc_target(cfg: &OtelConfig) -> (String, bool, tonic::metadata::MetadataMap) {
    let (endpoint, https) = match &cfg.endpoint {
        // Origin only (no trailing '/'): gRPC routes by service path, not by URL path.
        Some(url) => (url.origin().ascii_serialization(), url.scheme() == "https"),
        None => (DEFAULT_GRPC_ENDPOINT.to_owned(), false),
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in cfg.headers.iter() {
        // Both were validated by the config; a failure here would be a bug, so skip rather
        // than panic.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    (
        endpoint,
        https,
        tonic::metadata::MetadataMap::from_headers(headers),
    )
}

fn grpc_processor(
    cfg: &OtelConfig,
    pipeline: &Arc<Pipeline>,
) -> Result<span_processor_with_async_runtime::BatchSpanProcessor<runtime::Tokio>, ExporterError> {
    // Both the tonic channel and the processor spawn onto the current runtime; without one,
    // tokio would panic.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ExporterError::GrpcNeedsRuntime);
    }
    let (endpoint, https, metadata) = grpc_target(cfg);
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
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
        what: "OTLP/gRPC",
        reason: e.to_string(),
    })?;
    Ok(
        span_processor_with_async_runtime::BatchSpanProcessor::builder(
            CountingExporter::new(DialectExporter::new(exporter, cfg.dialect), pipeline, true),
            runtime::Tokio,
        )
        .with_batch_config(batch_config(cfg))
        .build(),
    )
}

enum Bounded {
    TimedOut,
    Failed(String),
}

/// Runs `f` on a helper thread and waits at most `limit` for it. The SDK's flush and shutdown
/// can block without bound (the async-runtime processor ignores its timeout); a helper thread
/// keeps the caller's wait bounded, and a panic inside the SDK becomes an error here.
fn run_bounded<F>(name: &str, limit: Duration, f: F) -> Result<OTelSdkResult, Bounded>
where
    F: FnOnce() -> OTelSdkResult + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| Bounded::Failed(format!("starting {name}: {e}")))?;
    match rx.recv_timeout(limit) {
        Ok(result) => Ok(result),
        Err(RecvTimeoutError::Timeout) => Err(Bounded::TimedOut),
        Err(RecvTimeoutError::Disconnected) => Err(Bounded::Failed(format!("{name} panicked"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::env;
    use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};

    fn cfg(pairs: &[(&str, &str)]) -> OtelConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelConfig::from_env(&map).unwrap()
    }

    #[test]
    fn telemetry_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Telemetry>();
    }

    #[test]
    fn disabled_and_none_build_nothing() {
        assert!(
            Telemetry::init(&cfg(&[(env::OTEL_SDK_DISABLED, "true")]))
                .unwrap()
                .is_none()
        );
        assert!(
            Telemetry::init(&cfg(&[(env::OTEL_EXPORTER, "none")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn in_memory_pipeline_records_spans_with_scope_and_resource() {
        let t = Telemetry::init(&cfg(&[(env::OTEL_EXPORTER, "in_memory")]))
            .unwrap()
            .unwrap();
        let mut span = t
            .tracer()
            .span_builder("litellm_request")
            .with_kind(SpanKind::Internal)
            .start(t.tracer());
        span.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
        span.end();
        let spans = t.finished_spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "litellm_request");
        assert_eq!(spans[0].instrumentation_scope.name(), "traceway");
        assert_eq!(
            spans[0].instrumentation_scope.version(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(t.spans_exported(), 1);
        t.shutdown().unwrap();
        t.shutdown().unwrap();
        // Still readable after shutdown; spans started later are not recorded at all.
        assert_eq!(t.finished_spans().len(), 1);
        t.tracer().start("late").end();
        assert_eq!(t.finished_spans().len(), 1);
        assert_eq!(t.spans_dropped(), 0);
    }

    /// A selective destination keeping the ended spans whose names it wants.
    #[derive(Debug, Default)]
    struct Picky {
        wanted: &'static str,
        asked: std::sync::atomic::AtomicUsize,
        got: Mutex<Vec<String>>,
    }

    /// The pipeline's handle on a [`Picky`] the test reads.
    #[derive(Debug)]
    struct PickyHandle(Arc<Picky>);

    impl SpanProcessor for PickyHandle {
        fn on_start(&self, _span: &mut Span, _cx: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.got.lock().unwrap().push(span.name.to_string());
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    impl SelectiveProcessor for PickyHandle {
        fn wants(&self, span: &SpanData) -> bool {
            self.0.asked.fetch_add(1, Ordering::Relaxed);
            span.name == self.0.wanted
        }
    }

    #[test]
    fn selective_destinations_get_only_what_they_want_and_exporters_everything() {
        let a = Arc::new(Picky {
            wanted: "a",
            ..Picky::default()
        });
        let b = Arc::new(Picky {
            wanted: "b",
            ..Picky::default()
        });
        let extra: Vec<Box<dyn SelectiveProcessor>> = vec![
            Box::new(PickyHandle(a.clone())),
            Box::new(PickyHandle(b.clone())),
        ];
        let t = Telemetry::init_with(&cfg(&[(env::OTEL_EXPORTER, "in_memory")]), extra)
            .unwrap()
            .unwrap();
        for name in ["a", "b", "c", "a"] {
            t.tracer().start(name).end();
        }
        assert_eq!(*a.got.lock().unwrap(), ["a", "a"]);
        assert_eq!(*b.got.lock().unwrap(), ["b"]);
        assert_eq!(a.asked.load(Ordering::Relaxed), 4, "asked about every span");
        let exported: Vec<String> = t
            .finished_spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(exported, ["a", "b", "c", "a"]);

        // Without an exporter, the last destination wanting a span takes the original.
        let only = Arc::new(Picky {
            wanted: "x",
            ..Picky::default()
        });
        let t = Telemetry::init_with(
            &cfg(&[(env::OTEL_EXPORTER, "none")]),
            vec![Box::new(PickyHandle(only.clone()))],
        )
        .unwrap()
        .unwrap();
        t.tracer().start("x").end();
        t.tracer().start("y").end();
        assert_eq!(*only.got.lock().unwrap(), ["x"]);
    }

    #[test]
    fn resource_has_service_environment_and_sdk_attributes() {
        let r = resource(&cfg(&[
            (env::OTEL_SERVICE_NAME, "gw"),
            (env::OTEL_ENVIRONMENT_NAME, "prod"),
            (
                env::OTEL_RESOURCE_ATTRIBUTES,
                "team=ml,deployment.environment=dev",
            ),
        ]));
        let get = |k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("gw"));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get("deployment.environment").as_deref(), Some("prod"));
        assert_eq!(get("team").as_deref(), Some("ml"));
        assert_eq!(get("telemetry.sdk.language").as_deref(), Some("rust"));
    }

    #[test]
    fn grpc_outside_a_runtime_is_an_error() {
        let e = Telemetry::init(&cfg(&[(env::OTEL_EXPORTER, "otlp_grpc")])).unwrap_err();
        assert!(matches!(e, ExporterError::GrpcNeedsRuntime), "{e}");
    }

    #[test]
    fn gate_counts_drops_beyond_capacity() {
        let p = Pipeline::new(2, false);
        assert!(p.admit());
        assert!(p.admit());
        assert!(!p.admit());
        assert_eq!(p.dropped.load(Ordering::Relaxed), 1);
        p.release(1);
        assert!(p.admit());
        p.release(10);
        assert_eq!(p.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn http_pipeline_builds_outside_and_inside_a_runtime() {
        let c = cfg(&[(env::OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:9")]);
        let t = Telemetry::init(&c).unwrap().unwrap();
        assert_eq!(t.exporter(), ExporterKind::OtlpHttpProtobuf);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let t2 = rt.block_on(async { Telemetry::init(&c).unwrap().unwrap() });
        rt.block_on(async {
            // Dropping the last handle inside the runtime must not panic either.
            drop(t2);
        });
        drop(t);
    }
}
