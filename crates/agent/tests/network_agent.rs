//! The network role against the fake datapath: convergence, idempotence,
//! repair, teardown, error reporting; and the golden files of what it
//! generates (nftables rulesets, dnsmasq files, proxy arguments).
//!
//! Update the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p oxistack-agent --test network_agent`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxistack_agent::network::{NetworkAgent, NetworkAgentConfig};
use oxistack_bus::network::*;
use oxistack_model::{NetworkId, PortId, RouterId, SecurityGroupId, SecurityGroupRuleId, SubnetId};
use oxistack_netdev::{Datapath, FakeDatapath, LinkChange};

fn id<T: std::str::FromStr>(n: u32) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{n:08x}-0000-4000-8000-{n:012x}").parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(
    pid: u32,
    net: NetworkId,
    subnet: SubnetId,
    mac: &str,
    addr: &str,
    owner: &str,
) -> PortSpec {
    PortSpec {
        id: id(pid),
        network_id: net,
        mac: mac.into(),
        fixed_ips: vec![FixedIp {
            subnet_id: subnet,
            ip: ip(addr),
        }],
        device_owner: owner.into(),
        device_id: String::new(),
        dns_name: None,
        tap: None,
        port_security: owner.starts_with("compute:"),
        allowed_address_pairs: vec![],
        security_groups: vec![],
        admin_state_up: true,
    }
}

/// A tenant VXLAN network with two VM ports, a DHCP port and a router to an
/// external flat network with a floating IP; a security group allowing
/// ping from anywhere and ssh from its own members.
fn sample() -> HostNetworkSpec {
    let (net, ext): (NetworkId, NetworkId) = (id(1), id(2));
    let (sub, ext_sub): (SubnetId, SubnetId) = (id(11), id(12));
    let sg: SecurityGroupId = id(21);
    let mut vm1 = port(
        101,
        net,
        sub,
        "fa:16:3e:00:00:01",
        "10.0.0.11",
        "compute:nova",
    );
    vm1.tap = Some(names::tap(&vm1.id));
    vm1.dns_name = Some("vm-one".into());
    vm1.security_groups = vec![sg];
    vm1.allowed_address_pairs = vec![AddressPair {
        ip_address: "10.0.0.128/25".into(),
        mac: None,
    }];
    let mut vm2 = port(
        102,
        net,
        sub,
        "fa:16:3e:00:00:02",
        "10.0.0.12",
        "compute:nova",
    );
    vm2.tap = Some(names::tap(&vm2.id));
    vm2.security_groups = vec![sg];
    let dhcp = port(
        103,
        net,
        sub,
        "fa:16:3e:00:00:03",
        "10.0.0.2",
        "network:dhcp",
    );
    let rif = port(
        104,
        net,
        sub,
        "fa:16:3e:00:00:04",
        "10.0.0.1",
        "network:router_interface",
    );
    let rule = |n: u32,
                direction: Direction,
                protocol: Option<&str>,
                min: Option<u16>,
                prefix: Option<&str>,
                group: Option<SecurityGroupId>| RuleSpec {
        id: id::<SecurityGroupRuleId>(n),
        direction,
        ethertype: 4,
        protocol: protocol.map(str::to_string),
        port_range_min: min,
        port_range_max: min,
        remote_ip_prefix: prefix.map(str::to_string),
        remote_group_id: group,
    };
    HostNetworkSpec {
        networks: vec![
            NetworkSpec {
                id: net,
                kind: NetworkKind::Vxlan { vni: 1001 },
                mtu: 1450,
                external: false,
                subnets: vec![SubnetSpec {
                    id: sub,
                    cidr: "10.0.0.0/24".into(),
                    ip_version: 4,
                    gateway_ip: Some(ip("10.0.0.1")),
                    enable_dhcp: true,
                    dns_nameservers: vec![ip("10.0.0.2")],
                    host_routes: vec![("192.168.50.0/24".into(), ip("10.0.0.254"))],
                    ipv6_address_mode: None,
                    ipv6_ra_mode: None,
                }],
                ports: vec![vm1, vm2, dhcp, rif],
            },
            NetworkSpec {
                id: ext,
                kind: NetworkKind::Flat {
                    bridge: "br-test-ext".into(),
                },
                mtu: 1500,
                external: true,
                subnets: vec![SubnetSpec {
                    id: ext_sub,
                    cidr: "172.24.4.0/24".into(),
                    ip_version: 4,
                    gateway_ip: Some(ip("172.24.4.1")),
                    enable_dhcp: false,
                    dns_nameservers: vec![],
                    host_routes: vec![],
                    ipv6_address_mode: None,
                    ipv6_ra_mode: None,
                }],
                ports: vec![],
            },
        ],
        routers: vec![RouterSpec {
            id: id::<RouterId>(31),
            interfaces: vec![RouterInterface {
                port_id: id(104),
                network_id: net,
                mac: "fa:16:3e:00:00:04".into(),
                ip: ip("10.0.0.1"),
                cidr: "10.0.0.0/24".into(),
            }],
            gateway: Some(RouterGateway {
                port_id: id(105),
                network_id: ext,
                mac: "fa:16:3e:00:00:05".into(),
                ip: ip("172.24.4.10"),
                cidr: "172.24.4.0/24".into(),
                gateway_ip: Some(ip("172.24.4.1")),
                enable_snat: true,
            }),
            floating_ips: vec![FloatingIpSpec {
                floating_ip: ip("172.24.4.20"),
                fixed_ip: ip("10.0.0.11"),
            }],
            routes: vec![("10.9.0.0/16".into(), ip("10.0.0.254"))],
        }],
        security_groups: vec![SecurityGroupSpec {
            id: sg,
            rules: vec![
                rule(201, Direction::Egress, None, None, None, None),
                rule(
                    202,
                    Direction::Ingress,
                    Some("icmp"),
                    None,
                    Some("0.0.0.0/0"),
                    None,
                ),
                rule(
                    203,
                    Direction::Ingress,
                    Some("tcp"),
                    Some(22),
                    None,
                    Some(sg),
                ),
            ],
            member_ips: vec![ip("10.0.0.11"), ip("10.0.0.12")],
        }],
        metadata_upstream: Some("/run/oxistack/metadata.sock".into()),
    }
}

fn config(dir: &Path) -> NetworkAgentConfig {
    let mut c = NetworkAgentConfig::new(dir);
    c.metadata_proxy_command = vec!["/usr/bin/oxistack".into(), "metadata-proxy".into()];
    c
}

/// The root tables of the test agent's instance.
fn table() -> String {
    oxistack_agent::network::names::root_table(&config(Path::new("/state")).instance)
}

fn agent() -> (Arc<FakeDatapath>, NetworkAgent) {
    let fake = Arc::new(FakeDatapath::new());
    let agent = NetworkAgent::new(fake.clone(), config(Path::new("/state")));
    (fake, agent)
}

#[tokio::test]
async fn first_apply_builds_everything_and_the_second_is_a_noop() {
    let (fake, agent) = agent();
    let spec = sample();
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let net = &spec.networks[0];
    for want in [
        format!("bridge {}", names::bridge(&net.id)),
        "bridge br-test-ext".to_string(),
        format!("vxlan {}", names::vxlan(&net.id)),
        format!("tap {}", net.ports[0].tap.as_ref().unwrap()),
        format!("namespace {}", names::dhcp_namespace(&net.id)),
        format!("namespace {}", names::router_namespace(&spec.routers[0].id)),
        format!("nftables bridge {}", table()),
        format!("nftables inet {}", table()),
        format!("dnsmasq {}", net.id),
    ] {
        assert!(r.created.contains(&want), "{want} not in {:?}", r.created);
    }
    let root = fake.links(None).await.unwrap();
    let vx = root
        .iter()
        .find(|l| l.name == names::vxlan(&net.id))
        .unwrap();
    assert_eq!(
        (vx.vxlan_id, vx.master.as_deref(), vx.mtu, vx.up),
        (
            Some(1001),
            Some(names::bridge(&net.id).as_str()),
            1450,
            true
        )
    );
    let tap = root
        .iter()
        .find(|l| Some(&l.name) == net.ports[1].tap.as_ref())
        .unwrap();
    assert_eq!(tap.master.as_deref(), Some(names::bridge(&net.id).as_str()));
    let rns = names::router_namespace(&spec.routers[0].id);
    assert_eq!(
        fake.sysctl(Some(&rns), "net.ipv4.ip_forward")
            .await
            .unwrap(),
        "1"
    );
    let routes = fake.routes(Some(&rns)).await.unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "default" && r.via == ip("172.24.4.1")),
        "{routes:?}"
    );
    let gw_addrs = fake
        .addresses(
            Some(&rns),
            &format!(
                "qg-{}",
                &id::<PortId>(105).as_uuid().simple().to_string()[..11]
            ),
        )
        .await
        .unwrap();
    assert!(
        gw_addrs.contains(&"172.24.4.20/32".to_string()),
        "{gw_addrs:?}"
    );
    let dns = names::dhcp_namespace(&net.id);
    let dhcp_addrs = fake
        .addresses(
            Some(&dns),
            &format!("ns-{}", &net.id.as_uuid().simple().to_string()[..11]),
        )
        .await
        .unwrap();
    // A router serves this network's metadata: no 169.254.169.254 in DHCP.
    assert_eq!(dhcp_addrs, vec!["10.0.0.2/24".to_string()]);
    let daemons = fake.daemons();
    assert_eq!(daemons.iter().filter(|d| d.argv[0] == "dnsmasq").count(), 1);
    let proxies: Vec<_> = daemons
        .iter()
        .filter(|d| d.argv[1] == "metadata-proxy")
        .collect();
    assert_eq!(proxies.len(), 1);
    assert!(
        proxies[0].argv.join(" ").contains("--listen 10.0.0.1:9697"),
        "{:?}",
        proxies[0].argv
    );
    assert_eq!(proxies[0].ns.as_deref(), Some(rns.as_str()));
    assert_eq!(
        fake.sysctl(None, "net.bridge.bridge-nf-call-iptables")
            .await
            .unwrap(),
        "1"
    );

    let again = agent.converge(&spec).await;
    assert!(again.is_noop(), "{again:?}");
}

#[tokio::test]
async fn an_empty_spec_removes_everything_of_ours_and_nothing_else() {
    let (fake, agent) = agent();
    fake.add_link(
        None,
        &oxistack_netdev::NewLink::Bridge {
            name: "docker0".into(),
        },
    )
    .await
    .unwrap();
    fake.add_link(
        None,
        &oxistack_netdev::NewLink::Tap {
            name: "tap-someone".into(),
        },
    )
    .await
    .unwrap();
    fake.add_namespace("someone-else").await.unwrap();
    let r = agent.converge(&sample()).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    let r = agent.converge(&HostNetworkSpec::default()).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(!r.removed.is_empty());
    let names: Vec<String> = fake
        .links(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    // The external flat bridge is not ours to delete (it has no OxiStack prefix).
    assert_eq!(names, vec!["br-test-ext", "docker0", "tap-someone"]);
    assert_eq!(fake.namespaces().await.unwrap(), vec!["someone-else"]);
    assert!(fake.nft_tables(None).await.unwrap().is_empty());
    assert!(fake.daemons().is_empty());
    assert!(agent.converge(&HostNetworkSpec::default()).await.is_noop());
}

#[tokio::test]
async fn what_was_removed_or_changed_by_hand_is_repaired() {
    let (fake, agent) = agent();
    let spec = sample();
    agent.converge(&spec).await;
    let net = &spec.networks[0];
    let rns = names::router_namespace(&spec.routers[0].id);
    let br = names::bridge(&net.id);
    fake.set_link(
        None,
        &br,
        &LinkChange {
            mtu: Some(9000),
            up: Some(false),
            ..LinkChange::default()
        },
    )
    .await
    .unwrap();
    fake.delete_link(None, &names::vxlan(&net.id))
        .await
        .unwrap();
    fake.set_sysctl(Some(&rns), "net.ipv4.ip_forward", "0")
        .await
        .unwrap();
    fake.tamper_flush_chain(None, "inet", &table(), "forward");
    let dnsmasq = fake
        .daemons()
        .into_iter()
        .find(|d| d.argv[0] == "dnsmasq")
        .unwrap();
    fake.crash_daemon(dnsmasq.pid);

    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.repaired.contains(&format!("bridge {br}")), "{r:?}");
    assert!(
        r.created
            .contains(&format!("vxlan {}", names::vxlan(&net.id))),
        "{r:?}"
    );
    assert!(
        r.repaired
            .contains(&format!("sysctl net.ipv4.ip_forward=1 in {rns}")),
        "{r:?}"
    );
    assert!(
        r.repaired.contains(&format!("nftables inet {}", table())),
        "{r:?}"
    );
    assert!(
        r.repaired
            .contains(&format!("dnsmasq {} (restarted)", net.id)),
        "{r:?}"
    );
    let l = fake
        .links(None)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.name == br)
        .unwrap();
    assert_eq!((l.mtu, l.up), (1450, true));
    assert!(agent.converge(&spec).await.is_noop());
}

#[tokio::test]
async fn a_deleted_networks_vni_can_be_reused_in_the_same_pass() {
    // The store frees a deleted network's VNI at once; the next network may get it
    // before any pass removed the old device, and the kernel refuses two VXLAN
    // devices with one VNI (the fake refuses it the same way).
    let (fake, agent) = agent();
    let spec = sample();
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let old = spec.networks[0].clone();
    assert!(matches!(old.kind, NetworkKind::Vxlan { .. }), "{old:?}");
    let new_id: NetworkId = id(3);
    let next = HostNetworkSpec {
        networks: vec![
            NetworkSpec {
                id: new_id,
                ports: vec![],
                ..old.clone()
            },
            spec.networks[1].clone(),
        ],
        routers: vec![],
        ..spec.clone()
    };
    let r = agent.converge(&next).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.created
            .contains(&format!("vxlan {}", names::vxlan(&new_id))),
        "{r:?}"
    );
    assert!(
        r.removed
            .contains(&format!("link {}", names::vxlan(&old.id))),
        "{r:?}"
    );
    let links = fake.links(None).await.unwrap();
    assert!(links.iter().any(|l| l.name == names::vxlan(&new_id)));
    assert!(!links.iter().any(|l| l.name == names::vxlan(&old.id)));
    assert!(agent.converge(&next).await.is_noop());
}

#[tokio::test]
async fn an_existing_interface_that_is_not_a_bridge_is_reported_not_trusted() {
    let (fake, agent) = agent();
    fake.add_link(
        None,
        &oxistack_netdev::NewLink::Tap {
            name: "br-test-ext".into(),
        },
    )
    .await
    .unwrap();
    let r = agent.converge(&sample()).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("br-test-ext") && e.contains("not a bridge")),
        "{:?}",
        r.errors
    );
    // The rest was still built.
    assert!(r.created.iter().any(|c| c.starts_with("namespace oxdhcp-")));
}

#[tokio::test]
async fn failures_are_all_reported_and_the_next_pass_finishes_the_work() {
    let (fake, agent) = agent();
    let spec = sample();
    fake.fail_matching("add_link root oxbr-");
    fake.fail_matching("nft_apply oxrouter-");
    fake.fail_matching("spawn_daemon oxdhcp-");
    let r = agent.converge(&spec).await;
    assert!(r.errors.len() >= 3, "{:?}", r.errors);
    assert!(r.errors.iter().any(|e| e.contains("bridge oxbr-")));
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("nftables ip oxistack-nat")));
    assert!(r.errors.iter().any(|e| e.contains("dnsmasq")));
    // Past the failures, the other objects were made.
    assert!(r.created.contains(&"bridge br-test-ext".to_string()));
    assert!(r
        .created
        .iter()
        .any(|c| c.starts_with("namespace oxrouter-")));

    fake.clear_failures();
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.created.iter().any(|c| c.starts_with("bridge oxbr-")),
        "{r:?}"
    );
    assert!(agent.converge(&spec).await.is_noop());
}

#[tokio::test]
async fn a_tap_qemu_made_is_adopted_and_plugged() {
    let (fake, agent) = agent();
    let spec = sample();
    let tap = spec.networks[0].ports[0].tap.clone().unwrap();
    fake.add_link(None, &oxistack_netdev::NewLink::Tap { name: tap.clone() })
        .await
        .unwrap();
    let r = agent.converge(&spec).await;
    assert!(!r.created.contains(&format!("tap {tap}")));
    assert!(r.repaired.contains(&format!("tap {tap}")), "{r:?}");
    let l = fake
        .links(None)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.name == tap)
        .unwrap();
    assert_eq!(l.master, Some(names::bridge(&spec.networks[0].id)));
}

#[tokio::test]
async fn dnsmasq_is_reloaded_for_new_hosts_and_restarted_for_a_new_range() {
    let (fake, agent) = agent();
    let mut spec = sample();
    agent.converge(&spec).await;
    let first = fake
        .daemons()
        .into_iter()
        .find(|d| d.argv[0] == "dnsmasq")
        .unwrap();
    let net = spec.networks[0].id;
    let sub = spec.networks[0].subnets[0].id;
    spec.networks[0].ports.push(port(
        106,
        net,
        sub,
        "fa:16:3e:00:00:06",
        "10.0.0.16",
        "compute:nova",
    ));
    let r = agent.converge(&spec).await;
    assert!(
        r.repaired.contains(&format!("dnsmasq {net} (reloaded)")),
        "{r:?}"
    );
    let same = fake
        .daemons()
        .into_iter()
        .find(|d| d.argv[0] == "dnsmasq")
        .unwrap();
    assert_eq!((same.pid, same.reloads), (first.pid, 1));
    let hosts = fake
        .file(&PathBuf::from(format!("/state/dhcp/{net}/hosts")))
        .unwrap();
    assert!(
        hosts.contains("fa:16:3e:00:00:06,host-10-0-0-16.openstacklocal,10.0.0.16"),
        "{hosts}"
    );

    spec.networks[0].subnets[0].cidr = "10.0.0.0/23".into();
    let r = agent.converge(&spec).await;
    assert!(
        r.repaired
            .iter()
            .any(|x| x.contains("restarted with a new configuration")),
        "{r:?}"
    );
    let new = fake
        .daemons()
        .into_iter()
        .find(|d| d.argv[0] == "dnsmasq")
        .unwrap();
    assert_ne!(new.pid, first.pid);
}

#[tokio::test]
async fn dnsmasq_forgets_its_leases_when_an_address_changes_hands() {
    // A deleted port's address given to a new port (another MAC): dnsmasq would keep
    // the old lease in memory and offer the new port nothing; it is restarted.
    let (fake, agent) = agent();
    let mut spec = sample();
    agent.converge(&spec).await;
    let dnsmasq = |fake: &FakeDatapath| {
        fake.daemons()
            .into_iter()
            .find(|d| d.argv[0] == "dnsmasq")
            .unwrap()
    };
    let first = dnsmasq(&fake);
    let vm2 = spec.networks[0]
        .ports
        .iter()
        .position(|p| p.mac == "fa:16:3e:00:00:02")
        .unwrap();
    let old = spec.networks[0].ports.remove(vm2);
    let mut reused = old.clone();
    reused.id = id(107);
    reused.mac = "fa:16:3e:00:00:07".into();
    reused.tap = Some(names::tap(&reused.id));
    spec.networks[0].ports.push(reused);
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let now = dnsmasq(&fake);
    assert_ne!(now.pid, first.pid, "{r:?}");
    let hosts = fake
        .file(&PathBuf::from(format!(
            "/state/dhcp/{}/hosts",
            spec.networks[0].id
        )))
        .unwrap();
    assert!(hosts.contains("fa:16:3e:00:00:07,"), "{hosts}");
    assert!(!hosts.contains("fa:16:3e:00:00:02,"), "{hosts}");
    // Nothing changed: nothing restarted.
    let again = agent.converge(&spec).await;
    assert!(again.is_noop(), "{again:?}");
    assert_eq!(dnsmasq(&fake).pid, now.pid);
}

#[tokio::test]
async fn an_isolated_network_serves_metadata_from_its_dhcp_namespace() {
    let (fake, agent) = agent();
    let mut spec = sample();
    spec.routers.clear();
    agent.converge(&spec).await;
    let net = &spec.networks[0];
    let dns = names::dhcp_namespace(&net.id);
    let addrs = fake
        .addresses(
            Some(&dns),
            &format!("ns-{}", &net.id.as_uuid().simple().to_string()[..11]),
        )
        .await
        .unwrap();
    assert!(
        addrs.contains(&"169.254.169.254/32".to_string()),
        "{addrs:?}"
    );
    let proxy = fake
        .daemons()
        .into_iter()
        .find(|d| d.argv[1] == "metadata-proxy")
        .unwrap();
    assert_eq!(proxy.ns.as_deref(), Some(dns.as_str()));
    assert!(proxy.argv.join(" ").contains("--listen 169.254.169.254:80"));
    let opts = fake
        .file(&PathBuf::from(format!("/state/dhcp/{}/opts", net.id)))
        .unwrap();
    assert!(opts.contains("169.254.169.254/32,10.0.0.2"), "{opts}");

    // Adding the router moves metadata to it.
    let r = agent.converge(&sample()).await;
    assert!(
        r.removed
            .iter()
            .any(|x| x.starts_with("metadata-proxy oxdhcp-")),
        "{r:?}"
    );
    assert!(
        r.removed
            .iter()
            .any(|x| x.starts_with("address 169.254.169.254/32")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_port_without_port_security_gets_no_chains() {
    let mut spec = sample();
    spec.networks[0].ports[1].port_security = false;
    let files = NetworkAgent::render(&spec, &config(Path::new("/state")));
    let inet = &files
        .iter()
        .find(|(n, _)| *n == format!("root-inet-{}.json", table()))
        .unwrap()
        .1;
    let tap1 = spec.networks[0].ports[0].tap.clone().unwrap();
    let tap2 = spec.networks[0].ports[1].tap.clone().unwrap();
    assert!(inet.contains(&format!("egress-{tap1}")));
    assert!(!inet.contains(&tap2));
}

#[test]
fn golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/network_golden");
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    let mut files = NetworkAgent::render(&sample(), &config(Path::new("/state")));
    assert!(files.len() >= 7);
    // The IPv6 spec adds router advertisements; its other files are the sample's kind.
    files.extend(
        NetworkAgent::render(&sample_v6(), &config(Path::new("/state")))
            .into_iter()
            .filter(|(name, _)| name.starts_with("ra-")),
    );
    assert!(files.iter().any(|(name, _)| name.starts_with("ra-")));
    let mut mismatched = vec![];
    for (name, contents) in files {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &contents).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == contents => {}
            _ => mismatched.push(name),
        }
    }
    assert!(mismatched.is_empty(), "differ from tests/network_golden (UPDATE_GOLDEN=1 to update, then review the diff): {mismatched:?}");
}

/// The generated rulesets are valid for the real `nft` (a check run, no
/// change to the host). Needs root and nftables.
#[tokio::test]
async fn rulesets_are_accepted_by_nft() {
    if std::env::var("OXISTACK_NET_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set OXISTACK_NET_TESTS=1 (root, nftables)");
        return;
    }
    for (name, json) in NetworkAgent::render(&sample(), &config(Path::new("/state"))) {
        if !name.ends_with(".json") {
            continue;
        }
        let mut child = std::process::Command::new("nft")
            .args(["-c", "-j", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Another cloud on the same machine (CI runs several): its bridges, taps,
/// namespaces and tables carry the same prefixes, and none of them is
/// touched, however often this agent converges.
#[tokio::test]
async fn another_instances_objects_are_left_alone() {
    let (fake, agent) = agent();
    let other_net: NetworkId = id(900);
    let other_tap = names::tap(&id::<PortId>(901));
    fake.add_link(
        None,
        &oxistack_netdev::NewLink::Bridge {
            name: names::bridge(&other_net),
        },
    )
    .await
    .unwrap();
    fake.add_link(
        None,
        &oxistack_netdev::NewLink::Tap {
            name: other_tap.clone(),
        },
    )
    .await
    .unwrap();
    fake.set_link(
        None,
        &other_tap,
        &LinkChange {
            master: Some(names::bridge(&other_net)),
            ..LinkChange::default()
        },
    )
    .await
    .unwrap();
    fake.add_namespace(&names::dhcp_namespace(&other_net))
        .await
        .unwrap();
    let other = NetworkAgent::new(fake.clone(), config(Path::new("/other-state")));
    // The other instance's tables: a spec with a filtered port makes them.
    let mut s = sample();
    s.routers.clear();
    s.networks.truncate(1);
    for p in &mut s.networks[0].ports {
        p.id = id(950 + p.id.as_uuid().as_fields().0);
        p.tap = p.tap.as_ref().map(|_| names::tap(&p.id));
    }
    s.networks[0].id = other_net;
    for p in &mut s.networks[0].ports {
        p.network_id = other_net;
    }
    let r = other.converge(&s).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let before_links: Vec<String> = fake
        .links(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let before_ns = fake.namespaces().await.unwrap();
    let before_tables = fake.nft_tables(None).await.unwrap();

    for spec in [sample(), HostNetworkSpec::default()] {
        let r = agent.converge(&spec).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    let links: Vec<String> = fake
        .links(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    for l in &before_links {
        assert!(links.contains(l), "{l} was removed: {links:?}");
    }
    assert!(links.contains(&other_tap));
    let ns = fake.namespaces().await.unwrap();
    for n in &before_ns {
        assert!(ns.contains(n), "{n} was removed: {ns:?}");
    }
    assert_eq!(fake.nft_tables(None).await.unwrap(), before_tables);
    // And the other instance still finds its host as it left it.
    assert!(other.converge(&s).await.is_noop());
}

/// The sample with IPv6 on the router: a SLAAC subnet beside the IPv4 one,
/// and a second network (MTU 1400) with a DHCPv6-stateful subnet and a
/// subnet without an RA mode, each on its own router interface.
fn sample_v6() -> HostNetworkSpec {
    let mut spec = sample();
    let v6 = |n: u32, cidr: &str, gw: &str, mode: Option<&str>| SubnetSpec {
        id: id(n),
        cidr: cidr.into(),
        ip_version: 6,
        gateway_ip: Some(ip(gw)),
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        ipv6_address_mode: mode.map(str::to_string),
        ipv6_ra_mode: mode.map(str::to_string),
    };
    let (net, net3): (NetworkId, NetworkId) = (id(1), id(3));
    let mut slaac = v6(13, "fd00:1::/64", "fd00:1::1", Some("slaac"));
    slaac.dns_nameservers = vec![ip("fd00:1::53"), ip("10.0.0.2")];
    spec.networks[0].subnets.push(slaac);
    spec.networks.push(NetworkSpec {
        id: net3,
        kind: NetworkKind::Vxlan { vni: 1003 },
        mtu: 1400,
        external: false,
        subnets: vec![
            v6(14, "fd00:3::/64", "fd00:3::1", Some("dhcpv6-stateful")),
            v6(15, "fd00:4::/64", "fd00:4::1", None),
        ],
        ports: vec![],
    });
    let interfaces = [
        (107, net, "fa:16:3e:00:01:07", "fd00:1::1", "fd00:1::/64"),
        (108, net3, "fa:16:3e:00:01:08", "fd00:3::1", "fd00:3::/64"),
        (109, net3, "fa:16:3e:00:01:09", "fd00:4::1", "fd00:4::/64"),
    ];
    for (pid, network_id, mac, addr, cidr) in interfaces {
        spec.routers[0].interfaces.push(RouterInterface {
            port_id: id(pid),
            network_id,
            mac: mac.into(),
            ip: ip(addr),
            cidr: cidr.into(),
        });
    }
    spec
}

fn qr(port: u32) -> String {
    oxistack_agent::network::names::router_port_inner(&id::<PortId>(port))
}

/// The RA daemon of the sample's router, if it runs.
fn ra_daemon(fake: &FakeDatapath) -> Option<oxistack_netdev::FakeDaemon> {
    let conf = format!("--conf-file=/state/ra/{}/dnsmasq.conf", id::<RouterId>(31));
    fake.daemons().into_iter().find(|d| d.argv.contains(&conf))
}

fn ra_conf(fake: &FakeDatapath) -> Option<String> {
    fake.file(&PathBuf::from(format!(
        "/state/ra/{}/dnsmasq.conf",
        id::<RouterId>(31)
    )))
}

#[tokio::test]
async fn ipv6_router_interfaces_get_router_advertisements_by_mode() {
    let (fake, agent) = agent();
    let spec = sample_v6();
    let router = &spec.routers[0];
    let rns = names::router_namespace(&router.id);
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.created
            .contains(&format!("router advertisements {}", router.id)),
        "{r:?}"
    );

    // One dnsmasq in the router's namespace, for the interfaces with an RA mode only.
    let d = ra_daemon(&fake).expect("no RA daemon");
    assert_eq!(d.ns.as_deref(), Some(rns.as_str()));
    assert_eq!(d.argv[0], "dnsmasq");
    assert!(d
        .argv
        .contains(&format!("--pid-file=/state/ra/{}/pid", router.id)));
    let conf = ra_conf(&fake).unwrap();
    let lines: Vec<&str> = conf.lines().collect();
    for want in [
        "port=0".to_string(),
        "enable-ra".to_string(),
        format!("interface={}", qr(107)),
        format!("ra-param={},mtu:1450,100,300", qr(107)),
        format!("interface={}", qr(108)),
        format!("ra-param={},mtu:1400,100,300", qr(108)),
        format!(
            "dhcp-range=set:subnet-{},fd00:1::,ra-only,64,86400s",
            id::<SubnetId>(13)
        ),
        format!(
            "dhcp-range=set:subnet-{},fd00:3::,64,86400s",
            id::<SubnetId>(14)
        ),
        format!(
            "dhcp-option=tag:subnet-{},option6:dns-server,[fd00:1::53]",
            id::<SubnetId>(13)
        ),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} not in:\n{conf}");
    }
    // No RA for IPv4, nor for the subnet without an RA mode.
    assert!(!conf.contains(&qr(104)), "{conf}");
    assert!(!conf.contains(&qr(109)), "{conf}");
    assert!(!conf.contains("fd00:4::"), "{conf}");

    // The router holds each subnet's gateway address and forwards IPv6.
    for (port, addr) in [
        (107, "fd00:1::1/64"),
        (108, "fd00:3::1/64"),
        (109, "fd00:4::1/64"),
    ] {
        let addrs = fake.addresses(Some(&rns), &qr(port)).await.unwrap();
        assert_eq!(addrs, vec![addr.to_string()]);
    }
    assert_eq!(
        fake.sysctl(Some(&rns), "net.ipv6.conf.all.forwarding")
            .await
            .unwrap(),
        "1"
    );
    // Nothing but guests takes its configuration from these RAs: not the
    // host (through the network's bridge), not a DHCP namespace.
    let (net, dns) = (
        spec.networks[0].id,
        names::dhcp_namespace(&spec.networks[0].id),
    );
    let br_key = format!("net.ipv6.conf.{}.disable_ipv6", names::bridge(&net));
    assert_eq!(fake.sysctl(None, &br_key).await.unwrap(), "1");
    let ns_dev = format!("ns-{}", &net.as_uuid().simple().to_string()[..11]);
    for (ns, dev) in [(&dns, ns_dev), (&rns, qr(107))] {
        let key = format!("net.ipv6.conf.{dev}.accept_ra");
        assert_eq!(fake.sysctl(Some(ns), &key).await.unwrap(), "0", "{key}");
    }
    assert!(agent.converge(&spec).await.is_noop());

    // Changed by hand: set back.
    fake.set_sysctl(None, &br_key, "0").await.unwrap();
    let r = agent.converge(&spec).await;
    assert!(r.repaired.contains(&format!("sysctl {br_key}=1")), "{r:?}");
}

#[tokio::test]
async fn the_ra_daemon_is_repaired_reconfigured_and_stopped_with_its_router() {
    let (fake, agent) = agent();
    let mut spec = sample_v6();
    let router = spec.routers[0].id;
    agent.converge(&spec).await;
    let first = ra_daemon(&fake).unwrap();

    // Killed: started again, with the same configuration.
    fake.crash_daemon(first.pid);
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.repaired
            .contains(&format!("router advertisements {router} (restarted)")),
        "{r:?}"
    );
    let second = ra_daemon(&fake).unwrap();
    assert_ne!(second.pid, first.pid);

    // An interface goes: a new configuration, a restarted daemon.
    spec.routers[0].interfaces.retain(|i| i.port_id != id(108));
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.repaired.contains(&format!(
            "router advertisements {router} (restarted with a new configuration)"
        )),
        "{r:?}"
    );
    let third = ra_daemon(&fake).unwrap();
    assert_ne!(third.pid, second.pid);
    assert_eq!(
        fake.daemons()
            .iter()
            .filter(|d| d.pid == second.pid)
            .count(),
        0
    );
    let conf = ra_conf(&fake).unwrap();
    assert!(
        !conf.contains(&qr(108)) && conf.contains(&qr(107)),
        "{conf}"
    );
    assert!(agent.converge(&spec).await.is_noop());

    // No subnet left to advertise: the daemon and its files go, the router stays.
    spec.networks[0].subnets[1].ipv6_ra_mode = None;
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.removed
            .contains(&format!("router advertisements {router}")),
        "{r:?}"
    );
    assert!(ra_daemon(&fake).is_none());
    assert_eq!(ra_conf(&fake), None);
    assert!(fake
        .namespaces()
        .await
        .unwrap()
        .contains(&names::router_namespace(&router)));

    // Back, then the router goes: nothing of it is left.
    let spec = sample_v6();
    agent.converge(&spec).await;
    assert!(ra_daemon(&fake).is_some());
    let mut gone = spec.clone();
    gone.routers.clear();
    let r = agent.converge(&gone).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(ra_daemon(&fake).is_none());
    assert_eq!(ra_conf(&fake), None);
    assert!(fake
        .list_dir(Path::new("/state/ra"))
        .await
        .unwrap()
        .is_empty());
    assert!(!fake
        .namespaces()
        .await
        .unwrap()
        .contains(&names::router_namespace(&router)));
}

/// A namespace deleted by hand leaves its daemons running in the deleted
/// namespace: when the pass makes the namespace again, they are restarted
/// in the new one.
#[tokio::test]
async fn daemons_of_a_namespace_deleted_by_hand_are_restarted_in_the_new_one() {
    let (fake, agent) = agent();
    let spec = sample_v6();
    let router = spec.routers[0].id;
    agent.converge(&spec).await;
    let before = ra_daemon(&fake).unwrap();
    fake.delete_namespace(&names::router_namespace(&router))
        .await
        .unwrap();
    let r = agent.converge(&spec).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.repaired.contains(&format!(
            "router advertisements {router} (restarted in its new namespace)"
        )),
        "{r:?}"
    );
    let after = ra_daemon(&fake).unwrap();
    assert_ne!(after.pid, before.pid);
    assert!(fake.daemons().iter().all(|d| d.pid != before.pid));
    assert!(agent.converge(&spec).await.is_noop());
}

#[tokio::test]
async fn a_prefix_dnsmasq_cannot_advertise_is_reported() {
    let (fake, agent) = agent();
    let mut spec = sample_v6();
    spec.networks[0].subnets[1].cidr = "fd00:1::/80".into();
    spec.routers[0].interfaces[1].cidr = "fd00:1::/80".into();
    let r = agent.converge(&spec).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("fd00:1::/80") && e.contains("/64")),
        "{:?}",
        r.errors
    );
    // The other interfaces are still advertised.
    let conf = ra_conf(&fake).unwrap();
    assert!(
        conf.contains(&qr(108)) && !conf.contains(&qr(107)),
        "{conf}"
    );
}

/// Guests never advertise a router: their RAs are dropped by their port's
/// anti-spoofing chain, whatever their source.
#[tokio::test]
async fn router_advertisements_from_guests_are_dropped() {
    let (fake, agent) = agent();
    let spec = sample_v6();
    agent.converge(&spec).await;
    for p in spec.networks[0].ports.iter().filter(|p| p.tap.is_some()) {
        let chain = format!("spoof-{}", p.tap.as_deref().unwrap());
        let rules = fake.nft_rules(None, "bridge", &table(), &chain).unwrap();
        let drops_ra = rules.iter().any(|r| {
            let text = r.to_string();
            text.contains("\"nd-router-advert\"") && text.contains("\"drop\"")
        });
        assert!(drops_ra, "{chain}: {rules:?}");
    }
}
