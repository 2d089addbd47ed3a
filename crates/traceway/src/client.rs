//! The client: resolves a model to a deployment, sends the call through the shared HTTP
//! client (or the in-process mock), applies timeouts, and records the call's spans.

use crate::deployment::{Deployment, DeploymentConfig, split_provider_model};
use crate::error::{Error, ErrorKind};
use crate::provider::{self, Backend, Chunk, Operation, Request, Response, Target, mock};
use crate::stream::{BoxChunks, ChunkStream, upstream_chunks};
use crate::telemetry::{AttemptTrace, CallTrace, Redaction, StreamTrace, Tracing};
use crate::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionRequest,
    CompletionResponse, EmbeddingRequest, EmbeddingResponse, StreamOptions,
};
use futures_core::Stream;
use futures_util::StreamExt;
use opentelemetry::{Context, KeyValue};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use traceway_otel::config::{CaptureContent, OtelConfig};
use traceway_otel::env::ProcessEnv;
use traceway_otel::exporter::Telemetry;

/// How long one attempt may take when neither the request nor the deployment says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Callback names that turn on OpenTelemetry tracing.
pub const OTEL_CALLBACKS: &[&str] = &["otel"];

fn global_callbacks() -> &'static RwLock<Vec<String>> {
    static CALLBACKS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    CALLBACKS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Sets the callbacks every later `Client::builder()` starts with, like `litellm.callbacks = ["otel"]`.
pub fn set_callbacks<I, S>(names: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let names: Vec<String> = names.into_iter().map(Into::into).collect();
    if let Ok(mut g) = global_callbacks().write() {
        *g = names;
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A deployment is invalid (unknown provider, missing model).
    #[error("deployment {index} ({model_name}): {source}")]
    Deployment {
        /// Position in the list.
        index: usize,
        /// Its model group.
        model_name: String,
        /// What is wrong.
        source: Box<Error>,
    },
    /// A callback name is not one this version knows.
    #[error("unknown callback \"{0}\" (supported: otel)")]
    UnknownCallback(String),
    /// The telemetry environment is invalid.
    #[error(transparent)]
    TelemetryConfig(#[from] traceway_otel::config::ConfigError),
    /// The exporter could not be started.
    #[error(transparent)]
    Telemetry(#[from] traceway_otel::exporter::ExporterError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    deployments: Vec<DeploymentConfig>,
    callbacks: Vec<String>,
    tracing: Option<Tracing>,
    direct_models: bool,
    timeout: Duration,
}

impl ClientBuilder {
    /// Adds a deployment (a `model_list` entry).
    pub fn deployment(mut self, d: DeploymentConfig) -> Self {
        self.deployments.push(d);
        self
    }

    /// Turns on callbacks by name; `otel` traces every call, configured from the environment.
    pub fn callbacks<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.callbacks.extend(names.into_iter().map(Into::into));
        self
    }

    /// Traces through an already-built pipeline instead of one configured from the environment.
    pub fn tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = Some(tracing);
        self
    }

    /// Whether a `provider/model` that is not a configured model group may be called directly
    /// (the library's default; the proxy serves only its `model_list`).
    pub fn direct_provider_models(mut self, allow: bool) -> Self {
        self.direct_models = allow;
        self
    }

    /// Default timeout of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the client, starting the telemetry pipeline if a callback asks for it.
    pub fn build(self) -> Result<Client, BuildError> {
        install_crypto_provider();
        let mut groups: BTreeMap<String, Vec<Arc<Deployment>>> = BTreeMap::new();
        for (index, d) in self.deployments.into_iter().enumerate() {
            let model_name = d.model_name.clone();
            let dep = Deployment::new(d).map_err(|source| BuildError::Deployment {
                index,
                model_name,
                source: Box::new(source),
            })?;
            groups
                .entry(dep.model_group.clone())
                .or_default()
                .push(Arc::new(dep));
        }
        let mut tracing = self.tracing;
        for cb in &self.callbacks {
            if !OTEL_CALLBACKS.contains(&cb.as_str()) {
                return Err(BuildError::UnknownCallback(cb.clone()));
            }
            if tracing.is_none() {
                let cfg = OtelConfig::from_env(&ProcessEnv)?;
                tracing = Telemetry::init(&cfg)?.map(|telemetry| Tracing {
                    telemetry,
                    capture_content: matches!(
                        cfg.capture,
                        CaptureContent::SpanOnly | CaptureContent::SpanAndEvent
                    ),
                });
            }
        }
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                groups,
                http,
                tracing,
                direct_models: self.direct_models,
                timeout: self.timeout,
            }),
        })
    }
}

/// Installs ring as the process's rustls crypto provider, once; the one TLS stack of the project.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Extra inputs of one call beyond the request body.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// The caller's context; its span becomes the parent of the call's spans.
    pub parent: Option<Context>,
    /// Record request/response attributes on `parent`'s span instead of a `litellm_request` child.
    pub record_on_parent: bool,
    /// Which content to replace in telemetry.
    pub redaction: Redaction,
    /// Attributes to put on the span that carries the request (caller identity, metadata).
    pub attributes: Vec<KeyValue>,
}

/// Where a call was routed.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The model group the caller asked for.
    pub model_group: String,
    /// Id of the deployment that answered.
    pub deployment_id: String,
    /// Provider id.
    pub provider: &'static str,
    /// The model name sent upstream.
    pub model: String,
}

/// A call's answer: complete, or a stream still arriving.
pub enum Reply {
    /// A complete response.
    Full(Response),
    /// A stream of chunks.
    Stream(ChunkStream),
}

/// A reply and where it came from.
pub struct Routed {
    /// The answer.
    pub reply: Reply,
    /// The route it took.
    pub info: RouteInfo,
}

struct Inner {
    groups: BTreeMap<String, Vec<Arc<Deployment>>>,
    http: reqwest::Client,
    tracing: Option<Tracing>,
    direct_models: bool,
    timeout: Duration,
}

/// One call shape (OpenAI's) across providers, traced when a callback asks for it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

// Short-lived and moved once per call: boxing the response would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Full(Response),
    Stream(BoxChunks),
}

impl Client {
    /// A builder starting from the callbacks set with [`set_callbacks`].
    pub fn builder() -> ClientBuilder {
        let callbacks = global_callbacks()
            .read()
            .map(|g| g.clone())
            .unwrap_or_default();
        ClientBuilder {
            deployments: Vec::new(),
            callbacks,
            tracing: None,
            direct_models: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The configured model groups, in name order.
    pub fn model_groups(&self) -> impl Iterator<Item = &str> {
        self.inner.groups.keys().map(String::as_str)
    }

    /// The deployments of every group.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.inner.groups.values().flatten().map(Arc::as_ref)
    }

    /// The telemetry pipeline, when tracing is on.
    pub fn tracing(&self) -> Option<&Tracing> {
        self.inner.tracing.as_ref()
    }

    /// A chat completion.
    pub async fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, Error> {
        match self
            .call(Request::Chat(request), CallOptions::default())
            .await?
            .reply
        {
            Reply::Full(Response::Chat(r)) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// A streamed chat completion.
    pub async fn chat_stream(
        &self,
        mut request: ChatCompletionRequest,
    ) -> Result<impl Stream<Item = Result<ChatCompletionChunk, Error>> + Send + use<>, Error> {
        request.stream = Some(true);
        match self
            .call(Request::Chat(request), CallOptions::default())
            .await?
            .reply
        {
            Reply::Stream(s) => Ok(s.map(|c| match c? {
                Chunk::Chat(c) => Ok(c),
                Chunk::Completion(_) => Err(unexpected()),
            })),
            Reply::Full(_) => Err(unexpected()),
        }
    }

    /// A text completion.
    pub async fn completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, Error> {
        match self
            .call(Request::Completion(request), CallOptions::default())
            .await?
            .reply
        {
            Reply::Full(Response::Completion(r)) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Embeddings.
    pub async fn embeddings(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        match self
            .call(Request::Embedding(request), CallOptions::default())
            .await?
            .reply
        {
            Reply::Full(Response::Embedding(r)) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Picks the deployment for `model`: a configured group, else (library) a direct `provider/model`.
    pub fn resolve(&self, model: &str) -> Result<Arc<Deployment>, Error> {
        if let Some(group) = self.inner.groups.get(model) {
            let i = if group.len() > 1 {
                rand::random_range(0..group.len())
            } else {
                0
            };
            if let Some(d) = group.get(i) {
                return Ok(d.clone());
            }
        }
        if self.inner.direct_models && model.contains('/') {
            split_provider_model(model)?;
            let d = Deployment::new(DeploymentConfig {
                model_name: model.to_owned(),
                model: model.to_owned(),
                ..DeploymentConfig::default()
            })?;
            return Ok(Arc::new(d));
        }
        let known: Vec<&str> = self.model_groups().collect();
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "model \"{model}\" is not served here; available models: {}",
                known.join(", ")
            ),
        )
        .with_param(Some("model")))
    }

    /// Any call, with options; the proxy's entry point.
    pub async fn call(&self, request: Request, opts: CallOptions) -> Result<Routed, Error> {
        let trace = self.inner.tracing.as_ref().map(|t| {
            CallTrace::start(
                t,
                opts.parent.as_ref(),
                opts.record_on_parent,
                opts.redaction,
                opts.attributes,
            )
        });
        let deployment = match self.resolve(request.model()) {
            Ok(d) => d,
            Err(e) => {
                if let Some(t) = trace {
                    t.record_request(&request, None);
                    t.record_error(&e);
                    t.finish();
                }
                return Err(e);
            }
        };
        if let Some(t) = &trace {
            t.record_request(&request, Some(&deployment));
        }
        let info = RouteInfo {
            model_group: request.model().to_owned(),
            deployment_id: deployment.id.clone(),
            provider: deployment.provider(),
            model: deployment.model.clone(),
        };
        let started = Instant::now();
        let strip_usage = !request.wants_usage_chunk();
        let (result, attempt) = self.attempt(&deployment, &request, trace.as_ref()).await;
        match result {
            Ok(Attempt::Full(resp)) => {
                if let Some(t) = trace {
                    t.record_response(&resp);
                    if let Some(a) = attempt {
                        a.response_model(response_model(&resp));
                        a.succeed();
                    }
                    t.finish();
                }
                Ok(Routed {
                    reply: Reply::Full(resp),
                    info,
                })
            }
            Ok(Attempt::Stream(chunks)) => {
                let st = match (trace, attempt) {
                    (Some(t), Some(a)) => Some(StreamTrace::new(t, a, started)),
                    _ => None,
                };
                Ok(Routed {
                    reply: Reply::Stream(ChunkStream::new(chunks, st, strip_usage)),
                    info,
                })
            }
            Err(e) => {
                if let Some(a) = attempt {
                    a.fail(&e);
                }
                if let Some(t) = trace {
                    t.record_error(&e);
                    t.finish();
                }
                Err(e)
            }
        }
    }

    /// One upstream attempt, with its CLIENT span.
    async fn attempt(
        &self,
        deployment: &Deployment,
        request: &Request,
        trace: Option<&CallTrace>,
    ) -> (Result<Attempt, Error>, Option<AttemptTrace>) {
        let op = request.operation();
        let timeout = request_timeout(request)
            .or(deployment.timeout)
            .unwrap_or(self.inner.timeout);
        match &deployment.backend {
            Backend::Mock => {
                let attempt = trace.map(|t| t.start_attempt(deployment, op, 1, None));
                let result = mock_attempt(deployment, request, timeout).await;
                (result, attempt)
            }
            Backend::Http(provider) => {
                let mut upstream_request = request.clone();
                if request.is_stream() {
                    ask_for_usage(&mut upstream_request);
                }
                let target = Target {
                    model: &deployment.model,
                    api_base: deployment.api_base.as_deref(),
                    api_key: deployment.api_key.as_ref().map(|k| k.expose()),
                    params: &deployment.params,
                };
                let up = match provider.build_request(&target, &upstream_request) {
                    Ok(up) => up,
                    Err(e) => return (Err(e), None),
                };
                let attempt = trace.map(|t| t.start_attempt(deployment, op, 1, Some(&up.url)));
                let mut builder = self
                    .inner
                    .http
                    .post(&up.url)
                    .headers(up.headers)
                    .body(up.body);
                if let Some(a) = &attempt {
                    for (k, v) in a.propagation_headers() {
                        builder = builder.header(k, v);
                    }
                }
                let first_byte = if request.is_stream() {
                    deployment.stream_timeout.unwrap_or(timeout)
                } else {
                    timeout
                };
                let result = http_attempt(
                    provider.as_ref(),
                    &target,
                    builder,
                    op,
                    request.is_stream(),
                    first_byte,
                    timeout,
                    attempt.as_ref(),
                )
                .await;
                (result, attempt)
            }
        }
    }
}

fn unexpected() -> Error {
    Error::new(
        ErrorKind::Internal,
        "the call returned a different kind of answer than asked for",
    )
}

fn response_model(r: &Response) -> &str {
    match r {
        Response::Chat(r) => &r.model,
        Response::Completion(r) => &r.model,
        Response::Embedding(r) => &r.model,
    }
}

/// The request's own `timeout` (seconds, LiteLLM's field).
fn request_timeout(request: &Request) -> Option<Duration> {
    request
        .extra()
        .get("timeout")
        .and_then(serde_json::Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// Asks the upstream for the usage chunk so the stream's spans carry usage.
fn ask_for_usage(request: &mut Request) {
    let opts = match request {
        Request::Chat(r) => &mut r.stream_options,
        Request::Completion(r) => &mut r.stream_options,
        Request::Embedding(_) => return,
    };
    opts.get_or_insert_with(StreamOptions::default)
        .include_usage = Some(true);
}

fn timeout_error(deployment: &str, after: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "{deployment} did not answer within {:.3}s; raise `timeout` for this model if it is expected to be slow",
            after.as_secs_f64()
        ),
    )
}

async fn mock_attempt(
    deployment: &Deployment,
    request: &Request,
    timeout: Duration,
) -> Result<Attempt, Error> {
    let plan = mock::plan(
        request,
        deployment.mock_response.as_deref(),
        &deployment.params,
    )?;
    if let Some(delay) = plan.delay {
        if delay > timeout {
            tokio::time::sleep(timeout).await;
            return Err(timeout_error(&deployment.provider_model, timeout).with_provider(mock::ID));
        }
        tokio::time::sleep(delay).await;
    }
    if request.is_stream() {
        let chunks = mock::stream(&deployment.model, request, &plan);
        Ok(Attempt::Stream(Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    } else {
        Ok(Attempt::Full(mock::respond(
            &deployment.model,
            request,
            &plan,
        )))
    }
}

fn transport_error(provider: &str, e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Connection
    };
    let host = e
        .url()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let detail = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    Error::new(
        kind,
        format!("could not reach {provider} at {host}: {detail}"),
    )
    .with_provider(provider)
}

#[allow(clippy::too_many_arguments)]
async fn http_attempt(
    provider: &dyn provider::HttpProvider,
    target: &Target<'_>,
    builder: reqwest::RequestBuilder,
    op: Operation,
    stream: bool,
    first_byte: Duration,
    total: Duration,
    attempt: Option<&AttemptTrace>,
) -> Result<Attempt, Error> {
    let id = provider.id();
    let started = Instant::now();
    let response = match tokio::time::timeout(first_byte, builder.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(transport_error(id, e)),
        Err(_) => return Err(timeout_error(id, first_byte).with_provider(id)),
    };
    let status = response.status().as_u16();
    if let Some(a) = attempt {
        a.status_code(status);
    }
    let remaining = total.saturating_sub(started.elapsed());
    if !response.status().is_success() {
        let headers = response.headers().clone();
        let body = match tokio::time::timeout(remaining, response.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) => bytes::Bytes::new(),
        };
        return Err(provider.parse_error(status, &headers, &body));
    }
    if stream {
        let parser = provider.stream_parser(target, op);
        let decoder = provider.frame_decoder();
        return Ok(Attempt::Stream(upstream_chunks(
            response, id, decoder, parser, total,
        )));
    }
    let body = match tokio::time::timeout(remaining, response.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(transport_error(id, e)),
        Err(_) => return Err(timeout_error(id, total).with_provider(id)),
    };
    provider
        .parse_response(target, op, &body)
        .map(Attempt::Full)
}
