//! The metadata proxy: a small HTTP forwarder that runs inside a tenant
//! namespace (a router's or an isolated network's DHCP namespace), listens
//! where guests reach 169.254.169.254, and relays each request to the
//! control plane's unix socket with who is asking:
//!
//! - `X-Forwarded-For`: the guest's source IP, as the TCP connection shows it
//!   (anti-spoofing on the port guarantees it is the port's own);
//! - `X-OxiStack-Network-ID`: the network the proxy serves.
//!
//! The control plane resolves the instance from those two. Headers of the
//! same names sent by the guest are removed, so a guest cannot pose as
//! another. It is run as `oxistack metadata-proxy --network-id N --upstream
//! SOCK --listen ADDR --pid-file FILE`; it writes its pid once it listens,
//! which is how the agent knows it is up.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const FORWARDED_FOR: &str = "x-forwarded-for";
pub const NETWORK_ID: &str = "x-oxistack-network-id";

/// The proxy's settings (the `oxistack metadata-proxy` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataProxyConfig {
    pub network_id: String,
    /// The control plane's metadata unix socket.
    pub upstream: PathBuf,
    pub listen: SocketAddr,
    /// Written with the proxy's pid once it listens.
    pub pid_file: Option<PathBuf>,
}

/// Binds, writes the pidfile, and serves until the process is killed.
pub async fn run(config: MetadataProxyConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    if let Some(p) = &config.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    serve(listener, config.network_id, config.upstream).await
}

/// Serves on an already bound listener (tests bind an ephemeral port).
pub async fn serve(
    listener: TcpListener,
    network_id: String,
    upstream: PathBuf,
) -> std::io::Result<()> {
    let shared = Arc::new((network_id, upstream));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metadata proxy: accept failed");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(forward(req, peer, &shared.0, &shared.1).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, client = %peer, "metadata proxy: connection ended");
            }
        });
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn error(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Removes what the guest claims about itself and adds what we know.
pub fn identify<B>(
    req: &mut Request<B>,
    client: IpAddr,
    network_id: &str,
) -> Result<(), http::header::InvalidHeaderValue> {
    let headers = req.headers_mut();
    let theirs: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-oxistack-"))
        .cloned()
        .collect();
    for k in theirs {
        headers.remove(k);
    }
    headers.remove(FORWARDED_FOR);
    headers.insert(FORWARDED_FOR, HeaderValue::from_str(&client.to_string())?);
    headers.insert(NETWORK_ID, HeaderValue::from_str(network_id)?);
    Ok(())
}

async fn forward(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    network_id: &str,
    upstream: &Path,
) -> Response<ProxyBody> {
    // IPv4-mapped addresses appear when listening on a dual-stack socket.
    let client = match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    if identify(&mut req, client, network_id).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "bad network id\n");
    }
    // Only the path goes upstream; the Host header stays as the guest sent it.
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.as_str().parse().unwrap_or_default();
    }
    let stream = match oxistack_sys::unix_socket::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, upstream = %upstream.display(), "metadata proxy: upstream unreachable");
            return error(StatusCode::BAD_GATEWAY, "metadata service unavailable\n");
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "metadata proxy: upstream handshake failed");
            return error(StatusCode::BAD_GATEWAY, "metadata service unavailable\n");
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    match sender.send_request(req).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => {
            tracing::warn!(error = %e, "metadata proxy: upstream request failed");
            error(StatusCode::BAD_GATEWAY, "metadata service unavailable\n")
        }
    }
}
