//! The user's view: the real `oxistack serve` (fake virt driver) on a fresh
//! data dir, driven by the official `openstack` CLI, first as the cloud
//! admin and then as a member of another project, who must see none of the
//! admin's servers or private images and be refused admin-only calls.

mod common;

use common::{make_qcow2, Cloud, Creds};
use serde_json::Value;

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e[key].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The life of one user's resources; returns (image id, server id) left in place.
fn lifecycle(cloud: &Cloud, who: &Creds, tag: &str) -> (String, String) {
    let tok = cloud.os_json(who, &["token", "issue"]);
    assert!(tok["id"].as_str().unwrap().len() > 20, "{tok}");
    let catalog = cloud.os_json(who, &["catalog", "list"]);
    let types = names(&catalog, "Type");
    for t in ["identity", "compute", "image", "placement"] {
        assert!(
            types.contains(&t.to_string()),
            "catalog lacks {t}: {types:?}"
        );
    }

    let file = make_qcow2(cloud.data_dir(), &format!("{tag}.qcow2"));
    let img_name = format!("img-{tag}");
    let img = cloud.os_json(
        who,
        &[
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            file.to_str().unwrap(),
            &img_name,
        ],
    );
    let img_id = img["id"].as_str().unwrap().to_string();
    let shown = cloud.os_json(who, &["image", "show", &img_id]);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["disk_format"], "qcow2");
    assert_eq!(shown["properties"]["os_hash_algo"], "sha512");
    assert!(names(&cloud.os_json(who, &["image", "list"]), "Name").contains(&img_name));

    let flavors = names(&cloud.os_json(who, &["flavor", "list"]), "Name");
    for f in ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"] {
        assert!(flavors.contains(&f.to_string()), "{flavors:?}");
    }

    let key = format!("key-{tag}");
    let kp = cloud.os_json(
        who,
        &[
            "keypair",
            "create",
            "--private-key",
            cloud
                .data_dir()
                .join(format!("{tag}.pem"))
                .to_str()
                .unwrap(),
            &key,
        ],
    );
    assert_eq!(kp["name"], key.as_str());
    assert!(
        std::fs::read_to_string(cloud.data_dir().join(format!("{tag}.pem")))
            .unwrap()
            .contains("PRIVATE KEY")
    );

    let vm = format!("vm-{tag}");
    let server = cloud.os_json(
        who,
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            &img_name,
            "--key-name",
            &key,
            "--nic",
            "none",
            "--property",
            "role=test",
            "--wait",
            &vm,
        ],
    );
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let sid = server["id"].as_str().unwrap().to_string();
    let list = cloud.os_json(who, &["server", "list"]);
    assert!(names(&list, "Name").contains(&vm));
    let show = cloud.os_json(who, &["server", "show", &vm]);
    assert_eq!(show["OS-EXT-STS:vm_state"], "active");
    assert_eq!(show["OS-EXT-STS:power_state"], 1, "power_state RUNNING");
    assert_eq!(show["key_name"], key.as_str());

    cloud.os_ok(who, &["server", "stop", &vm]);
    let s = cloud.wait_status(who, &vm, "SHUTOFF");
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "power_state SHUTDOWN");
    cloud.os_ok(who, &["server", "start", &vm]);
    cloud.wait_status(who, &vm, "ACTIVE");
    cloud.os_ok(who, &["server", "reboot", "--wait", &vm]);
    cloud.os_ok(who, &["server", "reboot", "--hard", "--wait", &vm]);
    let log = cloud.os_ok(who, &["console", "log", "show", &vm]);
    assert!(
        log.contains("boot 4"),
        "four boots expected (create, start, soft and hard reboot):\n{log}"
    );
    let two = cloud.os_ok(who, &["console", "log", "show", "--lines", "2", &vm]);
    // Nova's cut: the last two pieces of the log split on newlines.
    let lines: Vec<&str> = log.trim_end_matches('\n').split('\n').collect();
    assert!(two.trim_end().lines().count() <= 2, "{two}");
    assert!(
        two.contains(lines[lines.len() - 1]),
        "--lines 2 lacks the last line: {two}"
    );

    // A second server, deleted with --wait, leaves nothing behind.
    let tmp = format!("tmp-{tag}");
    cloud.os_json(
        who,
        &[
            "server", "create", "--flavor", "m1.tiny", "--image", &img_name, "--nic", "none",
            "--wait", &tmp,
        ],
    );
    cloud.os_ok(who, &["server", "delete", "--wait", &tmp]);
    assert!(!names(&cloud.os_json(who, &["server", "list"]), "Name").contains(&tmp));
    cloud.os_fails(who, &["server", "show", &tmp]);

    let quota = cloud.os_json(who, &["quota", "show"]);
    assert!(quota.to_string().contains("instances"), "{quota}");
    (img_id, sid)
}

#[test]
fn admin_and_member_use_the_cloud_through_the_openstack_cli() {
    let cloud = Cloud::start();
    let admin = Creds::Admin;

    // Admin: identity administration.
    cloud.os_json(
        &admin,
        &["project", "create", "--domain", "default", "demo"],
    );
    cloud.os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--project",
            "demo",
            "--password",
            "demo-pw-1",
            "demo",
        ],
    );
    cloud.os_ok(
        &admin,
        &[
            "role",
            "add",
            "--project",
            "demo",
            "--user",
            "demo",
            "member",
        ],
    );
    let assignments = cloud.os_json(
        &admin,
        &[
            "role",
            "assignment",
            "list",
            "--user",
            "demo",
            "--project",
            "demo",
            "--names",
        ],
    );
    assert!(assignments.to_string().contains("member"), "{assignments}");

    // Admin: flavors.
    let f = cloud.os_json(
        &admin,
        &[
            "flavor",
            "create",
            "--vcpus",
            "2",
            "--ram",
            "1024",
            "--disk",
            "5",
            "e2e.flavor",
        ],
    );
    assert_eq!(f["vcpus"], 2);
    cloud.os_ok(&admin, &["flavor", "delete", "e2e.flavor"]);
    assert!(!names(&cloud.os_json(&admin, &["flavor", "list"]), "Name")
        .contains(&"e2e.flavor".to_string()));

    let (admin_img, admin_server) = lifecycle(&cloud, &admin, "admin");
    // A private image of the admin's, which the member must not see.
    let private = make_qcow2(cloud.data_dir(), "private.qcow2");
    let private_img = cloud.os_json(
        &admin,
        &[
            "image",
            "create",
            "--private",
            "--disk-format",
            "qcow2",
            "--file",
            private.to_str().unwrap(),
            "admin-private",
        ],
    );
    let private_id = private_img["id"].as_str().unwrap().to_string();

    // The member of another project.
    let member = Creds::User {
        user: "demo".into(),
        password: "demo-pw-1".into(),
        project: "demo".into(),
    };
    let (member_img, _member_server) = lifecycle(&cloud, &member, "member");

    // Isolation: none of the admin's servers or private images.
    let servers = cloud.os_json(&member, &["server", "list"]);
    assert_eq!(names(&servers, "Name"), vec!["vm-member".to_string()]);
    let err = cloud.os_fails(&member, &["server", "show", &admin_server]);
    assert!(
        err.contains("No Server found") || err.contains("could not be found"),
        "{err}"
    );
    let images = names(&cloud.os_json(&member, &["image", "list"]), "ID");
    assert!(
        !images.contains(&private_id),
        "member sees the admin's private image"
    );
    cloud.os_fails(&member, &["image", "show", &private_id]);
    // The admin's ordinary image was created without --public, so it is not visible either.
    assert!(
        !images.contains(&admin_img)
            || cloud.os_json(&admin, &["image", "show", &admin_img])["visibility"] != "private"
    );
    assert!(images.contains(&member_img));

    // Admin-only calls are refused.
    for args in [
        vec!["project", "create", "sneaky"],
        vec!["user", "create", "--password", "x", "sneaky"],
        vec![
            "flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", "sneaky",
        ],
        vec!["quota", "set", "--instances", "100", "demo"],
    ] {
        let err = cloud.os_fails(&member, &args);
        assert!(
            err.contains("403")
                || err.to_lowercase().contains("forbidden")
                || err.contains("not allowed")
                || err.contains("Policy"),
            "{args:?}: {err}"
        );
    }

    // `openstack role add` exits 0 even when the server refuses (403), so
    // the grant is checked by its effect: the member did not become admin.
    let _ = cloud.os_as(
        &member,
        &[
            "role",
            "add",
            "--project",
            "demo",
            "--user",
            "demo",
            "admin",
        ],
    );
    let roles = cloud.os_json(
        &admin,
        &["role", "assignment", "list", "--user", "demo", "--names"],
    );
    assert!(
        !roles.to_string().contains("\"admin\""),
        "the member granted itself admin: {roles}"
    );

    // The admin sees the member's server with --all-projects.
    let all = names(
        &cloud.os_json(&admin, &["server", "list", "--all-projects"]),
        "Name",
    );
    assert!(
        all.contains(&"vm-member".to_string()) && all.contains(&"vm-admin".to_string()),
        "{all:?}"
    );

    cloud.os_ok(&admin, &["image", "delete", &private_id]);
    cloud.os_fails(&admin, &["image", "show", &private_id]);
}
