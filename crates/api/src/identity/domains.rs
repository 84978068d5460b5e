//! `/v3/domains`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::records::DomainRec;
use serde_json::{json, Value};

use super::{collection, created, list_filter, one, self_link, with_extra};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/domains", get(list).post(create))
        .route("/v3/domains/{id}", get(show).patch(update).delete(delete))
}

pub(super) fn domain_view(st: &AppState, d: &DomainRec) -> Value {
    with_extra(
        json!({
            "id": d.id,
            "name": d.name,
            "description": d.description,
            "enabled": d.enabled,
            "tags": d.tags,
            "options": {},
            "links": self_link(st, &format!("domains/{}", d.id)),
        }),
        &d.extra,
    )
}

async fn list(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_domains(&ctx, &list_filter(&q)?).await?;
    Ok(collection(
        &st,
        &uri,
        "domains",
        items.iter().map(|d| domain_view(&st, d)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = st.identity.get_domain(&ctx, &id).await?;
    Ok(one("domain", domain_view(&st, &d)))
}

async fn create(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let d = st.identity.create_domain(&ctx, &body).await?;
    Ok(created("domain", domain_view(&st, &d)))
}

async fn update(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let d = st.identity.update_domain(&ctx, &id, &body).await?;
    Ok(one("domain", domain_view(&st, &d)))
}

async fn delete(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_domain(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
