//! `/resource_providers/{uuid}/usages` and `GET /usages` (1.9+).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use oxistack_model::AppError;
use serde_json::{json, Value};

use super::providers::path_uuid;
use super::{allow_params, since};
use crate::body::QueryPairs;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

pub async fn for_provider(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let (rp, usages) = s.placement.provider_usages(&path_uuid(&uuid)?).await?;
    Ok(Json(
        json!({"resource_provider_generation": rp.generation, "usages": usages}),
    ))
}

pub async fn for_project(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    since(v, 1, 9)?;
    allow_params(&q, &["project_id", "user_id"])?;
    let project = q.get("project_id").ok_or_else(|| {
        AppError::bad_request(
            "Invalid query string parameters: 'project_id' is a required property",
        )
    })?;
    let usages = s
        .placement
        .project_usages(project, q.get("user_id"))
        .await?;
    Ok(Json(json!({"usages": usages})))
}
