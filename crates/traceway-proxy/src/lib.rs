//! The Traceway proxy: an OpenAI-compatible HTTP server over the `traceway` client, configured
//! by a LiteLLM-style `config.yaml`, tracing every request with OpenTelemetry.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod handlers;
pub mod health_check;
pub mod keys;
pub mod model_info;
pub mod request_span;
pub mod server;
pub mod ui;
