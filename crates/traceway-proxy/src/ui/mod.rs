//! The web page at `/ui`: recent traces and their span trees, the model list, and key, team,
//! user and organisation management through the management API.
//!
//! The page is plain HTML, CSS and JavaScript embedded in the binary (no build step, no CDN).
//! It keeps the admin key in a JavaScript variable only and sends it as `Authorization: Bearer`
//! to the JSON APIs below, which need the master key (or, with virtual keys, an admin key)
//! whenever a master key is configured.
//!
//! | route | |
//! |---|---|
//! | `GET /ui`, `/ui/` | the page |
//! | `GET /ui/assets/{file}` | its script, stylesheet and icon |
//! | `GET /ui/api/info` | version, who is signed in, the trace buffer's state |
//! | `GET /ui/api/traces?model=&status=&key_alias=&team=&since=&limit=` | recent traces |
//! | `GET /ui/api/traces/{trace_id}` | one trace's spans, attributes and events |
//! | `GET /ui/api/models` | deployments with their provider, `api_base` and recent health |

pub mod traces;

use crate::error::ApiError;
use crate::keys::Caller;
use crate::server::AppState;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;
use traces::{DeploymentHealth, TraceFilter, TraceList, TraceStatus};
use traceway::{Error, ErrorKind};
use traceway_otel::config::ExporterKind;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Most traces one list answer carries.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The page may load only its own script, styles and API: trace content (prompts) is shown as
/// text, and this policy keeps anything that slipped through from running or phoning home.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes; an empty router when `enabled` is false (`general_settings.ui: false`),
/// so that `/ui` is then an unknown route like any other.
pub fn routes(enabled: bool) -> Router<Arc<AppState>> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/api/info", get(info))
        .route("/ui/api/traces", get(list_traces))
        .route("/ui/api/traces/{trace_id}", get(trace))
        .route("/ui/api/models", get(models))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/ui/api/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // API answers hold prompts and key metadata: never cache them. The page and its assets
    // are revalidated so that an upgraded binary's page is picked up at once.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if api { "no-store" } else { "no-cache" }),
    );
    response
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => {
            return ApiError(Error::new(
                ErrorKind::NotFound,
                format!("no UI asset {file:?}"),
            ))
            .into_response();
        }
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// How the caller got in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// No master key is configured: the page, like every route, is open.
    Open,
    /// The master key.
    MasterKey,
    /// A virtual key of a `proxy_admin` user (may also change keys through the management API).
    AdminKey,
    /// A virtual key of a `proxy_admin_viewer` user (may read; the management API refuses writes).
    AdminViewerKey,
}

/// Lets in the master key and admin keys (everyone when no master key is configured); anyone
/// else gets a 401 (unknown key) or 403 (a key that is not an admin's) saying what the page needs.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Access, ApiError> {
    let caller = crate::auth::authenticate(state, headers).await?;
    match &caller {
        Caller::Open => Ok(Access::Open),
        Caller::Master(_) => Ok(Access::MasterKey),
        Caller::Key(_) if caller.is_admin() => Ok(Access::AdminKey),
        Caller::Key(_) if caller.is_admin_reader() => Ok(Access::AdminViewerKey),
        Caller::Key(_) => Err(ApiError(Error::new(
            ErrorKind::PermissionDenied,
            "the web UI needs the master key or the key of a proxy_admin (or proxy_admin_viewer) user; this key is neither",
        ))),
    }
}

/// `GET /ui/api/info`.
#[derive(Debug, Serialize)]
struct Info {
    version: &'static str,
    access: Access,
    traces: TraceInfo,
}

#[derive(Debug, Serialize)]
struct TraceInfo {
    /// Whether the page records traces at all.
    enabled: bool,
    /// Traces kept at most.
    capacity: usize,
    /// The exporter beside the page (`none` when the page is the only destination).
    exporter: &'static str,
    /// Why no traces are recorded, when they are not.
    disabled_reason: Option<String>,
}

fn exporter_name(kind: ExporterKind) -> &'static str {
    match kind {
        ExporterKind::Console => "console",
        ExporterKind::OtlpHttpProtobuf => "otlp_http (http/protobuf)",
        ExporterKind::OtlpHttpJson => "otlp_http (http/json)",
        ExporterKind::OtlpGrpc => "otlp_grpc",
        ExporterKind::InMemory => "in_memory",
        ExporterKind::None => "none",
    }
}

async fn info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<Info>, ApiError> {
    let access = authorize(&state, &headers).await?;
    let exporter = state
        .client
        .tracing()
        .map_or("none", |t| exporter_name(t.telemetry.exporter()));
    let disabled_reason = match &state.ui_traces {
        Some(_) => None,
        None if state.sdk_disabled => Some("OTEL_SDK_DISABLED=true: no spans are recorded at all".to_owned()),
        None if state.config.ui.trace_buffer_size == Some(0) => Some(
            "general_settings.ui_trace_buffer_size (or TRACEWAY_UI_TRACES) is 0: no traces are kept"
                .to_owned(),
        ),
        None => Some(
            "tracing is off (no otel callback), so no spans are recorded; set \
             general_settings.ui_trace_buffer_size (or TRACEWAY_UI_TRACES) to keep traces for \
             this page anyway"
                .to_owned(),
        ),
    };
    Ok(axum::Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        access,
        traces: TraceInfo {
            enabled: state.ui_traces.is_some(),
            capacity: state.ui_traces.as_ref().map_or(0, |b| b.capacity()),
            exporter,
            disabled_reason,
        },
    }))
}

/// Parses the list query: `model`, `status` (`ok`/`error`), `key_alias`, `team`, `since`
/// (a cursor from an earlier answer) and `limit`. Unknown parameters are ignored.
fn trace_filter(query: Option<&str>) -> Result<TraceFilter, ApiError> {
    let mut f = TraceFilter::default();
    let non_empty = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "model" => f.model = non_empty(value),
            "key_alias" => f.key_alias = non_empty(value),
            "team" => f.team = non_empty(value),
            "status" => {
                f.status = match non_empty(value) {
                    None => None,
                    Some(v) => Some(TraceStatus::parse(&v).ok_or_else(|| {
                        ApiError::bad_request(
                            format!("status must be \"ok\" or \"error\", not {v:?}"),
                            Some("status"),
                        )
                    })?),
                }
            }
            "since" => {
                f.since = Some(value.trim().parse().map_err(|_| {
                    ApiError::bad_request(
                        "since must be the cursor of an earlier answer (a whole number)",
                        Some("since"),
                    )
                })?)
            }
            "limit" => {
                let n: usize = value.trim().parse().map_err(|_| {
                    ApiError::bad_request(
                        format!("limit must be a whole number from 1 to {MAX_LIST_LIMIT}"),
                        Some("limit"),
                    )
                })?;
                f.limit = Some(n.clamp(1, MAX_LIST_LIMIT));
            }
            _ => {}
        }
    }
    if f.limit.is_none() {
        f.limit = Some(MAX_LIST_LIMIT);
    }
    Ok(f)
}

async fn list_traces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<TraceList>, ApiError> {
    authorize(&state, &headers).await?;
    let filter = trace_filter(query.as_deref())?;
    Ok(axum::Json(match &state.ui_traces {
        Some(buffer) => buffer.list(&filter),
        None => TraceList {
            traces: Vec::new(),
            cursor: 0,
            capacity: 0,
            stored: 0,
            evicted: 0,
            facets: traces::Facets::default(),
        },
    }))
}

async fn trace(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let found = state.ui_traces.as_ref().and_then(|b| b.get(&trace_id));
    match found {
        Some(detail) => Ok(axum::Json(detail).into_response()),
        None => {
            let capacity = state.ui_traces.as_ref().map_or(0, |b| b.capacity());
            // The id is echoed only when it is a well-formed one, so the message stays short.
            let shown = if trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                trace_id
            } else {
                "with that id (trace ids are 32 hex digits)".to_owned()
            };
            Err(ApiError(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no trace {shown} in the UI's buffer: it keeps the last {capacity} traces, older ones are gone"
                ),
            )))
        }
    }
}

/// One deployment on the models view.
#[derive(Debug, Serialize)]
struct ModelView {
    model_group: String,
    deployment_id: String,
    provider: &'static str,
    model: String,
    provider_model: String,
    /// Scheme, host, port and path only: credentials and query strings are left out.
    api_base: Option<String>,
    timeout_secs: Option<f64>,
    in_flight: u64,
    health: Option<DeploymentHealth>,
}

#[derive(Debug, Serialize)]
struct ModelsAnswer {
    models: Vec<ModelView>,
}

async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<ModelsAnswer>, ApiError> {
    authorize(&state, &headers).await?;
    let mut health = state
        .ui_traces
        .as_ref()
        .map(|b| b.deployment_health())
        .unwrap_or_default();
    let models = state
        .client
        .deployments()
        .map(|d| ModelView {
            model_group: d.model_group.clone(),
            deployment_id: d.id.clone(),
            provider: d.provider(),
            model: d.model.clone(),
            provider_model: d.provider_model.clone(),
            api_base: d
                .api_base
                .as_deref()
                .and_then(crate::model_info::public_api_base),
            timeout_secs: d.timeout.map(|t| t.as_secs_f64()),
            in_flight: d.stats.in_flight(),
            health: health.remove(&d.id),
        })
        .collect();
    Ok(axum::Json(ModelsAnswer { models }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_list_query_is_parsed_and_checked() {
        let f = trace_filter(Some(
            "model=gpt&status=error&key_alias=ci%20key&team=&since=5&limit=0&x=1",
        ))
        .unwrap();
        assert_eq!(f.model.as_deref(), Some("gpt"));
        assert_eq!(f.status, Some(TraceStatus::Error));
        assert_eq!(f.key_alias.as_deref(), Some("ci key"));
        assert_eq!(f.team, None);
        assert_eq!(f.since, Some(5));
        assert_eq!(f.limit, Some(1));
        assert_eq!(trace_filter(None).unwrap().limit, Some(MAX_LIST_LIMIT));
        for bad in ["status=broken", "since=-1", "limit=lots"] {
            let e = trace_filter(Some(bad)).unwrap_err();
            assert_eq!(e.0.status(), 400, "{bad}");
        }
    }
}
