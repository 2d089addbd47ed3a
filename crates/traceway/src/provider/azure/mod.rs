//! `azure/<deployment>`: Azure OpenAI. OpenAI's wire format at
//! `{api_base}/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version={api_version}`
//! with an `api-key` header; the model name after `azure/` is the Azure deployment name.
//!
//! `api_base` and `api_version` come from the deployment (`litellm_params.api_base`,
//! `litellm_params.api_version`), else from `AZURE_API_BASE` / `AZURE_API_VERSION`; a missing
//! one is a 400 that names what to set. `api_version: v1` (or `latest`, `preview`) addresses
//! the newer `{api_base}/openai/v1/…` routes, which take the deployment as the body's `model`.
//! Bodies, responses, streams and errors are OpenAI's (the `openai` module's translation);
//! Azure-only answers such as `prompt_filter_results` pass through untouched.

use super::common;
use super::openai::{self, OpenAiStream};
use super::{HttpProvider, Operation, Request, Response, StreamParser, Target, UpstreamRequest};
use crate::error::Error;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::Value;
use traceway_otel::env::Env;

/// Provider id.
pub const ID: &str = "azure";
/// The OTel `gen_ai.provider.name` value.
pub const SEMCONV_NAME: &str = "azure.ai.openai";
/// The Azure OpenAI key (`api-key` header) when the deployment names none.
pub const AZURE_API_KEY: &str = "AZURE_API_KEY";
/// Alternative name of the key variable that LiteLLM also reads.
pub const AZURE_OPENAI_API_KEY: &str = "AZURE_OPENAI_API_KEY";
/// The resource endpoint (`https://<resource>.openai.azure.com`) when the deployment names none.
pub const AZURE_API_BASE: &str = "AZURE_API_BASE";
/// The `api-version` when the deployment names none.
pub const AZURE_API_VERSION: &str = "AZURE_API_VERSION";

/// Azure OpenAI.
#[derive(Debug, Clone, Copy, Default)]
pub struct Azure;

fn endpoint(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "chat/completions",
        Operation::Completion => "completions",
        Operation::Embedding => "embeddings",
    }
}

/// The request URL for `target`, reading `AZURE_API_BASE` / `AZURE_API_VERSION` from `env`
/// where the deployment leaves them out.
pub(crate) fn url(
    target: &Target<'_>,
    operation: Operation,
    env: &dyn Env,
) -> Result<String, Error> {
    let base = target
        .api_base
        .map(str::to_owned)
        .or_else(|| env.var(AZURE_API_BASE).filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            Error::bad_request(
                format!(
                    "azure needs the resource endpoint: set litellm_params.api_base (e.g. https://my-resource.openai.azure.com) or {AZURE_API_BASE}"
                ),
                Some("api_base"),
            )
            .with_provider(ID)
        })?;
    let version = target
        .params
        .get("api_version")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| env.var(AZURE_API_VERSION).filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            Error::bad_request(
                format!(
                    "azure needs an API version: set litellm_params.api_version (e.g. 2024-10-21) or {AZURE_API_VERSION}"
                ),
                Some("api_version"),
            )
            .with_provider(ID)
        })?;
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    let path = endpoint(operation);
    let encoded: String = url::form_urlencoded::byte_serialize(version.as_bytes()).collect();
    Ok(match version.as_str() {
        "v1" | "latest" => format!("{base}/openai/v1/{path}"),
        "preview" => format!("{base}/openai/v1/{path}?api-version=preview"),
        _ => format!(
            "{base}/openai/deployments/{}/{path}?api-version={encoded}",
            target.model
        ),
    })
}

impl Azure {
    pub(crate) fn build_with_env(
        &self,
        target: &Target<'_>,
        request: &Request,
        env: &dyn Env,
    ) -> Result<UpstreamRequest, Error> {
        let url = url(target, request.operation(), env)?;
        let body = openai::body::write(target, request, common::SETTINGS_FIELDS)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = target.api_key {
            headers.insert(
                HeaderName::from_static("api-key"),
                common::secret_header(key, "api_key")?,
            );
        }
        Ok(UpstreamRequest {
            url,
            headers,
            body: body.into(),
        })
    }
}

impl HttpProvider for Azure {
    fn id(&self) -> &'static str {
        ID
    }

    fn semconv_name(&self) -> &'static str {
        SEMCONV_NAME
    }

    fn api_key_env(&self) -> &'static [&'static str] {
        &[AZURE_API_KEY, AZURE_OPENAI_API_KEY]
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
        openai::parse_openai_response(ID, operation, body)
    }

    fn stream_parser(&self, _target: &Target<'_>, operation: Operation) -> Box<dyn StreamParser> {
        Box::new(OpenAiStream {
            provider: ID,
            operation,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        super::openai_compatible::compat_error(ID, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::types::{ChatCompletionRequest, ChatMessage, Extra, Role};
    use std::collections::HashMap;

    fn chat() -> Request {
        Request::Chat(ChatCompletionRequest::new(
            "alias",
            vec![ChatMessage::new(Role::User, "hi")],
        ))
    }

    #[test]
    fn url_header_and_body_take_azures_shape() {
        let mut params = Extra::new();
        params.insert("api_version".into(), "2024-10-21".into());
        params.insert("temperature".into(), 0.2.into());
        let t = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "my-gpt4o",
            api_base: Some("https://res.openai.azure.com/"),
            api_key: Some("azure-key"),
            params: &params,
        };
        let up = Azure.build_with_env(&t, &chat(), &HashMap::new()).unwrap();
        assert_eq!(
            up.url,
            "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(up.headers["api-key"], "azure-key");
        assert!(up.headers["api-key"].is_sensitive());
        assert!(up.headers.get(header::AUTHORIZATION).is_none());
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(
            b.get("api_version").is_none(),
            "a setting, not a body field"
        );
        assert_eq!(b["temperature"], 0.2);
    }

    #[test]
    fn env_fills_base_and_version_and_their_absence_names_what_to_set() {
        let params = Extra::new();
        let t = Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "dep",
            api_base: None,
            api_key: None,
            params: &params,
        };
        let e = url(&t, Operation::Chat, &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("AZURE_API_BASE") && e.message.contains("api_base"));
        let env: HashMap<String, String> = [(
            AZURE_API_BASE.to_owned(),
            "https://r.openai.azure.com/openai".to_owned(),
        )]
        .into();
        let e = url(&t, Operation::Chat, &env).unwrap_err();
        assert!(e.message.contains("AZURE_API_VERSION"), "{}", e.message);
        let mut env = env;
        env.insert(AZURE_API_VERSION.into(), "2024-06-01".into());
        assert_eq!(
            url(&t, Operation::Embedding, &env).unwrap(),
            "https://r.openai.azure.com/openai/deployments/dep/embeddings?api-version=2024-06-01"
        );
        env.insert(AZURE_API_VERSION.into(), "v1".into());
        assert_eq!(
            url(&t, Operation::Chat, &env).unwrap(),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
    }

    #[test]
    fn azure_error_shapes_are_understood() {
        let e = Azure.parse_error(
            401,
            &HeaderMap::new(),
            br#"{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(e.message.contains("Access token is missing"));
        let e = Azure.parse_error(
            400,
            &HeaderMap::new(),
            br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("content_filter"));
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }
}
