//! Nova's network proxies over Neutron: `os-networks` and
//! `os-tenant-networks` list and show the networks the caller can see
//! (below 2.36, 404 from 2.36). Creating, deleting and associating
//! networks only ever worked with nova-network, so they are 410 Gone at
//! every version, as in Nova.
//!
//! The views keep the shapes nova-network had: `label` is the name, and
//! every field Neutron has no counterpart for is null (`os-networks`; the
//! admin sees more of them) or the string `"None"` (`cidr` of
//! `os-tenant-networks`, as Nova has always answered with Neutron).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use oxistack_model::{AppError, NetworkId};
use oxistack_network::networks::NetworkView;
use serde_json::{json, Map, Value};

use super::versions::proxy_api;
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiError, ApiResult, AppState};

const FIELDS: &[&str] = &[
    "cidr",
    "netmask",
    "gateway",
    "broadcast",
    "dns1",
    "dns2",
    "cidr_v6",
    "gateway_v6",
    "netmask_v6",
];
const ADMIN_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "deleted_at",
    "deleted",
    "injected",
    "bridge",
    "vlan",
    "vpn_public_address",
    "vpn_public_port",
    "vpn_private_address",
    "dhcp_start",
    "project_id",
    "host",
    "bridge_interface",
    "multi_host",
    "priority",
    "rxtx_base",
    "mtu",
    "dhcp_server",
    "enable_dhcp",
    "share_address",
];

fn network_view(n: &NetworkView, admin: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(n.net.id.to_string()));
    o.insert("label".into(), json!(n.net.name));
    let extra: &[&str] = if admin { ADMIN_FIELDS } else { &[] };
    for f in FIELDS.iter().chain(extra) {
        o.insert((*f).into(), Value::Null);
    }
    Value::Object(o)
}

fn tenant_network_view(n: &NetworkView) -> Value {
    json!({"id": n.net.id.to_string(), "cidr": "None", "label": n.net.name})
}

fn network_not_found() -> AppError {
    AppError::not_found("Network not found")
}

async fn visible(state: &AppState, auth: &Auth, id: &str) -> Result<NetworkView, ApiError> {
    let nid: NetworkId = id.parse().map_err(|_| network_not_found())?;
    Ok(state
        .network
        .network_get(&auth.0, &nid)
        .await
        .map_err(|e| match e.kind {
            oxistack_model::ErrorKind::NotFound => network_not_found(),
            _ => e,
        })?)
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let admin = auth.0.is_admin();
    let nets = state.network.network_list(&auth.0).await?;
    let views: Vec<Value> = nets.iter().map(|n| network_view(n, admin)).collect();
    Ok(Json(json!({ "networks": views })))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let n = visible(&state, &auth, &id).await?;
    Ok(Json(
        json!({ "network": network_view(&n, auth.0.is_admin()) }),
    ))
}

pub async fn tenant_list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let nets = state.network.network_list(&auth.0).await?;
    let views: Vec<Value> = nets.iter().map(tenant_network_view).collect();
    Ok(Json(json!({ "networks": views })))
}

pub async fn tenant_show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let n = visible(&state, &auth, &id).await?;
    Ok(Json(json!({ "network": tenant_network_view(&n) })))
}

/// Create, delete, add, associate and disassociate: nova-network only,
/// removed from Nova (410 at every version). Callers must be
/// authenticated all the same.
pub async fn gone(_auth: Auth) -> ApiError {
    ApiError(AppError::gone(
        "This resource is no longer available.  No forwarding address is given.",
    ))
}

/// `POST /os-networks/{id}`: only `/os-networks/add` exists (gone).
pub async fn gone_add(auth: Auth, Path(id): Path<String>) -> ApiError {
    if id == "add" {
        gone(auth).await
    } else {
        ApiError(AppError::not_found("The resource could not be found."))
    }
}
