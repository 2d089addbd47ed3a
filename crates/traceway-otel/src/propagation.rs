//! W3C trace-context in and out of HTTP headers.
//!
//! The proxy adopts an incoming `traceparent` as the parent of its SERVER span, and every
//! upstream attempt carries its CLIENT span's own context as `traceparent`.

use http::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
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

/// Reads a W3C parent context from request headers; an absent or malformed one gives an empty context.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderRead(headers))
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Renders `cx`'s span as `traceparent` (and `tracestate` when set) headers.
///
/// Written here rather than through the SDK's propagator, which builds the header with
/// `format!` and hands back text to parse again as a header: this runs once per upstream
/// attempt. The output is the same, but for an empty `tracestate`, which W3C trace-context
/// says not to send (the tests compare them).
pub fn inject(cx: &Context) -> Vec<(HeaderName, HeaderValue)> {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return Vec::new();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 00-{32 hex trace id}-{16 hex span id}-{2 hex flags}
    let mut text = [b'-'; 55];
    text[0] = b'0';
    text[1] = b'0';
    let fields: [(&[u8], usize); 3] = [
        (&sc.trace_id().to_bytes(), 3),
        (&sc.span_id().to_bytes(), 36),
        (&[sc.trace_flags().to_u8() & 1], 53),
    ];
    for (bytes, at) in fields {
        for (i, b) in bytes.iter().enumerate() {
            text[at + 2 * i] = HEX[usize::from(b >> 4)];
            text[at + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
    }
    let mut out = Vec::with_capacity(2);
    if let Ok(v) = HeaderValue::from_bytes(&text) {
        out.push((TRACEPARENT, v));
    }
    let state = sc.trace_state().header();
    if !state.is_empty()
        && let Ok(v) = HeaderValue::from_str(&state)
    {
        out.push((TRACESTATE, v));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::propagation::Injector;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use std::str::FromStr as _;

    struct Pairs(Vec<(String, String)>);

    impl Injector for Pairs {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    #[test]
    fn headers_are_what_the_sdk_propagator_writes_less_an_empty_tracestate() {
        for (trace, span, flags, state) in [
            (1u128, 1u64, TraceFlags::SAMPLED, ""),
            (u128::MAX, u64::MAX, TraceFlags::default(), ""),
            (
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                TraceFlags::SAMPLED,
                "vendor=a,other=b",
            ),
        ] {
            let sc = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                flags,
                false,
                TraceState::from_str(state).unwrap(),
            );
            let cx = Context::new().with_remote_span_context(sc);
            let mut sdk = Pairs(Vec::new());
            TraceContextPropagator::new().inject_context(&cx, &mut sdk);
            // W3C: an empty tracestate should not be sent; the SDK sends it anyway.
            sdk.0.retain(|(_, v)| !v.is_empty());
            let ours: Vec<(String, String)> = inject(&cx)
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            assert_eq!(ours, sdk.0, "{trace:x} {span:x} {state}");
        }
        assert!(inject(&Context::new()).is_empty());
    }
}
