//! The identity API (Keystone v3) under `/identity`: version discovery,
//! tokens, and the admin resources, one file each. Handlers extract, call
//! one `Identity` function, and render Keystone's body; errors are rendered
//! in Keystone's format by `fault::render`.

mod assignments;
mod catalog;
mod domains;
mod groups;
mod projects;
mod roles;
mod tokens;
mod users;

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::fault::{self, Service};
use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .merge(tokens::routes())
        .merge(domains::routes())
        .merge(projects::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(roles::routes())
        .merge(assignments::routes())
        .merge(catalog::routes())
        .fallback(fault::not_found)
        .layer(middleware::from_fn(|req: Request, next: Next| {
            fault::render(Service::Identity, req, next)
        }))
        .with_state(state)
}

/// Keystone's v3 version entry (v3.14, the Ussuri API and later).
fn version_entry(state: &AppState) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", v3(state))}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(state): State<AppState>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_entry(&state)]}})),
    )
        .into_response()
}

async fn version(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"version": version_entry(&state)}))
}

/// `<public_url>/identity/v3`: the base of every link.
pub(crate) fn v3(state: &AppState) -> String {
    format!("{}/identity/v3", state.settings.public_url())
}

/// A resource's `links` object.
pub(crate) fn self_link(state: &AppState, path: &str) -> Value {
    json!({"self": format!("{}/{path}", v3(state))})
}

/// A collection body: `{key: items, "links": {self, previous, next}}`. The
/// self link is the request's own URL (the nested router sees the path
/// under `/identity`).
pub(crate) fn collection(state: &AppState, uri: &Uri, key: &str, items: Vec<Value>) -> Json<Value> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Json(json!({
        key: items,
        "links": {"self": format!("{}/identity{path}", state.settings.public_url()), "previous": null, "next": null},
    }))
}

/// Adds the stored extra attributes to a rendered resource, without letting
/// them override the real ones.
pub(crate) fn with_extra(mut v: Value, extra: &Value) -> Value {
    if let (Value::Object(out), Value::Object(ex)) = (&mut v, extra) {
        for (k, x) in ex {
            out.entry(k.clone()).or_insert_with(|| x.clone());
        }
    }
    v
}

pub(crate) fn one(key: &str, v: Value) -> Json<Value> {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Json(Value::Object(m))
}

pub(crate) fn created(key: &str, v: Value) -> Response {
    (StatusCode::CREATED, one(key, v)).into_response()
}

/// The `name`, `domain_id`, `enabled` and `parent_id` filters of a listing.
pub(crate) fn list_filter(
    q: &crate::body::QueryPairs,
) -> crate::ApiResult<oxistack_identity::records::ListFilter> {
    Ok(oxistack_identity::records::ListFilter {
        name: q.get("name").map(String::from),
        domain_id: q.get("domain_id").map(String::from),
        enabled: q.flag("enabled")?,
        parent_id: q.get("parent_id").map(String::from),
    })
}
