//! Keypairs (`os-keypairs`), per user.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use oxistack_model::time::iso_seconds;
use oxistack_model::AppError;
use oxistack_store::compute::Keypair;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn view(k: &Keypair, v: ApiVersion, detail: bool) -> Value {
    let mut o = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if v.at_least(2, 2) {
        o["type"] = json!(k.key_type);
    }
    if detail {
        o["user_id"] = json!(k.user_id.to_string());
        o["created_at"] = json!(iso_seconds(&k.created_at).trim_end_matches('Z'));
        o["deleted"] = json!(false);
        o["deleted_at"] = Value::Null;
        o["updated_at"] = Value::Null;
        o["id"] = json!(0);
    }
    o
}

/// `user_id` is an admin option from 2.10.
fn user_param(q: &QueryPairs, v: ApiVersion) -> Option<String> {
    if v.at_least(2, 10) {
        q.get("user_id").map(String::from)
    } else {
        None
    }
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let mut keys = state
        .compute
        .keypair_list(&auth.0, user_param(&q, v).as_deref())
        .await?;
    let mut links = None;
    if v.at_least(2, 35) {
        if let Some(m) = q.get("marker") {
            let pos = keys
                .iter()
                .position(|k| k.name == m)
                .ok_or_else(|| AppError::bad_request(format!("marker [{m}] not found")))?;
            keys.drain(..=pos);
        }
        if let Some(l) = q.uint("limit")? {
            if keys.len() > l as usize {
                keys.truncate(l as usize);
                if let Some(last) = keys.last() {
                    links = Some(json!([{"rel": "next", "href": format!(
                        "{}/compute/v2.1/os-keypairs?limit={l}&marker={}", state.settings.public_url(), last.name
                    )}]));
                }
            }
        }
    }
    let mut body = json!({"keypairs": keys.iter().map(|k| json!({"keypair": view(k, v, false)})).collect::<Vec<_>>()});
    if let Some(l) = links {
        body["keypairs_links"] = l;
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct CreateBody {
    keypair: CreateKeypair,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeypair {
    name: String,
    public_key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    user_id: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let k = b.keypair;
    if k.key_type.is_some() && !v.at_least(2, 2) {
        return Err(AppError::bad_request("Invalid input for field/attribute keypair. Additional properties are not allowed ('type' was unexpected)").into());
    }
    if k.user_id.is_some() && !v.at_least(2, 10) {
        return Err(AppError::bad_request("Invalid input for field/attribute keypair. Additional properties are not allowed ('user_id' was unexpected)").into());
    }
    let (kp, private) = state
        .compute
        .keypair_create(
            &auth.0,
            &k.name,
            k.key_type.as_deref(),
            k.public_key.as_deref(),
            k.user_id.as_deref(),
        )
        .await?;
    let mut o = view(&kp, v, false);
    o["user_id"] = json!(kp.user_id.to_string());
    if let Some(p) = private {
        o["private_key"] = json!(p);
    }
    let status = if v.at_least(2, 2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"keypair": o}))))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let kp = state
        .compute
        .keypair_get(&auth.0, &name, user_param(&q, v).as_deref())
        .await?;
    Ok(Json(json!({"keypair": view(&kp, v, true)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(name): Path<String>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    state
        .compute
        .keypair_delete(&auth.0, &name, user_param(&q, v).as_deref())
        .await?;
    Ok(if v.at_least(2, 2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}
