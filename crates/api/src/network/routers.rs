//! `/v2.0/routers`, with `add_router_interface` / `remove_router_interface`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::{AuthContext, RouterId};
use oxistack_network::routers::RouterView;
use oxistack_store::network::router_not_found;
use serde_json::{json, Value};

use super::{list_response, one, path_id, unwrap_body, when};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn view(state: &AppState, _ctx: &AuthContext, v: &RouterView) -> Value {
    let r = &v.router;
    let gw = r.gw_network_id.map(|n| {
        json!({
            "network_id": n.to_string(),
            "enable_snat": r.enable_snat,
            "external_fixed_ips": v.external_fixed_ips.iter()
                .map(|(s, ip)| json!({"subnet_id": s.to_string(), "ip_address": ip.to_string()}))
                .collect::<Vec<_>>(),
        })
    });
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "description": r.description,
        "tenant_id": r.project_id.to_string(),
        "project_id": r.project_id.to_string(),
        "admin_state_up": r.admin_state_up,
        "status": r.status,
        "external_gateway_info": gw,
        "routes": r.routes.iter()
            .map(|h| json!({"destination": h.destination, "nexthop": h.nexthop.to_string()}))
            .collect::<Vec<_>>(),
        "availability_zone_hints": [],
        "availability_zones": [state.settings.availability_zone],
        "created_at": when(&r.created_at),
        "updated_at": when(&r.updated_at),
        "revision_number": r.revision_number,
    })
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let routers = state.network.router_list(&auth.0).await?;
    let items = routers.iter().map(|r| view(&state, &auth.0, r)).collect();
    list_response(&state, "routers", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = unwrap_body("router", b)?;
    let r = state.network.router_create(&auth.0, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"router": view(&state, &auth.0, &r)})),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let id: RouterId = path_id(&id, router_not_found)?;
    let r = state.network.router_get(&auth.0, &id).await?;
    Ok(one("router", view(&state, &auth.0, &r), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: RouterId = path_id(&id, router_not_found)?;
    let req = unwrap_body("router", b)?;
    let r = state.network.router_update(&auth.0, &id, req).await?;
    Ok(Json(json!({"router": view(&state, &auth.0, &r)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: RouterId = path_id(&id, router_not_found)?;
    state.network.router_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body is the bare `{"subnet_id": …}` or `{"port_id": …}` object.
fn interface_body(b: Value) -> ApiResult<oxistack_network::routers::InterfaceRequest> {
    serde_json::from_value(b).map_err(|e| {
        oxistack_model::AppError::bad_request(format!("Bad router request: {e}"))
            .with_code("BadRequest")
            .into()
    })
}

pub async fn add_interface(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: RouterId = path_id(&id, router_not_found)?;
    let info = state
        .network
        .router_add_interface(&auth.0, &id, interface_body(b)?)
        .await?;
    Ok(Json(serde_json::to_value(info).unwrap_or_default()))
}

pub async fn remove_interface(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: RouterId = path_id(&id, router_not_found)?;
    let info = state
        .network
        .router_remove_interface(&auth.0, &id, interface_body(b)?)
        .await?;
    Ok(Json(serde_json::to_value(info).unwrap_or_default()))
}
