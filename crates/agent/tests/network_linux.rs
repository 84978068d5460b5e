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
        for sub in ["dhcp", "ra", "metadata"] {
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
    for sub in ["dhcp", "ra"] {
        if let Ok(dirs) = std::fs::read_dir(state_dir.join(sub)) {
            left.extend(
                dirs.flatten()
                    .map(|d| format!("dnsmasq state {}", d.path().display())),
            );
        }
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

/// The address a /64 `prefix` and a MAC make by EUI-64 (what SLAAC gives a
/// guest, and the link-local of an interface with `prefix` `fe80::`).
fn eui64(prefix: &str, mac: &str) -> std::net::Ipv6Addr {
    let p: std::net::Ipv6Addr = prefix.parse().unwrap();
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let s = p.segments();
    std::net::Ipv6Addr::new(
        s[0],
        s[1],
        s[2],
        s[3],
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// The IPv6 addresses of `dev` in `ns` (None: the root namespace) that
/// finished duplicate address detection, as `address/prefix`.
fn ipv6_addrs(ns: Option<&str>, dev: &str) -> Vec<String> {
    let mut argv = vec!["ip"];
    if let Some(ns) = ns {
        argv.extend(["-n", ns]);
    }
    argv.extend(["-6", "-json", "addr", "show", "dev", dev]);
    let out = sh(&argv);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["tentative"].as_bool() != Some(true))
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

fn ipv6_routes(ns: &str) -> String {
    String::from_utf8_lossy(&sh(&["ip", "-n", ns, "-6", "route", "show"]).stdout).to_string()
}

/// Whether a process runs (exists and is no zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Polls `check` every half second for up to `secs` seconds.
fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 2 {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    check()
}

/// IPv6 router advertisements from a router namespace, on the real host: a
/// guest on a SLAAC subnet gets an address in the prefix, a default route
/// via the router's link-local and the network's MTU; a guest on a network
/// with a DHCPv6-stateful and a DHCPv6-stateless subnet gets the route, a
/// SLAAC address in the stateless prefix only. Neither the host (through the
/// network bridge) nor the DHCP namespace takes anything from the RAs, and
/// a pass after they flowed changes nothing. The daemon is restarted when
/// killed and gone with the router.
///
/// Self-contained: VXLAN networks with random VNIs on this agent instance's
/// own UDP port, guests without port security (so no root nftables table
/// and no host-wide sysctl; only the test's own bridges get theirs), random
/// ULA prefixes; everything is removed by the guard whatever happens.
#[tokio::test]
async fn ipv6_router_advertisements_configure_guests_and_nothing_else() {
    if !enabled() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let sfx: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let mut g = Guard::new();
    let oct = 100 + (u8::from_str_radix(&sfx[..2], 16).unwrap() % 100);
    let tenant = format!("10.{oct}.9");
    // Written as `ip` prints it (no leading zeros), for the text matches below.
    let base = format!(
        "fd{}:{:x}",
        &sfx[..2],
        u16::from_str_radix(&sfx[2..6], 16).unwrap()
    );
    let (slaac_prefix, stateful_prefix, stateless_prefix) = (
        format!("{base}:1::"),
        format!("{base}:2::"),
        format!("{base}:3::"),
    );

    let (net_a, net_b) = (NetworkId::new(), NetworkId::new());
    let (sub4, sub_slaac, sub_stateful, sub_stateless) = (
        SubnetId::new(),
        SubnetId::new(),
        SubnetId::new(),
        SubnetId::new(),
    );
    let guest = |net: NetworkId, sub: SubnetId, mac: &str, addr: IpAddr| {
        let mut p = vm_port(net, sub, mac, &addr.to_string(), SecurityGroupId::new());
        (p.port_security, p.security_groups) = (false, vec![]);
        p
    };
    let (mac_a, mac_b) = ("fa:16:3e:bb:00:01", "fa:16:3e:bb:00:02");
    let a = guest(
        net_a,
        sub_slaac,
        mac_a,
        IpAddr::V6(eui64(&slaac_prefix, mac_a)),
    );
    let b = guest(
        net_b,
        sub_stateful,
        mac_b,
        ip(&format!("{stateful_prefix}10")),
    );
    // IPv4 DHCP on network A: its DHCP namespace sees the RAs too.
    let mut dhcp_port = guest(net_a, sub4, "fa:16:3e:bb:00:03", ip(&format!("{tenant}.2")));
    (dhcp_port.device_owner, dhcp_port.tap) = ("network:dhcp".into(), None);
    // A witness on network A that never solicits: configured, it proves an
    // unsolicited (multicast) RA went to every port of the network.
    let mac_w = "fa:16:3e:bb:00:04";
    let w = guest(
        net_a,
        sub_slaac,
        mac_w,
        IpAddr::V6(eui64(&slaac_prefix, mac_w)),
    );
    let (vm_a, vm_b, vm_w) = (
        format!("oxt-{sfx}-6a"),
        format!("oxt-{sfx}-6b"),
        format!("oxt-{sfx}-6w"),
    );
    g.vm(&vm_a, a.tap.as_deref().unwrap(), &a.mac);
    g.vm(&vm_b, b.tap.as_deref().unwrap(), &b.mac);
    g.vm(&vm_w, w.tap.as_deref().unwrap(), &w.mac);
    // Before its link has a carrier (the agent plugs its tap).
    ok(&[
        "ip",
        "netns",
        "exec",
        &vm_w,
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.eth0.router_solicitations=0",
    ]);

    let v6 = |id: SubnetId, prefix: &str, mode: &str| SubnetSpec {
        id,
        cidr: format!("{prefix}/64"),
        ip_version: 6,
        gateway_ip: Some(ip(&format!("{prefix}1"))),
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        ipv6_address_mode: Some(mode.into()),
        ipv6_ra_mode: Some(mode.into()),
    };
    let network =
        |id: NetworkId, vni: u32, subnets: Vec<SubnetSpec>, ports: Vec<PortSpec>| NetworkSpec {
            id,
            kind: NetworkKind::Vxlan { vni },
            mtu: 1450,
            external: false,
            subnets,
            ports,
        };
    let (rif_a, rif_b, rif_c) = (
        "fa:16:3e:bb:00:0a",
        "fa:16:3e:bb:00:0b",
        "fa:16:3e:bb:00:0c",
    );
    let router = RouterId::new();
    let spec = HostNetworkSpec {
        networks: vec![
            network(
                net_a,
                90000 + u32::from(oct),
                vec![
                    SubnetSpec {
                        id: sub4,
                        cidr: format!("{tenant}.0/24"),
                        ip_version: 4,
                        gateway_ip: None,
                        enable_dhcp: true,
                        dns_nameservers: vec![],
                        host_routes: vec![],
                        ipv6_address_mode: None,
                        ipv6_ra_mode: None,
                    },
                    v6(sub_slaac, &slaac_prefix, "slaac"),
                ],
                vec![a.clone(), w.clone(), dhcp_port],
            ),
            network(
                net_b,
                90100 + u32::from(oct),
                vec![
                    v6(sub_stateful, &stateful_prefix, "dhcpv6-stateful"),
                    v6(sub_stateless, &stateless_prefix, "dhcpv6-stateless"),
                ],
                vec![b.clone()],
            ),
        ],
        routers: vec![RouterSpec {
            id: router,
            interfaces: vec![
                RouterInterface {
                    port_id: PortId::new(),
                    network_id: net_a,
                    mac: rif_a.into(),
                    ip: ip(&format!("{slaac_prefix}1")),
                    cidr: format!("{slaac_prefix}/64"),
                },
                RouterInterface {
                    port_id: PortId::new(),
                    network_id: net_b,
                    mac: rif_b.into(),
                    ip: ip(&format!("{stateful_prefix}1")),
                    cidr: format!("{stateful_prefix}/64"),
                },
                RouterInterface {
                    port_id: PortId::new(),
                    network_id: net_b,
                    mac: rif_c.into(),
                    ip: ip(&format!("{stateless_prefix}1")),
                    cidr: format!("{stateless_prefix}/64"),
                },
            ],
            gateway: None,
            floating_ips: vec![],
            routes: vec![],
        }],
        security_groups: vec![],
        metadata_upstream: None,
    };

    // What the agent will make, for the guard to remove if the test fails half-way.
    let rns = names::router_namespace(&router);
    g.namespaces
        .extend([rns.clone(), names::dhcp_namespace(&net_a)]);
    for n in [net_a, net_b] {
        g.links.extend([names::vxlan(&n), names::bridge(&n)]);
    }
    let agent = NetworkAgent::new(
        Arc::new(LinuxDatapath::new()),
        NetworkAgentConfig::new(g.state_dir.path()),
    );
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "first apply: {:?}", r.errors);
    assert!(
        r.created
            .contains(&format!("router advertisements {router}")),
        "{r:?}"
    );
    // The guests ask for an RA at once (a link coming up sends solicitations).
    for vm in [&vm_a, &vm_b] {
        ok(&["ip", "-n", vm, "link", "set", "dev", "eth0", "down"]);
        ok(&["ip", "-n", vm, "link", "set", "dev", "eth0", "up"]);
    }

    // SLAAC: the guest's EUI-64 address in the prefix, the router's
    // link-local as default router, the network's MTU.
    let want_a = format!("{}/64", eui64(&slaac_prefix, mac_a));
    let router_ll_a = eui64("fe80::", rif_a).to_string();
    let default_via = |vm: &str, ll: &str| {
        ipv6_routes(vm)
            .lines()
            .any(|l| l.starts_with(&format!("default via {ll} dev eth0")) && l.contains("proto ra"))
    };
    let configured = wait_for(60, || {
        ipv6_addrs(Some(&vm_a), "eth0").contains(&want_a) && default_via(&vm_a, &router_ll_a)
    });
    assert!(
        configured,
        "guest A: addresses {:?}, routes:\n{}",
        ipv6_addrs(Some(&vm_a), "eth0"),
        ipv6_routes(&vm_a)
    );
    let mtu = sh(&[
        "ip",
        "netns",
        "exec",
        &vm_a,
        "sysctl",
        "-n",
        "net.ipv6.conf.eth0.mtu",
    ]);
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1450");
    let gw_a = format!("{slaac_prefix}1");
    assert!(
        (0..3).any(|_| in_ns(&vm_a, &["ping", "-6", "-c", "1", "-W", "2", &gw_a])),
        "guest A cannot ping the router at {gw_a}"
    );

    // On network B, from two router interfaces: DHCPv6-stateful gives the
    // default route and the on-link prefix but no SLAAC address;
    // DHCPv6-stateless gives a SLAAC address.
    let router_ll_b = eui64("fe80::", rif_b).to_string();
    let want_b = format!("{}/64", eui64(&stateless_prefix, mac_b));
    // The kernel's route for an on-link prefix from an RA expires with it.
    let on_link = |vm: &str| {
        ipv6_routes(vm)
            .lines()
            .any(|l| l.starts_with(&format!("{base}:2::/64 dev eth0 ")) && l.contains("expires"))
    };
    let routed = wait_for(60, || {
        default_via(&vm_b, &router_ll_b)
            && on_link(&vm_b)
            && ipv6_addrs(Some(&vm_b), "eth0").contains(&want_b)
    });
    assert!(
        routed,
        "guest B: addresses {:?}, routes:\n{}",
        ipv6_addrs(Some(&vm_b), "eth0"),
        ipv6_routes(&vm_b)
    );
    let b_addrs = ipv6_addrs(Some(&vm_b), "eth0");
    assert!(
        !b_addrs.iter().any(|a| a.starts_with(&format!("{base}:2:"))),
        "guest B made a SLAAC address: {b_addrs:?}"
    );

    // Nothing else took the RAs: the host's bridge has no IPv6 at all, the
    // DHCP namespace has only its own addresses and no IPv6 default route
    // (once a multicast RA has reached everyone).
    let want_w = format!("{}/64", eui64(&slaac_prefix, mac_w));
    let multicast = wait_for(60, || {
        ipv6_addrs(Some(&vm_w), "eth0").contains(&want_w) && default_via(&vm_w, &router_ll_a)
    });
    assert!(
        multicast,
        "no unsolicited RA reached the witness: {:?}, routes:\n{}",
        ipv6_addrs(Some(&vm_w), "eth0"),
        ipv6_routes(&vm_w)
    );
    let br_a = names::bridge(&net_a);
    assert!(
        ipv6_addrs(None, &br_a).is_empty(),
        "{:?}",
        ipv6_addrs(None, &br_a)
    );
    let dns = names::dhcp_namespace(&net_a);
    let dns_dev = oxistack_agent::network::names::dhcp_inner(&net_a);
    let dns_addrs = ipv6_addrs(Some(&dns), &dns_dev);
    assert!(
        !dns_addrs
            .iter()
            .any(|a| a.starts_with(&format!("{base}:1:"))),
        "the DHCP namespace configured itself: {dns_addrs:?}"
    );
    assert!(
        !ipv6_routes(&dns).contains("default"),
        "{}",
        ipv6_routes(&dns)
    );
    let again = agent.converge(&spec).await;
    assert!(
        again.is_noop(),
        "a pass after the RAs changed things: {again:?}"
    );

    // Killed: started again by the next pass.
    let pidfile = g
        .state_dir
        .path()
        .join("ra")
        .join(router.to_string())
        .join("pid");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    ok(&["kill", &pid]);
    assert!(
        wait_for(10, || !alive(&pid)),
        "dnsmasq {pid} outlived SIGTERM"
    );
    let r = agent.converge(&spec).await;
    assert!(
        r.repaired
            .contains(&format!("router advertisements {router} (restarted)")),
        "{r:?}"
    );
    let new_pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new_pid, pid);
    assert!(alive(&new_pid));

    // Everything goes with an empty spec.
    let r = agent.converge(&HostNetworkSpec::default()).await;
    assert!(r.errors.is_empty(), "teardown: {:?}", r.errors);
    assert!(!alive(&new_pid), "dnsmasq {new_pid} left running");
    let left = our_leftovers(g.state_dir.path(), &spec);
    assert!(left.is_empty(), "left behind: {left:?}");
}
