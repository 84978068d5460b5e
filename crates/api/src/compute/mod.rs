//! The compute API (Nova v2.1) at `/compute`.

mod flavors;
mod floating_ips;
mod hypervisors;
mod interfaces;
mod keypairs;
mod limits;
mod networks;
mod security_groups;
mod servers;
pub mod versions;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::context::RequestId;
use crate::fault::{self, Service};
use crate::microversion;
use crate::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/", get(versions::root))
        .route("/v2", get(versions::v20))
        .route("/v2/", get(versions::v20))
        .route("/v2.1", get(versions::v21))
        .route("/v2.1/", get(versions::v21))
        .route("/v2.1/flavors", get(flavors::list).post(flavors::create))
        .route("/v2.1/flavors/detail", get(flavors::detail))
        .route(
            "/v2.1/flavors/{id}",
            get(flavors::show).delete(flavors::delete),
        )
        .route("/v2.1/flavors/{id}/action", post(flavors::action))
        .route(
            "/v2.1/flavors/{id}/os-flavor-access",
            get(flavors::access_list),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs",
            get(flavors::specs_list).post(flavors::specs_create),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(flavors::spec_show)
                .put(flavors::spec_update)
                .delete(flavors::spec_delete),
        )
        .route(
            "/v2.1/os-keypairs",
            get(keypairs::list).post(keypairs::create),
        )
        .route(
            "/v2.1/os-keypairs/{name}",
            get(keypairs::show).delete(keypairs::delete),
        )
        .route("/v2.1/servers", get(servers::list).post(servers::create))
        .route("/v2.1/servers/detail", get(servers::detail))
        .route(
            "/v2.1/servers/{id}",
            get(servers::show)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/v2.1/servers/{id}/action", post(servers::action))
        .route(
            "/v2.1/servers/{id}/os-interface",
            get(interfaces::list).post(interfaces::create),
        )
        .route(
            "/v2.1/servers/{id}/os-interface/{port_id}",
            get(interfaces::show).delete(interfaces::delete),
        )
        .route(
            "/v2.1/servers/{id}/os-security-groups",
            get(security_groups::server_list),
        )
        .route("/v2.1/servers/{id}/ips", get(servers::ips))
        .route(
            "/v2.1/servers/{id}/ips/{network}",
            get(servers::ips_of_network),
        )
        .route(
            "/v2.1/servers/{id}/metadata",
            get(servers::metadata_list)
                .post(servers::metadata_merge)
                .put(servers::metadata_replace),
        )
        .route(
            "/v2.1/servers/{id}/metadata/{key}",
            get(servers::metadata_show)
                .put(servers::metadata_put)
                .delete(servers::metadata_delete),
        )
        .route(
            "/v2.1/servers/{id}/tags",
            get(servers::tags_list)
                .put(servers::tags_replace)
                .delete(servers::tags_clear),
        )
        .route(
            "/v2.1/servers/{id}/tags/{tag}",
            get(servers::tag_check)
                .put(servers::tag_add)
                .delete(servers::tag_delete),
        )
        .route("/v2.1/limits", get(limits::limits))
        .route(
            "/v2.1/os-quota-sets/{project}",
            get(limits::quota_show)
                .put(limits::quota_update)
                .delete(limits::quota_delete),
        )
        .route(
            "/v2.1/os-quota-sets/{project}/defaults",
            get(limits::quota_defaults),
        )
        .route(
            "/v2.1/os-quota-sets/{project}/detail",
            get(limits::quota_detail),
        )
        .route("/v2.1/os-hypervisors", get(hypervisors::list))
        .route("/v2.1/os-hypervisors/detail", get(hypervisors::list_detail))
        .route(
            "/v2.1/os-hypervisors/statistics",
            get(hypervisors::statistics),
        )
        .route("/v2.1/os-hypervisors/{id}", get(hypervisors::show))
        .route("/v2.1/os-hypervisors/{id}/uptime", get(hypervisors::uptime))
        // The network proxy APIs (below 2.36; the gone ones at every version).
        .route(
            "/v2.1/os-security-groups",
            get(security_groups::list)
                .post(security_groups::create)
                // `DELETE /os-security-groups/` names no group: Nova's 404.
                .delete(fault::not_found),
        )
        .route(
            "/v2.1/os-security-groups/{id}",
            get(security_groups::show)
                .put(security_groups::update)
                .delete(security_groups::delete),
        )
        .route(
            "/v2.1/os-security-group-rules",
            post(security_groups::rule_create),
        )
        .route(
            "/v2.1/os-security-group-rules/{id}",
            delete(security_groups::rule_delete),
        )
        .route(
            "/v2.1/os-floating-ips",
            get(floating_ips::list).post(floating_ips::create),
        )
        .route(
            "/v2.1/os-floating-ips/{id}",
            get(floating_ips::show).delete(floating_ips::delete),
        )
        .route("/v2.1/os-floating-ip-pools", get(floating_ips::pools))
        .route(
            "/v2.1/os-networks",
            get(networks::list).post(networks::gone),
        )
        .route(
            "/v2.1/os-networks/{id}",
            get(networks::show)
                .post(networks::gone_add)
                .delete(networks::gone),
        )
        .route("/v2.1/os-networks/{id}/action", post(networks::gone))
        .route(
            "/v2.1/os-tenant-networks",
            get(networks::tenant_list).post(networks::gone),
        )
        .route(
            "/v2.1/os-tenant-networks/{id}",
            get(networks::tenant_show).delete(networks::gone),
        )
        .route("/v2.1/os-aggregates", get(hypervisors::aggregates))
        .route("/v2.1/os-services", get(hypervisors::services))
        .route("/v2.1/os-availability-zone", get(limits::zones))
        .route(
            "/v2.1/os-availability-zone/detail",
            get(limits::zones_detail),
        )
        .fallback(fault::not_found)
        .with_state(state);
    api.layer(middleware::from_fn(|req, next| {
        microversion::negotiate(versions::SERVICE, req, next)
    }))
    .layer(middleware::from_fn(|req, next| {
        fault::render(Service::Compute, req, next)
    }))
    .layer(middleware::from_fn(compute_request_id))
}

/// Nova also sends the request id as `x-compute-request-id`.
async fn compute_request_id(req: Request, next: Next) -> Response {
    let rid = req.extensions().get::<RequestId>().cloned();
    let mut resp = next.run(req).await;
    if let Some(Ok(v)) = rid.map(|r| HeaderValue::from_str(&r.0)) {
        resp.headers_mut().insert("x-compute-request-id", v);
    }
    resp
}

/// `<public_url>/compute/v2.1/<path>` and the bookmark form without the version.
pub(crate) fn links(state: &AppState, path: &str) -> serde_json::Value {
    let base = state.settings.public_url();
    serde_json::json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{path}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{path}")},
    ])
}
