//! The exporters against a real OTLP receiver: every protocol, the presets, compression, and
//! the behaviour with a failing, dead or slow collector.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use traceway_otel::config::{ExporterKind, OtelConfig};
use traceway_otel::env;
use traceway_otel::exporter::Telemetry;
use traceway_testkit::otlp::{
    AttrValue, OtlpReceiver, ReceivedRequest, ReceivedSpan, SpanKind as Kind, Status as RStatus,
    Transport,
};
use traceway_testkit::span_tree::SpanTree;
use traceway_testkit::tls_front::{self, FrontOptions, TlsFront};

const WAIT: Duration = Duration::from_secs(10);

fn telemetry(pairs: &[(&str, &str)]) -> Telemetry {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let cfg = OtelConfig::from_env(&map).expect("valid config");
    Telemetry::init(&cfg)
        .expect("pipeline builds")
        .expect("telemetry is on")
}

/// Ids of the spans `emit` created, as lower-case hex.
struct Emitted {
    trace_id: String,
    parent_id: String,
    child_id: String,
}

/// A SERVER parent and a CLIENT child with typed attributes, an event and an error status.
fn emit(t: &Telemetry) -> Emitted {
    let tracer = t.tracer();
    let parent = tracer
        .span_builder("Received Proxy Server Request")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/v1/chat/completions"),
            KeyValue::new("gen_ai.request.temperature", 0.0),
            KeyValue::new("gen_ai.request.max_tokens", 256_i64),
            KeyValue::new("llm.is_streaming", false),
        ])
        .start(tracer);
    let cx = Context::current_with_span(parent);
    let mut child = tracer
        .span_builder("raw_gen_ai_request")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("server.address", "api.openai.com"),
            KeyValue::new("server.port", 443_i64),
            KeyValue::new(
                "gen_ai.request.stop_sequences",
                opentelemetry::Value::Array(opentelemetry::Array::String(vec![
                    "\n".into(),
                    "END".into(),
                ])),
            ),
        ])
        .start_with_context(tracer, &cx);
    child.add_event(
        "exception",
        vec![KeyValue::new("exception.message", "upstream said no")],
    );
    child.set_status(Status::error("upstream 500"));
    let child_id = child.span_context().span_id().to_string();
    child.end();
    let span = cx.span();
    let ids = Emitted {
        trace_id: span.span_context().trace_id().to_string(),
        parent_id: span.span_context().span_id().to_string(),
        child_id,
    };
    span.end();
    ids
}

/// Shutdown blocks; keep it off the runtime's worker threads (the gRPC export task runs there).
async fn shutdown(t: &Telemetry) {
    let t = t.clone();
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .expect("shutdown thread")
        .expect("shutdown flushes");
}

/// The two spans arrived intact, with their tree, attributes and resource.
fn assert_received(receiver: &OtlpReceiver, spans: &[ReceivedSpan], ids: &Emitted, service: &str) {
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(
        receiver.duplicate_key_errors().is_empty(),
        "{:?}",
        receiver.duplicate_key_errors()
    );
    let tree = SpanTree::build(spans).expect("valid tree");
    assert_eq!(
        tree.render(),
        "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]"
    );

    let parent = tree.find("Received Proxy Server Request");
    assert_eq!(parent.trace_id, ids.trace_id);
    assert_eq!(parent.span_id, ids.parent_id);
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(parent.kind, Kind::Server);
    assert_eq!(parent.status, RStatus::Unset);
    assert_eq!(parent.attr_str("http.route"), Some("/v1/chat/completions"));
    assert_eq!(parent.attr_f64("gen_ai.request.temperature"), Some(0.0));
    assert_eq!(parent.attr_i64("gen_ai.request.max_tokens"), Some(256));
    assert_eq!(parent.attr_bool("llm.is_streaming"), Some(false));
    assert_eq!(parent.scope_name, "traceway");

    let child = tree.find("raw_gen_ai_request");
    assert_eq!(child.trace_id, ids.trace_id);
    assert_eq!(child.span_id, ids.child_id);
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(ids.parent_id.as_str())
    );
    assert_eq!(child.kind, Kind::Client);
    assert_eq!(
        child.status,
        RStatus::Error {
            message: "upstream 500".to_owned()
        }
    );
    assert_eq!(child.attr_str("server.address"), Some("api.openai.com"));
    assert_eq!(child.attr_i64("server.port"), Some(443));
    assert_eq!(
        child.attr("gen_ai.request.stop_sequences"),
        Some(&AttrValue::Array(vec![
            AttrValue::String("\n".to_owned()),
            AttrValue::String("END".to_owned())
        ]))
    );
    let events = child.events_named("exception");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].get("exception.message"),
        Some(&AttrValue::String("upstream said no".to_owned()))
    );

    for span in [parent, child] {
        assert_eq!(span.resource_str("service.name"), Some(service));
        assert_eq!(
            span.resource_str("service.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(span.resource_str("telemetry.sdk.language"), Some("rust"));
    }
}

/// The requests that carried the two spans (normally one; a timer tick between the two
/// `end()`s may split them). Each must look the same, so the first one stands for all.
fn only_request(receiver: &OtlpReceiver) -> ReceivedRequest {
    let requests = receiver.requests();
    assert!(!requests.is_empty(), "no request received");
    assert_eq!(
        requests.iter().map(|r| r.span_count).sum::<usize>(),
        2,
        "{requests:#?}"
    );
    for r in &requests {
        assert_eq!(
            (r.transport, &r.content_type, &r.content_encoding),
            (
                requests[0].transport,
                &requests[0].content_type,
                &requests[0].content_encoding
            ),
            "{requests:#?}"
        );
    }
    requests.into_iter().next().expect("one request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_traceloop_preset() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_EXPORTER, "otlp_http"),
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_HEADERS, "Authorization=Bearer%20k"),
        (env::OTEL_SERVICE_NAME, "traceloop-test"),
    ]);
    assert_eq!(t.exporter(), ExporterKind::OtlpHttpProtobuf);
    let ids = emit(&t);
    shutdown(&t).await;

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_received(&receiver, &spans, &ids, "traceloop-test");
    let request = only_request(&receiver);
    assert_eq!(request.transport, Transport::Http);
    assert_eq!(request.path, "/v1/traces");
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(request.content_encoding, None);
    assert_eq!(request.header("authorization"), Some("Bearer k"));
    assert_eq!(t.spans_exported(), 2);
    assert_eq!(t.spans_dropped() + t.spans_export_failed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_sends_otlp_json() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
        (env::OTEL_EXPORTER_OTLP_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_HEADERS, "x-api-key=abc%3D%3D"),
    ]);
    assert_eq!(t.exporter(), ExporterKind::OtlpHttpJson);
    let ids = emit(&t);
    shutdown(&t).await;

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_received(&receiver, &spans, &ids, "traceway");
    let request = only_request(&receiver);
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.header("x-api-key"), Some("abc=="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = format!("{}/v1/traces", receiver.http_endpoint());
    let t = telemetry(&[
        (env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
    ]);
    let ids = emit(&t);
    shutdown(&t).await;

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_received(&receiver, &spans, &ids, "traceway");
    let request = only_request(&receiver);
    assert_eq!(request.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-protobuf")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_laminar_preset() {
    let receiver = OtlpReceiver::start().await;
    // A path on a gRPC endpoint is ignored.
    let endpoint = format!("{}/ignored/path", receiver.grpc_endpoint());
    let t = telemetry(&[
        (env::OTEL_EXPORTER, "otlp_grpc"),
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_HEADERS, "authorization=Bearer lmnr-key"),
        (env::OTEL_SERVICE_NAME, "laminar-test"),
    ]);
    assert_eq!(t.exporter(), ExporterKind::OtlpGrpc);
    let ids = emit(&t);
    shutdown(&t).await;

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_received(&receiver, &spans, &ids, "laminar-test");
    let request = only_request(&receiver);
    assert_eq!(request.transport, Transport::Grpc);
    assert_eq!(request.header("authorization"), Some("Bearer lmnr-key"));
    assert!(
        request
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/grpc")),
        "{request:?}"
    );
    assert_eq!(request.content_encoding, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    let t = telemetry(&[
        (env::OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
        (env::OTEL_EXPORTER_OTLP_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "gzip"),
    ]);
    let ids = emit(&t);
    shutdown(&t).await;

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_received(&receiver, &spans, &ids, "traceway");
    let request = only_request(&receiver);
    assert_eq!(request.content_encoding.as_deref(), Some("gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_flush_delivers_without_shutdown() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_ENDPOINT, &endpoint),
        // Long enough that only the flush can have sent the spans.
        (env::OTEL_BSP_SCHEDULE_DELAY, "60000"),
    ]);
    emit(&t);
    let flusher = t.clone();
    tokio::task::spawn_blocking(move || flusher.force_flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receiver.spans().len(), 2);
    shutdown(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_exports_are_counted_as_failed() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_status(http::StatusCode::BAD_REQUEST);
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
    ]);
    emit(&t);
    shutdown(&t).await;

    // 400 is not retryable: one attempt, both spans lost and counted.
    assert_eq!(t.spans_export_failed(), 2);
    assert_eq!(t.spans_exported(), 0);
    assert!(receiver.spans().is_empty());
    only_request(&receiver);
    assert!(
        receiver.requests().iter().all(|r| r.answered_status == 400),
        "{:#?}",
        receiver.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_status(http::StatusCode::SERVICE_UNAVAILABLE);
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_TIMEOUT, "3000"),
    ]);
    emit(&t);
    shutdown(&t).await;
    assert!(receiver.requests().len() > 1, "{:#?}", receiver.requests());
    assert_eq!(t.spans_export_failed(), 2);
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn dead_http_collector_never_blocks_and_counts_losses() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let t = telemetry(&[
        (env::OTEL_EXPORTER_OTLP_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_TIMEOUT, "200"),
        (env::OTEL_BSP_EXPORT_TIMEOUT, "3000"),
        (env::OTEL_BSP_SCHEDULE_DELAY, "50"),
    ]);
    for i in 0..10_000_i64 {
        let mut span = t.tracer().start("raw_gen_ai_request");
        span.set_attribute(KeyValue::new("i", i));
        span.end();
    }
    // The queue holds 2048; everything beyond was dropped on the spot, not waited for.
    assert!(t.spans_dropped() > 0);

    let started = Instant::now();
    let result = t.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(t.spans_export_failed() > 0);
    assert_eq!(t.spans_exported(), 0);
    if result.is_ok() {
        // Every span is accounted for: dropped at the queue or lost in a failed export.
        assert_eq!(t.spans_dropped() + t.spans_export_failed(), 10_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_grpc_collector_never_blocks_and_counts_losses() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let t = telemetry(&[
        (env::OTEL_EXPORTER, "otlp_grpc"),
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_EXPORTER_OTLP_TIMEOUT, "200"),
        (env::OTEL_BSP_EXPORT_TIMEOUT, "3000"),
        (env::OTEL_BSP_SCHEDULE_DELAY, "50"),
        (env::OTEL_BSP_MAX_QUEUE_SIZE, "512"),
    ]);
    for _ in 0..10_000 {
        t.tracer().start("raw_gen_ai_request").end();
    }
    assert!(t.spans_dropped() > 0);

    let started = Instant::now();
    let closer = t.clone();
    let result = tokio::task::spawn_blocking(move || closer.shutdown())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(t.spans_export_failed() > 0);
    assert_eq!(t.spans_exported(), 0);
    if result.is_ok() {
        assert_eq!(t.spans_dropped() + t.spans_export_failed(), 10_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queue_with_slow_collector_drops_and_counts() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_delay(Duration::from_millis(500));
    let endpoint = receiver.http_endpoint();
    let t = telemetry(&[
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_BSP_MAX_QUEUE_SIZE, "4"),
        (env::OTEL_BSP_SCHEDULE_DELAY, "10"),
    ]);
    for _ in 0..100 {
        t.tracer().start("litellm_request").end();
    }
    let dropped = t.spans_dropped();
    assert!(dropped >= 90, "dropped {dropped}");

    receiver.set_delay(Duration::ZERO);
    shutdown(&t).await;
    let kept = usize::try_from(100 - dropped).unwrap();
    let spans = receiver.wait_for_spans(kept, WAIT).await;
    assert_eq!(spans.len(), kept);
    assert_eq!(t.spans_exported(), 100 - dropped);
    assert_eq!(t.spans_export_failed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queue_with_slow_grpc_collector_drops_and_counts() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_delay(Duration::from_millis(500));
    let endpoint = receiver.grpc_endpoint();
    let t = telemetry(&[
        (env::OTEL_EXPORTER, "otlp_grpc"),
        (env::OTEL_ENDPOINT, &endpoint),
        (env::OTEL_BSP_MAX_QUEUE_SIZE, "4"),
        (env::OTEL_BSP_SCHEDULE_DELAY, "10"),
    ]);
    for _ in 0..100 {
        t.tracer().start("litellm_request").end();
    }
    let dropped = t.spans_dropped();
    assert!(dropped >= 90, "dropped {dropped}");

    receiver.set_delay(Duration::ZERO);
    shutdown(&t).await;
    let kept = usize::try_from(100 - dropped).unwrap();
    let spans = receiver.wait_for_spans(kept, WAIT).await;
    assert_eq!(spans.len(), kept);
    assert_eq!(t.spans_exported(), 100 - dropped);
}

#[test]
fn console_and_in_memory_work_without_a_runtime() {
    let t = telemetry(&[(env::OTEL_EXPORTER, "console")]);
    emit(&t);
    t.shutdown().unwrap();
    assert_eq!(t.spans_exported(), 2);

    let t = telemetry(&[(env::OTEL_EXPORTER, "in_memory")]);
    let ids = emit(&t);
    let spans = t.finished_spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].span_context.span_id().to_string(), ids.child_id);
}

/// A collector behind a private CA, asking for a client certificate: each protocol reaches it
/// with `OTEL_EXPORTER_OTLP_CERTIFICATE` and the client pair, and every span arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_collector_with_a_private_ca_and_mutual_tls() {
    for protocol in ["http/protobuf", "http/json", "grpc"] {
        let receiver = OtlpReceiver::start().await;
        let front = mutual_tls_front(&receiver, protocol).await;
        let t = telemetry(&[
            (env::OTEL_EXPORTER_OTLP_PROTOCOL, protocol),
            (env::OTEL_EXPORTER_OTLP_ENDPOINT, &front.url()),
            (
                env::OTEL_EXPORTER_OTLP_CERTIFICATE,
                &material_path("ca.pem"),
            ),
            (
                env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                &material_path("client.pem"),
            ),
            (
                env::OTEL_EXPORTER_OTLP_CLIENT_KEY,
                &material_path("client.key"),
            ),
        ]);
        let ids = emit(&t);
        shutdown(&t).await;

        let spans = receiver.wait_for_spans(2, WAIT).await;
        assert_received(&receiver, &spans, &ids, "traceway");
        assert_eq!(t.spans_exported(), 2, "{protocol}");
        assert!(front.accepted() >= 1 && front.refused() == 0, "{protocol}");
    }
}

/// Without the CA file the bundled roots refuse the private CA's certificate, and without the
/// client pair the collector refuses the exporter: the spans are counted as failed, nothing is
/// received, and the TLS front saw the refused handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_collector_refused_without_its_ca_or_a_client_certificate() {
    let ca = material_path("ca.pem");
    for (protocol, pairs) in [
        ("http/protobuf", vec![]),
        ("grpc", vec![]),
        (
            "http/protobuf",
            vec![(env::OTEL_EXPORTER_OTLP_CERTIFICATE, ca.as_str())],
        ),
        (
            "grpc",
            vec![(env::OTEL_EXPORTER_OTLP_CERTIFICATE, ca.as_str())],
        ),
    ] {
        let receiver = OtlpReceiver::start().await;
        let front = mutual_tls_front(&receiver, protocol).await;
        let endpoint = front.url();
        let mut env = vec![
            (env::OTEL_EXPORTER_OTLP_PROTOCOL, protocol),
            (env::OTEL_EXPORTER_OTLP_ENDPOINT, endpoint.as_str()),
            (env::OTEL_EXPORTER_OTLP_TIMEOUT, "2000"),
            (env::OTEL_BSP_EXPORT_TIMEOUT, "3000"),
        ];
        env.extend(pairs.iter().copied());
        let t = telemetry(&env);
        emit(&t);
        let t2 = t.clone();
        // Shutdown reports the failed export; the counters are what matter here.
        let _ = tokio::task::spawn_blocking(move || t2.shutdown()).await;

        let case = format!("{protocol} with {pairs:?}");
        assert!(receiver.spans().is_empty(), "{case}");
        assert_eq!(t.spans_exported(), 0, "{case}");
        assert_eq!(t.spans_export_failed(), 2, "{case}");
        assert!(front.refused() >= 1, "{case}: no refused handshake");
    }
}

/// A TLS front before `receiver`'s listener for `protocol` that asks for a client certificate.
async fn mutual_tls_front(receiver: &OtlpReceiver, protocol: &str) -> TlsFront {
    let grpc = protocol == "grpc";
    let (backend, alpn) = if grpc {
        (receiver.grpc_addr(), vec![b"h2".to_vec()])
    } else {
        (receiver.http_addr(), Vec::new())
    };
    let options = FrontOptions {
        alpn,
        require_client_cert: true,
    };
    TlsFront::start(backend, options).await
}

fn material_path(name: &str) -> String {
    tls_front::material(name).to_str().unwrap().to_owned()
}
