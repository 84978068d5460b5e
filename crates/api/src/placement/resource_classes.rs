//! `/resource_classes` (1.2+).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_scheduler::Named;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{link, since, PREFIX};
use crate::body::parse_json;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn url(name: &str) -> String {
    format!("{PREFIX}/resource_classes/{name}")
}

fn view(c: &Named) -> Value {
    json!({"name": c.name, "links": [link("self", url(&c.name))]})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

pub async fn list(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<Json<Value>> {
    since(v, 1, 2)?;
    let all = s.placement.resource_classes().await?;
    Ok(Json(
        json!({"resource_classes": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn create(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    since(v, 1, 2)?;
    let b: NameBody = parse_json(&body)?;
    s.placement.create_resource_class(&b.name, false).await?;
    Ok((StatusCode::CREATED, [(header::LOCATION, url(&b.name))]).into_response())
}

pub async fn show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    since(v, 1, 2)?;
    Ok(Json(view(&s.placement.resource_class(&name).await?)))
}

/// Before 1.7 a rename (body `{"name"}`); from 1.7 an idempotent create.
pub async fn update(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    since(v, 1, 2)?;
    if v.at_least(1, 7) {
        let created = s.placement.create_resource_class(&name, true).await?;
        return Ok(if created {
            (StatusCode::CREATED, [(header::LOCATION, url(&name))]).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        });
    }
    let b: NameBody = parse_json(&body)?;
    let c = s.placement.rename_resource_class(&name, &b.name).await?;
    Ok(Json(view(&c)).into_response())
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    since(v, 1, 2)?;
    s.placement.delete_resource_class(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
