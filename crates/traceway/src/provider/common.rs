//! Translation helpers shared by the providers whose wire format is not OpenAI's
//! (Anthropic, Gemini): the merged chat request, data URLs, ids, headers and bodies.

use super::{Request, Target};
use crate::error::{Error, ErrorKind};
use crate::types::{ChatCompletionRequest, Extra};
use http::HeaderValue;
use serde_json::Value;

/// OpenAI request fields with no counterpart upstream that are dropped rather than sent, so an
/// OpenAI client's harmless defaults (`store`, `service_tier` …) do not turn into a 400.
pub(crate) const OPENAI_ONLY_FIELDS: &[&str] = &[
    "store",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
    "functions",
    "function_call",
];

/// `litellm_params` entries that configure the provider and never belong in a request body.
pub(crate) const SETTINGS_FIELDS: &[&str] = &[
    "api_version",
    "api_type",
    "organization",
    "drop_params",
    "additional_drop_params",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "aws_region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_ad_token",
];

/// The caller's chat request with the deployment's params filled in where the caller did not
/// set them, gateway-only fields removed and the upstream model name set.
pub(crate) fn merged_chat(
    target: &Target<'_>,
    request: &Request,
) -> Result<ChatCompletionRequest, Error> {
    let value = super::openai::request_body(target, request)?;
    let mut chat: ChatCompletionRequest = serde_json::from_value(value).map_err(|e| {
        Error::bad_request(
            format!("the request is not a valid chat request: {e}"),
            None,
        )
    })?;
    for f in SETTINGS_FIELDS {
        chat.extra.remove(*f);
    }
    Ok(chat)
}

/// Removes the OpenAI-only fields from `extra`, leaving the ones meant for the upstream.
pub(crate) fn drop_openai_only(extra: &mut Extra) {
    for f in OPENAI_ONLY_FIELDS {
        extra.remove(*f);
    }
}

/// A `data:<mime>;base64,<data>` URL split into its media type and base64 payload.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((
        if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        },
        data,
    ))
}

/// The URL inside an OpenAI `image_url` value (`"…"` or `{"url": "…", "detail": …}`).
pub(crate) fn image_url(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("url").and_then(Value::as_str),
        _ => None,
    }
}

/// A media type guessed from a URL's file extension, for upstreams that need one with a URL.
pub(crate) fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "txt" => "text/plain",
        _ => "image/jpeg",
    }
}

/// A fresh id for a tool call the upstream did not name (`call_…`).
pub(crate) fn tool_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh response id for an upstream that sends none (`chatcmpl-…`).
pub(crate) fn response_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// The thinking budget LiteLLM maps an OpenAI `reasoning_effort` to (`none`/`disable` → 0).
pub(crate) fn reasoning_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" => Some(512),
        "low" => Some(1024),
        "medium" => Some(2048),
        "high" => Some(4096),
        "none" | "disable" => Some(0),
        _ => None,
    }
}

/// A header value holding a secret, marked sensitive so it is never logged.
pub(crate) fn secret_header(value: &str, what: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::BadRequest,
            format!("the deployment's {what} contains characters not allowed in an HTTP header"),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Serialises an upstream request body.
pub(crate) fn to_body<T: serde::Serialize>(body: &T) -> Result<bytes::Bytes, Error> {
    serde_json::to_vec(body).map(Into::into).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })
}

/// A 400 for an operation the provider has no endpoint for.
pub(crate) fn unsupported(provider: &str, what: &str) -> Error {
    Error::bad_request(format!("{provider} does not serve {what}"), None).with_provider(provider)
}

/// The first 200 characters of a body that is not the expected error shape.
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// A tool call's arguments string as a JSON value: an empty string is `{}`, invalid JSON a 400
/// (the upstream wants an object, and guessing would change what the model sees).
pub(crate) fn arguments_value(arguments: &str, name: &str) -> Result<Value, Error> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Extra::new()));
    }
    serde_json::from_str(arguments).map_err(|e| {
        Error::bad_request(
            format!("the arguments of the tool call to \"{name}\" are not valid JSON: {e}"),
            Some("messages"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_split_and_other_urls_do_not() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(mime_from_url("https://x/a.PNG?x=1"), "image/png");
    }

    #[test]
    fn arguments_parse_or_fail_with_the_tool_name() {
        assert_eq!(arguments_value("", "f").unwrap(), serde_json::json!({}));
        assert_eq!(arguments_value("{\"a\":1}", "f").unwrap()["a"], 1);
        let e = arguments_value("{oops", "get_weather").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("get_weather"));
    }
}
