//! An in-process upstream that speaks OpenAI's wire format (bodies recorded from OpenAI's API
//! reference, in `fixtures/openai/`), records every request it receives, and answers on cue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// OpenAI's chat completion response example.
pub const CHAT_COMPLETION: &str = include_str!("../fixtures/openai/chat_completion.json");
/// A chat completion that calls a tool.
pub const CHAT_COMPLETION_TOOL_CALLS: &str =
    include_str!("../fixtures/openai/chat_completion_tool_calls.json");
/// A streamed chat completion, usage chunk included.
pub const CHAT_COMPLETION_STREAM: &str =
    include_str!("../fixtures/openai/chat_completion_stream.sse");
/// OpenAI's legacy completion response example.
pub const COMPLETION: &str = include_str!("../fixtures/openai/completion.json");
/// A streamed legacy completion, usage chunk included.
pub const COMPLETION_STREAM: &str = include_str!("../fixtures/openai/completion_stream.sse");
/// OpenAI's embeddings response example.
pub const EMBEDDING: &str = include_str!("../fixtures/openai/embedding.json");
/// OpenAI's 400 error body.
pub const ERROR_400: &str = include_str!("../fixtures/openai/error_400.json");
/// OpenAI's 401 error body.
pub const ERROR_401: &str = include_str!("../fixtures/openai/error_401.json");
/// OpenAI's 429 error body.
pub const ERROR_429: &str = include_str!("../fixtures/openai/error_429.json");
/// OpenAI's 500 error body.
pub const ERROR_500: &str = include_str!("../fixtures/openai/error_500.json");

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Normally, after the last event.
    Complete,
    /// The connection is cut after the events (no `[DONE]` unless it was among them).
    Abort,
    /// The connection stays open and silent.
    Hang,
}

/// What the upstream answers to the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The recorded fixture for the endpoint (stream or not, usage chunk only when asked for).
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
    /// Raw SSE events (each the text after `data: `), with a pause between them.
    Sse {
        /// The `data:` payloads.
        events: Vec<String>,
        /// Pause before each event.
        gap: Duration,
        /// What happens after the last one.
        end: StreamEnd,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// An OpenAI error body with `status`.
    pub fn error(status: u16, body: &str) -> Reply {
        Reply::Json {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// A 200 JSON body.
    pub fn ok(body: &str) -> Reply {
        Reply::Json {
            status: 200,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Parsed JSON body (`Null` when not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    streams_cancelled: AtomicUsize,
    streams_completed: AtomicUsize,
    requests_cancelled: AtomicUsize,
}

/// The running upstream; stops when dropped.
pub struct OpenAiUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpenAiUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OpenAiUpstream {
    /// Starts on a free loopback port.
    pub async fn start() -> OpenAiUpstream {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/completions", post(handle))
            .route("/v1/embeddings", post(handle))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenAiUpstream { addr, shared, task }
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT/v1`.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
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

    /// Streams whose connection went away before their last event was written.
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams_cancelled.load(Ordering::SeqCst)
    }

    /// Requests whose connection went away before the answer was ready (e.g. during a delay).
    pub fn requests_cancelled(&self) -> usize {
        self.shared.requests_cancelled.load(Ordering::SeqCst)
    }

    /// Streams written to the end.
    pub fn streams_completed(&self) -> usize {
        self.shared.streams_completed.load(Ordering::SeqCst)
    }
}

async fn models() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1686935002,"owned_by":"openai"}]}"#,
    )
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

fn sse_response(
    shared: Arc<Shared>,
    events: Vec<String>,
    gap: Duration,
    end: StreamEnd,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut guard = StreamGuard {
            shared,
            finished: false,
        };
        for ev in events {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx
                .send(Ok(Bytes::from(format!("data: {ev}\n\n"))))
                .await
                .is_err()
            {
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
            StreamEnd::Hang => {
                tx.closed().await;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_adapter(rx));
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn tokio_stream_adapter(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The `data:` payloads of a fixture stream, with the usage-only event kept only when asked for.
fn fixture_events(text: &str, include_usage: bool) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| include_usage || !(d.contains("\"choices\":[]") && d.contains("\"usage\":{")))
        .map(str::to_owned)
        .collect()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = RequestGuard {
        shared: shared.clone(),
        answered: false,
    };
    let response = answer(shared, uri, headers, body).await;
    guard.answered = true;
    response
}

async fn answer(shared: Arc<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        headers,
        body: json.clone(),
    });
    let mut reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Fixture);
    loop {
        match reply {
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
            Reply::Sse { events, gap, end } => return sse_response(shared, events, gap, end),
            Reply::Fixture => {
                let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
                let include_usage = json
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true);
                let path = uri.path();
                if stream {
                    let text =
                        if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
                            COMPLETION_STREAM
                        } else {
                            CHAT_COMPLETION_STREAM
                        };
                    return sse_response(
                        shared,
                        fixture_events(text, include_usage),
                        Duration::ZERO,
                        StreamEnd::Complete,
                    );
                }
                let text = if path.ends_with("/chat/completions") {
                    CHAT_COMPLETION
                } else if path.ends_with("/completions") {
                    COMPLETION
                } else {
                    EMBEDDING
                };
                reply = Reply::ok(text);
            }
        }
    }
}
