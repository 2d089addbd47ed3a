//! A generic in-process upstream for provider mocks: it accepts any path, records every request
//! (path, query, headers, JSON body), and answers from a queue of cued replies, else from the
//! provider's fixture function. Each `<provider>_upstream` module is this server plus that
//! provider's fixtures and fixture function.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// A status and JSON body, with extra headers.
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
        /// The pieces, e.g. whole SSE events with their blank line.
        pieces: Vec<String>,
        /// `content-type` of the stream.
        content_type: String,
        /// Pause before each piece.
        gap: Duration,
        /// What happens after the last one.
        end: StreamEnd,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// A JSON error body with `status`.
    pub fn error(status: u16, body: &str) -> Reply {
        Reply::Json {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// A JSON error body with `status` and a `retry-after` header (seconds).
    pub fn error_retry_after(status: u16, body: &str, seconds: u32) -> Reply {
        Reply::Json {
            status,
            body: body.to_owned(),
            headers: vec![("retry-after".into(), seconds.to_string())],
        }
    }

    /// A 200 JSON body.
    pub fn ok(body: &str) -> Reply {
        Reply::error(200, body)
    }

    /// An SSE stream from a fixture text: one piece per event (split at blank lines).
    pub fn sse(text: &str) -> Reply {
        Reply::sse_with(text, Duration::ZERO, StreamEnd::Complete)
    }

    /// An SSE stream from a fixture text, paced and ended as told.
    pub fn sse_with(text: &str, gap: Duration, end: StreamEnd) -> Reply {
        Reply::Stream {
            pieces: sse_pieces(text),
            content_type: "text/event-stream".into(),
            gap,
            end,
        }
    }

    /// The same SSE fixture cut off after its first `events` events (no clean end).
    pub fn sse_truncated(text: &str, events: usize) -> Reply {
        let mut pieces = sse_pieces(text);
        pieces.truncate(events);
        Reply::Stream {
            pieces,
            content_type: "text/event-stream".into(),
            gap: Duration::ZERO,
            end: StreamEnd::Complete,
        }
    }
}

/// The events of an SSE text, each with its terminating blank line.
pub fn sse_pieces(text: &str) -> Vec<String> {
    // Keep the fixture's own line endings (Gemini frames events with CRLF).
    let sep = if text.contains("\r\n\r\n") {
        "\r\n\r\n"
    } else {
        "\n\n"
    };
    text.split(sep)
        .filter(|e| !e.trim().is_empty())
        .map(|e| format!("{}{sep}", e.trim_matches(['\r', '\n'])))
        .collect()
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
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
pub type FixtureFn = fn(&Recorded) -> Reply;

struct Shared {
    fixture: FixtureFn,
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    streams_cancelled: AtomicUsize,
    streams_completed: AtomicUsize,
}

/// The running upstream; stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Starts on a free loopback port, answering un-cued requests with `fixture`.
    pub async fn start(fixture: FixtureFn) -> MockUpstream {
        let shared = Arc::new(Shared {
            fixture,
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            streams_cancelled: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockUpstream { addr, shared, task }
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
    pieces: Vec<String>,
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
            if tx.send(Ok(Bytes::from(p))).await.is_err() {
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

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let mut reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Fixture);
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
                let mut b = Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", "application/json");
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
        }
    }
}

/// Implements `Deref<Target = MockUpstream>` for a provider's upstream newtype.
#[macro_export]
macro_rules! deref_mock_upstream {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::mock_upstream::MockUpstream;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}
