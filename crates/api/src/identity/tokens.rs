//! `/v3/auth/*`: issue, validate, check and revoke tokens; the caller's
//! projects, domains and catalog.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oxistack_identity::{CatalogEntry, IssuedToken};
use oxistack_model::time::iso_micros;
use oxistack_model::AppError;
use serde_json::{json, Value};

use super::{collection, domains::domain_view, projects::project_view};
use crate::body::{JsonBody, QueryPairs};
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/auth/tokens", post(issue).get(validate).delete(revoke))
        .route("/v3/auth/catalog", get(catalog))
        .route("/v3/auth/projects", get(projects))
        .route("/v3/auth/domains", get(domains))
}

pub(super) fn catalog_view(catalog: &[CatalogEntry]) -> Vec<Value> {
    catalog
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "type": s.service_type,
                "name": s.name,
                "endpoints": s.endpoints.iter().map(|e| json!({
                    "id": e.id,
                    "interface": e.interface,
                    "region": e.region_id,
                    "region_id": e.region_id,
                    "url": e.url,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn token_view(t: &IssuedToken) -> Value {
    let c = &t.ctx;
    let mut body = json!({
        "methods": c.methods,
        "user": {
            "id": c.user_id.to_string(),
            "name": c.user_name,
            "domain": {"id": c.user_domain_id, "name": c.user_domain_name},
            "password_expires_at": null,
        },
        "audit_ids": t.audit_ids,
        "issued_at": iso_micros(&c.issued_at),
        "expires_at": iso_micros(&c.expires_at),
    });
    if let Some(p) = &c.project_id {
        body["project"] = json!({
            "id": p.to_string(),
            "name": c.project_name,
            "domain": {"id": c.project_domain_id, "name": c.project_domain_name},
        });
        body["is_domain"] = json!(false);
    } else if let Some(d) = &c.domain_id {
        body["domain"] = json!({"id": d, "name": c.domain_name});
    } else if t.system {
        body["system"] = json!({"all": true});
    }
    if t.system || c.project_id.is_some() || c.domain_id.is_some() {
        body["roles"] = c
            .role_ids
            .iter()
            .zip(&c.roles)
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
    }
    if let Some(cat) = &t.catalog {
        body["catalog"] = json!(catalog_view(cat));
    }
    json!({"token": body})
}

fn with_subject(status: StatusCode, t: &IssuedToken) -> ApiResult<Response> {
    let mut resp = (status, Json(token_view(t))).into_response();
    let v = HeaderValue::from_str(&t.token)
        .map_err(|e| AppError::internal(format!("token header: {e}")))?;
    resp.headers_mut().insert("x-subject-token", v);
    Ok(resp)
}

/// `?nocatalog` (any value) leaves the catalog out, as in Keystone.
fn no_catalog(q: &QueryPairs) -> bool {
    q.0.iter().any(|(k, _)| k == "nocatalog")
}

async fn issue(
    State(st): State<AppState>,
    q: QueryPairs,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let mut t = st.identity.authenticate(&body).await?;
    if no_catalog(&q) {
        t.catalog = None;
    }
    with_subject(StatusCode::CREATED, &t)
}

fn subject(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(String::from)
        .ok_or_else(|| AppError::bad_request("Missing X-Subject-Token header.").into())
}

async fn validate(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let subject = subject(&headers)?;
    let t = st
        .identity
        .token_details(&ctx, &subject, !no_catalog(&q))
        .await?;
    with_subject(StatusCode::OK, &t)
}

async fn revoke(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let subject = subject(&headers)?;
    st.identity.revoke_token(&ctx, &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn catalog(State(st): State<AppState>, Auth(ctx): Auth, uri: Uri) -> ApiResult<Json<Value>> {
    let cat = st.identity.auth_catalog(&ctx).await?;
    Ok(collection(&st, &uri, "catalog", catalog_view(&cat)))
}

async fn projects(State(st): State<AppState>, Auth(ctx): Auth, uri: Uri) -> ApiResult<Json<Value>> {
    let items = st.identity.auth_projects(&ctx).await?;
    Ok(collection(
        &st,
        &uri,
        "projects",
        items.iter().map(|p| project_view(&st, p)).collect(),
    ))
}

async fn domains(State(st): State<AppState>, Auth(ctx): Auth, uri: Uri) -> ApiResult<Json<Value>> {
    let items = st.identity.auth_domains(&ctx).await?;
    Ok(collection(
        &st,
        &uri,
        "domains",
        items.iter().map(|d| domain_view(&st, d)).collect(),
    ))
}
