//! The OpenAI-compatible LLM routes: parse the body, call the client, answer JSON or SSE,
//! and keep the request's SERVER span in step.

use crate::auth;
use crate::error::ApiError;
use crate::request_span::RequestSpan;
use crate::server::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use opentelemetry::KeyValue;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use traceway::{
    CallOptions, Chunk, Error, ErrorKind, Operation, Reply, Request, Response as LlmResponse,
};
use traceway_otel::keys as k;

/// Response header naming the deployment that answered.
pub const HEADER_MODEL_ID: &str = "x-litellm-model-id";
/// Response header naming the model group asked for.
pub const HEADER_MODEL_GROUP: &str = "x-litellm-model-group";
/// Response header counting the retries made before the answer.
pub const HEADER_ATTEMPTED_RETRIES: &str = "x-litellm-attempted-retries";
/// Response header counting the fallback groups tried before the answer.
pub const HEADER_ATTEMPTED_FALLBACKS: &str = "x-litellm-attempted-fallbacks";
/// Response header with a complete answer's cost, when the answering deployment has prices.
pub const HEADER_RESPONSE_COST: &str = "x-litellm-response-cost";
/// Request/response header correlating one call.
pub const HEADER_REQUEST_ID: &str = "x-request-id";

/// What the route handlers share: the matched route and operation.
struct Route {
    path: &'static str,
    operation: Operation,
}

/// `POST /v1/chat/completions` (and `/chat/completions`).
pub async fn chat_completions(
    state: State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    handle(
        state,
        request,
        Route {
            path: "/v1/chat/completions",
            operation: Operation::Chat,
        },
    )
    .await
}

/// `POST /v1/completions` (and `/completions`).
pub async fn completions(state: State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    handle(
        state,
        request,
        Route {
            path: "/v1/completions",
            operation: Operation::Completion,
        },
    )
    .await
}

/// `POST /v1/embeddings` (and `/embeddings`).
pub async fn embeddings(state: State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    handle(
        state,
        request,
        Route {
            path: "/v1/embeddings",
            operation: Operation::Embedding,
        },
    )
    .await
}

/// Where the call came from: `metadata.requester_ip_address` and `metadata.user_agent`,
/// appended to `attrs`.
fn caller_attributes(
    headers: &HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
    attrs: &mut Vec<KeyValue>,
) {
    if let Some(ConnectInfo(addr)) = peer {
        attrs.push(KeyValue::new(
            k::METADATA_REQUESTER_IP_ADDRESS,
            ip_text(addr.ip()),
        ));
    }
    if let Some(ua) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attrs.push(KeyValue::new(k::METADATA_USER_AGENT, ua.to_owned()));
    }
}

/// Headers that ask for a request's content to be kept out of telemetry (LiteLLM's names).
pub const REDACTION_HEADERS: &[&str] = &[
    "x-litellm-enable-message-redaction",
    "litellm-enable-message-redaction",
];

/// An IP address as text; IPv4 without `Display`'s padding machinery, since every traced
/// request records its caller's.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

/// The redaction a request header asks for; `None` when no header does (the key's or team's
/// `turn_off_message_logging`, then the global setting, decide instead).
fn redaction_asked(headers: &HeaderMap) -> Option<traceway::Redaction> {
    let on = REDACTION_HEADERS.iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    });
    on.then_some(traceway::Redaction {
        input: true,
        output: true,
    })
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(HEADER_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        // A v4 UUID from the thread-local RNG: `Uuid::new_v4` asks the kernel (a getrandom
        // system call) on every request.
        // Encoded straight into a buffer rather than through `Display`'s formatting machinery.
        .unwrap_or_else(|| {
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            let mut text = uuid::Uuid::encode_buffer();
            id.hyphenated().encode_lower(&mut text).to_owned()
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The happy path parses with plain serde_json: tracking the path costs about half the
    // request's parse time (BENCHMARKS.md, profile). Only a body that fails is parsed again,
    // with the path tracked, for the error message; the outcome is the same either way.
    if let Ok(v) = traceway::types::from_json::<T>(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(
                format!("the request body is not valid JSON: {inner}"),
                None,
            );
        }
        let path = e.path().to_string();
        let msg = inner.to_string();
        // "missing field `model`" names the field itself; elsewhere the path does.
        let param = match msg.split('`').nth(1) {
            Some(field) if msg.starts_with("missing field") => {
                if path == "." {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                }
            }
            _ => path.clone(),
        };
        let location = if path == "." {
            String::new()
        } else {
            format!(" at {path}")
        };
        ApiError::bad_request(
            format!("invalid request body{location}: {msg}"),
            Some(&param),
        )
    })
}

fn parse_request(op: Operation, bytes: &[u8]) -> Result<Request, ApiError> {
    let req = match op {
        Operation::Chat => {
            let r: traceway::types::ChatCompletionRequest = parse(bytes)?;
            if r.messages.is_empty() {
                return Err(ApiError::bad_request(
                    "messages must contain at least one message",
                    Some("messages"),
                ));
            }
            Request::Chat(r)
        }
        Operation::Completion => Request::Completion(parse(bytes)?),
        Operation::Embedding => Request::Embedding(parse(bytes)?),
    };
    if req.model().trim().is_empty() {
        return Err(ApiError::bad_request(
            "model must name a model; GET /v1/models lists them",
            Some("model"),
        ));
    }
    Ok(req)
}

/// The request body's `metadata` object as `metadata.*` attributes (strings as they are, other
/// values as JSON).
fn metadata_attributes(request: &Request) -> Vec<KeyValue> {
    let Some(md) = request.extra().get("metadata").and_then(|m| m.as_object()) else {
        return Vec::new();
    };
    md.iter()
        // Identity keys are the proxy's to set: a body cannot forge (or duplicate) them.
        .filter(|(key, _)| {
            !key.starts_with("user_api_key")
                && *key != "requester_ip_address"
                && *key != "user_agent"
        })
        .map(|(key, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            KeyValue::new(format!("{}.{key}", k::METADATA_PREFIX), value)
        })
        .collect()
}

/// A 200 answer with `headers` as its whole header map: handed over as it is, where axum's
/// `(StatusCode, HeaderMap, body)` would insert every header again into the response's own map.
fn answer(body: Body, headers: HeaderMap) -> Response {
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

/// Reads the request body whole, up to `limit` bytes, on a task of its own.
///
/// hyper hands an HTTP/1 body over through a one-chunk channel, and when the handler reads it
/// inline both ends' wakers are the connection's own task: taking the chunk and seeing the end
/// each wake the task that is running, which tokio's scheduler answers as a yield by waking an
/// idle worker — two futex calls and a context switch per request, 10–20 µs of CPU at
/// 1,000 req/s (BENCHMARKS.md). Read on another task, the wakes go from one task to the other
/// on the same worker. The task is aborted if the handler is dropped.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let read =
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(axum::body::to_bytes(body, limit)));
    let read = read.await.map_err(|e| {
        ApiError(Error::new(
            ErrorKind::Internal,
            format!("reading the request body stopped: {e}"),
        ))
    })?;
    match read {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "the request body is larger than the limit of {limit} bytes (general_settings.max_request_size_mb)"
                    ),
                )))
            } else {
                Err(ApiError::bad_request(
                    format!("could not read the request body: {e}"),
                    None,
                ))
            }
        }
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    route: Route,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied();
    let request_id = request_id(&headers);
    let span = match state.client.tracing() {
        Some(tracing) => {
            let parent = traceway_otel::propagation::extract(&headers);
            // By default the SERVER span carries the call's request and response too.
            let mut attrs = Vec::with_capacity(if state.nested_request_span {
                16
            } else {
                traceway::telemetry::CARRIER_ATTRIBUTES
            });
            attrs.extend([
                KeyValue::new(k::HTTP_ROUTE, route.path),
                KeyValue::new(k::HTTP_REQUEST_METHOD, Method::POST.as_str()),
                KeyValue::new(k::URL_PATH, route.path),
            ]);
            caller_attributes(&headers, peer, &mut attrs);
            RequestSpan::start(tracing, &parent, attrs)
        }
        None => RequestSpan::disabled(),
    };
    let mut span = Some(span);
    let served = tokio::select! {
        served = serve(&state, &headers, peer, body, &route, &mut span) => served,
        () = state.abort.cancelled() => Err(ApiError(crate::server::shutting_down())),
    };
    let mut response = match served {
        Ok(response) => {
            if let Some(span) = span.take() {
                span.finish(response.status().as_u16());
            }
            response
        }
        Err(err) => {
            if let Some(span) = span.take() {
                span.fail(err.0.status(), &err.0);
            }
            err.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    // The model group label comes from the answer (a configured group), never from the
    // request, so clients cannot grow the label set.
    let group = response
        .headers()
        .get(HEADER_MODEL_GROUP)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    state
        .metrics
        .record_request(route.path, response.status().as_u16(), group);
    response
}

/// Answers the request; a streamed answer takes the span out of `span` and ends it itself.
async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
    body: Body,
    route: &Route,
    span: &mut Option<RequestSpan>,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(state, headers).await?;
    let bytes = read_body(body, state.config.max_request_bytes).await?;
    let mut request = parse_request(route.operation, &bytes)?;
    let mut attributes = metadata_attributes(&request);
    if let Some(user) = match &request {
        Request::Chat(r) => r.user.as_deref(),
        Request::Completion(r) => r.user.as_deref(),
        Request::Embedding(r) => r.user.as_deref(),
    } {
        attributes.push(KeyValue::new(
            k::METADATA_USER_API_KEY_END_USER_ID,
            user.to_owned(),
        ));
    }
    attributes.extend(caller.span_attributes());
    // A virtual key's models (403) and limits (429) are checked before the model is resolved.
    let mut meter = None;
    if let (Some(keys), Some(info)) = (&state.keys, caller.key()) {
        let model = request.model().to_owned();
        let providers = crate::server::provider_models(state, &model);
        match keys.admit(info, &model, &providers).await {
            Ok(m) => meter = m,
            Err(err) => {
                // Refused before any call: the SERVER span is the only one, so it says who asked.
                if let Some(s) = span.as_ref() {
                    attributes.push(KeyValue::new(k::LITELLM_MODEL_GROUP, model));
                    s.set(attributes);
                }
                return Err(err);
            }
        }
    }
    let strip_usage = meter.is_some() && crate::keys::meter::ask_for_usage(&mut request);
    if state.nested_request_span {
        // In nested mode the request span carries where the call came from too.
        caller_attributes(headers, peer, &mut attributes);
    }
    let key_redaction = caller
        .key()
        .filter(|k| k.turn_off_message_logging)
        .map(|_| traceway::Redaction {
            input: true,
            output: true,
        });
    let opts = CallOptions {
        parent: span.as_ref().and_then(|s| s.context().cloned()),
        record_on_parent: !state.nested_request_span,
        redaction: redaction_asked(headers).or(key_redaction),
        attributes,
    };
    let routed = state.client.call(request, opts).await?;
    let price = routed.info.price;
    if let Some(m) = &mut meter {
        m.priced(price);
    }
    // Room for these, the content headers and the request id added on the way out.
    let mut out_headers = HeaderMap::with_capacity(8);
    if let Ok(v) = HeaderValue::from_str(&routed.info.deployment_id) {
        out_headers.insert(HEADER_MODEL_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&routed.info.model_group) {
        out_headers.insert(HEADER_MODEL_GROUP, v);
    }
    out_headers.insert(
        HEADER_ATTEMPTED_RETRIES,
        HeaderValue::from(routed.info.retries),
    );
    out_headers.insert(
        HEADER_ATTEMPTED_FALLBACKS,
        HeaderValue::from(routed.info.fallbacks),
    );
    match routed.reply {
        Reply::Full(resp) => {
            let tokens = crate::keys::meter::response_tokens(&resp);
            if let Some(m) = &meter {
                m.record(tokens).await;
            }
            if let Some(p) = price
                && let Ok(v) =
                    HeaderValue::from_str(&p.cost(tokens.input, tokens.output).to_string())
            {
                out_headers.insert(HEADER_RESPONSE_COST, v);
            }
            let body = match &resp {
                LlmResponse::Chat(r) => serde_json::to_vec(r),
                LlmResponse::Completion(r) => serde_json::to_vec(r),
                LlmResponse::Embedding(r) => serde_json::to_vec(r),
            }
            .map_err(|e| {
                ApiError(Error::new(
                    ErrorKind::Internal,
                    format!("could not encode the response: {e}"),
                ))
            })?;
            out_headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(answer(Body::from(body), out_headers))
        }
        Reply::Stream(mut chunks) => {
            // As LiteLLM's proxy does, the answer waits for the stream's first chunk: a stream
            // that fails before it starts is a plain error with its own status, not a 200
            // carrying an error event, and the headers leave in one write with that chunk.
            let first = match chunks.next().await {
                Some(Err(err)) => return Err(ApiError(err)),
                first => first,
            };
            let chunks = futures_util::stream::iter(first).chain(chunks);
            out_headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            out_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let span = span.take().unwrap_or_else(RequestSpan::disabled);
            let body = match meter {
                Some(m) => Body::from_stream(sse_body(
                    crate::keys::meter::Metered::new(chunks, m, strip_usage),
                    span,
                    state.abort.clone(),
                )),
                None => Body::from_stream(sse_body(chunks, span, state.abort.clone())),
            };
            Ok(answer(body, out_headers))
        }
    }
}

fn encode_chunk(chunk: &Chunk) -> Bytes {
    let json = match chunk {
        Chunk::Chat(c) => serde_json::to_vec(c),
        Chunk::Completion(c) => serde_json::to_vec(c),
    };
    let mut out = Vec::with_capacity(json.as_ref().map_or(0, Vec::len) + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&json.unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The SSE body: one `data:` event per chunk, `data: [DONE]` at the end, an error event if the
/// upstream fails mid-stream or the shutdown grace period runs out (`abort`). The request span
/// ends when the body finishes or is dropped.
fn sse_body<S>(
    chunks: S,
    span: RequestSpan,
    abort: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send
where
    S: futures_util::Stream<Item = Result<Chunk, Error>> + Send + Unpin + 'static,
{
    struct State<S> {
        chunks: Option<S>,
        span: Option<RequestSpan>,
        done: bool,
        abort: tokio_util::sync::CancellationToken,
    }
    impl<S> Drop for State<S> {
        fn drop(&mut self) {
            // The client went away before the end. The chunk stream goes first so that what it
            // records lands on the request span before that span ends (once).
            drop(self.chunks.take());
            if let Some(span) = self.span.take() {
                span.finish(200);
            }
        }
    }
    let state = State {
        chunks: Some(chunks),
        span: Some(span),
        done: false,
        abort,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let next = match (st.done, st.chunks.as_mut()) {
            (false, Some(chunks)) => tokio::select! {
                next = chunks.next() => next,
                () = st.abort.cancelled() => Some(Err(crate::server::shutting_down())),
            },
            _ => return None,
        };
        match next {
            Some(Ok(chunk)) => Some((Ok(encode_chunk(&chunk)), st)),
            Some(Err(err)) => {
                st.done = true;
                if let Some(span) = st.span.take() {
                    span.fail(200, &err);
                }
                let body = serde_json::to_vec(&err.to_body()).unwrap_or_default();
                let mut out = b"data: ".to_vec();
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                Some((Ok(Bytes::from(out)), st))
            }
            None => {
                st.done = true;
                if let Some(span) = st.span.take() {
                    span.finish(200);
                }
                Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), st))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ip_text;
    use std::net::IpAddr;

    #[test]
    fn ip_text_is_display() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.100.199",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ip_text(ip), ip.to_string(), "{text}");
        }
    }
}
