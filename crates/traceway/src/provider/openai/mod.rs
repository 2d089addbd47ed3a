//! `openai/<model>`: OpenAI's API, which also serves every OpenAI-compatible server
//! (vLLM, LM Studio, llama.cpp server …) through `api_base`.

use super::{
    HttpProvider, Operation, Request, Response, StreamEvent, StreamParser, Target, UpstreamRequest,
};
use crate::error::{Error, ErrorKind};
use crate::sse::SseEvent;
use crate::types::{ErrorBody, GATEWAY_ONLY_FIELDS};
use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

pub(crate) mod body;

/// Provider id.
pub const ID: &str = "openai";
/// The header naming the OpenAI organization a request is billed to.
const ORGANIZATION: http::HeaderName = http::HeaderName::from_static("openai-organization");
/// Where requests go when the deployment names no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.openai.com/v1";

/// The OpenAI wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi;

fn path(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "/chat/completions",
        Operation::Completion => "/completions",
        Operation::Embedding => "/embeddings",
    }
}

/// Serialises `request` with the upstream model name, gateway-only fields removed and the
/// deployment's extra params filled in where the caller did not set them.
pub(crate) fn request_body(target: &Target<'_>, request: &Request) -> Result<Value, Error> {
    let value = match request {
        Request::Chat(r) => serde_json::to_value(r),
        Request::Completion(r) => serde_json::to_value(r),
        Request::Embedding(r) => serde_json::to_value(r),
    };
    let mut value = value.map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })?;
    if let Value::Object(map) = &mut value {
        // One pass over the few fields a request has, rather than a lookup per gateway field.
        map.retain(|field, _| !GATEWAY_ONLY_FIELDS.contains(&field.as_str()));
        map.insert("model".to_owned(), Value::String(target.model.to_owned()));
        for (k, v) in target.params {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Ok(value)
}

/// Parses the upstream's `retry-after` header (seconds) if it sent one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        // `try_`: a value past what a Duration holds (`1e308`) would panic the request.
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
}

/// An error from an OpenAI-shaped error body, keeping the upstream's message, param and code.
pub(crate) fn error_from_body(
    provider: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    let kind = ErrorKind::from_upstream_status(status);
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let mut err = match parsed {
        Some(b) => {
            let mut e = Error::new(
                kind,
                format!("{provider} returned {status}: {}", b.error.message),
            );
            e.param = b.error.param;
            e.code = match b.error.code {
                Some(Value::String(s)) => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            e
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().take(200).collect();
            Error::new(
                kind,
                format!(
                    "{provider} returned {status} with a body that is not an OpenAI error: {snippet}"
                ),
            )
        }
    };
    if kind == ErrorKind::UpstreamServer {
        err.status = Some(status);
    }
    err.retry_after = retry_after(headers);
    err.with_provider(provider)
}

pub(crate) fn invalid(provider: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("{provider} returned {what} that could not be parsed: {e}"),
    )
    .with_provider(provider)
}

/// Parses an OpenAI-format response body of `operation`.
pub(crate) fn parse_openai_response(
    provider: &str,
    operation: Operation,
    body: &[u8],
) -> Result<Response, Error> {
    let parsed = match operation {
        Operation::Chat => crate::types::from_json(body).map(Response::Chat),
        Operation::Completion => crate::types::from_json(body).map(Response::Completion),
        Operation::Embedding => crate::types::from_json(body).map(Response::Embedding),
    };
    parsed.map_err(|e| invalid(provider, "a response", e))
}

/// Parses OpenAI-format stream events (the format every OpenAI-compatible server streams).
#[derive(Debug)]
pub(crate) struct OpenAiStream {
    /// Provider prefix for errors.
    pub provider: &'static str,
    /// Which endpoint is streaming.
    pub operation: Operation,
}

impl StreamParser for OpenAiStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        parse_openai_event(self.provider, self.operation, frame).map(|e| vec![e])
    }
}

/// Parses an OpenAI-format stream event of `operation`.
pub(crate) fn parse_openai_event(
    provider: &str,
    operation: Operation,
    event: &SseEvent,
) -> Result<StreamEvent, Error> {
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(StreamEvent::Skip);
    }
    if data == "[DONE]" {
        return Ok(StreamEvent::Done);
    }
    if data.starts_with("{\"error\"")
        && let Ok(b) = serde_json::from_str::<ErrorBody>(data)
    {
        return Err(Error::new(
            ErrorKind::UpstreamServer,
            format!("{provider} failed mid-stream: {}", b.error.message),
        )
        .with_provider(provider));
    }
    let chunk = match operation {
        Operation::Chat => serde_json::from_str(data).map(super::Chunk::Chat),
        Operation::Completion => serde_json::from_str(data).map(super::Chunk::Completion),
        Operation::Embedding => {
            return Err(invalid(
                provider,
                "a stream for embeddings",
                "embeddings do not stream",
            ));
        }
    };
    chunk
        .map(StreamEvent::Chunk)
        .map_err(|e| invalid(provider, "a stream event", e))
}

impl HttpProvider for OpenAi {
    fn id(&self) -> &'static str {
        ID
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        // Provider settings among the params (`organization`, `api_version` …) stay out of the
        // body, where OpenAI would refuse them as unknown arguments.
        let body = body::write(target, request, super::common::SETTINGS_FIELDS)?;
        let base = target
            .api_base
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/');
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = target.api_key {
            // Concatenated rather than format!ed: this runs on every request.
            let v = [b"Bearer ", key.as_bytes()].concat();
            let mut v = HeaderValue::from_bytes(&v).map_err(|_| {
                Error::new(
                    ErrorKind::BadRequest,
                    "the deployment's api_key contains characters not allowed in an HTTP header",
                )
            })?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        // `litellm_params.organization`, sent as the OpenAI client libraries send it.
        if let Some(org) = target.params.get("organization").and_then(Value::as_str) {
            headers.insert(
                ORGANIZATION,
                super::common::secret_header(org, "organization")?,
            );
        }
        Ok(UpstreamRequest {
            url: [base, path(request.operation())].concat(),
            headers,
            body: body.into(),
        })
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &["OPENAI_API_KEY"]
    }

    fn api_base_env(&self) -> &'static [&'static str] {
        &["OPENAI_BASE_URL", "OPENAI_API_BASE"]
    }

    fn params_env(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("organization", &["OPENAI_ORGANIZATION"])]
    }

    fn parse_response(
        &self,
        _target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        parse_openai_response(ID, operation, body)
    }

    fn stream_parser(&self, _target: &Target<'_>, operation: Operation) -> Box<dyn StreamParser> {
        Box::new(OpenAiStream {
            provider: ID,
            operation,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from_body(ID, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatCompletionRequest, ChatMessage, Extra, Role};

    #[test]
    fn body_drops_gateway_fields_keeps_unknown_ones_and_fills_params() {
        let mut req = ChatCompletionRequest::new("alias", vec![ChatMessage::new(Role::User, "hi")]);
        req.extra.insert("mock_response".into(), "x".into());
        req.extra
            .insert("metadata".into(), serde_json::json!({"a": 1}));
        req.extra.insert("reasoning_effort".into(), "low".into());
        req.temperature = Some(0.0);
        let mut params = Extra::new();
        params.insert("temperature".into(), serde_json::json!(0.7));
        params.insert("top_p".into(), serde_json::json!(0.5));
        params.insert("organization".into(), serde_json::json!("org-42"));
        params.insert("api_version".into(), serde_json::json!("2024-10-21"));
        let target = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "gpt-4o",
            api_base: Some("http://h/v1/"),
            api_key: Some("sk-1"),
            params: &params,
        };
        let up = OpenAi.build_request(&target, &Request::Chat(req)).unwrap();
        assert_eq!(up.url, "http://h/v1/chat/completions");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["top_p"], 0.5);
        assert_eq!(body["reasoning_effort"], "low");
        assert!(body.get("mock_response").is_none() && body.get("metadata").is_none());
        assert!(body.get("organization").is_none() && body.get("api_version").is_none());
        assert_eq!(up.headers["openai-organization"], "org-42");
        assert!(up.headers[header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn error_bodies_keep_message_code_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        let e = OpenAi.parse_error(
            429,
            &h,
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.status(), 429);
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(7)));
        assert!(e.message.contains("Rate limit reached"));
        let e = OpenAi.parse_error(503, &HeaderMap::new(), b"<html>down</html>");
        assert_eq!(e.status(), 503);
        assert!(e.message.contains("<html>down"));
    }
}
