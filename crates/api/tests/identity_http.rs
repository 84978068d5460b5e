//! The identity API over HTTP (in-process, through the whole router), on
//! the engine under test (SQLite by default, PostgreSQL with
//! OXISTACK_TEST_DATABASE=postgres).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use oxistack_api::AppState;
use oxistack_model::config::Settings;
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

const PUBLIC: &str = "http://cloud.example:8080";

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
        public_url: Some(PUBLIC.into()),
        ..Settings::default()
    });
    let bus: Arc<dyn oxistack_bus::Bus> = Arc::new(oxistack_bus::InProcessBus::new());
    let state = AppState::assemble(
        store.clone(),
        settings.clone(),
        dir.path().to_path_buf(),
        bus,
        oxistack_api::AppState::served_catalog(),
    );
    state
        .identity
        .bootstrap(Some("s3cret-admin".into()))
        .await
        .unwrap();
    Harness {
        _db: db,
        _dir: dir,
        app: oxistack_api::router(state),
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/identity{path}"));
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Password token for `user` scoped to `project` (both in Default).
    async fn login(&self, user: &str, password: &str, project: Option<&str>) -> Resp {
        let mut auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}}}});
        if let Some(p) = project {
            auth["auth"]["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
        }
        self.call(None, "POST", "/v3/auth/tokens", Some(auth), &[])
            .await
    }

    async fn token(&self, user: &str, password: &str, project: Option<&str>) -> String {
        let r = self.login(user, password, project).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.headers["x-subject-token"].to_str().unwrap().to_string()
    }
}

const UNAUTHORIZED: &str = "The request you have made requires authentication.";

#[tokio::test]
async fn version_discovery() {
    let h = harness().await;
    let r = h.call(None, "GET", "", None, &[]).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let v = &r.body["versions"]["values"][0];
    assert_eq!(v["id"], "v3.14");
    assert_eq!(v["links"][0]["href"], format!("{PUBLIC}/identity/v3/"));
    let r = h.call(None, "GET", "/v3", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"]["status"], "stable");
    let r = h.call(None, "GET", "/v3/nothing-here", None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], 404);
}

#[tokio::test]
async fn password_tokens_validate_and_revoke() {
    let h = harness().await;
    let r = h.login("admin", "s3cret-admin", Some("admin")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.headers["x-subject-token"].to_str().unwrap().to_string();
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(
        t["user"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["is_domain"], false);
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["admin", "member", "reader"]);
    let compute = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "compute")
        .unwrap();
    assert_eq!(
        compute["endpoints"][0]["url"],
        format!("{PUBLIC}/compute/v2.1")
    );
    assert_eq!(compute["endpoints"][0]["interface"], "public");
    assert_eq!(compute["endpoints"][0]["region_id"], "RegionOne");

    // Wrong password and unknown user: the same 401 body.
    for (u, p) in [("admin", "wrong"), ("ghost", "s3cret-admin")] {
        let r = h.login(u, p, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.body,
            json!({"error": {"code": 401, "message": UNAUTHORIZED, "title": "Unauthorized"}})
        );
    }

    // Validate, check, and a bad subject token is a 404.
    let r = h
        .call(
            Some(&token),
            "GET",
            "/v3/auth/tokens",
            None,
            &[("x-subject-token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-subject-token"], token.as_str());
    let r = h
        .call(
            Some(&token),
            "HEAD",
            "/v3/auth/tokens",
            None,
            &[("x-subject-token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call(
            Some(&token),
            "GET",
            "/v3/auth/tokens",
            None,
            &[("x-subject-token", "bogus")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .call(
            Some("bogus"),
            "GET",
            "/v3/auth/tokens",
            None,
            &[("x-subject-token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = h
        .call(Some(&token), "GET", "/v3/auth/projects", None, &[])
        .await;
    assert_eq!(r.body["projects"][0]["name"], "admin");
    let r = h
        .call(Some(&token), "GET", "/v3/auth/catalog", None, &[])
        .await;
    assert!(r.body["catalog"].as_array().unwrap().len() >= 4);

    // Revoke a second token; the first still works.
    let other = h.token("admin", "s3cret-admin", Some("admin")).await;
    let r = h
        .call(
            Some(&token),
            "DELETE",
            "/v3/auth/tokens",
            None,
            &[("x-subject-token", &other)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.call(Some(&other), "GET", "/v3/users", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h.call(Some(&token), "GET", "/v3/users", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.call(None, "GET", "/v3/users", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_crud_assignments_and_member_refusal() {
    let h = harness().await;
    let adm = h.token("admin", "s3cret-admin", Some("admin")).await;
    let r = h
        .call(
            Some(&adm),
            "POST",
            "/v3/projects",
            Some(json!({"project": {"name": "demo", "tags": ["a"]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let pid = r.body["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["project"]["domain_id"], "default");
    assert_eq!(r.body["project"]["parent_id"], "default");
    assert_eq!(
        r.body["project"]["links"]["self"],
        format!("{PUBLIC}/identity/v3/projects/{pid}")
    );
    let r = h
        .call(
            Some(&adm),
            "POST",
            "/v3/projects",
            Some(json!({"project": {"name": "demo"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h
        .call(
            Some(&adm),
            "POST",
            "/v3/projects",
            Some(json!({"project": {}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = h
        .call(Some(&adm), "POST", "/v3/users", Some(json!({"user": {"name": "dave", "password": "pw-dave", "email": "d@x", "default_project_id": pid}})), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let uid = r.body["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["user"]["email"], "d@x");
    assert!(r.body["user"].get("password").is_none());

    let r = h
        .call(Some(&adm), "GET", "/v3/roles?name=member", None, &[])
        .await;
    let member = r.body["roles"][0]["id"].as_str().unwrap().to_string();
    let grant = format!("/v3/projects/{pid}/users/{uid}/roles/{member}");
    assert_eq!(
        h.call(Some(&adm), "HEAD", &grant, None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.call(Some(&adm), "PUT", &grant, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.call(Some(&adm), "HEAD", &grant, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );

    let r = h
        .call(
            Some(&adm),
            "GET",
            &format!("/v3/role_assignments?user.id={uid}&effective&include_names"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.body["role_assignments"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", r.body);
    assert!(list
        .iter()
        .any(|a| a["role"]["name"] == "reader" && a["links"]["prior_role"].is_string()));
    assert_eq!(list[0]["scope"]["project"]["name"], "demo");

    // Dave, a member, may read itself but not list users or create.
    let dave = h.token("dave", "pw-dave", Some("demo")).await;
    assert_eq!(
        h.call(Some(&dave), "GET", &format!("/v3/users/{uid}"), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let r = h.call(Some(&dave), "GET", "/v3/users", None, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["title"], "Forbidden");
    let r = h
        .call(
            Some(&dave),
            "POST",
            "/v3/projects",
            Some(json!({"project": {"name": "x"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .call(
            Some(&dave),
            "GET",
            &format!("/v3/users/{uid}/projects"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["projects"][0]["id"], pid.as_str());

    // Removing the grant takes effect on Dave's existing token.
    assert_eq!(
        h.call(Some(&adm), "DELETE", &grant, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.call(Some(&dave), "GET", &format!("/v3/users/{uid}"), None, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Update, then delete; deleting twice is a 404.
    let r = h
        .call(
            Some(&adm),
            "PATCH",
            &format!("/v3/projects/{pid}"),
            Some(json!({"project": {"description": "d"}})),
            &[],
        )
        .await;
    assert_eq!(r.body["project"]["description"], "d");
    assert_eq!(
        h.call(Some(&adm), "DELETE", &format!("/v3/users/{uid}"), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.call(
            Some(&adm),
            "DELETE",
            &format!("/v3/projects/{pid}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let r = h
        .call(
            Some(&adm),
            "DELETE",
            &format!("/v3/projects/{pid}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["error"]["message"],
        format!("Could not find project: {pid}.")
    );

    // Domains: an enabled one cannot be deleted.
    let r = h
        .call(
            Some(&adm),
            "POST",
            "/v3/domains",
            Some(json!({"domain": {"name": "d2"}})),
            &[],
        )
        .await;
    let did = r.body["domain"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        h.call(
            Some(&adm),
            "DELETE",
            &format!("/v3/domains/{did}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    h.call(
        Some(&adm),
        "PATCH",
        &format!("/v3/domains/{did}"),
        Some(json!({"domain": {"enabled": false}})),
        &[],
    )
    .await;
    assert_eq!(
        h.call(
            Some(&adm),
            "DELETE",
            &format!("/v3/domains/{did}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );

    let r = h
        .call(Some(&adm), "GET", "/v3/role_inferences", None, &[])
        .await;
    assert_eq!(r.body["role_inferences"].as_array().unwrap().len(), 2);
    let r = h.call(Some(&adm), "GET", "/v3/regions", None, &[]).await;
    assert_eq!(r.body["regions"][0]["id"], "RegionOne");
    let r = h
        .call(
            Some(&adm),
            "GET",
            "/v3/endpoints?interface=public",
            None,
            &[],
        )
        .await;
    assert_eq!(
        r.body["endpoints"].as_array().unwrap().len(),
        oxistack_api::SERVED.len()
    );
}
