//! Attribute dialects: the names each backend reads, applied per destination at export time.
//!
//! Spans are recorded once, in the default dialect (OTel GenAI semconv plus the OpenLLMetry
//! indexed keys that Traceloop, Laminar and Langfuse render). A destination that reads another
//! dialect — Arize Phoenix and Arize read OpenInference — gets each span rewritten by its own
//! exporter, so several destinations with different dialects can run at once.

use crate::keys as k;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which attribute names a destination reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// OTel GenAI semconv v1.41 plus OpenLLMetry's indexed keys, as recorded.
    #[default]
    GenAi,
    /// OpenInference (`openinference.span.kind`, `llm.input_messages.{i}.message.*` …).
    OpenInference,
}

/// OpenInference attribute names.
pub mod openinference {
    /// `LLM`, `EMBEDDING` or `CHAIN`.
    pub const SPAN_KIND: &str = "openinference.span.kind";
    /// Model name.
    pub const LLM_MODEL_NAME: &str = "llm.model_name";
    /// Provider (`openai`, `anthropic` …).
    pub const LLM_PROVIDER: &str = "llm.provider";
    /// AI system (`openai`, `anthropic` …).
    pub const LLM_SYSTEM: &str = "llm.system";
    /// Prefix of input messages (`llm.input_messages.{i}.message.role` …).
    pub const LLM_INPUT_MESSAGES: &str = "llm.input_messages";
    /// Prefix of output messages.
    pub const LLM_OUTPUT_MESSAGES: &str = "llm.output_messages";
    /// Prompt tokens.
    pub const LLM_TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
    /// Completion tokens.
    pub const LLM_TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
    /// Total tokens.
    pub const LLM_TOKEN_COUNT_TOTAL: &str = "llm.token_count.total";
    /// Prompt tokens read from cache.
    pub const LLM_TOKEN_COUNT_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
    /// Invocation parameters as JSON.
    pub const LLM_INVOCATION_PARAMETERS: &str = "llm.invocation_parameters";
    /// Prefix of tools (`llm.tools.{i}.tool.json_schema`).
    pub const LLM_TOOLS: &str = "llm.tools";
    /// Input as a value.
    pub const INPUT_VALUE: &str = "input.value";
    /// MIME type of the input value.
    pub const INPUT_MIME_TYPE: &str = "input.mime_type";
    /// Output as a value.
    pub const OUTPUT_VALUE: &str = "output.value";
    /// MIME type of the output value.
    pub const OUTPUT_MIME_TYPE: &str = "output.mime_type";
    /// Embedding model name.
    pub const EMBEDDING_MODEL_NAME: &str = "embedding.model_name";
    /// Prefix of embedded texts (`embedding.embeddings.{i}.embedding.text`).
    pub const EMBEDDING_EMBEDDINGS: &str = "embedding.embeddings";
}

use openinference as oi;

/// Rewrites a span from the recorded dialect into `dialect`.
pub fn rewrite(span: &mut SpanData, dialect: Dialect) {
    match dialect {
        Dialect::GenAi => {}
        Dialect::OpenInference => to_openinference(span),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_owned(),
        other => other.to_string(),
    }
}

/// Maps `gen_ai.{side}.{i}.{rest}` keys to `(i, rest)`.
fn indexed<'a>(key: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
    let (i, field) = rest.split_once('.')?;
    Some((i.parse().ok()?, field))
}

/// Rewrites an OpenLLMetry message field (`role`, `content`, `tool_calls.{j}.name` …) into
/// OpenInference's `message.*` names.
fn message_field(field: &str) -> Option<String> {
    match field {
        "role" => Some("message.role".into()),
        "content" => Some("message.content".into()),
        "tool_call_id" => Some("message.tool_call_id".into()),
        _ => {
            let rest = field.strip_prefix("tool_calls.")?;
            let (j, what) = rest.split_once('.')?;
            let name = match what {
                "name" => "tool_call.function.name",
                "arguments" => "tool_call.function.arguments",
                "id" => "tool_call.id",
                _ => return None,
            };
            Some(format!("message.tool_calls.{j}.{name}"))
        }
    }
}

fn to_openinference(span: &mut SpanData) {
    let attrs: BTreeMap<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), kv.value.clone()))
        .collect();
    let operation = attrs.get(k::GEN_AI_OPERATION_NAME).map(text);
    // The span that carries the request has its content; attempts and the server span of
    // nested mode are steps of a chain.
    let carries_request = attrs.contains_key(k::LLM_REQUEST_TYPE);
    let is_embedding = operation.as_deref() == Some("embeddings");
    let mut out: Vec<KeyValue> = Vec::with_capacity(span.attributes.len() + 8);
    let mut params = serde_json::Map::new();
    for (key, value) in &attrs {
        if let Some((i, field)) = indexed(key, k::GEN_AI_PROMPT_PREFIX) {
            if is_embedding {
                if field == "content" {
                    out.push(KeyValue::new(
                        format!("{}.{i}.embedding.text", oi::EMBEDDING_EMBEDDINGS),
                        value.clone(),
                    ));
                }
            } else if let Some(f) = message_field(field) {
                out.push(KeyValue::new(
                    format!("{}.{i}.{f}", oi::LLM_INPUT_MESSAGES),
                    value.clone(),
                ));
            }
            continue;
        }
        if let Some((i, field)) = indexed(key, k::GEN_AI_COMPLETION_PREFIX) {
            if let Some(f) = message_field(field) {
                out.push(KeyValue::new(
                    format!("{}.{i}.{f}", oi::LLM_OUTPUT_MESSAGES),
                    value.clone(),
                ));
            }
            continue;
        }
        if let Some((i, field)) = indexed(key, k::LLM_REQUEST_FUNCTIONS_PREFIX) {
            if field == "name" {
                let mut schema =
                    serde_json::json!({"type": "function", "function": {"name": text(value)}});
                if let Some(d) = attrs.get(&format!(
                    "{}.{i}.description",
                    k::LLM_REQUEST_FUNCTIONS_PREFIX
                )) {
                    schema["function"]["description"] = serde_json::Value::String(text(d));
                }
                if let Some(p) = attrs.get(&format!(
                    "{}.{i}.parameters",
                    k::LLM_REQUEST_FUNCTIONS_PREFIX
                )) {
                    schema["function"]["parameters"] =
                        serde_json::from_str(&text(p)).unwrap_or(serde_json::Value::Null);
                }
                out.push(KeyValue::new(
                    format!("{}.{i}.tool.json_schema", oi::LLM_TOOLS),
                    schema.to_string(),
                ));
            }
            continue;
        }
        match key.as_str() {
            k::GEN_AI_INPUT_MESSAGES => {
                out.push(KeyValue::new(oi::INPUT_VALUE, value.clone()));
                out.push(KeyValue::new(oi::INPUT_MIME_TYPE, "application/json"));
            }
            k::GEN_AI_OUTPUT_MESSAGES => {
                out.push(KeyValue::new(oi::OUTPUT_VALUE, value.clone()));
                out.push(KeyValue::new(oi::OUTPUT_MIME_TYPE, "application/json"));
            }
            k::GEN_AI_SYSTEM_INSTRUCTIONS => {}
            k::GEN_AI_REQUEST_MODEL => {
                let name = if is_embedding {
                    oi::EMBEDDING_MODEL_NAME
                } else {
                    oi::LLM_MODEL_NAME
                };
                out.push(KeyValue::new(name, value.clone()));
                out.push(KeyValue::new(key.clone(), value.clone()));
            }
            k::GEN_AI_PROVIDER_NAME => {
                out.push(KeyValue::new(oi::LLM_PROVIDER, value.clone()));
                out.push(KeyValue::new(key.clone(), value.clone()));
            }
            k::GEN_AI_SYSTEM => out.push(KeyValue::new(oi::LLM_SYSTEM, value.clone())),
            k::GEN_AI_USAGE_INPUT_TOKENS => {
                out.push(KeyValue::new(oi::LLM_TOKEN_COUNT_PROMPT, value.clone()))
            }
            k::GEN_AI_USAGE_OUTPUT_TOKENS => {
                out.push(KeyValue::new(oi::LLM_TOKEN_COUNT_COMPLETION, value.clone()))
            }
            k::GEN_AI_USAGE_TOTAL_TOKENS => {
                out.push(KeyValue::new(oi::LLM_TOKEN_COUNT_TOTAL, value.clone()))
            }
            k::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS => {
                out.push(KeyValue::new(oi::LLM_TOKEN_COUNT_CACHE_READ, value.clone()))
            }
            k::GEN_AI_USAGE_PROMPT_TOKENS | k::GEN_AI_USAGE_COMPLETION_TOKENS => {}
            _ => {
                if let Some(param) = key
                    .strip_prefix("gen_ai.request.")
                    .filter(|p| *p != "model")
                {
                    params.insert(param.to_owned(), json_value(value));
                }
                out.push(KeyValue::new(key.clone(), value.clone()));
            }
        }
    }
    if carries_request {
        let kind = if is_embedding { "EMBEDDING" } else { "LLM" };
        out.push(KeyValue::new(oi::SPAN_KIND, kind));
        if !params.is_empty() {
            out.push(KeyValue::new(
                oi::LLM_INVOCATION_PARAMETERS,
                serde_json::Value::Object(params).to_string(),
            ));
        }
    } else {
        out.push(KeyValue::new(oi::SPAN_KIND, "CHAIN"));
    }
    span.attributes = out;
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::I64(i) => serde_json::Value::from(*i),
        Value::F64(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        other => serde_json::Value::String(other.to_string()),
    }
}

/// Wraps an exporter so every span it sends is rewritten into `dialect` first.
#[derive(Debug)]
pub struct DialectExporter<E> {
    inner: E,
    dialect: Dialect,
}

impl<E> DialectExporter<E> {
    /// Wraps `inner`.
    pub fn new(inner: E, dialect: Dialect) -> Self {
        DialectExporter { inner, dialect }
    }
}

impl<E: SpanExporter> SpanExporter for DialectExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        if self.dialect != Dialect::GenAi {
            for span in &mut batch {
                rewrite(span, self.dialect);
            }
        }
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
