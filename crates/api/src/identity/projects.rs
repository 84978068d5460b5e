//! `/v3/projects`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::records::ProjectRec;
use serde_json::{json, Value};

use super::{collection, created, list_filter, one, self_link, with_extra};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/projects", get(list).post(create))
        .route("/v3/projects/{id}", get(show).patch(update).delete(delete))
}

pub(super) fn project_view(st: &AppState, p: &ProjectRec) -> Value {
    with_extra(
        json!({
            "id": p.id,
            "name": p.name,
            "domain_id": p.domain_id,
            "parent_id": p.parent_id,
            "description": p.description,
            "enabled": p.enabled,
            "is_domain": false,
            "tags": p.tags,
            "options": {},
            "links": self_link(st, &format!("projects/{}", p.id)),
        }),
        &p.extra,
    )
}

async fn list(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = if q.flag("is_domain")? == Some(true) {
        Vec::new()
    } else {
        st.identity.list_projects(&ctx, &list_filter(&q)?).await?
    };
    Ok(collection(
        &st,
        &uri,
        "projects",
        items.iter().map(|p| project_view(&st, p)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = st.identity.get_project(&ctx, &id).await?;
    Ok(one("project", project_view(&st, &p)))
}

async fn create(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let p = st.identity.create_project(&ctx, &body).await?;
    Ok(created("project", project_view(&st, &p)))
}

async fn update(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let p = st.identity.update_project(&ctx, &id, &body).await?;
    Ok(one("project", project_view(&st, &p)))
}

async fn delete(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_project(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
