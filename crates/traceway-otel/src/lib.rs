//! Traceway's telemetry layer: attribute keys, exporter setup from the environment, and the
//! helpers that build the span tree of one LLM call.

pub mod config;
pub mod console;
pub mod destinations;
pub mod dialect;
pub mod env;
pub mod error_text;
pub mod exporter;
pub mod exporter_tls;
pub mod keys;
pub mod metrics;
mod otlp_http;
mod otlp_proto;
pub mod propagation;
