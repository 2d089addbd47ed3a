//! The proxy's SERVER span for one request: opened from the incoming `traceparent`, carrying the
//! HTTP and caller attributes, marked failed with a `Failed Proxy Server Request` child on error,
//! and ended exactly once — when the response (or the last streamed chunk) is sent, or when the
//! client goes away (the handler is dropped before its answer: `client_disconnected`).

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use traceway::Error;
use traceway_otel::keys as k;

/// The request's SERVER span, or nothing when tracing is off.
pub struct RequestSpan {
    cx: Option<Context>,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

impl RequestSpan {
    /// A span that records nothing (tracing off).
    pub fn disabled() -> Self {
        RequestSpan {
            cx: None,
            tracer: None,
        }
    }

    /// Opens the span as a child of `parent` (the incoming trace context, possibly empty).
    pub fn start(tracing: &traceway::Tracing, parent: &Context, attributes: Vec<KeyValue>) -> Self {
        let tracer = tracing.telemetry.tracer().clone();
        let span = tracer
            .span_builder(k::SPAN_PROXY_REQUEST)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&tracer, parent);
        RequestSpan {
            cx: Some(parent.with_span(span)),
            tracer: Some(tracer),
        }
    }

    /// The span's context, to parent the call's spans.
    pub fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Adds attributes.
    pub fn set(&self, attributes: Vec<KeyValue>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attributes(attributes);
        }
    }

    /// Records the response status and ends the span.
    pub fn finish(mut self, status: u16) {
        if let Some(cx) = self.cx.take() {
            cx.span().set_attribute(KeyValue::new(
                k::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
            cx.span().end();
        }
    }

    /// Marks the request failed (status ERROR, `error.*`, a `Failed Proxy Server Request` child)
    /// and ends the span.
    pub fn fail(self, status: u16, err: &Error) {
        if let (Some(cx), Some(tracer)) = (&self.cx, &self.tracer) {
            traceway::telemetry::mark_failed(cx, err);
            let mut child = tracer
                .span_builder(k::SPAN_PROXY_FAILED)
                .with_kind(SpanKind::Internal)
                .with_attributes(vec![
                    KeyValue::new(k::EXCEPTION, err.message.clone()),
                    KeyValue::new(k::ERROR_TYPE, err.kind.error_class()),
                ])
                .start_with_context(tracer, cx);
            opentelemetry::trace::Span::set_status(&mut child, Status::error(err.message.clone()));
            opentelemetry::trace::Span::end(&mut child);
        }
        self.finish(status);
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        // Neither finished nor failed: the handler was dropped because the client went away
        // before its answer.
        if let Some(cx) = self.cx.take() {
            traceway::telemetry::mark_disconnected(&cx, true);
            cx.span().end();
        }
    }
}
