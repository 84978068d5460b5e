//! Servers: create, list, show, update, delete, actions, metadata, tags.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use oxistack_bus::PowerCommand;
use oxistack_compute::servers::{NetworksRequest, ServerCreate};
use oxistack_model::server_state::{api_status, VmState};
use oxistack_model::time::{iso_seconds, parse as parse_time};
use oxistack_model::{AppError, AuthContext, ServerId};
use oxistack_network::servers::RequestedNic;
use oxistack_store::compute::{Server, ServerFields, ServerFilter};
use serde_json::{json, Value};
use sha2::{Digest, Sha224};

use super::links;
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn server_id(s: &str) -> Result<ServerId, AppError> {
    s.parse()
        .map_err(|_| AppError::not_found(format!("Instance {s} could not be found.")))
}

fn host_id(s: &Server) -> String {
    match &s.host {
        Some(h) => {
            hex_digest(Sha224::digest(format!("{}{}", s.project_id, h).as_bytes()).as_slice())
        }
        None => String::new(),
    }
}

fn hex_digest(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn brief(state: &AppState, s: &Server) -> Value {
    json!({"id": s.id.to_string(), "name": s.name, "links": links(state, &format!("servers/{}", s.id))})
}

/// Nova's `addresses`: network name → addresses, from the server's ports.
async fn addresses_of(
    state: &AppState,
    servers: &[Server],
) -> Result<HashMap<ServerId, Value>, AppError> {
    let ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    let map = state.network.server_addresses(&ids).await?;
    Ok(map
        .into_iter()
        .map(|(id, nets)| {
            let v: serde_json::Map<String, Value> = nets
                .into_iter()
                .map(|(name, addrs)| {
                    let list: Vec<Value> = addrs
                        .iter()
                        .map(|a| {
                            json!({
                                "version": a.version,
                                "addr": a.addr.to_string(),
                                "OS-EXT-IPS:type": a.kind,
                                "OS-EXT-IPS-MAC:mac_addr": a.mac,
                            })
                        })
                        .collect();
                    (name, Value::Array(list))
                })
                .collect();
            (id, Value::Object(v))
        })
        .collect())
}

/// Nova's `security_groups`: the names of the server's ports' groups, for
/// all the listed servers at once.
async fn security_groups_of(
    state: &AppState,
    servers: &[Server],
) -> Result<HashMap<ServerId, Vec<String>>, AppError> {
    let ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    state.network.server_security_groups(&ids).await
}

/// The full server view for a microversion, as Nova's `views/servers.py`.
/// `security_groups` is left out for a server without any, as Nova does.
fn full(
    state: &AppState,
    ctx: &AuthContext,
    s: &Server,
    v: ApiVersion,
    addresses: Option<&Value>,
    groups: Option<&Vec<String>>,
) -> Value {
    let admin = ctx.is_admin();
    let status = api_status(s.vm_state, s.task_state);
    let base = state.settings.public_url();
    let flavor = if v.at_least(2, 47) {
        let mut f = json!({
            "vcpus": s.flavor.vcpus,
            "ram": s.flavor.ram_mb,
            "disk": s.flavor.disk_gb,
            "ephemeral": s.flavor.ephemeral_gb,
            "swap": s.flavor.swap_mb,
            "original_name": s.flavor.name,
        });
        if admin {
            f["extra_specs"] = json!(s.flavor.extra_specs);
        }
        f
    } else {
        json!({"id": s.flavor.id, "links": [{"rel": "bookmark", "href": format!("{base}/compute/flavors/{}", s.flavor.id)}]})
    };
    let mut o = json!({
        "id": s.id.to_string(),
        "name": s.name,
        "status": status,
        "tenant_id": s.project_id.to_string(),
        "user_id": s.user_id.to_string(),
        "metadata": s.metadata,
        "hostId": host_id(s),
        "image": {"id": s.image_id, "links": [{"rel": "bookmark", "href": format!("{base}/compute/images/{}", s.image_id)}]},
        "flavor": flavor,
        "created": iso_seconds(&s.created_at),
        "updated": iso_seconds(&s.updated_at),
        "addresses": addresses.cloned().unwrap_or_else(|| json!({})),
        "accessIPv4": s.access_ipv4,
        "accessIPv6": s.access_ipv6,
        "links": links(state, &format!("servers/{}", s.id)),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": s.availability_zone.clone().unwrap_or_default(),
        "config_drive": if s.config_drive { "True" } else { "" },
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": s.launched_at.map(|t| iso_seconds(&t).trim_end_matches('Z').to_string() + ".000000"),
        "OS-SRV-USG:terminated_at": s.terminated_at.map(|t| iso_seconds(&t).trim_end_matches('Z').to_string() + ".000000"),
        "OS-EXT-STS:task_state": s.task_state.map(|t| t.as_str()),
        "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:power_state": s.power_state as i64,
        "os-extended-volumes:volumes_attached": [],
    });
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        o["progress"] = json!(if status == "ACTIVE" { 100 } else { 0 });
    }
    if let Some(groups) = groups.filter(|g| !g.is_empty()) {
        o["security_groups"] = groups.iter().map(|n| json!({"name": n})).collect();
    }
    if admin {
        o["OS-EXT-SRV-ATTR:host"] = json!(s.host);
        o["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.node);
        o["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{}", &s.id.to_string()[..8]));
        if v.at_least(2, 3) {
            o["OS-EXT-SRV-ATTR:reservation_id"] = json!(s.reservation_id);
            o["OS-EXT-SRV-ATTR:launch_index"] = json!(s.launch_index);
            o["OS-EXT-SRV-ATTR:hostname"] = json!(s.hostname);
            o["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            o["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            o["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            o["OS-EXT-SRV-ATTR:user_data"] = json!(s.user_data);
        }
    }
    if v.at_least(2, 9) {
        o["locked"] = json!(s.locked);
    }
    if v.at_least(2, 16) && s.host.is_some() {
        o["host_status"] = json!(if s.host.is_some() { "UP" } else { "" });
    }
    if v.at_least(2, 19) {
        o["description"] = json!(s.description);
    }
    if v.at_least(2, 26) {
        o["tags"] = json!(s.tags);
    }
    if let Some(f) = &s.fault {
        if matches!(s.vm_state, VmState::Error | VmState::Deleted) {
            let mut fault = json!({"code": f.code, "created": iso_seconds(&f.created_at), "message": f.message});
            if admin || f.code != 500 {
                fault["details"] = json!(f.details);
            }
            o["fault"] = fault;
        }
    }
    o
}

fn status_states(status: &str) -> Option<Vec<VmState>> {
    Some(match status.to_ascii_uppercase().as_str() {
        "ACTIVE" | "REBOOT" | "HARD_REBOOT" => vec![VmState::Active],
        "BUILD" => vec![VmState::Building],
        "SHUTOFF" => vec![VmState::Stopped],
        "ERROR" => vec![VmState::Error],
        "DELETED" => vec![VmState::Deleted],
        _ => return None,
    })
}

/// Lists with Nova's filters and marker/limit pagination.
async fn listed(
    state: &AppState,
    auth: &Auth,
    v: ApiVersion,
    q: &QueryPairs,
) -> ApiResult<(Vec<Server>, Option<Value>, bool)> {
    let ctx = &auth.0;
    let all_tenants = match q.get("all_tenants") {
        None => false,
        Some("") => true,
        Some(s) => crate::body::parse_bool(s).unwrap_or(true),
    };
    if all_tenants {
        ctx.require_admin()?;
    }
    let mut f = ServerFilter::default();
    let statuses = q.all("status");
    let mut want_status: Vec<String> = vec![];
    for s in &statuses {
        match status_states(s) {
            Some(states) => {
                f.vm_states.extend(states);
                want_status.push(s.to_ascii_uppercase());
            }
            None if v.at_least(2, 38) => {
                return Err(AppError::bad_request(format!("Invalid status value: {s}")).into());
            }
            None => return Ok((vec![], None, false)),
        }
    }
    if want_status.iter().any(|s| s == "DELETED") {
        if !ctx.is_admin() {
            return Err(
                AppError::forbidden("Only administrators may list deleted instances").into(),
            );
        }
        f.deleted = true;
    }
    f.host = q.get("host").map(String::from);
    f.image_id = q
        .get("image")
        .map(|i| i.rsplit('/').next().unwrap_or(i).to_string());
    f.flavor_id = q
        .get("flavor")
        .map(|i| i.rsplit('/').next().unwrap_or(i).to_string());
    f.availability_zone = q.get("availability_zone").map(String::from);
    f.reservation_id = q.get("reservation_id").map(String::from);
    if ctx.is_admin() {
        f.user_id = q.get("user_id").map(String::from);
        f.project_id = q.get("project_id").or(q.get("tenant_id")).map(String::from);
    }
    if let Some(t) = q.get("changes-since") {
        f.changes_since =
            Some(parse_time(t).ok_or_else(|| {
                AppError::bad_request(format!("Invalid changes-since value {t}"))
            })?);
    }
    if let Some(t) = q.get("changes-before") {
        f.changes_before =
            Some(parse_time(t).ok_or_else(|| {
                AppError::bad_request(format!("Invalid changes-before value {t}"))
            })?);
    }
    if let Some(d) = q.get("deleted") {
        if crate::body::parse_bool(d) == Some(true) && ctx.is_admin() {
            f.deleted = true;
        }
    }
    let tags: Vec<String> = q
        .get("tags")
        .map(|t| t.split(',').map(String::from).collect())
        .unwrap_or_default();
    let mut servers = state
        .compute
        .server_list(
            ctx,
            all_tenants || f.project_id.is_some(),
            &f,
            q.get("name"),
            &tags,
        )
        .await?;
    if !want_status.is_empty() {
        servers.retain(|s| {
            let st = api_status(s.vm_state, s.task_state);
            want_status
                .iter()
                .any(|w| w == st || (w == "DELETED" && s.deleted))
        });
    }
    // `ip` and `ip6` are regular expressions on the servers' fixed and
    // floating addresses, as Nova matches them.
    for (key, version) in [("ip", 4), ("ip6", 6)] {
        if key == "ip6" && !v.at_least(2, 5) && !ctx.is_admin() {
            continue;
        }
        if let Some(pattern) = q.get(key) {
            let re = regex::Regex::new(pattern)
                .map_err(|_| AppError::bad_request(format!("Invalid {key} filter {pattern:?}.")))?;
            let addrs = addresses_of(state, &servers).await?;
            servers.retain(|s| {
                addrs
                    .get(&s.id)
                    .and_then(|a| a.as_object())
                    .is_some_and(|nets| {
                        nets.values()
                            .flat_map(|l| l.as_array().into_iter().flatten())
                            .any(|a| {
                                a["version"] == version
                                    && a["addr"].as_str().is_some_and(|addr| re.is_match(addr))
                            })
                    })
            });
        }
    }
    if let Some(m) = q.get("marker") {
        let pos = servers
            .iter()
            .position(|s| s.id.to_string() == m)
            .ok_or_else(|| AppError::bad_request(format!("marker [{m}] not found")))?;
        servers.drain(..=pos);
    }
    let max = 1000usize;
    let limit = q
        .uint("limit")?
        .map(|l| (l as usize).min(max))
        .unwrap_or(max);
    let mut next = None;
    if servers.len() > limit {
        servers.truncate(limit);
        if let Some(last) = servers.last() {
            let mut qs: Vec<String> =
                q.0.iter()
                    .filter(|(k, _)| k != "marker" && k != "limit")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
            qs.push(format!("limit={limit}"));
            qs.push(format!("marker={}", last.id));
            next = Some(
                json!([{"rel": "next", "href": format!("{}/compute/v2.1/servers?{}", state.settings.public_url(), qs.join("&"))}]),
            );
        }
    }
    Ok((servers, next, true))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let (servers, next, _) = listed(&state, &auth, v, &q).await?;
    let mut body = json!({"servers": servers.iter().map(|s| brief(&state, s)).collect::<Vec<_>>()});
    if let Some(n) = next {
        body["servers_links"] = n;
    }
    Ok(Json(body))
}

pub async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let (mut servers, next, _) = listed(&state, &auth, v, &q).await?;
    state.compute.store.attach_details(&mut servers).await?;
    let addrs = addresses_of(&state, &servers).await?;
    let groups = security_groups_of(&state, &servers).await?;
    let mut body = json!({"servers": servers.iter().map(|s| full(&state, &auth.0, s, v, addrs.get(&s.id), groups.get(&s.id))).collect::<Vec<_>>()});
    if let Some(n) = next {
        body["servers_links"] = n;
    }
    Ok(Json(body))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let s = state.compute.server_get(&auth.0, &server_id(&id)?).await?;
    let one = std::slice::from_ref(&s);
    let addrs = addresses_of(&state, one).await?;
    let groups = security_groups_of(&state, one).await?;
    Ok(Json(
        json!({"server": full(&state, &auth.0, &s, v, addrs.get(&s.id), groups.get(&s.id))}),
    ))
}

fn str_field(o: &Value, k: &str) -> Result<Option<String>, AppError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(AppError::bad_request(format!(
            "Invalid input for field/attribute {k}. Value: {other}. It is not a string."
        ))),
    }
}

fn count_field(o: &Value, k: &str) -> Result<Option<i64>, AppError> {
    match o.get(k) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_i64().map(Some),
        Some(Value::String(s)) => s.parse().ok().map(Some),
        _ => None,
    }
    .ok_or_else(|| AppError::bad_request(format!("Invalid input for field/attribute {k}.")))
}

fn metadata_field(v: Option<&Value>) -> Result<BTreeMap<String, String>, AppError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute metadata. Value of {k} is not a string."
                ))),
            })
            .collect(),
        Some(_) => Err(AppError::bad_request(
            "Invalid input for field/attribute metadata. It is not an object.",
        )),
    }
}

const CREATE_KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "key_name",
    "user_data",
    "metadata",
    "config_drive",
    "networks",
    "availability_zone",
    "min_count",
    "max_count",
    "description",
    "accessIPv4",
    "accessIPv6",
    "adminPass",
    "tags",
    "security_groups",
    "return_reservation_id",
    "OS-DCF:diskConfig",
    "block_device_mapping_v2",
    "personality",
];

/// One item of `networks`: `{"uuid": net, "fixed_ip": ip}` or `{"port": id}`
/// (with an optional device `tag`, 2.32+, accepted and not used).
fn requested_nic(item: &Value) -> Result<RequestedNic, AppError> {
    let bad = |what: &str| {
        AppError::bad_request(format!(
            "Invalid input for field/attribute networks: {what}. Value: {item}."
        ))
    };
    let o = item
        .as_object()
        .ok_or_else(|| bad("an object is expected"))?;
    for k in o.keys() {
        if !matches!(k.as_str(), "uuid" | "port" | "fixed_ip" | "tag") {
            return Err(bad(&format!("'{k}' is not allowed")));
        }
    }
    let text = |k: &str| o.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    match (text("port"), text("uuid")) {
        (Some(p), _) => Ok(RequestedNic::Port(
            p.parse().map_err(|_| bad("bad port id"))?,
        )),
        (None, Some(n)) => Ok(RequestedNic::Network {
            network_id: n.parse().map_err(|_| bad("bad network uuid"))?,
            fixed_ip: match text("fixed_ip") {
                Some(ip) => Some(ip.parse().map_err(|_| bad("bad fixed_ip"))?),
                None => None,
            },
        }),
        (None, None) => Err(bad("a network uuid or a port is required")),
    }
}

/// Block device mappings: only the image-backed local root disk (what
/// clients send for a plain image boot) is served; volumes come with the
/// volume service. Returns the image the mapping names.
fn image_from_bdms(bdms: Option<&Value>) -> Result<Option<String>, AppError> {
    let Some(list) = bdms else { return Ok(None) };
    let list = list.as_array().ok_or_else(|| {
        AppError::bad_request("Invalid input for field/attribute block_device_mapping_v2.")
    })?;
    let mut image = None;
    for b in list {
        let source = b.get("source_type").and_then(|v| v.as_str()).unwrap_or("");
        let dest = b
            .get("destination_type")
            .and_then(|v| v.as_str())
            .unwrap_or("local");
        let boot_index = b.get("boot_index").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        if source == "image" && dest == "local" && boot_index == Some(0) {
            image = b.get("uuid").and_then(|v| v.as_str()).map(String::from);
        } else {
            return Err(AppError::bad_request(format!(
                "Block device mapping {b} is not supported: OxiStack does not serve volumes yet; only the image's local root disk is."
            )));
        }
    }
    Ok(image)
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let s = body
        .get("server")
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            AppError::bad_request(
                "Invalid input for field/attribute server. 'server' is a required property",
            )
        })?;
    for k in s.as_object().into_iter().flat_map(|m| m.keys()) {
        if !CREATE_KEYS.contains(&k.as_str()) {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{k}' was unexpected)"
            ))
            .into());
        }
    }
    let bdm_image = image_from_bdms(s.get("block_device_mapping_v2"))?;
    let name = str_field(s, "name")?.ok_or_else(|| {
        AppError::bad_request(
            "Invalid input for field/attribute server. 'name' is a required property",
        )
    })?;
    let image_ref = str_field(s, "imageRef")?
        .filter(|i| !i.is_empty())
        .or(bdm_image.clone())
        .ok_or_else(|| {
            AppError::bad_request(
                "Invalid input for field/attribute server. 'imageRef' is a required property",
            )
        })?;
    if let Some(b) = &bdm_image {
        if !image_ref.ends_with(b.as_str()) {
            return Err(AppError::bad_request(
                "The image of block_device_mapping_v2 differs from imageRef.",
            )
            .into());
        }
    }
    let flavor_ref = match s.get("flavorRef") {
        Some(Value::String(f)) => f.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute server. 'flavorRef' is a required property",
            )
            .into())
        }
    };
    let networks = match s.get("networks") {
        None if v.at_least(2, 37) => {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property",
            )
            .into())
        }
        None => NetworksRequest::Auto,
        Some(Value::String(n)) if n == "auto" && v.at_least(2, 37) => NetworksRequest::Auto,
        Some(Value::String(n)) if n == "none" && v.at_least(2, 37) => NetworksRequest::None,
        Some(Value::Array(list)) => NetworksRequest::List(
            list.iter()
                .map(requested_nic)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute networks. Value: {other}."
            ))
            .into())
        }
    };
    let config_drive = match s.get("config_drive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(c)) => c
            .is_empty()
            .then_some(false)
            .or_else(|| crate::body::parse_bool(c))
            .ok_or_else(|| {
                AppError::bad_request(format!(
                    "Invalid input for field/attribute config_drive. Value: {c}."
                ))
            })?,
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute config_drive. Value: {other}."
            ))
            .into())
        }
    };
    if s.get("description").is_some() && !v.at_least(2, 19) {
        return Err(AppError::bad_request("Invalid input for field/attribute server. Additional properties are not allowed ('description' was unexpected)").into());
    }
    let tags: Vec<String> = match s.get("tags") {
        None => vec![],
        Some(_) if !v.at_least(2, 52) => {
            return Err(AppError::bad_request("Invalid input for field/attribute server. Additional properties are not allowed ('tags' was unexpected)").into())
        }
        Some(t) => serde_json::from_value(t.clone()).map_err(|_| AppError::bad_request("Invalid input for field/attribute tags."))?,
    };
    let min = count_field(s, "min_count")?.unwrap_or(1);
    let max = count_field(s, "max_count")?.unwrap_or(min);
    let return_reservation_id = match s.get("return_reservation_id") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(r)) => crate::body::parse_bool(r).unwrap_or(false),
        _ => false,
    };
    let security_groups: Vec<String> = match s.get("security_groups") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(list)) => list
            .iter()
            .map(|g| {
                g.get("name")
                    .and_then(|n| n.as_str())
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .ok_or_else(|| {
                        AppError::bad_request("Invalid input for field/attribute security_groups.")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(
                AppError::bad_request("Invalid input for field/attribute security_groups.").into(),
            )
        }
    };
    // Nova answers a create with the groups asked for (`default` when none
    // were): the ports do not exist yet.
    let groups_view: Vec<Value> = if security_groups.is_empty() {
        vec![json!({"name": "default"})]
    } else {
        security_groups.iter().map(|n| json!({"name": n})).collect()
    };
    let req = ServerCreate {
        name,
        image_ref,
        flavor_ref,
        key_name: str_field(s, "key_name")?,
        user_data: str_field(s, "user_data")?,
        metadata: metadata_field(s.get("metadata"))?,
        config_drive,
        networks,
        availability_zone: str_field(s, "availability_zone")?,
        min_count: min,
        max_count: max,
        description: str_field(s, "description")?,
        access_ipv4: str_field(s, "accessIPv4")?,
        access_ipv6: str_field(s, "accessIPv6")?,
        admin_pass: str_field(s, "adminPass")?,
        security_groups,
        tags,
    };
    let created = state.compute.server_create(&auth.0, req).await?;
    if return_reservation_id {
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, String::new())],
            Json(json!({"reservation_id": created.reservation_id})),
        ));
    }
    let first = &created.servers[0];
    let location = format!(
        "{}/compute/v2.1/servers/{}",
        state.settings.public_url(),
        first.id
    );
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({"server": {
            "id": first.id.to_string(),
            "links": links(&state, &format!("servers/{}", first.id)),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": groups_view,
            "adminPass": created.admin_pass,
        }})),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let s = body
        .get("server")
        .and_then(|s| s.as_object())
        .ok_or_else(|| AppError::bad_request("Invalid input for field/attribute server."))?;
    for k in s.keys() {
        let allowed = matches!(
            k.as_str(),
            "name" | "accessIPv4" | "accessIPv6" | "OS-DCF:diskConfig"
        ) || (k == "description" && v.at_least(2, 19));
        if !allowed {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{k}' was unexpected)"
            ))
            .into());
        }
    }
    let name = match s.get("name") {
        None => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => {
            return Err(AppError::bad_request("Invalid input for field/attribute name.").into())
        }
    };
    let description = match s.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(d)) => Some(Some(d.clone())),
        Some(_) => {
            return Err(
                AppError::bad_request("Invalid input for field/attribute description.").into(),
            )
        }
    };
    let fields = ServerFields {
        name,
        description,
        access_ipv4: str_field(&Value::Object(s.clone()), "accessIPv4")?,
        access_ipv6: str_field(&Value::Object(s.clone()), "accessIPv6")?,
    };
    let sid = server_id(&id)?;
    let server = state.compute.server_update(&auth.0, &sid, fields).await?;
    let one = std::slice::from_ref(&server);
    let addrs = addresses_of(&state, one).await?;
    let groups = security_groups_of(&state, one).await?;
    let mut view = full(
        &state,
        &auth.0,
        &server,
        v,
        addrs.get(&server.id),
        groups.get(&server.id),
    );
    // Before 2.75 the update answers with the base server view only.
    if !v.at_least(2, 75) {
        if let Some(o) = view.as_object_mut() {
            o.retain(|k, _| !k.contains(':') || k == "OS-DCF:diskConfig");
            for k in [
                "config_drive",
                "key_name",
                "os-extended-volumes:volumes_attached",
                "security_groups",
                "host_status",
                "fault",
            ] {
                o.remove(k);
            }
        }
    }
    Ok(Json(json!({ "server": view })))
}

/// `GET /servers/{id}/ips`: the server's addresses by network.
pub async fn ips(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let s = state.compute.server_get(&auth.0, &server_id(&id)?).await?;
    let addrs = addresses_of(&state, std::slice::from_ref(&s)).await?;
    Ok(Json(json!({"addresses": ips_view(addrs.get(&s.id))})))
}

/// `GET /servers/{id}/ips/{network}`: the addresses on one network.
pub async fn ips_of_network(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, network)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let s = state.compute.server_get(&auth.0, &server_id(&id)?).await?;
    let addrs = addresses_of(&state, std::slice::from_ref(&s)).await?;
    let view = ips_view(addrs.get(&s.id));
    let list = view
        .get(&network)
        .cloned()
        .ok_or_else(|| AppError::not_found("Instance is not a member of specified network"))?;
    Ok(Json(json!({ network: list })))
}

/// The `ips` views carry only version and addr.
fn ips_view(addrs: Option<&Value>) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(Value::Object(nets)) = addrs {
        for (name, list) in nets {
            let l: Vec<Value> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| json!({"version": a["version"], "addr": a["addr"]}))
                .collect();
            out.insert(name.clone(), Value::Array(l));
        }
    }
    Value::Object(out)
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    state
        .compute
        .server_delete(&auth.0, &server_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn action(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<axum::response::Response> {
    let sid = server_id(&id)?;
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| AppError::bad_request("Malformed request body: one action is expected."))?;
    let (name, arg) = obj
        .iter()
        .next()
        .ok_or_else(|| AppError::bad_request("Malformed request body"))?;
    let ctx = &auth.0;
    let c = &state.compute;
    match name.as_str() {
        "os-start" => c.server_power(ctx, &sid, PowerCommand::Start).await?,
        "os-stop" => c.server_power(ctx, &sid, PowerCommand::Stop).await?,
        "reboot" => {
            let ty = arg.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let cmd = match ty.to_ascii_uppercase().as_str() {
                "SOFT" => PowerCommand::RebootSoft,
                "HARD" => PowerCommand::RebootHard,
                _ => {
                    return Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute type. Value: {ty}. It must be SOFT or HARD."
                ))
                    .into())
                }
            };
            c.server_power(ctx, &sid, cmd).await?
        }
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => Some(s.parse::<i64>().map_err(|_| {
                    AppError::bad_request(format!(
                        "Invalid input for field/attribute length. Value: {s}."
                    ))
                })?),
                Some(other) => {
                    return Err(AppError::bad_request(format!(
                        "Invalid input for field/attribute length. Value: {other}."
                    ))
                    .into())
                }
            };
            let lines = match length {
                None | Some(-1) => None,
                Some(n) if n >= 0 => Some(n as usize),
                Some(n) => {
                    return Err(AppError::bad_request(format!(
                        "Invalid input for field/attribute length. Value: {n}."
                    ))
                    .into())
                }
            };
            let out = c.server_console_output(ctx, &sid, lines).await?;
            return Ok(Json(json!({"output": out})).into_response());
        }
        "lock" => c.server_lock(ctx, &sid, true).await?,
        "unlock" => c.server_lock(ctx, &sid, false).await?,
        "addSecurityGroup" | "removeSecurityGroup" => {
            return super::security_groups::server_action(&state, ctx, &sid, name, arg).await
        }
        "addFixedIp" | "removeFixedIp" => {
            // Like the floating IP actions, gone from 2.44.
            if !super::versions::floating_ip_actions(v) {
                return Err(AppError::not_found("The resource could not be found.").into());
            }
            if name == "addFixedIp" {
                c.server_add_fixed_ip(ctx, &sid, &fixed_ip_network(arg)?)
                    .await?
            } else {
                c.server_remove_fixed_ip(ctx, &sid, fixed_ip_address(arg)?)
                    .await?
            }
        }
        "addFloatingIp" | "removeFloatingIp" => {
            if !super::versions::floating_ip_actions(v) {
                return Err(AppError::not_found("The resource could not be found.").into());
            }
            return super::floating_ips::server_action(&state, ctx, &sid, name, arg).await;
        }
        _ => return Err(AppError::bad_request(format!("There is no such action: {name}")).into()),
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The argument of a server action as Nova's schemas check it: an object with no
/// member beyond `allowed`.
pub(crate) fn action_object<'a>(
    action: &str,
    arg: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, AppError> {
    let o = arg.as_object().ok_or_else(|| {
        AppError::bad_request(format!(
            "Invalid input for field/attribute {action}. Value: {arg}. {arg} is not of type 'object'"
        ))
    })?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(AppError::bad_request(format!(
            "Invalid input for field/attribute {action}. Value: {arg}. Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    Ok(o)
}

/// `{"addFixedIp": {"networkId": "…"}}` (a string or a number, as Nova's schema
/// takes it; nothing else).
fn fixed_ip_network(arg: &Value) -> Result<String, AppError> {
    let o = action_object("addFixedIp", arg, &["networkId"])?;
    match o.get("networkId") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(AppError::bad_request(format!(
            "Invalid input for field/attribute networkId. Value: {other}."
        ))),
        None => Err(AppError::bad_request(
            "Invalid input for field/attribute addFixedIp. Value: {}. 'networkId' is a required property",
        )),
    }
}

/// `{"removeFixedIp": {"address": "<IPv4 or IPv6>"}}`.
fn fixed_ip_address(arg: &Value) -> Result<std::net::IpAddr, AppError> {
    let o = action_object("removeFixedIp", arg, &["address"])?;
    match o.get("address") {
        Some(Value::String(s)) => s.parse().map_err(|_| {
            AppError::bad_request(format!(
                "Invalid input for field/attribute address. Value: {s}. '{s}' is not a 'ipv4' or 'ipv6'"
            ))
        }),
        Some(other) => Err(AppError::bad_request(format!(
            "Invalid input for field/attribute address. Value: {other}."
        ))),
        None => Err(AppError::bad_request(
            "Invalid input for field/attribute removeFixedIp. Value: {}. 'address' is a required property",
        )),
    }
}

// ---------------------------------------------------------------- metadata

pub async fn metadata_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let s = state.compute.server_get(&auth.0, &server_id(&id)?).await?;
    Ok(Json(json!({"metadata": s.metadata})))
}

fn metadata_body(body: &Value) -> Result<BTreeMap<String, String>, AppError> {
    match body.get("metadata") {
        Some(m @ Value::Object(_)) => metadata_field(Some(m)),
        _ => Err(AppError::bad_request(
            "Malformed request body: 'metadata' is a required property",
        )),
    }
}

pub async fn metadata_merge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let md = state
        .compute
        .server_metadata_set(&auth.0, &server_id(&id)?, &metadata_body(&body)?, false)
        .await?;
    Ok(Json(json!({"metadata": md})))
}

pub async fn metadata_replace(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let md = state
        .compute
        .server_metadata_set(&auth.0, &server_id(&id)?, &metadata_body(&body)?, true)
        .await?;
    Ok(Json(json!({"metadata": md})))
}

pub async fn metadata_show(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let s = state.compute.server_get(&auth.0, &server_id(&id)?).await?;
    let v = s
        .metadata
        .get(&key)
        .ok_or_else(|| AppError::not_found("Metadata item was not found"))?;
    Ok(Json(json!({"meta": {key: v}})))
}

pub async fn metadata_put(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let meta = match body.get("meta") {
        Some(m @ Value::Object(o)) if o.len() == 1 => metadata_field(Some(m))?,
        Some(Value::Object(_)) => {
            return Err(AppError::bad_request("Request body contains too many items").into())
        }
        _ => {
            return Err(AppError::bad_request(
                "Malformed request body: 'meta' is a required property",
            )
            .into())
        }
    };
    if !meta.contains_key(&key) {
        return Err(AppError::bad_request("Request body and URI mismatch").into());
    }
    state
        .compute
        .server_metadata_set(&auth.0, &server_id(&id)?, &meta, false)
        .await?;
    Ok(Json(json!({"meta": meta})))
}

pub async fn metadata_delete(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    state
        .compute
        .server_metadata_delete(&auth.0, &server_id(&id)?, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- tags (2.26)

fn need_tags(v: ApiVersion) -> Result<(), AppError> {
    if v.at_least(2, 26) {
        Ok(())
    } else {
        Err(AppError::not_found("The resource could not be found."))
    }
}

pub async fn tags_list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    need_tags(v)?;
    Ok(Json(
        json!({"tags": state.compute.server_tags(&auth.0, &server_id(&id)?).await?}),
    ))
}

pub async fn tags_replace(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    need_tags(v)?;
    let tags: Vec<String> = body
        .get("tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .ok_or_else(|| AppError::bad_request("Invalid input for field/attribute tags."))?;
    Ok(Json(
        json!({"tags": state.compute.server_tags_replace(&auth.0, &server_id(&id)?, &tags).await?}),
    ))
}

pub async fn tags_clear(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    need_tags(v)?;
    state
        .compute
        .server_tag_delete(&auth.0, &server_id(&id)?, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_check(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    need_tags(v)?;
    let tags = state.compute.server_tags(&auth.0, &server_id(&id)?).await?;
    if !tags.contains(&tag) {
        return Err(AppError::not_found(format!("Tag '{tag}' could not be found.")).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_add(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    need_tags(v)?;
    let sid = server_id(&id)?;
    let new = state.compute.server_tag_add(&auth.0, &sid, &tag).await?;
    if !new {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let loc = format!(
        "{}/compute/v2.1/servers/{sid}/tags/{tag}",
        state.settings.public_url()
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, loc)]).into_response())
}

pub async fn tag_delete(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    need_tags(v)?;
    state
        .compute
        .server_tag_delete(&auth.0, &server_id(&id)?, Some(&tag))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
