//! The library's error: a kind that fixes the HTTP status, OpenAI `type` and span `error.type`,
//! plus the message a person can act on.

use crate::types::{ErrorBody, ErrorDetail};
use std::time::Duration;

/// What class of failure happened; each maps to one HTTP status and one `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or has a bad value (400).
    BadRequest,
    /// The caller's or the upstream's credentials were refused (401).
    Authentication,
    /// The credentials are valid but may not do this (403).
    PermissionDenied,
    /// The model or route does not exist (404).
    NotFound,
    /// The request body is over the size limit (413).
    PayloadTooLarge,
    /// A rate limit was hit (429).
    RateLimited,
    /// The caller's budget (a virtual key's, its team's …) is spent (400, as LiteLLM answers it).
    BudgetExceeded,
    /// The upstream took longer than the timeout (504).
    Timeout,
    /// The upstream answered with a 5xx (its status is passed on).
    UpstreamServer,
    /// The upstream could not be reached (502).
    Connection,
    /// The upstream answered with something that is not its documented format (502).
    InvalidResponse,
    /// No deployment can take the request right now (503).
    Unavailable,
    /// A bug or an unexpected state inside the gateway (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with by default.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::BudgetExceeded => 400,
            ErrorKind::Timeout => 504,
            ErrorKind::UpstreamServer => 500,
            ErrorKind::Connection => 502,
            ErrorKind::InvalidResponse => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The OpenAI error `type` string.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::UpstreamServer => "api_error",
            ErrorKind::Connection => "api_connection_error",
            ErrorKind::InvalidResponse => "api_error",
            ErrorKind::Unavailable => "service_unavailable_error",
            ErrorKind::Internal => "internal_server_error",
        }
    }

    /// The stable class recorded as the span's `error.type`.
    pub fn error_class(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Authentication => "auth_error",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::UpstreamServer => "upstream_error",
            ErrorKind::Connection => "connection_error",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal_error",
        }
    }

    /// The kind an upstream HTTP status maps to.
    pub fn from_upstream_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::BadRequest,
            401 => ErrorKind::Authentication,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::PayloadTooLarge,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::UpstreamServer,
            _ => ErrorKind::InvalidResponse,
        }
    }
}

/// A failed call: its kind, a message for a person, and what else the caller needs to answer it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What went wrong and, where possible, what to do about it.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// The status to answer with when it differs from the kind's default (an upstream 503).
    pub status: Option<u16>,
    /// A machine-readable code (the upstream's, when it gave one).
    pub code: Option<String>,
    /// The provider whose call failed.
    pub provider: Option<String>,
    /// How long the caller should wait before trying again.
    pub retry_after: Option<Duration>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            param: None,
            status: None,
            code: None,
            provider: None,
            retry_after: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Error::new(ErrorKind::BadRequest, message).with_param(param)
    }

    /// Sets the field at fault.
    pub fn with_param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_owned);
        self
    }

    /// Sets the provider whose call failed.
    pub fn with_provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    /// The code to report: the upstream's when known, else the status.
    pub fn code(&self) -> String {
        self.code
            .clone()
            .unwrap_or_else(|| self.status().to_string())
    }

    /// Whether the upstream refused because the prompt is longer than the model's context.
    pub fn is_context_window_exceeded(&self) -> bool {
        let code = self.code.as_deref().unwrap_or_default();
        let msg = self.message.to_ascii_lowercase();
        self.kind == ErrorKind::BadRequest
            && (code == "context_length_exceeded"
                || msg.contains("context length")
                || msg.contains("context window")
                || msg.contains("maximum context"))
    }

    /// Whether the upstream's content filter refused the request or the answer.
    pub fn is_content_policy_violation(&self) -> bool {
        let code = self.code.as_deref().unwrap_or_default();
        let msg = self.message.to_ascii_lowercase();
        self.kind == ErrorKind::BadRequest
            && (code == "content_policy_violation"
                || code == "content_filter"
                || msg.contains("content management policy")
                || msg.contains("content policy"))
    }

    /// The OpenAI error body for this error.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: Some(self.kind.openai_type().to_owned()),
                param: self.param.clone(),
                code: Some(serde_json::Value::String(self.code())),
            },
        }
    }
}
