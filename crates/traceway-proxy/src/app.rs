//! Putting the proxy together from its configuration: telemetry, client, routes; and running it
//! on a listener (used by the binary and by the end-to-end tests alike).

use crate::config::ProxyConfig;
use crate::server::{self, AppState};
use std::net::SocketAddr;
use std::sync::Arc;
use traceway::{Client, Tracing};
use traceway_otel::config::{CaptureContent, OtelConfig};
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
        let telemetry = if force_otel || config.otel_enabled() {
            Telemetry::init(&otel)?
        } else {
            None
        };
        let mut builder = Client::builder().direct_provider_models(false);
        if let Some(t) = config.request_timeout {
            builder = builder.timeout(t);
        }
        for d in &config.deployments {
            builder = builder.deployment(d.clone());
        }
        if let Some(t) = &telemetry {
            builder = builder.tracing(Tracing {
                telemetry: t.clone(),
                capture_content: matches!(
                    otel.capture,
                    CaptureContent::SpanOnly | CaptureContent::SpanAndEvent
                ),
            });
        }
        let client = builder.build()?;
        let state = Arc::new(AppState {
            client,
            config,
            nested_request_span: otel.nested_request_span,
            started: traceway::types::unix_now(),
        });
        Ok(App { state, telemetry })
    }

    /// The axum router.
    pub fn router(&self) -> axum::Router {
        server::router(self.state.clone())
    }

    /// Flushes and stops the telemetry pipeline.
    pub fn shutdown_telemetry(&self) {
        if let Some(t) = &self.telemetry {
            let _ = t.shutdown();
        }
    }

    /// Serves on `addr` in the background; for tests and embedding.
    pub async fn spawn(self, addr: &str) -> Result<RunningProxy, AppError> {
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
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = server::serve(listener, router, async {
                let _ = rx.await;
            })
            .await;
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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The assembled proxy.
    pub app: App,
}

impl RunningProxy {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests, then flushes telemetry.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // Flushing blocks up to the export timeout: keep it off the async workers.
        if let Some(t) = self.app.telemetry.clone() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
