//! Nova's floating IP proxy: `os-floating-ips`, `os-floating-ip-pools`
//! (below 2.36, 404 from 2.36) and the `addFloatingIp` / `removeFloatingIp`
//! server actions (below 2.44). The work is `oxistack_compute`'s.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_compute::floating_ips::NovaFloatingIp;
use oxistack_model::{AppError, AuthContext, ServerId};
use serde_json::{json, Value};

use super::versions::proxy_api;
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn view(f: &NovaFloatingIp) -> Value {
    json!({
        "id": f.id.to_string(),
        "ip": f.ip.to_string(),
        "fixed_ip": f.fixed_ip.map(|i| i.to_string()),
        "instance_id": f.instance_id,
        "pool": f.pool,
    })
}

/// The pool a create names: the body is optional, `{"pool": null}` or
/// `{"pool": "<name or id>"}`.
pub(crate) fn requested_pool(body: &[u8]) -> Result<Option<String>, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("Malformed request body: {e}")))?;
    match &v {
        Value::Null => Ok(None),
        Value::Object(o) => match o.get("pool") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(p)) => Ok(Some(p.clone())),
            Some(other) => Err(AppError::bad_request(format!(
                "Invalid input for field/attribute pool. Value: {other}. {other} is not of type 'string', 'null'"
            ))),
        },
        other => Err(AppError::bad_request(format!(
            "Invalid input for the request body. Value: {other}. {other} is not of type 'object', 'null'"
        ))),
    }
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let list = state.compute.floating_ip_list(&auth.0).await?;
    Ok(Json(
        json!({"floating_ips": list.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let f = state.compute.floating_ip_show(&auth.0, &id).await?;
    Ok(Json(json!({"floating_ip": view(&f)})))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let pool = requested_pool(&body)?;
    let f = state
        .compute
        .floating_ip_allocate(&auth.0, pool.as_deref())
        .await?;
    Ok(Json(json!({"floating_ip": view(&f)})))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    state.compute.floating_ip_release(&auth.0, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

pub async fn pools(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let names = state.compute.floating_ip_pools(&auth.0).await?;
    let pools: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    Ok(Json(json!({ "floating_ip_pools": pools })))
}

/// An `address` member of an action body: an IPv4 or IPv6 address.
fn address(action: &str, arg: &Value, key: &str) -> Result<Option<IpAddr>, AppError> {
    match arg.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                AppError::bad_request(format!(
                    "Invalid input for field/attribute {key}. Value: {v}. {v} is not valid under any of the given schemas ({action})"
                ))
            }),
    }
}

/// `{"address": ip, "fixed_address"?: ip}` (only `address` for a remove).
pub(crate) fn action_addresses(
    action: &str,
    arg: &Value,
) -> Result<(IpAddr, Option<IpAddr>), AppError> {
    let allowed: &[&str] = if action == "addFloatingIp" {
        &["address", "fixed_address"]
    } else {
        &["address"]
    };
    super::servers::action_object(action, arg, allowed)?;
    let addr = address(action, arg, "address")?.ok_or_else(|| {
        AppError::bad_request(format!(
            "Invalid input for field/attribute {action}. Value: {arg}. 'address' is a required property"
        ))
    })?;
    Ok((addr, address(action, arg, "fixed_address")?))
}

/// `addFloatingIp` / `removeFloatingIp` (202).
pub(crate) async fn server_action(
    state: &AppState,
    ctx: &AuthContext,
    sid: &ServerId,
    action: &str,
    arg: &Value,
) -> ApiResult<Response> {
    let (addr, fixed) = action_addresses(action, arg)?;
    let c = &state.compute;
    if action == "addFloatingIp" {
        c.server_add_floating_ip(ctx, sid, addr, fixed).await?;
    } else {
        c.server_remove_floating_ip(ctx, sid, addr).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_optional() {
        assert_eq!(requested_pool(b"").unwrap(), None);
        assert_eq!(requested_pool(b"null").unwrap(), None);
        assert_eq!(requested_pool(b"{}").unwrap(), None);
        assert_eq!(
            requested_pool(br#"{"pool": "public"}"#).unwrap().as_deref(),
            Some("public")
        );
        for bad in [&b"[]"[..], br#"{"pool": 5}"#, b"{"] {
            assert_eq!(requested_pool(bad).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn action_bodies_carry_addresses() {
        let ip: IpAddr = "172.24.4.10".parse().unwrap();
        let fixed: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(
            action_addresses("addFloatingIp", &json!({"address": "172.24.4.10"})).unwrap(),
            (ip, None)
        );
        assert_eq!(
            action_addresses(
                "addFloatingIp",
                &json!({"address": "172.24.4.10", "fixed_address": "10.0.0.3"})
            )
            .unwrap(),
            (ip, Some(fixed))
        );
        for (action, bad) in [
            ("addFloatingIp", json!({"address": ""})),
            ("addFloatingIp", json!({})),
            ("addFloatingIp", json!("172.24.4.10")),
            ("addFloatingIp", json!({"address": "172.24.4.10", "x": 1})),
            (
                "removeFloatingIp",
                json!({"address": "172.24.4.10", "fixed_address": "10.0.0.3"}),
            ),
            ("removeFloatingIp", json!({"address": "300.1.1.1"})),
        ] {
            assert_eq!(
                action_addresses(action, &bad).unwrap_err().status(),
                400,
                "{action} {bad}"
            );
        }
    }
}
