//! The proxy's error response: every failure is an OpenAI error body with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use traceway::{Error, ErrorKind};

/// A failed request, answered as `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError(Error::bad_request(message, param))
    }

    /// A 401 with a message saying how to authenticate.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError(Error::new(ErrorKind::Authentication, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = self.0.to_body();
        // A model refusal carries LiteLLM's `type` in `code` (a `traceway::Error` takes its type
        // from its kind): answer it as the type, with the status as the code.
        if let Some(t) = self.0.code.as_deref().filter(|c| {
            [
                crate::keys::KEY_MODEL_ACCESS_DENIED,
                crate::keys::TEAM_MODEL_ACCESS_DENIED,
            ]
            .contains(c)
        }) {
            body.error.kind = Some(t.to_owned());
            body.error.code = Some(serde_json::Value::String(self.0.status().to_string()));
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(after) = self.0.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp.extensions_mut().insert(self);
        resp
    }
}
