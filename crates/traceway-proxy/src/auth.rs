//! Who may call: the master key from `general_settings.master_key`, when one is set.

use crate::error::ApiError;
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

/// Checks the caller's key against the master key; with no master key, everyone may call.
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
