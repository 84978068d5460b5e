//! `/resource_providers/{uuid}/inventories[/{class}]`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_model::AppError;
use oxistack_scheduler::providers::MAX_INT;
use oxistack_scheduler::{Inventory, InventorySpec};
use serde::Deserialize;
use serde_json::{json, Value};

use super::method_since;
use super::providers::{path_uuid, provider_url};
use crate::body::parse_json;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn view(i: &Inventory) -> Value {
    json!({
        "total": i.total,
        "reserved": i.reserved,
        "min_unit": i.min_unit,
        "max_unit": i.max_unit,
        "step_size": i.step_size,
        "allocation_ratio": i.allocation_ratio,
    })
}

fn view_all(generation: i64, inv: &[Inventory]) -> Value {
    let map: serde_json::Map<String, Value> = inv
        .iter()
        .map(|i| (i.resource_class.clone(), view(i)))
        .collect();
    json!({"resource_provider_generation": generation, "inventories": map})
}

fn view_one(generation: i64, i: &Inventory) -> Value {
    let mut v = view(i);
    v["resource_provider_generation"] = json!(generation);
    v
}

/// One inventory's fields, with Placement's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    total: i64,
    #[serde(default)]
    reserved: i64,
    #[serde(default = "one")]
    min_unit: i64,
    #[serde(default = "max_int")]
    max_unit: i64,
    #[serde(default = "one")]
    step_size: i64,
    #[serde(default = "ratio")]
    allocation_ratio: f64,
}

fn one() -> i64 {
    1
}
fn max_int() -> i64 {
    MAX_INT
}
fn ratio() -> f64 {
    1.0
}

impl From<Fields> for InventorySpec {
    fn from(f: Fields) -> Self {
        InventorySpec {
            total: f.total,
            reserved: f.reserved,
            min_unit: f.min_unit,
            max_unit: f.max_unit,
            step_size: f.step_size,
            allocation_ratio: f.allocation_ratio,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    resource_provider_generation: i64,
    inventories: BTreeMap<String, Fields>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneBody {
    resource_provider_generation: i64,
    #[serde(flatten)]
    fields: FieldsLoose,
}

/// `#[serde(flatten)]` and `deny_unknown_fields` do not mix, so single
/// inventories are checked for unknown keys by hand.
#[derive(Deserialize)]
struct FieldsLoose {
    #[serde(default)]
    resource_class: Option<String>,
    total: i64,
    #[serde(default)]
    reserved: Option<i64>,
    #[serde(default)]
    min_unit: Option<i64>,
    #[serde(default)]
    max_unit: Option<i64>,
    #[serde(default)]
    step_size: Option<i64>,
    #[serde(default)]
    allocation_ratio: Option<f64>,
}

const ONE_KEYS: &[&str] = &[
    "resource_provider_generation",
    "resource_class",
    "total",
    "reserved",
    "min_unit",
    "max_unit",
    "step_size",
    "allocation_ratio",
];

fn parse_one(body: &[u8], with_class: bool) -> ApiResult<(Option<String>, i64, InventorySpec)> {
    let raw: Value = parse_json(body)?;
    if let Some(obj) = raw.as_object() {
        for k in obj.keys() {
            if !ONE_KEYS.contains(&k.as_str()) || (k == "resource_class" && !with_class) {
                return Err(AppError::bad_request(format!(
                    "JSON does not validate: Additional properties are not allowed ('{k}' was unexpected)"
                ))
                .into());
            }
        }
    }
    let b: OneBody = serde_json::from_value(raw)
        .map_err(|e| AppError::bad_request(format!("JSON does not validate: {e}")))?;
    let f = b.fields;
    let spec = InventorySpec {
        total: f.total,
        reserved: f.reserved.unwrap_or(0),
        min_unit: f.min_unit.unwrap_or(1),
        max_unit: f.max_unit.unwrap_or(MAX_INT),
        step_size: f.step_size.unwrap_or(1),
        allocation_ratio: f.allocation_ratio.unwrap_or(1.0),
    };
    Ok((f.resource_class, b.resource_provider_generation, spec))
}

pub async fn list(State(s): State<AppState>, Path(uuid): Path<String>) -> ApiResult<Json<Value>> {
    let (rp, inv) = s.placement.inventories(&path_uuid(&uuid)?).await?;
    Ok(Json(view_all(rp.generation, &inv)))
}

pub async fn replace(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let uuid = path_uuid(&uuid)?;
    let b: ReplaceBody = parse_json(&body)?;
    let inv: Vec<(String, InventorySpec)> = b
        .inventories
        .into_iter()
        .map(|(c, f)| (c, f.into()))
        .collect();
    let (rp, inv) = s
        .placement
        .set_inventories(
            &uuid,
            b.resource_provider_generation,
            &inv,
            true,
            v.at_least(1, 26),
        )
        .await?;
    Ok(Json(view_all(rp.generation, &inv)))
}

pub async fn create(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let uuid = path_uuid(&uuid)?;
    let (class, generation, spec) = parse_one(&body, true)?;
    let class = class.ok_or_else(|| {
        AppError::bad_request("JSON does not validate: 'resource_class' is a required property")
    })?;
    let (rp, inv) = s
        .placement
        .add_inventory(&uuid, generation, &class, &spec, v.at_least(1, 26))
        .await?;
    let location = format!("{}/inventories/{class}", provider_url(&uuid));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view_one(rp.generation, &inv)),
    )
        .into_response())
}

pub async fn show(
    State(s): State<AppState>,
    Path((uuid, class)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (rp, inv) = s.placement.inventory(&path_uuid(&uuid)?, &class).await?;
    Ok(Json(view_one(rp.generation, &inv)))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path((uuid, class)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let uuid = path_uuid(&uuid)?;
    let (_, generation, spec) = parse_one(&body, false)?;
    // Only an existing class can be updated here.
    s.placement.inventory(&uuid, &class).await?;
    let (rp, inv) = s
        .placement
        .update_inventory(&uuid, generation, &class, &spec, v.at_least(1, 26))
        .await?;
    Ok(Json(view_one(rp.generation, &inv)))
}

pub async fn delete(
    State(s): State<AppState>,
    Path((uuid, class)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.placement
        .delete_inventory(&path_uuid(&uuid)?, Some(&class))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_all(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
) -> ApiResult<StatusCode> {
    method_since(v, 1, 5, "DELETE")?;
    s.placement
        .delete_inventory(&path_uuid(&uuid)?, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
