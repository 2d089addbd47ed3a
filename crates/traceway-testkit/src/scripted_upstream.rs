//! The server under the Bedrock, Ollama and Cohere mock upstreams: it accepts any path,
//! records every request (path, query, headers, raw and JSON body), optionally checks it first
//! (Bedrock's SigV4 check), and answers from a queue of cued replies, else from the provider's
//! fixture function. Stream pieces are bytes, so binary framings (AWS event-stream) are sent
//! exactly as built.
//!
//! Transport faults for the reliability suites: a connection reset (RST) or close (FIN) instead
//! of an answer, a body shorter than its `content-length`, a request never answered; and
//! counters of open connections, cancelled requests and cancelled/completed streams, so a test
//! can tell that every connection the gateway opened was closed again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::serve::IncomingStream;
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Normally, after the last piece.
    Complete,
    /// The connection is cut after the pieces.
    Abort,
    /// The connection stays open and silent.
    Hang,
}

/// What the upstream answers to a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The provider's fixture for the request (its fixture function decides).
    Fixture,
    /// A status and body (JSON unless a `content-type` header says otherwise), with headers.
    Json {
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A 200 stream: each piece written as-is (already framed), with a pause before each.
    Stream {
        /// The pieces: SSE events, NDJSON lines, event-stream messages, or any bytes.
        pieces: Vec<Bytes>,
        /// `content-type` of the stream.
        content_type: String,
        /// Pause before each piece.
        gap: Duration,
        /// What happens after the last one.
        end: StreamEnd,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// No answer: the connection is reset (TCP RST, `SO_LINGER` 0) once the request was read.
    Reset,
    /// No answer: the connection is closed (TCP FIN) once the request was read.
    Close,
    /// No answer ever: the request stays open until the caller gives up (counted in
    /// [`ScriptedUpstream::requests_cancelled`]).
    Stall,
    /// A status and headers announcing `content_length` body bytes, then only `body` (fewer),
    /// then the connection is cut (or, with `hang`, left open and silent).
    Partial {
        /// HTTP status.
        status: u16,
        /// `content-type`.
        content_type: String,
        /// The bytes actually sent.
        body: Bytes,
        /// The `content-length` announced.
        content_length: usize,
        /// Keep the connection open and silent instead of cutting it.
        hang: bool,
    },
}

impl Reply {
    /// A JSON body with `status`.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Json {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// A 200 JSON body.
    pub fn ok(body: &str) -> Reply {
        Reply::json(200, body)
    }

    /// Adds a header to a `Json` reply (other replies are returned unchanged).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Json { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// A 200 stream of `pieces` with `content_type`, ending normally.
    pub fn stream(content_type: &str, pieces: Vec<Bytes>) -> Reply {
        Reply::Stream {
            pieces,
            content_type: content_type.to_owned(),
            gap: Duration::ZERO,
            end: StreamEnd::Complete,
        }
    }

    /// Paces a `Stream` reply and sets how it ends (other replies are returned unchanged).
    pub fn paced(mut self, every: Duration, how: StreamEnd) -> Reply {
        if let Reply::Stream { gap, end, .. } = &mut self {
            *gap = every;
            *end = how;
        }
        self
    }

    /// A 200 `application/json` reply announcing `content_length` bytes but sending only `body`,
    /// then cutting the connection.
    pub fn partial(body: &str, content_length: usize) -> Reply {
        Reply::Partial {
            status: 200,
            content_type: "application/json".to_owned(),
            body: Bytes::from(body.to_owned()),
            content_length,
            hang: false,
        }
    }

    /// Keeps only the first `n` pieces of a `Stream` reply (other replies are unchanged).
    pub fn truncated(mut self, n: usize) -> Reply {
        if let Reply::Stream { pieces, .. } = &mut self {
            pieces.truncate(n);
        }
        self
    }
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request path, as sent (percent-encoding kept).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body's exact bytes.
    pub raw: Bytes,
    /// Parsed JSON body (`Null` when not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Decides the fixture reply for a request.
pub type FixtureFn = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;
/// Checks a request before it is answered; `Some` answers it instead (e.g. a signature error).
pub type CheckFn = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

struct Shared {
    fixture: FixtureFn,
    check: Option<CheckFn>,
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    streams_cancelled: AtomicUsize,
    streams_completed: AtomicUsize,
    requests_cancelled: AtomicUsize,
    connections_open: AtomicUsize,
    connections_accepted: AtomicUsize,
    connection_close: AtomicBool,
    requests_received: AtomicUsize,
    forget_requests: AtomicBool,
}

/// The running upstream; stops when dropped.
pub struct ScriptedUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedUpstream {
    /// Starts on a free loopback port, checking each request with `check` and answering
    /// un-cued requests with `fixture`.
    pub async fn start(fixture: FixtureFn, check: Option<CheckFn>) -> ScriptedUpstream {
        let shared = Arc::new(Shared {
            fixture,
            check,
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            streams_cancelled: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
            requests_cancelled: AtomicUsize::new(0),
            connections_open: AtomicUsize::new(0),
            connections_accepted: AtomicUsize::new(0),
            connection_close: AtomicBool::new(false),
            requests_received: AtomicUsize::new(0),
            forget_requests: AtomicBool::new(false),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = CountingListener {
            inner: listener,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<ConnHandle>(),
            )
            .await;
        });
        ScriptedUpstream { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for a coming request (in order; the fixture once the queue is empty).
    pub fn push(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    /// Streams whose connection went away before their last piece was written.
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams_cancelled.load(Ordering::SeqCst)
    }

    /// Streams written to the end.
    pub fn streams_completed(&self) -> usize {
        self.shared.streams_completed.load(Ordering::SeqCst)
    }

    /// Requests whose connection went away before they were answered (a [`Reply::Stall`], a
    /// long [`Reply::Delay`]).
    pub fn requests_cancelled(&self) -> usize {
        self.shared.requests_cancelled.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections_open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// With `true`, every answer carries `connection: close`, so a connection is closed after
    /// its one request and [`ScriptedUpstream::open_connections`] falls to 0 once the caller
    /// is done (no idle keep-alive connection left in its pool).
    pub fn set_connection_close(&self, on: bool) {
        self.shared.connection_close.store(on, Ordering::SeqCst);
    }

    /// Requests received so far (also those not kept, see [`ScriptedUpstream::forget_requests`]).
    pub fn requests_received(&self) -> usize {
        self.shared.requests_received.load(Ordering::SeqCst)
    }

    /// With `true`, requests are counted but not kept (long runs measuring memory).
    pub fn forget_requests(&self, on: bool) {
        self.shared.forget_requests.store(on, Ordering::SeqCst);
    }

    /// Waits until no connection is open, up to `timeout`; returns how many still are.
    pub async fn wait_connections_closed(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_connections();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What the handler may do to the connection it answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnFault {
    Reset,
    Close,
}

/// A connection's control, shared by its IO and the handlers of its requests.
#[derive(Debug, Default)]
struct ConnControl {
    fault: Mutex<Option<ConnFault>>,
}

/// The connection a request arrived on (axum's connect info).
#[derive(Debug, Clone)]
struct ConnHandle(Arc<ConnControl>);

impl Connected<IncomingStream<'_, CountingListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, CountingListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts TCP connections, counting them and giving each a [`ConnControl`].
struct CountingListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for CountingListener {
    type Io = Conn;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Conn, ConnHandle) {
        loop {
            match self.inner.accept().await {
                Ok((io, _)) => {
                    let _ = io.set_nodelay(true);
                    self.shared
                        .connections_accepted
                        .fetch_add(1, Ordering::SeqCst);
                    self.shared.connections_open.fetch_add(1, Ordering::SeqCst);
                    let control = Arc::new(ConnControl::default());
                    let conn = Conn {
                        io,
                        control: control.clone(),
                        shared: self.shared.clone(),
                    };
                    return (conn, ConnHandle(control));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnHandle> {
        // Only the type matters here: axum asks for it, never for its value.
        Ok(ConnHandle(Arc::new(ConnControl::default())))
    }
}

/// An accepted connection: counted while open; its first write after a fault was set fails
/// instead (closing it, with RST for a reset).
struct Conn {
    io: TcpStream,
    control: Arc<ConnControl>,
    shared: Arc<Shared>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.connections_open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn fault(&mut self) -> Option<io::Error> {
        let fault = self.control.fault.lock().unwrap().take()?;
        Some(match fault {
            ConnFault::Reset => {
                // Closing with a zero linger sends RST instead of FIN.
                let _ = self.io.set_zero_linger();
                io::Error::new(io::ErrorKind::ConnectionReset, "reset on cue")
            }
            ConnFault::Close => io::Error::new(io::ErrorKind::BrokenPipe, "closed on cue"),
        })
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.fault() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.fault() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Counts a request as cancelled when its handler is dropped before it answered.
struct RequestGuard {
    shared: Arc<Shared>,
    answered: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.answered {
            self.shared
                .requests_cancelled
                .fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Counts a stream as cancelled when its body is dropped before it finished.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_completed
        } else {
            &self.shared.streams_cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn stream_response(
    shared: Arc<Shared>,
    pieces: Vec<Bytes>,
    content_type: String,
    gap: Duration,
    end: StreamEnd,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut guard = StreamGuard {
            shared,
            finished: false,
        };
        for p in pieces {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(p)).await.is_err() {
                return;
            }
        }
        match end {
            StreamEnd::Complete => guard.finished = true,
            StreamEnd::Abort => {
                guard.finished = true;
                let _ = tx
                    .send(Err(std::io::Error::other("connection cut on cue")))
                    .await;
            }
            StreamEnd::Hang => tx.closed().await,
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

fn partial_response(
    status: u16,
    content_type: String,
    body: Bytes,
    content_length: usize,
    hang: bool,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(2);
    tokio::spawn(async move {
        if tx.send(Ok(body)).await.is_err() {
            return;
        }
        if hang {
            tx.closed().await;
        } else {
            let _ = tx.send(Err(io::Error::other("body cut on cue"))).await;
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .header("content-length", content_length.to_string())
        .body(body)
        .unwrap()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = RequestGuard {
        shared: shared.clone(),
        answered: false,
    };
    let mut response = answer(&shared, &conn, uri, headers, body).await;
    guard.answered = true;
    if shared.connection_close.load(Ordering::SeqCst) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn answer(
    shared: &Arc<Shared>,
    conn: &ConnHandle,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = shared.clone();
    let recorded = Recorded {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body,
    };
    shared.requests_received.fetch_add(1, Ordering::SeqCst);
    if !shared.forget_requests.load(Ordering::SeqCst) {
        shared.requests.lock().unwrap().push(recorded.clone());
    }
    let checked = shared.check.as_ref().and_then(|c| c(&recorded));
    let mut reply = match checked {
        Some(r) => r,
        None => shared
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Fixture),
    };
    loop {
        match reply {
            Reply::Fixture => reply = (shared.fixture)(&recorded),
            Reply::Delay(d, next) => {
                tokio::time::sleep(d).await;
                reply = *next;
            }
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    b = b.header("content-type", "application/json");
                }
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                return b.body(Body::from(body)).unwrap();
            }
            Reply::Stream {
                pieces,
                content_type,
                gap,
                end,
            } => return stream_response(shared, pieces, content_type, gap, end),
            Reply::Reset | Reply::Close => {
                *conn.0.fault.lock().unwrap() = Some(if matches!(reply, Reply::Reset) {
                    ConnFault::Reset
                } else {
                    ConnFault::Close
                });
                // Never written: the connection fails on the first byte of it.
                return Response::new(Body::empty());
            }
            Reply::Stall => std::future::pending::<()>().await,
            Reply::Partial {
                status,
                content_type,
                body,
                content_length,
                hang,
            } => return partial_response(status, content_type, body, content_length, hang),
        }
    }
}
