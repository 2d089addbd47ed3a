//! An in-process Bedrock Runtime: Converse, ConverseStream (AWS event-stream binary frames,
//! built here from the JSON fixtures in `fixtures/bedrock/`) and InvokeModel for Titan and
//! Cohere embeddings. Every request's SigV4 `Authorization` header is checked by recomputing the
//! signature with the test credentials, independently of the signer under test; a request that
//! fails the check gets Bedrock's own 403.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scripted_upstream::{Recorded, Reply, ScriptedUpstream};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A Converse response with text.
pub const CONVERSE: &str = include_str!("../fixtures/bedrock/converse.json");
/// A Converse response that calls a tool, with prompt-cache usage.
pub const CONVERSE_TOOL_USE: &str = include_str!("../fixtures/bedrock/converse_tool_use.json");
/// A ConverseStream with text, as JSON frames.
pub const CONVERSE_STREAM: &str = include_str!("../fixtures/bedrock/converse_stream.json");
/// A ConverseStream that calls a tool, as JSON frames.
pub const CONVERSE_STREAM_TOOL_USE: &str =
    include_str!("../fixtures/bedrock/converse_stream_tool_use.json");
/// A ConverseStream cut by a `throttlingException` frame.
pub const CONVERSE_STREAM_THROTTLED: &str =
    include_str!("../fixtures/bedrock/converse_stream_throttled.json");
/// A Titan text embeddings InvokeModel response.
pub const TITAN_EMBEDDING: &str = include_str!("../fixtures/bedrock/titan_embedding.json");
/// A Cohere embeddings InvokeModel response (two inputs).
pub const COHERE_EMBEDDING: &str = include_str!("../fixtures/bedrock/cohere_embedding.json");
/// 400 `ValidationException` body.
pub const VALIDATION_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/validation_exception.json");
/// 429 `ThrottlingException` body.
pub const THROTTLING_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/throttling_exception.json");
/// 403 `AccessDeniedException` body.
pub const ACCESS_DENIED_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/access_denied_exception.json");
/// 403 `UnrecognizedClientException` body (a bad access key).
pub const UNRECOGNIZED_CLIENT_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/unrecognized_client_exception.json");
/// 403 `InvalidSignatureException` body (a bad secret key or signature).
pub const INVALID_SIGNATURE_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/invalid_signature_exception.json");
/// 404 `ResourceNotFoundException` body.
pub const RESOURCE_NOT_FOUND_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/resource_not_found_exception.json");
/// 429 `ModelNotReadyException` body.
pub const MODEL_NOT_READY_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/model_not_ready_exception.json");
/// 503 `ServiceUnavailableException` body.
pub const SERVICE_UNAVAILABLE_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/service_unavailable_exception.json");
/// 500 `InternalServerException` body.
pub const INTERNAL_SERVER_EXCEPTION: &str =
    include_str!("../fixtures/bedrock/internal_server_exception.json");

/// The test access key id the mock accepts.
pub const TEST_ACCESS_KEY_ID: &str = "AKIDTRACEWAYTEST0001";
/// The test secret key the mock signs with.
pub const TEST_SECRET_ACCESS_KEY: &str = "tRaCeWaY/TeSt+SeCrEt/KeY0000000000000001";
/// The test session token the mock expects when temporary credentials are used.
pub const TEST_SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE-traceway-session-token";
/// The region the mock expects in the signature scope.
pub const TEST_REGION: &str = "us-east-1";
/// The content type of an event stream.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The credentials a [`BedrockUpstream`] verifies signatures with.
#[derive(Debug, Clone)]
pub struct TestCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, when the client must send one.
    pub session_token: Option<String>,
    /// Region of the signature scope.
    pub region: String,
    /// A Bedrock API key accepted as `Authorization: Bearer …` instead of a signature.
    pub bearer_token: Option<String>,
}

impl Default for TestCredentials {
    fn default() -> Self {
        TestCredentials {
            access_key_id: TEST_ACCESS_KEY_ID.into(),
            secret_access_key: TEST_SECRET_ACCESS_KEY.into(),
            session_token: Some(TEST_SESSION_TOKEN.into()),
            region: TEST_REGION.into(),
            bearer_token: None,
        }
    }
}

/// A Bedrock error reply: the body, and the exception type in `x-amzn-errortype` as Bedrock
/// sends it (with its namespace suffix).
pub fn exception(status: u16, exception_type: &str, body: &str) -> Reply {
    Reply::json(status, body)
        .with_header(
            "x-amzn-errortype",
            &format!("{exception_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        )
        .with_header("x-amzn-requestid", "6f5c9a1e-0b7d-4c3e-9a2f-1d8e7c6b5a43")
}

/// Encodes one event-stream message: prelude (total length, headers length, CRC32), string
/// headers, payload, message CRC32, all big-endian.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7); // string
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event message (`:message-type` event) with a JSON payload.
pub fn event_frame(event_type: &str, payload: &Value) -> Bytes {
    encode_message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
    .into()
}

/// An exception message (`:message-type` exception) with a JSON payload.
pub fn exception_frame(exception_type: &str, payload: &Value) -> Bytes {
    encode_message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.to_string().as_bytes(),
    )
    .into()
}

/// The binary frames of a JSON stream fixture: `[{"event": type, "payload": {…}}` or
/// `{"exception": type, "payload": {…}}, …]`.
pub fn stream_frames(fixture: &str) -> Vec<Bytes> {
    let frames: Vec<Value> = serde_json::from_str(fixture).expect("stream fixture is JSON");
    frames
        .iter()
        .map(|f| {
            let payload = &f["payload"];
            match (f["event"].as_str(), f["exception"].as_str()) {
                (Some(e), _) => event_frame(e, payload),
                (None, Some(x)) => exception_frame(x, payload),
                _ => panic!("a frame names neither event nor exception: {f}"),
            }
        })
        .collect()
}

/// A 200 event stream of a JSON stream fixture.
pub fn stream_reply(fixture: &str) -> Reply {
    Reply::stream(EVENT_STREAM_CONTENT_TYPE, stream_frames(fixture))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// HMAC-SHA256 (RFC 2104), written out so the check shares no code with the signer.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// The canonical URI of a request path as sent: each byte outside the unreserved set and `/`
/// percent-encoded once more (SigV4 encodes paths twice for every service but S3).
fn canonical_uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Recomputes a request's SigV4 signature with `creds` and compares it with the one sent.
pub fn verify_sigv4(r: &Recorded, creds: &TestCredentials) -> Result<(), String> {
    let auth = r.header("authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not a SigV4 Authorization header: {auth}"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(format!("unexpected Authorization part {part:?}")),
        }
    }
    let (credential, signed_headers, signature) = match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(format!("incomplete Authorization header: {auth}")),
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("bad credential scope {credential}"));
    };
    if *key_id != creds.access_key_id {
        return Err(format!("unknown access key id {key_id}"));
    }
    if *region != creds.region || *service != "bedrock" {
        return Err(format!(
            "scope {region}/{service} is not {}/bedrock",
            creds.region
        ));
    }
    let amz_date = r.header("x-amz-date").ok_or("no x-amz-date header")?;
    if !amz_date.starts_with(date) {
        return Err(format!("x-amz-date {amz_date} is not of scope date {date}"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    if let Some(token) = &creds.session_token {
        if r.header("x-amz-security-token") != Some(token.as_str()) {
            return Err("the session token is missing or wrong".into());
        }
        if !names.contains(&"x-amz-security-token") {
            return Err("the session token is not signed".into());
        }
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = r
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} was not sent"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut query: Vec<&str> = r
        .query
        .as_deref()
        .map(|q| q.split('&').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    query.sort_unstable();
    let canonical_request = format!(
        "POST\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        canonical_uri(&r.path),
        query.join("&"),
        sha256_hex(&r.raw)
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [*region, "bedrock", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err(format!(
            "signature mismatch; canonical request was:\n{canonical_request}"
        ));
    }
    Ok(())
}

/// Whether a Converse request offers tools and is not answering a tool call already.
fn wants_tool(r: &Recorded) -> bool {
    let offers = r
        .body
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let answering = r
        .body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    offers && !answering
}

fn fixture(r: &Recorded) -> Reply {
    let path = r.path.as_str();
    if path.ends_with("/converse") {
        Reply::ok(if wants_tool(r) {
            CONVERSE_TOOL_USE
        } else {
            CONVERSE
        })
    } else if path.ends_with("/converse-stream") {
        stream_reply(if wants_tool(r) {
            CONVERSE_STREAM_TOOL_USE
        } else {
            CONVERSE_STREAM
        })
    } else if path.ends_with("/invoke") && path.contains("titan-embed") {
        Reply::ok(TITAN_EMBEDDING)
    } else if path.ends_with("/invoke") && path.contains("cohere.embed") {
        Reply::ok(COHERE_EMBEDDING)
    } else {
        exception(404, "UnknownOperationException", r#"{"message":null}"#)
    }
}

/// The running mock; stops when dropped. Derefs to the [`ScriptedUpstream`] it runs on.
pub struct BedrockUpstream {
    inner: ScriptedUpstream,
    creds: TestCredentials,
}

impl std::ops::Deref for BedrockUpstream {
    type Target = ScriptedUpstream;
    fn deref(&self) -> &ScriptedUpstream {
        &self.inner
    }
}

impl BedrockUpstream {
    /// Starts with the default test credentials (session token included).
    pub async fn start() -> BedrockUpstream {
        BedrockUpstream::start_with(TestCredentials::default()).await
    }

    /// Starts verifying signatures with `creds`.
    pub async fn start_with(creds: TestCredentials) -> BedrockUpstream {
        let check_creds = creds.clone();
        let check = Arc::new(move |r: &Recorded| {
            if let (Some(token), Some(auth)) =
                (&check_creds.bearer_token, r.header("authorization"))
                && auth.strip_prefix("Bearer ") == Some(token.as_str())
            {
                return None;
            }
            match verify_sigv4(r, &check_creds) {
                Ok(()) => None,
                Err(_) if r.header("authorization").is_none() => Some(exception(
                    403,
                    "MissingAuthenticationTokenException",
                    r#"{"message":"Missing Authentication Token"}"#,
                )),
                Err(_) => Some(exception(
                    403,
                    "InvalidSignatureException",
                    INVALID_SIGNATURE_EXCEPTION,
                )),
            }
        });
        let inner = ScriptedUpstream::start(Arc::new(fixture), Some(check)).await;
        BedrockUpstream { inner, creds }
    }

    /// The `api_base` to configure (the endpoint root; paths start with `/model/`).
    pub fn api_base(&self) -> String {
        self.inner.url()
    }

    /// The credentials signatures are checked with.
    pub fn credentials(&self) -> &TestCredentials {
        &self.creds
    }

    /// Recomputes the signature of every request received so far.
    pub fn verify_all(&self) -> Result<(), String> {
        self.requests()
            .iter()
            .try_for_each(|r| verify_sigv4(r, &self.creds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn frames_have_valid_lengths_and_checksums() {
        let f = event_frame(
            "messageStop",
            &serde_json::json!({"stopReason": "end_turn"}),
        );
        let total = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(total, f.len());
        assert_eq!(
            crc32fast::hash(&f[..8]),
            u32::from_be_bytes([f[8], f[9], f[10], f[11]])
        );
        let n = f.len();
        assert_eq!(
            crc32fast::hash(&f[..n - 4]),
            u32::from_be_bytes([f[n - 4], f[n - 3], f[n - 2], f[n - 1]])
        );
        assert_eq!(stream_frames(CONVERSE_STREAM_THROTTLED).len(), 3);
    }
}
