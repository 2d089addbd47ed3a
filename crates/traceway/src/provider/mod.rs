//! Providers: pure translation between OpenAI's format and each upstream's wire format.
//!
//! A provider builds the upstream request, parses the response, stream events and error
//! bodies. The HTTP client, timeouts and spans live once in [`crate::client`], so every provider
//! is sent, timed and traced alike.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub(crate) mod common;
pub mod gemini;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod openai_compatible;

use crate::error::Error;
use crate::sse::SseEvent;
use crate::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionRequest,
    CompletionResponse, EmbeddingRequest, EmbeddingResponse, Extra,
};
use std::sync::Arc;

/// Which endpoint a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `/chat/completions`.
    Chat,
    /// `/completions`.
    Completion,
    /// `/embeddings`.
    Embedding,
}

impl Operation {
    /// The `gen_ai.operation.name` value.
    pub fn semconv_name(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Completion => "text_completion",
            Operation::Embedding => "embeddings",
        }
    }

    /// The `llm.request.type` value (OpenLLMetry).
    pub fn request_type(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Completion => "completion",
            Operation::Embedding => "embedding",
        }
    }
}

/// A request of any operation.
#[derive(Debug, Clone)]
pub enum Request {
    /// A chat completion.
    Chat(ChatCompletionRequest),
    /// A text completion.
    Completion(CompletionRequest),
    /// An embeddings call.
    Embedding(EmbeddingRequest),
}

impl Request {
    /// The operation of this request.
    pub fn operation(&self) -> Operation {
        match self {
            Request::Chat(_) => Operation::Chat,
            Request::Completion(_) => Operation::Completion,
            Request::Embedding(_) => Operation::Embedding,
        }
    }

    /// The `model` the caller asked for.
    pub fn model(&self) -> &str {
        match self {
            Request::Chat(r) => &r.model,
            Request::Completion(r) => &r.model,
            Request::Embedding(r) => &r.model,
        }
    }

    /// Whether the caller asked for a stream.
    pub fn is_stream(&self) -> bool {
        match self {
            Request::Chat(r) => r.is_stream(),
            Request::Completion(r) => r.is_stream(),
            Request::Embedding(_) => false,
        }
    }

    /// Fields the request carries beyond the named ones.
    pub fn extra(&self) -> &Extra {
        match self {
            Request::Chat(r) => &r.extra,
            Request::Completion(r) => &r.extra,
            Request::Embedding(r) => &r.extra,
        }
    }

    /// Whether the caller asked for `stream_options.include_usage`.
    pub fn wants_usage_chunk(&self) -> bool {
        let opts = match self {
            Request::Chat(r) => r.stream_options.as_ref(),
            Request::Completion(r) => r.stream_options.as_ref(),
            Request::Embedding(_) => None,
        };
        opts.and_then(|o| o.include_usage) == Some(true)
    }
}

/// A complete (non-streamed) response of any operation.
#[derive(Debug, Clone)]
pub enum Response {
    /// A chat completion.
    Chat(ChatCompletionResponse),
    /// A text completion.
    Completion(CompletionResponse),
    /// Embeddings.
    Embedding(EmbeddingResponse),
}

/// One chunk of a streamed response.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// A chat chunk.
    Chat(ChatCompletionChunk),
    /// A text completion chunk (same shape as the response).
    Completion(CompletionResponse),
}

/// What one upstream stream frame means.
#[derive(Debug)]
// Produced and consumed at once per frame: boxing the chunk would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum StreamEvent {
    /// A chunk to pass on.
    Chunk(Chunk),
    /// The end of the stream (`[DONE]`, `message_stop`, a final NDJSON line …).
    Done,
    /// Nothing to pass on (keep-alive, ping, an event type with no OpenAI counterpart).
    Skip,
}

/// The deployment details a provider needs to address the upstream.
#[derive(Clone)]
pub struct Target<'a> {
    /// The model name the upstream knows.
    pub model: &'a str,
    /// Base URL of the upstream API.
    pub api_base: Option<&'a str>,
    /// The provider key (never logged or recorded).
    pub api_key: Option<&'a str>,
    /// Extra `litellm_params`: provider settings (`api_version`, `aws_region_name` …) and
    /// body params the provider puts into the request where the caller did not set them.
    pub params: &'a Extra,
    /// Where settings the deployment leaves out are read (`AZURE_API_BASE`, `AWS_REGION`,
    /// `OLLAMA_API_BASE` …): the process environment, or the proxy config's
    /// `environment_variables` over it.
    pub env: &'a dyn traceway_otel::env::Env,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret and the environment may hold others: neither is printed.
        f.debug_struct("Target")
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.map(|_| "<set>"))
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// An HTTP request ready to send upstream (always a POST).
#[derive(Debug)]
pub struct UpstreamRequest {
    /// Full URL.
    pub url: String,
    /// Headers; secret ones are marked sensitive.
    pub headers: http::HeaderMap,
    /// Request body.
    pub body: bytes::Bytes,
}

/// Splits an upstream byte stream into frames: SSE events, NDJSON lines, or a binary framing.
pub trait FrameDecoder: Send {
    /// Feeds bytes, returning the frames they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, Error>;
    /// Ends the stream, returning a last frame left without its terminator.
    fn finish(&mut self) -> Result<Option<SseEvent>, Error>;
}

/// Turns one stream's frames into OpenAI chunks; one per stream, so it may keep state
/// (a response id from the first event, tool-call indices …).
pub trait StreamParser: Send {
    /// Parses one frame into what it means; several chunks may come from one frame.
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error>;
}

/// Translation between OpenAI's format and one HTTP upstream's wire format.
pub trait HttpProvider: Send + Sync + std::fmt::Debug {
    /// Provider prefix as written before the `/` in `provider/model` (`error.llm_provider`).
    fn id(&self) -> &'static str;
    /// The OTel `gen_ai.provider.name` value (`openai`, `anthropic`, `gcp.gemini` …).
    fn semconv_name(&self) -> &'static str {
        self.id()
    }
    /// Env vars read for the key when a deployment names none, first set wins.
    fn api_key_env(&self) -> &'static [&'static str] {
        &[]
    }
    /// Env vars read, once when the deployment is built, for the API base when a deployment
    /// names none, first set wins (providers that read theirs per request leave this empty).
    fn api_base_env(&self) -> &'static [&'static str] {
        &[]
    }
    /// `litellm_params` settings read, once when the deployment is built, from env vars when a
    /// deployment leaves them out: `(param, vars)`, first set var wins.
    fn params_env(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[]
    }
    /// Whether the upstream has a text-completion endpoint. Without one, a text completion is
    /// sent as a one-message chat and its answer turned back (`completion_as_chat`).
    fn serves_completions(&self) -> bool {
        true
    }
    /// Builds the upstream request for `request` (gateway-only fields already present in
    /// `request.extra()` must not be sent).
    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error>;
    /// Parses a 2xx response body.
    fn parse_response(
        &self,
        target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error>;
    /// How the stream body is framed; SSE unless the provider says otherwise.
    fn frame_decoder(&self) -> Box<dyn FrameDecoder> {
        Box::new(crate::sse::SseParser::new())
    }
    /// A parser for one stream of `operation` for `target`.
    fn stream_parser(&self, target: &Target<'_>, operation: Operation) -> Box<dyn StreamParser>;
    /// Turns a non-2xx answer into an error with the upstream's own message.
    fn parse_error(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> Error;
}

/// How a deployment is served.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In process, no network: the mock provider.
    Mock,
    /// Over HTTP through a provider translation.
    Http(Arc<dyn HttpProvider>),
}

impl Backend {
    /// Provider prefix (`error.llm_provider`, messages).
    pub fn id(&self) -> &'static str {
        match self {
            Backend::Mock => mock::ID,
            Backend::Http(p) => p.id(),
        }
    }

    /// The `gen_ai.provider.name` value.
    pub fn semconv_name(&self) -> &'static str {
        match self {
            Backend::Mock => mock::ID,
            Backend::Http(p) => p.semconv_name(),
        }
    }

    /// Env vars read for the key when a deployment names none.
    pub fn api_key_env(&self) -> &'static [&'static str] {
        match self {
            Backend::Mock => &[],
            Backend::Http(p) => p.api_key_env(),
        }
    }

    /// Env vars read for the API base when a deployment names none.
    pub fn api_base_env(&self) -> &'static [&'static str] {
        match self {
            Backend::Mock => &[],
            Backend::Http(p) => p.api_base_env(),
        }
    }

    /// `litellm_params` settings read from env vars when a deployment leaves them out.
    pub fn params_env(&self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Backend::Mock => &[],
            Backend::Http(p) => p.params_env(),
        }
    }
}

/// Provider prefixes this version serves, in the order error messages list them.
pub const KNOWN_PROVIDERS: &[&str] = &[
    mock::ID,
    openai::ID,
    bedrock::ID,
    ollama::ID,
    ollama::CHAT_ID,
    anthropic::ID,
    gemini::ID,
    azure::ID,
    openai_compatible::MISTRAL,
    openai_compatible::GROQ,
    openai_compatible::DEEPSEEK,
    openai_compatible::XAI,
    openai_compatible::OPENROUTER,
    openai_compatible::TOGETHER_AI,
    openai_compatible::FIREWORKS_AI,
    openai_compatible::PERPLEXITY,
    openai_compatible::HOSTED_VLLM,
    cohere::ID,
    cohere::CHAT_ID,
];

/// The backend for a provider prefix, if it is known. Each provider adds one arm here and its
/// prefix to [`KNOWN_PROVIDERS`].
pub fn backend_for(prefix: &str) -> Option<Backend> {
    let http: Arc<dyn HttpProvider> = match prefix {
        mock::ID => return Some(Backend::Mock),
        openai::ID => Arc::new(openai::OpenAi),
        bedrock::ID => Arc::new(bedrock::Bedrock),
        ollama::ID => Arc::new(ollama::Ollama::new(ollama::ID)),
        ollama::CHAT_ID => Arc::new(ollama::Ollama::new(ollama::CHAT_ID)),
        cohere::ID => Arc::new(cohere::Cohere::new(cohere::ID)),
        cohere::CHAT_ID => Arc::new(cohere::Cohere::new(cohere::CHAT_ID)),
        anthropic::ID => Arc::new(anthropic::Anthropic),
        gemini::ID => Arc::new(gemini::Gemini),
        azure::ID => Arc::new(azure::Azure),
        p if openai_compatible::preset(p).is_some() => openai_compatible::provider(p)?,
        _ => return None,
    };
    Some(Backend::Http(http))
}
