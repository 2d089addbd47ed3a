//! Who may call: the master key (`general_settings.master_key` or `LITELLM_MASTER_KEY`) and the
//! virtual keys made with it; with no master key, everyone.

use crate::error::ApiError;
use crate::keys::Caller;
use crate::server::AppState;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;
use traceway::Secret;

/// Headers a key may arrive in, in the order they are read (LiteLLM's names).
pub const KEY_HEADERS: &[&str] = &["authorization", "x-litellm-api-key", "api-key"];

/// The key presented by the caller, without a `Bearer ` prefix.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    KEY_HEADERS.iter().find_map(|h| {
        let v = headers.get(*h)?.to_str().ok()?.trim();
        let v = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        (!v.is_empty()).then_some(v)
    })
}

/// Who is calling: [`Caller::Open`] without a master key, else the master key or a stored,
/// unexpired virtual key (401 otherwise, never repeating the key presented).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(master) = state.config.master_key.as_ref() else {
        return Ok(Caller::Open);
    };
    let Some(presented) = presented_key(headers) else {
        return Err(ApiError::unauthorized(
            "no API key given: send it as \"Authorization: Bearer sk-...\" (or in x-litellm-api-key)",
        ));
    };
    if bool::from(presented.as_bytes().ct_eq(master.expose().as_bytes())) {
        return Ok(match &state.keys {
            Some(keys) => keys.master(),
            None => Caller::Master(crate::keys::hash_key(master.expose()).into()),
        });
    }
    match &state.keys {
        Some(keys) => Ok(Caller::Key(keys.authenticate(presented).await?)),
        None => Err(ApiError::unauthorized(
            "the API key given is not valid for this proxy",
        )),
    }
}

/// Checks the caller's key against the master key alone; with no master key, everyone may call.
/// (The proxy's routes use [`authenticate`], which also knows virtual keys.)
pub fn authorize(master_key: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(master) = master_key else {
        return Ok(());
    };
    match presented_key(headers) {
        None => Err(ApiError::unauthorized(
            "no API key given: send it as \"Authorization: Bearer sk-...\" (or in x-litellm-api-key)",
        )),
        Some(k) if bool::from(k.as_bytes().ct_eq(master.expose().as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(
            "the API key given is not valid for this proxy",
        )),
    }
}
