//! The metadata service guests reach at http://169.254.169.254, served on a
//! unix socket of the control plane: the metadata proxy in each tenant
//! network's namespace forwards guests' requests there, adding the network
//! id (`X-OxiStack-Network-ID`) and the guest's address (`X-Forwarded-For`),
//! which name the instance (see `compute::metadata`).
//!
//! Trees served, as Nova's metadata API has them:
//! - `/openstack[/<version>|/latest]/{meta_data.json, user_data,
//!   network_data.json, vendor_data.json, vendor_data2.json, password}`
//! - `/[<ec2 version>|latest]/{meta-data/…, user-data}`

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use oxistack_bus::metadata::{files, EC2_VERSION, OPENSTACK_VERSION, OPENSTACK_VERSIONS};
use oxistack_bus::InstanceSpec;
use oxistack_model::{AppError, NetworkId};
use serde_json::Value;

use crate::AppState;

/// EC2 metadata versions listed at `/`.
const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

pub fn router(state: AppState) -> Router {
    Router::new().fallback(serve).with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

fn error(e: &AppError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(
        status,
        format!(
            "{} {}\n\n{}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            e.message
        ),
    )
}

async fn serve(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let network: Option<NetworkId> = header("x-oxistack-network-id").and_then(|n| n.parse().ok());
    let ip: Option<IpAddr> = header("x-forwarded-for")
        .and_then(|f| f.split(',').next())
        .and_then(|a| a.trim().parse().ok());
    let (Some(network), Some(ip)) = (network, ip) else {
        return error(&AppError::bad_request(
            "The request did not come through a metadata proxy.",
        ));
    };
    let spec = match state.compute.metadata_spec(&network, &ip).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%network, %ip, error = %e, "metadata request from an unknown address");
            return error(&e);
        }
    };
    let path = uri.path().trim_matches('/').to_string();
    let parts: Vec<&str> = if path.is_empty() {
        vec![]
    } else {
        path.split('/').collect()
    };
    match parts.as_slice() {
        ["openstack", version, "password"] if known_openstack(version) => {
            password(&state, &spec, &method, &body).await
        }
        _ if method != Method::GET && method != Method::HEAD => {
            text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n")
        }
        [] => text(
            StatusCode::OK,
            listing(EC2_VERSIONS.iter().copied().chain(["latest"])),
        ),
        ["openstack"] => text(
            StatusCode::OK,
            listing(OPENSTACK_VERSIONS.iter().copied().chain(["latest"])),
        ),
        ["openstack", version] if known_openstack(version) => {
            let mut names = vec![
                "meta_data.json",
                "password",
                "vendor_data.json",
                "network_data.json",
                "vendor_data2.json",
            ];
            if spec.user_data.is_some() {
                names.push("user_data");
            }
            text(StatusCode::OK, listing(names))
        }
        ["openstack", version, doc] if known_openstack(version) => {
            document(&spec, &format!("openstack/{OPENSTACK_VERSION}/{doc}"))
        }
        [version] if known_ec2(version) => {
            text(StatusCode::OK, listing(["meta-data/", "user-data"]))
        }
        [version, "user-data"] if known_ec2(version) => {
            document(&spec, &format!("ec2/{EC2_VERSION}/user-data"))
        }
        [version, "meta-data", rest @ ..] if known_ec2(version) => ec2_tree(&spec, rest),
        _ => text(
            StatusCode::NOT_FOUND,
            "404 Not Found\n\nThe resource could not be found.\n",
        ),
    }
}

fn known_openstack(v: &str) -> bool {
    v == "latest" || OPENSTACK_VERSIONS.contains(&v)
}

fn known_ec2(v: &str) -> bool {
    v == "latest" || EC2_VERSIONS.contains(&v)
}

fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join("\n")
}

/// A document of the config-drive tree (every dated version shows the
/// newest one's content, as OxiStack has only one shape of each).
fn document(spec: &InstanceSpec, key: &str) -> Response {
    match files(spec, None) {
        Ok(f) => match f.get(key) {
            Some(data) => {
                let ct = if key.ends_with(".json") {
                    "application/json"
                } else {
                    "text/plain; charset=UTF-8"
                };
                (StatusCode::OK, [("content-type", ct)], data.clone()).into_response()
            }
            None => text(
                StatusCode::NOT_FOUND,
                "404 Not Found\n\nThe resource could not be found.\n",
            ),
        },
        Err(e) => error(&e),
    }
}

/// EC2's `meta-data/` tree, walked in the JSON of `meta-data.json`: an
/// object lists its keys (nested ones with a trailing `/`), a value prints.
fn ec2_tree(spec: &InstanceSpec, rest: &[&str]) -> Response {
    let root = oxistack_bus::metadata::ec2_meta_data(spec);
    let mut node = &root;
    let rest: Vec<&str> = rest.iter().copied().filter(|p| !p.is_empty()).collect();
    // public-keys/0=name, as EC2 lists keys.
    if rest.as_slice() == ["public-keys"] {
        if let Some(keys) = root.get("public-keys").and_then(|k| k.as_object()) {
            let name = spec.key_name.clone().unwrap_or_default();
            return text(
                StatusCode::OK,
                keys.keys()
                    .map(|i| format!("{i}={name}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    for part in &rest {
        let key = part.split('=').next().unwrap_or(part);
        match node.get(key) {
            Some(n) => node = n,
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    "404 Not Found\n\nThe resource could not be found.\n",
                )
            }
        }
    }
    match node {
        Value::Object(m) => text(
            StatusCode::OK,
            m.iter()
                .map(|(k, v)| {
                    if v.is_object() {
                        format!("{k}/")
                    } else {
                        k.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Value::Array(a) => text(
            StatusCode::OK,
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Value::String(s) => text(StatusCode::OK, s.clone()),
        Value::Null => text(StatusCode::OK, ""),
        v => text(StatusCode::OK, v.to_string()),
    }
}

async fn password(state: &AppState, spec: &InstanceSpec, method: &Method, body: &[u8]) -> Response {
    let result = if method == Method::POST {
        let p = String::from_utf8_lossy(body).to_string();
        state
            .compute
            .metadata_set_password(&spec.server_id, &p)
            .await
            .map(|_| String::new())
    } else {
        state.compute.metadata_password(&spec.server_id).await
    };
    match result {
        Ok(p) => text(StatusCode::OK, p),
        Err(e) => error(&e),
    }
}
