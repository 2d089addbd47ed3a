//! Serde shapes of `config.yaml`, tolerant of keys LiteLLM has and Traceway does not use
//! (those are checked separately, in `known_keys`).

use serde::Deserialize;
use serde_json::{Map, Value};

/// The whole file.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawConfig {
    /// Entries are checked one by one so every bad entry is reported.
    #[serde(default)]
    pub model_list: Vec<Value>,
    #[serde(default)]
    pub litellm_settings: Option<RawLitellmSettings>,
    #[serde(default)]
    pub general_settings: Option<RawGeneralSettings>,
    #[serde(default)]
    pub router_settings: Option<RawRouterSettings>,
}

/// One `model_list` entry.
#[derive(Debug, Deserialize)]
pub(super) struct RawModelEntry {
    pub model_name: String,
    pub litellm_params: RawLitellmParams,
    #[serde(default)]
    pub model_info: Option<Map<String, Value>>,
}

/// `litellm_params`; everything not named is passed upstream.
#[derive(Debug, Deserialize)]
pub(super) struct RawLitellmParams {
    pub model: String,
    #[serde(default)]
    pub api_base: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub stream_timeout: Option<f64>,
    #[serde(default)]
    pub mock_response: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `litellm_settings`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawLitellmSettings {
    #[serde(default)]
    pub callbacks: Option<Vec<String>>,
    #[serde(default)]
    pub success_callback: Option<Vec<String>>,
    #[serde(default)]
    pub failure_callback: Option<Vec<String>>,
    #[serde(default)]
    pub turn_off_message_logging: Option<bool>,
    #[serde(default)]
    pub request_timeout: Option<f64>,
}

/// `general_settings`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawGeneralSettings {
    #[serde(default)]
    pub master_key: Option<String>,
    #[serde(default)]
    pub max_request_size_mb: Option<f64>,
}

/// `router_settings`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawRouterSettings {
    #[serde(default)]
    pub timeout: Option<f64>,
}
