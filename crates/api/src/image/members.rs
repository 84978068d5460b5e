//! `/v2/images/{id}/members`: sharing an image with other projects.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oxistack_images::ImageMember;
use oxistack_model::time::iso_seconds;
use oxistack_model::AppError;
use serde_json::{json, Value};

use super::image_id;
use crate::body::parse_json;
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn view(m: &ImageMember) -> Value {
    json!({
        "created_at": iso_seconds(&m.created_at),
        "image_id": m.image_id.to_string(),
        "member_id": m.member_id,
        "schema": "/v2/schemas/member",
        "status": m.status.as_str(),
        "updated_at": iso_seconds(&m.updated_at),
    })
}

fn field(body: &Bytes, key: &str) -> ApiResult<String> {
    let v: Value = parse_json(body)?;
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            AppError::bad_request(format!(
                "Request body must be a JSON object with a '{key}' string."
            ))
            .into()
        })
}

pub async fn list(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let members = s.images.list_members(&ctx, image_id(&id)?).await?;
    Ok(Json(
        json!({"members": members.iter().map(view).collect::<Vec<_>>(), "schema": "/v2/schemas/members"}),
    ))
}

pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let member = field(&body, "member")?;
    Ok(Json(view(
        &s.images.add_member(&ctx, image_id(&id)?, &member).await?,
    )))
}

pub async fn show(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(
        &s.images.show_member(&ctx, image_id(&id)?, &member).await?,
    )))
}

pub async fn update(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let status = field(&body, "status")?;
    Ok(Json(view(
        &s.images
            .set_member_status(&ctx, image_id(&id)?, &member, &status)
            .await?,
    )))
}

pub async fn delete(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.images
        .remove_member(&ctx, image_id(&id)?, &member)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
