//! `/allocations/{consumer}`, `POST /allocations` (1.13+) and
//! `/resource_providers/{uuid}/allocations`.
//!
//! Bodies change shape at 1.12 (a list of `{resource_provider, resources}`
//! before, a dict keyed by provider uuid after); both are parsed into the
//! one `ConsumerWrite` the scheduler takes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_model::AppError;
use oxistack_scheduler::ConsumerWrite;
use serde_json::{json, Map, Value};

use super::providers::path_uuid;
use super::{method_since, parse_uuid};
use crate::body::parse_json;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

/// Placement's `incomplete_consumer_project_id` / `_user_id`, for writes
/// before 1.8 that name no owner.
const INCOMPLETE_CONSUMER: &str = "00000000-0000-0000-0000-000000000000";

fn invalid(msg: impl std::fmt::Display) -> AppError {
    AppError::bad_request(format!("JSON does not validate: {msg}"))
}

fn consumer_uuid(s: &str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| AppError::bad_request(format!("Malformed consumer_uuid: {s}")))
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), AppError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// `{"VCPU": 1, ...}`: at least one class, each amount an integer >= 1.
fn resources(rp: &str, v: &Value, out: &mut Vec<(String, String, i64)>) -> Result<(), AppError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("'resources' must be an object"))?;
    if obj.is_empty() {
        return Err(invalid("'resources' does not have enough properties"));
    }
    for (class, amount) in obj {
        oxistack_scheduler::catalog::check_class_syntax(class)?;
        let n = amount
            .as_i64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(format!("{amount} for {class} is not an integer >= 1")))?;
        out.push((rp.to_string(), class.clone(), n));
    }
    Ok(())
}

/// The allocations of one consumer as the microversion writes them.
fn allocations(
    v: ApiVersion,
    value: Option<&Value>,
    allow_empty: bool,
) -> Result<Vec<(String, String, i64)>, AppError> {
    let value = value.ok_or_else(|| invalid("'allocations' is a required property"))?;
    let mut out = Vec::new();
    if v.at_least(1, 12) {
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("'allocations' must be an object"))?;
        if obj.is_empty() && !allow_empty {
            return Err(invalid("'allocations' does not have enough properties"));
        }
        for (rp, a) in obj {
            let rp = parse_uuid(rp, "allocations")?;
            let a = a
                .as_object()
                .ok_or_else(|| invalid("each allocation must be an object"))?;
            only_keys(a, &["resources", "generation"])?;
            resources(
                &rp,
                a.get("resources")
                    .ok_or_else(|| invalid("'resources' is a required property"))?,
                &mut out,
            )?;
        }
    } else {
        let list = value
            .as_array()
            .ok_or_else(|| invalid("'allocations' must be an array"))?;
        if list.is_empty() {
            return Err(invalid("[] is too short"));
        }
        for a in list {
            let a = a
                .as_object()
                .ok_or_else(|| invalid("each allocation must be an object"))?;
            only_keys(a, &["resource_provider", "resources"])?;
            let rp = a
                .get("resource_provider")
                .and_then(|r| r.get("uuid"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("'resource_provider' with a 'uuid' is required"))?;
            let rp = parse_uuid(rp, "resource_provider")?;
            resources(
                &rp,
                a.get("resources")
                    .ok_or_else(|| invalid("'resources' is a required property"))?,
                &mut out,
            )?;
        }
    }
    Ok(out)
}

fn owner(v: ApiVersion, obj: &Map<String, Value>, key: &str) -> Result<String, AppError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        Some(other) => Err(invalid(format!("{other} is not a valid '{key}'"))),
        None if v.at_least(1, 8) => Err(invalid(format!("'{key}' is a required property"))),
        None => Ok(INCOMPLETE_CONSUMER.to_string()),
    }
}

/// One consumer's write from its JSON object.
fn consumer_write(
    v: ApiVersion,
    consumer: String,
    body: &Value,
    allow_empty: bool,
) -> Result<ConsumerWrite, AppError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("the body must be an object"))?;
    only_keys(obj, &["allocations", "project_id", "user_id"])?;
    if obj.contains_key("project_id") != obj.contains_key("user_id") && !v.at_least(1, 8) {
        return Err(invalid("'project_id' and 'user_id' go together"));
    }
    Ok(ConsumerWrite {
        consumer,
        project_id: owner(v, obj, "project_id")?,
        user_id: owner(v, obj, "user_id")?,
        consumer_generation: None,
        allocations: allocations(v, obj.get("allocations"), allow_empty)?,
    })
}

pub async fn show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(consumer): Path<String>,
) -> ApiResult<Json<Value>> {
    let view = s
        .placement
        .consumer_allocations(&consumer_uuid(&consumer)?)
        .await?;
    let allocs: Map<String, Value> = view
        .by_provider
        .iter()
        .map(|(rp, res)| {
            (
                rp.uuid.clone(),
                json!({"generation": rp.generation, "resources": res}),
            )
        })
        .collect();
    let mut out = json!({"allocations": allocs});
    if v.at_least(1, 12) && !view.by_provider.is_empty() {
        if let Some(c) = view.consumer {
            out["project_id"] = json!(c.project_id);
            out["user_id"] = json!(c.user_id);
        }
    }
    Ok(Json(out))
}

pub async fn replace(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(consumer): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let consumer = consumer_uuid(&consumer)?;
    let body: Value = parse_json(&body)?;
    let w = consumer_write(v, consumer, &body, false)?;
    s.placement.set_allocations(&[w]).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn post_many(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    method_since(v, 1, 13, "POST")?;
    let body: Value = parse_json(&body)?;
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("the body must be an object"))?;
    if obj.is_empty() {
        return Err(invalid("{} does not have enough properties").into());
    }
    let mut writes = Vec::new();
    for (consumer, b) in obj {
        writes.push(consumer_write(v, consumer_uuid(consumer)?, b, true)?);
    }
    s.placement.set_allocations(&writes).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(s): State<AppState>,
    Path(consumer): Path<String>,
) -> ApiResult<StatusCode> {
    s.placement
        .delete_allocations(&consumer_uuid(&consumer)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn for_provider(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let (rp, allocs) = s.placement.provider_allocations(&path_uuid(&uuid)?).await?;
    let allocs: Map<String, Value> = allocs
        .into_iter()
        .map(|(consumer, res)| (consumer, json!({"resources": res})))
        .collect();
    Ok(Json(
        json!({"resource_provider_generation": rp.generation, "allocations": allocs}),
    ))
}
