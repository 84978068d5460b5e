//! `/v3/users`, a user's password, projects and groups.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use oxistack_identity::records::UserRec;
use serde_json::{json, Value};

use super::groups::group_view;
use super::projects::project_view;
use super::{collection, created, list_filter, one, self_link, with_extra};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/users", get(list).post(create))
        .route("/v3/users/{id}", get(show).patch(update).delete(delete))
        .route("/v3/users/{id}/password", post(change_password))
        .route("/v3/users/{id}/projects", get(projects))
        .route("/v3/users/{id}/groups", get(groups))
}

pub(super) fn user_view(st: &AppState, u: &UserRec) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": self_link(st, &format!("users/{}", u.id)),
    });
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    with_extra(v, &u.extra)
}

async fn list(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_users(&ctx, &list_filter(&q)?).await?;
    Ok(collection(
        &st,
        &uri,
        "users",
        items.iter().map(|u| user_view(&st, u)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let u = st.identity.get_user(&ctx, &id).await?;
    Ok(one("user", user_view(&st, &u)))
}

async fn create(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let u = st.identity.create_user(&ctx, &body).await?;
    Ok(created("user", user_view(&st, &u)))
}

async fn update(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let u = st.identity.update_user(&ctx, &id, &body).await?;
    Ok(one("user", user_view(&st, &u)))
}

async fn delete(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_user(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<StatusCode> {
    st.identity.change_password(&ctx, &id, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn projects(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_user_projects(&ctx, &id).await?;
    Ok(collection(
        &st,
        &uri,
        "projects",
        items.iter().map(|p| project_view(&st, p)).collect(),
    ))
}

async fn groups(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_user_groups(&ctx, &id).await?;
    Ok(collection(
        &st,
        &uri,
        "groups",
        items.iter().map(|g| group_view(&st, g)).collect(),
    ))
}
