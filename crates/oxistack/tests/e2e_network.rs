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

/// The cloud under test and its outside host. Dropping it removes what the
/// cloud made on the host, even when the test failed: first through the API
/// (the network agent tears its objects down), then by name for whatever a
/// failure left (names derive from the resources' IDs, so nothing else on
/// the host is touched); then the outside host; then the cloud stops.
struct TestBed {
    cloud: Cloud,
    outside: Option<Outside>,
}

impl TestBed {
    fn outside(&self) -> &Outside {
        self.outside.as_ref().expect("outside host")
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if !self.cloud.running() {
            // A test that failed while the cloud was stopped: cleaning up needs it.
            self.cloud.restart();
        }
        let c = &self.cloud;
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
        self.outside.take();
    }
}

fn wait_console(cloud: &Cloud, who: &Creds, server: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = cloud.os_ok(who, &["console", "log", "show", server]);
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

/// The first IPv4 address of `server` on `net` in `openstack server show` output.
fn address_on(cloud: &Cloud, who: &Creds, server: &str, prefix: &str) -> String {
    let show = cloud.os_json(who, &["server", "show", server]);
    show["addresses"]
        .to_string()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("{server} has no {prefix}* address: {show}"))
        .to_string()
}

/// Runs `check` until it returns true, at most `bound`; false if it never did.
fn eventually(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Whether the guest behind `fip` opens a TCP connection to `ip`:22 (the
/// SSH banner comes back).
fn port22_open(out: &Outside, key: &str, fip: &str, ip: &str) -> bool {
    let o = ssh(
        out,
        key,
        fip,
        &format!("sleep 3 | nc -w 5 {ip} 22 2>/dev/null | head -c 7"),
        3,
    );
    String::from_utf8_lossy(&o.stdout).contains("SSH-2.0")
}

/// Whether the guest behind `fip` gets an answer to ping from `dst`,
/// optionally sending from source address `from`.
fn guest_pings(out: &Outside, key: &str, fip: &str, dst: &str, from: Option<&str>) -> bool {
    let src = from.map(|a| format!("-I {a} ")).unwrap_or_default();
    let o = ssh(
        out,
        key,
        fip,
        &format!("ping -c 2 -W 2 {src}{dst} >/dev/null && echo ANSWERED"),
        3,
    );
    String::from_utf8_lossy(&o.stdout).contains("ANSWERED")
}

fn ifindex(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// PIDs of the dnsmasq serving `network_id`.
fn dnsmasq_pids(network_id: &str) -> Vec<u32> {
    common::pids_naming(network_id)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "dnsmasq")
                .unwrap_or(false)
        })
        .collect()
}

fn id_of(cloud: &Cloud, who: &Creds, args: &[&str]) -> String {
    cloud.os_json(who, args)["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id from {args:?}"))
        .to_string()
}

#[test]
fn guests_on_a_tenant_network_reach_each_other_and_the_outside() {
    if !enabled() {
        return;
    }
    let suffix = format!("{:06x}", std::process::id() & 0xffffff);
    let bridge = format!("oxtpub{suffix}");
    let mut bed = TestBed {
        cloud: Cloud::start_full(
            "qemu",
            "linux",
            &[
                ("OXISTACK_PUBLIC_BRIDGE", &bridge),
                ("OXISTACK_NETWORK_RECONCILE_INTERVAL_SECS", "5"),
            ],
        ),
        outside: None,
    };
    bed.outside = Some(Outside::new(&bridge, &suffix));
    let admin = Creds::Admin;
    let cloud = &bed.cloud;
    let outside = bed.outside();

    let img = guest_image();
    cloud.os_json(
        &admin,
        &[
            "image",
            "create",
            "--public",
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
            "--allocation-pool",
            "start=10.10.0.10,end=10.10.0.99",
            "sub1",
        ],
    );
    cloud.os_json(&admin, &["router", "create", "r1"]);
    cloud.os_ok(
        &admin,
        &["router", "set", "--external-gateway", "public", "r1"],
    );
    cloud.os_ok(&admin, &["router", "add", "subnet", "r1", "sub1"]);
    // vm-b is only in `web`, which lets ICMP in and nothing else (yet).
    cloud.os_json(&admin, &["security", "group", "create", "web"]);
    cloud.os_json(
        &admin,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "icmp",
            "web",
        ],
    );

    for (vm, group) in [("vm-a", "default"), ("vm-b", "web")] {
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
                "--security-group",
                group,
                "--wait",
                vm,
            ],
        );
        assert_eq!(s["status"], "ACTIVE", "{s}");
    }
    for vm in ["vm-a", "vm-b"] {
        let log = wait_console(cloud, &admin, vm, &format!("oxistack-guest: hostname={vm}"));
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
    let a_ip = address_on(cloud, &admin, "vm-a", "10.10.0.");
    let b_ip = address_on(cloud, &admin, "vm-b", "10.10.0.");

    let fip = cloud.os_json(&admin, &["floating", "ip", "create", "public"]);
    let fip = fip["floating_ip_address"].as_str().unwrap().to_string();
    cloud.os_ok(&admin, &["server", "add", "floating", "ip", "vm-a", &fip]);

    // Closed until the security group allows it.
    let denied = ssh(outside, &key, &fip, "true", 1);
    assert!(
        !denied.status.success(),
        "SSH went through before any rule allowed it"
    );
    for proto in [
        &["--protocol", "tcp", "--dst-port", "22"][..],
        &["--protocol", "icmp"],
    ] {
        let mut args = vec!["security", "group", "rule", "create"];
        args.extend_from_slice(proto);
        args.push("default");
        cloud.os_json(&admin, &args);
    }

    let ping = outside.run(&["ping", "-c", "3", "-W", "2", &fip]);
    assert!(
        ping.status.success(),
        "floating IP {fip} does not answer ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let hello = ssh(outside, &key, &fip, "hostname", 20);
    assert!(
        hello.status.success(),
        "SSH to {fip}: {}",
        String::from_utf8_lossy(&hello.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&hello.stdout).trim(), "vm-a");

    // East-west inside the tenant network, and SNAT out to the outside host.
    assert!(
        guest_pings(outside, &key, &fip, &b_ip, None),
        "vm-a cannot ping vm-b ({b_ip})"
    );
    assert!(
        guest_pings(outside, &key, &fip, "172.24.4.5", None),
        "vm-a cannot reach the outside host through SNAT"
    );

    // SSH between servers: closed until `web` allows it, closed again for new
    // connections once the rule is gone.
    assert!(
        !port22_open(outside, &key, &fip, &b_ip),
        "vm-a reached vm-b:22 before any rule allowed it"
    );
    let rule = id_of(
        cloud,
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
            "--remote-group",
            "default",
            "web",
        ],
    );
    assert!(
        eventually(Duration::from_secs(60), || port22_open(
            outside, &key, &fip, &b_ip
        )),
        "vm-a cannot reach vm-b:22 after the rule allowed it"
    );
    cloud.os_ok(&admin, &["security", "group", "rule", "delete", &rule]);
    assert!(
        eventually(Duration::from_secs(60), || !port22_open(
            outside, &key, &fip, &b_ip
        )),
        "vm-a still reaches vm-b:22 after the rule was deleted"
    );

    // Anti-spoofing: a source address the port does not own gets nothing
    // through, until the port's allowed address pairs include it.
    let spoofed = "10.10.0.200";
    let add = ssh(
        outside,
        &key,
        &fip,
        &format!(
            "ip addr add {spoofed}/32 dev $(ip -o -4 addr show | awk '$2 != \"lo\" {{print $2; exit}}')"
        ),
        3,
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert!(
        !guest_pings(outside, &key, &fip, &b_ip, Some(spoofed)),
        "a spoofed source address ({spoofed}) got through vm-a's port"
    );
    let a_port = cloud.os_json(&admin, &["port", "list", "--server", "vm-a"]);
    let a_port = a_port[0]["ID"].as_str().unwrap().to_string();
    cloud.os_ok(
        &admin,
        &[
            "port",
            "set",
            "--allowed-address",
            &format!("ip-address={spoofed}"),
            &a_port,
        ],
    );
    assert!(
        eventually(Duration::from_secs(60), || guest_pings(
            outside,
            &key,
            &fip,
            &b_ip,
            Some(spoofed)
        )),
        "an allowed address pair ({spoofed}) does not get through"
    );

    // Another project, the same CIDR: its guest reaches its own router but
    // none of the first project's guests.
    cloud.os_json(
        &admin,
        &["project", "create", "--domain", "default", "other"],
    );
    cloud.os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--project",
            "other",
            "--password",
            "other-pw-1",
            "other",
        ],
    );
    cloud.os_ok(
        &admin,
        &[
            "role",
            "add",
            "--project",
            "other",
            "--user",
            "other",
            "member",
        ],
    );
    let other = Creds::User {
        user: "other".into(),
        password: "other-pw-1".into(),
        project: "other".into(),
    };
    cloud.os_json(
        &other,
        &[
            "keypair",
            "create",
            "--public-key",
            &format!("{key}.pub"),
            "k",
        ],
    );
    cloud.os_json(&other, &["network", "create", "net-o"]);
    cloud.os_json(
        &other,
        &[
            "subnet",
            "create",
            "--network",
            "net-o",
            "--subnet-range",
            "10.10.0.0/24",
            "--allocation-pool",
            "start=10.10.0.100,end=10.10.0.150",
            "sub-o",
        ],
    );
    cloud.os_json(&other, &["router", "create", "r-o"]);
    cloud.os_ok(
        &other,
        &["router", "set", "--external-gateway", "public", "r-o"],
    );
    cloud.os_ok(&other, &["router", "add", "subnet", "r-o", "sub-o"]);
    for proto in [
        &["--protocol", "tcp", "--dst-port", "22"][..],
        &["--protocol", "icmp"],
    ] {
        let mut args = vec!["security", "group", "rule", "create"];
        args.extend_from_slice(proto);
        args.push("default");
        cloud.os_json(&other, &args);
    }
    let s = cloud.os_json(
        &other,
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
            "net-o",
            "--wait",
            "vm-c",
        ],
    );
    assert_eq!(s["status"], "ACTIVE", "{s}");
    wait_console(cloud, &other, "vm-c", "oxistack-guest: hostname=vm-c");
    let fip_c = cloud.os_json(&other, &["floating", "ip", "create", "public"]);
    let fip_c = fip_c["floating_ip_address"].as_str().unwrap().to_string();
    cloud.os_ok(&other, &["server", "add", "floating", "ip", "vm-c", &fip_c]);
    let hello = ssh(outside, &key, &fip_c, "hostname", 20);
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout).trim(),
        "vm-c",
        "SSH to vm-c: {}",
        String::from_utf8_lossy(&hello.stderr)
    );
    assert!(
        guest_pings(outside, &key, &fip_c, "10.10.0.1", None),
        "vm-c cannot ping its own router"
    );
    for ip in [&a_ip, &b_ip] {
        assert!(
            !guest_pings(outside, &key, &fip_c, ip, None),
            "vm-c (project other) reached {ip} on the admin's network"
        );
    }

    // A restart rebuilds nothing that is right and repairs what was removed
    // by hand while the cloud was down: dnsmasq killed, the router's NAT
    // rules flushed.
    let net_id = id_of(cloud, &admin, &["network", "show", "net1"]);
    let router_id = id_of(cloud, &admin, &["router", "show", "r1"]);
    let short = net_id.replace('-', "");
    let net_bridge = format!("oxbr-{}", &short[..10]);
    let net_vxlan = format!("oxvx-{}", &short[..10]);
    let before = (ifindex(&net_bridge), ifindex(&net_vxlan));
    assert!(before.0.is_some(), "no bridge {net_bridge}");
    let stopped = bed.cloud.stop();
    assert!(
        stopped.success(),
        "oxistack did not stop cleanly: {stopped}"
    );
    let killed = dnsmasq_pids(&net_id);
    for pid in &killed {
        let _ = sh(&["kill", "-KILL", &pid.to_string()]);
    }
    let router_ns = format!("oxrouter-{router_id}");
    let flush = sh(&["ip", "netns", "exec", &router_ns, "nft", "flush", "ruleset"]);
    assert!(flush.status.success(), "{flush:?}");
    // (The router itself holds the floating IP, so ping would still answer:
    // SSH shows whether DNAT reaches the guest.)
    assert!(
        !ssh(bed.outside(), &key, &fip, "hostname", 1)
            .status
            .success(),
        "SSH to the floating IP went through with the router's NAT rules flushed"
    );
    bed.cloud.restart();
    let cloud = &bed.cloud;
    let outside = bed.outside();
    assert!(
        eventually(Duration::from_secs(120), || {
            String::from_utf8_lossy(&ssh(outside, &key, &fip, "hostname", 1).stdout).trim()
                == "vm-a"
        }),
        "the floating IP's NAT was not repaired after a restart:\n{}",
        common::tail(&cloud.log(), 40)
    );
    assert!(
        eventually(Duration::from_secs(60), || {
            let now = dnsmasq_pids(&net_id);
            !now.is_empty() && now.iter().all(|p| !killed.contains(p))
        }),
        "dnsmasq of net1 was not restarted"
    );
    assert_eq!(
        (ifindex(&net_bridge), ifindex(&net_vxlan)),
        before,
        "the network's bridge or VXLAN device was rebuilt although it was right"
    );

    // Teardown through the API leaves none of the tenant's host objects.
    cloud.os_ok(
        &admin,
        &["server", "remove", "floating", "ip", "vm-a", &fip],
    );
    cloud.os_ok(&admin, &["floating", "ip", "delete", &fip]);
    cloud.os_ok(&other, &["floating", "ip", "delete", &fip_c]);
    cloud.os_ok(&admin, &["server", "delete", "--wait", "vm-a", "vm-b"]);
    cloud.os_ok(&other, &["server", "delete", "--wait", "vm-c"]);
    let other_router = id_of(cloud, &other, &["router", "show", "r-o"]);
    let other_net = id_of(cloud, &other, &["network", "show", "net-o"]);
    for (who, router, subnet, net) in [
        (&admin, "r1", "sub1", "net1"),
        (&other, "r-o", "sub-o", "net-o"),
    ] {
        cloud.os_ok(who, &["router", "remove", "subnet", router, subnet]);
        cloud.os_ok(who, &["router", "unset", "--external-gateway", router]);
        cloud.os_ok(who, &["router", "delete", router]);
        cloud.os_ok(who, &["network", "delete", net]);
    }
    let gone = eventually(Duration::from_secs(60), || {
        let ns = String::from_utf8_lossy(&sh(&["ip", "netns", "list"]).stdout).to_string();
        let links = String::from_utf8_lossy(&sh(&["ip", "-o", "link"]).stdout).to_string();
        // Only this cloud's: another cloud on the machine may have routers.
        [&net_id, &other_net, &router_id, &other_router]
            .iter()
            .all(|id| !ns.contains(id.as_str()) && !links.contains(&id.replace('-', "")[..10]))
            && dnsmasq_pids(&net_id).is_empty()
            && dnsmasq_pids(&other_net).is_empty()
    });
    assert!(
        gone,
        "host objects left after delete:\n{}\n{}",
        String::from_utf8_lossy(&sh(&["ip", "netns", "list"]).stdout),
        String::from_utf8_lossy(&sh(&["ip", "-o", "link"]).stdout)
    );
}
