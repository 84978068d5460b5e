//! `/v2.0/security-groups` and `/v2.0/security-group-rules`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::{SecurityGroupId, SecurityGroupRuleId};
use oxistack_network::security_groups::GroupView;
use oxistack_store::network::{rule_not_found, security_group_not_found, SecurityGroupRule};
use serde_json::{json, Value};

use super::{list_response, one, path_id, unwrap_body, when};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn rule_view(r: &SecurityGroupRule) -> Value {
    json!({
        "id": r.id.to_string(),
        "security_group_id": r.security_group_id.to_string(),
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix,
        "remote_group_id": r.remote_group_id.map(|g| g.to_string()),
        "description": r.description,
        "tenant_id": r.project_id.to_string(),
        "project_id": r.project_id.to_string(),
        "created_at": when(&r.created_at),
        "updated_at": when(&r.updated_at),
        "revision_number": r.revision_number,
    })
}

fn view(g: &GroupView) -> Value {
    json!({
        "id": g.group.id.to_string(),
        "name": g.group.name,
        "description": g.group.description,
        "tenant_id": g.group.project_id.to_string(),
        "project_id": g.group.project_id.to_string(),
        "security_group_rules": g.rules.iter().map(rule_view).collect::<Vec<_>>(),
        "created_at": when(&g.group.created_at),
        "updated_at": when(&g.group.updated_at),
        "revision_number": g.group.revision_number,
    })
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let items = state
        .network
        .security_group_list(&auth.0)
        .await?
        .iter()
        .map(view)
        .collect();
    list_response(&state, "security_groups", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = unwrap_body("security_group", b)?;
    let g = state.network.security_group_create(&auth.0, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"security_group": view(&g)})),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let id: SecurityGroupId = path_id(&id, security_group_not_found)?;
    let g = state.network.security_group_get(&auth.0, &id).await?;
    Ok(one("security_group", view(&g), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: SecurityGroupId = path_id(&id, security_group_not_found)?;
    let req = unwrap_body("security_group", b)?;
    let g = state
        .network
        .security_group_update(&auth.0, &id, req)
        .await?;
    Ok(Json(json!({"security_group": view(&g)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: SecurityGroupId = path_id(&id, security_group_not_found)?;
    state.network.security_group_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rule_list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let items = state
        .network
        .rule_list(&auth.0)
        .await?
        .iter()
        .map(rule_view)
        .collect();
    list_response(&state, "security_group_rules", items, &q)
}

pub async fn rule_create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = unwrap_body("security_group_rule", b)?;
    let r = state.network.rule_create(&auth.0, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"security_group_rule": rule_view(&r)})),
    ))
}

pub async fn rule_show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let id: SecurityGroupRuleId = path_id(&id, rule_not_found)?;
    let r = state.network.rule_get(&auth.0, &id).await?;
    Ok(one("security_group_rule", rule_view(&r), &q))
}

pub async fn rule_delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: SecurityGroupRuleId = path_id(&id, rule_not_found)?;
    state.network.rule_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
