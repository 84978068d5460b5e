//! `/v2.0/subnets`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::SubnetId;
use oxistack_store::network::{subnet_not_found, Subnet};
use serde_json::{json, Value};

use super::{create_body, list_response, one, path_id, unwrap_body, when, Create};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(crate) fn view(s: &Subnet) -> Value {
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "description": s.description,
        "network_id": s.network_id.to_string(),
        "tenant_id": s.project_id.to_string(),
        "project_id": s.project_id.to_string(),
        "ip_version": s.ip_version,
        "cidr": s.cidr,
        "gateway_ip": s.gateway_ip.map(|g| g.to_string()),
        "allocation_pools": s.allocation_pools.iter()
            .map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()}))
            .collect::<Vec<_>>(),
        "dns_nameservers": s.dns_nameservers,
        "host_routes": s.host_routes.iter()
            .map(|r| json!({"destination": r.destination, "nexthop": r.nexthop.to_string()}))
            .collect::<Vec<_>>(),
        "enable_dhcp": s.enable_dhcp,
        "ipv6_ra_mode": s.ipv6_ra_mode,
        "ipv6_address_mode": s.ipv6_address_mode,
        "subnetpool_id": null,
        "router:external": s.external,
        "service_types": [],
        "created_at": when(&s.created_at),
        "updated_at": when(&s.updated_at),
        "revision_number": s.revision_number,
    })
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let items = state
        .network
        .subnet_list(&auth.0)
        .await?
        .iter()
        .map(view)
        .collect();
    list_response(&state, "subnets", items, &q)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = match create_body("subnet", "subnets", b)? {
        Create::One(req) => {
            let s = state.network.subnet_create(&auth.0, req).await?;
            json!({"subnet": view(&s)})
        }
        Create::Bulk(reqs) => {
            let made = state.network.subnet_create_bulk(&auth.0, reqs).await?;
            json!({"subnets": made.iter().map(view).collect::<Vec<_>>()})
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
    let id: SubnetId = path_id(&id, subnet_not_found)?;
    let s = state.network.subnet_get(&auth.0, &id).await?;
    Ok(one("subnet", view(&s), &q))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let id: SubnetId = path_id(&id, subnet_not_found)?;
    let req = unwrap_body("subnet", b)?;
    let s = state.network.subnet_update(&auth.0, &id, req).await?;
    Ok(Json(json!({"subnet": view(&s)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: SubnetId = path_id(&id, subnet_not_found)?;
    state.network.subnet_delete(&auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
