//! `GET /model/info` (and `/v1/model/info`): every deployment a caller may use, as LiteLLM's
//! proxy lists them — `model_name`, `litellm_params` without secrets, and `model_info` with the
//! deployment's id — for dashboards and tools that read a gateway's model list.

use crate::auth;
use crate::error::ApiError;
use crate::keys::Caller;
use crate::server::{AppState, provider_models};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use traceway::deployment::{Deployment, is_secret_param};
use traceway::{Error, ErrorKind};

/// One deployment, as `/model/info` lists it.
#[derive(Debug, Serialize)]
pub struct ModelInfoEntry {
    /// The model group clients ask for.
    pub model_name: String,
    /// The deployment's `litellm_params`, secrets and credentials left out.
    pub litellm_params: Map<String, Value>,
    /// The config's `model_info` (secrets left out) with `id`, `db_model`, the provider and
    /// the prices.
    pub model_info: Map<String, Value>,
}

/// The answer: `{"data": [...]}`.
#[derive(Debug, Serialize)]
pub struct ModelInfoList {
    /// The deployments.
    pub data: Vec<ModelInfoEntry>,
}

/// `GET /model/info[?litellm_model_id=ID]`.
pub async fn model_info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ModelInfoList>, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let wanted = query_param(query.as_deref(), "litellm_model_id");
    let data: Vec<ModelInfoEntry> = visible(&state, &caller)
        .filter(|d| wanted.as_deref().is_none_or(|id| d.id == id))
        .map(entry)
        .collect();
    if let Some(id) = wanted
        && data.is_empty()
    {
        // 400 as LiteLLM answers it; also what a key that may not see the deployment gets.
        return Err(ApiError(
            Error::new(
                ErrorKind::BadRequest,
                format!(
                    "model id \"{id}\" is not served here (GET /model/info without litellm_model_id lists the ids)"
                ),
            )
            .with_param(Some("litellm_model_id")),
        ));
    }
    Ok(axum::Json(ModelInfoList { data }))
}

/// One model group, as `/model_group/info` lists it (LiteLLM's `ModelGroupInfo`).
#[derive(Debug, Default, Serialize)]
pub struct ModelGroupInfo {
    /// The group's name.
    pub model_group: String,
    /// The providers of its deployments (`openai`, `azure`, …), each once.
    pub providers: Vec<String>,
    /// `model_info.mode` of its first deployment that says (default `chat`).
    pub mode: String,
    /// `model_info.max_input_tokens`, the first given.
    pub max_input_tokens: Option<u64>,
    /// `model_info.max_output_tokens` (or `max_tokens`), the first given.
    pub max_output_tokens: Option<u64>,
    /// The first priced deployment's input price.
    pub input_cost_per_token: Option<f64>,
    /// The first priced deployment's output price.
    pub output_cost_per_token: Option<f64>,
    /// Its deployments' `tpm`, summed (when any gives one).
    pub tpm: Option<u64>,
    /// Its deployments' `rpm`, summed (when any gives one).
    pub rpm: Option<u64>,
    /// `model_info.supports_function_calling` of any deployment.
    pub supports_function_calling: bool,
    /// `model_info.supports_parallel_function_calling` of any deployment.
    pub supports_parallel_function_calling: bool,
    /// `model_info.supports_vision` of any deployment.
    pub supports_vision: bool,
}

/// `GET /model_group/info[?model_group=NAME]`: the groups a caller may use, each summarised
/// from its deployments.
pub async fn model_group_info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let wanted = query_param(query.as_deref(), "model_group");
    let mut groups: Vec<ModelGroupInfo> = Vec::new();
    for d in visible(&state, &caller) {
        if wanted.as_deref().is_some_and(|g| g != d.model_group) {
            continue;
        }
        let i = match groups.iter().position(|g| g.model_group == d.model_group) {
            Some(i) => i,
            None => {
                groups.push(ModelGroupInfo {
                    model_group: d.model_group.clone(),
                    ..ModelGroupInfo::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        let provider = d.provider_model.split_once('/').map_or("", |(p, _)| p);
        if !g.providers.iter().any(|p| p == provider) {
            g.providers.push(provider.to_owned());
        }
        let info = &d.model_info;
        let number = |key: &str| info.get(key).and_then(Value::as_u64);
        let flag = |key: &str| info.get(key).and_then(Value::as_bool).unwrap_or(false);
        if g.mode.is_empty()
            && let Some(mode) = info.get("mode").and_then(Value::as_str)
        {
            g.mode = mode.to_owned();
        }
        g.max_input_tokens = g.max_input_tokens.or_else(|| number("max_input_tokens"));
        g.max_output_tokens = g
            .max_output_tokens
            .or_else(|| number("max_output_tokens"))
            .or_else(|| number("max_tokens"));
        if g.input_cost_per_token.is_none()
            && let Some(price) = d.price
        {
            g.input_cost_per_token = Some(price.input_per_token);
            g.output_cost_per_token = Some(price.output_per_token);
        }
        if let Some(t) = d.tpm {
            g.tpm = Some(g.tpm.unwrap_or(0).saturating_add(t));
        }
        if let Some(r) = d.rpm {
            g.rpm = Some(g.rpm.unwrap_or(0).saturating_add(r));
        }
        g.supports_function_calling |= flag("supports_function_calling");
        g.supports_parallel_function_calling |= flag("supports_parallel_function_calling");
        g.supports_vision |= flag("supports_vision");
    }
    for g in &mut groups {
        if g.mode.is_empty() {
            g.mode = "chat".to_owned();
        }
    }
    Ok(axum::Json(serde_json::json!({ "data": groups })))
}

/// The deployments `caller` may use: all of them, or a restricted key's models only.
pub fn visible<'a>(
    state: &'a AppState,
    caller: &'a Caller,
) -> impl Iterator<Item = &'a Deployment> {
    state
        .client
        .deployments()
        .filter(move |d| match caller.key() {
            Some(info) => crate::keys::access::check(
                info,
                &d.model_group,
                &provider_models(state, &d.model_group),
            )
            .is_ok(),
            None => true,
        })
}

/// The first value of `name` in a URL query string, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn entry(d: &Deployment) -> ModelInfoEntry {
    let mut info = public(&d.model_info);
    info.insert("id".into(), d.id.clone().into());
    info.insert("db_model".into(), false.into());
    let provider = d.provider_model.split_once('/').map_or("", |(p, _)| p);
    info.insert("litellm_provider".into(), provider.into());
    if let Some(price) = d.price {
        info.insert("input_cost_per_token".into(), price.input_per_token.into());
        info.insert(
            "output_cost_per_token".into(),
            price.output_per_token.into(),
        );
    }
    ModelInfoEntry {
        model_name: d.model_group.clone(),
        litellm_params: public_params(d),
        model_info: info,
    }
}

/// A deployment's `litellm_params` as they may be shown: no key, credential, authorization
/// header, or `api_base` user info and query.
pub fn public_params(d: &Deployment) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("model".into(), d.provider_model.clone().into());
    if let Some(base) = d.api_base.as_deref().and_then(public_api_base) {
        params.insert("api_base".into(), base.into());
    }
    let seconds = |t: Option<std::time::Duration>| t.map(|t| Value::from(t.as_secs_f64()));
    let numbers = [
        ("timeout", seconds(d.timeout)),
        ("stream_timeout", seconds(d.stream_timeout)),
        ("rpm", d.rpm.map(Value::from)),
        ("tpm", d.tpm.map(Value::from)),
        ("weight", d.weight.map(Value::from)),
        ("order", d.order.map(Value::from)),
        ("num_retries", d.num_retries.map(Value::from)),
    ];
    for (key, value) in numbers {
        if let Some(v) = value {
            params.insert(key.into(), v);
        }
    }
    if let Some(mock) = &d.mock_response {
        params.insert("mock_response".into(), mock.clone().into());
    }
    params.extend(public(&d.params));
    params
}

/// `map` without its secrets, at any depth: keys that name a secret, key, token, password or
/// credential, and header-like keys that carry authorization (`extra_headers.Authorization`).
/// Token counts and prices (`max_tokens`, `input_cost_per_token`) are not secrets.
fn public(map: &Map<String, Value>) -> Map<String, Value> {
    let hidden = |k: &str| {
        let k = k.to_ascii_lowercase();
        let counts_tokens = k.ends_with("_tokens") || k.ends_with("_per_token");
        (is_secret_param(&k) && !counts_tokens) || k.contains("auth")
    };
    map.iter()
        .filter(|(k, _)| !hidden(k))
        .map(|(k, v)| {
            let v = match v {
                Value::Object(inner) => Value::Object(public(inner)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// `api_base` without anything secret: user info, query (Azure-style `?api-key=`) and fragment
/// are dropped.
pub fn public_api_base(base: &str) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_left_out_at_any_depth() {
        let Value::Object(params) = json!({
            "temperature": 0.2,
            "max_tokens": 256,
            "output_cost_per_token": 0.5,
            "access_token": "t",
            "api_key": "sk-1",
            "aws_secret_access_key": "s",
            "vertex_credentials": "{}",
            "extra_headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "X-Trace": "on"},
            "nested": {"client_secret": "c", "region": "eu"}
        }) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(public(&params)),
            json!({
                "temperature": 0.2,
                "max_tokens": 256,
                "output_cost_per_token": 0.5,
                "extra_headers": {"X-Trace": "on"},
                "nested": {"region": "eu"}
            })
        );
    }

    #[test]
    fn api_base_keeps_only_scheme_host_port_and_path() {
        assert_eq!(
            public_api_base("https://user:pw@example.com:8443/openai/v1?api-key=k#x").as_deref(),
            Some("https://example.com:8443/openai/v1")
        );
        assert_eq!(
            public_api_base("http://localhost:8000/v1").as_deref(),
            Some("http://localhost:8000/v1")
        );
        assert_eq!(public_api_base("not a url"), None);
    }
}
