//! The server under the Bedrock, Ollama and Cohere mock upstreams: it accepts any path,
//! records every request (path, query, headers, raw and JSON body), optionally checks it first
//! (Bedrock's SigV4 check), and answers from a queue of cued replies, else from the provider's
//! fixture function. Stream pieces are bytes, so binary framings (AWS event-stream) are sent
//! exactly as built.
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
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
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
        raw: body,
    };
    shared.requests.lock().unwrap().push(recorded.clone());
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
        }
    }
}
