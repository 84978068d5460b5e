//! Interface attach and detach as a user sees them: `openstack server add
//! port`, `server add network`, `server remove port`, `server remove
//! network` and `server show` addresses, plus the os-interface API's
//! answers to bad requests over plain HTTP. Fake virt driver and fake
//! datapath: nothing is made on the host (real hot-plug into QEMU is tested
//! in crates/agent/tests/qemu_driver.rs).

mod common;

use std::time::{Duration, Instant};

use common::{make_qcow2, Cloud, Creds, ADMIN_PASSWORD};
use serde_json::{json, Value};

/// The addresses `server show` lists, as (network, address) pairs.
fn addresses(cloud: &Cloud, server: &str) -> Vec<(String, String)> {
    let s = cloud.os_json(&Creds::Admin, &["server", "show", server]);
    let mut out = vec![];
    if let Some(nets) = s["addresses"].as_object() {
        for (net, list) in nets {
            for a in list.as_array().into_iter().flatten() {
                let addr = a
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| a["addr"].as_str().unwrap_or_default().to_string());
                out.push((net.clone(), addr));
            }
        }
    }
    out.sort();
    out
}

/// Polls `server show` until its addresses are `want` (a detach is
/// asynchronous, as Nova's is).
fn wait_addresses(cloud: &Cloud, server: &str, want: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = addresses(cloud, server);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{server} has addresses {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn fixed_ip(port: &Value) -> String {
    port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_else(|| panic!("no fixed IP in {port}"))
        .to_string()
}

#[test]
fn ports_and_networks_are_attached_and_detached_with_the_cli() {
    let cloud = Cloud::start();
    let admin = Creds::Admin;
    let file = make_qcow2(cloud.data_dir(), "img.qcow2");
    cloud.os_json(
        &admin,
        &[
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            file.to_str().unwrap(),
            "img",
        ],
    );
    cloud.os_json(&admin, &["network", "create", "net1"]);
    cloud.os_json(
        &admin,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.20.0.0/24",
            "sub1",
        ],
    );
    let vm = cloud.os_json(
        &admin,
        &[
            "server", "create", "--flavor", "m1.tiny", "--image", "img", "--nic", "none", "--wait",
            "vm",
        ],
    );
    assert_eq!(vm["status"], "ACTIVE", "{vm}");
    let sid = vm["id"].as_str().unwrap().to_string();
    assert!(addresses(&cloud, "vm").is_empty());

    // server add port: the user's port is bound to the server and shows in its addresses.
    let p1 = cloud.os_json(&admin, &["port", "create", "--network", "net1", "p1"]);
    let p1_id = p1["id"].as_str().unwrap().to_string();
    let p1_ip = fixed_ip(&p1);
    cloud.os_ok(&admin, &["server", "add", "port", "vm", "p1"]);
    assert_eq!(
        addresses(&cloud, "vm"),
        vec![("net1".into(), p1_ip.clone())]
    );
    let shown = cloud.os_json(&admin, &["port", "show", "p1"]);
    assert_eq!(shown["device_id"], sid.as_str(), "{shown}");
    assert_eq!(shown["status"], "ACTIVE", "{shown}");

    // server add network: a new port on the network.
    cloud.os_ok(&admin, &["server", "add", "network", "vm", "net1"]);
    let addrs = addresses(&cloud, "vm");
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let new_ip = addrs
        .iter()
        .map(|(_, a)| a.clone())
        .find(|a| *a != p1_ip)
        .unwrap();
    assert!(new_ip.starts_with("10.20.0."), "{new_ip}");

    // The os-interface API itself.
    let token = cloud.token("admin", ADMIN_PASSWORD, "admin");
    let base = format!("/compute/v2.1/servers/{sid}/os-interface");
    let (s, list, _) = cloud.http("GET", &base, Some(&token), None);
    assert_eq!(s, 200, "{list}");
    let list = list["interfaceAttachments"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let mine = list
        .iter()
        .find(|a| a["port_id"] == p1_id.as_str())
        .unwrap();
    let mut keys: Vec<&str> = mine
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["fixed_ips", "mac_addr", "net_id", "port_id", "port_state"],
        "no `tag` below 2.70: {mine}"
    );
    assert_eq!(mine["port_state"], "ACTIVE");
    assert_eq!(mine["fixed_ips"][0]["ip_address"], p1_ip.as_str());
    assert_eq!(mine["mac_addr"], p1["mac_address"]);
    let (s, one, _) = cloud.http("GET", &format!("{base}/{p1_id}"), Some(&token), None);
    assert_eq!(s, 200);
    assert_eq!(&one["interfaceAttachment"], mine);

    // Refusals, with Nova's codes and fault bodies.
    let net1 = cloud.os_json(&admin, &["network", "show", "net1"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = |v: Value| v.to_string();
    for (b, want) in [
        (json!({"interfaceAttachment": {"port_id": p1_id}}), 409),
        (json!({"interfaceAttachment": {"port_id": "nope"}}), 400),
        (
            json!({"interfaceAttachment": {"port_id": p1_id, "net_id": net1}}),
            400,
        ),
        (
            json!({"interfaceAttachment": {"net_id": net1, "tag": "eth9"}}),
            400,
        ),
        (
            json!({"interfaceAttachment": {"fixed_ips": [{"ip_address": "10.20.0.9"}]}}),
            400,
        ),
        (
            json!({"interfaceAttachment": {"net_id": net1, "fixed_ips": [{"ip_address": p1_ip}]}}),
            409,
        ),
        (
            json!({"interfaceAttachment": {"net_id": "00000000-0000-0000-0000-000000000001"}}),
            404,
        ),
        (
            json!({"interfaceAttachment": {"port_id": "00000000-0000-0000-0000-000000000001"}}),
            404,
        ),
    ] {
        let (s, v, _) = cloud.http("POST", &base, Some(&token), Some(&body(b.clone())));
        assert_eq!(s, want, "{b}: {v}");
        let fault = match want {
            400 => "badRequest",
            404 => "itemNotFound",
            _ => "conflictingRequest",
        };
        assert!(v[fault]["message"].is_string(), "{b}: {v}");
    }
    let (s, _, _) = cloud.http("GET", &base, None, None);
    assert_eq!(s, 401);
    let (s, _, _) = cloud.http(
        "GET",
        "/compute/v2.1/servers/00000000-0000-0000-0000-000000000001/os-interface",
        Some(&token),
        None,
    );
    assert_eq!(s, 404);
    let (s, _, _) = cloud.http(
        "DELETE",
        &format!("{base}/00000000-0000-0000-0000-000000000001"),
        Some(&token),
        None,
    );
    assert_eq!(s, 404);
    assert_eq!(
        addresses(&cloud, "vm").len(),
        2,
        "a refused request changes nothing"
    );

    // server remove port: unbound, kept.
    cloud.os_ok(&admin, &["server", "remove", "port", "vm", "p1"]);
    wait_addresses(&cloud, "vm", &[("net1".into(), new_ip.clone())]);
    let shown = cloud.os_json(&admin, &["port", "show", "p1"]);
    assert_eq!(shown["device_id"], "", "{shown}");
    assert_eq!(shown["status"], "DOWN", "{shown}");

    // server remove network: the port the attach made is deleted.
    cloud.os_ok(&admin, &["server", "remove", "network", "vm", "net1"]);
    wait_addresses(&cloud, "vm", &[]);
    let ports = cloud.os_json(&admin, &["port", "list", "--network", "net1"]);
    let ids: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["Fixed IP Addresses"].to_string().contains(&new_ip))
        .map(|p| p["ID"].as_str().unwrap())
        .collect();
    assert!(ids.is_empty(), "the port made for vm is left: {ports}");

    // A stopped server takes a port too; deleting the server releases it.
    cloud.os_ok(&admin, &["server", "stop", "vm"]);
    cloud.wait_status(&admin, "vm", "SHUTOFF");
    cloud.os_ok(&admin, &["server", "add", "port", "vm", "p1"]);
    assert_eq!(
        addresses(&cloud, "vm"),
        vec![("net1".into(), p1_ip.clone())]
    );
    cloud.os_ok(&admin, &["server", "delete", "--wait", "vm"]);
    let shown = cloud.os_json(&admin, &["port", "show", "p1"]);
    assert_eq!(shown["device_id"], "", "{shown}");
}
