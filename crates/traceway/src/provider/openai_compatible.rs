//! OpenAI-compatible presets: providers that speak OpenAI's wire format at their own base URL
//! with a Bearer key. A preset is a row of [`PRESETS`]: prefix, default base URL, the env vars
//! its key and base URL are read from (LiteLLM's names, first set wins), and its OTel
//! `gen_ai.provider.name`. Everything else is the `openai` module's translation, plus the few
//! request quirks LiteLLM applies for that provider.
//!
//! Error bodies are parsed tolerantly: besides OpenAI's `{"error":{"message",…}}`, these
//! upstreams answer `{"message": …}` (Mistral, vLLM), `{"error": "<text>", "code": …}` (xAI)
//! or `{"detail": …}` (FastAPI servers), and each keeps its message.

use super::openai::{self, OpenAiStream};
use super::{
    Chunk, HttpProvider, Operation, Request, Response, StreamEvent, StreamParser, Target,
    UpstreamRequest,
};
use crate::error::{Error, ErrorKind};
use crate::sse::SseEvent;
use crate::types::{ErrorBody, Usage};
use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;
use std::sync::Arc;
use traceway_otel::env::Env;

/// Request adjustments a provider needs beyond OpenAI's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// None.
    None,
    /// Mistral: no `stream_options` (usage always comes on the last chunk), `seed` is
    /// `random_seed`, `tool_choice: "required"` is `"any"`, `name` only on tool messages.
    Mistral,
    /// Groq: stream usage arrives in `x_groq.usage` on the last chunk.
    Groq,
}

/// One OpenAI-compatible provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Prefix before the `/` in `provider/model`.
    pub id: &'static str,
    /// The OTel `gen_ai.provider.name` value.
    pub semconv_name: &'static str,
    /// Base URL when neither the deployment nor the env names one (`None`: required).
    pub api_base: Option<&'static str>,
    /// Env vars read for the key, first set wins.
    pub key_env: &'static [&'static str],
    /// Env vars read for the base URL when the deployment names none, first set wins.
    pub base_env: &'static [&'static str],
    /// Request adjustments.
    pub quirk: Quirk,
}

/// `mistral/`: Mistral AI.
pub const MISTRAL: &str = "mistral";
/// `groq/`: Groq.
pub const GROQ: &str = "groq";
/// `deepseek/`: DeepSeek.
pub const DEEPSEEK: &str = "deepseek";
/// `xai/`: xAI.
pub const XAI: &str = "xai";
/// `openrouter/`: OpenRouter.
pub const OPENROUTER: &str = "openrouter";
/// `together_ai/`: Together AI.
pub const TOGETHER_AI: &str = "together_ai";
/// `fireworks_ai/`: Fireworks AI.
pub const FIREWORKS_AI: &str = "fireworks_ai";
/// `perplexity/`: Perplexity.
pub const PERPLEXITY: &str = "perplexity";
/// `hosted_vllm/`: a vLLM server of your own (`api_base` required).
pub const HOSTED_VLLM: &str = "hosted_vllm";

/// Every preset. Base URLs and env var names are LiteLLM's (its provider configs).
pub const PRESETS: &[Preset] = &[
    Preset {
        id: MISTRAL,
        semconv_name: "mistral_ai",
        api_base: Some("https://api.mistral.ai/v1"),
        key_env: &["MISTRAL_API_KEY"],
        base_env: &["MISTRAL_API_BASE"],
        quirk: Quirk::Mistral,
    },
    Preset {
        id: GROQ,
        semconv_name: "groq",
        api_base: Some("https://api.groq.com/openai/v1"),
        key_env: &["GROQ_API_KEY"],
        base_env: &["GROQ_API_BASE"],
        quirk: Quirk::Groq,
    },
    Preset {
        id: DEEPSEEK,
        semconv_name: "deepseek",
        api_base: Some("https://api.deepseek.com/beta"),
        key_env: &["DEEPSEEK_API_KEY"],
        base_env: &["DEEPSEEK_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: XAI,
        semconv_name: "x_ai",
        api_base: Some("https://api.x.ai/v1"),
        key_env: &["XAI_API_KEY"],
        base_env: &["XAI_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: OPENROUTER,
        semconv_name: "openrouter",
        api_base: Some("https://openrouter.ai/api/v1"),
        key_env: &["OPENROUTER_API_KEY", "OR_API_KEY"],
        base_env: &["OPENROUTER_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: TOGETHER_AI,
        semconv_name: "together_ai",
        api_base: Some("https://api.together.xyz/v1"),
        key_env: &[
            "TOGETHER_API_KEY",
            "TOGETHER_AI_API_KEY",
            "TOGETHERAI_API_KEY",
            "TOGETHER_AI_TOKEN",
        ],
        base_env: &["TOGETHER_AI_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: FIREWORKS_AI,
        semconv_name: "fireworks_ai",
        api_base: Some("https://api.fireworks.ai/inference/v1"),
        key_env: &[
            "FIREWORKS_API_KEY",
            "FIREWORKS_AI_API_KEY",
            "FIREWORKSAI_API_KEY",
            "FIREWORKS_AI_TOKEN",
        ],
        base_env: &["FIREWORKS_API_BASE", "FIREWORKS_AI_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: PERPLEXITY,
        semconv_name: "perplexity",
        api_base: Some("https://api.perplexity.ai"),
        key_env: &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        base_env: &["PERPLEXITY_API_BASE"],
        quirk: Quirk::None,
    },
    Preset {
        id: HOSTED_VLLM,
        semconv_name: "vllm",
        api_base: None,
        key_env: &["HOSTED_VLLM_API_KEY"],
        base_env: &["HOSTED_VLLM_API_BASE"],
        quirk: Quirk::None,
    },
];

/// The preset for a prefix.
pub fn preset(prefix: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == prefix)
}

/// The provider serving a preset prefix.
pub fn provider(prefix: &str) -> Option<Arc<dyn HttpProvider>> {
    preset(prefix).map(|p| Arc::new(Compatible(p)) as Arc<dyn HttpProvider>)
}

/// An OpenAI-compatible provider described by a [`Preset`].
#[derive(Debug, Clone, Copy)]
pub struct Compatible(pub &'static Preset);

impl Compatible {
    /// The base URL: the deployment's, else the first env var set, else the preset's default.
    fn base(&self, target: &Target<'_>, env: &dyn Env) -> Result<String, Error> {
        let p = self.0;
        target
            .api_base
            .map(str::to_owned)
            .or_else(|| env.first_set(p.base_env))
            .or_else(|| p.api_base.map(str::to_owned))
            .map(|b| b.trim_end_matches('/').to_owned())
            .ok_or_else(|| {
                Error::bad_request(
                    format!(
                        "{} needs the server's URL: set litellm_params.api_base (e.g. http://localhost:8000/v1) or {}",
                        p.id,
                        p.base_env.join(" / ")
                    ),
                    Some("api_base"),
                )
                .with_provider(p.id)
            })
    }

    pub(crate) fn build_with_env(
        &self,
        target: &Target<'_>,
        request: &Request,
        env: &dyn Env,
    ) -> Result<UpstreamRequest, Error> {
        let base = self.base(target, env)?;
        // Mistral's body is reshaped, from the JSON tree; every other one is written straight.
        let body = if self.0.quirk == Quirk::Mistral {
            let mut body = openai::request_body(target, request)?;
            if let Value::Object(map) = &mut body {
                for f in super::common::SETTINGS_FIELDS {
                    map.remove(*f);
                }
                mistral_body(map);
            }
            super::common::to_body(&body)?
        } else {
            openai::body::write(target, request, super::common::SETTINGS_FIELDS)?.into()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = target.api_key {
            headers.insert(
                header::AUTHORIZATION,
                super::common::secret_header(&format!("Bearer {key}"), "api_key")?,
            );
        }
        let path = match request.operation() {
            Operation::Chat => "/chat/completions",
            Operation::Completion => "/completions",
            Operation::Embedding => "/embeddings",
        };
        Ok(UpstreamRequest {
            url: format!("{base}{path}"),
            headers,
            body,
        })
    }
}

fn mistral_body(map: &mut serde_json::Map<String, Value>) {
    map.remove("stream_options");
    if let Some(seed) = map.remove("seed") {
        map.entry("random_seed").or_insert(seed);
    }
    if map.get("tool_choice").and_then(Value::as_str) == Some("required") {
        map.insert("tool_choice".into(), Value::String("any".into()));
    }
    if let Some(Value::Array(messages)) = map.get_mut("messages") {
        for m in messages.iter_mut().filter_map(Value::as_object_mut) {
            if m.get("role").and_then(Value::as_str) != Some("tool") {
                m.remove("name");
            }
        }
    }
}

/// An OpenAI-compatible stream, with the preset's stream quirks applied to each chunk.
#[derive(Debug)]
struct CompatibleStream {
    inner: OpenAiStream,
    quirk: Quirk,
}

impl StreamParser for CompatibleStream {
    fn parse(&mut self, frame: &SseEvent) -> Result<Vec<StreamEvent>, Error> {
        let mut events = self.inner.parse(frame)?;
        if self.quirk == Quirk::Groq {
            for e in &mut events {
                if let StreamEvent::Chunk(Chunk::Chat(c)) = e
                    && c.usage.is_none()
                    && let Some(u) = c.extra.get("x_groq").and_then(|x| x.get("usage"))
                    && let Ok(u) = serde_json::from_value::<Usage>(u.clone())
                {
                    c.usage = Some(u);
                }
            }
        }
        Ok(events)
    }
}

/// An error from any of the error shapes OpenAI-compatible servers answer with.
pub(crate) fn compat_error(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let mut err = if serde_json::from_slice::<ErrorBody>(body).is_ok() {
        openai::error_from_body(provider, status, headers, body)
    } else {
        other_error(provider, status, headers, body)
    };
    // A 4xx the status table does not list (OpenRouter's 402 "insufficient credits") is the
    // caller's problem, not a broken upstream: a client error that keeps the upstream's status.
    if err.kind == ErrorKind::InvalidResponse && (400..500).contains(&status) {
        err.kind = ErrorKind::BadRequest;
        err.status = Some(status);
    }
    err
}

/// An error from a body that is not OpenAI's error shape.
fn other_error(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let message = value.as_ref().and_then(|v| {
        v.get("error")
            .map(|e| e.get("message").map(text).unwrap_or_else(|| text(e)))
            .or_else(|| v.get("message").map(text))
            .or_else(|| v.get("detail").map(text))
    });
    let code = value
        .as_ref()
        .and_then(|v| match v.get("code").or_else(|| v.get("type")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    let kind = ErrorKind::from_upstream_status(status);
    let mut err = match message {
        Some(m) => Error::new(kind, format!("{provider} returned {status}: {m}")),
        None => Error::new(
            kind,
            format!(
                "{provider} returned {status} with a body that is not an error it documents: {}",
                super::common::snippet(body)
            ),
        ),
    };
    err.code = code;
    if kind == ErrorKind::UpstreamServer {
        err.status = Some(status);
    }
    err.retry_after = openai::retry_after(headers);
    err.with_provider(provider)
}

impl HttpProvider for Compatible {
    fn id(&self) -> &'static str {
        self.0.id
    }

    fn semconv_name(&self) -> &'static str {
        self.0.semconv_name
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        self.0.key_env
    }

    fn build_request(
        &self,
        target: &Target<'_>,
        request: &Request,
    ) -> Result<UpstreamRequest, Error> {
        self.build_with_env(target, request, target.env)
    }

    fn parse_response(
        &self,
        _target: &Target<'_>,
        operation: Operation,
        body: &[u8],
    ) -> Result<Response, Error> {
        openai::parse_openai_response(self.0.id, operation, body)
    }

    fn stream_parser(&self, _target: &Target<'_>, operation: Operation) -> Box<dyn StreamParser> {
        Box::new(CompatibleStream {
            inner: OpenAiStream {
                provider: self.0.id,
                operation,
            },
            quirk: self.0.quirk,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        compat_error(self.0.id, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatCompletionRequest, ChatMessage, Extra, Role};
    use std::collections::HashMap;

    fn chat() -> Request {
        let mut m = ChatMessage::new(Role::User, "hi");
        m.name = Some("alice".into());
        let mut r = ChatCompletionRequest::new("alias", vec![m]);
        r.seed = Some(7);
        r.tool_choice = Some(serde_json::json!("required"));
        r.stream = Some(true);
        r.stream_options = Some(crate::types::StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        });
        Request::Chat(r)
    }

    #[test]
    fn every_preset_has_litellms_default_base_and_key_names() {
        let no_env: HashMap<String, String> = HashMap::new();
        let params = Extra::new();
        let expected = [
            (
                MISTRAL,
                "https://api.mistral.ai/v1/chat/completions",
                "MISTRAL_API_KEY",
                "mistral_ai",
            ),
            (
                GROQ,
                "https://api.groq.com/openai/v1/chat/completions",
                "GROQ_API_KEY",
                "groq",
            ),
            (
                DEEPSEEK,
                "https://api.deepseek.com/beta/chat/completions",
                "DEEPSEEK_API_KEY",
                "deepseek",
            ),
            (
                XAI,
                "https://api.x.ai/v1/chat/completions",
                "XAI_API_KEY",
                "x_ai",
            ),
            (
                OPENROUTER,
                "https://openrouter.ai/api/v1/chat/completions",
                "OPENROUTER_API_KEY",
                "openrouter",
            ),
            (
                TOGETHER_AI,
                "https://api.together.xyz/v1/chat/completions",
                "TOGETHERAI_API_KEY",
                "together_ai",
            ),
            (
                FIREWORKS_AI,
                "https://api.fireworks.ai/inference/v1/chat/completions",
                "FIREWORKS_AI_API_KEY",
                "fireworks_ai",
            ),
            (
                PERPLEXITY,
                "https://api.perplexity.ai/chat/completions",
                "PERPLEXITYAI_API_KEY",
                "perplexity",
            ),
        ];
        for (id, url, key_var, semconv) in expected {
            let p = Compatible(preset(id).unwrap());
            let t = Target {
                env: &traceway_otel::env::ProcessEnv,
                model: "m",
                api_base: None,
                api_key: Some("sk-test"),
                params: &params,
            };
            let up = p.build_with_env(&t, &chat(), &no_env).unwrap();
            assert_eq!(up.url, url, "{id}");
            assert_eq!(up.headers[header::AUTHORIZATION], "Bearer sk-test");
            assert!(up.headers[header::AUTHORIZATION].is_sensitive());
            assert!(p.api_key_env().contains(&key_var), "{id}");
            assert_eq!(p.semconv_name(), semconv);
        }
        assert_eq!(PRESETS.len(), 9);
    }

    #[test]
    fn hosted_vllm_needs_a_base_from_the_deployment_or_env() {
        let params = Extra::new();
        let t = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "meta/llama",
            api_base: None,
            api_key: None,
            params: &params,
        };
        let p = Compatible(preset(HOSTED_VLLM).unwrap());
        let e = p.build_with_env(&t, &chat(), &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("HOSTED_VLLM_API_BASE"), "{}", e.message);
        let env: HashMap<String, String> = [(
            "HOSTED_VLLM_API_BASE".to_owned(),
            "http://gpu:8000/v1/".to_owned(),
        )]
        .into();
        let up = p.build_with_env(&t, &chat(), &env).unwrap();
        assert_eq!(up.url, "http://gpu:8000/v1/chat/completions");
        assert!(
            up.headers.get(header::AUTHORIZATION).is_none(),
            "no key, no header"
        );
    }

    #[test]
    fn mistral_quirks_apply_and_others_pass_through() {
        let params = Extra::new();
        let t = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "mistral-small",
            api_base: None,
            api_key: None,
            params: &params,
        };
        let up = Compatible(preset(MISTRAL).unwrap())
            .build_with_env(&t, &chat(), &HashMap::new())
            .unwrap();
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(b["random_seed"], 7);
        assert!(b.get("seed").is_none() && b.get("stream_options").is_none());
        assert_eq!(b["tool_choice"], "any");
        assert!(b["messages"][0].get("name").is_none());
        let up = Compatible(preset(GROQ).unwrap())
            .build_with_env(&t, &chat(), &HashMap::new())
            .unwrap();
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            (b["seed"].clone(), b["tool_choice"].clone()),
            (7.into(), "required".into())
        );
        assert_eq!(b["messages"][0]["name"], "alice");
    }

    #[test]
    fn error_shapes_of_each_family_keep_their_message() {
        let h = HeaderMap::new();
        let e = compat_error(
            MISTRAL,
            401,
            &h,
            br#"{"message":"Unauthorized","request_id":"abc"}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(e.message.ends_with("Unauthorized"));
        let e = compat_error(
            XAI,
            400,
            &h,
            br#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***"}"#,
        );
        assert!(e.message.contains("Incorrect API key"));
        assert_eq!(
            e.code.as_deref(),
            Some("Client specified an invalid argument")
        );
        let e = compat_error(HOSTED_VLLM, 404, &h, br#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#);
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (ErrorKind::NotFound, Some("404"))
        );
        let e = compat_error(
            OPENROUTER,
            402,
            &h,
            br#"{"error":{"code":402,"message":"Insufficient credits"}}"#,
        );
        assert!(e.message.contains("Insufficient credits"));
        let e = compat_error(GROQ, 503, &h, b"upstream connect error");
        assert_eq!(e.status(), 503);
    }

    #[test]
    fn groq_usage_is_lifted_from_x_groq() {
        let mut s = CompatibleStream {
            inner: OpenAiStream {
                provider: GROQ,
                operation: Operation::Chat,
            },
            quirk: Quirk::Groq,
        };
        let ev = s
            .parse(&SseEvent {
                event: None,
                data: r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}}"#.into(),
            })
            .unwrap();
        match &ev[0] {
            StreamEvent::Chunk(Chunk::Chat(c)) => {
                assert_eq!(c.usage.as_ref().unwrap().total_tokens, 7)
            }
            other => panic!("{other:?}"),
        }
    }
}
