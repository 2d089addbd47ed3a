//! The axum application: routes, shared state, and serving with graceful shutdown.

use crate::config::ProxyConfig;
use crate::error::ApiError;
use crate::{auth, handlers};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use traceway::types::{Model, ModelList};
use traceway::{Client, Error, ErrorKind};

/// What every handler shares.
pub struct AppState {
    /// The LLM client (model groups, providers, telemetry).
    pub client: Client,
    /// The runtime configuration.
    pub config: ProxyConfig,
    /// `USE_OTEL_LITELLM_REQUEST_SPAN`: put a `litellm_request` span under the SERVER span.
    pub nested_request_span: bool,
    /// `OTEL_SDK_DISABLED`: no spans are recorded at all.
    pub sdk_disabled: bool,
    /// Unix seconds when the proxy started (`created` of `/v1/models`).
    pub started: i64,
    /// Virtual keys and the management API; present when a master key is set.
    pub keys: Option<Arc<crate::keys::Keys>>,
    /// The web page's recent traces (`None` when the page is off or keeps none).
    pub ui_traces: Option<Arc<crate::ui::traces::TraceBuffer>>,
    /// GenAI client metrics and request counts, for `/metrics` (and OTLP when configured).
    pub metrics: traceway_otel::metrics::Metrics,
    /// The span pipeline, for its counters on `/metrics`.
    pub telemetry: Option<traceway_otel::exporter::Telemetry>,
    /// Fired when the shutdown grace period runs out: requests still in flight end at once
    /// (a 503, or an error event on a stream) so that their spans end and are flushed.
    pub abort: CancellationToken,
}

/// The proxy's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/chat/completions", post(handlers::chat_completions))
        .route("/v1/completions", post(handlers::completions))
        .route("/completions", post(handlers::completions))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route("/embeddings", post(handlers::embeddings))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/model/info", get(crate::model_info::model_info))
        .route("/v1/model/info", get(crate::model_info::model_info))
        .route(
            "/model_group/info",
            get(crate::model_info::model_group_info),
        )
        .route("/health", get(crate::health_check::health))
        .route("/health/liveliness", get(liveliness))
        .route("/health/liveness", get(liveliness))
        .route("/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .merge(crate::keys::routes::routes())
        .merge(crate::ui::routes(state.config.ui.enabled))
        .fallback(not_found)
        .with_state(state)
}

async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<ModelList>, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let data = state
        .client
        .model_groups()
        // A restricted key sees only what it may call.
        .filter(|group| match caller.key() {
            Some(info) => {
                crate::keys::access::check(info, group, &provider_models(&state, group)).is_ok()
            }
            None => true,
        })
        .map(|id| Model {
            id: id.to_owned(),
            object: "model".into(),
            created: state.started,
            owned_by: "openai".into(),
        })
        .collect();
    Ok(axum::Json(ModelList {
        object: "list".into(),
        data,
    }))
}

/// The `provider/model` of every deployment of `group`, for wildcard model access.
pub fn provider_models<'a>(state: &'a AppState, group: &str) -> Vec<&'a str> {
    state
        .config
        .deployments
        .iter()
        .filter(|d| d.model_name == group)
        .map(|d| d.model.as_str())
        .collect()
}

/// Prometheus scrape: the GenAI client metrics, request counts and span pipeline counters.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(state.telemetry.as_ref());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn liveliness() -> axum::Json<&'static str> {
    axum::Json("I'm alive!")
}

async fn readiness(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    let (db, cache) = match &state.keys {
        Some(keys) => (
            if keys.ping().await {
                "connected"
            } else {
                "Not connected"
            },
            keys.has_redis().then_some("redis"),
        ),
        None => ("Not connected", None),
    };
    axum::Json(serde_json::json!({
        "status": "healthy",
        "db": db,
        "cache": cache,
        "litellm_version": env!("CARGO_PKG_VERSION"),
        "traceway_version": env!("CARGO_PKG_VERSION"),
        "success_callbacks": state.config.callbacks,
    }))
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError(Error::new(ErrorKind::NotFound, format!("no route {}; the LLM routes are /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models", uri.path())))
        .into_response()
}

/// The grace period in-flight requests get after SIGTERM when none is configured: inside
/// Kubernetes' default 30 s, with time left to flush spans (the export timeout is 10 s).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long connections get to take their last answer after `abort` fired.
const AFTER_ABORT: Duration = Duration::from_secs(5);

/// The answer to a request still running when the shutdown grace period ran out.
pub fn shutting_down() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the gateway is shutting down and this request outlived its grace period; send it again",
    )
}

/// Serves `app` on `listener` until `shutdown` resolves with a grace period, then lets
/// in-flight requests finish for that long; those still running then are ended through `abort`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = Duration> + Send + 'static,
    abort: CancellationToken,
) -> std::io::Result<()> {
    let (grace_tx, grace_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        let _ = grace_tx.send(shutdown.await);
    };
    // Each answer is written as soon as it is ready: without TCP_NODELAY a stream's next chunk
    // waits for the client's ACK of the previous small segment (Nagle), adding to every chunk.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY on an accepted connection: {e}");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    tokio::pin!(server);
    let grace = tokio::select! {
        done = &mut server => return done,
        grace = grace_rx => match grace {
            Ok(grace) => grace,
            Err(_) => return server.await,
        },
    };
    if let Ok(done) = tokio::time::timeout(grace, &mut server).await {
        return done;
    }
    tracing::warn!(
        "requests still in flight {:.1} s after the shutdown signal: ending them with a 503",
        grace.as_secs_f64()
    );
    abort.cancel();
    match tokio::time::timeout(AFTER_ABORT, &mut server).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!("connections still open after their requests were ended: closing");
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
