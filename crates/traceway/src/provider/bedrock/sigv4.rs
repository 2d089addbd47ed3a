//! AWS credentials for Bedrock, from `litellm_params` or the environment (LiteLLM's names), and
//! SigV4 signing of the final request with AWS's own `aws-sigv4` crate.
//!
//! The credentials never leave this module except as the signature: they are not put in the
//! body, not logged, not recorded, and their `Debug` shows only the access key id's presence.

use crate::error::{Error, ErrorKind};
use crate::types::Extra;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::SystemTime;

/// Env var: the AWS access key id (when `litellm_params.aws_access_key_id` is not set).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Env var: the AWS secret access key (when `litellm_params.aws_secret_access_key` is not set).
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Env var: the session token of temporary credentials (when `aws_session_token` is not set).
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// Env var: the Bedrock region, LiteLLM's name (when `aws_region_name` is not set).
pub const AWS_REGION_NAME: &str = "AWS_REGION_NAME";
/// Env var: the AWS SDKs' region variable, read after `AWS_REGION_NAME`.
pub const AWS_REGION: &str = "AWS_REGION";
/// Env var: a Bedrock Runtime endpoint to use instead of the regional one.
pub const AWS_BEDROCK_RUNTIME_ENDPOINT: &str = "AWS_BEDROCK_RUNTIME_ENDPOINT";
/// Env var: a Bedrock API key, sent as a bearer token instead of signing.
pub const AWS_BEARER_TOKEN_BEDROCK: &str = "AWS_BEARER_TOKEN_BEDROCK";

/// `litellm_params` key of the access key id.
pub const PARAM_ACCESS_KEY_ID: &str = "aws_access_key_id";
/// `litellm_params` key of the secret access key.
pub const PARAM_SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
/// `litellm_params` key of the session token.
pub const PARAM_SESSION_TOKEN: &str = "aws_session_token";
/// `litellm_params` key of the region.
pub const PARAM_REGION_NAME: &str = "aws_region_name";
/// `litellm_params` key of the endpoint override.
pub const PARAM_RUNTIME_ENDPOINT: &str = "aws_bedrock_runtime_endpoint";

/// LiteLLM's region when none is configured.
pub const DEFAULT_REGION: &str = "us-west-2";
/// The SigV4 signing name of Bedrock Runtime.
const SIGNING_NAME: &str = "bedrock";

/// A static AWS credential set.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsCredentials(***)")
    }
}

/// The AWS settings of one deployment.
#[derive(Debug, Clone)]
pub(crate) struct AwsSettings {
    /// Credentials to sign with, when any are configured.
    pub credentials: Option<AwsCredentials>,
    /// The region (signing scope and default endpoint).
    pub region: String,
    /// An endpoint override from params or env.
    pub endpoint: Option<String>,
    /// A Bedrock API key from the environment, used when no credentials sign.
    pub bearer_token: Option<String>,
}

/// A string param, rejecting a non-string value by name (never by value: it may be a secret).
fn param<'a>(params: &'a Extra, key: &str) -> Result<Option<&'a str>, Error> {
    match params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::bad_request(
            format!("litellm_params.{key} must be a string"),
            None,
        )),
    }
}

/// Resolves the deployment's AWS settings: each `litellm_params` value first, then its env var.
pub(crate) fn resolve(
    params: &Extra,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsSettings, Error> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let from_params = param(params, PARAM_ACCESS_KEY_ID)?.map(str::to_owned);
    let access_key_id = from_params.clone().or_else(|| env(AWS_ACCESS_KEY_ID));
    let secret_access_key = param(params, PARAM_SECRET_ACCESS_KEY)?
        .map(str::to_owned)
        .or_else(|| env(AWS_SECRET_ACCESS_KEY));
    // A session token belongs to one key pair: the env's token is not paired with a key from params.
    let session_token = match param(params, PARAM_SESSION_TOKEN)? {
        Some(t) => Some(t.to_owned()),
        None if from_params.is_none() => env(AWS_SESSION_TOKEN),
        None => None,
    };
    let credentials = match (access_key_id, secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => Some(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::new(
                ErrorKind::Authentication,
                format!(
                    "an AWS access key id is configured but no secret access key: set litellm_params.{PARAM_SECRET_ACCESS_KEY} or {AWS_SECRET_ACCESS_KEY}"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::new(
                ErrorKind::Authentication,
                format!(
                    "an AWS secret access key is configured but no access key id: set litellm_params.{PARAM_ACCESS_KEY_ID} or {AWS_ACCESS_KEY_ID}"
                ),
            ));
        }
    };
    let region = match param(params, PARAM_REGION_NAME)? {
        Some(r) => r.to_owned(),
        None => env(AWS_REGION_NAME)
            .or_else(|| env(AWS_REGION))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
    };
    if !region
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::bad_request(
            format!("\"{region}\" is not an AWS region name"),
            None,
        ));
    }
    let endpoint = match param(params, PARAM_RUNTIME_ENDPOINT)? {
        Some(e) => Some(e.to_owned()),
        None => env(AWS_BEDROCK_RUNTIME_ENDPOINT),
    };
    Ok(AwsSettings {
        credentials,
        region,
        endpoint,
        bearer_token: env(AWS_BEARER_TOKEN_BEDROCK),
    })
}

/// Signs a POST of `body` to `url` with SigV4 for Bedrock in `region`, adding `x-amz-date`,
/// `x-amz-security-token` (temporary credentials) and `authorization` to `headers`. The headers
/// already in `headers` are signed too.
pub(crate) fn sign_request(
    credentials: &AwsCredentials,
    region: &str,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    time: SystemTime,
) -> Result<(), Error> {
    // The signer needs a host to scope the signature to; checked here so it never has to panic.
    if url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::len))
        .is_none()
    {
        return Err(Error::bad_request(
            format!("the Bedrock endpoint \"{url}\" has no host"),
            Some("api_base"),
        ));
    }
    let identity: Identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "traceway",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing_failed(&e))?
        .into();
    let signed_headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signable = SignableRequest::new(
        "POST",
        url,
        signed_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| signing_failed(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing_failed(&e))?
        .into_parts();
    let (new_headers, _query) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_static(h.name());
        let mut value = HeaderValue::from_str(h.value()).map_err(|_| {
            Error::bad_request(
                "the AWS credentials contain characters not allowed in an HTTP header",
                None,
            )
        })?;
        value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
        headers.insert(name, value);
    }
    Ok(())
}

fn signing_failed(e: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("could not sign the Bedrock request: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn params(pairs: &[(&str, &str)]) -> Extra {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect()
    }

    #[test]
    fn params_win_over_env_and_env_tokens_stay_with_env_keys() {
        let e = env(&[
            (AWS_ACCESS_KEY_ID, "AKENV"),
            (AWS_SECRET_ACCESS_KEY, "env-secret"),
            (AWS_SESSION_TOKEN, "env-token"),
            (AWS_REGION, "eu-west-1"),
        ]);
        let s = resolve(&Extra::new(), &e).unwrap();
        let c = s.credentials.unwrap();
        assert_eq!(c.access_key_id, "AKENV");
        assert_eq!(c.session_token.as_deref(), Some("env-token"));
        assert_eq!(s.region, "eu-west-1");

        let p = params(&[
            (PARAM_ACCESS_KEY_ID, "AKPARAM"),
            (PARAM_SECRET_ACCESS_KEY, "param-secret"),
            (PARAM_REGION_NAME, "us-east-1"),
        ]);
        let s = resolve(&p, &e).unwrap();
        let c = s.credentials.unwrap();
        assert_eq!(c.access_key_id, "AKPARAM");
        assert_eq!(c.secret_access_key, "param-secret");
        assert_eq!(
            c.session_token, None,
            "the env token belongs to the env key"
        );
        assert_eq!(s.region, "us-east-1");
        assert!(!format!("{c:?}").contains("param-secret"));
    }

    #[test]
    fn defaults_half_pairs_and_bad_values() {
        let s = resolve(&Extra::new(), &env(&[])).unwrap();
        assert!(s.credentials.is_none());
        assert_eq!(s.region, DEFAULT_REGION);
        let e = resolve(&params(&[(PARAM_ACCESS_KEY_ID, "AK")]), &env(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Authentication);
        let mut p = Extra::new();
        p.insert(PARAM_SECRET_ACCESS_KEY.into(), serde_json::json!(42));
        let e = resolve(&p, &env(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(!e.message.contains("42"));
        let e = resolve(&params(&[(PARAM_REGION_NAME, "us/../x")]), &env(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn signs_with_the_documented_header_shape() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("session-token-1".into()),
        };
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        sign_request(
            &creds,
            "us-east-1",
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse",
            &mut h,
            b"{}",
            t,
        )
        .unwrap();
        let auth = h[http::header::AUTHORIZATION].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
        ), "{auth}");
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(h["x-amz-security-token"], "session-token-1");
        assert!(h[http::header::AUTHORIZATION].is_sensitive());
        assert!(h["x-amz-security-token"].is_sensitive());
        let e = sign_request(&creds, "us-east-1", "not a url", &mut h, b"", t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }
}
