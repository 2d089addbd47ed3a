//! Putting the proxy together from its configuration: telemetry, client, routes; and running it
//! on a listener (used by the binary and by the end-to-end tests alike).

use crate::config::ProxyConfig;
use crate::server::{self, AppState};
use crate::ui::traces::TraceBuffer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use traceway::{Client, Tracing};
use traceway_otel::config::{CaptureContent, ExporterKind, OtelConfig};
use traceway_otel::exporter::Telemetry;

/// Why the proxy could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A telemetry environment variable is malformed.
    #[error("telemetry configuration: {0}")]
    TelemetryConfig(#[from] traceway_otel::config::ConfigError),
    /// The exporter could not start.
    #[error("telemetry exporter: {0}")]
    Exporter(#[from] traceway_otel::exporter::ExporterError),
    /// The client could not be built.
    #[error("{0}")]
    Client(#[from] traceway::BuildError),
    /// The key database or Redis could not be opened.
    #[error("virtual keys: {0}")]
    Keys(#[from] crate::keys::KeysError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// An assembled proxy, ready to serve.
pub struct App {
    /// Shared handler state.
    pub state: Arc<AppState>,
    /// The telemetry pipeline, when tracing is on.
    pub telemetry: Option<Telemetry>,
}

impl App {
    /// Builds the proxy; `force_otel` (the `--otel` flag) turns tracing on whatever the config says.
    pub fn build(config: ProxyConfig, force_otel: bool) -> Result<App, AppError> {
        let otel = OtelConfig::from_env(&config.env)?;
        let tracing_on = force_otel || config.otel_enabled();
        // The web page's trace buffer is one more span destination beside the exporter. It is
        // on by default only with tracing on, so that tracing off means no span work; asked for
        // explicitly (`ui_trace_buffer_size`, `TRACEWAY_UI_TRACES`) with tracing off, it is the
        // only destination (exporter `none`). OTEL_SDK_DISABLED=true still turns every span off.
        let ui_traces = config
            .ui
            .trace_buffer(tracing_on)
            .filter(|_| !otel.sdk_disabled)
            .map(TraceBuffer::new);
        // One export destination per tracing callback (`otel`, `arize_phoenix`, `arize`,
        // `langfuse_otel`), each with its own queue.
        let mut destinations = if tracing_on {
            traceway_otel::destinations::destinations(
                &config.tracing_callbacks(force_otel),
                &config.env,
            )?
        } else {
            Vec::new()
        };
        let telemetry = match &ui_traces {
            Some(buffer) => {
                if destinations.is_empty() {
                    let mut cfg = otel.clone();
                    cfg.exporter = ExporterKind::None;
                    destinations.push(cfg);
                }
                Telemetry::init_destinations(&destinations, vec![Box::new(buffer.processor())])?
            }
            None if tracing_on => Telemetry::init_destinations(&destinations, Vec::new())?,
            None => None,
        };
        // Provider settings a deployment leaves out (`AZURE_API_BASE`, `AWS_REGION` …) are read
        // through the config's `environment_variables`, as LiteLLM sets them in its process.
        let mut builder = Client::builder()
            .direct_provider_models(false)
            .router(config.router.clone())
            .env(Arc::new(config.env.clone()));
        if let Some(t) = config.request_timeout {
            builder = builder.timeout(t);
        }
        for d in &config.deployments {
            builder = builder.deployment(d.clone());
        }
        if let Some(t) = &telemetry {
            builder = builder.tracing(Tracing {
                telemetry: t.clone(),
                // turn_off_message_logging is the global rule: it keeps content out unless a
                // request's own mask flags say otherwise.
                capture_content: otel.capture != CaptureContent::NoContent
                    && !config.turn_off_message_logging,
            });
        }
        // Metrics go to Prometheus always, and over OTLP beside the first OTLP destination.
        let otlp = destinations.iter().find(|d| d.exporter.is_otlp());
        let metrics = traceway_otel::metrics::Metrics::new(otlp)?;
        builder = builder.metrics(metrics.clone());
        let client = builder.build()?;
        // Virtual keys only mean something behind a master key.
        let keys = config.master_key.as_ref().map(|master| {
            Arc::new(crate::keys::Keys::new(
                master,
                &config.key_store,
                config.source_path().as_deref(),
            ))
        });
        let state = Arc::new(AppState {
            client,
            config,
            nested_request_span: otel.nested_request_span,
            sdk_disabled: otel.sdk_disabled,
            started: traceway::types::unix_now(),
            keys,
            ui_traces,
            metrics,
            telemetry: telemetry.clone(),
            abort: tokio_util::sync::CancellationToken::new(),
        });
        Ok(App { state, telemetry })
    }

    /// The axum router.
    pub fn router(&self) -> axum::Router {
        server::router(self.state.clone())
    }

    /// Opens the key database (migrating it) and Redis now, so a bad URL or an unreachable
    /// server stops start-up instead of failing the first request. Without a master key: nothing.
    pub async fn connect(&self) -> Result<(), AppError> {
        if let Some(keys) = &self.state.keys {
            keys.connect().await?;
        }
        Ok(())
    }

    /// Flushes and stops the telemetry pipeline: spans first (they are what a dead metrics
    /// collector must not delay), then metrics.
    pub fn shutdown_telemetry(&self) {
        if let Some(t) = &self.telemetry {
            let _ = t.shutdown();
        }
        self.state.metrics.shutdown();
    }

    /// Serves on `addr` in the background; for tests and embedding.
    pub async fn spawn(self, addr: &str) -> Result<RunningProxy, AppError> {
        self.connect().await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| AppError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<Duration>();
        let router = self.router();
        let abort = self.state.abort.clone();
        let task = tokio::spawn(async move {
            let stop = async { rx.await.unwrap_or(server::DEFAULT_SHUTDOWN_GRACE) };
            let _ = server::serve(listener, router, stop, abort).await;
        });
        Ok(RunningProxy {
            addr: local,
            stop: Some(tx),
            task: Some(task),
            app: self,
        })
    }
}

/// A proxy serving in the background.
pub struct RunningProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<Duration>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The assembled proxy.
    pub app: App,
}

impl RunningProxy {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests (up to the default grace period), then
    /// flushes telemetry.
    pub async fn shutdown(self) {
        self.shutdown_within(server::DEFAULT_SHUTDOWN_GRACE).await;
    }

    /// Stops accepting, waits up to `grace` for in-flight requests, ends those still running
    /// (a 503, or an error event on a stream), then flushes telemetry.
    pub async fn shutdown_within(mut self, grace: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(grace);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(keys) = &self.app.state.keys {
            keys.write_spend().await;
        }
        // Flushing blocks up to the export timeout: keep it off the async workers. Spans
        // first, so that a dead metrics collector does not delay them.
        if let Some(t) = self.app.telemetry.clone() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        let metrics = self.app.state.metrics.clone();
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
