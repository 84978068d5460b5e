//! Flavors, flavor access and extra specs.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use oxistack_compute::flavors::NewFlavor;
use oxistack_model::AppError;
use oxistack_store::compute::Flavor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::links;
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn brief(state: &AppState, f: &Flavor) -> Value {
    json!({"id": f.id, "name": f.name, "links": links(state, &format!("flavors/{}", f.id))})
}

pub(crate) fn full(state: &AppState, f: &Flavor) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "ram": f.ram_mb,
        "disk": f.disk_gb,
        "vcpus": f.vcpus,
        "swap": if f.swap_mb == 0 { json!("") } else { json!(f.swap_mb) },
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
        "links": links(state, &format!("flavors/{}", f.id)),
    })
}

/// Filters, sorting and pagination of flavor listings, as Nova has them.
async fn listed(state: &AppState, auth: &Auth, q: &QueryPairs) -> ApiResult<Vec<Flavor>> {
    let is_public = match q.get("is_public").map(|v| v.to_ascii_lowercase()) {
        None => Some(true),
        Some(v) if v == "none" || v == "all" => None,
        Some(v) => Some(
            crate::body::parse_bool(&v)
                .ok_or_else(|| AppError::bad_request(format!("Invalid is_public filter [{v}]")))?,
        ),
    };
    let mut flavors = state.compute.flavor_list(&auth.0, is_public).await?;
    if let Some(d) = q.uint("minDisk")? {
        flavors.retain(|f| f.disk_gb >= d);
    }
    if let Some(r) = q.uint("minRam")? {
        flavors.retain(|f| f.ram_mb >= r);
    }
    let key = q.get("sort_key").unwrap_or("flavorid");
    let desc = match q.get("sort_dir").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        other => return Err(AppError::bad_request(format!("Invalid sort_dir {other}")).into()),
    };
    match key {
        "flavorid" | "id" => flavors.sort_by(|a, b| a.id.cmp(&b.id)),
        "name" => flavors.sort_by(|a, b| a.name.cmp(&b.name)),
        "memory_mb" | "ram" => flavors.sort_by_key(|f| f.ram_mb),
        "vcpus" => flavors.sort_by_key(|f| f.vcpus),
        "root_gb" | "disk" => flavors.sort_by_key(|f| f.disk_gb),
        other => return Err(AppError::bad_request(format!("Invalid sort_key {other}")).into()),
    }
    if desc {
        flavors.reverse();
    }
    if let Some(m) = q.get("marker") {
        let pos = flavors
            .iter()
            .position(|f| f.id == m)
            .ok_or_else(|| AppError::bad_request(format!("marker [{m}] not found")))?;
        flavors.drain(..=pos);
    }
    if let Some(l) = q.uint("limit")? {
        flavors.truncate(l as usize);
    }
    Ok(flavors)
}

fn next_link(state: &AppState, q: &QueryPairs, items: &[Flavor], key: &str) -> Option<Value> {
    let limit = q.uint("limit").ok().flatten()?;
    if items.len() as i64 != limit || limit == 0 {
        return None;
    }
    let last = items.last()?;
    Some(json!([{"rel": "next", "href": format!(
        "{}/compute/v2.1/{key}?limit={limit}&marker={}", state.settings.public_url(), last.id
    )}]))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let flavors = listed(&state, &auth, &q).await?;
    let mut body = json!({"flavors": flavors.iter().map(|f| brief(&state, f)).collect::<Vec<_>>()});
    if let Some(l) = next_link(&state, &q, &flavors, "flavors") {
        body["flavors_links"] = l;
    }
    Ok(Json(body))
}

pub async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let flavors = listed(&state, &auth, &q).await?;
    let mut body = json!({"flavors": flavors.iter().map(|f| full(&state, f)).collect::<Vec<_>>()});
    if let Some(l) = next_link(&state, &q, &flavors, "flavors/detail") {
        body["flavors_links"] = l;
    }
    Ok(Json(body))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let f = state.compute.flavor_get(&auth.0, &id).await?;
    Ok(Json(json!({"flavor": full(&state, &f)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    flavor: CreateFlavor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFlavor {
    name: String,
    ram: Value,
    vcpus: Value,
    disk: Value,
    id: Option<Value>,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral")]
    ephemeral: Option<Value>,
    swap: Option<Value>,
    rxtx_factor: Option<Value>,
    #[serde(rename = "os-flavor-access:is_public")]
    is_public: Option<Value>,
    description: Option<String>,
}

/// Nova accepts integers or integer strings for flavor sizes.
fn int_field(name: &str, v: Option<&Value>, default: i64) -> Result<i64, AppError> {
    let bad = || {
        AppError::bad_request(format!(
            "Invalid input for field/attribute {name}. Value: {}.",
            v.cloned().unwrap_or_default()
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
        Some(Value::String(s)) if name == "swap" && s.is_empty() => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let f = b.flavor;
    let id = match f.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute id. Value: {other}."
            ))
            .into())
        }
    };
    let rxtx = match f.rxtx_factor {
        None | Some(Value::Null) => 1.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(1.0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| AppError::bad_request("Invalid input for field/attribute rxtx_factor."))?,
        Some(_) => {
            return Err(
                AppError::bad_request("Invalid input for field/attribute rxtx_factor.").into(),
            )
        }
    };
    let is_public = match f.is_public {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => crate::body::parse_bool(&s).ok_or_else(|| {
            AppError::bad_request("Invalid input for field/attribute os-flavor-access:is_public.")
        })?,
        Some(_) => {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute os-flavor-access:is_public.",
            )
            .into())
        }
    };
    let new = NewFlavor {
        id,
        name: f.name,
        vcpus: int_field("vcpus", Some(&f.vcpus), 0)?,
        ram_mb: int_field("ram", Some(&f.ram), 0)?,
        disk_gb: int_field("disk", Some(&f.disk), 0)?,
        ephemeral_gb: int_field("OS-FLV-EXT-DATA:ephemeral", f.ephemeral.as_ref(), 0)?,
        swap_mb: int_field("swap", f.swap.as_ref(), 0)?,
        rxtx_factor: rxtx,
        is_public,
        description: f.description,
    };
    let flavor = state.compute.flavor_create(&auth.0, new).await?;
    Ok(Json(json!({"flavor": full(&state, &flavor)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    state.compute.flavor_delete(&auth.0, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

fn access_view(id: &str, projects: &[String]) -> Value {
    json!({"flavor_access": projects.iter().map(|p| json!({"flavor_id": id, "tenant_id": p})).collect::<Vec<_>>()})
}

pub async fn access_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let projects = state.compute.flavor_access(&auth.0, &id).await?;
    Ok(Json(access_view(&id, &projects)))
}

pub async fn action(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let (add, arg) = if let Some(a) = body.get("addTenantAccess") {
        (true, a)
    } else if let Some(a) = body.get("removeTenantAccess") {
        (false, a)
    } else {
        return Err(AppError::bad_request("There is no such action.").into());
    };
    let tenant = arg
        .get("tenant")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad_request("Invalid input for field/attribute tenant."))?;
    let projects = state
        .compute
        .flavor_access_change(&auth.0, &id, tenant, add)
        .await?;
    Ok(Json(access_view(&id, &projects)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecsBody {
    extra_specs: BTreeMap<String, Value>,
}

fn spec_strings(m: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, AppError> {
    m.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(AppError::bad_request(format!(
                "Invalid input for field/attribute extra_specs: value of {k}."
            ))),
        })
        .collect()
}

pub async fn specs_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        json!({"extra_specs": state.compute.flavor_extra_specs(&auth.0, &id).await?}),
    ))
}

pub async fn specs_create(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SpecsBody>,
) -> ApiResult<impl IntoResponse> {
    let specs = state
        .compute
        .flavor_set_extra_specs(&auth.0, &id, &spec_strings(b.extra_specs)?)
        .await?;
    Ok(Json(json!({"extra_specs": specs})))
}

pub async fn spec_show(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let specs = state.compute.flavor_extra_specs(&auth.0, &id).await?;
    let v = specs.get(&key).ok_or_else(|| {
        AppError::not_found(format!("Flavor {id} has no extra specs with key {key}."))
    })?;
    Ok(Json(json!({ key: v })))
}

pub async fn spec_update(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<BTreeMap<String, Value>>,
) -> ApiResult<impl IntoResponse> {
    if b.len() != 1 || !b.contains_key(&key) {
        return Err(AppError::bad_request("Request body and URI mismatch").into());
    }
    let specs = state
        .compute
        .flavor_set_extra_specs(&auth.0, &id, &spec_strings(b)?)
        .await?;
    Ok(Json(json!(specs)))
}

pub async fn spec_delete(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    state
        .compute
        .flavor_delete_extra_spec(&auth.0, &id, &key)
        .await?;
    Ok(StatusCode::OK)
}
