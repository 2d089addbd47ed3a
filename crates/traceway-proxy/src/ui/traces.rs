//! The web page's trace view: the last N request traces, kept in memory.
//!
//! [`TraceBufferProcessor`] is one more OpenTelemetry span destination beside the configured
//! exporter (added with `Telemetry::init_with`). It runs on the thread that ends each span, so
//! recording is a lock, a push and, past the bound, one eviction; summaries, filters and JSON
//! are built only when the page asks.
//!
//! Spans are grouped by trace id. A trace is listed once its root has ended (the span whose
//! parent is absent or remote: `Received Proxy Server Request` in the proxy); its children end
//! first and wait beside it. When more than N traces are held, the one updated longest ago goes.
//!
//! Under load the view keeps a sample: past [`UI_TRACES_PER_SECOND`] traces a second, a trace
//! is kept when its id falls under a threshold set each second from the last second's rate, so
//! all spans of a trace share the decision and the others are never copied (the exporters still
//! get every span). N traces then cover seconds of traffic rather than milliseconds.

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use serde::Serialize;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use traceway_otel::exporter::SelectiveProcessor;
use traceway_otel::keys as k;

/// Most spans kept of one trace; later ones are counted, not kept. A proxy request has a few
/// (one per attempt), so this only bounds a runaway.
pub const MAX_SPANS_PER_TRACE: usize = 256;
/// Traces a second the view takes in full; above this rate it keeps a sample of about as many.
pub const UI_TRACES_PER_SECOND: u64 = 100;
/// The sampling threshold's scale: a trace is kept when its id's hash, modulo this, is below
/// the threshold.
const SAMPLE_SCALE: u64 = 1 << 16;
/// Length of the window whose trace rate sets the next window's threshold.
const SAMPLE_WINDOW_MS: u64 = 1000;

/// Longest string attribute kept, in bytes; longer values (huge prompts) are cut to this and
/// marked, so that N traces cannot hold N full request bodies.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Appended to a cut value, before the number of bytes left out.
pub const TRUNCATION_MARK: &str = "… [truncated by the Traceway UI buffer:";

/// Whether a request succeeded, as the trace list shows and filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceStatus {
    /// The root span did not fail and the HTTP status is below 400.
    Ok,
    /// The root span failed, or the HTTP status is 400 or more.
    Error,
}

impl TraceStatus {
    /// `ok` / `error`, as the API's `status` filter takes it.
    pub fn parse(s: &str) -> Option<TraceStatus> {
        match s {
            "ok" => Some(TraceStatus::Ok),
            "error" => Some(TraceStatus::Error),
            _ => None,
        }
    }
}

/// Which traces to list. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// The model group (`litellm.model_group`) or the model asked for.
    pub model: Option<String>,
    /// Success or failure.
    pub status: Option<TraceStatus>,
    /// The caller's key alias (`metadata.user_api_key_alias`).
    pub key_alias: Option<String>,
    /// The caller's team, by alias or id.
    pub team: Option<String>,
    /// Only traces recorded or changed after this cursor (live update).
    pub since: Option<u64>,
    /// Most traces returned, newest first.
    pub limit: Option<usize>,
}

/// One line of the trace list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    /// 32 hex digits.
    pub trace_id: String,
    /// When the trace last changed, on the buffer's cursor scale.
    pub seq: u64,
    /// The root span's name.
    pub name: String,
    /// Start of the root span, Unix milliseconds.
    pub start_ms: f64,
    /// Duration of the root span in milliseconds.
    pub duration_ms: f64,
    /// Success or failure.
    pub status: TraceStatus,
    /// `http.response.status_code`.
    pub http_status: Option<i64>,
    /// `gen_ai.operation.name`.
    pub operation: Option<String>,
    /// `litellm.model_group`: the alias the client asked for.
    pub model_group: Option<String>,
    /// `gen_ai.request.model`: the provider's model.
    pub model: Option<String>,
    /// `gen_ai.provider.name` (or `gen_ai.system`).
    pub provider: Option<String>,
    /// `litellm.model_id`: the deployment that answered (the last one tried).
    pub deployment_id: Option<String>,
    /// `gen_ai.usage.input_tokens`.
    pub input_tokens: Option<i64>,
    /// `gen_ai.usage.output_tokens`.
    pub output_tokens: Option<i64>,
    /// `gen_ai.usage.total_tokens`.
    pub total_tokens: Option<i64>,
    /// `metadata.user_api_key_alias`.
    pub key_alias: Option<String>,
    /// Team alias, else team id.
    pub team: Option<String>,
    /// `metadata.user_api_key_team_id`.
    pub team_id: Option<String>,
    /// `metadata.user_api_key_user_id`.
    pub user_id: Option<String>,
    /// `llm.is_streaming`.
    pub streaming: bool,
    /// `error.type` on failure.
    pub error_type: Option<String>,
    /// `error.message` (or the status message) on failure.
    pub error_message: Option<String>,
    /// Spans kept of this trace.
    pub span_count: usize,
    /// Upstream attempts (`raw_gen_ai_request` spans).
    pub attempts: usize,
}

/// Distinct filter values present in the buffer, for the page's filter menus.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Facets {
    /// Model groups.
    pub models: Vec<String>,
    /// Key aliases.
    pub key_aliases: Vec<String>,
    /// Teams (alias, else id).
    pub teams: Vec<String>,
}

/// The answer to a list query.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceList {
    /// Matching traces, newest first.
    pub traces: Vec<TraceSummary>,
    /// Pass as `since` to get only what changes after this answer.
    pub cursor: u64,
    /// Traces the buffer keeps at most.
    pub capacity: usize,
    /// Traces held now (complete or not).
    pub stored: usize,
    /// Traces pushed out to make room since the start.
    pub evicted: u64,
    /// Filter values present in the buffer.
    pub facets: Facets,
}

/// One span of a trace, as the detail view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpanView {
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's id; `None` for the root (or a remote parent, see `remote_parent_id`).
    pub parent_span_id: Option<String>,
    /// The parent in another process (the incoming `traceparent`), if any.
    pub remote_parent_id: Option<String>,
    /// Span name.
    pub name: String,
    /// `server`, `client`, `internal`, `producer` or `consumer`.
    pub kind: &'static str,
    /// Start, Unix milliseconds.
    pub start_ms: f64,
    /// End, Unix milliseconds.
    pub end_ms: f64,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The error description, when the status is `error`.
    pub status_message: Option<String>,
    /// Every attribute, in recording order, values typed as JSON.
    pub attributes: Vec<AttributeView>,
    /// Span events (`exception`, content events).
    pub events: Vec<EventView>,
    /// Attributes the SDK dropped over its limits.
    pub dropped_attributes: u32,
}

/// One attribute.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttributeView {
    /// The key.
    pub key: String,
    /// The value: string, number, boolean or array.
    pub value: Json,
}

/// One span event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// Event name.
    pub name: String,
    /// When, Unix milliseconds.
    pub time_ms: f64,
    /// Its attributes.
    pub attributes: Vec<AttributeView>,
}

/// A whole trace for the detail view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceDetail {
    /// The list line of this trace (absent while its root has not ended).
    pub summary: Option<TraceSummary>,
    /// Spans, by start time.
    pub spans: Vec<SpanView>,
    /// Spans beyond [`MAX_SPANS_PER_TRACE`], counted and not kept.
    pub dropped_spans: u32,
}

/// What the buffer saw of one deployment's recent upstream attempts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeploymentHealth {
    /// Attempts seen.
    pub calls: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// Mean attempt latency, milliseconds.
    pub avg_latency_ms: Option<f64>,
    /// Median attempt latency, milliseconds.
    pub p50_latency_ms: Option<f64>,
    /// 95th-percentile attempt latency, milliseconds.
    pub p95_latency_ms: Option<f64>,
    /// When the last attempt started, Unix milliseconds.
    pub last_call_ms: Option<f64>,
    /// Whether the last attempt failed.
    pub last_failed: bool,
    /// The last failure's `error.type` and message.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    spans: Vec<SpanData>,
    dropped_spans: u32,
}

#[derive(Debug, Default)]
struct Ring {
    traces: HashMap<TraceId, Stored>,
    /// Last-change cursor → trace, oldest first: the eviction order.
    order: BTreeMap<u64, TraceId>,
    cursor: u64,
    evicted: u64,
}

/// The last N traces. Shared between the span processor and the page's handlers.
#[derive(Debug)]
pub struct TraceBuffer {
    capacity: usize,
    ring: Mutex<Ring>,
    sampler: Sampler,
}

/// Decides which traces the view takes, from their ids and the rate of root spans ending.
#[derive(Debug)]
struct Sampler {
    per_second: u64,
    /// Start of the current window, ms since the Unix epoch (span end times).
    window_start: AtomicU64,
    /// Root spans ended in the current window.
    roots: AtomicU64,
    /// Traces whose id hashes below this (of [`SAMPLE_SCALE`]) are kept.
    threshold: AtomicU64,
}

impl Sampler {
    fn new(per_second: u64) -> Self {
        Sampler {
            per_second,
            window_start: AtomicU64::new(0),
            roots: AtomicU64::new(0),
            threshold: AtomicU64::new(SAMPLE_SCALE),
        }
    }

    fn keeps(&self, span: &SpanData) -> bool {
        if is_root(span) {
            self.count_root(unix_ms(span.end_time) as u64);
        }
        trace_hash(span.span_context.trace_id()) % SAMPLE_SCALE
            < self.threshold.load(Ordering::Relaxed)
    }

    /// Counts one trace; at the end of a window, sets the threshold for the next one so that
    /// about `per_second` traces a second are kept.
    fn count_root(&self, now_ms: u64) {
        let roots = self.roots.fetch_add(1, Ordering::Relaxed) + 1;
        let start = self.window_start.load(Ordering::Relaxed);
        if now_ms < start {
            // The wall clock went back: the window restarts from here rather than staying open
            // (and the threshold stuck) until the clock catches up.
            let _ = self.window_start.compare_exchange(
                start,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        let elapsed = now_ms - start;
        if elapsed < SAMPLE_WINDOW_MS {
            return;
        }
        // One thread closes the window; the others go on counting into the next one.
        if self
            .window_start
            .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.roots.fetch_sub(roots, Ordering::Relaxed);
        // A window much longer than one (an idle spell) says nothing about the coming rate.
        let rate = if elapsed > 2 * SAMPLE_WINDOW_MS {
            0
        } else {
            roots * 1000 / elapsed
        };
        let threshold = if rate <= self.per_second {
            SAMPLE_SCALE
        } else {
            (SAMPLE_SCALE * self.per_second / rate).max(1)
        };
        self.threshold.store(threshold, Ordering::Relaxed);
    }
}

/// A trace id mixed down to 64 bits: ids sent in by callers need not be random in any part.
fn trace_hash(id: TraceId) -> u64 {
    let v = u128::from_be_bytes(id.to_bytes());
    // The halves are folded with one rotated, so that equal halves do not cancel out; then
    // splitmix64's finaliser spreads every input bit over the result.
    let mut x = (v as u64) ^ ((v >> 64) as u64).rotate_left(32);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl TraceBuffer {
    /// A buffer keeping at most `capacity` traces.
    pub fn new(capacity: usize) -> Arc<TraceBuffer> {
        Self::with_rate(capacity, UI_TRACES_PER_SECOND)
    }

    /// A buffer keeping at most `capacity` traces, taking a sample above `per_second` traces a
    /// second.
    pub fn with_rate(capacity: usize, per_second: u64) -> Arc<TraceBuffer> {
        Arc::new(TraceBuffer {
            capacity,
            ring: Mutex::new(Ring::default()),
            sampler: Sampler::new(per_second),
        })
    }

    /// The span processor that feeds this buffer.
    pub fn processor(self: &Arc<Self>) -> TraceBufferProcessor {
        TraceBufferProcessor(Arc::clone(self))
    }

    /// Traces kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic elsewhere while holding the lock leaves a consistent ring (every update is
        // a few pushes), so carry on with it rather than lose the view.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the view takes `span` (see the module's note on sampling).
    pub fn wants(&self, span: &SpanData) -> bool {
        self.capacity > 0 && self.sampler.keeps(span)
    }

    /// Adds one ended span.
    pub fn record(&self, mut span: SpanData) {
        if self.capacity == 0 {
            return;
        }
        truncate_span(&mut span);
        let id = span.span_context.trace_id();
        let mut guard = self.lock();
        let ring = &mut *guard;
        ring.cursor += 1;
        let seq = ring.cursor;
        match ring.traces.get_mut(&id) {
            Some(t) => {
                ring.order.remove(&t.seq);
                t.seq = seq;
                if t.spans.len() < MAX_SPANS_PER_TRACE {
                    t.spans.push(span);
                } else {
                    t.dropped_spans = t.dropped_spans.saturating_add(1);
                }
            }
            None => {
                ring.traces.insert(
                    id,
                    Stored {
                        seq,
                        spans: vec![span],
                        dropped_spans: 0,
                    },
                );
            }
        }
        ring.order.insert(seq, id);
        while ring.traces.len() > self.capacity {
            let Some((_, oldest)) = ring.order.pop_first() else {
                break;
            };
            ring.traces.remove(&oldest);
            ring.evicted += 1;
        }
    }

    /// Complete traces matching `filter`, newest first.
    pub fn list(&self, filter: &TraceFilter) -> TraceList {
        let ring = self.lock();
        let mut facets = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        let mut traces: Vec<TraceSummary> = Vec::new();
        for (id, t) in &ring.traces {
            let Some(s) = summarize(*id, t) else { continue };
            facets.0.extend(s.model_group.clone());
            facets.1.extend(s.key_alias.clone());
            facets.2.extend(s.team.clone());
            if filter.since.is_some_and(|since| s.seq <= since) || !matches(&s, filter) {
                continue;
            }
            traces.push(s);
        }
        traces.sort_by(|a, b| {
            b.start_ms
                .total_cmp(&a.start_ms)
                .then_with(|| b.seq.cmp(&a.seq))
        });
        if let Some(limit) = filter.limit {
            traces.truncate(limit);
        }
        TraceList {
            traces,
            cursor: ring.cursor,
            capacity: self.capacity,
            stored: ring.traces.len(),
            evicted: ring.evicted,
            facets: Facets {
                models: facets.0.into_iter().collect(),
                key_aliases: facets.1.into_iter().collect(),
                teams: facets.2.into_iter().collect(),
            },
        }
    }

    /// One trace by its 32-hex-digit id (any case), if held.
    pub fn get(&self, trace_id: &str) -> Option<TraceDetail> {
        if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = TraceId::from_hex(trace_id).ok()?;
        let ring = self.lock();
        let t = ring.traces.get(&id)?;
        let mut spans: Vec<&SpanData> = t.spans.iter().collect();
        spans.sort_by_key(|s| s.start_time);
        Some(TraceDetail {
            summary: summarize(id, t),
            spans: spans.into_iter().map(span_view).collect(),
            dropped_spans: t.dropped_spans,
        })
    }

    /// Per deployment id (`litellm.model_id`): what its upstream attempts in the buffer show.
    pub fn deployment_health(&self) -> HashMap<String, DeploymentHealth> {
        let mut seen: HashMap<String, (Vec<f64>, DeploymentHealth, SystemTime)> = HashMap::new();
        let ring = self.lock();
        for span in ring.traces.values().flat_map(|t| &t.spans) {
            if span.name != k::SPAN_RAW_REQUEST {
                continue;
            }
            let Some(id) = str_attr(&span.attributes, k::LITELLM_MODEL_ID) else {
                continue;
            };
            let (latencies, h, last) = seen
                .entry(id.to_owned())
                .or_insert_with(|| (Vec::new(), DeploymentHealth::default(), UNIX_EPOCH));
            let failed = matches!(span.status, Status::Error { .. });
            h.calls += 1;
            h.errors += u64::from(failed);
            latencies.push(millis_between(span.start_time, span.end_time));
            if span.start_time >= *last {
                *last = span.start_time;
                h.last_call_ms = Some(unix_ms(span.start_time));
                h.last_failed = failed;
                h.last_error = failed.then(|| error_text(span)).flatten();
            }
        }
        drop(ring);
        seen.into_iter()
            .map(|(id, (mut latencies, mut h, _))| {
                latencies.sort_by(f64::total_cmp);
                if !latencies.is_empty() {
                    let sum: f64 = latencies.iter().sum();
                    h.avg_latency_ms = Some(sum / latencies.len() as f64);
                    h.p50_latency_ms = Some(percentile(&latencies, 0.50));
                    h.p95_latency_ms = Some(percentile(&latencies, 0.95));
                }
                (id, h)
            })
            .collect()
    }
}

/// Feeds ended spans into a [`TraceBuffer`].
#[derive(Debug, Clone)]
pub struct TraceBufferProcessor(Arc<TraceBuffer>);

impl SpanProcessor for TraceBufferProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.record(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The page keeps showing what it has after the pipeline stops.
        Ok(())
    }

    fn set_resource(&mut self, _resource: &Resource) {}
}

impl SelectiveProcessor for TraceBufferProcessor {
    fn wants(&self, span: &SpanData) -> bool {
        self.0.wants(span)
    }
}

/// The value at `p` (0..=1) of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn millis_between(start: SystemTime, end: SystemTime) -> f64 {
    end.duration_since(start)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn cut(s: &str) -> Option<String> {
    if s.len() <= MAX_VALUE_BYTES {
        return None;
    }
    let mut end = MAX_VALUE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!(
        "{}{TRUNCATION_MARK} {} more bytes]",
        &s[..end],
        s.len() - end
    ))
}

fn truncate_values(attrs: &mut [KeyValue]) {
    for kv in attrs {
        let replaced = match &kv.value {
            Value::String(s) => cut(s.as_str()).map(|c| Value::String(c.into())),
            Value::Array(Array::String(items))
                if items.iter().any(|s| s.as_str().len() > MAX_VALUE_BYTES) =>
            {
                Some(Value::Array(Array::String(
                    items
                        .iter()
                        .map(|s| cut(s.as_str()).map_or_else(|| s.clone(), Into::into))
                        .collect(),
                )))
            }
            _ => None,
        };
        if let Some(v) = replaced {
            kv.value = v;
        }
    }
}

fn truncate_span(span: &mut SpanData) {
    truncate_values(&mut span.attributes);
    for e in span.events.events.iter_mut() {
        truncate_values(&mut e.attributes);
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find(attrs, key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn is_root(span: &SpanData) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote
}

/// Spans in the order attributes are looked up: the root (which carries the request by
/// default), then `litellm_request` (nested mode), then the rest by start time.
fn lookup_order<'a>(root: &'a SpanData, spans: &'a [SpanData]) -> Vec<&'a SpanData> {
    let mut rest: Vec<&SpanData> = spans.iter().filter(|s| !std::ptr::eq(*s, root)).collect();
    rest.sort_by_key(|s| (s.name != k::SPAN_LLM_REQUEST, s.start_time));
    std::iter::once(root).chain(rest).collect()
}

fn first_str(order: &[&SpanData], key: &str) -> Option<String> {
    order
        .iter()
        .find_map(|s| str_attr(&s.attributes, key))
        .map(str::to_owned)
}

fn first_i64(order: &[&SpanData], key: &str) -> Option<i64> {
    order.iter().find_map(|s| match find(&s.attributes, key)? {
        Value::I64(n) => Some(*n),
        Value::F64(f) if f.is_finite() => Some(*f as i64),
        Value::String(s) => s.as_str().parse().ok(),
        _ => None,
    })
}

fn error_text(span: &SpanData) -> Option<String> {
    let class = str_attr(&span.attributes, k::ERROR_TYPE);
    let message = str_attr(&span.attributes, k::ERROR_MESSAGE).or(match &span.status {
        Status::Error { description } => Some(description.as_ref()),
        _ => None,
    });
    match (class, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c.to_owned()),
        (None, Some(m)) => Some(m.to_owned()),
        (None, None) => None,
    }
}

fn summarize(id: TraceId, t: &Stored) -> Option<TraceSummary> {
    let root = t
        .spans
        .iter()
        .filter(|s| is_root(s))
        .min_by_key(|s| s.start_time)?;
    let order = lookup_order(root, &t.spans);
    let http_status = first_i64(&order, k::HTTP_RESPONSE_STATUS_CODE);
    let failed =
        matches!(root.status, Status::Error { .. }) || http_status.is_some_and(|s| s >= 400);
    let status = if failed {
        TraceStatus::Error
    } else {
        TraceStatus::Ok
    };
    let team_id = first_str(&order, k::METADATA_USER_API_KEY_TEAM_ID);
    let attempts: Vec<&SpanData> = t
        .spans
        .iter()
        .filter(|s| s.name == k::SPAN_RAW_REQUEST)
        .collect();
    let last_attempt = attempts.iter().max_by_key(|s| s.start_time);
    let streaming = order.iter().any(|s| {
        matches!(
            find(&s.attributes, k::LLM_IS_STREAMING),
            Some(Value::Bool(true))
        ) || matches!(
            find(&s.attributes, k::GEN_AI_REQUEST_STREAM),
            Some(Value::Bool(true))
        )
    });
    Some(TraceSummary {
        trace_id: id.to_string(),
        seq: t.seq,
        name: root.name.to_string(),
        start_ms: unix_ms(root.start_time),
        duration_ms: millis_between(root.start_time, root.end_time),
        status,
        http_status,
        operation: first_str(&order, k::GEN_AI_OPERATION_NAME),
        model_group: first_str(&order, k::LITELLM_MODEL_GROUP),
        model: first_str(&order, k::GEN_AI_REQUEST_MODEL),
        provider: first_str(&order, k::GEN_AI_PROVIDER_NAME)
            .or_else(|| first_str(&order, k::GEN_AI_SYSTEM)),
        deployment_id: last_attempt
            .and_then(|s| str_attr(&s.attributes, k::LITELLM_MODEL_ID))
            .map(str::to_owned)
            .or_else(|| first_str(&order, k::LITELLM_MODEL_ID)),
        input_tokens: first_i64(&order, k::GEN_AI_USAGE_INPUT_TOKENS)
            .or_else(|| first_i64(&order, k::GEN_AI_USAGE_PROMPT_TOKENS)),
        output_tokens: first_i64(&order, k::GEN_AI_USAGE_OUTPUT_TOKENS)
            .or_else(|| first_i64(&order, k::GEN_AI_USAGE_COMPLETION_TOKENS)),
        total_tokens: first_i64(&order, k::GEN_AI_USAGE_TOTAL_TOKENS),
        key_alias: first_str(&order, k::METADATA_USER_API_KEY_ALIAS),
        team: first_str(&order, k::METADATA_USER_API_KEY_TEAM_ALIAS).or_else(|| team_id.clone()),
        team_id,
        user_id: first_str(&order, k::METADATA_USER_API_KEY_USER_ID),
        streaming,
        error_type: failed.then(|| first_str(&order, k::ERROR_TYPE)).flatten(),
        error_message: failed.then(|| error_text(root)).flatten().or_else(|| {
            failed
                .then(|| order.iter().find_map(|s| error_text(s)))
                .flatten()
        }),
        span_count: t.spans.len(),
        attempts: attempts.len(),
    })
}

fn matches(s: &TraceSummary, f: &TraceFilter) -> bool {
    let wanted = |want: &Option<String>, have: &[Option<&String>]| match want
        .as_deref()
        .filter(|w| !w.is_empty())
    {
        None => true,
        Some(w) => have.iter().flatten().any(|h| h.as_str() == w),
    };
    wanted(&f.model, &[s.model_group.as_ref(), s.model.as_ref()])
        && f.status.is_none_or(|st| st == s.status)
        && wanted(&f.key_alias, &[s.key_alias.as_ref()])
        && wanted(&f.team, &[s.team.as_ref(), s.team_id.as_ref()])
}

/// An attribute value as JSON, keeping its type.
pub fn json_value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::I64(n) => json!(n),
        Value::F64(f) => json!(f),
        Value::String(s) => json!(s.as_str()),
        Value::Array(Array::Bool(items)) => json!(items),
        Value::Array(Array::I64(items)) => json!(items),
        Value::Array(Array::F64(items)) => json!(items),
        Value::Array(Array::String(items)) => {
            Json::Array(items.iter().map(|s| json!(s.as_str())).collect())
        }
        // Both enums are non-exhaustive: a future variant shows as its text.
        other => json!(other.to_string()),
    }
}

fn attributes_view(attrs: &[KeyValue]) -> Vec<AttributeView> {
    attrs
        .iter()
        .map(|kv| AttributeView {
            key: kv.key.to_string(),
            value: json_value(&kv.value),
        })
        .collect()
}

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Internal => "internal",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn span_view(s: &SpanData) -> SpanView {
    let parent = (s.parent_span_id != SpanId::INVALID).then(|| s.parent_span_id.to_string());
    let (status, status_message) = match &s.status {
        Status::Unset => ("unset", None),
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
    };
    SpanView {
        span_id: s.span_context.span_id().to_string(),
        parent_span_id: parent.clone().filter(|_| !s.parent_span_is_remote),
        remote_parent_id: parent.filter(|_| s.parent_span_is_remote),
        name: s.name.to_string(),
        kind: kind_name(&s.span_kind),
        start_ms: unix_ms(s.start_time),
        end_ms: unix_ms(s.end_time),
        status,
        status_message,
        attributes: attributes_view(&s.attributes),
        events: s
            .events
            .events
            .iter()
            .map(|e| EventView {
                name: e.name.to_string(),
                time_ms: unix_ms(e.timestamp),
                attributes: attributes_view(&e.attributes),
            })
            .collect(),
        dropped_attributes: s.dropped_attributes_count,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry::trace::{
        Span as _, SpanContext, TraceFlags, TraceState, Tracer as _, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A real SDK pipeline whose only destination is the buffer, as the proxy builds it.
    fn pipeline(capacity: usize) -> (Arc<TraceBuffer>, SdkTracerProvider) {
        let buffer = TraceBuffer::new(capacity);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(buffer.processor())
            .build();
        (buffer, provider)
    }

    /// One proxy-shaped trace: a SERVER root with `attrs`, a CLIENT attempt under it.
    fn request(provider: &SdkTracerProvider, attrs: Vec<KeyValue>, fail: bool) -> String {
        let tracer = provider.tracer("test");
        let root = tracer
            .span_builder(k::SPAN_PROXY_REQUEST)
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start(&tracer);
        let cx = opentelemetry::Context::new().with_span(root);
        let mut attempt = tracer
            .span_builder(k::SPAN_RAW_REQUEST)
            .with_kind(SpanKind::Client)
            .with_attributes(vec![KeyValue::new(k::LITELLM_MODEL_ID, "dep-1")])
            .start_with_context(&tracer, &cx);
        if fail {
            attempt.set_status(Status::error("upstream said no"));
            attempt.set_attribute(KeyValue::new(k::ERROR_TYPE, "upstream_error"));
            cx.span().set_status(Status::error("upstream said no"));
            cx.span()
                .set_attribute(KeyValue::new(k::ERROR_TYPE, "upstream_error"));
            cx.span()
                .set_attribute(KeyValue::new(k::HTTP_RESPONSE_STATUS_CODE, 500));
        } else {
            cx.span()
                .set_attribute(KeyValue::new(k::HTTP_RESPONSE_STATUS_CODE, 200));
        }
        attempt.end();
        let id = cx.span().span_context().trace_id().to_string();
        cx.span().end();
        id
    }

    fn identity(model: &str, alias: &str, team: &str) -> Vec<KeyValue> {
        vec![
            KeyValue::new(k::LITELLM_MODEL_GROUP, model.to_owned()),
            KeyValue::new(k::GEN_AI_PROVIDER_NAME, "openai"),
            KeyValue::new(k::GEN_AI_USAGE_INPUT_TOKENS, 12),
            KeyValue::new(k::GEN_AI_USAGE_OUTPUT_TOKENS, 5),
            KeyValue::new(k::GEN_AI_USAGE_TOTAL_TOKENS, 17),
            KeyValue::new(k::METADATA_USER_API_KEY_ALIAS, alias.to_owned()),
            KeyValue::new(k::METADATA_USER_API_KEY_TEAM_ALIAS, team.to_owned()),
            KeyValue::new(k::METADATA_USER_API_KEY_TEAM_ID, format!("{team}-id")),
        ]
    }

    #[test]
    fn groups_spans_by_trace_and_summarizes_the_root() {
        let (buffer, provider) = pipeline(10);
        let id = request(&provider, identity("gpt", "ci-key", "ml"), false);
        let list = buffer.list(&TraceFilter::default());
        assert_eq!(list.traces.len(), 1);
        let s = &list.traces[0];
        assert_eq!(s.trace_id, id);
        assert_eq!(s.name, k::SPAN_PROXY_REQUEST);
        assert_eq!(s.span_count, 2);
        assert_eq!(s.attempts, 1);
        assert_eq!(s.status, TraceStatus::Ok);
        assert_eq!(s.http_status, Some(200));
        assert_eq!(s.model_group.as_deref(), Some("gpt"));
        assert_eq!(s.provider.as_deref(), Some("openai"));
        assert_eq!(s.deployment_id.as_deref(), Some("dep-1"));
        assert_eq!(
            (s.input_tokens, s.output_tokens, s.total_tokens),
            (Some(12), Some(5), Some(17))
        );
        assert_eq!(s.key_alias.as_deref(), Some("ci-key"));
        assert_eq!(s.team.as_deref(), Some("ml"));
        assert_eq!(s.team_id.as_deref(), Some("ml-id"));
        assert_eq!(list.cursor, 2, "one step per span");
        assert_eq!(list.facets.models, ["gpt"]);

        let detail = buffer
            .get(&id.to_uppercase())
            .expect("ids are case-insensitive");
        assert_eq!(detail.spans.len(), 2);
        assert_eq!(detail.spans[0].name, k::SPAN_PROXY_REQUEST);
        assert_eq!(detail.spans[0].kind, "server");
        assert_eq!(detail.spans[0].parent_span_id, None);
        assert_eq!(
            detail.spans[1].parent_span_id.as_deref(),
            Some(detail.spans[0].span_id.as_str())
        );
        assert_eq!(detail.spans[1].kind, "client");
        let tokens = detail.spans[0]
            .attributes
            .iter()
            .find(|a| a.key == k::GEN_AI_USAGE_TOTAL_TOKENS)
            .unwrap();
        assert_eq!(tokens.value, json!(17), "numbers stay numbers");
        assert!(buffer.get("not-a-trace-id").is_none());
        assert!(buffer.get(&"0".repeat(32)).is_none());
    }

    #[test]
    fn a_trace_is_listed_only_once_its_root_has_ended() {
        let (buffer, provider) = pipeline(10);
        let tracer = provider.tracer("test");
        let root = tracer.start(k::SPAN_PROXY_REQUEST);
        let cx = opentelemetry::Context::new().with_span(root);
        tracer.start_with_context(k::SPAN_RAW_REQUEST, &cx).end();
        assert!(buffer.list(&TraceFilter::default()).traces.is_empty());
        let id = cx.span().span_context().trace_id().to_string();
        let pending = buffer.get(&id).unwrap();
        assert!(pending.summary.is_none());
        assert_eq!(pending.spans.len(), 1);
        cx.span().end();
        assert_eq!(buffer.list(&TraceFilter::default()).traces.len(), 1);
    }

    #[test]
    fn a_root_with_a_remote_parent_is_still_the_root() {
        let (buffer, provider) = pipeline(10);
        let tracer = provider.tracer("test");
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let parent = opentelemetry::Context::new().with_remote_span_context(remote);
        tracer
            .span_builder(k::SPAN_PROXY_REQUEST)
            .with_kind(SpanKind::Server)
            .start_with_context(&tracer, &parent)
            .end();
        let list = buffer.list(&TraceFilter::default());
        assert_eq!(list.traces[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let d = buffer.get("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(d.spans[0].parent_span_id, None);
        assert_eq!(
            d.spans[0].remote_parent_id.as_deref(),
            Some("00f067aa0ba902b7")
        );
    }

    #[test]
    fn keeps_only_the_last_n_traces() {
        let (buffer, provider) = pipeline(3);
        let ids: Vec<String> = (0..5)
            .map(|i| request(&provider, identity(&format!("m{i}"), "k", "t"), false))
            .collect();
        let list = buffer.list(&TraceFilter::default());
        assert_eq!(list.stored, 3);
        assert_eq!(list.capacity, 3);
        assert_eq!(list.evicted, 2);
        let kept: Vec<&str> = list.traces.iter().map(|t| t.trace_id.as_str()).collect();
        assert_eq!(
            kept,
            [&ids[4], &ids[3], &ids[2]],
            "newest first, oldest gone"
        );
        assert!(buffer.get(&ids[0]).is_none());

        let (none, provider) = pipeline(0);
        request(&provider, identity("m", "k", "t"), false);
        assert_eq!(none.list(&TraceFilter::default()).stored, 0);
    }

    #[test]
    fn one_trace_keeps_a_bounded_number_of_spans() {
        let (buffer, provider) = pipeline(2);
        let tracer = provider.tracer("test");
        let root = tracer.start(k::SPAN_PROXY_REQUEST);
        let cx = opentelemetry::Context::new().with_span(root);
        for _ in 0..MAX_SPANS_PER_TRACE + 5 {
            tracer.start_with_context(k::SPAN_RAW_REQUEST, &cx).end();
        }
        let id = cx.span().span_context().trace_id().to_string();
        cx.span().end();
        let d = buffer.get(&id).unwrap();
        assert_eq!(d.spans.len(), MAX_SPANS_PER_TRACE);
        assert_eq!(d.dropped_spans, 6);
    }

    #[test]
    fn filters_by_model_status_key_and_team_and_since() {
        let (buffer, provider) = pipeline(10);
        request(&provider, identity("gpt", "alice", "ml"), false);
        let cursor = buffer.list(&TraceFilter::default()).cursor;
        let failed = request(&provider, identity("claude", "bob", "web"), true);
        request(&provider, identity("gpt", "bob", "web"), false);
        let ids = |f: TraceFilter| -> usize { buffer.list(&f).traces.len() };
        assert_eq!(ids(TraceFilter::default()), 3);
        assert_eq!(
            ids(TraceFilter {
                model: Some("gpt".into()),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ids(TraceFilter {
                model: Some(String::new()),
                ..Default::default()
            }),
            3
        );
        assert_eq!(
            ids(TraceFilter {
                key_alias: Some("bob".into()),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ids(TraceFilter {
                team: Some("web-id".into()),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ids(TraceFilter {
                team: Some("web".into()),
                model: Some("gpt".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            ids(TraceFilter {
                since: Some(cursor),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ids(TraceFilter {
                limit: Some(1),
                ..Default::default()
            }),
            1
        );
        let errors = buffer.list(&TraceFilter {
            status: Some(TraceStatus::Error),
            ..Default::default()
        });
        assert_eq!(errors.traces.len(), 1);
        let e = &errors.traces[0];
        assert_eq!(e.trace_id, failed);
        assert_eq!(e.http_status, Some(500));
        assert_eq!(e.error_type.as_deref(), Some("upstream_error"));
        assert_eq!(
            e.error_message.as_deref(),
            Some("upstream_error: upstream said no")
        );
        assert_eq!(
            errors.facets.models,
            ["claude", "gpt"],
            "facets ignore the filter"
        );
        assert_eq!(errors.facets.teams, ["ml", "web"]);
        assert_eq!(TraceStatus::parse("error"), Some(TraceStatus::Error));
        assert_eq!(TraceStatus::parse("failed"), None);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let (buffer, provider) = pipeline(1);
        let long = "é".repeat(MAX_VALUE_BYTES);
        let id = request(
            &provider,
            vec![
                KeyValue::new("gen_ai.prompt.0.content", long.clone()),
                KeyValue::new("short", "kept"),
            ],
            false,
        );
        let d = buffer.get(&id).unwrap();
        let attr = |key: &str| {
            d.spans[0]
                .attributes
                .iter()
                .find(|a| a.key == key)
                .unwrap()
                .value
                .as_str()
                .unwrap()
                .to_owned()
        };
        let cut = attr("gen_ai.prompt.0.content");
        assert!(cut.len() < MAX_VALUE_BYTES + 100);
        assert!(cut.contains(TRUNCATION_MARK));
        assert!(cut.ends_with(&format!(" {} more bytes]", MAX_VALUE_BYTES)));
        assert_eq!(attr("short"), "kept");
    }

    #[test]
    fn deployment_health_comes_from_the_attempts() {
        let (buffer, provider) = pipeline(10);
        request(&provider, identity("gpt", "a", "t"), false);
        request(&provider, identity("gpt", "a", "t"), true);
        let health = buffer.deployment_health();
        let h = &health["dep-1"];
        assert_eq!((h.calls, h.errors), (2, 1));
        assert!(
            h.avg_latency_ms.is_some() && h.p50_latency_ms.is_some() && h.p95_latency_ms.is_some()
        );
        assert!(h.last_call_ms.is_some());
        assert!(h.last_failed);
        assert_eq!(
            h.last_error.as_deref(),
            Some("upstream_error: upstream said no")
        );
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), 4.0);
    }

    #[test]
    fn values_keep_their_json_types() {
        assert_eq!(json_value(&Value::Bool(true)), json!(true));
        assert_eq!(json_value(&Value::F64(0.5)), json!(0.5));
        assert_eq!(json_value(&Value::F64(f64::NAN)), Json::Null);
        assert_eq!(
            json_value(&Value::Array(Array::String(vec!["a".into(), "b".into()]))),
            json!(["a", "b"])
        );
        assert_eq!(
            json_value(&Value::Array(Array::I64(vec![1, 2]))),
            json!([1, 2])
        );
    }

    /// An ended span of trace `trace`, a root when `parent` is 0, ending at `end_ms`.
    fn ended(trace: u128, id: u64, parent: u64, end_ms: u64) -> SpanData {
        let end = UNIX_EPOCH + Duration::from_millis(end_ms);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: if parent == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            name: std::borrow::Cow::Borrowed(if parent == 0 {
                k::SPAN_PROXY_REQUEST
            } else {
                k::SPAN_RAW_REQUEST
            }),
            start_time: end - Duration::from_millis(1),
            end_time: end,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("test").build(),
        }
    }

    #[test]
    fn under_load_whole_traces_are_sampled_to_about_the_rate() {
        let buffer = TraceBuffer::with_rate(100_000, 10);
        let t0: u64 = 1_764_000_000_000;
        // (kept whole, split between the two spans) per second.
        let mut per_second = Vec::new();
        let mut trace: u128 = 0;
        for (second, traces) in [(0u64, 5u64), (1, 1000), (2, 1000), (3, 1000)] {
            let (mut kept, mut split) = (0, 0);
            for i in 0..traces {
                trace += 1;
                // Sequential ids, as a caller's own traceparents might be.
                let id = trace << 64 | trace;
                let end = t0 + second * 1000 + i * 1000 / traces;
                let child = buffer.wants(&ended(id, 2, 1, end));
                let root = buffer.wants(&ended(id, 1, 0, end));
                match (child, root) {
                    (true, true) => kept += 1,
                    (false, false) => {}
                    _ => split += 1,
                }
            }
            per_second.push((kept, split));
        }
        assert_eq!(per_second[0], (5, 0), "below the rate every trace is kept");
        assert_eq!(
            per_second[1].0, 1000,
            "the first loaded second is still taken whole"
        );
        for (kept, split) in &per_second[2..] {
            assert!((3..=30).contains(kept), "about 10 a second: {per_second:?}");
            assert!(*split <= 1, "a trace is split only where a window closes");
        }
        // After an idle spell the first root ending resets the threshold: every trace is taken
        // again.
        let later = t0 + 60_000;
        buffer.wants(&ended(u128::MAX, 1, 0, later));
        for id in 1..=20 {
            assert!(buffer.wants(&ended(u128::MAX - id, 2, 1, later + 1)));
            assert!(buffer.wants(&ended(u128::MAX - id, 1, 0, later + 1)));
        }
        // A wall clock set back an hour restarts the window there: the rate is measured again
        // within a second instead of once the clock is back where it was.
        let back = later - 3_600_000;
        for i in 0..3000u64 {
            buffer.wants(&ended(u128::from(i) << 70, 1, 0, back + i / 3));
        }
        let kept = (0..3000u64)
            .filter(|i| buffer.wants(&ended(u128::from(*i) << 80 | 7, 1, 0, back + 1001 + i / 3)))
            .count();
        assert!(
            (2..=60).contains(&kept),
            "sampled again after the clock went back: {kept}"
        );
        assert!(
            !TraceBuffer::new(0).wants(&ended(1, 1, 0, t0)),
            "capacity 0 takes nothing"
        );
    }
}
