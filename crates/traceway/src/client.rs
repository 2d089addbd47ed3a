//! The client: resolves a model to a deployment, sends the call through the shared HTTP
//! client (or the in-process mock), applies timeouts, and records the call's spans.

use crate::deployment::{Deployment, DeploymentConfig, split_provider_model};
use crate::error::{Error, ErrorKind};
use crate::provider::{self, Backend, Chunk, Operation, Request, Response, Target, mock};
use crate::router::{
    Clock, InFlight, RandomSource, Router, RouterSettings, SystemClock, ThreadRandom,
};
use crate::stream::{BoxChunks, ChunkStream, upstream_chunks};
use crate::telemetry::{AttemptTrace, CallTrace, Redaction, StreamTrace, Tracing};
use crate::transport::{Transport, TransportError, UpstreamResponse};
use crate::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionRequest,
    CompletionResponse, EmbeddingRequest, EmbeddingResponse, StreamOptions,
};
use futures_core::Stream;
use futures_util::StreamExt;
use opentelemetry::{Context, KeyValue};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use traceway_otel::config::CaptureContent;
use traceway_otel::env::{Env, ProcessEnv};
use traceway_otel::exporter::Telemetry;
use traceway_otel::metrics::{CallMeasures, Metrics, OperationLabels};

/// How long one attempt may take when neither the request nor the deployment says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Callback names that turn on OpenTelemetry tracing, each one export destination.
pub use traceway_otel::destinations::TRACING_CALLBACKS;

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
    #[error("unknown callback \"{0}\" (supported: otel, arize_phoenix, arize, langfuse_otel)")]
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
    router: RouterSettings,
    metrics: Option<Metrics>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    env: Arc<dyn Env>,
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

    /// Retries, fallbacks, load balancing and cooldowns.
    pub fn router(mut self, settings: RouterSettings) -> Self {
        self.router = settings;
        self
    }

    /// The clock cooldowns and usage windows read (tests use a [`crate::router::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records the GenAI client metrics of every call.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The random source deployment choice and backoff jitter use.
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// Where environment settings are read: the `otel` callback's variables, provider keys a
    /// deployment leaves out (`OPENAI_API_KEY` …) and provider settings (`AZURE_API_BASE`,
    /// `AWS_REGION`, `OLLAMA_API_BASE` …) and the upstream proxy (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`). The process environment by default.
    pub fn env(mut self, env: Arc<dyn Env>) -> Self {
        self.env = env;
        self
    }

    /// Builds the client, starting the telemetry pipeline if a callback asks for it.
    pub fn build(self) -> Result<Client, BuildError> {
        install_crypto_provider();
        let mut groups: BTreeMap<String, Vec<Arc<Deployment>>> = BTreeMap::new();
        for (index, d) in self.deployments.into_iter().enumerate() {
            let model_name = d.model_name.clone();
            let dep =
                Deployment::with_env(d, &*self.env).map_err(|source| BuildError::Deployment {
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
        if let Some(unknown) = self
            .callbacks
            .iter()
            .find(|c| !TRACING_CALLBACKS.contains(&c.as_str()))
        {
            return Err(BuildError::UnknownCallback(unknown.clone()));
        }
        if tracing.is_none() && !self.callbacks.is_empty() {
            let destinations =
                traceway_otel::destinations::destinations(&self.callbacks, &*self.env)?;
            tracing = Telemetry::init_destinations(&destinations, Vec::new())?.map(|telemetry| {
                let capture_content = telemetry.config().capture != CaptureContent::NoContent;
                Tracing {
                    telemetry,
                    capture_content,
                }
            });
        }
        let http = Transport::from_env(&*self.env).map_err(BuildError::Http)?;
        Ok(Client {
            inner: Arc::new(Inner {
                groups,
                direct: Default::default(),
                metrics: self.metrics,
                router: Arc::new(Router::new(self.router, self.clock, self.random)),
                http,
                tracing,
                direct_models: self.direct_models,
                timeout: self.timeout,
                env: self.env,
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
    /// The caller's decision on which content to replace in telemetry (from a request header,
    /// or the key's or team's `turn_off_message_logging`); `None` leaves it to the request's
    /// `mask_input` / `mask_output` metadata and the global setting. The metadata flags win.
    pub redaction: Option<Redaction>,
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
    /// Retries made before the answer.
    pub retries: u32,
    /// Fallback groups tried before the answer.
    pub fallbacks: u32,
    /// The answering deployment's token prices, when its configuration gives them.
    pub price: Option<crate::deployment::Price>,
}

/// A call's answer: complete, or a stream still arriving.
// Moved once per call into the caller: boxing the response would only add an allocation.
#[allow(clippy::large_enum_variant)]
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
    /// Direct `provider/model` deployments, kept so their health outlives one call.
    direct: std::sync::Mutex<std::collections::HashMap<String, Arc<Deployment>>>,
    router: Arc<Router>,
    metrics: Option<Metrics>,
    http: Transport,
    tracing: Option<Tracing>,
    direct_models: bool,
    timeout: Duration,
    env: Arc<dyn Env>,
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
            router: RouterSettings::default(),
            clock: Arc::new(SystemClock),
            random: Arc::new(ThreadRandom),
            metrics: None,
            env: Arc::new(ProcessEnv),
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

    /// A streamed chat completion. It returns once the first chunk is in: a stream that fails
    /// before it is retried and falls back like any failed call, and is this call's error when
    /// those run out; a failure after it ends the stream with an error item.
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

    /// The deployments of `model`: a configured group, else (library) a direct `provider/model`.
    pub fn group(&self, model: &str) -> Result<Vec<Arc<Deployment>>, Error> {
        if let Some(group) = self.inner.groups.get(model) {
            return Ok(group.clone());
        }
        if self.inner.direct_models && model.contains('/') {
            split_provider_model(model)?;
            let mut cache = self
                .inner
                .direct
                .lock()
                .map_err(|_| Error::new(ErrorKind::Internal, "deployment cache poisoned"))?;
            if let Some(d) = cache.get(model) {
                return Ok(vec![d.clone()]);
            }
            let d = Arc::new(Deployment::with_env(
                DeploymentConfig {
                    model_name: model.to_owned(),
                    model: model.to_owned(),
                    ..DeploymentConfig::default()
                },
                &*self.inner.env,
            )?);
            cache.insert(model.to_owned(), d.clone());
            return Ok(vec![d]);
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

    /// One call to exactly `deployment` (one of [`Client::deployments`]), outside the router:
    /// no retries, fallbacks, cooldowns, metrics or spans. For health checks, which must see
    /// each deployment as it is and must not move the router's view of it. A stream counts as
    /// answered at its first chunk.
    pub async fn probe(&self, deployment: &Deployment, request: Request) -> Result<(), Error> {
        let (result, waiting) = self.attempt(deployment, &request, None, 1, 0).await;
        first_chunk_in(result, waiting).await.0.map(|_| ())
    }

    /// Any call, with options; the proxy's entry point. Routes through the model group's
    /// deployments with retries, then through its fallback groups, one CLIENT span per attempt.
    pub async fn call(&self, request: Request, opts: CallOptions) -> Result<Routed, Error> {
        let team_id = self.inner.metrics.as_ref().and_then(|_| {
            opts.attributes
                .iter()
                .find(|kv| kv.key.as_str() == traceway_otel::keys::METADATA_USER_API_KEY_TEAM_ID)
                .map(|kv| kv.value.as_str().into_owned())
        });
        let mut trace = self.inner.tracing.as_ref().map(|t| {
            CallTrace::start(
                t,
                opts.parent.as_ref(),
                opts.record_on_parent,
                opts.redaction,
                opts.attributes,
            )
        });
        if let Some(t) = &mut trace {
            t.record_request(&request);
        }
        let router = &self.inner.router;
        let plan = CallPlan::of(&request);
        let started = Instant::now();
        let strip_usage = !request.wants_usage_chunk();
        let primary = request.model().to_owned();
        let mut group = primary.clone();
        let mut queue: Option<std::collections::VecDeque<String>> = None;
        let mut tried: Vec<String> = Vec::new();
        let (mut attempts, mut retries, mut fallbacks) = (0u32, 0u32, 0u32);
        let mut last_deployment: Option<Arc<Deployment>> = None;
        // Parameters out of range are the caller's mistake, refused like an unknown model.
        let mut refused = crate::params::check(&request).err();
        let last_err = 'groups: loop {
            tried.push(group.clone());
            let found = match refused.take() {
                Some(e) => Err(e),
                None => self.group(&group),
            };
            let mut group_err = match found {
                Ok(deployments) => {
                    let allowed = plan
                        .num_retries
                        .or_else(|| deployments.iter().filter_map(|d| d.num_retries).max())
                        .unwrap_or(router.settings.num_retries);
                    let mut retry = 0;
                    loop {
                        let (deployment, in_flight) = match router.pick(&group, &deployments) {
                            Ok(p) => p,
                            Err(e) => break e,
                        };
                        attempts += 1;
                        let attempt_started = router.now();
                        let forced = plan.mock_testing_fallbacks && fallbacks == 0;
                        let (result, attempt) = if forced {
                            let span = trace.as_ref().map(|t| {
                                t.start_attempt(
                                    &deployment,
                                    request.operation(),
                                    attempts,
                                    fallbacks,
                                    &[],
                                )
                            });
                            let mut e = Error::new(
                                ErrorKind::UpstreamServer,
                                "mock_testing_fallbacks: the primary model group failed on purpose",
                            )
                            .with_provider(deployment.provider());
                            e.status = Some(500);
                            (Err(e), span)
                        } else {
                            let (result, attempt) = self
                                .attempt(&deployment, &request, trace.as_ref(), attempts, fallbacks)
                                .await;
                            first_chunk_in(result, attempt).await
                        };
                        match result {
                            Ok(answer) => {
                                router.on_success(
                                    &deployment,
                                    router.now().saturating_duration_since(attempt_started),
                                );
                                let info = RouteInfo {
                                    model_group: group.clone(),
                                    deployment_id: deployment.id.clone(),
                                    provider: deployment.provider(),
                                    model: deployment.model.clone(),
                                    retries,
                                    fallbacks,
                                    price: deployment.price,
                                };
                                if let Some(t) = &mut trace {
                                    t.record_route(&deployment, retries, fallbacks);
                                }
                                let labels = self.inner.metrics.as_ref().map(|_| {
                                    operation_labels(
                                        &request,
                                        Some(&deployment),
                                        None,
                                        team_id.clone(),
                                    )
                                });
                                return Ok(self.answer(
                                    answer,
                                    info,
                                    trace,
                                    attempt,
                                    in_flight,
                                    started,
                                    strip_usage,
                                    labels,
                                ));
                            }
                            Err(e) => {
                                router.on_failure(&deployment, &e);
                                if let Some(a) = attempt {
                                    a.fail(&e);
                                }
                                drop(in_flight);
                                last_deployment = Some(deployment);
                                if Router::is_retryable(&e) && retry < allowed {
                                    retry += 1;
                                    retries += 1;
                                    tokio::time::sleep(router.backoff(retry, &e)).await;
                                    continue;
                                }
                                break e;
                            }
                        }
                    }
                }
                Err(e) => {
                    if group == primary {
                        // An unknown model (or a refused parameter) is the caller's mistake: no
                        // fallback hides it.
                        break 'groups e;
                    }
                    e
                }
            };
            let queue = queue.get_or_insert_with(|| {
                router
                    .fallbacks_for(&primary, &group_err, plan.fallbacks.as_deref())
                    .into_iter()
                    .take(router.settings.max_fallbacks)
                    .collect()
            });
            loop {
                match queue.pop_front() {
                    Some(next) if tried.contains(&next) => continue,
                    Some(next) => {
                        fallbacks += 1;
                        group = next;
                        continue 'groups;
                    }
                    None => {
                        if fallbacks > 0 {
                            group_err.message = format!(
                                "{} (after {fallbacks} fallback{})",
                                group_err.message,
                                if fallbacks == 1 { "" } else { "s" }
                            );
                        }
                        break 'groups group_err;
                    }
                }
            }
        };
        if let Some(m) = &self.inner.metrics {
            let labels = operation_labels(
                &request,
                last_deployment.as_deref(),
                Some(last_err.kind.error_class()),
                team_id,
            );
            m.record_call(
                &labels,
                CallMeasures {
                    seconds: started.elapsed().as_secs_f64(),
                    ..CallMeasures::default()
                },
            );
        }
        if let Some(mut t) = trace {
            if let Some(d) = &last_deployment {
                t.record_route(d, retries, fallbacks);
            } else {
                t.record_unrouted(&request);
            }
            t.record_error(&last_err);
            t.finish();
        }
        Err(last_err)
    }

    /// Wraps a successful attempt into the caller's answer, ending or handing on its spans.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        answer: Attempt,
        info: RouteInfo,
        trace: Option<CallTrace>,
        attempt: Option<AttemptTrace>,
        in_flight: InFlight,
        started: Instant,
        strip_usage: bool,
        labels: Option<OperationLabels>,
    ) -> Routed {
        match answer {
            Attempt::Full(resp) => {
                if let (Some(m), Some(mut labels)) = (&self.inner.metrics, labels) {
                    labels.response_model =
                        Some(response_model(&resp).to_owned()).filter(|m| !m.is_empty());
                    m.record_call(
                        &labels,
                        CallMeasures {
                            seconds: started.elapsed().as_secs_f64(),
                            tokens: response_usage(&resp),
                            ..CallMeasures::default()
                        },
                    );
                }
                if let Some(tokens) = response_tokens(&resp) {
                    in_flight
                        .stats()
                        .add_tokens(self.inner.router.now(), tokens);
                }
                if let Some(mut t) = trace {
                    t.record_response(&resp);
                    if let Some(a) = attempt {
                        a.response_model(response_model(&resp));
                        a.succeed();
                    }
                    t.finish();
                }
                Routed {
                    reply: Reply::Full(resp),
                    info,
                }
            }
            Attempt::Stream(chunks) => {
                let st = match (trace, attempt) {
                    (Some(t), Some(a)) => Some(StreamTrace::new(t, a, started)),
                    _ => None,
                };
                let router = self.inner.router.clone();
                let metrics = match (&self.inner.metrics, labels) {
                    (Some(m), Some(l)) => Some(StreamMetrics::new(m.clone(), l, started)),
                    _ => None,
                };
                let usage = UsageSink {
                    in_flight,
                    router,
                    metrics,
                };
                Routed {
                    reply: Reply::Stream(ChunkStream::new(chunks, st, strip_usage, Some(usage))),
                    info,
                }
            }
        }
    }

    /// One upstream attempt, with its CLIENT span (held so that it is ended as abandoned if
    /// the caller goes away before the attempt is settled).
    async fn attempt(
        &self,
        deployment: &Deployment,
        request: &Request,
        trace: Option<&CallTrace>,
        number: u32,
        fallback_depth: u32,
    ) -> (Result<Attempt, Error>, AbandonOnDrop) {
        let op = request.operation();
        let timeout = request_timeout(request)
            .or(deployment.timeout)
            .unwrap_or(self.inner.timeout);
        match &deployment.backend {
            Backend::Mock => {
                let attempt = AbandonOnDrop(
                    trace.map(|t| t.start_attempt(deployment, op, number, fallback_depth, &[])),
                );
                let result = mock_attempt(deployment, request, timeout).await;
                (result, attempt)
            }
            Backend::Http(provider) => {
                // A text completion to a chat-only provider goes up as one-message chats, one
                // per prompt (as LiteLLM sends them); a stream asks for usage. Otherwise the
                // caller's request goes up as it is.
                let provider = provider.as_ref();
                let as_chat = op == Operation::Completion && !provider.serves_completions();
                let mut attempt = AbandonOnDrop(None);
                let at = HttpCall {
                    trace,
                    op,
                    number,
                    fallback_depth,
                    timeout,
                };
                // One `.await` of `http_call` for every case: each await site would add the
                // call's whole future to this one's, which is moved on every poll set-up.
                let (mut single, mut chats) = match request {
                    Request::Completion(r) if as_chat => {
                        match crate::completion_as_chat::requests(r) {
                            Ok(chats) => (None, chats.into_iter()),
                            Err(e) => return (Err(e), attempt),
                        }
                    }
                    other => (Some(Cow::Borrowed(other)), Vec::new().into_iter()),
                };
                let calls = chats.len().max(1);
                let mut answers = Vec::new();
                while let Some(call) = single
                    .take()
                    .or_else(|| chats.next().map(|c| Cow::Owned(Request::Chat(c))))
                {
                    // Boxed: the call's future (the HTTP exchange's) would otherwise be part of
                    // every enclosing future, and each of those is moved whole a few times.
                    let result =
                        Box::pin(self.http_call(deployment, provider, call, at, &mut attempt))
                            .await;
                    if calls == 1 {
                        let result = if as_chat {
                            result.map(chat_as_completion)
                        } else {
                            result
                        };
                        return (result, attempt);
                    }
                    // Several prompts (never a stream): one chat each, in order, merged.
                    match result {
                        Ok(Attempt::Full(Response::Chat(c))) => answers.push(c),
                        Ok(_) => {
                            let e = Error::new(
                                ErrorKind::InvalidResponse,
                                "a chat answer was expected for one prompt of several",
                            );
                            return (Err(e.with_provider(provider.id())), attempt);
                        }
                        Err(e) => return (Err(e), attempt),
                    }
                }
                let merged = crate::completion_as_chat::merged(answers);
                (Ok(Attempt::Full(Response::Completion(merged))), attempt)
            }
        }
    }

    /// One HTTP call of `request` to `deployment`, under `attempt`'s CLIENT span (started
    /// here for the first call of an attempt; a multi-prompt completion makes several).
    async fn http_call(
        &self,
        deployment: &Deployment,
        provider: &dyn provider::HttpProvider,
        mut request: Cow<'_, Request>,
        at: HttpCall<'_>,
        attempt: &mut AbandonOnDrop,
    ) -> Result<Attempt, Error> {
        if request.is_stream() {
            ask_for_usage(request.to_mut());
        }
        let target = Target {
            model: &deployment.model,
            api_base: deployment.api_base.as_deref(),
            api_key: deployment.api_key.as_ref().map(|k| k.expose()),
            params: &deployment.params,
            env: &*self.inner.env,
        };
        let mut up = provider.build_request(&target, &request)?;
        let upstream = deployment.parse_upstream_url(&up.url).map_err(|reason| {
            // Not the URL itself: a provider may carry its key in the query.
            Error::new(
                ErrorKind::Connection,
                format!(
                    "could not reach {}: its URL is not valid ({reason})",
                    provider.id()
                ),
            )
            .with_provider(provider.id())
        })?;
        // The span records the first call's response (status, timing); later calls of a
        // multi-prompt completion only carry its context.
        let first = attempt.0.is_none();
        if first {
            // Ended as abandoned if the caller goes away while the upstream answers.
            attempt.0 = at.trace.map(|t| {
                t.start_attempt(
                    deployment,
                    at.op,
                    at.number,
                    at.fallback_depth,
                    &upstream.span_attributes,
                )
            });
        }
        if let Some(host) = &upstream.host {
            up.headers
                .entry(http::header::HOST)
                .or_insert_with(|| host.clone());
        }
        if let Some(a) = &attempt.0 {
            for (k, v) in a.propagation_headers() {
                up.headers.insert(k, v);
            }
        }
        let send = self
            .inner
            .http
            .post(&upstream.uri, &upstream.url, up.headers, up.body);
        let first_byte = if request.is_stream() {
            deployment
                .stream_timeout
                .or(self.inner.router.settings.stream_timeout)
                .unwrap_or(at.timeout)
        } else {
            at.timeout
        };
        http_attempt(
            provider,
            &target,
            send,
            upstream.url.host_str().unwrap_or_default(),
            request.operation(),
            request.is_stream(),
            first_byte,
            at.timeout,
            attempt.0.as_ref().filter(|_| first),
        )
        .await
    }
}

/// Where an HTTP call stands in its call: the trace, the operation the caller asked for (a
/// completion sent as chats is still a completion on its span), the attempt's number and
/// fallback depth, and its timeout.
#[derive(Clone, Copy)]
struct HttpCall<'a> {
    trace: Option<&'a CallTrace>,
    op: Operation,
    number: u32,
    fallback_depth: u32,
    timeout: Duration,
}

/// Per-call routing inputs the request body carries (LiteLLM's fields).
#[derive(Debug, Default)]
struct CallPlan {
    num_retries: Option<u32>,
    fallbacks: Option<Vec<String>>,
    mock_testing_fallbacks: bool,
}

impl CallPlan {
    fn of(request: &Request) -> CallPlan {
        let extra = request.extra();
        let fallbacks = extra
            .get("fallbacks")
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| match i {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Object(o) => {
                            o.get("model").and_then(|m| m.as_str()).map(str::to_owned)
                        }
                        _ => None,
                    })
                    .collect()
            });
        CallPlan {
            num_retries: extra
                .get("num_retries")
                .and_then(serde_json::Value::as_u64)
                .map(|n| n.min(100) as u32),
            fallbacks,
            mock_testing_fallbacks: extra
                .get("mock_testing_fallbacks")
                .and_then(serde_json::Value::as_bool)
                == Some(true),
        }
    }
}

/// Feeds a stream's usage into its deployment's rpm/tpm window, holds it in flight, and
/// records the stream's metrics when it ends (or is dropped).
pub(crate) struct UsageSink {
    in_flight: InFlight,
    router: Arc<Router>,
    metrics: Option<StreamMetrics>,
}

impl UsageSink {
    /// Notes one chunk: its usage, and its timing for the chunk metrics.
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk) {
        let usage = match chunk {
            Chunk::Chat(c) => c.usage.as_ref(),
            Chunk::Completion(c) => c.usage.as_ref(),
        };
        if let Some(u) = usage {
            self.in_flight
                .stats()
                .add_tokens(self.router.now(), u.total_tokens);
        }
        if let Some(m) = &mut self.metrics {
            m.on_chunk(chunk, usage.map(|u| (u.prompt_tokens, u.completion_tokens)));
        }
    }

    /// Notes that the stream failed part-way.
    pub(crate) fn fail(&mut self, err: &Error) {
        if let Some(m) = &mut self.metrics {
            m.labels.error_type = Some(err.kind.error_class());
        }
    }
}

/// A stream's metrics, recorded once when the stream is done with.
pub(crate) struct StreamMetrics {
    metrics: Metrics,
    labels: OperationLabels,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: u64,
    usage: Option<(u64, u64)>,
}

impl StreamMetrics {
    fn new(metrics: Metrics, labels: OperationLabels, started: Instant) -> Self {
        StreamMetrics {
            metrics,
            labels,
            started,
            first: None,
            last: None,
            chunks: 0,
            usage: None,
        }
    }

    fn on_chunk(&mut self, chunk: &Chunk, usage: Option<(u64, u64)>) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.chunks += 1;
        if usage.is_some() {
            self.usage = usage;
        }
        if self.labels.response_model.is_none() {
            let model = match chunk {
                Chunk::Chat(c) => &c.model,
                Chunk::Completion(c) => &c.model,
            };
            self.labels.response_model = Some(model.clone()).filter(|m| !m.is_empty());
        }
    }
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        let mut measures = CallMeasures {
            seconds: self.started.elapsed().as_secs_f64(),
            tokens: self.usage,
            ..CallMeasures::default()
        };
        if let Some(first) = self.first {
            measures.time_to_first_chunk = Some(first.duration_since(self.started).as_secs_f64());
            if let Some(last) = self.last.filter(|_| self.chunks > 1) {
                measures.time_per_output_chunk =
                    Some(last.duration_since(first).as_secs_f64() / (self.chunks - 1) as f64);
            }
        }
        self.metrics.record_call(&self.labels, measures);
    }
}

/// The metric labels of a call routed to `deployment` (or not routed at all).
fn operation_labels(
    request: &Request,
    deployment: Option<&Deployment>,
    error_type: Option<&'static str>,
    team_id: Option<String>,
) -> OperationLabels {
    OperationLabels {
        operation: request.operation().semconv_name(),
        provider: deployment.map_or("", |d| d.semconv_provider()),
        request_model: deployment.map_or_else(|| request.model().to_owned(), |d| d.model.clone()),
        response_model: None,
        error_type,
        team_id,
    }
}

fn response_usage(r: &Response) -> Option<(u64, u64)> {
    match r {
        Response::Chat(r) => r
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
        Response::Completion(r) => r
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
        Response::Embedding(r) => r.usage.as_ref().map(|u| (u.prompt_tokens, 0)),
    }
}

fn response_tokens(r: &Response) -> Option<u64> {
    match r {
        Response::Chat(r) => r.usage.as_ref().map(|u| u.total_tokens),
        Response::Completion(r) => r.usage.as_ref().map(|u| u.total_tokens),
        Response::Embedding(r) => r.usage.as_ref().map(|u| u.total_tokens),
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
        // `try_`: a value past what a Duration holds (`1e308`) would panic the request.
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
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

/// A stream's attempt lasts until its first chunk: a stream that breaks, stalls or opens with
/// an error event before anything reached the caller fails its attempt like a request that
/// failed outright, so the router retries it or falls back. A caller that goes away meanwhile
/// leaves the attempt marked `client_disconnected`, as a stream cut later does.
async fn first_chunk_in(
    result: Result<Attempt, Error>,
    waiting: AbandonOnDrop,
) -> (Result<Attempt, Error>, Option<AttemptTrace>) {
    let mut chunks = match result {
        Ok(Attempt::Stream(chunks)) => chunks,
        other => return (other, waiting.defuse()),
    };
    let first = chunks.next().await;
    let attempt = waiting.defuse();
    match first {
        Some(Err(e)) => (Err(e), attempt),
        Some(Ok(first)) => {
            let whole = futures_util::stream::iter([Ok(first)]).chain(chunks);
            (Ok(Attempt::Stream(Box::pin(whole))), attempt)
        }
        // Ended without a chunk (`[DONE]` at once): the stream is spent, and an unfold stream
        // must not be polled again once it has ended.
        None => (
            Ok(Attempt::Stream(Box::pin(futures_util::stream::empty()))),
            attempt,
        ),
    }
}

/// An attempt span that is ended as abandoned if the wait holding it is dropped.
struct AbandonOnDrop(Option<AttemptTrace>);

impl AbandonOnDrop {
    fn defuse(mut self) -> Option<AttemptTrace> {
        self.0.take()
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.abandon();
        }
    }
}

/// A chat attempt's answer in the text-completion shape (`completion_as_chat`).
fn chat_as_completion(answer: Attempt) -> Attempt {
    match answer {
        Attempt::Full(Response::Chat(c)) => {
            Attempt::Full(Response::Completion(crate::completion_as_chat::response(c)))
        }
        Attempt::Stream(chunks) => Attempt::Stream(Box::pin(chunks.map(|chunk| {
            chunk.map(|c| match c {
                Chunk::Chat(c) => Chunk::Completion(crate::completion_as_chat::chunk(c)),
                other => other,
            })
        }))),
        other => other,
    }
}

fn transport_error(provider: &str, host: &str, e: TransportError) -> Error {
    // Say whether the upstream was reached: a refused connection and a reset mid-answer call
    // for different fixes (address vs upstream health).
    let detail = e.detail;
    let message = if e.connect {
        format!("could not reach {provider} at {host}: {detail}")
    } else {
        format!("the connection to {provider} at {host} broke before a complete answer: {detail}")
    };
    Error::new(ErrorKind::Connection, message).with_provider(provider)
}

#[allow(clippy::too_many_arguments)]
async fn http_attempt(
    provider: &dyn provider::HttpProvider,
    target: &Target<'_>,
    send: impl std::future::Future<Output = Result<UpstreamResponse, TransportError>>,
    host: &str,
    op: Operation,
    stream: bool,
    first_byte: Duration,
    total: Duration,
    attempt: Option<&AttemptTrace>,
) -> Result<Attempt, Error> {
    let id = provider.id();
    let started = Instant::now();
    let mut response = match tokio::time::timeout(first_byte, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(transport_error(id, host, e)),
        Err(_) => return Err(timeout_error(id, first_byte).with_provider(id)),
    };
    let status = response.status.as_u16();
    if let Some(a) = attempt {
        a.status_code(status);
    }
    let remaining = total.saturating_sub(started.elapsed());
    if !response.status.is_success() {
        let headers = std::mem::take(&mut response.headers);
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
        Ok(Err(e)) => return Err(transport_error(id, host, e)),
        Err(_) => return Err(timeout_error(id, total).with_provider(id)),
    };
    provider
        .parse_response(target, op, &body)
        .map(Attempt::Full)
}
