//! A real OTLP trace receiver for tests: OTLP/HTTP (protobuf and JSON, optionally gzip) and
//! OTLP/gRPC on two local ports, decoding everything it receives.
//!
//! Tests point an exporter at [`OtlpReceiver::http_endpoint`] or
//! [`OtlpReceiver::grpc_endpoint`], then read back [`ReceivedSpan`]s (flattened, with their
//! resource) and the [`ReceivedRequest`]s (headers, content type, transport). Fault tests make it
//! answer with an error status (optionally with `Retry-After`), slowly, or flapping between
//! failing and accepting; [`OtlpReceiver::kill`] stops it as a crashed collector would (port
//! closed, open connections cut) and [`OtlpReceiver::restart`] brings it back on the same ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span, status};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Transport an export request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP (`POST /v1/traces`).
    Http,
    /// OTLP/gRPC (`TraceService/Export`).
    Grpc,
}

/// One export request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// HTTP or gRPC.
    pub transport: Transport,
    /// Request path.
    pub path: String,
    /// `content-type` (`application/x-protobuf`, `application/json`, `application/grpc`).
    pub content_type: Option<String>,
    /// `content-encoding` for HTTP, `grpc-encoding` for gRPC.
    pub content_encoding: Option<String>,
    /// All headers (gRPC: metadata), names lower-cased, repeated values joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// HTTP status answered (gRPC: 200 when accepted, else the configured failure status).
    pub answered_status: u16,
    /// Spans in the request (0 if it could not be decoded).
    pub span_count: usize,
}

impl ReceivedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Kind of a received span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED` (a sender bug; kept visible rather than mapped to internal).
    Unspecified,
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
}

impl SpanKind {
    /// Upper-case name, as in `[SERVER]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::Internal => "INTERNAL",
            Self::Server => "SERVER",
            Self::Client => "CLIENT",
            Self::Producer => "PRODUCER",
            Self::Consumer => "CONSUMER",
        }
    }

    fn from_proto(kind: i32) -> Self {
        match span::SpanKind::try_from(kind) {
            Ok(span::SpanKind::Internal) => Self::Internal,
            Ok(span::SpanKind::Server) => Self::Server,
            Ok(span::SpanKind::Client) => Self::Client,
            Ok(span::SpanKind::Producer) => Self::Producer,
            Ok(span::SpanKind::Consumer) => Self::Consumer,
            Ok(span::SpanKind::Unspecified) | Err(_) => Self::Unspecified,
        }
    }
}

/// Status of a received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `STATUS_CODE_UNSET`.
    Unset,
    /// `STATUS_CODE_OK`.
    Ok,
    /// `STATUS_CODE_ERROR` with its message.
    Error {
        /// The status message.
        message: String,
    },
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<AttrValue>),
    /// A key-value list.
    Map(BTreeMap<String, AttrValue>),
    /// Bytes.
    Bytes(Vec<u8>),
    /// No value set.
    Empty,
}

impl AttrValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Attributes keyed by name.
pub type Attributes = BTreeMap<String, AttrValue>;

/// One span as received, with the attributes of the resource that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Trace id, lower-case hex.
    pub trace_id: String,
    /// Span id, lower-case hex.
    pub span_id: String,
    /// Parent span id, lower-case hex; `None` for a root.
    pub parent_span_id: Option<String>,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Span status.
    pub status: Status,
    /// Span attributes.
    pub attributes: Attributes,
    /// Events as `(name, attributes)`, in order.
    pub events: Vec<(String, Attributes)>,
    /// Resource attributes.
    pub resource: Attributes,
    /// Instrumentation scope name.
    pub scope_name: String,
    /// Instrumentation scope version.
    pub scope_version: String,
    /// Start time, ns since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End time, ns since the Unix epoch.
    pub end_unix_nanos: u64,
}

impl ReceivedSpan {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// The string attribute `key`.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// The integer attribute `key`.
    pub fn attr_i64(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The float attribute `key`.
    pub fn attr_f64(&self, key: &str) -> Option<f64> {
        match self.attr(key) {
            Some(AttrValue::Double(f)) => Some(*f),
            _ => None,
        }
    }

    /// The boolean attribute `key`.
    pub fn attr_bool(&self, key: &str) -> Option<bool> {
        match self.attr(key) {
            Some(AttrValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// Whether attribute `key` is present.
    pub fn has_attr(&self, key: &str) -> bool {
        self.attributes.contains_key(key)
    }

    /// The string resource attribute `key`.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<&Attributes> {
        self.events
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, attrs)| attrs)
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<ReceivedRequest>>,
    exports: Mutex<Vec<ExportTraceServiceRequest>>,
    spans: Mutex<Vec<ReceivedSpan>>,
    duplicate_key_errors: Mutex<Vec<String>>,
    /// Decoded OTLP metric exports (`POST /v1/metrics`).
    metrics:
        Mutex<Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>>,
    /// Status to answer instead of success; `None` accepts.
    fail_with: Mutex<Option<StatusCode>>,
    delay: Mutex<Duration>,
    /// `Retry-After` (seconds) sent with every failure status over HTTP.
    retry_after: Mutex<Option<u64>>,
    /// Alternate between accepting and failing.
    flap: Mutex<Option<Flap>>,
    /// Bumped by every kill: a request that arrived before a kill is not recorded, since its
    /// sender never gets the answer.
    generation: AtomicU64,
    /// Set between a kill and the restart: connections accepted meanwhile are closed at once.
    killed: AtomicBool,
}

/// Flapping: accept for `period`, fail with `status` for `period`, and so on, from `since`.
#[derive(Debug, Clone, Copy)]
struct Flap {
    status: StatusCode,
    period: Duration,
    since: Instant,
}

/// Locks, ignoring poisoning: a panicking test thread must not hide what was received.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Waits the configured delay, then says which status to answer.
    async fn answer(&self) -> Option<StatusCode> {
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = *lock(&self.fail_with) {
            return Some(status);
        }
        let flap = *lock(&self.flap);
        flap.and_then(|f| {
            let phase = f.since.elapsed().as_nanos() / f.period.as_nanos().max(1);
            (phase % 2 == 1).then_some(f.status)
        })
    }

    /// Records one request; `false` when a kill came between its arrival and now, in which
    /// case it is not recorded and must not be answered as accepted.
    fn store(
        &self,
        mut request: ReceivedRequest,
        decoded: Option<ExportTraceServiceRequest>,
        generation: u64,
    ) -> bool {
        request.span_count = decoded.as_ref().map_or(0, count_spans);
        let accepted = request.answered_status == 200;
        // Held to the end, and taken by a kill to bump the generation: nothing that arrived
        // before a kill is recorded after it.
        let mut requests = lock(&self.requests);
        if generation != self.generation.load(Ordering::SeqCst) {
            // Arrived before a kill. The kill cuts the connection, but an answer written before
            // the cut would still reach the sender: the caller answers 503 instead of success.
            return false;
        }
        requests.push(request);
        if let (true, Some(export)) = (accepted, decoded) {
            let mut errors = Vec::new();
            let spans = flatten(&export, &mut errors);
            lock(&self.duplicate_key_errors).extend(errors);
            lock(&self.spans).extend(spans);
            lock(&self.exports).push(export);
        }
        true
    }
}

/// Open connections of a receiver: a duplicate of each socket (to cut it on a kill) and a
/// token that dies with the connection (so finished ones are pruned).
type Connections = Arc<Mutex<Vec<(Weak<()>, std::net::TcpStream)>>>;

/// A running OTLP receiver (HTTP and gRPC). The servers stop when it is dropped.
pub struct OtlpReceiver {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    connections: Connections,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("http", &self.http_addr)
            .field("grpc", &self.grpc_addr)
            .finish()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shared.killed.store(true, Ordering::SeqCst);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        cut(&self.connections);
    }
}

/// Cuts every tracked connection (both directions), as a crashed peer would.
fn cut(connections: &Connections) {
    for (_, socket) in lock(connections).drain(..) {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

impl OtlpReceiver {
    /// Starts both servers on `127.0.0.1` with OS-assigned ports. Needs a tokio runtime.
    pub async fn start() -> OtlpReceiver {
        let shared = Arc::new(Shared::default());
        let http_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/HTTP receiver");
        let http_addr = http_listener.local_addr().expect("OTLP/HTTP address");
        let grpc_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/gRPC receiver");
        let grpc_addr = grpc_listener.local_addr().expect("OTLP/gRPC address");
        let connections = Connections::default();
        let tasks = serve(&shared, &connections, http_listener, grpc_listener);
        OtlpReceiver {
            http_addr,
            grpc_addr,
            shared,
            tasks: Mutex::new(tasks),
            connections,
        }
    }

    /// Stops both servers as a crashed collector would: the ports are closed (new connections
    /// are refused) and open connections are cut, so an exporter keeping one alive sees it
    /// reset. Requests that were being answered are not recorded. What was received before
    /// stays readable.
    pub async fn kill(&self) {
        self.shared.killed.store(true, Ordering::SeqCst);
        {
            let _requests = lock(&self.shared.requests);
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        // Once the aborted tasks are gone, so are their listeners: the ports are closed.
        for task in tasks {
            let _ = task.await;
        }
        cut(&self.connections);
    }

    /// Brings a killed receiver back on the same ports (kills it first if it is running).
    /// Its settings (status, delay, flapping) and what it received are kept.
    pub async fn restart(&self) {
        self.kill().await;
        let http_listener = rebind(self.http_addr).await;
        let grpc_listener = rebind(self.grpc_addr).await;
        self.shared.killed.store(false, Ordering::SeqCst);
        let tasks = serve(
            &self.shared,
            &self.connections,
            http_listener,
            grpc_listener,
        );
        *lock(&self.tasks) = tasks;
    }

    /// Whether the servers are running (not killed).
    pub fn is_up(&self) -> bool {
        !self.shared.killed.load(Ordering::SeqCst)
    }

    /// Base URL of the HTTP server, `http://127.0.0.1:PORT` (exporters append `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The OTLP/HTTP listener's address (for a TLS front before it).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The OTLP/gRPC listener's address (for a TLS front before it).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Every histogram data point received over OTLP metrics, in arrival order.
    pub fn histogram_points(&self) -> Vec<ReceivedHistogramPoint> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let mut out = Vec::new();
        for req in lock(&self.shared.metrics).iter() {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        if let Some(Data::Histogram(h)) = &m.data {
                            for p in &h.data_points {
                                let attributes = p
                                    .attributes
                                    .iter()
                                    .map(|kv| {
                                        let v =
                                            any_value(kv.value.as_ref(), &mut Vec::new(), &m.name);
                                        (
                                            kv.key.clone(),
                                            v.as_str().map(str::to_owned).unwrap_or_default(),
                                        )
                                    })
                                    .collect();
                                out.push(ReceivedHistogramPoint {
                                    name: m.name.clone(),
                                    unit: m.unit.clone(),
                                    attributes,
                                    count: p.count,
                                    sum: p.sum.unwrap_or_default(),
                                    bounds: p.explicit_bounds.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// URL of the gRPC server, `http://127.0.0.1:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Answer every later request with `status` (e.g. 500, 429) instead of accepting it;
    /// gRPC gets the matching gRPC code. `StatusCode::OK` accepts again.
    pub fn set_status(&self, status: StatusCode) {
        *lock(&self.shared.fail_with) = (status != StatusCode::OK).then_some(status);
    }

    /// Wait `delay` before answering every later request.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// Send `Retry-After: seconds` with every failure status over HTTP (the OTLP/HTTP
    /// throttling hint on 429 and 503); `None` sends none.
    pub fn set_retry_after(&self, seconds: Option<u64>) {
        *lock(&self.shared.retry_after) = seconds;
    }

    /// Flap from now on: accept for `period`, answer `status` for `period`, and so on;
    /// `None` stops flapping. A status set with [`OtlpReceiver::set_status`] wins.
    pub fn set_flapping(&self, flap: Option<(StatusCode, Duration)>) {
        *lock(&self.shared.flap) = flap.map(|(status, period)| Flap {
            status,
            period,
            since: Instant::now(),
        });
    }

    /// Export requests answered with a failure status (HTTP and gRPC).
    pub fn failed_requests(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.answered_status != 200)
            .count()
    }

    /// Every request received so far, accepted or not.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every accepted export request, decoded.
    pub fn exports(&self) -> Vec<ExportTraceServiceRequest> {
        lock(&self.shared.exports).clone()
    }

    /// Every accepted span so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.shared.spans).clone()
    }

    /// Duplicate attribute keys seen while decoding (a well-behaved exporter has none).
    pub fn duplicate_key_errors(&self) -> Vec<String> {
        lock(&self.shared.duplicate_key_errors).clone()
    }

    /// Waits until at least `n` spans were accepted or `timeout` passed, then returns every
    /// accepted span (possibly fewer than `n`: callers assert on the result).
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts the HTTP and gRPC servers on the given listeners; every connection is tracked.
fn serve(
    shared: &Arc<Shared>,
    connections: &Connections,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
) -> Vec<JoinHandle<()>> {
    let app = Router::new()
        .route("/v1/traces", post(http_export))
        .route("/v1/metrics", post(http_metrics))
        // Langfuse serves OTLP under its API prefix.
        .route("/api/public/otel/v1/traces", post(http_export))
        // Big batches are legitimate; axum's default 2 MB limit is not the OTLP one.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(Arc::clone(shared));
    let listener = TrackedListener {
        listener: http_listener,
        shared: Arc::clone(shared),
        connections: Arc::clone(connections),
    };
    let http_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let service = TraceServiceServer::new(GrpcReceiver {
        shared: Arc::clone(shared),
    })
    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    .max_decoding_message_size(64 * 1024 * 1024);
    let metrics_service =
        opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(
            GrpcReceiver { shared: Arc::clone(shared) },
        )
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let incoming = futures_util::stream::unfold(
        TrackedListener {
            listener: grpc_listener,
            shared: Arc::clone(shared),
            connections: Arc::clone(connections),
        },
        |mut listener| async move {
            let (io, _) = axum::serve::Listener::accept(&mut listener).await;
            Some((Ok::<_, std::io::Error>(io), listener))
        },
    );
    let grpc_task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .add_service(metrics_service)
            .serve_with_incoming(incoming)
            .await;
    });
    vec![http_task, grpc_task]
}

/// Binds `addr` again after a kill, retrying briefly while the old socket is released.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if Instant::now() >= deadline => panic!("cannot rebind {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A listener that keeps a handle on every connection it accepts, so a kill can cut them.
struct TrackedListener {
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Connections,
}

impl TrackedListener {
    fn track(&self, stream: TcpStream) -> std::io::Result<TrackedIo> {
        if self.shared.killed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("receiver killed"));
        }
        let std_stream = stream.into_std()?;
        let duplicate = std_stream.try_clone()?;
        let io = TcpStream::from_std(std_stream)?;
        let _ = io.set_nodelay(true);
        let alive = Arc::new(());
        let mut connections = lock(&self.connections);
        connections.retain(|(token, _)| token.strong_count() > 0);
        connections.push((Arc::downgrade(&alive), duplicate));
        Ok(TrackedIo { io, _alive: alive })
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TrackedIo, SocketAddr) {
        loop {
            let tracked = match self.listener.accept().await {
                Ok((stream, addr)) => self.track(stream).map(|io| (io, addr)),
                Err(e) => Err(e),
            };
            match tracked {
                Ok(pair) => return pair,
                // Out of file descriptors, or killed: back off (a killed server is aborted).
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection; its token tells the tracker when it is gone.
struct TrackedIo {
    io: TcpStream,
    _alive: Arc<()>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TrackedIo {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

async fn http_export(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = header_map(&headers);
    let content_type = headers.get("content-type").cloned();
    let content_encoding = headers.get("content-encoding").cloned();
    let generation = shared.generation.load(Ordering::SeqCst);
    let mut request = ReceivedRequest {
        transport: Transport::Http,
        path: uri.path().to_owned(),
        content_type: content_type.clone(),
        content_encoding: content_encoding.clone(),
        headers,
        answered_status: 200,
        span_count: 0,
    };

    let json = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/json"));
    let decoded = decode_http_body(&body, content_encoding.as_deref(), json);
    let (status, decoded) = match (shared.answer().await, decoded) {
        (Some(fail), decoded) => (fail, decoded.ok()),
        (None, Ok(export)) => (StatusCode::OK, Some(export)),
        (None, Err(status)) => (status, None),
    };
    request.answered_status = status.as_u16();
    let status = if shared.store(request, decoded, generation) {
        status
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };

    if status != StatusCode::OK {
        let retry_after = *lock(&shared.retry_after);
        return match retry_after {
            Some(seconds) => (status, [(header::RETRY_AFTER, seconds.to_string())]).into_response(),
            None => status.into_response(),
        };
    }
    if json {
        (
            [(header::CONTENT_TYPE, "application/json")],
            "{}".to_owned(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response()
    }
}

/// A histogram data point received over OTLP metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedHistogramPoint {
    /// Metric name.
    pub name: String,
    /// Metric unit.
    pub unit: String,
    /// Point attributes as strings.
    pub attributes: BTreeMap<String, String>,
    /// Number of recorded values.
    pub count: u64,
    /// Sum of recorded values.
    pub sum: f64,
    /// Bucket upper bounds.
    pub bounds: Vec<f64>,
}

async fn http_metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    let raw = match inflate(&body, encoding) {
        Ok(r) => r,
        Err(s) => return s.into_response(),
    };
    let decoded: Result<ExportMetricsServiceRequest, StatusCode> = if json {
        serde_json::from_slice(&raw).map_err(|_| StatusCode::BAD_REQUEST)
    } else {
        ExportMetricsServiceRequest::decode(raw.as_slice()).map_err(|_| StatusCode::BAD_REQUEST)
    };
    match decoded {
        Ok(req) => {
            lock(&shared.metrics).push(req);
            StatusCode::OK.into_response()
        }
        Err(s) => s.into_response(),
    }
}

fn inflate(body: &[u8], encoding: Option<&str>) -> Result<Vec<u8>, StatusCode> {
    match encoding {
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|_| StatusCode::BAD_REQUEST)?;
            Ok(out)
        }
        Some(_) => Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    }
}

fn decode_http_body(
    body: &[u8],
    encoding: Option<&str>,
    json: bool,
) -> Result<ExportTraceServiceRequest, StatusCode> {
    let inflated;
    let raw: &[u8] = match encoding {
        None | Some("identity") => body,
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|_| StatusCode::BAD_REQUEST)?;
            inflated = out;
            &inflated
        }
        Some(_) => return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    };
    if json {
        serde_json::from_slice(raw).map_err(|_| StatusCode::BAD_REQUEST)
    } else {
        ExportTraceServiceRequest::decode(raw).map_err(|_| StatusCode::BAD_REQUEST)
    }
}

struct GrpcReceiver {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let headers = header_map(&request.metadata().clone().into_headers());
        let received = ReceivedRequest {
            transport: Transport::Grpc,
            path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export".to_owned(),
            content_type: headers.get("content-type").cloned(),
            content_encoding: headers.get("grpc-encoding").cloned(),
            headers,
            answered_status: 200,
            span_count: 0,
        };
        let export = request.into_inner();
        match self.shared.answer().await {
            Some(fail) => {
                let mut received = received;
                received.answered_status = fail.as_u16();
                self.shared.store(received, Some(export), generation);
                Err(grpc_status_for(fail))
            }
            None if self.shared.store(received, Some(export), generation) => {
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
            None => Err(grpc_status_for(StatusCode::SERVICE_UNAVAILABLE)),
        }
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for GrpcReceiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        lock(&self.shared.metrics).push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

/// The gRPC code a collector would answer for an HTTP failure status.
fn grpc_status_for(status: StatusCode) -> tonic::Status {
    let message = format!("receiver configured to fail with HTTP {}", status.as_u16());
    match status.as_u16() {
        400 => tonic::Status::invalid_argument(message),
        401 => tonic::Status::unauthenticated(message),
        403 => tonic::Status::permission_denied(message),
        404 => tonic::Status::unimplemented(message),
        429 => tonic::Status::resource_exhausted(message),
        502..=504 => tonic::Status::unavailable(message),
        _ => tonic::Status::internal(message),
    }
}

fn count_spans(export: &ExportTraceServiceRequest) -> usize {
    export
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flattens an export request into spans; duplicate attribute keys are reported in `errors`.
fn flatten(export: &ExportTraceServiceRequest, errors: &mut Vec<String>) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &export.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes, "resource", errors))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            let (scope_name, scope_version) = scope_spans
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            for s in &scope_spans.spans {
                let span_id = hex(&s.span_id);
                let owner = format!("span {:?} ({span_id})", s.name);
                let status = match s.status.as_ref() {
                    None => Status::Unset,
                    Some(st) => match status::StatusCode::try_from(st.code) {
                        Ok(status::StatusCode::Ok) => Status::Ok,
                        Ok(status::StatusCode::Error) => Status::Error {
                            message: st.message.clone(),
                        },
                        Ok(status::StatusCode::Unset) | Err(_) => Status::Unset,
                    },
                };
                out.push(ReceivedSpan {
                    trace_id: hex(&s.trace_id),
                    span_id,
                    parent_span_id: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                    name: s.name.clone(),
                    kind: SpanKind::from_proto(s.kind),
                    status,
                    attributes: attributes(&s.attributes, &owner, errors),
                    events: s
                        .events
                        .iter()
                        .map(|e| {
                            let owner = format!("{owner} event {:?}", e.name);
                            (e.name.clone(), attributes(&e.attributes, &owner, errors))
                        })
                        .collect(),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    start_unix_nanos: s.start_time_unix_nano,
                    end_unix_nanos: s.end_time_unix_nano,
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue], owner: &str, errors: &mut Vec<String>) -> Attributes {
    let mut out = Attributes::new();
    for kv in kvs {
        if out
            .insert(kv.key.clone(), any_value(kv.value.as_ref(), errors, owner))
            .is_some()
        {
            errors.push(format!("{owner}: duplicate attribute key {:?}", kv.key));
        }
    }
    out
}

fn any_value(value: Option<&AnyValue>, errors: &mut Vec<String>, owner: &str) -> AttrValue {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return AttrValue::Empty;
    };
    match value {
        any_value::Value::StringValue(s) => AttrValue::String(s.clone()),
        any_value::Value::BoolValue(b) => AttrValue::Bool(*b),
        any_value::Value::IntValue(i) => AttrValue::Int(*i),
        any_value::Value::DoubleValue(d) => AttrValue::Double(*d),
        any_value::Value::ArrayValue(a) => AttrValue::Array(
            a.values
                .iter()
                .map(|v| any_value(Some(v), errors, owner))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => AttrValue::Map(attributes(&kv.values, owner, errors)),
        any_value::Value::BytesValue(b) => AttrValue::Bytes(b.clone()),
        // Profiling-only; the OTLP spec says other signals treat it as absent.
        any_value::Value::StringValueStrindex(_) => AttrValue::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn export(attrs: Vec<KeyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("svc".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "traceway".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        name: "root".into(),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        attributes: attrs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn flattens_spans_with_resource_and_typed_attributes() {
        let mut errors = Vec::new();
        let spans = flatten(
            &export(vec![
                kv("s", any_value::Value::StringValue("x".into())),
                kv("i", any_value::Value::IntValue(3)),
                kv("d", any_value::Value::DoubleValue(0.0)),
                kv("b", any_value::Value::BoolValue(true)),
            ]),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let s = &spans[0];
        assert_eq!(s.trace_id, "ab".repeat(16));
        assert_eq!(s.span_id, "0101010101010101");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.status, Status::Unset);
        assert_eq!(s.attr_str("s"), Some("x"));
        assert_eq!(s.attr_i64("i"), Some(3));
        assert_eq!(s.attr_f64("d"), Some(0.0));
        assert_eq!(s.attr_bool("b"), Some(true));
        assert!(!s.has_attr("missing"));
        assert_eq!(s.resource_str("service.name"), Some("svc"));
        assert_eq!(s.scope_name, "traceway");
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let mut errors = Vec::new();
        flatten(
            &export(vec![
                kv("k", any_value::Value::IntValue(1)),
                kv("k", any_value::Value::IntValue(2)),
            ]),
            &mut errors,
        );
        assert_eq!(
            errors,
            ["span \"root\" (0101010101010101): duplicate attribute key \"k\""]
        );
    }

    #[test]
    fn decodes_gzip_and_json_bodies() {
        use std::io::Write as _;
        let e = export(vec![]);
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(decode_http_body(&json, None, true).unwrap(), e);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&e.encode_to_vec()).unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(decode_http_body(&body, Some("gzip"), false).unwrap(), e);
        assert_eq!(
            decode_http_body(b"junk", Some("br"), false).unwrap_err(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
