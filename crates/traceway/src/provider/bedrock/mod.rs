//! `bedrock/<model id>`: Amazon Bedrock Runtime. Chat through Converse and ConverseStream (AWS
//! event-stream framing), embeddings through InvokeModel for Titan and Cohere models, every
//! request SigV4-signed.
//!
//! Credentials and region come from `litellm_params` (`aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token`, `aws_region_name`) or the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION_NAME`,
//! `AWS_REGION`); an `api_key` (or `AWS_BEARER_TOKEN_BEDROCK`) is sent as a Bedrock API key
//! instead. `api_base` (or `aws_bedrock_runtime_endpoint`) replaces the regional endpoint.

mod eventstream;
mod request;
mod response;
pub mod sigv4;
mod stream;
mod wire;

use super::{
    FrameDecoder, HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest,
};
use crate::error::{Error, ErrorKind};
use crate::provider::openai::retry_after;
use http::{HeaderMap, HeaderValue, header};
use std::time::SystemTime;

/// Provider id.
pub const ID: &str = "bedrock";
/// The OTel `gen_ai.provider.name` of Bedrock.
pub const SEMCONV_NAME: &str = "aws.bedrock";

/// Name of the tool a JSON-mode request is forced to call (LiteLLM's name).
const JSON_TOOL: &str = "json_tool_call";

/// The Bedrock Runtime wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bedrock;

/// The Bedrock model id: `model_id` from the params (an ARN or inference profile) or the model
/// name, without LiteLLM's `converse/` route prefix.
fn model_id<'a>(target: &'a Target<'_>) -> &'a str {
    target
        .params
        .get("model_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            target
                .model
                .strip_prefix("converse/")
                .unwrap_or(target.model)
        })
}

/// Percent-encodes a path segment: everything but RFC 3986 unreserved characters, so a model
/// id's `:` (and an ARN's `/`) stays inside its segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bearer(token: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
        Error::bad_request(
            "the Bedrock API key contains characters not allowed in an HTTP header",
            None,
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn to_bytes(value: &serde_json::Value) -> Result<bytes::Bytes, Error> {
    serde_json::to_vec(value).map(Into::into).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })
}

/// The error kind and answer status of a Bedrock exception type (`ThrottlingException`,
/// `throttlingException` in streams), or `None` for a type this version does not know.
fn exception_kind(exception: &str) -> Option<(ErrorKind, Option<u16>)> {
    let kind = match exception.to_ascii_lowercase().as_str() {
        "throttlingexception" | "toomanyrequestsexception" | "servicequotaexceededexception" => {
            (ErrorKind::RateLimited, None)
        }
        "accessdeniedexception" => (ErrorKind::PermissionDenied, None),
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception"
        | "invalidclienttokenid" => (ErrorKind::Authentication, None),
        "validationexception" | "serializationexception" => (ErrorKind::BadRequest, None),
        "resourcenotfoundexception" => (ErrorKind::NotFound, None),
        "modelnotreadyexception" | "serviceunavailableexception" => {
            (ErrorKind::UpstreamServer, Some(503))
        }
        "modeltimeoutexception" => (ErrorKind::Timeout, None),
        "internalserverexception" | "modelerrorexception" | "modelstreamerrorexception" => {
            (ErrorKind::UpstreamServer, Some(500))
        }
        _ => return None,
    };
    Some(kind)
}

/// The error for an exception a ConverseStream sent mid-stream.
fn stream_exception(provider: &str, exception: &str, message: &str) -> Error {
    let (kind, status) =
        exception_kind(exception).unwrap_or((ErrorKind::UpstreamServer, Some(500)));
    let mut e = Error::new(
        kind,
        format!("{provider} failed mid-stream with {exception}: {message}"),
    )
    .with_provider(provider);
    e.status = status;
    e.code = Some(exception.to_owned());
    e
}

/// The error for a non-2xx Bedrock answer: the type from `x-amzn-errortype` (or the body's
/// `__type`), the message from the body.
fn error_from(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let parsed: Option<wire::ErrorBody> = serde_json::from_slice(body).ok();
    let header_type = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(':').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let body_type = parsed
        .as_ref()
        .and_then(|b| b.kind.as_deref())
        .and_then(|t| t.rsplit('#').next())
        .map(str::to_owned);
    let exception = header_type.or(body_type);
    let message = match parsed.and_then(|b| b.message) {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(body);
            text.chars().take(200).collect()
        }
    };
    let (kind, status_override) = exception
        .as_deref()
        .and_then(exception_kind)
        .unwrap_or_else(|| (ErrorKind::from_upstream_status(status), None));
    let label = exception.as_deref().unwrap_or("an error");
    let mut e = Error::new(
        kind,
        format!("{provider} returned {status} ({label}): {message}"),
    )
    .with_provider(provider);
    if kind == ErrorKind::UpstreamServer {
        e.status = Some(if (500..=599).contains(&status) {
            status
        } else {
            status_override.unwrap_or(500)
        });
    }
    e.code = exception;
    e.retry_after = retry_after(headers);
    e
}

impl HttpProvider for Bedrock {
    fn id(&self) -> &'static str {
        ID
    }

    fn semconv_name(&self) -> &'static str {
        SEMCONV_NAME
    }

    fn serves_completions(&self) -> bool {
        false
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        let settings = sigv4::resolve(target.params, &|name| target.env.var(name))?;
        let model = model_id(target);
        let (action, body, stream) = match request {
            Request::Chat(r) => {
                let action = if r.is_stream() {
                    "converse-stream"
                } else {
                    "converse"
                };
                (action, request::converse_body(target, r)?, r.is_stream())
            }
            Request::Embedding(r) => ("invoke", request::embedding_body(target, model, r)?, false),
            Request::Completion(_) => {
                return Err(Error::bad_request(
                    "bedrock serves chat completions and embeddings; send text completions as a chat request",
                    Some("model"),
                ));
            }
        };
        let base = match (target.api_base, &settings.endpoint) {
            (Some(b), _) => b.trim_end_matches('/').to_owned(),
            (None, Some(e)) => e.trim_end_matches('/').to_owned(),
            (None, None) => format!("https://bedrock-runtime.{}.amazonaws.com", settings.region),
        };
        let url = format!("{base}/model/{}/{action}", encode_segment(model));
        let body = to_bytes(&body)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if stream {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            }),
        );
        match (
            target.api_key,
            &settings.credentials,
            &settings.bearer_token,
        ) {
            (Some(key), _, _) => {
                headers.insert(header::AUTHORIZATION, bearer(key)?);
            }
            (None, Some(creds), _) => sigv4::sign_request(
                creds,
                &settings.region,
                &url,
                &mut headers,
                &body,
                SystemTime::now(),
            )?,
            (None, None, Some(token)) => {
                headers.insert(header::AUTHORIZATION, bearer(token)?);
            }
            (None, None, None) => {
                return Err(Error::new(
                    ErrorKind::Authentication,
                    format!(
                        "no AWS credentials for bedrock: set {} and {} (or litellm_params {} and {}), or a Bedrock API key as api_key",
                        sigv4::AWS_ACCESS_KEY_ID,
                        sigv4::AWS_SECRET_ACCESS_KEY,
                        sigv4::PARAM_ACCESS_KEY_ID,
                        sigv4::PARAM_SECRET_ACCESS_KEY
                    ),
                )
                .with_provider(ID));
            }
        }
        Ok(UpstreamRequest { url, headers, body })
    }

    fn parse_response(
        &self,
        target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        match operation {
            Operation::Chat => response::chat(ID, model_id(target), body).map(Response::Chat),
            Operation::Embedding => {
                response::embeddings(ID, model_id(target), body).map(Response::Embedding)
            }
            Operation::Completion => Err(Error::new(
                ErrorKind::Internal,
                "bedrock does not serve text completions",
            )),
        }
    }

    fn frame_decoder(&self) -> Box<dyn FrameDecoder> {
        Box::new(eventstream::EventStreamDecoder::default())
    }

    fn stream_parser(&self, target: &Target<'_>, _operation: Operation) -> Box<dyn StreamParser> {
        Box::new(stream::ConverseStream::new(ID, model_id(target)))
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from(ID, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatCompletionRequest, ChatMessage, Extra, Role};

    #[test]
    fn urls_encode_the_model_id_and_sign() {
        let mut params = Extra::new();
        params.insert("aws_access_key_id".into(), "AKIDTEST".into());
        params.insert("aws_secret_access_key".into(), "secret-test-key".into());
        params.insert("aws_region_name".into(), "eu-central-1".into());
        let target = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "converse/anthropic.claude-3-haiku-20240307-v1:0",
            api_base: None,
            api_key: None,
            params: &params,
        };
        let mut req = ChatCompletionRequest::new("x", vec![ChatMessage::new(Role::User, "hi")]);
        let up = Bedrock
            .build_request(&target, &Request::Chat(req.clone()))
            .unwrap();
        assert_eq!(
            up.url,
            "https://bedrock-runtime.eu-central-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        let auth = up.headers[header::AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.contains("Credential=AKIDTEST/")
                && auth.contains("/eu-central-1/bedrock/aws4_request")
        );
        let body = String::from_utf8(up.body.to_vec()).unwrap();
        assert!(!body.contains("secret-test-key") && !body.contains("AKIDTEST"));
        req.stream = Some(true);
        let up = Bedrock.build_request(&target, &Request::Chat(req)).unwrap();
        assert!(up.url.ends_with("%3A0/converse-stream"));
        assert_eq!(
            up.headers[header::ACCEPT],
            "application/vnd.amazon.eventstream"
        );
    }

    #[test]
    fn errors_map_by_exception_type() {
        let h = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-amzn-errortype", HeaderValue::from_str(t).unwrap());
            h
        };
        let cases = [
            (
                400,
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                ErrorKind::BadRequest,
                400,
            ),
            (429, "ThrottlingException", ErrorKind::RateLimited, 429),
            (
                403,
                "AccessDeniedException",
                ErrorKind::PermissionDenied,
                403,
            ),
            (
                403,
                "UnrecognizedClientException",
                ErrorKind::Authentication,
                401,
            ),
            (404, "ResourceNotFoundException", ErrorKind::NotFound, 404),
            (
                429,
                "ModelNotReadyException",
                ErrorKind::UpstreamServer,
                503,
            ),
            (
                503,
                "ServiceUnavailableException",
                ErrorKind::UpstreamServer,
                503,
            ),
            (
                500,
                "InternalServerException",
                ErrorKind::UpstreamServer,
                500,
            ),
            (408, "ModelTimeoutException", ErrorKind::Timeout, 504),
        ];
        for (status, t, kind, answer) in cases {
            let e = Bedrock.parse_error(status, &h(t), br#"{"message":"the provider said so"}"#);
            assert_eq!(e.kind, kind, "{t}");
            assert_eq!(e.status(), answer, "{t}");
            assert!(e.message.contains("the provider said so"), "{}", e.message);
            assert_eq!(e.code.as_deref(), t.split(':').next());
        }
        let e = Bedrock.parse_error(
            400,
            &HeaderMap::new(),
            br#"{"__type":"com.amazon.coral.validate#ValidationException","Message":"bad"}"#,
        );
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("bad"));
        let e = Bedrock.parse_error(502, &HeaderMap::new(), b"<html>gateway</html>");
        assert_eq!(e.status(), 502);
        assert!(e.message.contains("<html>gateway"));
    }
}
