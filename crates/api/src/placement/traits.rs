//! `/traits` and `/resource_providers/{uuid}/traits` (1.6+).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_model::AppError;
use oxistack_scheduler::TraitFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::providers::path_uuid;
use super::{allow_params, since, PREFIX};
use crate::body::{parse_bool, parse_json, QueryPairs};
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

pub async fn list(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    since(v, 1, 6)?;
    allow_params(&q, &["name", "associated"])?;
    let mut f = TraitFilter::default();
    if let Some(name) = q.get("name") {
        if let Some(list) = name.strip_prefix("in:") {
            f.names = Some(list.split(',').map(|s| s.trim().to_string()).collect());
        } else if let Some(p) = name.strip_prefix("startswith:") {
            f.prefix = Some(p.to_string());
        } else {
            return Err(AppError::bad_request(format!(
                "Badly formatted name parameter. Expected name query string parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{name}\""
            ))
            .into());
        }
    }
    if let Some(a) = q.get("associated") {
        f.associated = Some(parse_bool(a).ok_or_else(|| {
            AppError::bad_request(format!(
                "Invalid query string parameters: {a:?} is not one of ['true', 'false']"
            ))
        })?);
    }
    Ok(Json(json!({"traits": s.placement.traits(&f).await?})))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    since(v, 1, 6)?;
    if s.placement.trait_exists(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("No such trait(s): {name}")).into())
    }
}

pub async fn create(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    since(v, 1, 6)?;
    Ok(if s.placement.create_trait(&name).await? {
        (
            StatusCode::CREATED,
            [(header::LOCATION, format!("{PREFIX}/traits/{name}"))],
        )
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    since(v, 1, 6)?;
    s.placement.delete_trait(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn view(generation: i64, traits: &[String]) -> Json<Value> {
    Json(json!({"resource_provider_generation": generation, "traits": traits}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitsBody {
    traits: Vec<String>,
    resource_provider_generation: i64,
}

pub async fn provider_show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    since(v, 1, 6)?;
    let (rp, traits) = s.placement.provider_traits(&path_uuid(&uuid)?).await?;
    Ok(view(rp.generation, &traits))
}

pub async fn provider_update(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    since(v, 1, 6)?;
    let b: TraitsBody = parse_json(&body)?;
    let (rp, traits) = s
        .placement
        .set_provider_traits(
            &path_uuid(&uuid)?,
            Some(b.resource_provider_generation),
            &b.traits,
        )
        .await?;
    Ok(view(rp.generation, &traits))
}

pub async fn provider_delete(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
) -> ApiResult<StatusCode> {
    since(v, 1, 6)?;
    s.placement
        .set_provider_traits(&path_uuid(&uuid)?, None, &[])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
