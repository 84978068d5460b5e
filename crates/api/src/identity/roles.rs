//! `/v3/roles`, implied roles and `/v3/role_inferences`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::records::RoleRec;
use oxistack_identity::roles::RoleInference;
use serde_json::{json, Value};

use super::{collection, created, one, self_link, v3, with_extra};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/roles", get(list).post(create))
        .route("/v3/roles/{id}", get(show).patch(update).delete(delete))
        .route("/v3/roles/{id}/implies", get(implies_of))
        .route(
            "/v3/roles/{id}/implies/{implied}",
            get(show_inference)
                .head(check_inference)
                .put(create_inference)
                .delete(delete_inference),
        )
        .route("/v3/role_inferences", get(inferences))
}

pub(super) fn role_view(st: &AppState, r: &RoleRec) -> Value {
    with_extra(
        json!({
            "id": r.id,
            "name": r.name,
            "domain_id": null,
            "description": r.description,
            "options": {},
            "links": self_link(st, &format!("roles/{}", r.id)),
        }),
        &r.extra,
    )
}

fn role_ref(st: &AppState, r: &RoleRec) -> Value {
    json!({"id": r.id, "name": r.name, "links": self_link(st, &format!("roles/{}", r.id))})
}

fn inference_view(st: &AppState, i: &RoleInference) -> Value {
    json!({
        "prior_role": role_ref(st, &i.prior),
        "implies": i.implied.iter().map(|r| role_ref(st, r)).collect::<Vec<_>>(),
    })
}

fn single_inference(st: &AppState, prior: &RoleRec, implied: &RoleRec) -> Value {
    json!({
        "role_inference": {"prior_role": role_ref(st, prior), "implies": role_ref(st, implied)},
        "links": {"self": format!("{}/roles/{}/implies/{}", v3(st), prior.id, implied.id)},
    })
}

async fn list(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let items = st.identity.list_roles(&ctx, q.get("name")).await?;
    Ok(collection(
        &st,
        &uri,
        "roles",
        items.iter().map(|r| role_view(&st, r)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = st.identity.get_role(&ctx, &id).await?;
    Ok(one("role", role_view(&st, &r)))
}

async fn create(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let r = st.identity.create_role(&ctx, &body).await?;
    Ok(created("role", role_view(&st, &r)))
}

async fn update(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let r = st.identity.update_role(&ctx, &id, &body).await?;
    Ok(one("role", role_view(&st, &r)))
}

async fn delete(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.identity.delete_role(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn implies_of(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let list = st.identity.list_role_inferences(&ctx, Some(&id)).await?;
    let body = list
        .first()
        .map(|i| inference_view(&st, i))
        .unwrap_or(Value::Null);
    Ok(Json(json!({
        "role_inference": body,
        "links": {"self": format!("{}/roles/{id}/implies", v3(&st))},
    })))
}

async fn show_inference(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, implied)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (p, i) = st.identity.get_implied_role(&ctx, &id, &implied).await?;
    Ok(Json(single_inference(&st, &p, &i)))
}

async fn check_inference(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, implied)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.identity.get_implied_role(&ctx, &id, &implied).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_inference(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, implied)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (p, i) = st.identity.create_implied_role(&ctx, &id, &implied).await?;
    Ok((StatusCode::CREATED, Json(single_inference(&st, &p, &i))).into_response())
}

async fn delete_inference(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    Path((id, implied)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.identity.delete_implied_role(&ctx, &id, &implied).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn inferences(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let list = st.identity.list_role_inferences(&ctx, None).await?;
    Ok(collection(
        &st,
        &uri,
        "role_inferences",
        list.iter().map(|i| inference_view(&st, i)).collect(),
    ))
}
