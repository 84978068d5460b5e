//! Limits, quota sets and availability zones.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use oxistack_compute::quotas::QUOTA_NAMES;
use oxistack_model::AppError;
use serde_json::{json, Value};

use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn shown(name: &str, v: ApiVersion) -> bool {
    let net = QUOTA_NAMES
        .iter()
        .any(|(n, removed)| *n == name && *removed);
    !(net && v.at_least(2, 36))
}

pub async fn limits(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let project = match q.get("tenant_id") {
        Some(t) => t.to_string(),
        None => auth.0.project()?.to_string(),
    };
    let set = state.compute.quota_show(&auth.0, &project).await?;
    let l = |n: &str| set.limits.get(n).copied().unwrap_or(-1);
    let u = |n: &str| set.in_use.get(n).copied().unwrap_or(0);
    let mut abs = json!({
        "maxServerMeta": l("metadata_items"),
        "maxPersonality": l("injected_files"),
        "maxPersonalitySize": l("injected_file_content_bytes"),
        "maxTotalKeypairs": l("key_pairs"),
        "maxTotalCores": l("cores"),
        "maxTotalInstances": l("instances"),
        "maxTotalRAMSize": l("ram"),
        "maxServerGroups": l("server_groups"),
        "maxServerGroupMembers": l("server_group_members"),
        "totalCoresUsed": u("cores"),
        "totalInstancesUsed": u("instances"),
        "totalRAMUsed": u("ram"),
        "totalServerGroupsUsed": 0,
    });
    if !v.at_least(2, 36) {
        abs["maxSecurityGroups"] = json!(l("security_groups"));
        abs["maxSecurityGroupRules"] = json!(l("security_group_rules"));
        abs["maxTotalFloatingIps"] = json!(l("floating_ips"));
        abs["totalSecurityGroupsUsed"] = json!(0);
        abs["totalFloatingIpsUsed"] = json!(0);
    }
    if !v.at_least(2, 39) {
        abs["maxImageMeta"] = json!(128);
    }
    Ok(Json(json!({"limits": {"rate": [], "absolute": abs}})))
}

fn quota_view(
    project: &str,
    values: &BTreeMap<String, Value>,
    v: ApiVersion,
    with_id: bool,
) -> Value {
    let mut o = serde_json::Map::new();
    if with_id {
        o.insert("id".into(), json!(project));
    }
    for (k, val) in values {
        if shown(k, v) {
            o.insert(k.clone(), val.clone());
        }
    }
    json!({"quota_set": o})
}

pub async fn quota_show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(project): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let set = state.compute.quota_show(&auth.0, &project).await?;
    let values = set
        .limits
        .iter()
        .map(|(k, l)| (k.clone(), json!(l)))
        .collect();
    Ok(Json(quota_view(&project, &values, v, true)))
}

pub async fn quota_detail(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(project): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let set = state.compute.quota_show(&auth.0, &project).await?;
    let values = set
        .limits
        .iter()
        .map(|(k, l)| {
            (k.clone(), json!({"limit": l, "in_use": set.in_use.get(k).copied().unwrap_or(0), "reserved": 0}))
        })
        .collect();
    Ok(Json(quota_view(&project, &values, v, true)))
}

pub async fn quota_defaults(
    State(state): State<AppState>,
    _auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(project): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let values = state
        .compute
        .quota_defaults()
        .into_iter()
        .map(|(k, l)| (k, json!(l)))
        .collect();
    Ok(Json(quota_view(&project, &values, v, true)))
}

pub async fn quota_update(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(project): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let set = body
        .get("quota_set")
        .and_then(|s| s.as_object())
        .ok_or_else(|| AppError::bad_request("Invalid input for field/attribute quota_set."))?;
    let mut changes = BTreeMap::new();
    let mut force = false;
    for (k, val) in set {
        if k == "force" {
            force = match val {
                Value::Bool(b) => *b,
                Value::String(s) => crate::body::parse_bool(s).unwrap_or(false),
                _ => false,
            };
            continue;
        }
        if !shown(k, v) {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute quota_set. Additional properties are not allowed ('{k}' was unexpected)"
            ))
            .into());
        }
        let n = match val {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            AppError::bad_request(format!(
                "Invalid input for field/attribute {k}. Value: {val}."
            ))
        })?;
        changes.insert(k.clone(), n);
    }
    let set = state
        .compute
        .quota_update(&auth.0, &project, &changes, force)
        .await?;
    let values = set
        .limits
        .iter()
        .map(|(k, l)| (k.clone(), json!(l)))
        .collect();
    Ok(Json(quota_view(&project, &values, v, false)))
}

pub async fn quota_delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
) -> ApiResult<impl IntoResponse> {
    state.compute.quota_reset(&auth.0, &project).await?;
    Ok(StatusCode::ACCEPTED)
}

pub async fn zones(State(state): State<AppState>, _auth: Auth) -> ApiResult<impl IntoResponse> {
    Ok(Json(json!({"availabilityZoneInfo": [
        {"zoneName": state.settings.availability_zone, "zoneState": {"available": true}, "hosts": null}
    ]})))
}

pub async fn zones_detail(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    auth.0.require_admin()?;
    let hosts: serde_json::Map<String, Value> = state
        .compute
        .conductor
        .bus
        .hosts()
        .into_iter()
        .map(|h| {
            (
                h,
                json!({"nova-compute": {"available": true, "active": true, "updated_at": null}}),
            )
        })
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": [
        {"zoneName": "internal", "zoneState": {"available": true}, "hosts": {}},
        {"zoneName": state.settings.availability_zone, "zoneState": {"available": true}, "hosts": hosts},
    ]})))
}
