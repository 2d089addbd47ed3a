//! The load generator: keep-alive HTTP/1.1 connections (one request at a time each, as an
//! OpenAI SDK client does), in two modes.
//!
//! - **Closed loop** (max throughput): `concurrency` connections each send the next request as
//!   soon as the previous answer ends.
//! - **Open loop** (fixed rate): a pacing thread schedules request `i` at `t0 + i / rate` and
//!   hands it to connection `i % connections`; latency is measured from the *scheduled* time, so
//!   a stall shows up in the latency of every request it delayed (no coordinated omission).
//!   The pacer is an OS thread sleeping with `std::thread::sleep` (tens of µs of slack, where
//!   tokio's timer has 1 ms ticks).

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Latencies are recorded in nanoseconds, from 1 µs to 10 min, to 3 significant digits.
const HIST_MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds.
pub type Hist = Histogram<u32>;

/// A new latency histogram (nanoseconds).
pub fn histogram() -> anyhow::Result<Hist> {
    Ok(Histogram::new_with_bounds(1_000, HIST_MAX_NS, 3)?)
}

/// [`API_KEY`] as a literal, for `concat!`.
macro_rules! api_key {
    () => {
        "sk-bench-4f1c2d7e9a0b3c5d6e7f8091a2b3c4d5"
    };
}

/// The key every request carries by default (`Authorization: Bearer …`): LiteLLM's proxy refuses
/// to start without a master key, so it gets this one; Traceway runs open (its default) and
/// ignores it. The auth benchmark sets each case's own key with [`Target::with_key`].
pub const API_KEY: &str = api_key!();

/// `Bearer <key>` as a header value, built once rather than per request.
pub fn bearer(key: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {key}")).context("the key is not a valid header value")
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A non-streamed chat completion.
    Chat,
    /// A streamed chat completion (`"stream": true`).
    Stream,
}

/// Where to send it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The `model` field.
    pub model: String,
    /// The `Authorization` header every request carries (none when `None`).
    pub authorization: Option<HeaderValue>,
}

impl Target {
    /// A target whose requests carry [`API_KEY`].
    pub fn new(addr: SocketAddr, path: &str, model: &str) -> Self {
        Target {
            addr,
            path: path.to_owned(),
            model: model.to_owned(),
            authorization: Some(HeaderValue::from_static(concat!("Bearer ", api_key!()))),
        }
    }

    /// The same target, its requests carrying `Authorization: Bearer <key>`.
    pub fn with_key(mut self, key: &str) -> anyhow::Result<Self> {
        self.authorization = Some(bearer(key)?);
        Ok(self)
    }

    fn body(&self, kind: Kind) -> Bytes {
        let stream = match kind {
            Kind::Chat => "",
            Kind::Stream => ",\"stream\":true",
        };
        Bytes::from(format!(
            "{{\"model\":\"{}\",\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},{{\"role\":\"user\",\"content\":\"Say hello to the benchmark.\"}}],\"max_tokens\":32,\"temperature\":0.2{stream}}}",
            self.model
        ))
    }
}

/// The result of one load phase.
pub struct Outcome {
    /// Requests answered 200 with a complete body.
    pub ok: u64,
    /// Requests that failed (status, transport, truncated stream, or still running at the
    /// phase's hard deadline).
    pub errors: u64,
    /// Open loop: requests scheduled but never sent before the hard deadline.
    pub not_sent: u64,
    /// Wall time of the phase (first send to last answer).
    pub elapsed: Duration,
    /// Complete answer; open loop: from the scheduled time.
    pub latency: Hist,
    /// First body bytes (time to first chunk for streams); open loop: from the scheduled time.
    pub first: Hist,
    /// Complete answer from the moment it was actually sent (open loop only).
    pub service: Hist,
}

impl Outcome {
    fn new() -> anyhow::Result<Self> {
        Ok(Outcome {
            ok: 0,
            errors: 0,
            not_sent: 0,
            elapsed: Duration::ZERO,
            latency: histogram()?,
            first: histogram()?,
            service: histogram()?,
        })
    }

    fn merge(&mut self, other: &Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.not_sent += other.not_sent;
        let _ = self.latency.add(&other.latency);
        let _ = self.first.add(&other.first);
        let _ = self.service.add(&other.service);
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// When the first body bytes and the end of the body arrived.
struct Timing {
    first: Instant,
    done: Instant,
}

/// Sends one request on `sender`, reads the whole answer. `Err` on any failure.
///
/// A connection the server closed while idle (uvicorn closes keep-alive connections after 5 s)
/// is replaced first, as a pooling HTTP client does; that is not a failed request.
async fn one(sender: &mut Sender, target: &Target, body: &Bytes, kind: Kind) -> Result<Timing, ()> {
    if sender.ready().await.is_err() {
        *sender = connect(target.addr).await.map_err(|_| ())?;
        sender.ready().await.map_err(|_| ())?;
    }
    let mut req = Request::post(target.path.as_str())
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .map_err(|_| ())?;
    if let Some(auth) = &target.authorization {
        req.headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    let mut first = None;
    let mut last: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            if first.is_none() {
                first = Some(Instant::now());
            }
            last = Some(data);
        }
    }
    let done = Instant::now();
    if !ok {
        return Err(());
    }
    if kind == Kind::Stream
        && !last
            .as_deref()
            .is_some_and(|l| trim_end(l).ends_with(b"[DONE]"))
    {
        return Err(());
    }
    Ok(Timing {
        first: first.unwrap_or(done),
        done,
    })
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace())
        .count();
    &b[..b.len() - n]
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One request on a fresh connection, the whole answer read: its status and body. For set-up
/// calls (`/key/generate`) and for the request that puts a key in the gateway's cache.
pub async fn once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&HeaderValue>,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut sender = connect(addr).await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    if let Some(auth) = authorization {
        req.headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let call = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .with_context(|| format!("no answer from {addr}{path} within 30 s"))?
}

/// One chat completion to `target`, as the load sends it: its status and body.
pub async fn chat_once(target: &Target) -> anyhow::Result<(StatusCode, Bytes)> {
    once(
        target.addr,
        Method::POST,
        &target.path,
        target.authorization.as_ref(),
        target.body(Kind::Chat),
    )
    .await
}

/// Closed loop: `concurrency` connections, each sending back to back for `duration`.
pub async fn closed(
    target: &Target,
    kind: Kind,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let target = Arc::new(target.clone());
    let body = target.body(kind);
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        senders.push(connect(target.addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    // A request still running this long after the end counts as failed.
    let hard = tokio::time::Instant::from_std(deadline + Duration::from_secs(30));
    let mut tasks = Vec::with_capacity(concurrency);
    for mut sender in senders {
        let target = target.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new()?;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match tokio::time::timeout_at(hard, one(&mut sender, &target, &body, kind)).await {
                    Ok(Ok(t)) => {
                        out.ok += 1;
                        out.latency.saturating_record(ns(t.done - sent));
                        out.first.saturating_record(ns(t.first - sent));
                    }
                    Ok(Err(())) => {
                        out.errors += 1;
                        match connect(target.addr).await {
                            Ok(s) => sender = s,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err(_) => {
                        out.errors += 1;
                        break;
                    }
                }
            }
            anyhow::Ok(out)
        }));
    }
    let mut total = Outcome::new()?;
    for t in tasks {
        total.merge(&t.await??);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Open loop: `rate` requests per second for `duration`, over `connections` connections;
/// whatever has not finished `drain` after the schedule ends counts as failed or not sent.
pub async fn open(
    target: &Target,
    kind: Kind,
    rate: f64,
    duration: Duration,
    connections: usize,
    drain: Duration,
) -> anyhow::Result<Outcome> {
    let target = Arc::new(target.clone());
    let body = target.body(kind);
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target.addr).await?);
    }
    let t0 = Instant::now() + Duration::from_millis(20);
    let hard = t0 + duration + drain;
    let mut queues = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for mut sender in senders {
        let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
        queues.push(tx);
        let target = target.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new()?;
            let hard_tokio = tokio::time::Instant::from_std(hard);
            while let Some(at) = rx.recv().await {
                let sent = Instant::now();
                if sent >= hard {
                    out.not_sent += 1;
                    continue;
                }
                match tokio::time::timeout_at(hard_tokio, one(&mut sender, &target, &body, kind))
                    .await
                {
                    Ok(Ok(t)) => {
                        out.ok += 1;
                        out.latency.saturating_record(ns(t.done - at));
                        out.first.saturating_record(ns(t.first - at));
                        out.service.saturating_record(ns(t.done - sent));
                    }
                    Ok(Err(())) => {
                        out.errors += 1;
                        if let Ok(s) = connect(target.addr).await {
                            sender = s;
                        }
                    }
                    Err(_) => out.errors += 1,
                }
            }
            anyhow::Ok(out)
        }));
    }
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".to_owned())
        .spawn(move || {
            for i in 0..total {
                let at = t0 + interval.mul_f64(i as f64);
                loop {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    std::thread::sleep(at - now);
                }
                let conn = (i % queues.len() as u64) as usize;
                let _ = queues[conn].send(at);
            }
        })?;
    let mut out = Outcome::new()?;
    for t in tasks {
        out.merge(&t.await??);
    }
    let _ = pacer.join();
    out.elapsed = Instant::now().saturating_duration_since(t0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_record_microseconds_to_minutes() {
        let mut h = histogram().unwrap();
        h.saturating_record(150_000);
        h.saturating_record(2_000_000_000);
        assert_eq!(h.len(), 2);
        assert!(h.value_at_quantile(0.5).abs_diff(150_000) < 200);
    }
}
