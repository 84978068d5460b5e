//! `/v2.0/floatingips`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::FloatingIpId;
use oxistack_store::network::{floating_ip_not_found, FloatingIp};
use serde_json::{json, Value};

use super::{list_response, one, path_id, unwrap_body, when};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn view(f: &FloatingIp) -> Value {
    json!({
        "id": f.id.to_string(),
        "floating_ip_address": f.floating_ip_address.to_string(),
        "floating_network_id": f.floating_network_id.to_string(),
        "router_id": f.router_id.map(|r| r.to_string()),
        "port_id": f.port_id.map(|p| p.to_string()),
        "fixed_ip_address": f.fixed_ip_address.map(|i| i.to_string()),
        "status": f.status,
        "description": f.description,
        "tenant_id": f.project_id.to_string(),
        "project_id": f.project_id.to_string(),
        "created_at": when(&f.created_at),
        "updated_at": when(&f.updated_at),
        "revision_number": f.revision_number,
    })
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let items = state
        .network
        .floating_ip_list(&auth.0)
        .await?
        .iter()
        .map(view)
        .collect();
    list_response(&state, "floatingips", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = unwrap_body("floatingip", b)?;
    let f = state.network.floating_ip_create(&auth.0, req).await?;
    Ok((StatusCode::CREATED, Json(json!({"floatingip": view(&f)}))))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let id: FloatingIpId = path_id(&id, floating_ip_not_found)?;
    let f = state.network.floating_ip_get(&auth.0, &id).await?;
    Ok(one("floatingip", view(&f), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: FloatingIpId = path_id(&id, floating_ip_not_found)?;
    let req = unwrap_body("floatingip", b)?;
    let f = state.network.floating_ip_update(&auth.0, &id, req).await?;
    Ok(Json(json!({"floatingip": view(&f)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: FloatingIpId = path_id(&id, floating_ip_not_found)?;
    state.network.floating_ip_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
