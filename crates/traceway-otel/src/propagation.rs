//! W3C trace-context in and out of HTTP headers.
//!
//! The proxy adopts an incoming `traceparent` as the parent of its SERVER span, and every
//! upstream attempt carries its CLIENT span's own context as `traceparent`.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

struct HeaderRead<'a>(&'a http::HeaderMap);

impl Extractor for HeaderRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderWrite<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderWrite<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Reads a W3C parent context from request headers; an absent or malformed one gives an empty context.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderRead(headers))
}

/// Renders `cx`'s span as `traceparent` (and `tracestate` when set) header pairs.
pub fn inject(cx: &Context) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2);
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut HeaderWrite(&mut out));
    }
    out
}
