//! The placement API over HTTP (in-process, through the whole router), on
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
    state: AppState,
}

async fn harness() -> Harness {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(Settings {
        reserved_host_memory_mb: 0,
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
        app: oxistack_api::router(state.clone()),
        state,
    }
}

fn caller(roles: &[&str]) -> AuthContext {
    let now = oxistack_model::time::now();
    AuthContext {
        user_id: UserId::new(),
        user_name: "nova".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        project_id: Some(ProjectId::new()),
        project_name: Some("service".into()),
        project_domain_id: Some("default".into()),
        project_domain_name: Some("Default".into()),
        domain_id: None,
        domain_name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        role_ids: roles
            .iter()
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect(),
        issued_at: now,
        expires_at: now + chrono::Duration::hours(1),
        audit_id: "test".into(),
        methods: vec!["password".into()],
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Harness {
    /// A request as `who` (None: no credentials) at microversion `version`.
    async fn call(
        &self,
        who: Option<&AuthContext>,
        version: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/placement{path}"));
        if !version.is_empty() {
            req = req.header("openstack-api-version", format!("placement {version}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        if let Some(ctx) = who {
            req.extensions_mut().insert(ctx.clone());
        }
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn admin(&self, version: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(
            Some(&caller(&["admin", "member", "reader"])),
            version,
            method,
            path,
            body,
        )
        .await
    }
}

fn code(r: &Resp) -> &str {
    r.body["errors"][0]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn root_is_open_and_advertises_the_range() {
    let h = harness().await;
    let r = h.call(None, "", "GET", "", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = &r.body["versions"][0];
    assert_eq!(v["id"], "v1.0");
    assert_eq!(v["min_version"], "1.0");
    assert_eq!(v["max_version"], "1.24");
    assert_eq!(v["status"], "CURRENT");
    assert_eq!(r.headers["openstack-api-version"], "placement 1.0");
    let r = h.call(None, "latest", "GET", "", None).await;
    assert_eq!(r.headers["openstack-api-version"], "placement 1.24");
    let r = h.call(None, "1.99", "GET", "", None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert!(r.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("1.99"));
}

#[tokio::test]
async fn every_call_but_the_root_needs_an_admin() {
    let h = harness().await;
    let r = h.call(None, "", "GET", "/resource_providers", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["errors"][0]["status"], 401);
    let member = caller(&["member", "reader"]);
    let r = h
        .call(Some(&member), "", "GET", "/resource_providers", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["errors"][0]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req-"));
    let r = h.admin("", "GET", "/resource_providers", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"resource_providers": []}));
}

#[tokio::test]
async fn real_admin_token_is_accepted() {
    let h = harness().await;
    h.state
        .identity
        .bootstrap(Some("s3cret".into()))
        .await
        .unwrap();
    let (token, _) = h
        .state
        .identity
        .authenticate_password("admin", "Default", "s3cret", Some(("admin", "Default")))
        .await
        .unwrap();
    let req = Request::builder()
        .uri("/placement/resource_providers")
        .header("x-auth-token", token)
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let req = Request::builder()
        .uri("/placement/resource_providers")
        .header("x-auth-token", "garbage")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn provider_lifecycle_and_generation_conflicts() {
    let h = harness().await;
    // Before 1.20: 201, Location, no body.
    let r = h
        .admin(
            "1.14",
            "POST",
            "/resource_providers",
            Some(json!({"name": "cn1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let loc = r.headers["location"].to_str().unwrap().to_string();
    let uuid = loc.rsplit('/').next().unwrap().to_string();
    assert_eq!(r.body, Value::Null);
    // 1.20: 200 with the provider.
    let r = h
        .admin(
            "1.20",
            "POST",
            "/resource_providers",
            Some(json!({"name": "cn2", "parent_provider_uuid": uuid})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["root_provider_uuid"], uuid.as_str());
    assert_eq!(r.body["generation"], 0);
    let child = r.body["uuid"].as_str().unwrap().to_string();
    let r = h
        .admin(
            "1.20",
            "POST",
            "/resource_providers",
            Some(json!({"name": "cn1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(code(&r), "placement.duplicate_name");

    let r = h
        .admin("1.0", "GET", &format!("/resource_providers/{uuid}"), None)
        .await;
    assert_eq!(r.body["name"], "cn1");
    let rels: Vec<&str> = r.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert_eq!(rels, ["self", "inventories", "usages"]);
    assert!(r.body.get("root_provider_uuid").is_none());

    // Inventory with a generation; a stale one conflicts.
    let inv = json!({"resource_provider_generation": 0, "inventories": {
        "VCPU": {"total": 2, "allocation_ratio": 4.0, "max_unit": 8},
        "MEMORY_MB": {"total": 2048, "reserved": 512}}});
    let r = h
        .admin(
            "1.20",
            "PUT",
            &format!("/resource_providers/{uuid}/inventories"),
            Some(inv.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 1);
    assert_eq!(r.body["inventories"]["VCPU"]["allocation_ratio"], 4.0);
    assert_eq!(r.body["inventories"]["MEMORY_MB"]["min_unit"], 1);
    assert_eq!(r.body["inventories"]["MEMORY_MB"]["max_unit"], 2147483647);
    assert!(r.headers.contains_key("last-modified"));
    assert_eq!(r.headers["cache-control"], "no-cache");
    let r = h
        .admin(
            "1.20",
            "PUT",
            &format!("/resource_providers/{uuid}/inventories"),
            Some(inv),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(code(&r), "placement.concurrent_update");
    let r = h
        .admin("1.20", "PUT", &format!("/resource_providers/{uuid}/inventories/VCPU"), Some(json!({"resource_provider_generation": 1, "total": 4, "allocation_ratio": 4.0, "max_unit": 16})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["resource_provider_generation"], 2);

    // Parents cannot go while they have children.
    let r = h
        .admin(
            "1.20",
            "DELETE",
            &format!("/resource_providers/{uuid}"),
            None,
        )
        .await;
    assert_eq!(code(&r), "placement.resource_provider.cannot_delete_parent");
    let r = h
        .admin(
            "1.20",
            "DELETE",
            &format!("/resource_providers/{child}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .admin("1.20", "GET", &format!("/resource_providers/{child}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["errors"][0]["title"], "Not Found");
}

async fn provider_with_vcpus(h: &Harness, name: &str, total: i64) -> String {
    let r = h
        .admin(
            "1.20",
            "POST",
            "/resource_providers",
            Some(json!({"name": name})),
        )
        .await;
    let uuid = r.body["uuid"].as_str().unwrap().to_string();
    let inv = json!({"resource_provider_generation": 0, "inventories": {
        "VCPU": {"total": total}, "MEMORY_MB": {"total": 4096}}});
    let r = h
        .admin(
            "1.20",
            "PUT",
            &format!("/resource_providers/{uuid}/inventories"),
            Some(inv),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    uuid
}

#[tokio::test]
async fn allocations_usages_and_candidates() {
    let h = harness().await;
    let rp = provider_with_vcpus(&h, "cn1", 4).await;
    let consumer = uuid::Uuid::new_v4().to_string();
    let project = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({"allocations": {rp.clone(): {"resources": {"VCPU": 3, "MEMORY_MB": 1024}}},
        "project_id": project, "user_id": "u1"});
    let r = h
        .admin(
            "1.12",
            "PUT",
            &format!("/allocations/{consumer}"),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    // 1.8 requires the owner.
    let r = h
        .admin("1.8", "PUT", &format!("/allocations/{}", uuid::Uuid::new_v4()), Some(json!({"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 1}}]})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Over capacity: 3 + 2 > 4.
    let r = h
        .admin("1.0", "PUT", &format!("/allocations/{}", uuid::Uuid::new_v4()), Some(json!({"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 2}}]})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);

    let r = h
        .admin("1.12", "GET", &format!("/allocations/{consumer}"), None)
        .await;
    assert_eq!(
        r.body["allocations"][&rp]["resources"],
        json!({"VCPU": 3, "MEMORY_MB": 1024})
    );
    assert_eq!(r.body["project_id"], project.as_str());
    let r = h
        .admin(
            "1.0",
            "GET",
            &format!("/resource_providers/{rp}/usages"),
            None,
        )
        .await;
    assert_eq!(r.body["usages"], json!({"VCPU": 3, "MEMORY_MB": 1024}));
    let r = h
        .admin("1.9", "GET", &format!("/usages?project_id={project}"), None)
        .await;
    assert_eq!(r.body, json!({"usages": {"VCPU": 3, "MEMORY_MB": 1024}}));
    let r = h
        .admin(
            "1.0",
            "GET",
            &format!("/resource_providers/{rp}/allocations"),
            None,
        )
        .await;
    assert_eq!(r.body["allocations"][&consumer]["resources"]["VCPU"], 3);

    // Candidates: room for 1 VCPU, not for 2.
    let r = h
        .admin(
            "1.12",
            "GET",
            "/allocation_candidates?resources=VCPU:1,MEMORY_MB:512",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"][&rp]["resources"]["VCPU"],
        1
    );
    assert_eq!(
        r.body["provider_summaries"][&rp]["resources"]["VCPU"],
        json!({"capacity": 4, "used": 3})
    );
    let r = h
        .admin(
            "1.12",
            "GET",
            "/allocation_candidates?resources=VCPU:2",
            None,
        )
        .await;
    assert_eq!(
        r.body,
        json!({"allocation_requests": [], "provider_summaries": {}})
    );
    let r = h
        .admin(
            "1.9",
            "GET",
            "/allocation_candidates?resources=VCPU:1",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .admin(
            "1.10",
            "GET",
            "/allocation_candidates?resources=VCPU:1",
            None,
        )
        .await;
    assert!(r.body["allocation_requests"][0]["allocations"].is_array());

    // resources= filter on providers.
    let r = h
        .admin("1.4", "GET", "/resource_providers?resources=VCPU:1", None)
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = h
        .admin("1.4", "GET", "/resource_providers?resources=VCPU:2", None)
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 0);
    let r = h
        .admin("1.3", "GET", "/resource_providers?resources=VCPU:2", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Inventory and provider in use.
    let r = h
        .admin(
            "1.0",
            "DELETE",
            &format!("/resource_providers/{rp}/inventories/VCPU"),
            None,
        )
        .await;
    assert_eq!(code(&r), "placement.inventory.inuse");
    let r = h
        .admin("1.0", "DELETE", &format!("/resource_providers/{rp}"), None)
        .await;
    assert_eq!(code(&r), "placement.resource_provider.inuse");

    // POST /allocations moves the consumer in one go; empty removes.
    let other = uuid::Uuid::new_v4().to_string();
    let body = json!({
        consumer.clone(): {"allocations": {}, "project_id": project, "user_id": "u1"},
        other.clone(): {"allocations": {rp.clone(): {"resources": {"VCPU": 4}}}, "project_id": project, "user_id": "u1"},
    });
    let r = h.admin("1.13", "POST", "/allocations", Some(body)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h
        .admin(
            "1.0",
            "GET",
            &format!("/resource_providers/{rp}/usages"),
            None,
        )
        .await;
    assert_eq!(r.body["usages"], json!({"VCPU": 4, "MEMORY_MB": 0}));
    let r = h
        .admin("1.0", "DELETE", &format!("/allocations/{other}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .admin("1.0", "DELETE", &format!("/allocations/{other}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn classes_traits_and_aggregates() {
    let h = harness().await;
    let r = h.admin("1.2", "GET", "/resource_classes", None).await;
    let names: Vec<&str> = r.body["resource_classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"VCPU") && names.contains(&"DISK_GB"));
    let r = h.admin("1.1", "GET", "/resource_classes", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .admin(
            "1.2",
            "POST",
            "/resource_classes",
            Some(json!({"name": "CUSTOM_GOLD"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h
        .admin(
            "1.2",
            "POST",
            "/resource_classes",
            Some(json!({"name": "GOLD"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin("1.7", "PUT", "/resource_classes/CUSTOM_GOLD", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .admin("1.7", "PUT", "/resource_classes/CUSTOM_SILVER", None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h
        .admin("1.2", "DELETE", "/resource_classes/VCPU", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin("1.2", "DELETE", "/resource_classes/CUSTOM_SILVER", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let rp = provider_with_vcpus(&h, "cn1", 4).await;
    let r = h.admin("1.6", "PUT", "/traits/CUSTOM_FAST", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.admin("1.6", "PUT", "/traits/CUSTOM_FAST", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.admin("1.6", "PUT", "/traits/fast", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin("1.6", "GET", "/traits?name=startswith:CUSTOM_", None)
        .await;
    assert_eq!(r.body, json!({"traits": ["CUSTOM_FAST"]}));
    let gen = h
        .admin("1.6", "GET", &format!("/resource_providers/{rp}"), None)
        .await
        .body["generation"]
        .clone();
    let r = h
        .admin("1.6", "PUT", &format!("/resource_providers/{rp}/traits"), Some(json!({"traits": ["CUSTOM_FAST", "HW_CPU_X86_AVX2"], "resource_provider_generation": gen})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let gen = r.body["resource_provider_generation"].clone();
    let r = h
        .admin(
            "1.6",
            "PUT",
            &format!("/resource_providers/{rp}/traits"),
            Some(json!({"traits": ["CUSTOM_NOPE"], "resource_provider_generation": gen})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.admin("1.6", "DELETE", "/traits/CUSTOM_FAST", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h
        .admin(
            "1.18",
            "GET",
            "/resource_providers?required=CUSTOM_FAST",
            None,
        )
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = h
        .admin(
            "1.22",
            "GET",
            "/resource_providers?required=!CUSTOM_FAST",
            None,
        )
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 0);
    let r = h
        .admin(
            "1.17",
            "GET",
            "/allocation_candidates?resources=VCPU:1&required=HW_CPU_X86_AVX2",
            None,
        )
        .await;
    assert_eq!(
        r.body["provider_summaries"][&rp]["traits"],
        json!(["CUSTOM_FAST", "HW_CPU_X86_AVX2"])
    );

    let agg = uuid::Uuid::new_v4().to_string();
    let r = h
        .admin(
            "1.19",
            "PUT",
            &format!("/resource_providers/{rp}/aggregates"),
            Some(json!({"aggregates": [agg], "resource_provider_generation": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(code(&r), "placement.concurrent_update");
    let r = h
        .admin(
            "1.19",
            "PUT",
            &format!("/resource_providers/{rp}/aggregates"),
            Some(json!({"aggregates": [agg], "resource_provider_generation": gen})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregates"], json!([agg]));
    let r = h
        .admin(
            "1.1",
            "GET",
            &format!("/resource_providers/{rp}/aggregates"),
            None,
        )
        .await;
    assert_eq!(r.body, json!({"aggregates": [agg]}));
    let r = h
        .admin(
            "1.3",
            "GET",
            &format!("/resource_providers?member_of=in:{agg}"),
            None,
        )
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = h
        .admin(
            "1.24",
            "GET",
            &format!(
                "/resource_providers?member_of={agg}&member_of={}",
                uuid::Uuid::new_v4()
            ),
            None,
        )
        .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 0);
}
