//! Interface attachments (`/servers/{id}/os-interface`): list, show, attach
//! (200 with the port once its NIC is plugged) and detach (202).
//!
//! The `tag` of an attachment (2.49 in requests, 2.70 in views) is beyond
//! the microversions served, so a request naming it is refused as Nova
//! refuses it below 2.49.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use oxistack_compute::interfaces::{AttachRequest, InterfaceAttachment};
use oxistack_model::{AppError, PortId, ServerId};
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::context::Auth;
use crate::{ApiResult, AppState};

fn server_id(s: &str) -> Result<ServerId, AppError> {
    s.parse()
        .map_err(|_| AppError::not_found(format!("Instance {s} could not be found.")))
}

fn port_id(s: &str) -> Result<PortId, AppError> {
    s.parse()
        .map_err(|_| AppError::not_found(format!("Port {s} could not be found.")))
}

fn view(a: &InterfaceAttachment) -> Value {
    let fixed_ips: Vec<Value> = a
        .fixed_ips
        .iter()
        .map(|f| json!({"subnet_id": f.subnet_id.to_string(), "ip_address": f.ip_address.to_string()}))
        .collect();
    json!({
        "port_state": a.port_state,
        "fixed_ips": fixed_ips,
        "port_id": a.port_id.to_string(),
        "net_id": a.net_id.to_string(),
        "mac_addr": a.mac_addr,
    })
}

fn invalid(field: &str, value: &Value, why: String) -> AppError {
    AppError::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

fn unexpected_key(o: &serde_json::Map<String, Value>, allowed: &[&str]) -> Option<String> {
    o.keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("Additional properties are not allowed ('{k}' was unexpected)"))
}

fn uuid_field<T: std::str::FromStr>(
    o: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<T>, AppError> {
    match o.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| invalid(k, v, format!("{v} is not a 'uuid'"))),
    }
}

/// The body of an attach, checked as Nova's JSON schema checks it (below
/// 2.49): `{"interfaceAttachment": {"port_id"} | {"net_id", "fixed_ips":
/// [{"ip_address"}]}}`, every member optional, nothing else allowed.
pub(crate) fn attach_request(body: &Value) -> Result<AttachRequest, AppError> {
    let top = body.as_object().ok_or_else(|| {
        AppError::bad_request(format!(
            "Invalid input for the request body. Value: {body}. It is not an object."
        ))
    })?;
    if let Some(why) = unexpected_key(top, &["interfaceAttachment"]) {
        return Err(AppError::bad_request(why));
    }
    let Some(att) = top.get("interfaceAttachment") else {
        return Ok(AttachRequest::default());
    };
    let o = att.as_object().ok_or_else(|| {
        invalid(
            "interfaceAttachment",
            att,
            format!("{att} is not of type 'object'"),
        )
    })?;
    if let Some(why) = unexpected_key(o, &["net_id", "port_id", "fixed_ips"]) {
        return Err(invalid("interfaceAttachment", att, why));
    }
    let mut req = AttachRequest {
        port_id: uuid_field(o, "port_id")?,
        net_id: uuid_field(o, "net_id")?,
        fixed_ip: None,
    };
    if let Some(ips) = o.get("fixed_ips") {
        let list = ips
            .as_array()
            .ok_or_else(|| invalid("fixed_ips", ips, format!("{ips} is not of type 'array'")))?;
        if list.len() != 1 {
            return Err(invalid(
                "fixed_ips",
                ips,
                "Exactly one fixed IP may be requested.".into(),
            ));
        }
        let item = list[0].as_object().ok_or_else(|| {
            invalid(
                "fixed_ips",
                &list[0],
                format!("{} is not of type 'object'", list[0]),
            )
        })?;
        if let Some(why) = unexpected_key(item, &["ip_address"]) {
            return Err(invalid("fixed_ips", &list[0], why));
        }
        let ip = item.get("ip_address").ok_or_else(|| {
            invalid(
                "fixed_ips",
                &list[0],
                "'ip_address' is a required property".into(),
            )
        })?;
        req.fixed_ip = Some(
            ip.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("ip_address", ip, format!("{ip} is not an IP address")))?,
        );
    }
    Ok(req)
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let list = state
        .compute
        .interface_list(&auth.0, &server_id(&id)?)
        .await?;
    let views: Vec<Value> = list.iter().map(view).collect();
    Ok(Json(json!({ "interfaceAttachments": views })))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, port)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let a = state
        .compute
        .interface_get(&auth.0, &server_id(&id)?, &port_id(&port)?)
        .await?;
    Ok(Json(json!({ "interfaceAttachment": view(&a) })))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let sid = server_id(&id)?;
    let req = attach_request(&body)?;
    let a = state.compute.interface_attach(&auth.0, &sid, req).await?;
    Ok(Json(json!({ "interfaceAttachment": view(&a) })))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, port)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    state
        .compute
        .interface_detach(&auth.0, &server_id(&id)?, &port_id(&port)?)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_bodies_are_checked_as_nova_checks_them() {
        let port = PortId::new();
        let net = oxistack_model::NetworkId::new();
        assert_eq!(
            attach_request(&json!({"interfaceAttachment": {"port_id": port.to_string()}})).unwrap(),
            AttachRequest {
                port_id: Some(port),
                ..Default::default()
            }
        );
        assert_eq!(
            attach_request(&json!({"interfaceAttachment": {
                "net_id": net.to_string(), "fixed_ips": [{"ip_address": "10.0.0.9"}]}}))
            .unwrap(),
            AttachRequest {
                net_id: Some(net),
                fixed_ip: Some("10.0.0.9".parse().unwrap()),
                ..Default::default()
            }
        );
        assert_eq!(
            attach_request(&json!({})).unwrap(),
            AttachRequest::default()
        );
        for bad in [
            json!([]),
            json!({"interfaceAttachment": {"port_id": port.to_string()}, "x": 1}),
            json!({"interfaceAttachment": "x"}),
            json!({"interfaceAttachment": {"port_id": "not-a-uuid"}}),
            json!({"interfaceAttachment": {"net_id": 7}}),
            json!({"interfaceAttachment": {"port_id": port.to_string(), "tag": "a"}}),
            json!({"interfaceAttachment": {"net_id": net.to_string(), "fixed_ips": []}}),
            json!({"interfaceAttachment": {"net_id": net.to_string(), "fixed_ips": [{}]}}),
            json!({"interfaceAttachment": {"net_id": net.to_string(),
                "fixed_ips": [{"ip_address": "10.0.0.1"}, {"ip_address": "10.0.0.2"}]}}),
            json!({"interfaceAttachment": {"net_id": net.to_string(),
                "fixed_ips": [{"ip_address": "10.0.0.300"}]}}),
            json!({"interfaceAttachment": {"net_id": net.to_string(),
                "fixed_ips": [{"ip_address": "10.0.0.1", "subnet_id": "x"}]}}),
        ] {
            let e = attach_request(&bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}: {e}");
        }
    }
}
