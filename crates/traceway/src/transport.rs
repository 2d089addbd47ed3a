//! The HTTP client that carries requests to upstream providers.
//!
//! Without a proxy in the environment, requests go through hyper-util's pooled client directly:
//! reqwest wraps that same client in redirect, retry and URL layers that parsed each request's
//! URL twice more (~13k instructions, a tenth of a proxied request, BENCHMARKS.md "Profile").
//! When `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` is set, requests go through reqwest, which
//! tunnels through the proxy and honours `NO_PROXY`. Redirects are not followed on either path.

use crate::lazy_verifier::LazyVerifier;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use http::header::{ACCEPT, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use traceway_otel::env::Env;
use traceway_otel::error_text::error_chain;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The proxy variables, scheme-specific first (they win over `ALL_PROXY`), each upper then
/// lower case, as curl and reqwest read them.
const HTTPS_PROXY: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_PROXY: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_PROXY: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const NO_PROXY: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Sends upstream requests, over a pool of kept-alive connections (HTTP/1.1, or HTTP/2 where
/// TLS negotiates it).
// One per `Client`, inside its `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transport {
    /// hyper-util's pooled client, no proxy.
    Direct(PooledClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// reqwest with the environment's proxies.
    Proxied(reqwest::Client),
}

/// A request that got no complete answer.
#[derive(Debug)]
pub(crate) struct TransportError {
    /// The upstream was never reached (refused, unresolvable, TLS failed), as opposed to a
    /// connection that broke after the request went out.
    pub(crate) connect: bool,
    /// The causes, one line, for a person (never a header: neither client puts them in errors).
    pub(crate) detail: String,
}

/// An upstream's answer: status and headers, then a body read whole or as a stream.
pub(crate) struct UpstreamResponse {
    /// The HTTP status.
    pub(crate) status: http::StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    body: Body,
}

enum Body {
    Direct(hyper::body::Incoming),
    Proxied(reqwest::Body),
}

/// An answer's body as it arrives, chunk by chunk.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

impl Transport {
    /// The direct client, or reqwest when `env` names a proxy. A proxy URL that does not parse
    /// is an error naming its variable (not its value, which may hold credentials).
    pub(crate) fn from_env(env: &dyn Env) -> Result<Transport, String> {
        let first = |names: [&'static str; 2]| {
            names
                .iter()
                .find_map(|n| env.var(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        // Like curl and reqwest: HTTP_PROXY is ignored under CGI, where a request's `Proxy:`
        // header would arrive as HTTP_PROXY.
        let cgi = env.var("REQUEST_METHOD").is_some();
        let https = first(HTTPS_PROXY);
        let http = first(HTTP_PROXY).filter(|_| !cgi);
        let all = first(ALL_PROXY);
        if https.is_none() && http.is_none() && all.is_none() {
            return direct().map(Transport::Direct);
        }
        let no_proxy = first(NO_PROXY).and_then(|(_, v)| reqwest::NoProxy::from_string(&v));
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true);
        for (setting, make) in [
            (https, reqwest::Proxy::https::<String> as fn(String) -> _),
            (http, reqwest::Proxy::http::<String>),
            (all, reqwest::Proxy::all::<String>),
        ] {
            if let Some((name, url)) = setting {
                let proxy = make(url).map_err(|e| {
                    format!(
                        "{name} is not a valid proxy URL ({})",
                        error_chain(&e, false)
                    )
                })?;
                builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
            }
        }
        builder
            .build()
            .map(Transport::Proxied)
            .map_err(|e| error_chain(&e, true))
    }

    /// Sends a POST of `body` to `uri` (`url` is the same address, for reqwest). An `Accept`
    /// header is added when the provider set none, as reqwest does.
    pub(crate) async fn post(
        &self,
        uri: &http::Uri,
        url: &url::Url,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, TransportError> {
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        match self {
            Transport::Direct(client) => {
                let mut request = http::Request::new(Full::new(body));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = uri.clone();
                *request.headers_mut() = headers;
                let response = client.request(request).await.map_err(|e| TransportError {
                    connect: e.is_connect(),
                    detail: error_chain(&e, false),
                })?;
                let (parts, body) = response.into_parts();
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Body::Direct(body),
                })
            }
            Transport::Proxied(client) => {
                let response = client
                    .post(url.clone())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| TransportError {
                        connect: e.is_connect(),
                        detail: error_chain(&e, false),
                    })?;
                let (parts, body) = http::Response::from(response).into_parts();
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Body::Proxied(body),
                })
            }
        }
    }
}

/// hyper-util's pooled client over rustls (`crypto_provider`, the platform's certificate
/// verifier — the system roots and `SSL_CERT_FILE`, as reqwest uses — loaded off the start-up
/// path by [`LazyVerifier`]).
fn direct() -> Result<PooledClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>, String>
{
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let provider = traceway_otel::exporter::crypto_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(LazyVerifier::new(provider))
        .with_no_client_auth();
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(PooledClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(tls))
}

impl UpstreamResponse {
    /// The whole body.
    pub(crate) async fn bytes(self) -> Result<Bytes, TransportError> {
        match self.body {
            Body::Direct(body) => whole(body).await,
            Body::Proxied(body) => whole(body).await,
        }
    }

    /// The body chunk by chunk as it arrives.
    pub(crate) fn into_stream(self) -> ByteStream {
        match self.body {
            Body::Direct(body) => chunks(body),
            Body::Proxied(body) => chunks(body),
        }
    }
}

async fn whole<B>(body: B) -> Result<Bytes, TransportError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + 'static,
{
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| broken(&e))
}

fn chunks<B>(body: B) -> ByteStream
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + 'static,
{
    Box::pin(body.into_data_stream().map(|r| r.map_err(|e| broken(&e))))
}

/// A body that stopped before its end.
fn broken(e: &(dyn std::error::Error + 'static)) -> TransportError {
    TransportError {
        connect: false,
        detail: error_chain(e, true),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        crate::client::install_crypto_provider();
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn without_a_proxy_variable_requests_go_direct() {
        let e = env(&[("NO_PROXY", "example.com"), ("HTTPS_PROXY", " ")]);
        assert!(matches!(
            Transport::from_env(&e).unwrap(),
            Transport::Direct(_)
        ));
    }

    #[test]
    fn any_proxy_variable_in_either_case_goes_through_reqwest() {
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            let e = env(&[(name, "http://127.0.0.1:3128")]);
            assert!(
                matches!(Transport::from_env(&e).unwrap(), Transport::Proxied(_)),
                "{name}"
            );
        }
    }

    #[test]
    fn http_proxy_is_ignored_under_cgi() {
        let e = env(&[
            ("HTTP_PROXY", "http://127.0.0.1:3128"),
            ("REQUEST_METHOD", "GET"),
        ]);
        assert!(matches!(
            Transport::from_env(&e).unwrap(),
            Transport::Direct(_)
        ));
    }

    #[test]
    fn a_bad_proxy_url_names_its_variable_but_not_its_value() {
        let e = env(&[("HTTPS_PROXY", "http://user:s3cret@[::1")]);
        let err = match Transport::from_env(&e) {
            Err(err) => err,
            Ok(_) => panic!("a bad proxy URL was accepted"),
        };
        assert!(
            err.starts_with("HTTPS_PROXY is not a valid proxy URL"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}
