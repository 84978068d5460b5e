//! Nova's network proxy APIs over HTTP, through the whole router, on the
//! engine under test: os-security-groups, os-security-group-rules, a
//! server's groups and the add/removeSecurityGroup actions, os-floating-ips,
//! os-floating-ip-pools and the add/removeFloatingIp actions, os-networks
//! and os-tenant-networks; their microversion cut-offs (2.36, 2.44) and
//! their error codes. Servers are records in the store with a port on a
//! network: no host is involved.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use oxistack_api::AppState;
use oxistack_model::config::Settings;
use oxistack_model::server_state::{PowerState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AuthContext, ProjectId, ServerId, UserId};
use oxistack_store::compute::{ComputeUsage, Flavor, Server};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    _db: TestDb,
    _dir: tempfile::TempDir,
    store: Store,
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
        settings,
        dir.path().to_path_buf(),
        bus,
        Vec::new(),
    );
    Harness {
        _db: db,
        _dir: dir,
        store,
        app: oxistack_api::router(state),
    }
}

fn caller(project: ProjectId, roles: &[&str]) -> AuthContext {
    let now = now();
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
    /// A request to `path` (under `/compute/v2.1` unless it starts with
    /// `/network`), at compute microversion `version`.
    async fn call_at(
        &self,
        who: Option<&AuthContext>,
        version: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let uri = if path.starts_with("/network") {
            path.to_string()
        } else {
            format!("/compute/v2.1{path}")
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("openstack-api-version", format!("compute {version}"));
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

    /// At 2.1, where every proxy API is served.
    async fn call(
        &self,
        who: &AuthContext,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_at(Some(who), "2.1", method, path, body).await
    }

    /// A call that must succeed with `want`; answers its body.
    async fn ok(
        &self,
        who: &AuthContext,
        want: StatusCode,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (s, v) = self.call(who, method, path, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// A server of `who`'s project, with no port yet.
    async fn server(&self, who: &AuthContext) -> ServerId {
        let id = ServerId::new();
        let t = now();
        let s = Server {
            id,
            project_id: who.project_id.unwrap(),
            user_id: who.user_id,
            name: "vm".into(),
            hostname: "vm".into(),
            description: None,
            image_id: "img".into(),
            flavor: Flavor {
                id: "1".into(),
                name: "m1.tiny".into(),
                vcpus: 1,
                ram_mb: 64,
                disk_gb: 1,
                ephemeral_gb: 0,
                swap_mb: 0,
                rxtx_factor: 1.0,
                is_public: true,
                disabled: false,
                description: None,
                extra_specs: BTreeMap::new(),
            },
            key_name: None,
            key_data: None,
            user_data: None,
            config_drive: false,
            requested_networks: json!("none"),
            availability_zone: Some("nova".into()),
            host: Some("host-a".into()),
            node: Some("host-a".into()),
            vm_state: VmState::Active,
            task_state: None,
            power_state: PowerState::Running,
            access_ipv4: String::new(),
            access_ipv6: String::new(),
            reservation_id: "r-1".into(),
            launch_index: 0,
            locked: false,
            generation: 1,
            launched_at: Some(t),
            terminated_at: None,
            created_at: t,
            updated_at: t,
            deleted: false,
            metadata: BTreeMap::new(),
            tags: vec![],
            fault: None,
        };
        let unlimited = ComputeUsage {
            instances: -1,
            cores: -1,
            ram_mb: -1,
        };
        self.store.servers_create(&[s], unlimited).await.unwrap();
        id
    }

    /// A port of `server` on `network`; answers its fixed IP.
    async fn plug(&self, who: &AuthContext, server: &ServerId, network: &str) -> String {
        let v = self
            .ok(
                who,
                StatusCode::CREATED,
                "POST",
                "/network/v2.0/ports",
                Some(
                    json!({"port": {"network_id": network, "device_id": server.to_string(),
                    "device_owner": "compute:nova"}}),
                ),
            )
            .await;
        v["port"]["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A network with a subnet in `who`'s project; answers (network, subnet).
    async fn network(&self, who: &AuthContext, name: &str, cidr: &str) -> (String, String) {
        let v = self
            .ok(
                who,
                StatusCode::CREATED,
                "POST",
                "/network/v2.0/networks",
                Some(json!({"network": {"name": name}})),
            )
            .await;
        let net = v["network"]["id"].as_str().unwrap().to_string();
        let v = self
            .ok(
                who,
                StatusCode::CREATED,
                "POST",
                "/network/v2.0/subnets",
                Some(json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": cidr}})),
            )
            .await;
        (net, v["subnet"]["id"].as_str().unwrap().to_string())
    }
}

fn message(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn security_groups_and_rules() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let other = caller(ProjectId::new(), &["member", "reader"]);
    let admin = caller(ProjectId::new(), &["admin", "member", "reader"]);

    let (s, _) = h
        .call_at(None, "2.1", "GET", "/os-security-groups", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The project's default group is there from the first listing, with its
    // ingress rules from its own members (IPv4 and IPv6).
    let v = h
        .ok(&m, StatusCode::OK, "GET", "/os-security-groups", None)
        .await;
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], "default");
    assert_eq!(groups[0]["tenant_id"], p.to_string());
    let default_id = groups[0]["id"].as_str().unwrap().to_string();
    for r in groups[0]["rules"].as_array().unwrap() {
        assert_eq!(
            r["group"],
            json!({"name": "default", "tenant_id": p.to_string()})
        );
        assert_eq!(r["ip_range"], json!({}));
        assert_eq!(r["parent_group_id"], default_id.as_str());
    }

    // Create keeps the name as given; show answers the same group.
    let sg = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-security-groups",
            Some(json!({"security_group": {"name": " web ", "description": "d"}})),
        )
        .await["security_group"]
        .clone();
    assert_eq!(sg["name"], " web ");
    assert_eq!(sg["description"], "d");
    assert_eq!(sg["rules"], json!([]), "egress rules are not Nova's");
    let sg_id = sg["id"].as_str().unwrap().to_string();
    let shown = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-security-groups/{sg_id}"),
            None,
        )
        .await;
    assert_eq!(shown["security_group"], sg);
    for bad in [
        json!({"security_group": {"name": "x"}}),
        json!({"security_group": {"description": "x"}}),
        json!({"security_group": {"name": "x".repeat(256), "description": ""}}),
        json!({"group": {}}),
    ] {
        let (s, v) = h
            .call(&m, "POST", "/os-security-groups", Some(bad.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["badRequest"]["message"].is_string(), "{v}");
    }
    // `default` is Neutron's own name: Nova answers its 409 with a 403.
    let (s, _) = h
        .call(
            &m,
            "POST",
            "/os-security-groups",
            Some(json!({"security_group": {"name": "default", "description": ""}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "PUT",
            &format!("/os-security-groups/{sg_id}"),
            Some(json!({"security_group": {"name": "web2", "description": "d2"}})),
        )
        .await;
    assert_eq!(v["security_group"]["name"], "web2");
    assert_eq!(v["security_group"]["description"], "d2");
    let (s, _) = h
        .call(
            &m,
            "PUT",
            &format!("/os-security-groups/{sg_id}"),
            Some(json!({"security_group": {"name": "web3"}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Rules: a port range from anywhere, a CIDR shown as given, a group.
    let rule = |body: Value| json!({"security_group_rule": body});
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-security-group-rules",
            Some(rule(json!({"parent_group_id": sg_id, "ip_protocol": "tcp",
                "from_port": 22, "to_port": 22}))),
        )
        .await;
    let r = &v["security_group_rule"];
    assert_eq!(r["parent_group_id"], sg_id.as_str());
    assert_eq!(r["ip_protocol"], "tcp");
    assert_eq!(
        (r["from_port"].as_i64(), r["to_port"].as_i64()),
        (Some(22), Some(22))
    );
    assert_eq!(r["ip_range"], json!({"cidr": "0.0.0.0/0"}));
    assert_eq!(r["group"], json!({}));
    let r22 = r["id"].as_str().unwrap().to_string();
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-security-group-rules",
            Some(rule(json!({"parent_group_id": sg_id, "ip_protocol": "udp",
                "from_port": "53", "to_port": "53", "cidr": "10.2.3.124/24"}))),
        )
        .await;
    assert_eq!(
        v["security_group_rule"]["ip_range"],
        json!({"cidr": "10.2.3.124/24"})
    );
    assert_eq!(v["security_group_rule"]["from_port"], 53);
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-security-group-rules",
            Some(rule(
                json!({"parent_group_id": sg_id, "ip_protocol": "icmp",
                "from_port": -1, "to_port": -1, "group_id": default_id}),
            )),
        )
        .await;
    let r = &v["security_group_rule"];
    assert_eq!(
        r["group"],
        json!({"name": "default", "tenant_id": p.to_string()})
    );
    assert_eq!(r["ip_range"], json!({}));
    assert_eq!(
        (r["from_port"].as_i64(), r["to_port"].as_i64()),
        (Some(-1), Some(-1))
    );
    let shown = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-security-groups/{sg_id}"),
            None,
        )
        .await;
    assert_eq!(
        shown["security_group"]["rules"].as_array().unwrap().len(),
        3
    );

    // Bad rules are 400s; an unknown group a 404.
    for (bad, want) in [
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 22, "to_port": 22}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 22, "to_port": 21}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 70000, "to_port": 22}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 22, "to_port": 70000}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tempest-999", "from_port": 22, "to_port": 22}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 1, "to_port": 2,
                "cidr": "10.0.0.1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 1, "to_port": 2,
                "cidr": "10.0.0.0/0"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"parent_group_id": sg_id}), StatusCode::BAD_REQUEST),
        (
            json!({"parent_group_id": "tempest-non_int_id", "ip_protocol": "tcp"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parent_group_id": ProjectId::new().to_string(), "ip_protocol": "tcp",
                "from_port": 22, "to_port": 22}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"parent_group_id": sg_id, "ip_protocol": "tcp", "from_port": 80, "to_port": 80,
                "group_id": ProjectId::new().to_string()}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, v) = h
            .call(
                &m,
                "POST",
                "/os-security-group-rules",
                Some(rule(bad.clone())),
            )
            .await;
        assert_eq!(s, want, "{bad}: {v}");
    }
    let dup = h
        .call(
            &m,
            "POST",
            "/os-security-group-rules",
            Some(rule(json!({"parent_group_id": sg_id, "ip_protocol": "tcp",
                "from_port": 22, "to_port": 22}))),
        )
        .await;
    assert!(message(&dup.1).contains("already exists"), "{}", dup.1);

    // Another project sees none of it.
    let (s, _) = h
        .call(&other, "GET", &format!("/os-security-groups/{sg_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            &other,
            "DELETE",
            &format!("/os-security-group-rules/{r22}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Rules are deleted (202), once.
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "DELETE",
        &format!("/os-security-group-rules/{r22}"),
        None,
    )
    .await;
    for (id, want) in [
        (r22.as_str(), StatusCode::NOT_FOUND),
        ("not-a-uuid", StatusCode::BAD_REQUEST),
    ] {
        let (s, _) = h
            .call(
                &m,
                "DELETE",
                &format!("/os-security-group-rules/{id}"),
                None,
            )
            .await;
        assert_eq!(s, want, "{id}");
    }

    // Listing: the caller's project; an admin's `all_tenants` widens it,
    // a member's does not.
    let mine = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            "/os-security-groups?all_tenants=1",
            None,
        )
        .await;
    assert_eq!(ids(&mine, "security_groups").len(), 2, "{mine}");
    let v = h
        .ok(&admin, StatusCode::OK, "GET", "/os-security-groups", None)
        .await;
    assert!(!ids(&v, "security_groups").contains(&sg_id));
    let v = h
        .ok(
            &admin,
            StatusCode::OK,
            "GET",
            "/os-security-groups?all_tenants=true",
            None,
        )
        .await;
    assert!(ids(&v, "security_groups").contains(&sg_id));
    let names: Vec<(String, String)> = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["tenant_id"].as_str().unwrap().to_string(),
                g["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by project, then name");
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            "/os-security-groups?limit=1&offset=1",
            None,
        )
        .await;
    assert_eq!(ids(&v, "security_groups").len(), 1);

    // Deleting: the default group and unknown groups are refused.
    for (id, want) in [
        (default_id.clone(), StatusCode::BAD_REQUEST),
        (ProjectId::new().to_string(), StatusCode::NOT_FOUND),
        ("not-a-uuid".to_string(), StatusCode::BAD_REQUEST),
    ] {
        let (s, _) = h
            .call(&m, "DELETE", &format!("/os-security-groups/{id}"), None)
            .await;
        assert_eq!(s, want, "{id}");
    }
    let (s, _) = h.call(&m, "DELETE", "/os-security-groups/", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(&m, "GET", "/os-security-groups/not-a-uuid", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "DELETE",
        &format!("/os-security-groups/{sg_id}"),
        None,
    )
    .await;
    let (s, _) = h
        .call(&m, "GET", &format!("/os-security-groups/{sg_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // From 2.36 the proxy is gone: 404 as for a missing route.
    for (method, path, body) in [
        ("GET", "/os-security-groups".to_string(), None),
        ("GET", format!("/os-security-groups/{default_id}"), None),
        (
            "POST",
            "/os-security-groups".to_string(),
            Some(json!({"security_group": {"name": "n", "description": ""}})),
        ),
        (
            "POST",
            "/os-security-group-rules".to_string(),
            Some(rule(
                json!({"parent_group_id": default_id, "ip_protocol": "tcp",
                "from_port": 1, "to_port": 1}),
            )),
        ),
    ] {
        let (s, v) = h.call_at(Some(&m), "2.36", method, &path, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            v["itemNotFound"]["message"],
            "The resource could not be found."
        );
    }
    let (s, _) = h
        .call_at(Some(&m), "2.35", "GET", "/os-security-groups", None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn security_groups_of_a_server() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let other = caller(ProjectId::new(), &["member", "reader"]);
    let (net, _) = h.network(&m, "net", "10.0.0.0/24").await;
    let vm = h.server(&m).await;
    h.plug(&m, &vm, &net).await;
    h.plug(&m, &vm, &net).await;
    let sg = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-security-groups",
            Some(json!({"security_group": {"name": "web", "description": ""}})),
        )
        .await["security_group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let groups_of = |v: &Value| -> Vec<String> {
        v["security_groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    let path = format!("/servers/{vm}/os-security-groups");
    let v = h.ok(&m, StatusCode::OK, "GET", &path, None).await;
    assert_eq!(groups_of(&v), vec!["default"], "each group once: {v}");

    // By name, at any microversion (the actions outlived the proxy).
    let action = format!("/servers/{vm}/action");
    let (s, v) = h
        .call_at(
            Some(&m),
            "2.47",
            "POST",
            &action,
            Some(json!({"addSecurityGroup": {"name": "web"}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = h.ok(&m, StatusCode::OK, "GET", &path, None).await;
    assert_eq!(groups_of(&v), vec!["default", "web"]);
    // The server's own view names its ports' groups, each once.
    let v = h
        .ok(&m, StatusCode::OK, "GET", &format!("/servers/{vm}"), None)
        .await;
    assert_eq!(groups_of(&v["server"]), vec!["default", "web"], "{v}");
    // Adding it again changes nothing; by id works too.
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"addSecurityGroup": {"name": sg}})),
    )
    .await;
    let ports = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/network/v2.0/ports?device_id={vm}"),
            None,
        )
        .await;
    for port in ports["ports"].as_array().unwrap() {
        assert_eq!(
            port["security_groups"].as_array().unwrap().len(),
            2,
            "{port}"
        );
    }
    // A group in use cannot be deleted (Nova's 400).
    let (s, _) = h
        .call(&m, "DELETE", &format!("/os-security-groups/{sg}"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    for (body, want) in [
        (
            json!({"addSecurityGroup": {"name": "nope"}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"addSecurityGroup": {"name": ""}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"addSecurityGroup": {"name": " "}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"addSecurityGroup": {}}), StatusCode::BAD_REQUEST),
        (json!({"addSecurityGroup": null}), StatusCode::BAD_REQUEST),
        (
            json!({"removeSecurityGroup": {"name": "nope"}}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, v) = h.call(&m, "POST", &action, Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }
    // Another project's caller cannot see the server.
    let (s, _) = h.call(&other, "GET", &path, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            &other,
            "POST",
            &action,
            Some(json!({"addSecurityGroup": {"name": "default"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            &m,
            "GET",
            &format!("/servers/{}/os-security-groups", ServerId::new()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"removeSecurityGroup": {"name": "web"}})),
    )
    .await;
    let v = h.ok(&m, StatusCode::OK, "GET", &path, None).await;
    assert_eq!(groups_of(&v), vec!["default"]);
    let (s, v) = h
        .call(
            &m,
            "POST",
            &action,
            Some(json!({"removeSecurityGroup": {"name": "web"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(message(&v).contains("not associated"), "{v}");
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "DELETE",
        &format!("/os-security-groups/{sg}"),
        None,
    )
    .await;

    // A server without ports has no port to put a group on.
    let bare = h.server(&m).await;
    let (s, _) = h
        .call(
            &m,
            "POST",
            &format!("/servers/{bare}/action"),
            Some(json!({"addSecurityGroup": {"name": "default"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/servers/{bare}/os-security-groups"),
            None,
        )
        .await;
    assert_eq!(v["security_groups"], json!([]));

    // Show and detail: a server without ports has no `security_groups`,
    // as Nova leaves the key out; each listed server has its own groups.
    let v = h
        .ok(&m, StatusCode::OK, "GET", &format!("/servers/{bare}"), None)
        .await;
    assert!(v["server"].get("security_groups").is_none(), "{v}");
    assert_eq!(v["server"]["addresses"], json!({}));
    let vm2 = h.server(&m).await;
    h.plug(&m, &vm2, &net).await;
    h.ok(
        &m,
        StatusCode::OK,
        "POST",
        "/os-security-groups",
        Some(json!({"security_group": {"name": "db", "description": ""}})),
    )
    .await;
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &format!("/servers/{vm2}/action"),
        Some(json!({"addSecurityGroup": {"name": "db"}})),
    )
    .await;
    let v = h
        .ok(&m, StatusCode::OK, "GET", "/servers/detail", None)
        .await;
    let listed = v["servers"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{v}");
    for s in listed {
        let id = s["id"].as_str().unwrap();
        if id == bare.to_string() {
            assert!(s.get("security_groups").is_none(), "{s}");
        } else if id == vm.to_string() {
            assert_eq!(groups_of(s), vec!["default"], "{s}");
        } else {
            assert_eq!(id, vm2.to_string());
            assert_eq!(groups_of(s), vec!["db", "default"], "{s}");
        }
    }
}

#[tokio::test]
async fn fixed_ips_are_added_to_and_removed_from_a_servers_port() {
    let h = harness().await;
    let m = caller(ProjectId::new(), &["member", "reader"]);
    let other = caller(ProjectId::new(), &["member", "reader"]);
    let (net, _) = h.network(&m, "net", "10.0.0.0/24").await;
    let (elsewhere, _) = h.network(&m, "net2", "10.9.0.0/24").await;
    let vm = h.server(&m).await;
    let first_ip = h.plug(&m, &vm, &net).await;
    let ports = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/network/v2.0/ports?device_id={vm}"),
            None,
        )
        .await;
    let port = ports["ports"][0]["id"].as_str().unwrap().to_string();
    let action = format!("/servers/{vm}/action");
    let addrs = |v: &Value| -> Vec<String> {
        v["port"]["fixed_ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["ip_address"].as_str().unwrap().to_string())
            .collect()
    };
    let port_of = || async {
        h.ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/network/v2.0/ports/{port}"),
            None,
        )
        .await
    };
    let before = addrs(&port_of().await);
    assert_eq!(before, vec![first_ip]);

    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"addFixedIp": {"networkId": net}})),
    )
    .await;
    let after = addrs(&port_of().await);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&before[0]), "{after:?}");
    let added = after.iter().find(|a| **a != before[0]).unwrap().clone();
    assert!(added.starts_with("10.0.0."), "{added}");

    // A network the server is not on; an address it does not hold; bad bodies.
    for (body, want) in [
        (
            json!({"addFixedIp": {"networkId": elsewhere}}),
            "could not be found for instance",
        ),
        (
            json!({"removeFixedIp": {"address": "10.0.0.250"}}),
            "doesn't have fixed IP",
        ),
        (
            json!({"addFixedIp": {}}),
            "'networkId' is a required property",
        ),
        (
            json!({"removeFixedIp": {"address": "nope"}}),
            "is not a 'ipv4' or 'ipv6'",
        ),
    ] {
        let v = h
            .ok(&m, StatusCode::BAD_REQUEST, "POST", &action, Some(body))
            .await;
        assert!(message(&v).contains(want), "{v}");
    }
    // Another project's server is not found; from 2.44 the actions are gone.
    h.ok(
        &other,
        StatusCode::NOT_FOUND,
        "POST",
        &action,
        Some(json!({"addFixedIp": {"networkId": net}})),
    )
    .await;
    let (s, v) = h
        .call_at(
            Some(&m),
            "2.44",
            "POST",
            &action,
            Some(json!({"removeFixedIp": {"address": added}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"removeFixedIp": {"address": added}})),
    )
    .await;
    assert_eq!(addrs(&port_of().await), before);
}

#[tokio::test]
async fn floating_ips_pools_and_their_actions() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let other = caller(ProjectId::new(), &["member", "reader"]);
    let admin = caller(ProjectId::new(), &["admin", "member", "reader"]);
    let v = h
        .ok(
            &admin,
            StatusCode::CREATED,
            "POST",
            "/network/v2.0/networks",
            Some(
                json!({"network": {"name": "public", "router:external": true,
                "provider:network_type": "flat", "provider:physical_network": "br-ex"}}),
            ),
        )
        .await;
    let public = v["network"]["id"].as_str().unwrap().to_string();
    h.ok(
        &admin,
        StatusCode::CREATED,
        "POST",
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": public, "ip_version": 4,
            "cidr": "172.24.4.0/24", "enable_dhcp": false}})),
    )
    .await;
    let (net, subnet) = h.network(&m, "private", "10.0.0.0/24").await;
    let v = h
        .ok(
            &m,
            StatusCode::CREATED,
            "POST",
            "/network/v2.0/routers",
            Some(json!({"router": {"name": "r", "external_gateway_info": {"network_id": public}}})),
        )
        .await;
    let router = v["router"]["id"].as_str().unwrap().to_string();
    h.ok(
        &m,
        StatusCode::OK,
        "PUT",
        &format!("/network/v2.0/routers/{router}/add_router_interface"),
        Some(json!({"subnet_id": subnet})),
    )
    .await;
    let vm = h.server(&m).await;
    let vm_ip = h.plug(&m, &vm, &net).await;
    let vm2 = h.server(&m).await;
    h.plug(&m, &vm2, &net).await;

    let v = h
        .ok(&m, StatusCode::OK, "GET", "/os-floating-ip-pools", None)
        .await;
    assert_eq!(v, json!({"floating_ip_pools": [{"name": "public"}]}));

    // Allocate from the pool by name, by id, and by default (`public`).
    let f = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-floating-ips",
            Some(json!({"pool": "public"})),
        )
        .await["floating_ip"]
        .clone();
    assert_eq!(f["pool"], "public");
    assert_eq!(f["instance_id"], Value::Null);
    assert_eq!(f["fixed_ip"], Value::Null);
    let fid = f["id"].as_str().unwrap().to_string();
    let fip = f["ip"].as_str().unwrap().to_string();
    assert!(fip.starts_with("172.24.4."), "{f}");
    let f2 = h
        .ok(
            &m,
            StatusCode::OK,
            "POST",
            "/os-floating-ips",
            Some(json!({"pool": public})),
        )
        .await["floating_ip"]
        .clone();
    let fip2 = f2["ip"].as_str().unwrap().to_string();
    let (s, v) = h.call(&m, "POST", "/os-floating-ips", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let f3 = v["floating_ip"]["id"].as_str().unwrap().to_string();
    for (body, want) in [
        (json!({"pool": "non_exist_pool"}), StatusCode::NOT_FOUND),
        (json!({"pool": net}), StatusCode::NOT_FOUND),
        (json!({"pool": 5}), StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = h
            .call(&m, "POST", "/os-floating-ips", Some(body.clone()))
            .await;
        assert_eq!(s, want, "{body}: {v}");
    }
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-floating-ips/{fid}"),
            None,
        )
        .await;
    assert_eq!(v["floating_ip"], f);
    let v = h
        .ok(&m, StatusCode::OK, "GET", "/os-floating-ips", None)
        .await;
    assert_eq!(v["floating_ips"].as_array().unwrap().len(), 3);
    assert!(v["floating_ips"].as_array().unwrap().contains(&f));
    let v = h
        .ok(&other, StatusCode::OK, "GET", "/os-floating-ips", None)
        .await;
    assert_eq!(v["floating_ips"], json!([]));
    for id in [ServerId::new().to_string(), "x".into()] {
        let (s, v) = h
            .call(&m, "GET", &format!("/os-floating-ips/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(message(&v), format!("Floating IP not found for ID {id}"));
    }
    let (s, _) = h
        .call(&other, "GET", &format!("/os-floating-ips/{fid}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Associate: the server's IPv4 address by default; the instance shows.
    let action = format!("/servers/{vm}/action");
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"addFloatingIp": {"address": fip}})),
    )
    .await;
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-floating-ips/{fid}"),
            None,
        )
        .await;
    assert_eq!(v["floating_ip"]["instance_id"], vm.to_string());
    assert_eq!(v["floating_ip"]["fixed_ip"], vm_ip.as_str());
    for (body, want) in [
        // A second floating IP for the same fixed IP.
        (
            json!({"addFloatingIp": {"address": fip2}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"addFloatingIp": {"address": fip2, "fixed_address": "10.9.9.9"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"addFloatingIp": {"address": "0.0.0.0"}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"addFloatingIp": {"address": ""}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"addFloatingIp": {}}), StatusCode::BAD_REQUEST),
        (
            json!({"removeFloatingIp": {"address": "0.0.0.0"}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"removeFloatingIp": {"address": fip2}}),
            StatusCode::CONFLICT,
        ),
    ] {
        let (s, v) = h.call(&m, "POST", &action, Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }
    // Another project cannot touch the server.
    let (s, _) = h
        .call(
            &other,
            "POST",
            &action,
            Some(json!({"removeFloatingIp": {"address": fip}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Moving it to another server leaves the first without it.
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &format!("/servers/{vm2}/action"),
        Some(json!({"addFloatingIp": {"address": fip}})),
    )
    .await;
    let (s, v) = h
        .call(
            &m,
            "POST",
            &action,
            Some(json!({"removeFloatingIp": {"address": fip}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &format!("/servers/{vm2}/action"),
        Some(json!({"removeFloatingIp": {"address": fip}})),
    )
    .await;
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-floating-ips/{fid}"),
            None,
        )
        .await;
    assert_eq!(v["floating_ip"]["instance_id"], Value::Null);
    assert_eq!(v["floating_ip"]["fixed_ip"], Value::Null);

    // Explicit fixed address; then the actions are gone at 2.44.
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"addFloatingIp": {"address": fip, "fixed_address": vm_ip}})),
    )
    .await;
    let (s, _) = h
        .call_at(
            Some(&m),
            "2.44",
            "POST",
            &action,
            Some(json!({"removeFloatingIp": {"address": fip}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call_at(
            Some(&m),
            "2.43",
            "POST",
            &action,
            Some(json!({"removeFloatingIp": {"address": fip}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // A server with no port has no address to map.
    let bare = h.server(&m).await;
    let (s, v) = h
        .call(
            &m,
            "POST",
            &format!("/servers/{bare}/action"),
            Some(json!({"addFloatingIp": {"address": fip}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message(&v), "Instance network is not ready yet");

    // Release (202), mapped or not; then it is gone.
    h.ok(
        &m,
        StatusCode::ACCEPTED,
        "POST",
        &action,
        Some(json!({"addFloatingIp": {"address": fip}})),
    )
    .await;
    for id in [&fid, &f3] {
        h.ok(
            &m,
            StatusCode::ACCEPTED,
            "DELETE",
            &format!("/os-floating-ips/{id}"),
            None,
        )
        .await;
        let (s, _) = h
            .call(&m, "DELETE", &format!("/os-floating-ips/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/network/v2.0/floatingips/{}", f2["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(v["floatingip"]["floating_ip_address"], fip2.as_str());

    for (method, path) in [
        ("GET", "/os-floating-ips".to_string()),
        (
            "GET",
            format!("/os-floating-ips/{}", f2["id"].as_str().unwrap()),
        ),
        ("GET", "/os-floating-ip-pools".to_string()),
        ("POST", "/os-floating-ips".to_string()),
        (
            "DELETE",
            format!("/os-floating-ips/{}", f2["id"].as_str().unwrap()),
        ),
    ] {
        let (s, _) = h.call_at(Some(&m), "2.36", method, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn networks_and_tenant_networks() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let other = caller(ProjectId::new(), &["member", "reader"]);
    let admin = caller(ProjectId::new(), &["admin", "member", "reader"]);
    let (net, _) = h.network(&m, "mine", "10.0.0.0/24").await;
    h.network(&other, "theirs", "10.1.0.0/24").await;

    let v = h.ok(&m, StatusCode::OK, "GET", "/os-networks", None).await;
    let list = v["networks"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["id"], net.as_str());
    assert_eq!(list[0]["label"], "mine");
    assert_eq!(list[0]["cidr"], Value::Null);
    assert!(list[0].get("project_id").is_none(), "admin-only field");
    let v = h
        .ok(&admin, StatusCode::OK, "GET", "/os-networks", None)
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    assert!(v["networks"][0].get("project_id").is_some());
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-networks/{net}"),
            None,
        )
        .await;
    assert_eq!(v["network"]["label"], "mine");

    let v = h
        .ok(&m, StatusCode::OK, "GET", "/os-tenant-networks", None)
        .await;
    assert_eq!(
        v,
        json!({"networks": [{"id": net, "cidr": "None", "label": "mine"}]})
    );
    let v = h
        .ok(
            &m,
            StatusCode::OK,
            "GET",
            &format!("/os-tenant-networks/{net}"),
            None,
        )
        .await;
    assert_eq!(v["network"]["id"], net.as_str());

    for path in ["/os-networks", "/os-tenant-networks"] {
        for id in [ServerId::new().to_string(), "x".to_string()] {
            let (s, v) = h.call(&other, "GET", &format!("{path}/{id}"), None).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            assert_eq!(message(&v), "Network not found");
        }
        let (s, _) = h.call(&other, "GET", &format!("{path}/{net}"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "another project's network");
        let (s, _) = h.call_at(Some(&m), "2.36", "GET", path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = h
            .call_at(Some(&m), "2.36", "GET", &format!("{path}/{net}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    // nova-network's writes are gone, at every version.
    for version in ["2.1", "2.47"] {
        for (method, path, body) in [
            (
                "POST",
                "/os-networks".to_string(),
                Some(json!({"network": {"label": "x"}})),
            ),
            (
                "POST",
                "/os-networks/add".to_string(),
                Some(json!({"id": net})),
            ),
            ("DELETE", format!("/os-networks/{net}"), None),
            (
                "POST",
                format!("/os-networks/{net}/action"),
                Some(json!({"disassociate": null})),
            ),
            (
                "POST",
                "/os-tenant-networks".to_string(),
                Some(json!({"network": {"label": "x"}})),
            ),
            ("DELETE", format!("/os-tenant-networks/{net}"), None),
        ] {
            let (s, v) = h.call_at(Some(&admin), version, method, &path, body).await;
            assert_eq!(s, StatusCode::GONE, "{version} {method} {path}");
            assert_eq!(v["computeFault"]["code"], 410, "{v}");
        }
    }
    let (s, _) = h
        .call_at(None, "2.1", "DELETE", &format!("/os-networks/{net}"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .call(
            &admin,
            "POST",
            &format!("/os-networks/{net}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn credentials_are_required_and_readers_only_look() {
    let h = harness().await;
    let p = ProjectId::new();
    let m = caller(p, &["member", "reader"]);
    let reader = caller(p, &["reader"]);
    let (net, _) = h.network(&m, "net", "10.0.0.0/24").await;
    let vm = h.server(&m).await;
    h.plug(&m, &vm, &net).await;
    let some = ServerId::new();
    for (method, path) in [
        ("GET", "/os-security-groups".to_string()),
        ("POST", "/os-security-groups".to_string()),
        ("GET", format!("/os-security-groups/{some}")),
        ("PUT", format!("/os-security-groups/{some}")),
        ("DELETE", format!("/os-security-groups/{some}")),
        ("POST", "/os-security-group-rules".to_string()),
        ("DELETE", format!("/os-security-group-rules/{some}")),
        ("GET", format!("/servers/{vm}/os-security-groups")),
        ("GET", "/os-floating-ips".to_string()),
        ("POST", "/os-floating-ips".to_string()),
        ("GET", format!("/os-floating-ips/{some}")),
        ("DELETE", format!("/os-floating-ips/{some}")),
        ("GET", "/os-floating-ip-pools".to_string()),
        ("GET", "/os-networks".to_string()),
        ("POST", "/os-networks".to_string()),
        ("POST", "/os-networks/add".to_string()),
        ("GET", format!("/os-networks/{net}")),
        ("DELETE", format!("/os-networks/{net}")),
        ("POST", format!("/os-networks/{net}/action")),
        ("GET", "/os-tenant-networks".to_string()),
        ("POST", "/os-tenant-networks".to_string()),
        ("GET", format!("/os-tenant-networks/{net}")),
        ("DELETE", format!("/os-tenant-networks/{net}")),
        ("POST", format!("/servers/{vm}/action")),
    ] {
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        let (s, _) = h.call_at(None, "2.1", method, &path, body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
    }

    // A reader lists and shows, and changes nothing.
    let v = h
        .ok(&reader, StatusCode::OK, "GET", "/os-security-groups", None)
        .await;
    let default_id = v["security_groups"][0]["id"].as_str().unwrap().to_string();
    h.ok(
        &reader,
        StatusCode::OK,
        "GET",
        &format!("/servers/{vm}/os-security-groups"),
        None,
    )
    .await;
    h.ok(&reader, StatusCode::OK, "GET", "/os-floating-ips", None)
        .await;
    for (method, path, body) in [
        (
            "POST",
            "/os-security-groups".to_string(),
            json!({"security_group": {"name": "x", "description": ""}}),
        ),
        (
            "POST",
            "/os-security-group-rules".to_string(),
            json!({"security_group_rule": {"parent_group_id": default_id, "ip_protocol": "tcp",
                "from_port": 1, "to_port": 1}}),
        ),
        (
            "POST",
            format!("/servers/{vm}/action"),
            json!({"addSecurityGroup": {"name": "default"}}),
        ),
        (
            "POST",
            format!("/servers/{vm}/action"),
            json!({"addFloatingIp": {"address": "172.24.4.10"}}),
        ),
    ] {
        let (s, v) = h.call(&reader, method, &path, Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
    }
}
