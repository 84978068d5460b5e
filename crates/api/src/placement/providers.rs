//! `/resource_providers` and `/resource_providers/{uuid}`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_model::AppError;
use oxistack_scheduler::{ProviderFilter, ResourceProvider};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    allow_params, link, parse_member_of, parse_required, parse_resources, parse_uuid, PREFIX,
};
use crate::body::{parse_json, QueryPairs};
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

pub(super) fn provider_url(uuid: &str) -> String {
    format!("{PREFIX}/resource_providers/{uuid}")
}

/// A provider as the microversion shows it.
pub(super) fn view(rp: &ResourceProvider, v: ApiVersion) -> Value {
    let base = provider_url(&rp.uuid);
    let mut links = vec![
        link("self", base.clone()),
        link("inventories", format!("{base}/inventories")),
        link("usages", format!("{base}/usages")),
    ];
    if v.at_least(1, 1) {
        links.push(link("aggregates", format!("{base}/aggregates")));
    }
    if v.at_least(1, 6) {
        links.push(link("traits", format!("{base}/traits")));
    }
    if v.at_least(1, 11) {
        links.push(link("allocations", format!("{base}/allocations")));
    }
    let mut out = json!({
        "uuid": rp.uuid,
        "name": rp.name,
        "generation": rp.generation,
        "links": links,
    });
    if v.at_least(1, 14) {
        out["parent_provider_uuid"] = json!(rp.parent_provider_uuid);
        out["root_provider_uuid"] = json!(rp.root_provider_uuid);
    }
    out
}

/// Looks a provider path uuid up; a malformed one cannot exist (404).
pub(super) fn path_uuid(s: &str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| oxistack_scheduler::providers::provider_not_found(s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    name: String,
    #[serde(default)]
    uuid: Option<String>,
    /// Absent vs null matters on update: absent keeps the parent.
    #[serde(default, with = "double_option")]
    parent_provider_uuid: Option<Option<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

fn check_body(b: &ProviderBody, v: ApiVersion, creating: bool) -> Result<(), AppError> {
    if b.name.is_empty() || b.name.chars().count() > 200 {
        return Err(AppError::bad_request(
            "JSON does not validate: 'name' must be 1 to 200 characters long",
        ));
    }
    if b.parent_provider_uuid.is_some() && !v.at_least(1, 14) {
        return Err(AppError::bad_request(
            "JSON does not validate: Additional properties are not allowed ('parent_provider_uuid' was unexpected)",
        ));
    }
    if b.uuid.is_some() && !creating {
        return Err(AppError::bad_request(
            "JSON does not validate: Additional properties are not allowed ('uuid' was unexpected)",
        ));
    }
    Ok(())
}

pub async fn list(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let mut allowed = vec!["name", "uuid"];
    for (key, major, minor) in [
        ("member_of", 1, 3),
        ("resources", 1, 4),
        ("in_tree", 1, 14),
        ("required", 1, 18),
    ] {
        if v.at_least(major, minor) {
            allowed.push(key);
        }
    }
    allow_params(&q, &allowed)?;
    let mut f = ProviderFilter {
        name: q.get("name").map(str::to_string),
        uuid: match q.get("uuid") {
            Some(u) => Some(parse_uuid(u, "uuid")?),
            None => None,
        },
        member_of: parse_member_of(&q, v)?,
        in_tree: match q.get("in_tree") {
            Some(u) => Some(parse_uuid(u, "in_tree")?),
            None => None,
        },
        ..ProviderFilter::default()
    };
    if let Some(r) = q.get("resources") {
        f.resources = parse_resources(r)?;
    }
    if let Some(r) = q.get("required") {
        (f.required, f.forbidden) = parse_required(r, v)?;
    }
    let rps = s.placement.list_providers(&f).await?;
    Ok(Json(
        json!({"resource_providers": rps.iter().map(|rp| view(rp, v)).collect::<Vec<_>>()}),
    ))
}

pub async fn create(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: ProviderBody = parse_json(&body)?;
    check_body(&b, v, true)?;
    let uuid = match &b.uuid {
        Some(u) => Some(parse_uuid(u, "uuid")?),
        None => None,
    };
    let parent = match b.parent_provider_uuid.flatten() {
        Some(p) => Some(parse_uuid(&p, "parent_provider_uuid")?),
        None => None,
    };
    let rp = s.placement.create_provider(uuid, &b.name, parent).await?;
    let location = [(header::LOCATION, provider_url(&rp.uuid))];
    if v.at_least(1, 20) {
        Ok((StatusCode::OK, location, Json(view(&rp, v))).into_response())
    } else {
        Ok((StatusCode::CREATED, location).into_response())
    }
}

pub async fn show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let rp = s.placement.get_provider(&path_uuid(&uuid)?).await?;
    Ok(Json(view(&rp, v)))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let uuid = path_uuid(&uuid)?;
    let b: ProviderBody = parse_json(&body)?;
    check_body(&b, v, false)?;
    let parent = match b.parent_provider_uuid {
        Some(Some(p)) => Some(Some(parse_uuid(&p, "parent_provider_uuid")?)),
        other => other,
    };
    let rp = s.placement.update_provider(&uuid, &b.name, parent).await?;
    Ok(Json(view(&rp, v)))
}

pub async fn delete(State(s): State<AppState>, Path(uuid): Path<String>) -> ApiResult<StatusCode> {
    s.placement.delete_provider(&path_uuid(&uuid)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
