//! The metadata proxy against a real unix-socket upstream over real TCP.

use std::convert::Infallible;
use std::path::PathBuf;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oxistack_netdev::metadata_proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};

/// An upstream that answers with the request line and the identity headers.
async fn upstream(path: PathBuf) {
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let h = |k: &str| {
                        req.headers()
                            .get_all(k)
                            .iter()
                            .map(|v| v.to_str().unwrap().to_string())
                            .collect::<Vec<_>>()
                            .join("|")
                    };
                    let body = format!(
                        "{} {}\nfor={}\nnet={}\nhost={}\n",
                        req.method(),
                        req.uri(),
                        h("x-forwarded-for"),
                        h("x-oxistack-network-id"),
                        h("host")
                    );
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

async fn get(addr: std::net::SocketAddr, extra_headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /openstack/latest/meta_data.json?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn proxy(upstream: PathBuf, network: &str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(metadata_proxy::serve(
        listener,
        network.to_string(),
        upstream,
    ));
    addr
}

#[tokio::test]
async fn forwards_with_the_clients_identity_and_drops_what_it_claims() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("metadata.sock");
    upstream(sock.clone()).await;
    let addr = proxy(sock, "net-1").await;

    let plain = get(addr, "").await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(
        plain.contains("GET /openstack/latest/meta_data.json?x=1\n"),
        "{plain}"
    );
    assert!(plain.contains("for=127.0.0.1\n"), "{plain}");
    assert!(plain.contains("net=net-1\n"), "{plain}");
    assert!(plain.contains("host=169.254.169.254\n"), "{plain}");

    let spoofed = get(
        addr,
        "X-Forwarded-For: 10.0.0.99\r\nX-OxiStack-Network-ID: other\r\nX-OxiStack-Instance: x\r\n",
    )
    .await;
    assert!(spoofed.contains("for=127.0.0.1\n"), "{spoofed}");
    assert!(spoofed.contains("net=net-1\n"), "{spoofed}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_bad_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let addr = proxy(dir.path().join("nobody-listens.sock"), "net-1").await;
    let r = get(addr, "").await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
}

#[tokio::test]
async fn run_writes_its_pidfile_once_listening() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("metadata.sock");
    upstream(sock.clone()).await;
    // Find a free port, then let `run` bind it.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pid_file = dir.path().join("pid");
    let config = metadata_proxy::MetadataProxyConfig {
        network_id: "net-2".into(),
        upstream: sock,
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        pid_file: Some(pid_file.clone()),
    };
    tokio::spawn(metadata_proxy::run(config));
    let mut written = None;
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(&pid_file) {
            written = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(written.unwrap().trim(), std::process::id().to_string());
    let r = get(format!("127.0.0.1:{port}").parse().unwrap(), "").await;
    assert!(r.contains("net=net-2\n"), "{r}");
}
