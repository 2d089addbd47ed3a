//! The axum application: routes, shared state, and serving with graceful shutdown.

use crate::config::ProxyConfig;
use crate::error::ApiError;
use crate::{auth, handlers};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
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
