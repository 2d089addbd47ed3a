//! A lean OTLP/HTTP receiver: decodes every protobuf trace export it gets (`…/v1/traces`, or
//! any path but `…/v1/metrics` and `…/v1/logs`, which are accepted and only counted) and counts
//! the spans, by name. Unlike the testkit's receiver it keeps no spans, so a 60-second run at
//! 1,000 requests/s stays cheap.
//!
//! It decodes only the path to each span's name ([`TraceExport`]): prost checks every other
//! field's wire framing and skips it without building it. A full decode into the OTLP types
//! cost the harness ~22 µs of CPU per traced request, on the same two cores as the gateway
//! it measures; a collector does that work elsewhere. Whether the gateway's protobuf is right
//! field by field is what `traceway-otel`'s `otlp_proto` tests check.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    exports: AtomicU64,
    other_exports: AtomicU64,
    undecodable: AtomicU64,
    by_name: Mutex<BTreeMap<String, u64>>,
}

/// A running counting receiver.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Receiver {
    /// `http://ADDR`, an OTLP/HTTP base endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans decoded so far.
    pub fn spans(&self) -> u64 {
        self.counts.spans.load(Ordering::Relaxed)
    }

    /// Export requests received so far.
    pub fn exports(&self) -> u64 {
        self.counts.exports.load(Ordering::Relaxed)
    }

    /// Metrics and logs export requests (accepted, not decoded).
    pub fn other_exports(&self) -> u64 {
        self.counts.other_exports.load(Ordering::Relaxed)
    }

    /// Trace export requests whose body was not OTLP protobuf.
    pub fn undecodable(&self) -> u64 {
        self.counts.undecodable.load(Ordering::Relaxed)
    }

    /// Spans decoded so far, by span name.
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        self.counts
            .by_name
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` spans arrived, or until no span arrived for `quiet`, or
    /// `limit` passed; returns the count.
    pub async fn settle(&self, n: u64, quiet: Duration, limit: Duration) -> u64 {
        let start = tokio::time::Instant::now();
        let mut last = self.spans();
        let mut last_change = start;
        loop {
            let now = self.spans();
            if now >= n {
                return now;
            }
            let t = tokio::time::Instant::now();
            if now != last {
                last = now;
                last_change = t;
            }
            if t.duration_since(last_change) >= quiet || t.duration_since(start) >= limit {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `ExportTraceServiceRequest` (opentelemetry/proto/collector/trace/v1) down to span names:
/// the same tags, every other field skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceExport {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`: `scope_spans` is field 2.
#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

/// `ScopeSpans`: `spans` is field 2.
#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<SpanName>,
}

/// `Span`: `name` is field 5.
#[derive(Clone, PartialEq, prost::Message)]
struct SpanName {
    #[prost(string, tag = "5")]
    name: String,
}

fn count(counts: &Counts, body: &[u8]) -> bool {
    let Ok(req) = TraceExport::decode(body) else {
        return false;
    };
    let mut n = 0u64;
    let mut names: BTreeMap<&str, u64> = BTreeMap::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                n += 1;
                *names.entry(span.name.as_str()).or_default() += 1;
            }
        }
    }
    if let Ok(mut m) = counts.by_name.lock() {
        for (name, c) in names {
            *m.entry(name.to_owned()).or_default() += c;
        }
    }
    counts.spans.fetch_add(n, Ordering::Relaxed);
    true
}

async fn handle(
    counts: Arc<Counts>,
    req: http::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path.ends_with("/v1/metrics") || path.ends_with("/v1/logs") {
        counts.other_exports.fetch_add(1, Ordering::Relaxed);
        let _ = req.into_body().collect().await;
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    let protobuf = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"application/x-protobuf"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    counts.exports.fetch_add(1, Ordering::Relaxed);
    if !protobuf || !count(&counts, &body) {
        counts.undecodable.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    }
    // An empty ExportTraceServiceResponse is an empty protobuf message.
    let mut r = Response::new(Full::new(Bytes::new()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(r)
}

/// Starts the receiver on `127.0.0.1` (an OS-assigned port) on the current tokio runtime.
pub async fn start() -> anyhow::Result<Receiver> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counts = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(counts.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Receiver { addr, counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans as PbResourceSpans, ScopeSpans as PbScopeSpans, Span, span::Event,
    };

    fn attr(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.to_owned())),
            }),
            ..Default::default()
        }
    }

    fn span(name: &str) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.to_owned(),
            kind: 2,
            attributes: vec![
                attr("gen_ai.input.messages", r#"[{"role":"user"}]"#),
                attr("k", "v"),
            ],
            events: vec![Event {
                name: "exception".to_owned(),
                attributes: vec![attr("exception.message", "boom")],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn counts_what_a_full_decode_counts_and_refuses_what_it_refuses() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                PbResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![attr("service.name", "traceway")],
                        ..Default::default()
                    }),
                    scope_spans: vec![PbScopeSpans {
                        spans: vec![
                            span("Received Proxy Server Request"),
                            span("raw_gen_ai_request"),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                PbResourceSpans {
                    scope_spans: vec![PbScopeSpans {
                        spans: vec![span("raw_gen_ai_request")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        let body = req.encode_to_vec();
        let counts = Counts::default();
        assert!(count(&counts, &body));
        assert_eq!(counts.spans.load(Ordering::Relaxed), 3);
        let names = counts.by_name.lock().unwrap().clone();
        assert_eq!(names.get("raw_gen_ai_request"), Some(&2));
        assert_eq!(names.get("Received Proxy Server Request"), Some(&1));
        // Cut inside, the body no longer frames: both decoders refuse it.
        for cut in [1, body.len() / 2, body.len() - 1] {
            let short = &body[..cut];
            assert_eq!(
                count(&Counts::default(), short),
                ExportTraceServiceRequest::decode(short).is_ok(),
                "cut at {cut}"
            );
        }
        assert!(!count(&Counts::default(), b"\xff\xff\xff"));
    }
}
