//! `/v2/images`: image records, their tags and their actions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oxistack_images::ImageRecord;
use oxistack_model::time::iso_seconds;
use oxistack_model::AppError;
use serde_json::{json, Map, Value};

use super::image_id;
use crate::body::{parse_json, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

/// The JSON-patch media types Glance accepts on image PATCH: the v2.0 form
/// (which Tempest's client sends) and the v2.1 form; OxiStack reads both the
/// same way, as Glance does for the operations both define.
const PATCH_TYPES: &[&str] = &[
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
];

/// Glance's image view: the base attributes, the links, and the extra
/// properties at top level.
pub fn view(i: &ImageRecord) -> Value {
    let mut m = Map::new();
    for (k, v) in &i.properties {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    let base = json!({
        "id": i.id.to_string(),
        "name": i.name,
        "status": i.status.as_str(),
        "visibility": i.visibility.as_str(),
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo,
        "os_hash_value": i.os_hash_value,
        "owner": i.owner.map(|o| o.to_string()),
        "size": i.size,
        "virtual_size": i.virtual_size,
        "min_ram": i.min_ram,
        "min_disk": i.min_disk,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "created_at": iso_seconds(&i.created_at),
        "updated_at": iso_seconds(&i.updated_at),
        "tags": i.tags.iter().collect::<Vec<_>>(),
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(b) = base {
        m.extend(b);
    }
    Value::Object(m)
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_of(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn list(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let page = s.images.list(&ctx, &q.0).await?;
    let rest: Vec<(String, String)> = q.0.iter().filter(|(k, _)| k != "marker").cloned().collect();
    let mut body = json!({
        "images": page.images.iter().map(view).collect::<Vec<_>>(),
        "first": if rest.is_empty() { "/v2/images".to_string() } else { format!("/v2/images?{}", query_of(&rest)) },
        "schema": "/v2/schemas/images",
    });
    if let Some(m) = page.next_marker {
        let mut next = rest;
        next.push(("marker".into(), m.to_string()));
        body["next"] = json!(format!("/v2/images?{}", query_of(&next)));
    }
    Ok(Json(body))
}

pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Value = parse_json(&body)?;
    let obj = body.as_object().ok_or_else(|| {
        AppError::bad_request(
            "Provided object does not match schema 'image': the body is not an object.",
        )
    })?;
    let image = s.images.create(&ctx, obj).await?;
    let location = format!("{}/image/v2/images/{}", s.settings.public_url(), image.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view(&image)),
    )
        .into_response())
}

pub async fn show(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&s.images.show(&ctx, image_id(&id)?).await?)))
}

pub async fn update(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().map(str::trim).unwrap_or("");
    if !PATCH_TYPES.contains(&media) {
        return Err(AppError::new(
            oxistack_model::ErrorKind::UnsupportedMediaType,
            format!(
                "Image PATCH expects Content-Type one of: {}",
                PATCH_TYPES.join(", ")
            ),
        )
        .into());
    }
    let mut ops: Value = parse_json(&body)?;
    if media == PATCH_TYPES[1] {
        ops = v20_patch(ops);
    }
    Ok(Json(view(
        &s.images.update(&ctx, image_id(&id)?, &ops).await?,
    )))
}

/// The v2.0 JSON-patch form names the operation as the key
/// (`{"replace": "/name", "value": …}`); rewrite it into the v2.1 form
/// (`{"op": "replace", "path": "/name", "value": …}`) that the app layer reads.
/// Anything else is passed through for the app layer to refuse.
fn v20_patch(ops: Value) -> Value {
    let Value::Array(items) = ops else {
        return ops;
    };
    Value::Array(
        items
            .into_iter()
            .map(|item| {
                let Value::Object(mut m) = item else {
                    return item;
                };
                if !m.contains_key("op") {
                    for op in ["add", "remove", "replace"] {
                        if let Some(path) = m.remove(op) {
                            m.insert("op".into(), Value::String(op.into()));
                            m.insert("path".into(), path);
                            break;
                        }
                    }
                }
                Value::Object(m)
            })
            .collect(),
    )
}

pub async fn delete(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.images.delete(&ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_tag(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.images.add_tag(&ctx, image_id(&id)?, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_tag(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.images.remove_tag(&ctx, image_id(&id)?, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deactivate(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.images.deactivate(&ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reactivate(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.images.reactivate(&ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
