//! `/v3/services`, `/v3/endpoints` and `/v3/regions`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::records::{EndpointRec, RegionRec, ServiceRec};
use serde_json::{json, Value};

use super::{collection, created, one, self_link};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/services", get(list_services).post(create_service))
        .route(
            "/v3/services/{id}",
            get(show_service)
                .patch(update_service)
                .delete(delete_service),
        )
        .route("/v3/endpoints", get(list_endpoints).post(create_endpoint))
        .route(
            "/v3/endpoints/{id}",
            get(show_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route("/v3/regions", get(list_regions).post(create_region))
        .route(
            "/v3/regions/{id}",
            get(show_region)
                .put(put_region)
                .patch(update_region)
                .delete(delete_region),
        )
}

fn service_view(st: &AppState, s: &ServiceRec) -> Value {
    json!({
        "id": s.id,
        "type": s.service_type,
        "name": s.name,
        "description": s.description,
        "enabled": s.enabled,
        "links": self_link(st, &format!("services/{}", s.id)),
    })
}

fn endpoint_view(st: &AppState, e: &EndpointRec) -> Value {
    json!({
        "id": e.id,
        "service_id": e.service_id,
        "interface": e.interface,
        "region": e.region_id,
        "region_id": e.region_id,
        "url": e.url,
        "enabled": e.enabled,
        "links": self_link(st, &format!("endpoints/{}", e.id)),
    })
}

fn region_view(st: &AppState, r: &RegionRec) -> Value {
    json!({
        "id": r.id,
        "description": r.description,
        "parent_region_id": r.parent_region_id,
        "links": self_link(st, &format!("regions/{}", r.id)),
    })
}

async fn list_services(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_services(&ctx, q.get("type")).await?;
    Ok(collection(
        &st,
        &uri,
        "services",
        items.iter().map(|s| service_view(&st, s)).collect(),
    ))
}

async fn show_service(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = st.identity.get_service(&ctx, &id).await?;
    Ok(one("service", service_view(&st, &s)))
}

async fn create_service(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let s = st.identity.create_service(&ctx, &body).await?;
    Ok(created("service", service_view(&st, &s)))
}

async fn update_service(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let s = st.identity.update_service(&ctx, &id, &body).await?;
    Ok(one("service", service_view(&st, &s)))
}

async fn delete_service(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_service(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_endpoints(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st
        .identity
        .list_endpoints(&ctx, q.get("service_id"), q.get("interface"))
        .await?;
    Ok(collection(
        &st,
        &uri,
        "endpoints",
        items.iter().map(|e| endpoint_view(&st, e)).collect(),
    ))
}

async fn show_endpoint(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let e = st.identity.get_endpoint(&ctx, &id).await?;
    Ok(one("endpoint", endpoint_view(&st, &e)))
}

async fn create_endpoint(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let e = st.identity.create_endpoint(&ctx, &body).await?;
    Ok(created("endpoint", endpoint_view(&st, &e)))
}

async fn update_endpoint(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let e = st.identity.update_endpoint(&ctx, &id, &body).await?;
    Ok(one("endpoint", endpoint_view(&st, &e)))
}

async fn delete_endpoint(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_endpoint(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_regions(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st
        .identity
        .list_regions(&ctx, q.get("parent_region_id"))
        .await?;
    Ok(collection(
        &st,
        &uri,
        "regions",
        items.iter().map(|r| region_view(&st, r)).collect(),
    ))
}

async fn show_region(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = st.identity.get_region(&ctx, &id).await?;
    Ok(one("region", region_view(&st, &r)))
}

async fn create_region(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let r = st.identity.create_region(&ctx, &body, None).await?;
    Ok(created("region", region_view(&st, &r)))
}

async fn put_region(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let r = st.identity.create_region(&ctx, &body, Some(&id)).await?;
    Ok(created("region", region_view(&st, &r)))
}

async fn update_region(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let r = st.identity.update_region(&ctx, &id, &body).await?;
    Ok(one("region", region_view(&st, &r)))
}

async fn delete_region(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_region(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
