//! `/v2.0/ports`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::{AuthContext, PortId};
use oxistack_store::network::{port_not_found, Port};
use serde_json::{json, Value};

use super::{create_body, list_response, one, path_id, unwrap_body, when, Create};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(crate) fn view(ctx: &AuthContext, p: &Port) -> Value {
    let mut o = json!({
        "id": p.id.to_string(),
        "name": p.name,
        "description": p.description,
        "network_id": p.network_id.to_string(),
        "tenant_id": p.project_id.to_string(),
        "project_id": p.project_id.to_string(),
        "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up,
        "status": p.status,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": p.fixed_ips.iter()
            .map(|f| json!({"subnet_id": f.subnet_id.to_string(), "ip_address": f.ip_address.to_string()}))
            .collect::<Vec<_>>(),
        "allowed_address_pairs": p.allowed_address_pairs.iter()
            .map(|a| json!({"ip_address": a.ip_address, "mac_address": a.mac_address}))
            .collect::<Vec<_>>(),
        "security_groups": p.security_groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "port_security_enabled": p.port_security_enabled,
        "binding:vnic_type": p.binding_vnic_type,
        "created_at": when(&p.created_at),
        "updated_at": when(&p.updated_at),
        "revision_number": p.revision_number,
    });
    // Binding details are admin-only, as Neutron's policy has them.
    if ctx.is_admin() {
        let bound = !p.binding_host_id.is_empty();
        o["binding:host_id"] = json!(p.binding_host_id);
        o["binding:profile"] = p.binding_profile.clone();
        o["binding:vif_type"] = json!(if bound { "bridge" } else { "unbound" });
        o["binding:vif_details"] = if bound {
            json!({"port_filter": true, "connectivity": "l2"})
        } else {
            json!({})
        };
    }
    o
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let ports = state.network.port_list(&auth.0).await?;
    let items = ports.iter().map(|p| view(&auth.0, p)).collect();
    list_response(&state, "ports", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = match create_body("port", "ports", b)? {
        Create::One(req) => {
            let p = state.network.port_create(&auth.0, req).await?;
            json!({"port": view(&auth.0, &p)})
        }
        Create::Bulk(reqs) => {
            let made = state.network.port_create_bulk(&auth.0, reqs).await?;
            json!({"ports": made.iter().map(|p| view(&auth.0, p)).collect::<Vec<_>>()})
        }
    };
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let id: PortId = path_id(&id, port_not_found)?;
    let p = state.network.port_get(&auth.0, &id).await?;
    Ok(one("port", view(&auth.0, &p), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: PortId = path_id(&id, port_not_found)?;
    let req = unwrap_body("port", b)?;
    let p = state.network.port_update(&auth.0, &id, req).await?;
    Ok(Json(json!({"port": view(&auth.0, &p)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: PortId = path_id(&id, port_not_found)?;
    state.network.port_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
