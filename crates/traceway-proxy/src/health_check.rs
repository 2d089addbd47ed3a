//! `GET /health`: one real call to each deployment, as LiteLLM's proxy makes it, sorted into
//! healthy and unhealthy endpoints. The probes go straight to each deployment (no retries,
//! fallbacks or cooldowns, and no spans: a monitor polling every minute would otherwise fill
//! the traces with its own calls); `/health/liveliness` and `/health/readiness` are the cheap
//! probes for orchestrators.

use crate::auth;
use crate::error::ApiError;
use crate::model_info::{public_params, query_param, visible};
use crate::server::AppState;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use traceway::deployment::Deployment;
use traceway::{Error, ErrorKind, Request};

/// How long one probe may take unless `model_info.health_check_timeout` says (LiteLLM's default).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Tokens a chat or completion probe asks for unless `model_info.health_check_max_tokens` says.
const PROBE_MAX_TOKENS: u64 = 5;

/// The answer of `GET /health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// Deployments that answered: their shown `litellm_params`.
    pub healthy_endpoints: Vec<Map<String, Value>>,
    /// Deployments that did not, each with `error`.
    pub unhealthy_endpoints: Vec<Map<String, Value>>,
    /// `healthy_endpoints`' length.
    pub healthy_count: usize,
    /// `unhealthy_endpoints`' length.
    pub unhealthy_count: usize,
}

/// `GET /health[?model=GROUP][&model_id=ID]`.
pub async fn health(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<HealthReport>, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let (group, id) = (
        query_param(query.as_deref(), "model"),
        query_param(query.as_deref(), "model_id"),
    );
    // A restricted key checks only what it may call.
    let chosen: Vec<&Deployment> = visible(&state, &caller)
        .filter(|d| group.as_deref().is_none_or(|g| d.model_group == g))
        .filter(|d| id.as_deref().is_none_or(|i| d.id == i))
        .collect();
    let results = futures_util::future::join_all(chosen.iter().map(|d| probe(&state, d))).await;
    let (mut healthy, mut unhealthy) = (Vec::new(), Vec::new());
    for (d, result) in chosen.iter().zip(results) {
        let mut shown = public_params(d);
        match result {
            Ok(()) => healthy.push(shown),
            Err(e) => {
                shown.insert("error".into(), e.message.into());
                unhealthy.push(shown);
            }
        }
    }
    Ok(axum::Json(HealthReport {
        healthy_count: healthy.len(),
        unhealthy_count: unhealthy.len(),
        healthy_endpoints: healthy,
        unhealthy_endpoints: unhealthy,
    }))
}

/// One small call of the deployment's `model_info.mode` (chat unless it says `completion` or
/// `embedding`), bounded by its `health_check_timeout`.
async fn probe(state: &AppState, d: &Deployment) -> Result<(), Error> {
    let info = &d.model_info;
    let max_tokens = info
        .get("health_check_max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(PROBE_MAX_TOKENS);
    let mode = info.get("mode").and_then(Value::as_str).unwrap_or("chat");
    let body = match mode {
        "chat" => json!({
            "model": d.model_group,
            "messages": [{"role": "user", "content": "What's 1 + 1?"}],
            "max_tokens": max_tokens,
        }),
        "completion" => json!({
            "model": d.model_group,
            "prompt": "test from traceway",
            "max_tokens": max_tokens,
        }),
        "embedding" => json!({"model": d.model_group, "input": ["test from traceway"]}),
        other => {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "model_info.mode \"{other}\" cannot be health-checked here (chat, completion and embedding can)"
                ),
            ));
        }
    };
    let request = match mode {
        "completion" => serde_json::from_value(body).map(Request::Completion),
        "embedding" => serde_json::from_value(body).map(Request::Embedding),
        _ => serde_json::from_value(body).map(Request::Chat),
    }
    .map_err(|e| Error::new(ErrorKind::Internal, format!("health check request: {e}")))?;
    let limit = info
        .get("health_check_timeout")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(PROBE_TIMEOUT);
    match tokio::time::timeout(limit, state.client.probe(d, request)).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("no answer within the health check's {limit:?}"),
        )),
    }
}
