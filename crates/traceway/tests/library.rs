//! The library path: `Client` calls traced as `litellm_request` with `raw_gen_ai_request`
//! children, exported over real OTLP to the testkit receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use opentelemetry::trace::{TraceContextExt, Tracer};
use std::collections::HashMap;
use traceway::types::{
    ChatCompletionRequest, ChatMessage, EmbeddingInput, EmbeddingRequest, Extra, Role,
};
use traceway::{BuildError, Client, DeploymentConfig, ErrorKind, Secret, Tracing};
use traceway_otel::config::OtelConfig;
use traceway_otel::exporter::Telemetry;
use traceway_testkit::openai_upstream::{self, OpenAiUpstream, Reply};
use traceway_testkit::otlp::{OtlpReceiver, SpanKind, Status};
use traceway_testkit::span_tree::SpanTree;

fn tracing_to(rx: &OtlpReceiver) -> Tracing {
    let env: HashMap<String, String> = [
        ("OTEL_EXPORTER", "otlp_http".to_owned()),
        ("OTEL_ENDPOINT", rx.http_endpoint()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let cfg = OtelConfig::from_env(&env).unwrap();
    Tracing {
        telemetry: Telemetry::init(&cfg).unwrap().unwrap(),
        capture_content: true,
    }
}

async fn flushed(t: &Tracing, rx: &OtlpReceiver) -> SpanTree {
    let telemetry = t.telemetry.clone();
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(
        rx.duplicate_key_errors().is_empty(),
        "{:?}",
        rx.duplicate_key_errors()
    );
    SpanTree::build(&rx.spans()).unwrap()
}

/// `gpt` → `openai/gpt-4o-mini` at `api_base`, with an upstream key.
fn gpt_at(api_base: String) -> DeploymentConfig {
    DeploymentConfig {
        model_name: "gpt".into(),
        model: "openai/gpt-4o-mini".into(),
        api_base: Some(api_base),
        api_key: Some(Secret::new("sk-upstream")),
        ..DeploymentConfig::default()
    }
}

fn ask(model: &str, text: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(model, vec![ChatMessage::new(Role::User, text)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_call_is_a_litellm_request_root_with_one_client_child() {
    let rx = OtlpReceiver::start().await;
    let t = tracing_to(&rx);
    let client = Client::builder().tracing(t.clone()).build().unwrap();
    let reply = client
        .chat(ask("mock/echo", "hello library"))
        .await
        .unwrap();
    assert_eq!(reply.choices[0].message.text(), "hello library");
    let tree = flushed(&t, &rx).await;
    assert_eq!(
        tree.render(),
        "litellm_request [INTERNAL]\n  raw_gen_ai_request [CLIENT]"
    );
    let llm = tree.find("litellm_request");
    assert_eq!(llm.attr_str("gen_ai.provider.name"), Some("mock"));
    assert_eq!(llm.attr_str("gen_ai.request.model"), Some("echo"));
    assert_eq!(llm.attr_str("litellm.model_group"), Some("mock/echo"));
    assert_eq!(
        llm.attr_str("gen_ai.completion.0.content"),
        Some("hello library")
    );
    assert!(llm.attr_i64("gen_ai.usage.total_tokens").unwrap() > 0);
    assert_eq!(llm.status, Status::Unset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_the_callers_span_becomes_its_child() {
    let rx = OtlpReceiver::start().await;
    let t = tracing_to(&rx);
    let client = Client::builder().tracing(t.clone()).build().unwrap();
    let tracer = t.telemetry.tracer().clone();
    let span = tracer.span_builder("my_app_step").start(&tracer);
    let cx = opentelemetry::Context::current().with_span(span);
    // The caller's span is current while the call runs, as with any instrumented future.
    opentelemetry::trace::FutureExt::with_context(
        client.chat(ask("mock/echo", "inside")),
        cx.clone(),
    )
    .await
    .unwrap();
    cx.span().end();
    let tree = flushed(&t, &rx).await;
    assert_eq!(
        tree.render(),
        "my_app_step [INTERNAL]\n  litellm_request [INTERNAL]\n    raw_gen_ai_request [CLIENT]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_errors_and_embeddings_through_an_openai_upstream() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let t = tracing_to(&rx);
    let client = Client::builder()
        .tracing(t.clone())
        .deployment(DeploymentConfig {
            api_key: Some(Secret::new("sk-lib-secret")),
            ..gpt_at(up.api_base())
        })
        .build()
        .unwrap();
    let chunks: Vec<_> = client
        .chat_stream(ask("gpt", "stream it"))
        .await
        .unwrap()
        .collect()
        .await;
    let text: String = chunks
        .iter()
        .map(|c| c.as_ref().unwrap())
        .filter_map(|c| c.choices.first().and_then(|ch| ch.delta.content.clone()))
        .collect();
    assert_eq!(text, "Hello! How can I help?");
    assert!(
        chunks.iter().all(|c| c.as_ref().unwrap().usage.is_none()),
        "no usage chunk unless asked"
    );

    up.push(Reply::error(429, openai_upstream::ERROR_429));
    let err = client.chat(ask("gpt", "again")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);

    let emb = client
        .embeddings(EmbeddingRequest {
            model: "gpt".into(),
            input: EmbeddingInput::One("x".into()),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    assert_eq!(emb.data.len(), 1);

    let tree = flushed(&t, &rx).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 3);
    assert!(
        roots
            .iter()
            .all(|r| r.name == "litellm_request" && r.kind == SpanKind::Internal)
    );
    assert_eq!(roots[0].attr_i64("gen_ai.usage.total_tokens"), Some(15));
    assert!(roots[0].has_attr("gen_ai.response.time_to_first_chunk"));
    assert!(matches!(roots[1].status, Status::Error { .. }));
    assert_eq!(roots[1].attr_str("error.type"), Some("rate_limited"));
    let attempt = tree.children_of(roots[1])[0];
    assert!(matches!(attempt.status, Status::Error { .. }));
    assert_eq!(
        roots[2].attr_str("gen_ai.operation.name"),
        Some("embeddings")
    );
    for s in tree.spans() {
        assert!(!format!("{:?}", s.attributes).contains("sk-lib-secret"));
    }
}

#[test]
fn unknown_callbacks_and_bad_models_are_build_errors() {
    let err = Client::builder()
        .callbacks(["otel", "not-a-callback"])
        .build();
    assert!(matches!(err, Err(BuildError::UnknownCallback(c)) if c == "not-a-callback"));
    let err = Client::builder()
        .deployment(DeploymentConfig {
            model_name: "x".into(),
            model: "nope/x".into(),
            ..DeploymentConfig::default()
        })
        .build();
    assert!(
        err.err()
            .unwrap()
            .to_string()
            .contains("unknown provider \"nope\"")
    );
}

#[tokio::test]
async fn untraced_clients_call_directly_and_reject_unknown_providers() {
    let client = Client::builder().build().unwrap();
    assert!(client.tracing().is_none());
    let r = client.chat(ask("mock/anything", "plain")).await.unwrap();
    assert_eq!(r.choices[0].message.text(), "plain");
    let e = client.chat(ask("nope/x", "plain")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e = client.chat(ask("bare-name", "plain")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

/// A client whose environment names `HTTP_PROXY` sends through that proxy (absolute-form, the
/// upstream's own `Host`), except to a host `NO_PROXY` lists; a bad proxy URL fails the build
/// naming the variable. The "proxy" is the testkit's OpenAI server, which answers whatever
/// reaches it: the upstream's host does not resolve, so only the proxy can answer.
#[tokio::test]
async fn upstream_requests_honour_the_proxy_variables() {
    let proxy = OpenAiUpstream::start().await;
    let client = |env: &[(&str, String)]| {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        Client::builder()
            .env(std::sync::Arc::new(env))
            .timeout(std::time::Duration::from_secs(5))
            .deployment(gpt_at("http://llm.invalid:8080/v1".into()))
            .build()
    };
    let via = client(&[("http_proxy", format!("http://{}", proxy.addr()))]).unwrap();
    let answer = via.chat(ask("gpt", "Hello")).await.unwrap();
    assert!(!answer.choices.is_empty());
    let seen = proxy.last_request();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.headers["host"], "llm.invalid:8080");
    assert_eq!(seen.headers["authorization"], "Bearer sk-upstream");

    let bypassed = client(&[
        ("HTTP_PROXY", format!("http://{}", proxy.addr())),
        ("NO_PROXY", "localhost,.invalid".to_owned()),
    ])
    .unwrap();
    let err = bypassed.chat(ask("gpt", "Hello")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection, "{err}");
    assert!(
        err.message
            .contains("could not reach openai at llm.invalid"),
        "{err}"
    );
    assert_eq!(proxy.requests().len(), 1);

    let bad = client(&[("HTTPS_PROXY", "http://user:s3cret@[::1".to_owned())]);
    let text = match bad {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a bad proxy URL was accepted"),
    };
    assert!(
        text.contains("HTTPS_PROXY is not a valid proxy URL"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// An `api_base` that is not a URL fails its call as a connection error that says so, without
/// echoing the URL (a provider may carry its key in the query).
#[tokio::test]
async fn an_unparsable_api_base_is_a_connection_error() {
    let client = Client::builder()
        .env(std::sync::Arc::new(HashMap::<String, String>::new()))
        .deployment(DeploymentConfig {
            model_name: "gpt".into(),
            model: "openai/gpt-4o-mini".into(),
            api_base: Some("http://llm host/v1?key=sk-in-url".into()),
            ..DeploymentConfig::default()
        })
        .build()
        .unwrap();
    let err = client.chat(ask("gpt", "Hello")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection, "{err}");
    assert!(
        err.message
            .starts_with("could not reach openai: its URL is not valid"),
        "{err}"
    );
    assert!(!err.message.contains("sk-in-url"), "{err}");
}

/// A stream that ends (`[DONE]`) before any chunk is an empty stream, not an error, and is not
/// polled again once ended.
#[tokio::test]
async fn a_stream_that_ends_before_any_chunk_is_empty() {
    let up = OpenAiUpstream::start().await;
    up.push(Reply::Sse {
        events: vec!["[DONE]".into()],
        gap: std::time::Duration::ZERO,
        end: openai_upstream::StreamEnd::Complete,
    });
    let client = Client::builder()
        .env(std::sync::Arc::new(HashMap::<String, String>::new()))
        .deployment(gpt_at(up.api_base()))
        .build()
        .unwrap();
    let chunks: Vec<_> = client
        .chat_stream(ask("gpt", "Hello"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(chunks.is_empty(), "{chunks:?}");
    assert_eq!(up.requests().len(), 1);
}

/// A caller that stops waiting (its future dropped, here by a timeout) leaves `litellm_request`
/// and its attempt ended once, marked `client_disconnected`, and the upstream request let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_leaves_its_spans_marked_client_disconnected() {
    let rx = OtlpReceiver::start().await;
    let t = tracing_to(&rx);
    let up = OpenAiUpstream::start().await;
    up.push(Reply::Delay(
        std::time::Duration::from_secs(5),
        Box::new(Reply::Fixture),
    ));
    let client = Client::builder()
        .tracing(t.clone())
        .deployment(gpt_at(up.api_base()))
        .build()
        .unwrap();
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.chat(ask("gpt", "Hello")),
    )
    .await;
    assert!(waited.is_err(), "the answer is delayed past the timeout");
    for _ in 0..100 {
        if up.requests_cancelled() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(up.requests_cancelled(), 1, "the upstream request is let go");
    let tree = flushed(&t, &rx).await;
    assert_eq!(
        tree.render(),
        "litellm_request [INTERNAL]\n  raw_gen_ai_request [CLIENT]"
    );
    for name in ["litellm_request", "raw_gen_ai_request"] {
        let span = tree.find(name);
        assert_eq!(span.attr_str("error.type"), Some("client_disconnected"));
        assert_eq!(span.events_named("client_disconnected").len(), 1, "{name}");
        assert_eq!(span.status, Status::Unset, "{name}");
    }
}
