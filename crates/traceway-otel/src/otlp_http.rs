//! The OTLP/HTTP protobuf span exporter: [`crate::otlp_proto`] bodies POSTed with the blocking
//! reqwest client on the SDK's batch thread.

use crate::otlp_proto::{EncodedResource, export_request};
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Exports span batches as OTLP protobuf over HTTP.
pub(crate) struct OtlpHttpProtobuf {
    client: reqwest::blocking::Client,
    endpoint: url::Url,
    /// The endpoint as errors name it: origin and path, never credentials or a query.
    shown_endpoint: String,
    headers: HeaderMap,
    gzip: bool,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`: one export, retries included.
    timeout: Duration,
    resource: EncodedResource,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for OtlpHttpProtobuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttpProtobuf")
            .field("endpoint", &self.shown_endpoint)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The endpoint is not a URL.
    #[error("endpoint is not a valid URL: {0}")]
    Endpoint(url::ParseError),
}

impl OtlpHttpProtobuf {
    /// An exporter POSTing to `endpoint` (the full traces URL) with `headers`; a pair that is
    /// not valid HTTP is skipped (the configuration reports those before).
    pub(crate) fn new<'a>(
        client: reqwest::blocking::Client,
        endpoint: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        gzip: bool,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let endpoint = url::Url::parse(endpoint).map_err(BuildError::Endpoint)?;
        let shown_endpoint = crate::error_text::shown_url(&endpoint);
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) else {
                continue;
            };
            // Collector credentials: kept out of any debug print of the request.
            v.set_sensitive(true);
            map.append(n, v);
        }
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if gzip {
            map.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(OtlpHttpProtobuf {
            client,
            endpoint,
            shown_endpoint,
            headers: map,
            gzip,
            timeout,
            resource: EncodedResource::default(),
            shut_down: AtomicBool::new(false),
        })
    }

    fn body(&self, batch: &[SpanData]) -> Result<Vec<u8>, OTelSdkError> {
        let raw = export_request(&self.resource, batch);
        if !self.gzip {
            return Ok(raw);
        }
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), Default::default());
        enc.write_all(&raw)
            .and_then(|()| enc.finish())
            .map_err(|e| OTelSdkError::InternalFailure(format!("gzip of the OTLP body: {e}")))
    }
}

/// Retries after the first attempt.
const MAX_RETRIES: u32 = 3;
/// Backoff before the first retry; doubled after each.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest backoff between two attempts (a collector's Retry-After may ask for longer).
const MAX_RETRY_DELAY: Duration = Duration::from_millis(1600);
/// Longest Retry-After honoured.
const MAX_THROTTLE: Duration = Duration::from_secs(600);

/// Whether and when a failed attempt is tried again.
enum Retry {
    No,
    Backoff,
    After(Duration),
}

/// One failed attempt.
struct Failure {
    message: String,
    retry: Retry,
}

/// Up to 100 ms of jitter, so that replicas do not retry in step.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 100))
}

impl OtlpHttpProtobuf {
    fn send_once(&self, body: bytes::Bytes) -> Result<(), Failure> {
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .map_err(|e| Failure {
                message: format!(
                    "OTLP export to {} failed: {}",
                    self.shown_endpoint,
                    crate::error_text::error_chain(&e.without_url(), true)
                ),
                retry: Retry::Backoff,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Retry::Backoff, |s| {
                    Retry::After(Duration::from_secs(s).min(MAX_THROTTLE))
                }),
            502 | 504 => Retry::Backoff,
            _ => Retry::No,
        };
        Err(Failure {
            message: format!(
                "OTLP export to {} failed: HTTP {status}",
                self.shown_endpoint
            ),
            retry,
        })
    }
}

impl SpanExporter for OtlpHttpProtobuf {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let body = bytes::Bytes::from(self.body(&batch)?);
        // OTLP/HTTP's retry rules: 429/502/503/504 and no answer at all are retried with
        // exponential backoff (or the collector's Retry-After), all within the export timeout.
        let started = Instant::now();
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 0.. {
            let failure = match self.send_once(body.clone()) {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let wait = match failure.retry {
                Retry::No => None,
                Retry::After(d) => Some(d),
                Retry::Backoff => Some(delay.saturating_add(jitter()).min(MAX_RETRY_DELAY)),
            };
            let remaining = self.timeout.saturating_sub(started.elapsed());
            match wait {
                Some(w) if attempt < MAX_RETRIES && w < remaining => {
                    std::thread::sleep(w);
                    delay = delay.saturating_mul(2);
                }
                _ => return Err(OTelSdkError::InternalFailure(failure.message)),
            }
        }
        unreachable!("the retry loop returns")
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}
