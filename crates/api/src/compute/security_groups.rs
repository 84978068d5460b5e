//! Nova's security group proxy: `os-security-groups` and
//! `os-security-group-rules` (below 2.36, 404 from 2.36), a server's groups
//! (`/servers/{id}/os-security-groups`) and the `addSecurityGroup` /
//! `removeSecurityGroup` actions (every version). Bodies are checked as
//! Nova's JSON schemas check them; the work is `oxistack_compute`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use oxistack_compute::security_groups::{
    NovaRule, NovaRuleCreate, NovaSecurityGroup, PortArg, RuleSource,
};
use oxistack_model::{AppError, AuthContext, SecurityGroupId, SecurityGroupRuleId, ServerId};
use serde_json::{json, Map, Value};

use super::versions::proxy_api;
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn group_id(s: &str) -> Result<SecurityGroupId, AppError> {
    s.parse()
        .map_err(|_| AppError::bad_request("Security group id should be uuid"))
}

fn rule_view(r: &NovaRule) -> Value {
    let (group, ip_range) = match &r.source {
        RuleSource::Cidr(c) => (json!({}), json!({"cidr": c})),
        RuleSource::Group { name, tenant_id } => (
            json!({"name": name, "tenant_id": tenant_id.to_string()}),
            json!({}),
        ),
    };
    json!({
        "id": r.id.to_string(),
        "parent_group_id": r.parent_group_id.to_string(),
        "ip_protocol": r.ip_protocol,
        "from_port": r.from_port,
        "to_port": r.to_port,
        "group": group,
        "ip_range": ip_range,
    })
}

fn group_view(g: &NovaSecurityGroup) -> Value {
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "description": g.description,
        "tenant_id": g.tenant_id.to_string(),
        "rules": g.rules.iter().map(rule_view).collect::<Vec<_>>(),
    })
}

fn invalid(field: &str, value: &Value, why: &str) -> AppError {
    AppError::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

/// The object under `key` of a request body (`{"security_group": {…}}`).
fn member<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>, AppError> {
    let top = body.as_object().ok_or_else(|| {
        AppError::bad_request(format!(
            "Invalid input for the request body. Value: {body}. It is not an object."
        ))
    })?;
    let v = top.get(key).ok_or_else(|| {
        AppError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {body}. '{key}' is a required property"
        ))
    })?;
    v.as_object()
        .ok_or_else(|| invalid(key, v, &format!("{v} is not of type 'object'")))
}

/// `name` and `description` of a group: required strings of at most 255
/// characters.
fn name_and_description(body: &Value) -> Result<(String, String), AppError> {
    let sg = member(body, "security_group")?;
    let field = |k: &str| -> Result<String, AppError> {
        let v = sg.get(k).ok_or_else(|| {
            invalid(
                "security_group",
                &Value::Object(sg.clone()),
                &format!("'{k}' is a required property"),
            )
        })?;
        let s = v
            .as_str()
            .ok_or_else(|| invalid(k, v, &format!("{v} is not of type 'string'")))?;
        if s.chars().count() > 255 {
            return Err(invalid(k, v, &format!("'{s}' is too long")));
        }
        Ok(s.to_string())
    };
    Ok((field("name")?, field("description")?))
}

fn port_arg(v: Option<&Value>) -> Option<PortArg> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(match n.as_i64() {
            Some(i) => PortArg::Int(i),
            // Python's int() truncates a float.
            None => n
                .as_f64()
                .map(|f| PortArg::Int(f.trunc() as i64))
                .unwrap_or_else(|| PortArg::Text(n.to_string())),
        }),
        Some(Value::String(s)) => Some(PortArg::Text(s.clone())),
        Some(other) => Some(PortArg::Text(other.to_string())),
    }
}

/// `{"security_group_rule": {"parent_group_id", "group_id"?, "ip_protocol"?,
/// "from_port"?, "to_port"?, "cidr"?}}`; the ids must be UUIDs, the rest is
/// Nova's to judge.
pub(crate) fn rule_request(body: &Value) -> Result<NovaRuleCreate, AppError> {
    let r = member(body, "security_group_rule")?;
    let uuid = |k: &str, v: &Value| -> Result<SecurityGroupId, AppError> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(k, v, &format!("{v} is not a 'uuid'")))
    };
    let parent = r.get("parent_group_id").ok_or_else(|| {
        invalid(
            "security_group_rule",
            &Value::Object(r.clone()),
            "'parent_group_id' is a required property",
        )
    })?;
    let group_id = match r.get("group_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(uuid("group_id", v)?),
    };
    let text = |k: &str| match r.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(NovaRuleCreate {
        parent_group_id: uuid("parent_group_id", parent)?,
        group_id,
        ip_protocol: text("ip_protocol"),
        from_port: port_arg(r.get("from_port")),
        to_port: port_arg(r.get("to_port")),
        cidr: text("cidr"),
    })
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    // Nova lists every project's for an admin who names `all_tenants`,
    // whatever its value.
    let all_tenants = q.get("all_tenants").is_some();
    let groups = state
        .compute
        .security_group_list(&auth.0, all_tenants)
        .await?;
    let offset = q.uint("offset")?.unwrap_or(0) as usize;
    let limit = q.uint("limit")?.map(|l| l as usize).unwrap_or(usize::MAX);
    let views: Vec<Value> = groups
        .iter()
        .skip(offset)
        .take(limit)
        .map(group_view)
        .collect();
    Ok(Json(json!({ "security_groups": views })))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let g = state
        .compute
        .security_group_show(&auth.0, &group_id(&id)?)
        .await?;
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let (name, description) = name_and_description(&body)?;
    let g = state
        .compute
        .security_group_create(&auth.0, &name, &description)
        .await?;
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let id = group_id(&id)?;
    let (name, description) = name_and_description(&body)?;
    let g = state
        .compute
        .security_group_update(&auth.0, &id, &name, &description)
        .await?;
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    state
        .compute
        .security_group_delete(&auth.0, &group_id(&id)?)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

pub async fn rule_create(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let req = rule_request(&body)?;
    let r = state
        .compute
        .security_group_rule_create(&auth.0, req)
        .await?;
    Ok(Json(json!({ "security_group_rule": rule_view(&r) })))
}

pub async fn rule_delete(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    proxy_api(v)?;
    let id: SecurityGroupRuleId = id
        .parse()
        .map_err(|_| AppError::bad_request("Security group id should be uuid"))?;
    state
        .compute
        .security_group_rule_delete(&auth.0, &id)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /servers/{id}/os-security-groups` (every version).
pub async fn server_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let sid: ServerId = id
        .parse()
        .map_err(|_| AppError::not_found(format!("Instance {id} could not be found.")))?;
    let groups = state.compute.server_security_groups(&auth.0, &sid).await?;
    let views: Vec<Value> = groups.iter().map(group_view).collect();
    Ok(Json(json!({ "security_groups": views })))
}

/// The group named by an `addSecurityGroup`/`removeSecurityGroup` body.
fn action_group_name(action: &str, arg: &Value) -> Result<String, AppError> {
    let o = arg
        .as_object()
        .ok_or_else(|| AppError::bad_request("Missing parameter dict"))?;
    if let Some(k) = o.keys().find(|k| k.as_str() != "name") {
        return Err(invalid(
            action,
            arg,
            &format!("Additional properties are not allowed ('{k}' was unexpected)"),
        ));
    }
    let name = o
        .get("name")
        .ok_or_else(|| AppError::bad_request("Security group not specified"))?;
    let name = name
        .as_str()
        .ok_or_else(|| invalid("name", name, &format!("{name} is not of type 'string'")))?;
    if name.trim().is_empty() {
        return Err(AppError::bad_request("Security group name cannot be empty"));
    }
    Ok(name.to_string())
}

/// `addSecurityGroup` / `removeSecurityGroup` (202).
pub(crate) async fn server_action(
    state: &AppState,
    ctx: &AuthContext,
    sid: &ServerId,
    action: &str,
    arg: &Value,
) -> ApiResult<Response> {
    let name = action_group_name(action, arg)?;
    let c = &state.compute;
    if action == "addSecurityGroup" {
        c.server_add_security_group(ctx, sid, &name).await?;
    } else {
        c.server_remove_security_group(ctx, sid, &name).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_bodies_need_a_name_and_a_description() {
        assert_eq!(
            name_and_description(&json!({"security_group": {"name": " a ", "description": ""}}))
                .unwrap(),
            (" a ".to_string(), String::new())
        );
        for bad in [
            json!({}),
            json!([]),
            json!({"security_group": "x"}),
            json!({"security_group": {"name": "a"}}),
            json!({"security_group": {"description": "a"}}),
            json!({"security_group": {"name": 1, "description": "a"}}),
            json!({"security_group": {"name": "n".repeat(256), "description": "a"}}),
        ] {
            assert_eq!(
                name_and_description(&bad).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn rule_bodies_need_uuids() {
        let g = SecurityGroupId::new();
        let r = rule_request(&json!({"security_group_rule": {
            "parent_group_id": g.to_string(), "ip_protocol": "tcp",
            "from_port": 22, "to_port": "23", "cidr": "10.0.0.0/8", "group_id": null}}))
        .unwrap();
        assert_eq!(r.parent_group_id, g);
        assert_eq!(r.group_id, None);
        assert_eq!(r.from_port, Some(PortArg::Int(22)));
        assert_eq!(r.to_port, Some(PortArg::Text("23".into())));
        assert_eq!(r.cidr.as_deref(), Some("10.0.0.0/8"));
        for bad in [
            json!({"security_group_rule": {"ip_protocol": "tcp"}}),
            json!({"security_group_rule": {"parent_group_id": "tempest-non_int_id"}}),
            json!({"security_group_rule": {"parent_group_id": g.to_string(), "group_id": "x"}}),
            json!({"rule": {}}),
        ] {
            assert_eq!(rule_request(&bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn action_bodies_name_one_group() {
        assert_eq!(
            action_group_name("addSecurityGroup", &json!({"name": "web"})).unwrap(),
            "web"
        );
        for bad in [
            json!(null),
            json!({}),
            json!({"name": ""}),
            json!({"name": "  "}),
            json!({"name": 5}),
            json!({"name": "web", "x": 1}),
        ] {
            assert_eq!(
                action_group_name("addSecurityGroup", &bad)
                    .unwrap_err()
                    .status(),
                400,
                "{bad}"
            );
        }
    }
}
