//! The reference forwarder: the least an HTTP-terminating gateway can do, measured beside
//! Traceway so that its ratios to direct have a floor to be read against.
//!
//! It runs as its own process (the harness starts itself with `--forwarder-upstream`), on a
//! multi-thread tokio runtime with one worker per core as the `traceway` binary does, and is
//! built from the same parts as Traceway's request path: hyper's HTTP/1.1 server in front and
//! hyper-util's pooled client behind. It looks at nothing: every request's method, path, headers
//! and body go to the upstream as they came (the body streamed, not read), and the upstream's
//! answer comes back the same way. `GET /health/liveliness` is answered here, for the cold
//! start probe.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

struct Forwarder {
    client: Client<HttpConnector, Incoming>,
    /// `http://HOST:PORT` of the upstream.
    authority: http::uri::Authority,
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

impl Forwarder {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::GET && req.uri().path() == "/health/liveliness" {
            return plain(StatusCode::OK, "I'm alive!");
        }
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let Ok(uri) = uri else {
            return plain(StatusCode::BAD_REQUEST, "bad request target");
        };
        parts.uri = uri;
        // The client writes the upstream's own Host from the URI.
        parts.headers.remove(header::HOST);
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(BodyExt::boxed),
            Err(_) => plain(StatusCode::BAD_GATEWAY, "upstream request failed"),
        }
    }
}

/// Serves on `127.0.0.1:port`, forwarding to `upstream`, until the process is stopped.
pub async fn serve(port: u16, upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let forwarder = Arc::new(Forwarder {
        client: Client::builder(TokioExecutor::new()).build(connector),
        authority: upstream.to_string().parse()?,
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let forwarder = forwarder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let forwarder = forwarder.clone();
                async move { Ok::<_, std::convert::Infallible>(forwarder.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{self, Kind, Target};
    use crate::upstream;
    use std::time::Duration;

    /// Chat and stream requests through the forwarder reach the mock and come back whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_chat_and_streams_to_the_mock() {
        let up = upstream::start_small().await;
        let port = crate::process::free_port().unwrap();
        tokio::spawn(serve(port, up.addr));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let live = tokio::task::spawn_blocking(move || {
            (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(5));
                crate::process::live(port)
            })
        });
        assert!(live.await.unwrap(), "no liveliness 200");
        let target = Target::new(addr, "/v1/chat/completions", upstream::MODEL);
        let (status, body) = load::chat_once(&target).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with(b"{\"id\":\"chatcmpl-bench\""));
        let o = load::closed(&target, Kind::Stream, 2, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            o.ok > 0 && o.errors == 0,
            "{} ok, {} errors",
            o.ok,
            o.errors
        );
        assert_eq!(up.requests(), 1 + o.ok);
    }
}
