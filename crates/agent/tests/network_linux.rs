//! The network role on the real host: bridges, VXLAN, namespaces, nftables
//! and dnsmasq, with "VMs" played by network namespaces (a veth whose
//! bridge end is the port's tap, the guest end carrying the port's MAC).
//!
//! Gated on `OXISTACK_NET_TESTS=1`: needs root, iproute2, nftables,
//! dnsmasq, busybox (udhcpc), ping and netcat-openbsd. Every name has a
//! random suffix; everything is removed by a Drop guard even on failure;
//! only PIDs this test started are killed. Traffic stays inside the
//! test's own namespaces and bridges. The agent touches only its own
//! instance's tables (`oxistack-<instance>`) and the objects it recorded as
//! its own, so it runs beside other clouds on the machine.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use oxistack_agent::network::{NetworkAgent, NetworkAgentConfig};
use oxistack_bus::network::*;
use oxistack_model::{NetworkId, PortId, RouterId, SecurityGroupId, SecurityGroupRuleId, SubnetId};
use oxistack_netdev::LinuxDatapath;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn enabled() -> bool {
    if std::env::var("OXISTACK_NET_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set OXISTACK_NET_TESTS=1 (root, iproute2, nftables, dnsmasq, busybox)");
    false
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) -> bool {
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend_from_slice(args);
    sh(&argv).status.success()
}

/// What the test made itself, removed on drop whatever happened.
struct Guard {
    namespaces: Vec<String>,
    links: Vec<String>,
    children: Vec<Child>,
    /// The agent's root tables were made by this test.
    nft_tables: bool,
    state_dir: tempfile::TempDir,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            namespaces: vec![],
            links: vec![],
            children: vec![],
            nft_tables: false,
            state_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A "VM": a namespace with `eth0` (the port's MAC) whose peer is the
    /// port's tap, left for the agent to plug.
    fn vm(&mut self, ns: &str, tap: &str, mac: &str) {
        ok(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        ok(&[
            "ip", "link", "add", "name", tap, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        self.links.push(tap.to_string());
        ok(&[
            "ip", "-n", ns, "link", "set", "dev", "eth0", "address", mac, "up",
        ]);
        ok(&["ip", "-n", ns, "link", "set", "dev", "lo", "up"]);
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Daemons the agent started for this test: by the pids they wrote.
        for sub in ["dhcp", "metadata"] {
            if let Ok(dirs) = std::fs::read_dir(self.state_dir.path().join(sub)) {
                for d in dirs.flatten() {
                    if let Ok(pid) = std::fs::read_to_string(d.path().join("pid")) {
                        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
                            .unwrap_or_default();
                        if String::from_utf8_lossy(&cmdline).contains(&*d.path().to_string_lossy())
                        {
                            let _ = Command::new("kill").arg(pid.trim()).status();
                        }
                    }
                }
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "delete", ns])
                .stderr(Stdio::null())
                .status();
        }
        for l in &self.links {
            let _ = Command::new("ip")
                .args(["link", "delete", "dev", l])
                .stderr(Stdio::null())
                .status();
        }
        if self.nft_tables {
            let table = root_table(self.state_dir.path());
            for family in ["bridge", "inet"] {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, &table])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn udhcpc_script(dir: &Path) -> String {
    let path = dir.join("udhcpc.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nip addr add \"$ip/$mask\" dev \"$interface\"\n\
         [ -n \"$router\" ] && ip route replace default via \"$router\"\nexit 0\n",
    )
    .unwrap();
    ok(&["chmod", "+x", &path.display().to_string()]);
    path.display().to_string()
}

fn dhcp(ns: &str, script: &str) -> bool {
    in_ns(
        ns,
        &[
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", script,
        ],
    )
}

fn addr_of(ns: &str) -> String {
    let out = sh(&["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn ping(ns: &str, to: &str) -> bool {
    // A few tries: the first packets may wait on ARP.
    (0..3).any(|_| in_ns(ns, &["ping", "-c", "1", "-W", "2", to]))
}

fn ping_from(ns: &str, from: &str, to: &str) -> bool {
    (0..2).any(|_| in_ns(ns, &["ping", "-c", "1", "-W", "1", "-I", from, to]))
}

fn tcp(ns: &str, to: &str, port: &str) -> bool {
    in_ns(ns, &["nc", "-z", "-w", "2", to, port])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vm_port(net: NetworkId, sub: SubnetId, mac: &str, addr: &str, sg: SecurityGroupId) -> PortSpec {
    let id = PortId::new();
    PortSpec {
        id,
        network_id: net,
        mac: mac.into(),
        fixed_ips: vec![FixedIp {
            subnet_id: sub,
            ip: ip(addr),
        }],
        device_owner: "compute:nova".into(),
        device_id: String::new(),
        dns_name: None,
        tap: Some(names::tap(&id)),
        port_security: true,
        allowed_address_pairs: vec![],
        security_groups: vec![sg],
        admin_state_up: true,
    }
}

fn rule(direction: Direction, protocol: Option<&str>, port: Option<u16>) -> RuleSpec {
    RuleSpec {
        id: SecurityGroupRuleId::new(),
        direction,
        ethertype: 4,
        protocol: protocol.map(str::to_string),
        port_range_min: port,
        port_range_max: port,
        remote_ip_prefix: None,
        remote_group_id: None,
    }
}

/// The root nftables tables of the agent instance on `state_dir`.
fn root_table(state_dir: &Path) -> String {
    oxistack_agent::network::names::root_table(&NetworkAgentConfig::new(state_dir).instance)
}

/// The host objects the agent made for `spec` that are still there. Only
/// names derived from the test's own IDs count: other clouds on the machine
/// (CI runs several) have bridges and namespaces with the same prefixes.
fn our_leftovers(state_dir: &Path, spec: &HostNetworkSpec) -> Vec<String> {
    use oxistack_agent::network::names as agent_names;
    let mut left = vec![];
    let links = String::from_utf8_lossy(&sh(&["ip", "-o", "link", "show"]).stdout).to_string();
    let link_names: Vec<String> = links
        .lines()
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .split('@')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut wanted_gone: Vec<String> = vec![];
    for n in &spec.networks {
        if matches!(n.kind, NetworkKind::Vxlan { .. }) {
            wanted_gone.extend([names::bridge(&n.id), names::vxlan(&n.id)]);
        }
        wanted_gone.push(agent_names::dhcp_root(&n.id));
    }
    for r in &spec.routers {
        wanted_gone.extend(
            r.interfaces
                .iter()
                .map(|i| agent_names::router_port_root(&i.port_id)),
        );
        wanted_gone.extend(
            r.gateway
                .iter()
                .map(|g| agent_names::gateway_root(&g.port_id)),
        );
    }
    for name in wanted_gone {
        if link_names.contains(&name) {
            left.push(format!("link {name}"));
        }
    }
    let nss = String::from_utf8_lossy(&sh(&["ip", "netns", "list"]).stdout).to_string();
    let nss: Vec<&str> = nss
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let ours = spec
        .networks
        .iter()
        .map(|n| names::dhcp_namespace(&n.id))
        .chain(spec.routers.iter().map(|r| names::router_namespace(&r.id)));
    for ns in ours {
        if nss.contains(&ns.as_str()) {
            left.push(format!("namespace {ns}"));
        }
    }
    let tables = String::from_utf8_lossy(&sh(&["nft", "list", "tables"]).stdout).to_string();
    for t in tables.lines() {
        if t.ends_with(&format!(" {}", root_table(state_dir))) {
            left.push(t.to_string());
        }
    }
    if let Ok(dirs) = std::fs::read_dir(state_dir.join("dhcp")) {
        left.extend(
            dirs.flatten()
                .map(|d| format!("dnsmasq state {}", d.path().display())),
        );
    }
    left
}

#[tokio::test]
async fn two_vms_dhcp_ping_security_groups_router_floating_ip_and_teardown() {
    if !enabled() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let sfx: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let mut g = Guard::new();
    let oct = 100 + (u8::from_str_radix(&sfx[..2], 16).unwrap() % 100);
    let tenant = format!("10.{oct}.7");
    let public = format!("172.31.{oct}");

    let (net, ext): (NetworkId, NetworkId) = (NetworkId::new(), NetworkId::new());
    let sub = SubnetId::new();
    let sg = SecurityGroupId::new();
    let a = vm_port(net, sub, "fa:16:3e:aa:00:01", &format!("{tenant}.11"), sg);
    let b = vm_port(net, sub, "fa:16:3e:aa:00:02", &format!("{tenant}.12"), sg);
    let mut dhcp_port = vm_port(net, sub, "fa:16:3e:aa:00:03", &format!("{tenant}.2"), sg);
    (
        dhcp_port.device_owner,
        dhcp_port.tap,
        dhcp_port.port_security,
    ) = ("network:dhcp".into(), None, false);
    let ext_bridge = format!("oxt{sfx}");
    let (vm_a, vm_b, outside) = (
        format!("oxt-{sfx}-a"),
        format!("oxt-{sfx}-b"),
        format!("oxt-{sfx}-out"),
    );

    // The "outside host" on a test-made external bridge.
    ok(&["ip", "link", "add", "name", &ext_bridge, "type", "bridge"]);
    g.links.push(ext_bridge.clone());
    ok(&["ip", "link", "set", "dev", &ext_bridge, "up"]);
    ok(&["ip", "netns", "add", &outside]);
    g.namespaces.push(outside.clone());
    let out_veth = format!("oxto{sfx}");
    ok(&[
        "ip", "link", "add", "name", &out_veth, "type", "veth", "peer", "name", "eth0", "netns",
        &outside,
    ]);
    g.links.push(out_veth.clone());
    ok(&[
        "ip",
        "link",
        "set",
        "dev",
        &out_veth,
        "master",
        &ext_bridge,
        "up",
    ]);
    ok(&[
        "ip",
        "-n",
        &outside,
        "addr",
        "add",
        &format!("{public}.1/24"),
        "dev",
        "eth0",
    ]);
    ok(&["ip", "-n", &outside, "link", "set", "dev", "eth0", "up"]);

    g.vm(&vm_a, a.tap.as_deref().unwrap(), &a.mac);
    g.vm(&vm_b, b.tap.as_deref().unwrap(), &b.mac);

    let rif = PortId::new();
    let mut spec = HostNetworkSpec {
        networks: vec![
            NetworkSpec {
                id: net,
                kind: NetworkKind::Vxlan {
                    vni: 70000 + u32::from(oct),
                },
                mtu: 1450,
                external: false,
                subnets: vec![SubnetSpec {
                    id: sub,
                    cidr: format!("{tenant}.0/24"),
                    ip_version: 4,
                    gateway_ip: Some(ip(&format!("{tenant}.1"))),
                    enable_dhcp: true,
                    dns_nameservers: vec![],
                    host_routes: vec![],
                    ipv6_address_mode: None,
                    ipv6_ra_mode: None,
                }],
                ports: vec![a.clone(), b.clone(), dhcp_port],
            },
            NetworkSpec {
                id: ext,
                kind: NetworkKind::Flat {
                    bridge: ext_bridge.clone(),
                },
                mtu: 1500,
                external: true,
                subnets: vec![],
                ports: vec![],
            },
        ],
        routers: vec![RouterSpec {
            id: RouterId::new(),
            interfaces: vec![RouterInterface {
                port_id: rif,
                network_id: net,
                mac: "fa:16:3e:aa:00:04".into(),
                ip: ip(&format!("{tenant}.1")),
                cidr: format!("{tenant}.0/24"),
            }],
            gateway: Some(RouterGateway {
                port_id: PortId::new(),
                network_id: ext,
                mac: "fa:16:3e:aa:00:05".into(),
                ip: ip(&format!("{public}.10")),
                cidr: format!("{public}.0/24"),
                gateway_ip: Some(ip(&format!("{public}.1"))),
                enable_snat: true,
            }),
            floating_ips: vec![FloatingIpSpec {
                floating_ip: ip(&format!("{public}.20")),
                fixed_ip: a.fixed_ips[0].ip,
            }],
            routes: vec![],
        }],
        security_groups: vec![SecurityGroupSpec {
            id: sg,
            rules: vec![
                rule(Direction::Egress, None, None),
                rule(Direction::Ingress, Some("icmp"), None),
            ],
            member_ips: vec![a.fixed_ips[0].ip, b.fixed_ips[0].ip],
        }],
        metadata_upstream: None,
    };

    // What the agent will make, for the guard to remove if the test fails half-way.
    g.namespaces.push(names::dhcp_namespace(&net));
    g.namespaces
        .push(names::router_namespace(&spec.routers[0].id));
    g.links.extend([names::vxlan(&net), names::bridge(&net)]);
    g.nft_tables = true;
    let agent = NetworkAgent::new(
        Arc::new(LinuxDatapath::new()),
        NetworkAgentConfig::new(g.state_dir.path()),
    );
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "first apply: {:?}", r.errors);
    let again = agent.converge(&spec).await;
    assert!(again.is_noop(), "second apply changed things: {again:?}");

    // DHCP: each VM gets its own fixed IP, and only that.
    let script = udhcpc_script(g.state_dir.path());
    assert!(dhcp(&vm_a, &script), "no lease for A");
    assert!(dhcp(&vm_b, &script), "no lease for B");
    assert!(
        addr_of(&vm_a).contains(&format!("{tenant}.11/24")),
        "{}",
        addr_of(&vm_a)
    );
    assert!(
        addr_of(&vm_b).contains(&format!("{tenant}.12/24")),
        "{}",
        addr_of(&vm_b)
    );

    // Ping between them (icmp ingress allowed).
    assert!(ping(&vm_a, &format!("{tenant}.12")), "A cannot ping B");
    assert!(ping(&vm_b, &format!("{tenant}.11")), "B cannot ping A");

    // Spoofing: a source address that is not the port's gets nothing through.
    ok(&[
        "ip",
        "-n",
        &vm_a,
        "addr",
        "add",
        &format!("{tenant}.99/24"),
        "dev",
        "eth0",
    ]);
    assert!(
        !ping_from(&vm_a, &format!("{tenant}.99"), &format!("{tenant}.12")),
        "spoofed source got through"
    );
    ok(&[
        "ip",
        "-n",
        &vm_a,
        "addr",
        "delete",
        &format!("{tenant}.99/24"),
        "dev",
        "eth0",
    ]);

    // Security group: tcp/22 closed, opened by a rule, closed again without it.
    g.spawn_in(&vm_b, &["nc", "-lk", "22"]);
    let b_ip = format!("{tenant}.12");
    // The listener starts asynchronously; wait until B itself can reach it.
    for _ in 0..50 {
        if tcp(&vm_b, "127.0.0.1", "22") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!tcp(&vm_a, &b_ip, "22"), "ssh open without a rule");
    spec.security_groups[0]
        .rules
        .push(rule(Direction::Ingress, Some("tcp"), Some(22)));
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(tcp(&vm_a, &b_ip, "22"), "ssh closed with a rule");
    spec.security_groups[0].rules.pop();
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        !tcp(&vm_a, &b_ip, "22"),
        "ssh open after the rule was removed"
    );

    // Floating IP from outside, SNAT from inside (outside has no route to the tenant net).
    assert!(
        ping(&outside, &format!("{public}.20")),
        "floating IP unreachable from outside"
    );
    assert!(
        ping(&vm_b, &format!("{public}.1")),
        "B cannot reach the outside host through SNAT"
    );

    // Everything goes with an empty spec, and the external bridge stays.
    let r = agent.converge(&HostNetworkSpec::default()).await;
    assert!(r.errors.is_empty(), "teardown: {:?}", r.errors);
    let left = our_leftovers(g.state_dir.path(), &spec);
    assert!(left.is_empty(), "left behind: {left:?}");
    for tap in [a.tap.as_deref().unwrap(), b.tap.as_deref().unwrap()] {
        assert!(
            !sh(&["ip", "link", "show", "dev", tap]).status.success(),
            "tap {tap} left"
        );
    }
    assert!(
        sh(&["ip", "link", "show", "dev", &ext_bridge])
            .status
            .success(),
        "the external bridge was removed"
    );
    let ports_on_ext =
        String::from_utf8_lossy(&sh(&["ip", "-o", "link", "show", "master", &ext_bridge]).stdout)
            .to_string();
    assert!(!ports_on_ext.contains("oxrg-"), "{ports_on_ext}");
    assert!(agent.converge(&HostNetworkSpec::default()).await.is_noop());
}
