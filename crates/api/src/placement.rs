//! The placement API, at `/placement`: resource providers, inventories,
//! resource classes, traits, aggregates, allocations, usages and allocation
//! candidates, microversions 1.0 to [`MAX_VERSION`].
//!
//! Placement is a service API: every call but the version document needs an
//! admin token (the `admin_only` layer). Handlers parse the wire format of
//! the requested microversion, call one `oxistack_scheduler::Placement`
//! method and render the view.

mod aggregates;
mod allocation_candidates;
mod allocations;
mod inventories;
mod providers;
mod resource_classes;
mod traits;
mod usages;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oxistack_model::{AppError, ErrorKind};
use serde_json::{json, Value};

use crate::body::QueryPairs;
use crate::context::Auth;
use crate::fault::{self, Service};
use crate::microversion::{negotiate, ApiVersion, VersionedService};
use crate::{ApiResult, AppState};

/// The history, one line per microversion we serve (Placement's
/// rest_api_version_history.rst):
/// - 1.0  initial: providers, inventories, allocations, usages
/// - 1.1  provider aggregates
/// - 1.2  custom resource classes
/// - 1.3  `member_of` on `GET /resource_providers`
/// - 1.4  `resources` on `GET /resource_providers`
/// - 1.5  `DELETE /resource_providers/{uuid}/inventories`
/// - 1.6  traits
/// - 1.7  `PUT /resource_classes/{name}` creates, without a body
/// - 1.8  `project_id` and `user_id` required on `PUT /allocations`
/// - 1.9  `GET /usages`
/// - 1.10 `GET /allocation_candidates`
/// - 1.11 `allocations` link on providers
/// - 1.12 allocations as a dict keyed by provider
/// - 1.13 `POST /allocations`
/// - 1.14 nested providers: `parent_provider_uuid`, `root_provider_uuid`, `in_tree`
/// - 1.15 `Last-Modified` and `Cache-Control` headers
/// - 1.16 `limit` on allocation candidates
/// - 1.17 `required` traits on allocation candidates
/// - 1.18 `required` traits on `GET /resource_providers`
/// - 1.19 provider generation in aggregates
/// - 1.20 `POST /resource_providers` answers 200 with the provider
/// - 1.21 `member_of` on allocation candidates
/// - 1.22 forbidden traits (`!TRAIT`)
/// - 1.23 error `code` in fault bodies
/// - 1.24 repeated `member_of`
pub const MAX_VERSION: ApiVersion = ApiVersion::new(1, 24);

pub const SERVICE: VersionedService = VersionedService {
    name: "placement",
    legacy_header: None,
    min: ApiVersion::new(1, 0),
    max: MAX_VERSION,
};

/// Where this router is mounted; links in bodies are absolute paths on it.
pub const PREFIX: &str = "/placement";

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/resource_providers",
            get(providers::list).post(providers::create),
        )
        .route(
            "/resource_providers/{uuid}",
            get(providers::show)
                .put(providers::update)
                .delete(providers::delete),
        )
        .route(
            "/resource_providers/{uuid}/inventories",
            get(inventories::list)
                .post(inventories::create)
                .put(inventories::replace)
                .delete(inventories::delete_all),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{class}",
            get(inventories::show)
                .put(inventories::update)
                .delete(inventories::delete),
        )
        .route(
            "/resource_providers/{uuid}/aggregates",
            get(aggregates::show).put(aggregates::update),
        )
        .route(
            "/resource_providers/{uuid}/traits",
            get(traits::provider_show)
                .put(traits::provider_update)
                .delete(traits::provider_delete),
        )
        .route(
            "/resource_providers/{uuid}/allocations",
            get(allocations::for_provider),
        )
        .route(
            "/resource_providers/{uuid}/usages",
            get(usages::for_provider),
        )
        .route(
            "/resource_classes",
            get(resource_classes::list).post(resource_classes::create),
        )
        .route(
            "/resource_classes/{name}",
            get(resource_classes::show)
                .put(resource_classes::update)
                .delete(resource_classes::delete),
        )
        .route("/traits", get(traits::list))
        .route(
            "/traits/{name}",
            get(traits::show).put(traits::create).delete(traits::delete),
        )
        .route("/allocations", axum::routing::post(allocations::post_many))
        .route(
            "/allocations/{consumer}",
            get(allocations::show)
                .put(allocations::replace)
                .delete(allocations::delete),
        )
        .route("/usages", get(usages::for_project))
        .route("/allocation_candidates", get(allocation_candidates::list))
        .route_layer(from_fn_with_state(state.clone(), admin_only));
    Router::new()
        .route("/", get(root))
        .merge(api)
        .fallback(fault::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(cache_headers))
        .layer(from_fn(|req: Request, next: Next| {
            negotiate(SERVICE, req, next)
        }))
        .layer(from_fn(|req: Request, next: Next| {
            fault::render(Service::Placement, req, next)
        }))
        .with_state(state)
}

/// `GET /placement/`: the version document (no token needed).
async fn root() -> Json<Value> {
    Json(json!({"versions": [{
        "id": format!("v{}", SERVICE.min),
        "max_version": SERVICE.max.to_string(),
        "min_version": SERVICE.min.to_string(),
        "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}],
    }]}))
}

/// Placement's default policy: `role:admin` (the service user) for all.
async fn admin_only(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match Auth::from_request_parts(&mut parts, &state).await {
        Ok(Auth(ctx)) => {
            if let Err(e) = ctx.require_admin() {
                return crate::ApiError(e).into_response();
            }
        }
        Err(e) => return e.into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

async fn method_not_allowed(method: Method) -> crate::ApiError {
    AppError::new(
        ErrorKind::MethodNotAllowed,
        format!("The method specified is not allowed for this resource: {method}."),
    )
    .into()
}

/// 1.15+: responses with a body say when it changed and that it must be
/// revalidated. OxiStack answers "now" (as Placement does for computed
/// views such as usages and candidates).
async fn cache_headers(req: Request, next: Next) -> Response {
    let v15 = req
        .extensions()
        .get::<ApiVersion>()
        .is_some_and(|v| v.at_least(1, 15));
    let mut resp = next.run(req).await;
    let has_body = matches!(resp.status(), StatusCode::OK | StatusCode::CREATED);
    if v15 && has_body {
        let now = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        if let Ok(v) = HeaderValue::from_str(&now) {
            resp.headers_mut().insert("last-modified", v);
        }
        resp.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
    }
    resp
}

// ---- shared request parsing -----------------------------------------------

/// A URL that does not exist before `min` (e.g. `/traits` before 1.6).
fn since(v: ApiVersion, major: u32, minor: u32) -> ApiResult<()> {
    if v.at_least(major, minor) {
        Ok(())
    } else {
        Err(AppError::not_found("The resource could not be found.").into())
    }
}

/// A method that does not exist before `min` on a URL that does.
fn method_since(v: ApiVersion, major: u32, minor: u32, method: &str) -> ApiResult<()> {
    if v.at_least(major, minor) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorKind::MethodNotAllowed,
            format!("The method specified is not allowed for this resource: {method}."),
        )
        .into())
    }
}

/// Refuses query parameters the microversion's schema does not have.
fn allow_params(q: &QueryPairs, allowed: &[&str]) -> ApiResult<()> {
    for (k, _) in &q.0 {
        if !allowed.contains(&k.as_str()) {
            return Err(AppError::bad_request(format!(
                "Invalid query string parameters: Additional properties are not allowed ('{k}' was unexpected)"
            ))
            .into());
        }
    }
    Ok(())
}

/// A path or body uuid, in the hyphenated form Placement prints.
fn parse_uuid(s: &str, what: &str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            AppError::bad_request(format!(
                "JSON does not validate: {s:?} is not a 'uuid' ({what})"
            ))
        })
}

fn bad_value(msg: String) -> AppError {
    AppError::bad_request(msg).with_code("placement.query.bad_value")
}

/// `resources=VCPU:2,MEMORY_MB:1024`.
fn parse_resources(qs: &str) -> Result<Vec<(String, i64)>, AppError> {
    let form = |got: &str| {
        bad_value(format!(
            "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {got}."
        ))
    };
    if qs.trim().is_empty() {
        return Err(form("empty string"));
    }
    let mut out: Vec<(String, i64)> = Vec::new();
    for part in qs.split(',') {
        let (class, amount) = part.split_once(':').ok_or_else(|| form(part))?;
        let amount: i64 = amount.trim().parse().map_err(|_| form(part))?;
        if amount < 1 {
            return Err(bad_value(format!(
                "Requested resource {class} expected positive integer amount. Got: {amount}."
            )));
        }
        if out.iter().any(|(c, _)| c == class) {
            return Err(bad_value(format!(
                "Badly formed resources parameter: {class} appears twice."
            )));
        }
        out.push((class.trim().to_string(), amount));
    }
    Ok(out)
}

/// `required=A,!B`: (required, forbidden). `!` is a trait name before 1.22.
fn parse_required(qs: &str, v: ApiVersion) -> Result<(Vec<String>, Vec<String>), AppError> {
    let (mut req, mut forb) = (Vec::new(), Vec::new());
    for t in qs.split(',') {
        let t = t.trim();
        if t.is_empty() {
            let example = if v.at_least(1, 22) {
                "HW_CPU_X86_VMX,!CUSTOM_MAGIC"
            } else {
                "HW_CPU_X86_VMX,CUSTOM_MAGIC"
            };
            return Err(bad_value(format!(
                "Invalid query string parameters: Expected 'required' parameter value of the form: {example}. Got: {qs}"
            )));
        }
        match t.strip_prefix('!') {
            Some(f) if v.at_least(1, 22) => forb.push(f.to_string()),
            _ => req.push(t.to_string()),
        }
    }
    Ok((req, forb))
}

/// `member_of=in:A,B` or `member_of=A`, once (or repeated from 1.24).
fn parse_member_of(q: &QueryPairs, v: ApiVersion) -> Result<Vec<Vec<String>>, AppError> {
    let values = q.all("member_of");
    let values: Vec<&str> = if v.at_least(1, 24) {
        values
    } else {
        values.into_iter().take(1).collect()
    };
    let mut groups = Vec::new();
    for raw in values {
        let list = raw.strip_prefix("in:").unwrap_or(raw);
        let mut g = Vec::new();
        for a in list.split(',') {
            let a = uuid::Uuid::parse_str(a.trim()).map_err(|_| {
                bad_value(format!("Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). Got: {raw}"))
            })?;
            g.push(a.hyphenated().to_string());
        }
        groups.push(g);
    }
    Ok(groups)
}

fn link(rel: &str, href: String) -> Value {
    json!({"rel": rel, "href": href})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_required_parse() {
        assert_eq!(
            parse_resources("VCPU:2,MEMORY_MB:1024").unwrap(),
            vec![("VCPU".to_string(), 2), ("MEMORY_MB".to_string(), 1024)]
        );
        assert_eq!(parse_resources("VCPU").unwrap_err().status(), 400);
        assert_eq!(parse_resources("VCPU:0").unwrap_err().status(), 400);
        assert_eq!(parse_resources("").unwrap_err().status(), 400);
        let (r, f) = parse_required("A,!B", ApiVersion::new(1, 22)).unwrap();
        assert_eq!((r, f), (vec!["A".to_string()], vec!["B".to_string()]));
        let (r, f) = parse_required("!B", ApiVersion::new(1, 21)).unwrap();
        assert_eq!((r, f.len()), (vec!["!B".to_string()], 0));
    }
}
