//! The real binary over plain HTTP: bad input gets OpenStack's error bodies
//! with the right status and leaves nothing half-created; every response
//! carries a request id; every service answers version discovery; a
//! restart keeps every resource.

mod common;

use common::{Cloud, ADMIN_PASSWORD};
use serde_json::{json, Value};

struct Tenant {
    token: String,
    project_id: String,
}

/// A project with a member user, made through the identity admin API.
fn tenant(cloud: &Cloud, admin: &str, name: &str) -> Tenant {
    let (s, p, _) = cloud.http(
        "POST",
        "/identity/v3/projects",
        Some(admin),
        Some(&json!({"project": {"name": name, "domain_id": "default"}}).to_string()),
    );
    assert_eq!(s, 201, "{p}");
    let project_id = p["project"]["id"].as_str().unwrap().to_string();
    let (s, u, _) = cloud.http(
        "POST",
        "/identity/v3/users",
        Some(admin),
        Some(
            &json!({"user": {"name": name, "domain_id": "default", "password": "pw-of-user"}})
                .to_string(),
        ),
    );
    assert_eq!(s, 201, "{u}");
    let user_id = u["user"]["id"].as_str().unwrap().to_string();
    let (_, roles, _) = cloud.http("GET", "/identity/v3/roles?name=member", Some(admin), None);
    let role_id = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let (s, _, _) = cloud.http(
        "PUT",
        &format!("/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"),
        Some(admin),
        None,
    );
    assert_eq!(s, 204);
    Tenant {
        token: cloud.token(name, "pw-of-user", name),
        project_id,
    }
}

fn upload_image(cloud: &Cloud, token: &str, name: &str) -> String {
    let (s, img, _) = cloud.http(
        "POST",
        "/image/v2/images",
        Some(token),
        Some(
            &json!({"name": name, "disk_format": "qcow2", "container_format": "bare"}).to_string(),
        ),
    );
    assert_eq!(s, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    let file = common::make_qcow2(cloud.data_dir(), &format!("{name}.qcow2"));
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/image/v2/images/{id}/file", cloud.url))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(file).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    id
}

fn create_server(
    cloud: &Cloud,
    token: &str,
    name: &str,
    image: &str,
    flavor: &str,
) -> (u16, Value) {
    let body = json!({"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}});
    let (s, b, h) = cloud.http_v(
        "POST",
        "/compute/v2.1/servers",
        Some(token),
        Some(&body.to_string()),
        "2.47",
    );
    assert!(h.contains_key("x-openstack-request-id"));
    (s, b)
}

fn wait_active(cloud: &Cloud, token: &str, id: &str) -> Value {
    for _ in 0..300 {
        let (_, s, _) = cloud.http(
            "GET",
            &format!("/compute/v2.1/servers/{id}"),
            Some(token),
            None,
        );
        match s["server"]["status"].as_str() {
            Some("ACTIVE") => return s,
            Some("ERROR") => panic!("server went to ERROR: {s}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    panic!("server {id} did not become ACTIVE");
}

fn server_count(cloud: &Cloud, token: &str) -> usize {
    let (s, l, _) = cloud.http("GET", "/compute/v2.1/servers", Some(token), None);
    assert_eq!(s, 200);
    l["servers"].as_array().unwrap().len()
}

trait HttpV {
    fn http_v(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        version: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap);
}

impl HttpV for Cloud {
    fn http_v(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        version: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .header("OpenStack-API-Version", format!("compute {version}"));
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (
            status,
            serde_json::from_str(&r.text().unwrap_or_default()).unwrap_or(Value::Null),
            headers,
        )
    }
}

#[test]
fn bad_input_gets_openstack_errors_and_leaves_nothing_behind() {
    let cloud = Cloud::start();
    let admin = cloud.token("admin", ADMIN_PASSWORD, "admin");
    let alice = tenant(&cloud, &admin, "alice");
    let bob = tenant(&cloud, &admin, "bob");
    let image = upload_image(&cloud, &alice.token, "alice-img");

    // Wrong password and unknown user: 401 with Keystone's body, the same for both.
    for (user, pw) in [("alice", "wrong"), ("nobody", "pw-of-user")] {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": pw}}}}});
        let (s, b, h) = cloud.http(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            Some(&body.to_string()),
        );
        assert_eq!(s, 401, "{b}");
        assert_eq!(b["error"]["code"], 401);
        assert_eq!(b["error"]["title"], "Unauthorized");
        assert!(h.contains_key("x-openstack-request-id"));
    }
    // Missing and forged tokens: 401 in each service's own format.
    for path in [
        "/compute/v2.1/servers",
        "/image/v2/images",
        "/identity/v3/projects",
        "/placement/resource_providers",
    ] {
        for token in [None, Some("gAAAAAforged-token")] {
            let (s, b, h) = cloud.http("GET", path, token, None);
            assert_eq!(s, 401, "{path} with {token:?}: {b}");
            assert!(h.contains_key("x-openstack-request-id"), "{path}");
        }
    }
    let (_, b, _) = cloud.http("GET", "/compute/v2.1/servers", None, None);
    assert_eq!(b["unauthorized"]["code"], 401, "Nova's fault body: {b}");
    let (_, b, _) = cloud.http("GET", "/placement/resource_providers", None, None);
    assert_eq!(b["errors"][0]["status"], 401, "Placement's fault body: {b}");

    // Malformed JSON: 400.
    let (s, b, _) = cloud.http(
        "POST",
        "/compute/v2.1/servers",
        Some(&alice.token),
        Some("{\"server\": {"),
    );
    assert_eq!(s, 400);
    assert_eq!(b["badRequest"]["code"], 400, "{b}");
    let (s, b, _) = cloud.http(
        "POST",
        "/identity/v3/projects",
        Some(&admin),
        Some("not json"),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], 400);

    // Unknown flavor or image: 400 on create, 404 on show.
    let (s, b) = create_server(&cloud, &alice.token, "x", &image, "no-such-flavor");
    assert_eq!(s, 400, "{b}");
    assert!(
        b["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Flavor"),
        "{b}"
    );
    let (s, b) = create_server(
        &cloud,
        &alice.token,
        "x",
        "1c7c8a4e-0000-4000-8000-000000000000",
        "1",
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Image"),
        "{b}"
    );
    let (s, b, _) = cloud.http(
        "GET",
        "/compute/v2.1/flavors/no-such-flavor",
        Some(&alice.token),
        None,
    );
    assert_eq!(s, 404);
    assert_eq!(b["itemNotFound"]["code"], 404);
    let (s, _, _) = cloud.http(
        "GET",
        "/image/v2/images/1c7c8a4e-0000-4000-8000-000000000000",
        Some(&alice.token),
        None,
    );
    assert_eq!(s, 404);
    // An unknown key name, a bad network request, bad user data: 400.
    for extra in [
        json!({"key_name": "nokey"}),
        json!({"networks": [{"uuid": "x"}]}),
        json!({"user_data": "not base64!"}),
    ] {
        let mut body = json!({"server": {"name": "x", "imageRef": image, "flavorRef": "1", "networks": "none"}});
        for (k, v) in extra.as_object().unwrap() {
            body["server"][k] = v.clone();
        }
        let (s, b, _) = cloud.http_v(
            "POST",
            "/compute/v2.1/servers",
            Some(&alice.token),
            Some(&body.to_string()),
            "2.47",
        );
        assert_eq!(s, 400, "{extra}: {b}");
    }
    // A microversion out of range: 406.
    let (s, _, _) = cloud.http_v(
        "GET",
        "/compute/v2.1/servers",
        Some(&alice.token),
        None,
        "2.999",
    );
    assert_eq!(s, 406);
    assert_eq!(
        server_count(&cloud, &alice.token),
        0,
        "a refused create left a server behind"
    );

    // Another project's server: 404 for show, update, action, delete.
    let (s, created) = create_server(&cloud, &alice.token, "alice-vm", &image, "1");
    assert_eq!(s, 202, "{created}");
    assert!(created["server"]["adminPass"].is_string());
    let vm = created["server"]["id"].as_str().unwrap().to_string();
    wait_active(&cloud, &alice.token, &vm);
    for (m, p, body) in [
        ("GET", format!("/compute/v2.1/servers/{vm}"), None),
        (
            "PUT",
            format!("/compute/v2.1/servers/{vm}"),
            Some(json!({"server": {"name": "stolen"}}).to_string()),
        ),
        (
            "POST",
            format!("/compute/v2.1/servers/{vm}/action"),
            Some(json!({"os-stop": null}).to_string()),
        ),
        ("DELETE", format!("/compute/v2.1/servers/{vm}"), None),
    ] {
        let (s, b, _) = cloud.http(m, &p, Some(&bob.token), body.as_deref());
        assert_eq!(s, 404, "{m} {p} by another project: {b}");
    }
    wait_active(&cloud, &alice.token, &vm);
    // An action in the wrong state: 409.
    let (s, b, _) = cloud.http(
        "POST",
        &format!("/compute/v2.1/servers/{vm}/action"),
        Some(&alice.token),
        Some(&json!({"os-start": null}).to_string()),
    );
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["conflictingRequest"]["code"], 409);

    // Over quota: 403, nothing created.
    let (s, b, _) = cloud.http(
        "PUT",
        &format!("/compute/v2.1/os-quota-sets/{}", alice.project_id),
        Some(&admin),
        Some(&json!({"quota_set": {"instances": 1}}).to_string()),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = create_server(&cloud, &alice.token, "one-too-many", &image, "1");
    assert_eq!(s, 403, "{b}");
    assert!(
        b["forbidden"]["message"]
            .as_str()
            .unwrap()
            .contains("Quota exceeded for instances"),
        "{b}"
    );
    assert_eq!(server_count(&cloud, &alice.token), 1);
    let (_, q, _) = cloud.http(
        "GET",
        &format!("/compute/v2.1/os-quota-sets/{}/detail", alice.project_id),
        Some(&alice.token),
        None,
    );
    assert_eq!(q["quota_set"]["instances"]["in_use"], 1, "{q}");
    // A member may not change quotas.
    let (s, _, _) = cloud.http(
        "PUT",
        &format!("/compute/v2.1/os-quota-sets/{}", alice.project_id),
        Some(&alice.token),
        Some(&json!({"quota_set": {"instances": 50}}).to_string()),
    );
    assert_eq!(s, 403);

    // A server within quota that fits no host (32 GB): ERROR with "No valid host was found".
    let (s, f, _) = cloud.http("POST", "/compute/v2.1/flavors", Some(&admin), Some(&json!({"flavor": {"name": "huge", "ram": 48_000, "vcpus": 1, "disk": 1, "id": "huge"}}).to_string()));
    assert_eq!(s, 200, "{f}");
    let (s, b) = create_server(
        &cloud,
        &admin,
        "too-big",
        &upload_image(&cloud, &admin, "admin-img"),
        "huge",
    );
    assert_eq!(s, 202, "{b}");
    let id = b["server"]["id"].as_str().unwrap();
    let mut server = Value::Null;
    for _ in 0..300 {
        server = cloud
            .http(
                "GET",
                &format!("/compute/v2.1/servers/{id}"),
                Some(&admin),
                None,
            )
            .1;
        if server["server"]["status"] == "ERROR" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(server["server"]["status"], "ERROR", "{server}");
    assert!(
        server["server"]["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host was found"),
        "{server}"
    );
}

#[test]
fn expired_tokens_are_refused() {
    let cloud = Cloud::start_with(&[("OXISTACK_TOKEN_LIFETIME_SECS", "1")]);
    let token = cloud.token("admin", ADMIN_PASSWORD, "admin");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (s, b, _) = cloud.http("GET", "/compute/v2.1/flavors", Some(&token), None);
    assert_eq!(s, 401, "{b}");
}

#[test]
fn every_service_answers_version_discovery() {
    let cloud = Cloud::start();
    for (path, key) in [
        ("/identity", "versions"),
        ("/identity/v3", "version"),
        ("/compute", "versions"),
        ("/compute/v2.1", "version"),
        ("/image", "versions"),
        ("/image/versions", "versions"),
        ("/placement", "versions"),
        ("/placement/", "versions"),
    ] {
        let (s, b, h) = cloud.http("GET", path, None, None);
        assert!(s == 200 || s == 300, "{path}: {s}");
        assert!(b.get(key).is_some(), "{path}: {b}");
        assert!(h.contains_key("x-openstack-request-id"), "{path}");
    }
    let (_, v, h) = cloud.http("GET", "/compute/v2.1", None, None);
    assert_eq!(v["version"]["min_version"], "2.1");
    assert!(h.contains_key("openstack-api-version"));
}

#[test]
fn a_restart_keeps_every_resource() {
    let mut cloud = Cloud::start();
    let admin = cloud.token("admin", ADMIN_PASSWORD, "admin");
    let carol = tenant(&cloud, &admin, "carol");
    let image = upload_image(&cloud, &carol.token, "carol-img");
    let (s, _, _) = cloud.http(
        "POST",
        "/compute/v2.1/flavors",
        Some(&admin),
        Some(
            &json!({"flavor": {"name": "kept", "ram": 256, "vcpus": 1, "disk": 1, "id": "kept"}})
                .to_string(),
        ),
    );
    assert_eq!(s, 200);
    let (s, _, _) = cloud.http(
        "POST",
        "/compute/v2.1/os-keypairs",
        Some(&carol.token),
        Some(&json!({"keypair": {"name": "carol-key"}}).to_string()),
    );
    assert_eq!(s, 200);
    let (_, b) = create_server(&cloud, &carol.token, "carol-vm", &image, "kept");
    let vm = b["server"]["id"].as_str().unwrap().to_string();
    wait_active(&cloud, &carol.token, &vm);
    let clouds_yaml = std::fs::read_to_string(cloud.data_dir().join("clouds.yaml")).unwrap();

    cloud.restart();

    // Tokens issued before the restart stay valid (the key is in the store).
    let (s, _, _) = cloud.http(
        "GET",
        "/compute/v2.1/flavors/kept",
        Some(&carol.token),
        None,
    );
    assert_eq!(s, 200);
    let token = cloud.token("carol", "pw-of-user", "carol");
    let server = wait_active(&cloud, &token, &vm);
    assert_eq!(server["server"]["name"], "carol-vm");
    let (s, img, _) = cloud.http(
        "GET",
        &format!("/image/v2/images/{image}"),
        Some(&token),
        None,
    );
    assert_eq!((s, img["status"].as_str()), (200, Some("active")));
    let (s, _, _) = cloud.http(
        "GET",
        "/compute/v2.1/os-keypairs/carol-key",
        Some(&token),
        None,
    );
    assert_eq!(s, 200);
    let (s, _, _) = cloud.http(
        "GET",
        &format!("/identity/v3/projects/{}", carol.project_id),
        Some(&admin),
        None,
    );
    assert_eq!(s, 200);
    // The data dir is not re-initialised: same clouds.yaml, same admin.
    assert_eq!(
        std::fs::read_to_string(cloud.data_dir().join("clouds.yaml")).unwrap(),
        clouds_yaml
    );
    let (_, flavors, _) = cloud.http("GET", "/compute/v2.1/flavors", Some(&token), None);
    assert_eq!(
        flavors["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == "m1.tiny")
            .count(),
        1
    );
    // The fake guest is the same one (no second boot at start).
    let (_, out, _) = cloud.http(
        "POST",
        &format!("/compute/v2.1/servers/{vm}/action"),
        Some(&token),
        Some(&json!({"os-getConsoleOutput": {}}).to_string()),
    );
    assert!(!out["output"].as_str().unwrap().contains("boot 2"), "{out}");
}

#[test]
fn hypervisors_and_services_show_the_host() {
    let cloud = Cloud::start();
    let admin = cloud.token("admin", ADMIN_PASSWORD, "admin");
    let (s, b, _) = cloud.http_v(
        "GET",
        "/compute/v2.1/os-hypervisors/detail",
        Some(&admin),
        None,
        "2.28",
    );
    assert_eq!(s, 200, "{b}");
    let h = &b["hypervisors"][0];
    assert_eq!(h["hypervisor_hostname"], "e2e-host");
    assert_eq!(h["vcpus"], 8);
    assert_eq!(h["memory_mb"], 32768);
    assert_eq!(
        h["cpu_info"]["accel"], "none",
        "the fake driver has no accelerator: {h}"
    );
    let (s, b, _) = cloud.http_v(
        "GET",
        "/compute/v2.1/os-hypervisors/1",
        Some(&admin),
        None,
        "2.1",
    );
    assert_eq!(s, 200);
    assert!(
        b["hypervisor"]["cpu_info"].is_string(),
        "cpu_info is a string before 2.28: {b}"
    );
    let (s, up, _) = cloud.http(
        "GET",
        "/compute/v2.1/os-hypervisors/1/uptime",
        Some(&admin),
        None,
    );
    assert_eq!(s, 200);
    assert!(
        up["hypervisor"]["uptime"]
            .as_str()
            .unwrap()
            .contains("load average:"),
        "{up}"
    );
    let (s, aggs, _) = cloud.http("GET", "/compute/v2.1/os-aggregates", Some(&admin), None);
    assert_eq!(
        (s, aggs["aggregates"].as_array().map(|a| a.len())),
        (200, Some(0))
    );
    let (_, svc, _) = cloud.http("GET", "/compute/v2.1/os-services", Some(&admin), None);
    let binaries: Vec<&str> = svc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["binary"].as_str().unwrap())
        .collect();
    assert!(
        binaries.contains(&"nova-compute") && binaries.contains(&"nova-scheduler"),
        "{svc}"
    );
    let dave = tenant(&cloud, &admin, "dave");
    let (s, _, _) = cloud.http(
        "GET",
        "/compute/v2.1/os-hypervisors",
        Some(&dave.token),
        None,
    );
    assert_eq!(s, 403);
}
