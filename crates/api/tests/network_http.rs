//! The network API (Neutron v2.0) over HTTP, through the whole router, on
//! the engine under test (SQLite by default, PostgreSQL with
//! OXISTACK_TEST_DATABASE=postgres).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use oxistack_api::AppState;
use oxistack_model::config::Settings;
use oxistack_model::{AuthContext, ProjectId, UserId};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    _db: TestDb,
    _dir: tempfile::TempDir,
    app: Router,
}

async fn harness() -> Harness {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(Settings {
        public_url: Some("http://cloud.example:8080".into()),
        ..Settings::default()
    });
    let bus: Arc<dyn oxistack_bus::Bus> = Arc::new(oxistack_bus::InProcessBus::new());
    let state = AppState::assemble(
        store.clone(),
        settings.clone(),
        dir.path().to_path_buf(),
        bus,
        Vec::new(),
    );
    Harness {
        _db: db,
        _dir: dir,
        app: oxistack_api::router(state),
    }
}

fn caller(project: ProjectId, roles: &[&str]) -> AuthContext {
    let now = oxistack_model::time::now();
    AuthContext {
        user_id: UserId::new(),
        user_name: "u".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        project_id: Some(project),
        project_name: Some("p".into()),
        project_domain_id: Some("default".into()),
        project_domain_name: Some("Default".into()),
        domain_id: None,
        domain_name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        role_ids: vec![],
        issued_at: now,
        expires_at: now + chrono::Duration::hours(1),
        audit_id: "t".into(),
        methods: vec!["password".into()],
    }
}

impl Harness {
    async fn call(
        &self,
        who: Option<&AuthContext>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/network{path}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        if let Some(c) = who {
            req.extensions_mut().insert(c.clone());
        }
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }
}

fn error_type(v: &Value) -> &str {
    v["NeutronError"]["type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn versions_extensions_and_credentials() {
    let h = harness().await;
    let (s, v) = h.call(None, "GET", "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["versions"][0]["id"], "v2.0");
    assert_eq!(
        v["versions"][0]["links"][0]["href"],
        "http://cloud.example:8080/network/v2.0/"
    );
    let (s, _) = h.call(None, "GET", "/v2.0/networks", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let m = caller(ProjectId::new(), &["member", "reader"]);
    let (s, v) = h.call(Some(&m), "GET", "/v2.0/extensions", None).await;
    assert_eq!(s, StatusCode::OK);
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    for a in [
        "router",
        "external-net",
        "security-group",
        "quotas",
        "binding",
        "port-security",
        "provider",
    ] {
        assert!(aliases.contains(&a), "{a}");
    }
    let (s, v) = h
        .call(Some(&m), "GET", "/v2.0/extensions/router", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["extension"]["alias"], "router");
    let (s, _) = h.call(Some(&m), "GET", "/v2.0/extensions/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn networks_subnets_ports_bodies_and_faults() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let a = caller(ProjectId::new(), &["admin", "member", "reader"]);
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"name": "net1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let n = &v["network"];
    assert_eq!(n["name"], "net1");
    assert_eq!(n["status"], "ACTIVE");
    assert_eq!(n["mtu"], 1450);
    assert_eq!(n["router:external"], false);
    assert_eq!(n["project_id"], p.to_string());
    assert_eq!(n["tenant_id"], p.to_string());
    assert_eq!(n["revision_number"], 1);
    assert!(n.get("provider:network_type").is_none());
    let nid = n["id"].as_str().unwrap().to_string();
    let (_, v) = h
        .call(Some(&a), "GET", &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(v["network"]["provider:network_type"], "vxlan");
    assert_eq!(v["network"]["provider:segmentation_id"], 1000);

    let (s, v) = h
        .call(
            Some(&m),
            "GET",
            "/v2.0/networks/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&v), "NetworkNotFound");
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"bogus": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["NeutronError"]["message"]
        .as_str()
        .unwrap()
        .contains("bogus"));

    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 4,
            "cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.10", "end": "10.0.0.20"},
            {"start": "10.0.0.15", "end": "10.0.0.25"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&v), "OverlappingAllocationPools");
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.0.0.0/24"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sn = &v["subnet"];
    assert_eq!(sn["gateway_ip"], "10.0.0.1");
    assert_eq!(
        sn["allocation_pools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    assert_eq!(sn["enable_dhcp"], true);
    assert_eq!(sn["ipv6_ra_mode"], Value::Null);
    let sid = sn["id"].as_str().unwrap().to_string();
    let (_, v) = h
        .call(Some(&m), "GET", &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(v["network"]["subnets"], json!([sid]));

    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"port": {"network_id": nid,
            "fixed_ips": [{"subnet_id": sid, "ip_address": "192.168.9.9"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&v), "InvalidIpForSubnet");
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, v) = h
            .call(
                Some(&m),
                "POST",
                "/v2.0/ports",
                Some(json!({"port": {"network_id": nid, "name": format!("p{i}"),
                "device_owner": "compute:nova", "device_id": "vm"}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let port = &v["port"];
        assert_eq!(port["status"], "DOWN");
        assert_eq!(port["binding:vnic_type"], "normal");
        assert!(port.get("binding:host_id").is_none());
        assert_eq!(port["security_groups"].as_array().unwrap().len(), 1);
        ids.push(port["id"].as_str().unwrap().to_string());
    }
    let (_, v) = h
        .call(Some(&a), "GET", &format!("/v2.0/ports/{}", ids[0]), None)
        .await;
    assert_eq!(v["port"]["binding:vif_type"], "unbound");
    assert_eq!(v["port"]["binding:host_id"], "");

    // Filters, fields, sorting, pagination.
    let (_, v) = h
        .call(
            Some(&m),
            "GET",
            "/v2.0/ports?name=p1&name=p2&fields=name&fields=id",
            None,
        )
        .await;
    let got = v["ports"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_object().unwrap().len(), 2);
    let (_, v) = h
        .call(
            Some(&m),
            "GET",
            "/v2.0/ports?device_owner=compute:nova&sort_key=name&sort_dir=desc",
            None,
        )
        .await;
    let names: Vec<&str> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["p2", "p1", "p0"]);
    let (_, v) = h
        .call(
            Some(&m),
            "GET",
            "/v2.0/ports?device_owner=compute:nova&limit=2",
            None,
        )
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    let next = v["ports_links"][0]["href"].as_str().unwrap();
    assert!(next.starts_with("http://cloud.example:8080/network/v2.0/ports?"));
    let marker = v["ports"][1]["id"].as_str().unwrap();
    let (_, v) = h
        .call(
            Some(&m),
            "GET",
            &format!("/v2.0/ports?device_owner=compute:nova&limit=2&marker={marker}"),
            None,
        )
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    assert_eq!(v["ports_links"][0]["rel"], "previous");
    let (_, v) = h
        .call(
            Some(&m),
            "GET",
            &format!("/v2.0/ports?fixed_ips=subnet_id%3D{sid}&device_owner=compute:nova"),
            None,
        )
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 3);
    let (s, _) = h
        .call(
            Some(&m),
            "GET",
            "/v2.0/ports?sort_key=name&sort_dir=sideways",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = h
        .call(Some(&m), "DELETE", &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "NetworkInUse");
    let (s, v) = h
        .call(Some(&m), "DELETE", &format!("/v2.0/subnets/{sid}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "SubnetInUse");
    for id in &ids {
        let (s, _) = h
            .call(Some(&m), "DELETE", &format!("/v2.0/ports/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, _) = h
        .call(Some(&m), "DELETE", &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn routers_floating_ips_groups_and_quotas_over_http() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let a = caller(ProjectId::new(), &["admin", "member", "reader"]);
    let (_, v) = h
        .call(
            Some(&a),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"name": "ext", "router:external": true,
            "provider:network_type": "flat", "provider:physical_network": "br-ext"}})),
        )
        .await;
    let ext = v["network"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["network"]["mtu"], 1500);
    h.call(
        Some(&a),
        "POST",
        "/v2.0/subnets",
        Some(json!({"subnet": {"network_id": ext, "ip_version": 4,
        "cidr": "172.24.4.0/24", "enable_dhcp": false}})),
    )
    .await;
    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"name": "n"}})),
        )
        .await;
    let nid = v["network"]["id"].as_str().unwrap().to_string();
    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/24"}})),
        )
        .await;
    let sid = v["subnet"]["id"].as_str().unwrap().to_string();
    // The member sees the external network, without provider attributes.
    let (_, v) = h
        .call(Some(&m), "GET", "/v2.0/networks?router:external=True", None)
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    assert!(v["networks"][0].get("provider:physical_network").is_none());

    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": nid}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["NeutronError"]["message"]
        .as_str()
        .unwrap()
        .contains("is not a valid external network"));

    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/routers",
            Some(json!({"router": {"name": "r", "external_gateway_info": {"network_id": ext}}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = &v["router"];
    assert_eq!(r["external_gateway_info"]["network_id"], ext.as_str());
    assert_eq!(r["external_gateway_info"]["enable_snat"], true);
    assert_eq!(
        r["external_gateway_info"]["external_fixed_ips"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rid = r["id"].as_str().unwrap().to_string();
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(json!({"subnet_id": sid})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["subnet_id"], sid.as_str());
    assert_eq!(v["id"], rid.as_str());
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(json!({"subnet_id": sid})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&v), "BadRequest");
    let (s, v) = h
        .call(Some(&m), "DELETE", &format!("/v2.0/routers/{rid}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "RouterInUse");

    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"port": {"network_id": nid}})),
        )
        .await;
    let port = v["port"]["id"].as_str().unwrap().to_string();
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": ext, "port_id": port}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["floatingip"]["status"], "ACTIVE");
    assert_eq!(v["floatingip"]["router_id"], rid.as_str());
    let fid = v["floatingip"]["id"].as_str().unwrap().to_string();
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &format!("/v2.0/floatingips/{fid}"),
            Some(json!({"floatingip": {"port_id": null}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["floatingip"]["port_id"], Value::Null);
    assert_eq!(v["floatingip"]["status"], "DOWN");

    // Security groups: the default group, duplicate rules.
    let (_, v) = h
        .call(Some(&m), "GET", "/v2.0/security-groups?name=default", None)
        .await;
    let g = &v["security_groups"][0];
    assert_eq!(g["security_group_rules"].as_array().unwrap().len(), 4);
    let gid = g["id"].as_str().unwrap().to_string();
    let rule = json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22}});
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/security-group-rules",
            Some(rule.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["security_group_rule"]["ethertype"], "IPv4");
    let (s, v) = h
        .call(Some(&m), "POST", "/v2.0/security-group-rules", Some(rule))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "SecurityGroupRuleExists");
    let (s, _) = h
        .call(
            Some(&m),
            "DELETE",
            &format!("/v2.0/security-groups/{gid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Quotas: defaults, admin-only update.
    let (s, v) = h
        .call(Some(&m), "GET", &format!("/v2.0/quotas/{p}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["quota"],
        json!({"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
        "security_group": 10, "security_group_rule": 100})
    );
    let (s, _) = h
        .call(
            Some(&m),
            "PUT",
            &format!("/v2.0/quotas/{p}"),
            Some(json!({"quota": {"router": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h
        .call(
            Some(&a),
            "PUT",
            &format!("/v2.0/quotas/{p}"),
            Some(json!({"quota": {"router": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["quota"]["router"], 1);
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/routers",
            Some(json!({"router": {"name": "r2"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "OverQuota");
}

#[tokio::test]
async fn bulk_creates_and_ip_substring_filters_over_http() {
    let h = harness().await;
    let m = caller(ProjectId::new(), &["member", "reader"]);
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Bare and wrapped items; the answer is the collection, in order.
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/networks",
            Some(json!({"networks": [{"name": "n1"}, {"network": {"name": "n2"}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(names(&v, "networks"), ["n1", "n2"]);
    let nid = v["networks"][0]["id"].as_str().unwrap().to_string();
    // A malformed item, or one the app refuses, fails the whole request.
    for (bad, status, kind) in [
        (
            json!({"networks": [{"name": "n3"}, {"name": "n4", "bogus": 1}]}),
            StatusCode::BAD_REQUEST,
            "HTTPBadRequest",
        ),
        (
            json!({"networks": [{"name": "n3"}, {"name": "n4", "shared": true}]}),
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
        ),
        (
            json!({"networks": []}),
            StatusCode::BAD_REQUEST,
            "HTTPBadRequest",
        ),
        (
            json!({"networks": [{"name": "n3"}, 7]}),
            StatusCode::BAD_REQUEST,
            "HTTPBadRequest",
        ),
    ] {
        let (s, v) = h.call(Some(&m), "POST", "/v2.0/networks", Some(bad)).await;
        assert_eq!((s, error_type(&v)), (status, kind), "{v}");
    }
    let (_, v) = h.call(Some(&m), "GET", "/v2.0/networks", None).await;
    assert_eq!(names(&v, "networks"), ["n1", "n2"]);

    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnets": [
                {"network_id": nid, "ip_version": 4, "cidr": "10.0.0.0/24", "name": "s4"},
                {"network_id": nid, "ip_version": 6, "cidr": "2001:db8::/64", "name": "s6"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(names(&v, "subnets"), ["s4", "s6"]);
    assert_eq!(v["subnets"][0]["router:external"], false);
    let sid = v["subnets"][0]["id"].as_str().unwrap().to_string();

    let fixed = |a: &str| json!([{"subnet_id": sid, "ip_address": a}]);
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"ports": [
                {"network_id": nid, "name": "a", "fixed_ips": fixed("10.0.0.19")},
                {"network_id": nid, "name": "b", "fixed_ips": fixed("10.0.0.19")}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_type(&v), "IpAddressAlreadyAllocated");
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"ports": [
                {"network_id": nid, "name": "a", "fixed_ips": fixed("10.0.0.19")},
                {"network_id": nid, "name": "b", "fixed_ips": fixed("10.0.0.21")},
                {"network_id": nid, "name": "c", "fixed_ips": fixed("10.0.0.119")}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(names(&v, "ports"), ["a", "b", "c"]);

    // `ip_address_substr` matches part of an address; values of one field
    // OR, different fields AND.
    let list = |q: String| {
        let h = &h;
        let m = &m;
        async move {
            let (s, v) = h
                .call(Some(m), "GET", &format!("/v2.0/ports?{q}"), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let mut n = names(&v, "ports");
            n.sort();
            n
        }
    };
    assert_eq!(
        list("fixed_ips=ip_address_substr%3D0.0.1".into()).await,
        ["a", "c"]
    );
    assert_eq!(
        list("fixed_ips=ip_address_substr%3D19&fixed_ips=ip_address_substr%3D.21".into()).await,
        ["a", "b", "c"]
    );
    assert_eq!(
        list(format!(
            "fixed_ips=ip_address_substr%3D0.0.1&fixed_ips=ip_address%3D10.0.0.119&fixed_ips=subnet_id%3D{sid}"
        ))
        .await,
        ["c"]
    );

    let (_, v) = h.call(Some(&m), "GET", "/v2.0/extensions", None).await;
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"ip-substring-filtering"));
    assert!(aliases.contains(&"subnet-external-network"));
}

/// What Tempest's tier-2 network tests see: an external network goes with
/// its unassociated floating IPs, SLAAC ports carry their EUI-64 address,
/// a router refuses overlapping subnets, and `default` stays the default
/// group's name.
#[tokio::test]
async fn neutron_rules_tempest_checks_over_http() {
    let h = harness().await;
    let m = caller(ProjectId::new(), &["member", "reader"]);
    let a = caller(ProjectId::new(), &["admin", "member", "reader"]);
    let id = |v: &Value, kind: &str| v[kind]["id"].as_str().unwrap().to_string();

    // External network with a floating IP: deleted together.
    let (_, v) = h
        .call(
            Some(&a),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"router:external": true}})),
        )
        .await;
    let ext = id(&v, "network");
    let (s, v) = h
        .call(
            Some(&a),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnet": {"network_id": ext, "ip_version": 4,
            "cidr": "172.25.0.0/24", "enable_dhcp": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .call(
            Some(&a),
            "POST",
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": ext}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let fip = id(&v, "floatingip");
    let (s, v) = h
        .call(Some(&a), "DELETE", &format!("/v2.0/networks/{ext}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = h
        .call(Some(&a), "GET", &format!("/v2.0/floatingips/{fip}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A SLAAC subnet: the port's address is its EUI-64 one.
    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/networks",
            Some(json!({"network": {"name": "v6"}})),
        )
        .await;
    let n6 = id(&v, "network");
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/subnets",
            Some(json!({"subnet": {"network_id": n6, "ip_version": 6,
            "cidr": "2001:db8::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let slaac = id(&v, "subnet");
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"port": {"network_id": n6, "mac_address": "fa:16:3e:b5:68:45"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["port"]["fixed_ips"],
        json!([{"subnet_id": slaac, "ip_address": "2001:db8::f816:3eff:feb5:6845"}])
    );
    let (s, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/ports",
            Some(json!({"port": {"network_id": n6,
            "fixed_ips": [{"subnet_id": slaac, "ip_address": "2001:db8::10"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(error_type(&v), "AllocationOnAutoAddressSubnet");

    // Two networks with the same CIDR on one router.
    let mut subnets = Vec::new();
    for _ in 0..2 {
        let (_, v) = h
            .call(
                Some(&m),
                "POST",
                "/v2.0/networks",
                Some(json!({"network": {"name": "n"}})),
            )
            .await;
        let nid = id(&v, "network");
        let (_, v) = h
            .call(
                Some(&m),
                "POST",
                "/v2.0/subnets",
                Some(json!({"subnet": {"network_id": nid, "ip_version": 4,
                "cidr": "10.100.0.0/28"}})),
            )
            .await;
        subnets.push(id(&v, "subnet"));
    }
    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/routers",
            Some(json!({"router": {"name": "r"}})),
        )
        .await;
    let rid = id(&v, "router");
    let add = format!("/v2.0/routers/{rid}/add_router_interface");
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &add,
            Some(json!({"subnet_id": subnets[0]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &add,
            Some(json!({"subnet_id": subnets[1]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(error_type(&v), "BadRequest");
    assert_eq!(
        v["NeutronError"]["message"],
        format!(
            "Bad router request: Cidr 10.100.0.0/28 of subnet {} overlaps with cidr 10.100.0.0/28 of subnet {}.",
            subnets[1], subnets[0]
        )
    );

    // Renaming a group to `default`.
    let (_, v) = h
        .call(
            Some(&m),
            "POST",
            "/v2.0/security-groups",
            Some(json!({"security_group": {"name": "web"}})),
        )
        .await;
    let sg = id(&v, "security_group");
    let (s, v) = h
        .call(
            Some(&m),
            "PUT",
            &format!("/v2.0/security-groups/{sg}"),
            Some(json!({"security_group": {"name": "default"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(error_type(&v), "SecurityGroupDefaultAlreadyExists");
    assert_eq!(
        v["NeutronError"]["message"],
        "Default security group already exists."
    );
}
