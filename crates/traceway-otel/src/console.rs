//! The `console` exporter: one human-readable block per finished span on stdout.
//!
//! It runs behind the batch processor like any other exporter, so printing happens on the
//! processor's thread, never on a request task. This is the only place in the crate that
//! writes to stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// A [`SpanExporter`] that prints every span to stdout as a readable block.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleExporter;

impl ConsoleExporter {
    /// A new console exporter.
    pub fn new() -> Self {
        Self
    }
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = String::new();
        for span in &batch {
            render_span(&mut out, span);
        }
        // One locked write per batch keeps a block from interleaving with other output.
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| OTelSdkError::InternalFailure(format!("writing spans to stdout: {e}")))
    }
}

/// Renders one span as the block the console exporter prints, ending with a blank line.
///
/// ```text
/// span "raw_gen_ai_request" CLIENT
///   trace_id  4bf92f3577b34da6a3ce929d0e0e4736
///   span_id   00f067aa0ba902b7
///   parent_id 53995c3f42cd8ad8
///   start     2025-01-02T03:04:05.678901234Z
///   duration  12.345ms
///   status    Unset
///   attributes
///     gen_ai.request.model = "gpt-4o"
///   events
///     +3.000ms exception
///       exception.message = "boom"
/// ```
pub fn render_span(out: &mut String, span: &SpanData) {
    let ctx = &span.span_context;
    // `fmt::Write` into a `String` cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "span {:?} {}",
        span.name.as_ref(),
        kind_name(&span.span_kind)
    );
    let _ = writeln!(out, "  trace_id  {}", ctx.trace_id());
    let _ = writeln!(out, "  span_id   {}", ctx.span_id());
    if span.parent_span_id != SpanId::INVALID {
        let remote = if span.parent_span_is_remote {
            " (remote)"
        } else {
            ""
        };
        let _ = writeln!(out, "  parent_id {}{remote}", span.parent_span_id);
    } else {
        let _ = writeln!(out, "  parent_id -");
    }
    let _ = writeln!(out, "  start     {}", rfc3339(span.start_time));
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or(Duration::ZERO);
    let _ = writeln!(out, "  duration  {}", millis(duration));
    let _ = match &span.status {
        Status::Unset => writeln!(out, "  status    Unset"),
        Status::Ok => writeln!(out, "  status    Ok"),
        Status::Error { description } => {
            writeln!(out, "  status    Error {:?}", description.as_ref())
        }
    };
    if !span.attributes.is_empty() {
        let _ = writeln!(out, "  attributes");
        render_attributes(out, &span.attributes, "    ");
    }
    if span.dropped_attributes_count > 0 {
        let _ = writeln!(
            out,
            "  dropped_attributes {}",
            span.dropped_attributes_count
        );
    }
    if !span.events.events.is_empty() {
        let _ = writeln!(out, "  events");
        for event in span.events.iter() {
            let offset = event
                .timestamp
                .duration_since(span.start_time)
                .unwrap_or(Duration::ZERO);
            let _ = writeln!(out, "    +{} {}", millis(offset), event.name);
            render_attributes(out, &event.attributes, "      ");
        }
    }
    out.push('\n');
}

/// Attributes sorted by key so that two runs print the same block.
fn render_attributes(out: &mut String, attributes: &[KeyValue], indent: &str) {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    for kv in sorted {
        let _ = writeln!(out, "{indent}{} = {}", kv.key, value_text(&kv.value));
    }
}

/// Strings are quoted and escaped so that a multi-line prompt stays on one line.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{:?}", s.as_str()),
        other => other.to_string(),
    }
}

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
        SpanKind::Internal => "INTERNAL",
    }
}

fn millis(d: Duration) -> String {
    format!("{}.{:03}ms", d.as_millis(), d.subsec_micros() % 1000)
}

/// UTC timestamp in RFC 3339 with nanoseconds, without pulling in a date crate.
fn rfc3339(t: SystemTime) -> String {
    let Ok(since) = t.duration_since(UNIX_EPOCH) else {
        return "before-1970".to_owned();
    };
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d is in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{Event, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    fn span() -> SpanData {
        let start =
            UNIX_EPOCH + Duration::from_secs(1_735_787_045) + Duration::from_nanos(678_901_234);
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "exception",
            start + Duration::from_millis(3),
            vec![KeyValue::new("exception.message", "boom\nline 2")],
            0,
        ));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: "raw_gen_ai_request".into(),
            start_time: start,
            end_time: start + Duration::from_micros(12_345),
            attributes: vec![
                KeyValue::new("z.last", 1_i64),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
                KeyValue::new("a.first", true),
            ],
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::error("upstream 500"),
            instrumentation_scope: InstrumentationScope::builder("traceway").build(),
        }
    }

    #[test]
    fn renders_a_readable_block() {
        let mut out = String::new();
        render_span(&mut out, &span());
        let want = "\
span \"raw_gen_ai_request\" CLIENT
  trace_id  4bf92f3577b34da6a3ce929d0e0e4736
  span_id   00f067aa0ba902b7
  parent_id 53995c3f42cd8ad8
  start     2025-01-02T03:04:05.678901234Z
  duration  12.345ms
  status    Error \"upstream 500\"
  attributes
    a.first = true
    gen_ai.request.model = \"gpt-4o\"
    z.last = 1
  events
    +3.000ms exception
      exception.message = \"boom\\nline 2\"

";
        assert_eq!(out, want);
    }

    #[test]
    fn root_span_has_no_parent() {
        let mut s = span();
        s.parent_span_id = SpanId::INVALID;
        s.status = Status::Unset;
        let mut out = String::new();
        render_span(&mut out, &s);
        assert!(out.contains("  parent_id -\n"), "{out}");
        assert!(out.contains("  status    Unset\n"), "{out}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_090), (2025, 1, 2));
    }
}
