//! A lean OTLP/HTTP trace receiver for long runs: it keeps a few bytes per span (ids, name,
//! kind, error status and `error.type`) and counts duplicates, so ten thousand requests can be
//! checked for "every span ended exactly once" without the receiver's own memory drowning the
//! gateway's in an RSS measurement. Protobuf bodies only (the exporters' default), gzip or not.
//! For attribute-level assertions use [`crate::otlp::OtlpReceiver`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::status;
use prost::Message as _;
use tokio::task::JoinHandle;

/// One received span, compactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id; `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// Span name (interned).
    pub name: Arc<str>,
    /// OTLP span kind (1 internal, 2 server, 3 client, …).
    pub kind: i32,
    /// Whether the status is ERROR.
    pub error: bool,
    /// The `error.type` attribute, if any (interned).
    pub error_type: Option<Arc<str>>,
    /// Whether the span has an end time not before its start.
    pub ended: bool,
}

#[derive(Default)]
struct Inner {
    spans: Vec<SpanRecord>,
    seen: HashSet<([u8; 16], [u8; 8])>,
    duplicates: usize,
    strings: HashMap<String, Arc<str>>,
    bad_requests: usize,
}

impl Inner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.to_owned(), a.clone());
        a
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running receiver; stops when dropped.
pub struct SpanCounter {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Drop for SpanCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SpanCounter {
    /// Starts on a free loopback port.
    pub async fn start() -> SpanCounter {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SpanCounter { addr, inner, task }
    }

    /// `http://127.0.0.1:PORT` (exporters append `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received (duplicates not counted twice).
    pub fn len(&self) -> usize {
        lock(&self.inner).spans.len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spans received a second time (same trace and span id): a span ended twice.
    pub fn duplicates(&self) -> usize {
        lock(&self.inner).duplicates
    }

    /// Export bodies that could not be decoded.
    pub fn bad_requests(&self) -> usize {
        lock(&self.inner).bad_requests
    }

    /// Every span received, in order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        lock(&self.inner).spans.clone()
    }

    /// Waits until at least `n` spans arrived or `timeout` passed; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let len = self.len();
            if len >= n || tokio::time::Instant::now() >= deadline {
                return len;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

async fn export(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gz {
        gunzip(&body)
    } else {
        Some(body.to_vec())
    };
    let Some(decoded) = raw.and_then(|b| ExportTraceServiceRequest::decode(b.as_slice()).ok())
    else {
        lock(&inner).bad_requests += 1;
        return StatusCode::BAD_REQUEST;
    };
    let mut g = lock(&inner);
    for rs in &decoded.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let (Ok(trace_id), Ok(span_id)) = (
                    <[u8; 16]>::try_from(s.trace_id.as_slice()),
                    <[u8; 8]>::try_from(s.span_id.as_slice()),
                ) else {
                    g.bad_requests += 1;
                    continue;
                };
                if !g.seen.insert((trace_id, span_id)) {
                    g.duplicates += 1;
                    continue;
                }
                let parent = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                    .ok()
                    .filter(|p| p != &[0; 8]);
                let error_type = s
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "error.type")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(v) => Some(v.clone()),
                        _ => None,
                    });
                let record = SpanRecord {
                    trace_id,
                    span_id,
                    parent,
                    name: g.intern(&s.name),
                    kind: s.kind,
                    error: s
                        .status
                        .as_ref()
                        .is_some_and(|st| st.code == status::StatusCode::Error as i32),
                    error_type: error_type.map(|e| g.intern(&e)),
                    ended: s.end_time_unix_nano != 0
                        && s.end_time_unix_nano >= s.start_time_unix_nano,
                };
                g.spans.push(record);
            }
        }
    }
    StatusCode::OK
}
