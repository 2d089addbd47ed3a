//! A fast mock OpenAI upstream: `POST …/chat/completions` answers a fixed chat completion, or an
//! SSE stream when the body asks for `"stream": true`, after a configurable latency.
//!
//! It does as little work as it can (no JSON parsing, pre-built bodies) so that the load it
//! takes off the two cores stays small next to the gateway under test.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// The model name the upstream reports.
pub const MODEL: &str = "bench-model";

/// How the mock upstream answers.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    /// Wait this long before answering (before the first chunk, for streams).
    pub latency: Duration,
    /// Content chunks in a stream (besides the role, finish and usage chunks).
    pub stream_chunks: usize,
    /// Pause between two stream chunks.
    pub stream_gap: Duration,
}

/// A running mock upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Upstream {
    /// `http://ADDR/v1`, the `api_base` of a deployment pointing here.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

struct Shared {
    settings: UpstreamSettings,
    chat: Bytes,
    /// Stream events: the role chunk, the content chunks and the finish chunk.
    events: Vec<Bytes>,
    usage_event: Bytes,
    done_event: Bytes,
    requests: Arc<AtomicU64>,
}

const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1741569952,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29},"service_tier":"default"}"#;

fn chunk_event(delta: &str, finish: &str) -> Bytes {
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"{MODEL}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    ))
}

impl Shared {
    fn new(settings: UpstreamSettings, requests: Arc<AtomicU64>) -> Self {
        let mut events = vec![chunk_event(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        )];
        for i in 0..settings.stream_chunks {
            events.push(chunk_event(
                &format!("{{\"content\":\"word{i} \"}}"),
                "null",
            ));
        }
        events.push(chunk_event("{}", "\"stop\""));
        let usage_event = Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"{MODEL}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
            settings.stream_chunks,
            settings.stream_chunks + 9
        ));
        Shared {
            settings,
            chat: Bytes::from_static(CHAT_COMPLETION.as_bytes()),
            events,
            usage_event,
            done_event: Bytes::from_static(b"data: [DONE]\n\n"),
            requests,
        }
    }
}

/// Whether JSON `body` sets `key` to `true` (`"key":true`, spaces allowed), without parsing it.
pub fn json_flag(body: &[u8], key: &str) -> bool {
    let needle = format!("\"{key}\"");
    let needle = needle.as_bytes();
    let mut from = 0;
    while let Some(pos) = find(&body[from..], needle) {
        let rest = &body[from + pos + needle.len()..];
        let rest = trim_start(rest);
        if let Some(rest) = rest.strip_prefix(b":")
            && trim_start(rest).starts_with(b"true")
        {
            return true;
        }
        from += pos + needle.len();
    }
    false
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::GET {
        return Ok(full(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"ok"),
        ));
    }
    if req.method() != Method::POST || !req.uri().path().ends_with("/chat/completions") {
        return Ok(full(
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(br#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#),
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "text/plain", Bytes::new())),
    };
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let settings = shared.settings;
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    if !json_flag(&body, "stream") {
        return Ok(full(
            StatusCode::OK,
            "application/json",
            shared.chat.clone(),
        ));
    }
    let mut events = shared.events.clone();
    if json_flag(&body, "include_usage") {
        events.push(shared.usage_event.clone());
    }
    events.push(shared.done_event.clone());
    let body: Body = if settings.stream_gap.is_zero() {
        Full::new(Bytes::from(events.concat())).boxed()
    } else {
        let gap = settings.stream_gap;
        let stream = futures_util::stream::unfold(
            (events.into_iter(), true),
            move |(mut it, first)| async move {
                let ev = it.next()?;
                if !first {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok::<_, Infallible>(Frame::data(ev)), (it, false)))
            },
        );
        StreamBody::new(stream).boxed()
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

/// Starts the upstream on `127.0.0.1` (an OS-assigned port) on the current tokio runtime.
pub async fn start(settings: UpstreamSettings) -> anyhow::Result<Upstream> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared::new(settings, requests.clone()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(shared.clone(), req));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Upstream { addr, requests })
}

/// A mock for the harness's own tests: no latency, streams of 3 chunks 1 ms apart.
#[cfg(test)]
pub async fn start_small() -> Upstream {
    start(UpstreamSettings {
        latency: Duration::ZERO,
        stream_chunks: 3,
        stream_gap: Duration::from_millis(1),
    })
    .await
    .expect("the mock upstream starts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_found_with_or_without_spaces() {
        assert!(json_flag(br#"{"model":"m","stream":true}"#, "stream"));
        assert!(json_flag(br#"{"model":"m", "stream" : true}"#, "stream"));
        assert!(!json_flag(br#"{"model":"m","stream":false}"#, "stream"));
        assert!(!json_flag(
            br#"{"stream_options":{"include_usage":true}}"#,
            "stream"
        ));
        assert!(json_flag(
            br#"{"stream_options":{"include_usage": true},"stream":true}"#,
            "include_usage"
        ));
    }
}
