//! The image API over HTTP (in-process, through the whole router), on the
//! engine under test (SQLite by default, PostgreSQL with
//! OXISTACK_TEST_DATABASE=postgres). Callers are injected as request
//! extensions (what the `Auth` extractor leaves after validating a token),
//! plus one test through a real Keystone token.

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
        public_url: Some("http://cloud.test".into()),
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
        user_name: "demo".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        project_id: Some(ProjectId::new()),
        project_name: Some("demo".into()),
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

fn member() -> AuthContext {
    caller(&["member", "reader"])
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
    body: Value,
}

enum Payload {
    None,
    Json(Value),
    Patch(Value),
    Data(Vec<u8>),
}

impl Harness {
    async fn call(
        &self,
        who: Option<&AuthContext>,
        method: &str,
        path: &str,
        payload: Payload,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/image{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match payload {
            Payload::None => Body::empty(),
            Payload::Json(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            Payload::Patch(v) => {
                req = req.header(
                    "content-type",
                    "application/openstack-images-v2.1-json-patch",
                );
                Body::from(v.to_string())
            }
            Payload::Data(d) => {
                req = req.header("content-type", "application/octet-stream");
                Body::from(d)
            }
        };
        let mut req = req.body(body).unwrap();
        if let Some(ctx) = who {
            req.extensions_mut().insert(ctx.clone());
        }
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            bytes,
            body,
        }
    }

    async fn get(&self, who: &AuthContext, path: &str) -> Resp {
        self.call(Some(who), "GET", path, Payload::None, &[]).await
    }
}

#[tokio::test]
async fn versions_need_no_token() {
    let h = harness().await;
    let r = h.call(None, "GET", "", Payload::None, &[]).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let versions = r.body["versions"].as_array().unwrap();
    let current: Vec<_> = versions
        .iter()
        .filter(|v| v["status"] == "CURRENT")
        .collect();
    assert_eq!(current.len(), 1);
    assert!(current[0]["id"].as_str().unwrap().starts_with("v2."));
    assert_eq!(
        current[0]["links"][0]["href"],
        "http://cloud.test/image/v2/"
    );
    let r = h.call(None, "GET", "/versions", Payload::None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["versions"].as_array().unwrap().len(), versions.len());
}

#[tokio::test]
async fn every_other_call_needs_a_token_and_faults_look_like_glance() {
    let h = harness().await;
    for (m, p) in [
        ("GET", "/v2/images"),
        ("POST", "/v2/images"),
        ("GET", "/v2/schemas/image"),
        ("GET", &format!("/v2/images/{}", uuid::Uuid::new_v4())),
    ] {
        let r = h.call(None, m, p, Payload::None, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p}");
    }
    // A forged token is refused too.
    let r = h
        .call(
            None,
            "GET",
            "/v2/images",
            Payload::None,
            &[("x-auth-token", "forged")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let ctx = member();
    let missing = uuid::Uuid::new_v4();
    let r = h.get(&ctx, &format!("/v2/images/{missing}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(r.bytes).unwrap();
    assert!(text.starts_with("404 Not Found\n\n"), "{text}");
    assert!(text.contains(&format!("No image found with ID {missing}")));
    let r = h
        .call(
            Some(&ctx),
            "GET",
            &format!("/v2/images/{missing}"),
            Payload::None,
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "404 Not Found");
    assert_eq!(r.body["title"], "Not Found");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .starts_with("No image found with ID"));
    // Unknown paths under /image are Glance 404s as well.
    let r = h.get(&ctx, "/v2/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn image_lifecycle_over_http() {
    let h = harness().await;
    let ctx = member();
    let r = h
        .call(Some(&ctx), "POST", "/v2/images", Payload::Json(json!({
            "name": "cirros", "disk_format": "raw", "container_format": "bare", "visibility": "private",
            "hw_machine_type": "q35", "tags": ["boot"]})), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"],
        format!("http://cloud.test/image/v2/images/{id}").as_str()
    );
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "checksum",
            "container_format",
            "created_at",
            "disk_format",
            "file",
            "hw_machine_type",
            "id",
            "min_disk",
            "min_ram",
            "name",
            "os_hash_algo",
            "os_hash_value",
            "os_hidden",
            "owner",
            "protected",
            "schema",
            "self",
            "size",
            "status",
            "tags",
            "updated_at",
            "virtual_size",
            "visibility"
        ]
    );
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["owner"], ctx.project_id.unwrap().to_string());
    assert_eq!(r.body["self"], format!("/v2/images/{id}"));
    assert_eq!(r.body["file"], format!("/v2/images/{id}/file"));
    assert_eq!(r.body["schema"], "/v2/schemas/image");
    assert_eq!(r.body["size"], Value::Null);

    // No data yet: 204.
    let r = h.get(&ctx, &format!("/v2/images/{id}/file")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let data: Vec<u8> = (0..1024u32).map(|i| (i % 256) as u8).collect();
    let r = h
        .call(
            Some(&ctx),
            "PUT",
            &format!("/v2/images/{id}/file"),
            Payload::Data(data.clone()),
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    let r = h.get(&ctx, &format!("/v2/images/{id}")).await;
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["size"], 1024);
    assert_eq!(r.body["os_hash_algo"], "sha512");
    let checksum = r.body["checksum"].as_str().unwrap().to_string();
    assert_eq!(checksum.len(), 32);
    assert_eq!(r.body["os_hash_value"].as_str().unwrap().len(), 128);

    let r = h.get(&ctx, &format!("/v2/images/{id}/file")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.headers["content-md5"], checksum.as_str());
    assert_eq!(r.bytes, data);

    // Upload again: conflict.
    let r = h
        .call(
            Some(&ctx),
            "PUT",
            &format!("/v2/images/{id}/file"),
            Payload::Data(vec![1]),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // PATCH needs its media type.
    let ops = json!([{"op": "replace", "path": "/name", "value": "renamed"}, {"op": "add", "path": "/os_type", "value": "linux"}]);
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Json(ops.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Patch(ops),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "renamed");
    assert_eq!(r.body["os_type"], "linux");
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Patch(json!([{"op": "replace", "path": "/status", "value": "queued"}])),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Tags and actions.
    let r = h
        .call(
            Some(&ctx),
            "PUT",
            &format!("/v2/images/{id}/tags/extra"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .call(
            Some(&ctx),
            "DELETE",
            &format!("/v2/images/{id}/tags/boot"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&ctx, &format!("/v2/images/{id}")).await.body["tags"],
        json!(["extra"])
    );
    let r = h
        .call(
            Some(&ctx),
            "POST",
            &format!("/v2/images/{id}/actions/deactivate"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&ctx, &format!("/v2/images/{id}/file")).await.status,
        StatusCode::FORBIDDEN
    );
    let r = h
        .call(
            Some(&ctx),
            "POST",
            &format!("/v2/images/{id}/actions/reactivate"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Others do not see a private image.
    let stranger = member();
    assert_eq!(
        h.get(&stranger, &format!("/v2/images/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    // Protected images are not deleted.
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Patch(json!([{"op": "replace", "path": "/protected", "value": true}])),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call(
            Some(&ctx),
            "DELETE",
            &format!("/v2/images/{id}"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    h.call(
        Some(&ctx),
        "PATCH",
        &format!("/v2/images/{id}"),
        Payload::Patch(json!([{"op": "replace", "path": "/protected", "value": false}])),
        &[],
    )
    .await;
    let r = h
        .call(
            Some(&ctx),
            "DELETE",
            &format!("/v2/images/{id}"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&ctx, &format!("/v2/images/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!h.state.images.data_path(id.parse().unwrap()).exists());
}

#[tokio::test]
async fn list_pages_and_members_over_http() {
    let h = harness().await;
    let ctx = member();
    for i in 0..5 {
        let r = h
            .call(
                Some(&ctx),
                "POST",
                "/v2/images",
                Payload::Json(json!({"name": format!("n{i}")})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = h
        .get(&ctx, "/v2/images?sort_key=name&sort_dir=asc&limit=2")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["schema"], "/v2/schemas/images");
    assert_eq!(
        r.body["first"],
        "/v2/images?sort_key=name&sort_dir=asc&limit=2"
    );
    let mut names: Vec<String> = Vec::new();
    let mut page = r.body;
    loop {
        names.extend(
            page["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string()),
        );
        let Some(next) = page["next"].as_str() else {
            break;
        };
        assert!(next.starts_with("/v2/images?"));
        page = h.get(&ctx, next).await.body;
    }
    assert_eq!(names, vec!["n0", "n1", "n2", "n3", "n4"]);
    let r = h.get(&ctx, "/v2/images?sort_key=bogus").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Share one image with another project, which accepts it.
    let id = h.get(&ctx, "/v2/images?name=n3").await.body["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = member();
    let them = other.project_id.unwrap().to_string();
    let r = h
        .call(
            Some(&ctx),
            "POST",
            &format!("/v2/images/{id}/members"),
            Payload::Json(json!({"member": them})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["schema"], "/v2/schemas/member");
    let r = h
        .call(
            Some(&other),
            "PUT",
            &format!("/v2/images/{id}/members/{them}"),
            Payload::Json(json!({"status": "accepted"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "accepted");
    let r = h.get(&other, "/v2/images").await;
    assert_eq!(r.body["images"].as_array().unwrap().len(), 1);
    let r = h.get(&ctx, &format!("/v2/images/{id}/members")).await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["schema"], "/v2/schemas/members");
    let r = h
        .call(
            Some(&ctx),
            "DELETE",
            &format!("/v2/images/{id}/members/{them}"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&other, &format!("/v2/images/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    // The schemas clients fetch.
    let r = h.get(&ctx, "/v2/schemas/image").await;
    assert_eq!(r.body["name"], "image");
    assert_eq!(r.body["additionalProperties"]["type"], "string");
    assert_eq!(
        h.get(&ctx, "/v2/schemas/images").await.body["name"],
        "images"
    );
}

#[tokio::test]
async fn a_real_keystone_token_is_accepted() {
    let h = harness().await;
    let boot = match h.state.identity.bootstrap(Some("secret-pw".into())).await {
        Ok(b) => b,
        Err(e) => panic!("identity bootstrap failed: {e}"),
    };
    let (token, _) = h
        .state
        .identity
        .authenticate_password(
            "admin",
            "Default",
            &boot.admin_password,
            Some(("admin", "Default")),
        )
        .await
        .unwrap();
    let r = h
        .call(
            None,
            "GET",
            "/v2/images",
            Payload::None,
            &[("x-auth-token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call(
            None,
            "POST",
            "/v2/images",
            Payload::Json(json!({"name": "pub", "visibility": "public"})),
            &[("x-auth-token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A member of another project sees the admin's public image.
    let r = h.get(&member(), "/v2/images?visibility=public").await;
    assert_eq!(r.body["images"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn uploads_are_not_bound_by_the_json_body_limit() {
    let h = harness().await;
    let ctx = member();
    let r = h
        .call(
            Some(&ctx),
            "POST",
            "/v2/images",
            Payload::Json(json!({"disk_format": "raw", "container_format": "bare"})),
            &[],
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let data = vec![7u8; 5 << 20];
    let r = h
        .call(
            Some(&ctx),
            "PUT",
            &format!("/v2/images/{id}/file"),
            Payload::Data(data.clone()),
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    let r = h.get(&ctx, &format!("/v2/images/{id}/file")).await;
    assert_eq!(r.headers["content-length"], (5 << 20).to_string().as_str());
    assert_eq!(r.bytes.len(), data.len());
    // A wrong content type is refused before any data is read.
    let r = h
        .call(
            Some(&ctx),
            "PUT",
            &format!("/v2/images/{id}/file"),
            Payload::None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Tempest's image client sends the v2.0 JSON-patch form
/// (`{"replace": "/name", …}`) under its own media type; and `/v2/images/`
/// (an empty image id) is 404 for every method, not the collection.
#[tokio::test]
async fn v20_patch_form_and_the_empty_image_id() {
    let h = harness().await;
    let ctx = member();
    let r = h
        .call(
            Some(&ctx),
            "POST",
            "/v2/images",
            Payload::Json(json!({
            "name": "old", "disk_format": "raw", "container_format": "bare"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let v20 = [(
        "content-type",
        "application/openstack-images-v2.0-json-patch",
    )];
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Data(
                json!([{"replace": "/name", "value": "new"}, {"add": "/color", "value": "red"}])
                    .to_string()
                    .into_bytes(),
            ),
            &v20,
        )
        .await;
    // The explicit content type comes first; `call` adds octet-stream after it.
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "new");
    assert_eq!(r.body["color"], "red");
    // Any other media type is still refused.
    let r = h
        .call(
            Some(&ctx),
            "PATCH",
            &format!("/v2/images/{id}"),
            Payload::Json(json!([{"op": "replace", "path": "/name", "value": "x"}])),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for method in ["GET", "DELETE"] {
        let r = h
            .call(Some(&ctx), method, "/v2/images/", Payload::None, &[])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
    }
    // The collection itself is still there.
    assert_eq!(h.get(&ctx, "/v2/images").await.status, StatusCode::OK);
}
