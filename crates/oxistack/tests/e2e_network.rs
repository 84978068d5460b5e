//! Networking as a user sees it: `oxistack serve --virt qemu --datapath
//! linux` (real bridges, VXLAN, namespaces, nftables, dnsmasq) driven by the
//! `openstack` CLI. Guests get DHCP addresses and their identity from the
//! metadata service, reach each other, are reached through a floating IP
//! from an "outside host" namespace the test puts on its own public bridge,
//! and reach that host through SNAT. Needs root, QEMU and the network
//! tools: runs when `OXISTACK_NET_TESTS=1` and `OXISTACK_QEMU_TESTS=1`.
//!
//! Everything the test makes on the host has a random suffix, and is
//! removed by a guard even when the test fails; traffic stays inside the
//! test's own bridge and namespaces.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{guest_image, Cloud, Creds};

fn enabled() -> bool {
    let on = |v: &str| std::env::var(v).as_deref() == Ok("1");
    if on("OXISTACK_NET_TESTS") && on("OXISTACK_QEMU_TESTS") {
        true
    } else {
        eprintln!("skipped: set OXISTACK_NET_TESTS=1 and OXISTACK_QEMU_TESTS=1");
        false
    }
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run")
}

/// The outside host: a namespace with a veth on the test's public bridge.
struct Outside {
    ns: String,
    bridge: String,
    veth: String,
}

impl Outside {
    fn new(bridge: &str, suffix: &str) -> Outside {
        let o = Outside {
            ns: format!("oxt-out-{suffix}"),
            bridge: bridge.into(),
            veth: format!("oxtv{suffix}"),
        };
        // The bridge exists once the public network is converged.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sh(&["ip", "link", "show", bridge]).status.success() {
            assert!(Instant::now() < deadline, "bridge {bridge} never appeared");
            std::thread::sleep(Duration::from_millis(500));
        }
        let peer = format!("{}p", o.veth);
        for cmd in [
            vec!["ip", "netns", "add", &o.ns],
            vec![
                "ip", "link", "add", &o.veth, "type", "veth", "peer", "name", &peer,
            ],
            vec!["ip", "link", "set", &peer, "netns", &o.ns],
            vec!["ip", "link", "set", &o.veth, "master", bridge, "up"],
            vec!["ip", "-n", &o.ns, "link", "set", "lo", "up"],
            vec!["ip", "-n", &o.ns, "link", "set", &peer, "name", "eth0"],
            vec![
                "ip",
                "-n",
                &o.ns,
                "addr",
                "add",
                "172.24.4.5/24",
                "dev",
                "eth0",
            ],
            vec!["ip", "-n", &o.ns, "link", "set", "eth0", "up"],
        ] {
            let out = sh(&cmd);
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        o
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Removes what the cloud made on the host, even when the test failed:
/// first through the API (the network agent tears its objects down), then
/// by name for whatever a failure left (names derive from the resources'
/// IDs, so nothing else on the host is touched).
struct HostGuard<'a> {
    cloud: &'a Cloud,
}

impl Drop for HostGuard<'_> {
    fn drop(&mut self) {
        let c = self.cloud;
        let token = c.token("admin", common::ADMIN_PASSWORD, "admin");
        let t = Some(token.as_str());
        let ids = |path: &str, key: &str| -> Vec<serde_json::Value> {
            c.http("GET", path, t, None).1[key]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        for s in ids("/compute/v2.1/servers?all_tenants=1", "servers") {
            c.http(
                "DELETE",
                &format!("/compute/v2.1/servers/{}", s["id"].as_str().unwrap_or("")),
                t,
                None,
            );
        }
        for f in ids("/network/v2.0/floatingips", "floatingips") {
            c.http(
                "DELETE",
                &format!(
                    "/network/v2.0/floatingips/{}",
                    f["id"].as_str().unwrap_or("")
                ),
                t,
                None,
            );
        }
        let routers = ids("/network/v2.0/routers", "routers");
        for p in ids(
            "/network/v2.0/ports?device_owner=network:router_interface",
            "ports",
        ) {
            let body = serde_json::json!({"port_id": p["id"]}).to_string();
            c.http(
                "PUT",
                &format!(
                    "/network/v2.0/routers/{}/remove_router_interface",
                    p["device_id"].as_str().unwrap_or("")
                ),
                t,
                Some(&body),
            );
        }
        for r in &routers {
            let id = r["id"].as_str().unwrap_or("");
            c.http(
                "PUT",
                &format!("/network/v2.0/routers/{id}"),
                t,
                Some(r#"{"router": {"external_gateway_info": {}}}"#),
            );
            c.http("DELETE", &format!("/network/v2.0/routers/{id}"), t, None);
        }
        let networks = ids("/network/v2.0/networks", "networks");
        for n in &networks {
            if n["router:external"] != true {
                c.http(
                    "DELETE",
                    &format!("/network/v2.0/networks/{}", n["id"].as_str().unwrap_or("")),
                    t,
                    None,
                );
            }
        }
        std::thread::sleep(Duration::from_secs(8));
        for n in &networks {
            let id = n["id"].as_str().unwrap_or("").to_string();
            let _ = sh(&["ip", "netns", "del", &format!("oxdhcp-{id}")]);
            let short = id.replace('-', "");
            for prefix in ["oxbr-", "oxvx-"] {
                let _ = sh(&[
                    "ip",
                    "link",
                    "del",
                    &format!("{prefix}{}", &short[..short.len().min(10)]),
                ]);
            }
        }
        for r in &routers {
            let _ = sh(&[
                "ip",
                "netns",
                "del",
                &format!("oxrouter-{}", r["id"].as_str().unwrap_or("")),
            ]);
        }
        // This cloud's own tables only (other clouds may run beside it).
        let config = oxistack_agent::network::NetworkAgentConfig::new(c.data_dir().join("network"));
        let table = oxistack_agent::network::names::root_table(&config.instance);
        for family in ["inet", "bridge"] {
            let _ = sh(&["nft", "delete", "table", family, &table]);
        }
    }
}

fn wait_console(cloud: &Cloud, server: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = cloud.os_ok(&Creds::Admin, &["console", "log", "show", server]);
        if log.contains(line) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{server}: {line:?} not in the console:\n{log}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Runs `cmd` in the guest at `ip` over SSH from the outside host (bounded retries).
fn ssh(out: &Outside, key: &str, ip: &str, cmd: &str, attempts: u32) -> std::process::Output {
    let mut last = None;
    for _ in 0..attempts {
        let o = out.run(&[
            "ssh",
            "-i",
            key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "BatchMode=yes",
            &format!("root@{ip}"),
            cmd,
        ]);
        if o.status.success() {
            return o;
        }
        last = Some(o);
        std::thread::sleep(Duration::from_secs(3));
    }
    last.unwrap()
}

#[test]
fn guests_on_a_tenant_network_reach_each_other_and_the_outside() {
    if !enabled() {
        return;
    }
    let suffix = format!("{:06x}", std::process::id() & 0xffffff);
    let bridge = format!("oxtpub{suffix}");
    let cloud = Cloud::start_full(
        "qemu",
        "linux",
        &[
            ("OXISTACK_PUBLIC_BRIDGE", &bridge),
            ("OXISTACK_NETWORK_RECONCILE_INTERVAL_SECS", "5"),
        ],
    );
    let admin = Creds::Admin;
    let outside = Outside::new(&bridge, &suffix);
    let _guard = HostGuard { cloud: &cloud };

    let img = guest_image();
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
            img.to_str().unwrap(),
            "tiny",
        ],
    );
    let key = cloud.data_dir().join("k");
    assert!(sh(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        key.to_str().unwrap()
    ])
    .status
    .success());
    let key = key.to_str().unwrap().to_string();
    cloud.os_json(
        &admin,
        &[
            "keypair",
            "create",
            "--public-key",
            &format!("{key}.pub"),
            "k",
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
            "10.10.0.0/24",
            "sub1",
        ],
    );
    cloud.os_json(&admin, &["router", "create", "r1"]);
    cloud.os_ok(
        &admin,
        &["router", "set", "--external-gateway", "public", "r1"],
    );
    cloud.os_ok(&admin, &["router", "add", "subnet", "r1", "sub1"]);

    for vm in ["vm-a", "vm-b"] {
        let s = cloud.os_json(
            &admin,
            &[
                "server",
                "create",
                "--flavor",
                "m1.tiny",
                "--image",
                "tiny",
                "--key-name",
                "k",
                "--network",
                "net1",
                "--wait",
                vm,
            ],
        );
        assert_eq!(s["status"], "ACTIVE", "{s}");
    }
    for vm in ["vm-a", "vm-b"] {
        let log = wait_console(&cloud, vm, &format!("oxistack-guest: hostname={vm}"));
        assert!(
            log.contains("oxistack-guest: dhcp on"),
            "{vm} got no DHCP lease:\n{log}"
        );
        assert!(
            log.contains("oxistack-guest: metadata from 169.254.169.254"),
            "{vm} read no metadata:\n{log}"
        );
        assert!(log.contains("installed ssh key"), "{vm}:\n{log}");
    }
    let show_b = cloud.os_json(&admin, &["server", "show", "vm-b"]);
    let b_ip = show_b["addresses"]["net1"][0]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            show_b["addresses"]
                .to_string()
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .find(|s| s.starts_with("10.10.0."))
                .unwrap()
                .to_string()
        });

    let fip = cloud.os_json(&admin, &["floating", "ip", "create", "public"]);
    let fip = fip["floating_ip_address"].as_str().unwrap().to_string();
    cloud.os_ok(&admin, &["server", "add", "floating", "ip", "vm-a", &fip]);

    // Closed until the security group allows it.
    let denied = ssh(&outside, &key, &fip, "true", 1);
    assert!(
        !denied.status.success(),
        "SSH went through before any rule allowed it"
    );
    cloud.os_json(
        &admin,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "default",
        ],
    );
    cloud.os_json(
        &admin,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "icmp",
            "default",
        ],
    );

    let ping = outside.run(&["ping", "-c", "3", "-W", "2", &fip]);
    assert!(
        ping.status.success(),
        "floating IP {fip} does not answer ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let hello = ssh(&outside, &key, &fip, "hostname", 20);
    assert!(
        hello.status.success(),
        "SSH to {fip}: {}",
        String::from_utf8_lossy(&hello.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&hello.stdout).trim(), "vm-a");

    // East-west inside the tenant network, and SNAT out to the outside host.
    let east = ssh(&outside, &key, &fip, &format!("ping -c 2 -W 2 {b_ip}"), 3);
    assert!(
        east.status.success(),
        "vm-a cannot ping vm-b ({b_ip}): {}",
        String::from_utf8_lossy(&east.stdout)
    );
    let snat = ssh(&outside, &key, &fip, "ping -c 2 -W 2 172.24.4.5", 3);
    assert!(
        snat.status.success(),
        "vm-a cannot reach the outside host: {}",
        String::from_utf8_lossy(&snat.stdout)
    );

    // Teardown through the API leaves none of the tenant's host objects.
    cloud.os_ok(
        &admin,
        &["server", "remove", "floating", "ip", "vm-a", &fip],
    );
    cloud.os_ok(&admin, &["floating", "ip", "delete", &fip]);
    cloud.os_ok(&admin, &["server", "delete", "--wait", "vm-a", "vm-b"]);
    let router_id = cloud.os_json(&admin, &["router", "show", "r1"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    cloud.os_ok(&admin, &["router", "remove", "subnet", "r1", "sub1"]);
    cloud.os_ok(&admin, &["router", "unset", "--external-gateway", "r1"]);
    cloud.os_ok(&admin, &["router", "delete", "r1"]);
    let net_id = cloud.os_json(&admin, &["network", "show", "net1"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    cloud.os_ok(&admin, &["network", "delete", "net1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ns = String::from_utf8_lossy(&sh(&["ip", "netns", "list"]).stdout).to_string();
        let links = String::from_utf8_lossy(&sh(&["ip", "-o", "link"]).stdout).to_string();
        // Only this cloud's: another cloud on the machine may have routers.
        let left = ns.contains(&net_id) || ns.contains(&format!("oxrouter-{router_id}"));
        let short = &net_id.replace('-', "")[..10];
        if !left && !links.contains(short) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "host objects left after delete:\n{ns}\n{links}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
