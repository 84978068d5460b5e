//! `/v2.0/networks`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::{AuthContext, NetworkId};
use oxistack_network::networks::NetworkView;
use oxistack_store::network::network_not_found;
use serde_json::{json, Value};

use super::{create_body, list_response, one, path_id, unwrap_body, when, Create};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(crate) fn view(state: &AppState, ctx: &AuthContext, v: &NetworkView) -> Value {
    let n = &v.net;
    let mut o = json!({
        "id": n.id.to_string(),
        "name": n.name,
        "description": n.description,
        "tenant_id": n.project_id.to_string(),
        "project_id": n.project_id.to_string(),
        "admin_state_up": n.admin_state_up,
        "status": "ACTIVE",
        "subnets": v.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "shared": n.shared,
        "router:external": n.external,
        "mtu": n.mtu,
        "port_security_enabled": n.port_security_enabled,
        "availability_zone_hints": [],
        "availability_zones": [state.settings.availability_zone],
        "created_at": when(&n.created_at),
        "updated_at": when(&n.updated_at),
        "revision_number": n.revision_number,
    });
    // Provider attributes are admin-only, as Neutron's policy has them.
    if ctx.is_admin() {
        o["provider:network_type"] = json!(n.network_type);
        o["provider:physical_network"] = json!(n.physical_network);
        o["provider:segmentation_id"] = json!(n.segmentation_id);
    }
    o
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let nets = state.network.network_list(&auth.0).await?;
    let items = nets.iter().map(|n| view(&state, &auth.0, n)).collect();
    list_response(&state, "networks", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = match create_body("network", "networks", b)? {
        Create::One(req) => {
            let n = state.network.network_create(&auth.0, req).await?;
            json!({"network": view(&state, &auth.0, &n)})
        }
        Create::Bulk(reqs) => {
            let made = state.network.network_create_bulk(&auth.0, reqs).await?;
            json!({"networks": made.iter().map(|n| view(&state, &auth.0, n)).collect::<Vec<_>>()})
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
    let id: NetworkId = path_id(&id, network_not_found)?;
    let n = state.network.network_get(&auth.0, &id).await?;
    Ok(one("network", view(&state, &auth.0, &n), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: NetworkId = path_id(&id, network_not_found)?;
    let req = unwrap_body("network", b)?;
    let n = state.network.network_update(&auth.0, &id, req).await?;
    Ok(Json(json!({"network": view(&state, &auth.0, &n)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: NetworkId = path_id(&id, network_not_found)?;
    state.network.network_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
