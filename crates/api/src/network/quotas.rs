//! `/v2.0/quotas`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_model::{AppError, ProjectId};
use serde_json::{json, Value};

use super::path_id;
use crate::body::JsonBody;
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn project(s: &str) -> Result<ProjectId, crate::ApiError> {
    path_id(s, |p: String| {
        AppError::bad_request(format!("Invalid project id {p}")).with_code("HTTPBadRequest")
    })
}

pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let list = state.network.quota_list(&auth.0).await?;
    let items: Vec<Value> = list
        .into_iter()
        .map(|(p, q)| {
            let mut o = json!(q);
            o["project_id"] = json!(p.to_string());
            o["tenant_id"] = json!(p.to_string());
            o
        })
        .collect();
    Ok(Json(json!({ "quotas": items })))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    let q = state.network.quota_show(&auth.0, &project(&p)?).await?;
    Ok(Json(json!({ "quota": q })))
}

pub async fn defaults(
    State(state): State<AppState>,
    _auth: Auth,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    project(&p)?;
    Ok(Json(json!({ "quota": state.network.quota_defaults() })))
}

pub async fn details(
    State(state): State<AppState>,
    auth: Auth,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = state.network.quota_details(&auth.0, &project(&p)?).await?;
    let body: BTreeMap<&str, Value> = d
        .into_iter()
        .map(|(k, (limit, used))| (k, json!({"limit": limit, "used": used, "reserved": 0})))
        .collect();
    Ok(Json(json!({ "quota": body })))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(p): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let values: BTreeMap<String, Value> = b
        .get("quota")
        .and_then(|q| serde_json::from_value(q.clone()).ok())
        .ok_or_else(|| {
            AppError::bad_request("Resource body required: quota expected.")
                .with_code("HTTPBadRequest")
        })?;
    let q = state
        .network
        .quota_update(&auth.0, &project(&p)?, &values)
        .await?;
    Ok(Json(json!({ "quota": q })))
}

pub async fn reset(
    State(state): State<AppState>,
    auth: Auth,
    Path(p): Path<String>,
) -> ApiResult<StatusCode> {
    state.network.quota_reset(&auth.0, &project(&p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
