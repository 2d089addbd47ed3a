//! Recording one call onto its spans: which span carries the request, one CLIENT span per
//! attempt, and the request, response, content and failure attributes of TELEMETRY.md §4.

use crate::deployment::Deployment;
use crate::error::Error;
use crate::provider::{Chunk, Operation, Request, Response};
use crate::types::{ChatMessage, MessageContent, Role, ToolCall, Usage};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Array, Context, Key, KeyValue, StringValue, Value};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;
use traceway_otel::config::CaptureContent;
use traceway_otel::exporter::Telemetry;
use traceway_otel::keys as k;

/// The text every redacted content value is replaced with.
pub const REDACTED: &str = "redacted-by-traceway";

/// A deployment's span attribute values, built once per deployment: the request path then
/// clones reference-counted strings instead of copying them for every call.
pub(crate) struct SpanValues {
    id: StringValue,
    model_group: StringValue,
    provider_model: StringValue,
    model: StringValue,
}

fn shared(s: &str) -> StringValue {
    StringValue::from(Arc::<str>::from(s))
}

impl SpanValues {
    /// The values of a deployment with these names.
    pub(crate) fn new(id: &str, model_group: &str, provider_model: &str, model: &str) -> Self {
        SpanValues {
            id: shared(id),
            model_group: shared(model_group),
            provider_model: shared(provider_model),
            model: shared(model),
        }
    }
}

/// `http.request.method`, `url.full` (origin and path: never credentials or the query, which
/// may hold a key), `server.address` and `server.port` of an upstream URL.
pub(crate) fn url_attributes(url: &url::Url) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new(k::HTTP_REQUEST_METHOD, "POST"),
        KeyValue::new(
            k::URL_FULL,
            shared(&traceway_otel::error_text::shown_url(url)),
        ),
    ];
    if let Some(host) = url.host_str() {
        attrs.push(KeyValue::new(k::SERVER_ADDRESS, shared(host)));
    }
    if let Some(port) = url.port_or_known_default() {
        attrs.push(KeyValue::new(k::SERVER_PORT, i64::from(port)));
    }
    attrs
}

/// Messages, choices and tools whose indexed keys are built once; later ones are formatted.
const CACHED_INDICES: usize = 32;

/// Room for the attributes a span carrying a call's request and response usually ends with
/// (a short chat: ~50), given when it starts: the SDK appends each one to the span's vector,
/// which would otherwise be copied at 4, 8, 16 and 32.
pub const CARRIER_ATTRIBUTES: usize = 64;

/// The same for an attempt's CLIENT span.
const ATTEMPT_ATTRIBUTES: usize = 24;

/// The keys `{prefix}.{i}.{field}` for the first [`CACHED_INDICES`] values of `i`.
struct KeyTable {
    prefix: &'static str,
    field: &'static str,
    keys: Vec<Key>,
}

impl KeyTable {
    fn new(prefix: &'static str, field: &'static str) -> Self {
        KeyTable {
            prefix,
            field,
            keys: (0..CACHED_INDICES)
                .map(|i| Key::from(Arc::<str>::from(format!("{prefix}.{i}.{field}"))))
                .collect(),
        }
    }

    fn key(&self, i: usize) -> Key {
        match self.keys.get(i) {
            Some(key) => key.clone(),
            None => Key::from(format!("{}.{i}.{}", self.prefix, self.field)),
        }
    }
}

macro_rules! key_table {
    ($name:ident, $prefix:expr, $field:literal) => {
        static $name: LazyLock<KeyTable> = LazyLock::new(|| KeyTable::new($prefix, $field));
    };
}
key_table!(PROMPT_ROLE, k::GEN_AI_PROMPT_PREFIX, "role");
key_table!(PROMPT_CONTENT, k::GEN_AI_PROMPT_PREFIX, "content");
key_table!(PROMPT_TOOL_CALL_ID, k::GEN_AI_PROMPT_PREFIX, "tool_call_id");
key_table!(FUNCTION_NAME, k::LLM_REQUEST_FUNCTIONS_PREFIX, "name");
key_table!(
    FUNCTION_DESCRIPTION,
    k::LLM_REQUEST_FUNCTIONS_PREFIX,
    "description"
);
key_table!(
    FUNCTION_PARAMETERS,
    k::LLM_REQUEST_FUNCTIONS_PREFIX,
    "parameters"
);
key_table!(COMPLETION_ROLE, k::GEN_AI_COMPLETION_PREFIX, "role");
key_table!(COMPLETION_CONTENT, k::GEN_AI_COMPLETION_PREFIX, "content");
key_table!(
    COMPLETION_FINISH_REASON,
    k::GEN_AI_COMPLETION_PREFIX,
    "finish_reason"
);

/// How a client records calls: the exporter pipeline and the span-shape settings.
#[derive(Clone)]
pub struct Tracing {
    /// The pipeline spans go to.
    pub telemetry: Telemetry,
    /// Record content (prompts and completions) at all.
    pub capture_content: bool,
}

/// Attributes reserved for everything but indexed content (request, response, usage, identity,
/// HTTP, errors), so that content is what gives way under the span's attribute count limit.
const RESERVED_ATTRIBUTES: usize = 128;

/// The content of one side of a call, before the span shape decides where it goes.
#[derive(Default)]
struct Content {
    /// OpenLLMetry's indexed keys (`gen_ai.prompt.{i}.*`, `llm.request.functions.{i}.*` …).
    indexed: Vec<KeyValue>,
    /// The OTel GenAI JSON keys (`gen_ai.input.messages` …).
    json: Vec<KeyValue>,
}

/// How content is laid on spans, from the telemetry settings.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Content as span attributes.
    spans: bool,
    /// Content as a `gen_ai.client.inference.operation.details` event.
    events: bool,
    /// Strict OTel GenAI naming (`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`).
    semconv_latest: bool,
    /// Longest attribute value, in characters.
    value_limit: Option<usize>,
    /// Indexed content attributes one span may take.
    content_budget: usize,
}

impl Shape {
    fn of(tracing: &Tracing) -> Shape {
        let cfg = tracing.telemetry.config();
        let (spans, events) = match cfg.capture {
            CaptureContent::SpanOnly => (true, false),
            CaptureContent::EventOnly => (false, true),
            CaptureContent::SpanAndEvent => (true, true),
            CaptureContent::NoContent => (true, false),
        };
        Shape {
            spans,
            events,
            semconv_latest: cfg.semconv_latest,
            value_limit: cfg.attribute_value_length_limit,
            content_budget: cfg
                .span_attribute_count_limit
                .saturating_sub(RESERVED_ATTRIBUTES),
        }
    }
}

/// Cuts a string value to `limit` characters, ending it with a marker saying how much was cut.
fn clip(kv: KeyValue, limit: Option<usize>) -> KeyValue {
    let Some(limit) = limit else { return kv };
    let Value::String(s) = &kv.value else {
        return kv;
    };
    let text = s.as_str();
    let total = text.chars().count();
    if total <= limit {
        return kv;
    }
    let marker = format!("…[truncated {} chars]", total - limit);
    let keep = limit.saturating_sub(marker.chars().count());
    let clipped: String = if keep == 0 {
        text.chars().take(limit).collect()
    } else {
        text.chars().take(keep).chain(marker.chars()).collect()
    };
    KeyValue::new(kv.key, clipped)
}

/// Whether each side of a call's content is replaced in telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Replace prompt text.
    pub input: bool,
    /// Replace completion text.
    pub output: bool,
}

/// Where the call's request/response attributes go.
pub(crate) struct CallTrace {
    /// Context whose span carries the request attributes.
    carrier: Context,
    /// Whether this call started (and so ends) the carrier span.
    owned: bool,
    tracing: Tracing,
    /// The caller's redaction decision (header, key or team), if it made one.
    caller_redaction: Option<Redaction>,
    /// The decision in force, settled when the request is recorded.
    redaction: Redaction,
    shape: Shape,
    /// Content for the `gen_ai.client.inference.operation.details` event, sent at the end.
    event: Vec<KeyValue>,
    /// The answering deployment's token prices, for `gen_ai.cost.total_cost`.
    price: Option<crate::deployment::Price>,
    /// Whether `finish` ran; a call dropped before it was left by its caller.
    ended: bool,
}

impl Drop for CallTrace {
    fn drop(&mut self) {
        // The caller stopped waiting before the answer (its future was dropped). A carrier of
        // the caller's own (the proxy's SERVER span) is the caller's to mark and end.
        if !self.ended && self.owned {
            mark_disconnected(&self.carrier, true);
            self.carrier.span().end();
        }
    }
}

fn string_array(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array::String(
        items.into_iter().map(StringValue::from).collect(),
    ))
}

impl CallTrace {
    /// Opens the call: a `litellm_request` span (as a child of `parent`, or a root) unless the
    /// caller asked for the request to be recorded on `parent`'s own span.
    pub(crate) fn start(
        tracing: &Tracing,
        parent: Option<&Context>,
        record_on_parent: bool,
        caller_redaction: Option<Redaction>,
        attributes: Vec<KeyValue>,
    ) -> CallTrace {
        let (carrier, owned) = match parent {
            Some(p) if record_on_parent && p.span().span_context().is_valid() => (p.clone(), false),
            _ => {
                let parent_cx = parent.cloned().unwrap_or_else(Context::current);
                let span = tracing
                    .telemetry
                    .tracer()
                    .span_builder(k::SPAN_LLM_REQUEST)
                    .with_kind(SpanKind::Internal)
                    .with_attributes(Vec::with_capacity(CARRIER_ATTRIBUTES))
                    .start_with_context(tracing.telemetry.tracer(), &parent_cx);
                (parent_cx.with_span(span), true)
            }
        };
        if !attributes.is_empty() {
            carrier.span().set_attributes(attributes);
        }
        CallTrace {
            carrier,
            owned,
            shape: Shape::of(tracing),
            tracing: tracing.clone(),
            caller_redaction,
            redaction: Redaction::default(),
            event: Vec::new(),
            price: None,
            ended: false,
        }
    }

    /// Settles which content is replaced: the request's own `mask_input` / `mask_output`
    /// metadata first, then the caller's decision (header, key, team), then the global
    /// setting (`turn_off_message_logging`, `NO_CONTENT`).
    fn settle_redaction(&mut self, request: &Request) {
        let md = request.extra().get("metadata").and_then(|m| m.as_object());
        let flag = |name: &str| md.and_then(|m| m.get(name)).and_then(|v| v.as_bool());
        let global_off = !self.tracing.capture_content
            || self.tracing.telemetry.config().capture == CaptureContent::NoContent;
        self.redaction = match (flag("mask_input"), flag("mask_output")) {
            (None, None) => match self.caller_redaction {
                Some(r) => r,
                None => Redaction {
                    input: global_off,
                    output: global_off,
                },
            },
            (input, output) => Redaction {
                input: input.unwrap_or(false),
                output: output.unwrap_or(false),
            },
        };
    }

    /// Lays one side's content on the carrier as the span shape says: JSON and (unless strict
    /// semconv) indexed keys as attributes, within the content budget; JSON into the event.
    fn lay_content(
        &mut self,
        content: Content,
        budget: usize,
        truncated_key: &'static str,
        a: &mut Vec<KeyValue>,
    ) {
        let limit = self.shape.value_limit;
        if self.shape.events {
            self.event
                .extend(content.json.iter().cloned().map(|kv| clip(kv, limit)));
        }
        if !self.shape.spans {
            return;
        }
        a.extend(content.json.into_iter().map(|kv| clip(kv, limit)));
        if self.shape.semconv_latest {
            return;
        }
        let total = content.indexed.len();
        // The most recent messages matter most: when over budget, the earliest give way.
        let skip = total.saturating_sub(budget);
        a.extend(
            content
                .indexed
                .into_iter()
                .skip(skip)
                .map(|kv| clip(kv, limit)),
        );
        if skip > 0 {
            a.push(KeyValue::new(truncated_key, skip as i64));
        }
    }

    fn set(&self, attrs: Vec<KeyValue>) {
        self.carrier.span().set_attributes(attrs);
    }

    /// Records what was asked and where it was routed.
    pub(crate) fn record_request(&mut self, request: &Request) {
        self.settle_redaction(request);
        let op = request.operation();
        let mut a = Vec::with_capacity(CARRIER_ATTRIBUTES / 2);
        a.extend([
            KeyValue::new(k::GEN_AI_OPERATION_NAME, op.semconv_name()),
            KeyValue::new(k::LLM_REQUEST_TYPE, op.request_type()),
            KeyValue::new(k::LITELLM_MODEL_GROUP, request.model().to_owned()),
            KeyValue::new(k::LLM_IS_STREAMING, request.is_stream()),
        ]);
        if request.is_stream() {
            a.push(KeyValue::new(k::GEN_AI_REQUEST_STREAM, true));
        }
        request_params(request, &mut a);
        if let Some(conv) = conversation_id(request) {
            a.push(KeyValue::new(k::GEN_AI_CONVERSATION_ID, conv));
        }
        let mut content = Content::default();
        input_content(request, self.redaction.input, &mut content);
        let budget = self.shape.content_budget * 3 / 4;
        self.lay_content(content, budget, k::TRACEWAY_PROMPT_TRUNCATED, &mut a);
        self.set(a);
    }

    /// Records the deployment that answered (or, on failure, the last one tried) and how many
    /// retries and fallbacks it took; once per call.
    pub(crate) fn record_route(&mut self, d: &Deployment, retries: u32, fallbacks: u32) {
        self.price = d.price;
        let mut a = Vec::with_capacity(7);
        if !self.shape.semconv_latest {
            a.push(KeyValue::new(k::GEN_AI_SYSTEM, d.semconv_provider()));
        }
        let v = &d.span_values;
        a.extend([
            KeyValue::new(k::GEN_AI_PROVIDER_NAME, d.semconv_provider()),
            KeyValue::new(k::GEN_AI_REQUEST_MODEL, v.model.clone()),
            KeyValue::new(k::LITELLM_PROVIDER_MODEL, v.provider_model.clone()),
            KeyValue::new(k::LITELLM_MODEL_ID, v.id.clone()),
            KeyValue::new(k::LITELLM_ATTEMPTED_RETRIES, i64::from(retries)),
            KeyValue::new(k::LITELLM_ATTEMPTED_FALLBACKS, i64::from(fallbacks)),
        ]);
        self.set(a);
    }

    /// Records the model asked for when no deployment could be tried at all.
    pub(crate) fn record_unrouted(&self, request: &Request) {
        self.set(vec![KeyValue::new(
            k::GEN_AI_REQUEST_MODEL,
            request.model().to_owned(),
        )]);
    }

    /// Opens the CLIENT span of attempt number `attempt` (1-based, across retries and
    /// fallbacks) on `deployment`, `fallback_depth` groups away from the one asked for.
    pub(crate) fn start_attempt(
        &self,
        deployment: &Deployment,
        op: Operation,
        attempt: u32,
        fallback_depth: u32,
        url_attributes: &[KeyValue],
    ) -> AttemptTrace {
        let tracer = self.tracing.telemetry.tracer();
        let v = &deployment.span_values;
        let mut attrs = Vec::with_capacity(ATTEMPT_ATTRIBUTES);
        attrs.extend([
            KeyValue::new(k::GEN_AI_OPERATION_NAME, op.semconv_name()),
            KeyValue::new(k::GEN_AI_PROVIDER_NAME, deployment.semconv_provider()),
            KeyValue::new(k::GEN_AI_REQUEST_MODEL, v.model.clone()),
            KeyValue::new(k::LITELLM_MODEL_GROUP, v.model_group.clone()),
            KeyValue::new(k::LITELLM_MODEL_ID, v.id.clone()),
            KeyValue::new(k::LITELLM_ATTEMPT, i64::from(attempt)),
            KeyValue::new(k::LITELLM_FALLBACK_DEPTH, i64::from(fallback_depth)),
        ]);
        if !self.shape.semconv_latest {
            attrs.push(KeyValue::new(
                k::GEN_AI_SYSTEM,
                deployment.semconv_provider(),
            ));
        }
        // Strict GenAI semconv names the model call `{operation} {model}`.
        let name = if self.shape.semconv_latest {
            std::borrow::Cow::Owned(format!("{} {}", op.semconv_name(), deployment.model))
        } else {
            std::borrow::Cow::Borrowed(k::SPAN_RAW_REQUEST)
        };
        attrs.extend_from_slice(url_attributes);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(tracer, &self.carrier);
        AttemptTrace {
            cx: self.carrier.with_span(span),
        }
    }

    /// The response attributes of a chat or text completion, whole or streamed: ids, finish
    /// reasons, usage and the output content.
    fn output_attributes(
        &mut self,
        id: &str,
        model: &str,
        usage: Option<&Usage>,
        outputs: &[OutputView<'_>],
        a: &mut Vec<KeyValue>,
    ) {
        response_ids(id, model, a);
        let reasons: Vec<String> = outputs
            .iter()
            .filter_map(|c| c.finish_reason.map(str::to_owned))
            .collect();
        a.push(KeyValue::new(
            k::GEN_AI_RESPONSE_FINISH_REASONS,
            string_array(reasons),
        ));
        if let Some(u) = usage {
            usage_attributes(u, a);
            self.cost_attribute(u.prompt_tokens, u.completion_tokens, a);
        }
        let mut content = Content::default();
        output_content(outputs, self.redaction.output, &mut content);
        let budget = self.shape.content_budget / 4;
        self.lay_content(content, budget, k::TRACEWAY_COMPLETION_TRUNCATED, a);
    }

    /// `gen_ai.cost.total_cost` of these token counts, when the answering deployment has prices.
    fn cost_attribute(&self, input_tokens: u64, output_tokens: u64, a: &mut Vec<KeyValue>) {
        if let Some(p) = self.price {
            a.push(KeyValue::new(
                k::GEN_AI_COST_TOTAL_COST,
                p.cost(input_tokens, output_tokens),
            ));
        }
    }

    /// Records a complete response.
    pub(crate) fn record_response(&mut self, response: &Response) {
        let mut a = Vec::with_capacity(CARRIER_ATTRIBUTES / 2);
        match response {
            Response::Chat(r) => {
                let outputs: Vec<OutputView<'_>> = r
                    .choices
                    .iter()
                    .map(|c| OutputView {
                        index: c.index,
                        text: c.message.content.as_ref().map(|m| match m {
                            MessageContent::Text(t) => Cow::Borrowed(t.as_str()),
                            parts => Cow::Owned(parts.text()),
                        }),
                        tool_calls: c.message.tool_calls.as_deref().unwrap_or_default(),
                        finish_reason: c.finish_reason.as_deref(),
                    })
                    .collect();
                self.output_attributes(&r.id, &r.model, r.usage.as_ref(), &outputs, &mut a);
            }
            Response::Completion(r) => {
                let outputs: Vec<OutputView<'_>> = r
                    .choices
                    .iter()
                    .map(|c| OutputView {
                        index: c.index,
                        text: Some(Cow::Borrowed(c.text.as_str())),
                        tool_calls: &[],
                        finish_reason: c.finish_reason.as_deref(),
                    })
                    .collect();
                self.output_attributes(&r.id, &r.model, r.usage.as_ref(), &outputs, &mut a);
            }
            Response::Embedding(r) => {
                if !r.model.is_empty() {
                    a.push(KeyValue::new(k::GEN_AI_RESPONSE_MODEL, r.model.clone()));
                }
                if let Some(u) = &r.usage {
                    a.push(KeyValue::new(
                        k::GEN_AI_USAGE_INPUT_TOKENS,
                        u.prompt_tokens as i64,
                    ));
                    a.push(KeyValue::new(
                        k::GEN_AI_USAGE_PROMPT_TOKENS,
                        u.prompt_tokens as i64,
                    ));
                    a.push(KeyValue::new(
                        k::GEN_AI_USAGE_TOTAL_TOKENS,
                        u.total_tokens as i64,
                    ));
                    self.cost_attribute(u.prompt_tokens, 0, &mut a);
                }
            }
        }
        self.set(a);
    }

    /// Records a failure; the carrier's status is set only when this call owns it (the proxy
    /// marks its own span).
    pub(crate) fn record_error(&self, err: &Error) {
        if self.owned {
            mark_failed(&self.carrier, err);
        }
    }

    /// Sends the content event (when events are on) and ends the carrier span if this call
    /// started it.
    pub(crate) fn finish(mut self) {
        self.ended = true;
        if !self.event.is_empty() {
            self.carrier
                .span()
                .add_event(k::EVENT_INFERENCE_DETAILS, self.event.clone());
        }
        if self.owned {
            self.carrier.span().end();
        }
    }
}

/// Marks `cx`'s span as left by its caller: a `client_disconnected` event and, when no answer
/// had started (`unanswered`), `error.type` `client_disconnected` too. The status stays unset:
/// the call did not fail, its caller stopped waiting.
pub fn mark_disconnected(cx: &Context, unanswered: bool) {
    let span = cx.span();
    span.add_event(k::CLIENT_DISCONNECTED, vec![]);
    if unanswered {
        span.set_attribute(KeyValue::new(k::ERROR_TYPE, k::CLIENT_DISCONNECTED));
    }
}

/// Marks `cx`'s span failed: status ERROR, an `exception` event, and the `error.*` attributes.
pub fn mark_failed(cx: &Context, err: &Error) {
    let span = cx.span();
    span.set_status(Status::error(err.message.clone()));
    span.add_event(
        k::EVENT_EXCEPTION,
        vec![
            KeyValue::new(k::EXCEPTION_TYPE, err.kind.error_class()),
            KeyValue::new(k::EXCEPTION_MESSAGE, err.message.clone()),
        ],
    );
    let mut a = vec![
        KeyValue::new(k::ERROR_TYPE, err.kind.error_class()),
        KeyValue::new(k::ERROR_MESSAGE, err.message.clone()),
        KeyValue::new(k::ERROR_CODE, err.code()),
    ];
    if let Some(p) = &err.provider {
        a.push(KeyValue::new(k::ERROR_LLM_PROVIDER, p.clone()));
    }
    span.set_attributes(a);
}

/// The CLIENT span of one upstream attempt.
pub(crate) struct AttemptTrace {
    cx: Context,
}

impl AttemptTrace {
    /// `traceparent` (and `tracestate`) naming this attempt's span, for the upstream request.
    pub(crate) fn propagation_headers(&self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        traceway_otel::propagation::inject(&self.cx)
    }

    /// Records the upstream's HTTP status.
    pub(crate) fn status_code(&self, status: u16) {
        self.cx.span().set_attribute(KeyValue::new(
            k::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
    }

    /// Records a response's id and model on the attempt too.
    pub(crate) fn response_model(&self, model: &str) {
        if !model.is_empty() {
            self.cx
                .span()
                .set_attribute(KeyValue::new(k::GEN_AI_RESPONSE_MODEL, model.to_owned()));
        }
    }

    /// Ends the attempt as failed.
    pub(crate) fn fail(self, err: &Error) {
        mark_failed(&self.cx, err);
        self.cx.span().end();
    }

    /// Ends the attempt as successful.
    pub(crate) fn succeed(self) {
        self.cx.span().end();
    }

    /// Ends the attempt noting the client went away before its end.
    pub(crate) fn abandon(self) {
        mark_disconnected(&self.cx, true);
        self.cx.span().end();
    }
}

fn response_ids(id: &str, model: &str, a: &mut Vec<KeyValue>) {
    if !id.is_empty() {
        a.push(KeyValue::new(k::GEN_AI_RESPONSE_ID, id.to_owned()));
    }
    if !model.is_empty() {
        a.push(KeyValue::new(k::GEN_AI_RESPONSE_MODEL, model.to_owned()));
    }
}

fn usage_attributes(u: &Usage, a: &mut Vec<KeyValue>) {
    a.push(KeyValue::new(
        k::GEN_AI_USAGE_INPUT_TOKENS,
        u.prompt_tokens as i64,
    ));
    a.push(KeyValue::new(
        k::GEN_AI_USAGE_OUTPUT_TOKENS,
        u.completion_tokens as i64,
    ));
    a.push(KeyValue::new(
        k::GEN_AI_USAGE_TOTAL_TOKENS,
        u.total_tokens as i64,
    ));
    a.push(KeyValue::new(
        k::GEN_AI_USAGE_PROMPT_TOKENS,
        u.prompt_tokens as i64,
    ));
    a.push(KeyValue::new(
        k::GEN_AI_USAGE_COMPLETION_TOKENS,
        u.completion_tokens as i64,
    ));
    if let Some(d) = &u.prompt_tokens_details {
        if let Some(c) = d.cached_tokens {
            a.push(KeyValue::new(
                k::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                c as i64,
            ));
        }
        if let Some(c) = d.cache_creation_tokens {
            a.push(KeyValue::new(
                k::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                c as i64,
            ));
        }
    }
    if let Some(r) = u
        .completion_tokens_details
        .as_ref()
        .and_then(|d| d.reasoning_tokens)
    {
        a.push(KeyValue::new(
            k::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
            r as i64,
        ));
    }
}

fn request_params(request: &Request, a: &mut Vec<KeyValue>) {
    let (max_tokens, temperature, top_p, stop, seed, n, user) = match request {
        Request::Chat(r) => (
            r.max_completion_tokens.or(r.max_tokens),
            r.temperature,
            r.top_p,
            r.stop.as_ref(),
            r.seed,
            r.n,
            r.user.as_deref(),
        ),
        Request::Completion(r) => (
            r.max_tokens,
            r.temperature,
            r.top_p,
            r.stop.as_ref(),
            r.seed,
            r.n,
            r.user.as_deref(),
        ),
        Request::Embedding(r) => (None, None, None, None, None, None, r.user.as_deref()),
    };
    if let Some(v) = max_tokens {
        a.push(KeyValue::new(k::GEN_AI_REQUEST_MAX_TOKENS, v as i64));
    }
    if let Some(v) = temperature {
        a.push(KeyValue::new(k::GEN_AI_REQUEST_TEMPERATURE, v));
    }
    if let Some(v) = top_p {
        a.push(KeyValue::new(k::GEN_AI_REQUEST_TOP_P, v));
    }
    if let Some(v) = stop {
        a.push(KeyValue::new(
            k::GEN_AI_REQUEST_STOP_SEQUENCES,
            string_array(v.to_vec()),
        ));
    }
    if let Some(v) = seed {
        a.push(KeyValue::new(k::GEN_AI_REQUEST_SEED, v));
    }
    if let Some(v) = n.filter(|n| *n != 1) {
        a.push(KeyValue::new(k::GEN_AI_REQUEST_CHOICE_COUNT, i64::from(v)));
    }
    if let Some(u) = user {
        a.push(KeyValue::new(k::LLM_USER, u.to_owned()));
    }
    if let Request::Chat(r) = request {
        if let Some(v) = r.frequency_penalty {
            a.push(KeyValue::new(k::GEN_AI_REQUEST_FREQUENCY_PENALTY, v));
        }
        if let Some(v) = r.presence_penalty {
            a.push(KeyValue::new(k::GEN_AI_REQUEST_PRESENCE_PENALTY, v));
        }
        if r.response_format.as_ref().is_some_and(|f| f.is_json()) {
            a.push(KeyValue::new(k::GEN_AI_OUTPUT_TYPE, "json"));
        }
    }
}

/// The conversation id a request carries, in its metadata (`conversation_id`, `session_id`).
fn conversation_id(request: &Request) -> Option<String> {
    let md = request.extra().get("metadata")?.as_object()?;
    ["conversation_id", "session_id"]
        .iter()
        .find_map(|key| md.get(*key))
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// One part of a GenAI message (`gen_ai.input.messages` …). Fields are in alphabetical order,
/// the order `serde_json::Value` maps print in, so the JSON reads the same as ever.
#[derive(Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Text {
        content: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolCall {
        arguments: &'a str,
        id: &'a str,
        name: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolCallResponse {
        id: Option<&'a str>,
        response: Option<&'a str>,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

impl<'a> Part<'a> {
    fn text(content: &'a str) -> Self {
        Part::Text {
            content,
            kind: "text",
        }
    }
}

/// One message of `gen_ai.input.messages` / `gen_ai.output.messages`.
#[derive(Serialize)]
struct JsonMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    parts: Vec<Part<'a>>,
    role: &'a str,
}

/// `text`, or the redaction marker.
fn shown(text: &str, redact: bool) -> &str {
    if redact { REDACTED } else { text }
}

fn tool_call_parts<'a>(calls: &'a [ToolCall], redact: bool, parts: &mut Vec<Part<'a>>) {
    parts.extend(calls.iter().map(|c| Part::ToolCall {
        arguments: shown(&c.function.arguments, redact),
        id: &c.id,
        name: &c.function.name,
        kind: "tool_call",
    }));
}

fn message_text(m: &ChatMessage, redact: bool) -> Option<Cow<'_, str>> {
    m.content.as_ref().map(|c| match c {
        MessageContent::Text(t) => Cow::Borrowed(shown(t, redact)),
        MessageContent::Parts(_) if redact => Cow::Borrowed(REDACTED),
        MessageContent::Parts(_) => Cow::Owned(serde_json::to_string(c).unwrap_or_default()),
    })
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn input_content(request: &Request, redact: bool, c: &mut Content) {
    match request {
        Request::Chat(r) => {
            // A role and a text per message, three keys per tool: no regrowth on the way.
            c.indexed
                .reserve(r.messages.len() * 2 + r.tools.as_ref().map_or(0, |t| t.len() * 3));
            c.json.reserve(2);
            let texts: Vec<Option<Cow<'_, str>>> =
                r.messages.iter().map(|m| message_text(m, redact)).collect();
            let mut input = Vec::with_capacity(r.messages.len());
            let mut system = Vec::new();
            for (i, (m, text)) in r.messages.iter().zip(&texts).enumerate() {
                let text = text.as_deref();
                c.indexed
                    .push(KeyValue::new(PROMPT_ROLE.key(i), m.role.as_str()));
                if let Some(t) = text {
                    c.indexed
                        .push(KeyValue::new(PROMPT_CONTENT.key(i), t.to_owned()));
                }
                let calls = m.tool_calls.as_deref().unwrap_or_default();
                for (j, call) in calls.iter().enumerate() {
                    c.indexed.push(KeyValue::new(
                        format!("{}.{i}.tool_calls.{j}.name", k::GEN_AI_PROMPT_PREFIX),
                        call.function.name.clone(),
                    ));
                    c.indexed.push(KeyValue::new(
                        format!("{}.{i}.tool_calls.{j}.arguments", k::GEN_AI_PROMPT_PREFIX),
                        shown(&call.function.arguments, redact).to_owned(),
                    ));
                }
                if let Some(id) = &m.tool_call_id {
                    c.indexed
                        .push(KeyValue::new(PROMPT_TOOL_CALL_ID.key(i), id.clone()));
                }
                match m.role {
                    Role::System | Role::Developer => {
                        system.push(Part::text(text.unwrap_or_default()));
                    }
                    Role::Tool | Role::Function => input.push(JsonMessage {
                        finish_reason: None,
                        parts: vec![Part::ToolCallResponse {
                            id: m.tool_call_id.as_deref(),
                            response: text,
                            kind: "tool_call_response",
                        }],
                        role: "tool",
                    }),
                    Role::User | Role::Assistant => {
                        let mut parts: Vec<Part<'_>> = text.into_iter().map(Part::text).collect();
                        tool_call_parts(calls, redact, &mut parts);
                        input.push(JsonMessage {
                            finish_reason: None,
                            parts,
                            role: m.role.as_str(),
                        });
                    }
                }
            }
            c.json
                .push(KeyValue::new(k::GEN_AI_INPUT_MESSAGES, to_json(&input)));
            if !system.is_empty() {
                c.json.push(KeyValue::new(
                    k::GEN_AI_SYSTEM_INSTRUCTIONS,
                    to_json(&system),
                ));
            }
            for (i, t) in r.tools.iter().flatten().enumerate() {
                c.indexed
                    .push(KeyValue::new(FUNCTION_NAME.key(i), t.function.name.clone()));
                if let Some(d) = &t.function.description {
                    c.indexed
                        .push(KeyValue::new(FUNCTION_DESCRIPTION.key(i), d.clone()));
                }
                if let Some(params) = &t.function.parameters {
                    c.indexed.push(KeyValue::new(
                        FUNCTION_PARAMETERS.key(i),
                        params.to_string(),
                    ));
                }
            }
        }
        Request::Completion(r) => {
            let prompt = r.prompt_text();
            let text = shown(&prompt, redact);
            c.indexed.push(KeyValue::new(PROMPT_ROLE.key(0), "user"));
            c.indexed
                .push(KeyValue::new(PROMPT_CONTENT.key(0), text.to_owned()));
            let input = [JsonMessage {
                finish_reason: None,
                parts: vec![Part::text(text)],
                role: "user",
            }];
            c.json
                .push(KeyValue::new(k::GEN_AI_INPUT_MESSAGES, to_json(&input)));
        }
        Request::Embedding(r) => {
            for (i, t) in r.input.texts().iter().enumerate() {
                c.indexed.push(KeyValue::new(PROMPT_ROLE.key(i), "user"));
                c.indexed.push(KeyValue::new(
                    PROMPT_CONTENT.key(i),
                    shown(t, redact).to_owned(),
                ));
            }
        }
    }
}

/// One choice of the output, gathered from a stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct OutputChoice {
    index: u32,
    text: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<String>,
}

/// One choice of the output as recorded, borrowed from a response or a stream's gathering.
struct OutputView<'a> {
    index: u32,
    text: Option<Cow<'a, str>>,
    tool_calls: &'a [ToolCall],
    finish_reason: Option<&'a str>,
}

impl<'a> From<&'a OutputChoice> for OutputView<'a> {
    fn from(c: &'a OutputChoice) -> Self {
        OutputView {
            index: c.index,
            text: c.text.as_deref().map(Cow::Borrowed),
            tool_calls: &c.tool_calls,
            finish_reason: c.finish_reason.as_deref(),
        }
    }
}

fn output_content(choices: &[OutputView<'_>], redact: bool, out_c: &mut Content) {
    let p = k::GEN_AI_COMPLETION_PREFIX;
    out_c.indexed.reserve(choices.len() * 3);
    out_c.json.reserve(1);
    let mut out = Vec::with_capacity(choices.len());
    for ch in choices {
        let i = ch.index as usize;
        let text = ch.text.as_deref().map(|t| shown(t, redact));
        out_c
            .indexed
            .push(KeyValue::new(COMPLETION_ROLE.key(i), "assistant"));
        if let Some(t) = text {
            out_c
                .indexed
                .push(KeyValue::new(COMPLETION_CONTENT.key(i), t.to_owned()));
        }
        if let Some(f) = ch.finish_reason {
            out_c
                .indexed
                .push(KeyValue::new(COMPLETION_FINISH_REASON.key(i), f.to_owned()));
        }
        for (j, call) in ch.tool_calls.iter().enumerate() {
            out_c.indexed.push(KeyValue::new(
                format!("{p}.{i}.tool_calls.{j}.id"),
                call.id.clone(),
            ));
            out_c.indexed.push(KeyValue::new(
                format!("{p}.{i}.tool_calls.{j}.name"),
                call.function.name.clone(),
            ));
            out_c.indexed.push(KeyValue::new(
                format!("{p}.{i}.tool_calls.{j}.arguments"),
                shown(&call.function.arguments, redact).to_owned(),
            ));
        }
        let mut parts: Vec<Part<'_>> = text.into_iter().map(Part::text).collect();
        tool_call_parts(ch.tool_calls, redact, &mut parts);
        out.push(JsonMessage {
            finish_reason: Some(ch.finish_reason.unwrap_or_default()),
            parts,
            role: "assistant",
        });
    }
    out_c
        .json
        .push(KeyValue::new(k::GEN_AI_OUTPUT_MESSAGES, to_json(&out)));
}

/// What a stream has said so far, recorded when it ends.
pub(crate) struct StreamTrace {
    call: Option<CallTrace>,
    attempt: Option<AttemptTrace>,
    started: Instant,
    first_chunk: Option<f64>,
    id: String,
    model: String,
    usage: Option<Usage>,
    choices: BTreeMap<u32, OutputChoice>,
}

impl StreamTrace {
    /// Starts gathering for a stream whose request began at `started`.
    pub(crate) fn new(call: CallTrace, attempt: AttemptTrace, started: Instant) -> Self {
        StreamTrace {
            call: Some(call),
            attempt: Some(attempt),
            started,
            first_chunk: None,
            id: String::new(),
            model: String::new(),
            usage: None,
            choices: BTreeMap::new(),
        }
    }

    /// Notes one chunk.
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk) {
        if self.first_chunk.is_none() {
            self.first_chunk = Some(self.started.elapsed().as_secs_f64());
        }
        match chunk {
            Chunk::Chat(c) => {
                if self.id.is_empty() {
                    self.id.clone_from(&c.id);
                    self.model.clone_from(&c.model);
                }
                if c.usage.is_some() {
                    self.usage.clone_from(&c.usage);
                }
                for ch in &c.choices {
                    let entry = self
                        .choices
                        .entry(ch.index)
                        .or_insert_with(|| OutputChoice {
                            index: ch.index,
                            ..OutputChoice::default()
                        });
                    if let Some(t) = &ch.delta.content {
                        entry.text.get_or_insert_with(String::new).push_str(t);
                    }
                    for d in ch.delta.tool_calls.iter().flatten() {
                        let idx = d.index as usize;
                        while entry.tool_calls.len() <= idx {
                            entry.tool_calls.push(ToolCall {
                                id: String::new(),
                                kind: "function".into(),
                                function: crate::types::FunctionCall {
                                    name: String::new(),
                                    arguments: String::new(),
                                },
                                extra: Default::default(),
                            });
                        }
                        let call = &mut entry.tool_calls[idx];
                        if let Some(id) = &d.id {
                            call.id.clone_from(id);
                        }
                        if let Some(f) = &d.function {
                            if let Some(n) = &f.name {
                                call.function.name.push_str(n);
                            }
                            if let Some(args) = &f.arguments {
                                call.function.arguments.push_str(args);
                            }
                        }
                    }
                    if ch.finish_reason.is_some() {
                        entry.finish_reason.clone_from(&ch.finish_reason);
                    }
                }
            }
            Chunk::Completion(c) => {
                if self.id.is_empty() {
                    self.id.clone_from(&c.id);
                    self.model.clone_from(&c.model);
                }
                if c.usage.is_some() {
                    self.usage.clone_from(&c.usage);
                }
                for ch in &c.choices {
                    let entry = self
                        .choices
                        .entry(ch.index)
                        .or_insert_with(|| OutputChoice {
                            index: ch.index,
                            ..OutputChoice::default()
                        });
                    entry
                        .text
                        .get_or_insert_with(String::new)
                        .push_str(&ch.text);
                    if ch.finish_reason.is_some() {
                        entry.finish_reason.clone_from(&ch.finish_reason);
                    }
                }
            }
        }
    }

    fn record_output(&self, call: &mut CallTrace) {
        let mut a = Vec::new();
        let choices: Vec<OutputView<'_>> = self.choices.values().map(OutputView::from).collect();
        call.output_attributes(&self.id, &self.model, self.usage.as_ref(), &choices, &mut a);
        if let Some(t) = self.first_chunk {
            a.push(KeyValue::new(k::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, t));
        }
        call.set(a);
    }

    /// The stream ended normally.
    pub(crate) fn finish(&mut self) {
        if let (Some(mut call), Some(attempt)) = (self.call.take(), self.attempt.take()) {
            self.record_output(&mut call);
            attempt.response_model(&self.model);
            attempt.succeed();
            call.finish();
        }
    }

    /// The stream failed part-way.
    pub(crate) fn fail(&mut self, err: &Error) {
        if let (Some(mut call), Some(attempt)) = (self.call.take(), self.attempt.take()) {
            self.record_output(&mut call);
            attempt.fail(err);
            call.record_error(err);
            call.finish();
        }
    }
}

impl Drop for StreamTrace {
    fn drop(&mut self) {
        // Dropped before its end: the client went away. Record what was sent and end the spans.
        if let (Some(mut call), Some(attempt)) = (self.call.take(), self.attempt.take()) {
            self.record_output(&mut call);
            attempt.abandon();
            mark_disconnected(&call.carrier, false);
            call.finish();
        }
    }
}
