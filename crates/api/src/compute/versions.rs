//! Compute microversions, as data: each version OxiStack serves and what it
//! changed (like Nova's `api_version_request.py`). The maximum advertised is
//! the last row; every row is implemented for every compute resource
//! OxiStack serves. Resources OxiStack does not serve at all (hypervisors,
//! aggregates, migrations, server groups, …) answer 404 at every version.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::microversion::{ApiVersion, VersionedService};
use crate::AppState;

/// (version, what changed for the resources OxiStack serves).
pub const HISTORY: &[(&str, &str)] = &[
    ("2.1", "base v2.1 API"),
    ("2.2", "keypair `type`: ssh, or x509 (Ed25519 certificates)"),
    (
        "2.3",
        "extended server attributes: reservation_id, launch_index, hostname, …",
    ),
    ("2.4", "os-fixed-ips reserved (not served)"),
    ("2.5", "ip6 server list filter"),
    ("2.6", "remote consoles (not served)"),
    ("2.7", "add security group check (not served)"),
    ("2.8", "mks consoles (not served)"),
    ("2.9", "server `locked`"),
    ("2.10", "keypairs: admin `user_id` parameter"),
    (
        "2.11",
        "services: `forced_down` shown (force-down itself not served)",
    ),
    ("2.12", "hypervisors: no change for what is served"),
    ("2.13", "server groups user/project (not served)"),
    ("2.14", "evacuate (not served)"),
    ("2.15", "soft affinity policies (not served)"),
    ("2.16", "server `host_status`"),
    ("2.17", "trigger crash dump (not served)"),
    ("2.18", "project id optional in URLs"),
    ("2.19", "server `description`"),
    ("2.20", "volume attach on shelved servers (not served)"),
    ("2.21", "instance actions of deleted servers (not served)"),
    ("2.22", "force live-migration completion (not served)"),
    ("2.23", "migrations filters (not served)"),
    ("2.24", "abort live migration (not served)"),
    ("2.25", "live migration block_migration auto (not served)"),
    ("2.26", "server tags"),
    ("2.27", "OpenStack-API-Version header"),
    ("2.28", "hypervisor `cpu_info` as an object"),
    ("2.29", "evacuate force (not served)"),
    ("2.30", "live migrate force (not served)"),
    ("2.31", "serial console (not served)"),
    ("2.32", "device tags on networks (accepted)"),
    ("2.33", "hypervisors pagination: limit, marker"),
    ("2.34", "async live migration checks (not served)"),
    ("2.35", "keypairs pagination"),
    (
        "2.36",
        "network proxy APIs (os-security-groups, os-floating-ips, os-networks…) 404; network quotas hidden",
    ),
    ("2.37", "`networks` required: auto | none | list"),
    ("2.38", "invalid server `status` filter is 400"),
    ("2.39", "limits: maxImageMeta removed"),
    ("2.40", "simple tenant usage pagination (not served)"),
    ("2.41", "aggregate uuid (not served)"),
    ("2.42", "device tags restored (accepted)"),
    ("2.43", "os-hosts removed"),
    ("2.44", "addFloatingIp/removeFloatingIp actions removed (404)"),
    ("2.45", "createImage returns image_id (not served)"),
    ("2.46", "instance actions request_id (not served)"),
    ("2.47", "server `flavor` embedded"),
];

pub const MIN: ApiVersion = ApiVersion::new(2, 1);
pub const MAX: ApiVersion = ApiVersion::new(2, 47);

/// The network proxy APIs (security groups, floating IPs, networks) exist
/// below 2.36; from 2.36 Nova answers 404 for them, as for a missing route.
pub fn proxy_api(v: ApiVersion) -> Result<(), oxistack_model::AppError> {
    if v.at_least(2, 36) {
        Err(oxistack_model::AppError::not_found(
            "The resource could not be found.",
        ))
    } else {
        Ok(())
    }
}

/// The floating IP server actions exist below 2.44.
pub fn floating_ip_actions(v: ApiVersion) -> bool {
    !v.at_least(2, 44)
}

pub const SERVICE: VersionedService = VersionedService {
    name: "compute",
    legacy_header: Some("x-openstack-nova-api-version"),
    min: MIN,
    max: MAX,
};

fn v21_doc(state: &AppState) -> serde_json::Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX.to_string(),
        "min_version": MIN.to_string(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{}/compute/v2.1/", state.settings.public_url())}],
    })
}

/// The legacy v2.0 entry Nova lists first (SUPPORTED, no microversions):
/// clients and Tempest's `test_list_api_versions` expect it there, and pick
/// v2.1, the CURRENT one, to talk to.
fn v20_doc(state: &AppState) -> serde_json::Value {
    json!({
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{}/compute/v2/", state.settings.public_url())}],
    })
}

pub async fn root(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        Json(json!({"versions": [v20_doc(&state), v21_doc(&state)]})),
    )
}

/// `GET /compute/v2/`: the v2.0 version document, so the link the root
/// lists can be followed (Tempest's `test_get_version_details`). The v2.0
/// API itself is not served.
pub async fn v20(State(state): State<AppState>) -> impl IntoResponse {
    let mut v = v20_doc(&state);
    v["media-types"] = json!([{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}]);
    Json(json!({"version": v}))
}

pub async fn v21(State(state): State<AppState>) -> impl IntoResponse {
    let mut v = v21_doc(&state);
    if let Some(l) = v["links"].as_array_mut() {
        l.push(json!({"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}));
    }
    v["media-types"] = json!([{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]);
    Json(json!({"version": v}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_contiguous_and_ends_at_max() {
        for (i, (v, _)) in HISTORY.iter().enumerate() {
            assert_eq!(*v, format!("2.{}", i + 1));
        }
        assert_eq!(HISTORY.last().unwrap().0, MAX.to_string());
    }
}
