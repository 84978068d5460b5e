//! `/v3/groups` and group membership.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::records::GroupRec;
use serde_json::{json, Value};

use super::users::user_view;
use super::{collection, created, list_filter, one, self_link, with_extra};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/groups", get(list).post(create))
        .route("/v3/groups/{id}", get(show).patch(update).delete(delete))
        .route("/v3/groups/{id}/users", get(members))
        .route(
            "/v3/groups/{id}/users/{user_id}",
            get(check_member)
                .head(check_member)
                .put(add_member)
                .delete(remove_member),
        )
}

pub(super) fn group_view(st: &AppState, g: &GroupRec) -> Value {
    with_extra(
        json!({
            "id": g.id,
            "name": g.name,
            "domain_id": g.domain_id,
            "description": g.description,
            "links": self_link(st, &format!("groups/{}", g.id)),
        }),
        &g.extra,
    )
}

async fn list(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_groups(&ctx, &list_filter(&q)?).await?;
    Ok(collection(
        &st,
        &uri,
        "groups",
        items.iter().map(|g| group_view(&st, g)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let g = st.identity.get_group(&ctx, &id).await?;
    Ok(one("group", group_view(&st, &g)))
}

async fn create(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let g = st.identity.create_group(&ctx, &body).await?;
    Ok(created("group", group_view(&st, &g)))
}

async fn update(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let g = st.identity.update_group(&ctx, &id, &body).await?;
    Ok(one("group", group_view(&st, &g)))
}

async fn delete(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_group(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_group_users(&ctx, &id).await?;
    Ok(collection(
        &st,
        &uri,
        "users",
        items.iter().map(|u| user_view(&st, u)).collect(),
    ))
}

async fn check_member(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.identity.check_user_in_group(&ctx, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_member(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.identity.add_user_to_group(&ctx, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.identity.remove_user_from_group(&ctx, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
