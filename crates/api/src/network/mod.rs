//! The network API (Neutron v2.0) at `/network`.
//!
//! Every list goes through [`list_response`]: filters on any attribute of
//! the view (a repeated key means OR), `fields`, `sort_key`/`sort_dir`, and
//! `limit`/`marker` pagination with `<collection>_links`, as Neutron's
//! `api/v2/base.py` does. Filtering on the rendered view keeps the filter
//! names exactly the attribute names clients see (`router:external`, …).

mod floating_ips;
mod networks;
mod ports;
mod quotas;
mod routers;
mod security_groups;
mod subnets;

use std::cmp::Ordering;

use axum::extract::State;
use axum::middleware;
use axum::routing::{get, put};
use axum::{Json, Router};
use oxistack_model::time::iso_seconds;
use oxistack_model::AppError;
use serde_json::{json, Map, Value};

use crate::body::QueryPairs;
use crate::fault::{self, Service};
use crate::{ApiResult, AppState};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/", get(versions))
        .route("/v2.0", get(resources))
        .route("/v2.0/extensions", get(extensions))
        .route("/v2.0/extensions/{alias}", get(extension))
        .route("/v2.0/availability_zones", get(availability_zones))
        .route("/v2.0/networks", get(networks::list).post(networks::create))
        .route(
            "/v2.0/networks/{id}",
            get(networks::show)
                .put(networks::update)
                .delete(networks::delete),
        )
        .route("/v2.0/subnets", get(subnets::list).post(subnets::create))
        .route(
            "/v2.0/subnets/{id}",
            get(subnets::show)
                .put(subnets::update)
                .delete(subnets::delete),
        )
        .route("/v2.0/ports", get(ports::list).post(ports::create))
        .route(
            "/v2.0/ports/{id}",
            get(ports::show).put(ports::update).delete(ports::delete),
        )
        .route(
            "/v2.0/security-groups",
            get(security_groups::list).post(security_groups::create),
        )
        .route(
            "/v2.0/security-groups/{id}",
            get(security_groups::show)
                .put(security_groups::update)
                .delete(security_groups::delete),
        )
        .route(
            "/v2.0/security-group-rules",
            get(security_groups::rule_list).post(security_groups::rule_create),
        )
        .route(
            "/v2.0/security-group-rules/{id}",
            get(security_groups::rule_show).delete(security_groups::rule_delete),
        )
        .route("/v2.0/routers", get(routers::list).post(routers::create))
        .route(
            "/v2.0/routers/{id}",
            get(routers::show)
                .put(routers::update)
                .delete(routers::delete),
        )
        .route(
            "/v2.0/routers/{id}/add_router_interface",
            put(routers::add_interface),
        )
        .route(
            "/v2.0/routers/{id}/remove_router_interface",
            put(routers::remove_interface),
        )
        .route(
            "/v2.0/floatingips",
            get(floating_ips::list).post(floating_ips::create),
        )
        .route(
            "/v2.0/floatingips/{id}",
            get(floating_ips::show)
                .put(floating_ips::update)
                .delete(floating_ips::delete),
        )
        .route("/v2.0/quotas", get(quotas::list))
        .route(
            "/v2.0/quotas/{project}",
            get(quotas::show).put(quotas::update).delete(quotas::reset),
        )
        .route("/v2.0/quotas/{project}/default", get(quotas::defaults))
        .route("/v2.0/quotas/{project}/details", get(quotas::details))
        .fallback(fault::not_found)
        .with_state(state);
    api.layer(middleware::from_fn(|req, next| {
        fault::render(Service::Network, req, next)
    }))
}

fn base(state: &AppState) -> String {
    format!("{}/network", state.settings.public_url())
}

async fn versions(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"href": format!("{}/v2.0/", base(&state)), "rel": "self"}],
    }]}))
}

async fn resources(State(state): State<AppState>) -> Json<Value> {
    let b = base(&state);
    let list: Vec<Value> = [
        ("subnet", "subnets"),
        ("network", "networks"),
        ("port", "ports"),
        ("router", "routers"),
        ("floatingip", "floatingips"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("quota", "quotas"),
    ]
    .iter()
    .map(|(n, c)| {
        json!({"name": n, "collection": c,
               "links": [{"href": format!("{b}/v2.0/{c}"), "rel": "self"}]})
    })
    .collect();
    Json(json!({ "resources": list }))
}

fn extension_view(alias: &str, name: &str, description: &str) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "updated": "2013-01-20T00:00:00-00:00",
        "links": [],
    })
}

async fn extensions(_auth: crate::context::Auth) -> Json<Value> {
    let list: Vec<Value> = oxistack_network::EXTENSIONS
        .iter()
        .map(|(a, n, d)| extension_view(a, n, d))
        .collect();
    Json(json!({ "extensions": list }))
}

async fn extension(
    _auth: crate::context::Auth,
    axum::extract::Path(alias): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    let (a, n, d) = oxistack_network::EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias)
        .ok_or_else(|| {
            AppError::not_found(format!("Extension with alias {alias} does not exist"))
                .with_code("HTTPNotFound")
        })?;
    Ok(Json(json!({"extension": extension_view(a, n, d)})))
}

async fn availability_zones(
    State(state): State<AppState>,
    _auth: crate::context::Auth,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let zone = &state.settings.availability_zone;
    let items = ["network", "router"]
        .iter()
        .map(|r| json!({"name": zone, "resource": r, "state": "available"}))
        .collect();
    list_response(&state, "availability_zones", items, &q)
}

/// Neutron's timestamp form.
pub(crate) fn when(t: &oxistack_model::time::Timestamp) -> String {
    iso_seconds(t)
}

/// Query keys that are not attribute filters.
const RESERVED: &[&str] = &[
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
    "all_tenants",
];

/// The text form of a JSON value for comparison with a query value.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn matches(item: &Value, key: &str, wanted: &[&str]) -> bool {
    let Some(v) = item.get(key) else {
        // Neutron ignores filters on attributes the resource lacks.
        return true;
    };
    if let Value::Array(list) = v {
        return list_matches(list, wanted);
    }
    wanted.iter().any(|w| match v {
        Value::Bool(b) => crate::body::parse_bool(w) == Some(*b),
        Value::Null => w.is_empty() || w.eq_ignore_ascii_case("none"),
        other => text_of(other).as_deref() == Some(*w),
    })
}

/// A filter on a list attribute. Plain values (`security_groups=<id>`)
/// match a list that contains one of them. `<field>=<value>` values
/// (`fixed_ips=ip_address=10.0.0.3`, `fixed_ips=subnet_id=…`) match an
/// element whose field has one of the values given for that field, and
/// every field filtered must match (each on any element), as Neutron's
/// port query does. `ip_address_substr=<text>` (the `ip-substring-filtering`
/// extension) matches an `ip_address` containing the text.
fn list_matches(list: &[Value], wanted: &[&str]) -> bool {
    let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut plain: Vec<&str> = Vec::new();
    for w in wanted {
        match w.split_once('=') {
            Some((k, val)) => match fields.iter_mut().find(|(f, _)| *f == k) {
                Some((_, vals)) => vals.push(val),
                None => fields.push((k, vec![val])),
            },
            None => plain.push(w),
        }
    }
    let field_text = |e: &Value, f: &str| e.get(f).and_then(text_of);
    let plain_ok = plain.is_empty()
        || list
            .iter()
            .any(|e| text_of(e).is_some_and(|t| plain.contains(&t.as_str())));
    plain_ok
        && fields.iter().all(|(f, vals)| {
            list.iter().any(|e| match *f {
                "ip_address_substr" => {
                    field_text(e, "ip_address").is_some_and(|t| vals.iter().any(|v| t.contains(v)))
                }
                f => field_text(e, f).is_some_and(|t| vals.contains(&t.as_str())),
            })
        })
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => text_of(a).cmp(&text_of(b)),
    }
}

/// Keeps only `fields` of an item (all when none are asked for).
pub(crate) fn select_fields(item: Value, q: &QueryPairs) -> Value {
    let fields: Vec<&str> = q
        .all("fields")
        .into_iter()
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() {
        return item;
    }
    match item {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Filters, sorts, paginates and trims a collection, and wraps it as
/// `{"<collection>": [...], "<collection>_links": [...]}`.
pub(crate) fn list_response(
    state: &AppState,
    collection: &str,
    mut items: Vec<Value>,
    q: &QueryPairs,
) -> ApiResult<Json<Value>> {
    let mut keys: Vec<&str> = Vec::new();
    for (k, _) in &q.0 {
        if !RESERVED.contains(&k.as_str()) && !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    for k in &keys {
        let wanted = q.all(k);
        items.retain(|i| matches(i, k, &wanted));
    }
    let sort_keys = q.all("sort_key");
    let sort_dirs = q.all("sort_dir");
    if sort_keys.len() != sort_dirs.len() && !sort_dirs.is_empty() {
        return Err(
            AppError::bad_request("The number of sort_keys and sort_dirs must be same")
                .with_code("HTTPBadRequest")
                .into(),
        );
    }
    for d in &sort_dirs {
        if *d != "asc" && *d != "desc" {
            return Err(
                AppError::bad_request(format!("{d} is invalid attribute for sort_dir"))
                    .with_code("HTTPBadRequest")
                    .into(),
            );
        }
    }
    if let Some(first) = items.first() {
        for k in &sort_keys {
            if first.get(*k).is_none() {
                return Err(AppError::bad_request(format!(
                    "{k} is invalid attribute for sort_key"
                ))
                .with_code("HTTPBadRequest")
                .into());
            }
        }
    }
    let limit = q.uint("limit")?.filter(|l| *l > 0);
    let marker = q.get("marker").map(String::from);
    let mut order: Vec<(&str, bool)> = sort_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, sort_dirs.get(i).map(|d| *d == "desc").unwrap_or(false)))
        .collect();
    if !order.is_empty() || limit.is_some() || marker.is_some() {
        // Pagination needs a total order: id breaks ties, as in Neutron.
        if !order.iter().any(|(k, _)| *k == "id") {
            order.push(("id", false));
        }
        items.sort_by(|a, b| {
            for (k, desc) in &order {
                let o = compare(
                    a.get(*k).unwrap_or(&Value::Null),
                    b.get(*k).unwrap_or(&Value::Null),
                );
                if o != Ordering::Equal {
                    return if *desc { o.reverse() } else { o };
                }
            }
            Ordering::Equal
        });
    }
    let mut had_before = false;
    if let Some(m) = &marker {
        if let Some(pos) = items
            .iter()
            .position(|i| i.get("id").and_then(|v| v.as_str()) == Some(m))
        {
            items.drain(..=pos);
            had_before = true;
        }
    }
    let mut links = Vec::new();
    let href = |marker: &str, reverse: bool| {
        let mut parts: Vec<String> =
            q.0.iter()
                .filter(|(k, _)| k != "marker" && k != "page_reverse")
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
        parts.push(format!("marker={marker}"));
        if reverse {
            parts.push("page_reverse=True".into());
        }
        format!("{}/v2.0/{collection}?{}", base(state), parts.join("&"))
    };
    if let Some(l) = limit {
        let l = l as usize;
        if items.len() > l {
            items.truncate(l);
            if let Some(last) = items
                .last()
                .and_then(|i| i.get("id"))
                .and_then(|v| v.as_str())
            {
                links.push(json!({"rel": "next", "href": href(last, false)}));
            }
        }
        if had_before {
            if let Some(first) = items
                .first()
                .and_then(|i| i.get("id"))
                .and_then(|v| v.as_str())
            {
                links.push(json!({"rel": "previous", "href": href(first, true)}));
            }
        }
    }
    let items: Vec<Value> = items.into_iter().map(|i| select_fields(i, q)).collect();
    let mut body = Map::new();
    body.insert(collection.to_string(), Value::Array(items));
    if !links.is_empty() {
        body.insert(format!("{collection}_links"), Value::Array(links));
    }
    Ok(Json(Value::Object(body)))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses a typed id from a path; a malformed one is simply not found.
pub(crate) fn path_id<T: std::str::FromStr>(
    s: &str,
    missing: impl Fn(String) -> AppError,
) -> Result<T, crate::ApiError> {
    s.parse().map_err(|_| missing(s.to_string()).into())
}

/// The single resource body `{"<key>": {...}}`, with `fields` applied.
pub(crate) fn one(key: &str, item: Value, q: &QueryPairs) -> Json<Value> {
    Json(json!({ key: select_fields(item, q) }))
}

/// Reads `{"<key>": {...}}` into the app's request type.
pub(crate) fn unwrap_body<T: serde::de::DeserializeOwned>(
    key: &str,
    mut v: Value,
) -> Result<T, crate::ApiError> {
    let inner = v
        .get_mut(key)
        .map(Value::take)
        .filter(|i| i.is_object())
        .ok_or_else(|| {
            AppError::bad_request(format!("Resource body required: {key} expected."))
                .with_code("HTTPBadRequest")
        })?;
    parse_item(inner)
}

/// A create body: one resource, or a bulk request's list of them.
pub(crate) enum Create<T> {
    One(T),
    Bulk(Vec<T>),
}

/// Reads a create body: `{"<key>": {...}}`, or Neutron's bulk form
/// `{"<collection>": [{...}, ...]}` whose items may also be wrapped as
/// `{"<key>": {...}}`. Every item is parsed before anything is created, so
/// a malformed one fails the whole request.
pub(crate) fn create_body<T: serde::de::DeserializeOwned>(
    key: &str,
    collection: &str,
    mut v: Value,
) -> Result<Create<T>, crate::ApiError> {
    let Some(list) = v.get_mut(collection).map(Value::take) else {
        return unwrap_body(key, v).map(Create::One);
    };
    let Value::Array(list) = list else {
        return Err(AppError::bad_request("Body contains invalid data")
            .with_code("HTTPBadRequest")
            .into());
    };
    if list.is_empty() {
        return Err(AppError::bad_request("Resources required")
            .with_code("HTTPBadRequest")
            .into());
    }
    list.into_iter()
        .map(|mut item| match item.get_mut(key).map(Value::take) {
            Some(inner) if inner.is_object() => parse_item(inner),
            _ if item.is_object() => parse_item(item),
            _ => Err(
                AppError::bad_request(format!("Object '{key}' contains invalid data"))
                    .with_code("HTTPBadRequest")
                    .into(),
            ),
        })
        .collect::<Result<Vec<T>, _>>()
        .map(Create::Bulk)
}

fn parse_item<T: serde::de::DeserializeOwned>(inner: Value) -> Result<T, crate::ApiError> {
    serde_json::from_value(inner).map_err(|e| {
        let msg = e.to_string();
        let msg = match msg.split_once("unknown field `") {
            Some((_, rest)) => format!(
                "Unrecognized attribute(s) '{}'",
                rest.split('`').next().unwrap_or("")
            ),
            None => format!("Invalid input for operation: {msg}"),
        };
        AppError::bad_request(msg)
            .with_code("HTTPBadRequest")
            .into()
    })
}
