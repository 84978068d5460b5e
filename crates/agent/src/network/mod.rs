//! The agent's network role: makes the host's datapath match a
//! [`HostNetworkSpec`] (bridges, VXLAN devices, taps, DHCP and router
//! namespaces, nftables tables, dnsmasq and metadata proxies).
//!
//! One `apply` is a reconcile pass: it computes the whole desired host state
//! from the spec ([`Plan`]), reads the host through the [`Datapath`], fixes
//! each difference, and removes what OxiStack owns (by name prefix) that the
//! spec no longer names. It never stops at the first failure: every error
//! goes into the report and the next pass retries. Passing the same spec
//! twice makes the second pass a no-op; a restarted agent recognises its
//! objects because all names derive from resource IDs.
//!
//! Order matters and is fixed: stale daemons and namespaces go first (so
//! their veths vanish), then the root namespace's sysctls and filtering
//! tables (before any tap is plugged), root links, namespaces with their
//! veths, addresses, routes and NAT, and last the daemons, which need their
//! interfaces: dnsmasq for DHCP, dnsmasq for IPv6 router advertisements
//! ([`ra`]) and the metadata proxies. A daemon found alive in a namespace
//! this pass had to make again runs in the old, deleted one, and is
//! restarted. Design notes: docs/design/0011-datapath.md.

mod dhcp;
mod firewall;
pub mod names;
mod ra;
mod router;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxistack_bus::network::{
    self as spec_types, ApplyReport, HostNetworkSpec, NetworkAgentApi, NetworkKind, NetworkSpec,
};
use oxistack_model::AppResult;
use oxistack_netdev::nft::{self, TableBuilder};
use oxistack_netdev::{DaemonSignal, Datapath, HostError, Link, LinkChange, NewLink, Ns, Route};

pub use router::{METADATA_IP, METADATA_PROXY_PORT};

/// How the network role runs on this host.
#[derive(Debug, Clone)]
pub struct NetworkAgentConfig {
    /// Where dnsmasq files, daemon pidfiles and the record of applied
    /// nftables tables live (`<data dir>/network`).
    pub state_dir: PathBuf,
    /// The metadata proxy command before its arguments, e.g.
    /// `["/usr/bin/oxistack", "metadata-proxy"]`.
    pub metadata_proxy_command: Vec<String>,
    pub dnsmasq: String,
    /// VXLAN underlay: `127.0.0.1` on one host.
    pub vxlan_local: IpAddr,
    pub vxlan_port: u16,
    pub vxlan_learning: bool,
    /// Tells this agent's host objects from those of another OxiStack on
    /// the same machine (CI runs several clouds side by side): it names the
    /// root nftables tables. Derived from the state directory, so a
    /// restarted agent is the same instance.
    pub instance: String,
}

impl NetworkAgentConfig {
    /// Defaults: this very binary as the metadata proxy, dnsmasq from PATH,
    /// a host-local VXLAN underlay.
    ///
    /// The underlay's UDP port: the kernel refuses a second VXLAN device
    /// with the same VNI on the same port, whatever its local address, and
    /// every cloud allocates VNIs from the same range. On one host (the
    /// loopback underlay) no other host needs to agree on the port, so each
    /// instance takes its own in 30000-39999; a multi-host deployment sets
    /// one port (e.g. the IANA 4789) for all its hosts.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "oxistack".into());
        let state_dir = state_dir.into();
        let hash = fnv1a(state_dir.to_string_lossy().as_bytes());
        NetworkAgentConfig {
            metadata_proxy_command: vec![exe, "metadata-proxy".into()],
            dnsmasq: "dnsmasq".into(),
            vxlan_local: IpAddr::from([127, 0, 0, 1]),
            vxlan_port: 30000 + (hash % 10000) as u16,
            vxlan_learning: false,
            instance: format!("{hash:08x}"),
            state_dir,
        }
    }
}

/// FNV-1a (32 bits): a stable hash (std's may change between releases),
/// for the instance name of a state directory.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The network role of one host.
pub struct NetworkAgent {
    datapath: Arc<dyn Datapath>,
    config: NetworkAgentConfig,
    /// One pass at a time: two overlapping passes would race on the host.
    pass: tokio::sync::Mutex<()>,
}

impl NetworkAgent {
    pub fn new(datapath: Arc<dyn Datapath>, config: NetworkAgentConfig) -> Self {
        NetworkAgent {
            datapath,
            config,
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// The pass itself, without the bus's result wrapper.
    pub async fn converge(&self, spec: &HostNetworkSpec) -> ApplyReport {
        let _pass = self.pass.lock().await;
        let plan = Plan::build(spec, &self.config);
        let mut run = Run {
            dp: self.datapath.as_ref(),
            cfg: &self.config,
            report: ApplyReport::default(),
            owned: BTreeSet::new(),
            owned_changed: false,
            fresh_namespaces: BTreeSet::new(),
        };
        run.report.errors.extend(plan.errors.iter().cloned());
        run.load_owned().await;
        run.teardown_daemons(&plan).await;
        run.teardown_namespaces(&plan).await;
        run.root_filtering(&plan).await;
        // Stale VXLAN devices go before any is created: a deleted network's VNI may
        // already belong to a new network, and the kernel refuses a second device
        // with the same VNI and port.
        run.teardown_root_links(&plan, Teardown::VxlanOnly).await;
        run.root_links(&plan).await;
        run.namespaces(&plan).await;
        run.teardown_root_links(&plan, Teardown::All).await;
        run.dhcp(&plan).await;
        run.router_advertisements(&plan).await;
        run.proxies(&plan).await;
        run.save_owned().await;
        let report = run.report;
        if !report.errors.is_empty() {
            tracing::warn!(errors = ?report.errors, "network apply finished with errors");
        } else if !report.is_noop() {
            tracing::debug!(
                created = ?report.created,
                repaired = ?report.repaired,
                removed = ?report.removed,
                "network apply details"
            );
            tracing::info!(
                created = report.created.len(),
                repaired = report.repaired.len(),
                removed = report.removed.len(),
                "network apply"
            );
        }
        report
    }

    /// The generated artefacts of a spec, for golden files and inspection:
    /// (file name, contents).
    pub fn render(spec: &HostNetworkSpec, config: &NetworkAgentConfig) -> Vec<(String, String)> {
        let plan = Plan::build(spec, config);
        let mut out = vec![];
        for t in &plan.root_tables {
            out.push((
                format!("root-{}-{}.json", nft::family_name(t.family()), t.name()),
                t.to_json_pretty(),
            ));
        }
        for (ns, p) in &plan.namespaces {
            if let Some(t) = &p.nat {
                out.push((format!("{ns}-{}.json", t.name()), t.to_json_pretty()));
            }
        }
        for (net, d) in &plan.dhcp {
            out.push((format!("dhcp-{net}.conf"), d.conf.clone()));
            out.push((format!("dhcp-{net}.hosts"), d.hosts.clone()));
            out.push((format!("dhcp-{net}.opts"), d.opts.clone()));
        }
        for (router, r) in &plan.ra {
            out.push((format!("ra-{router}.conf"), r.conf.clone()));
        }
        for (key, p) in &plan.proxies {
            out.push((format!("metadata-{key}.args"), p.argv.join("\n") + "\n"));
        }
        out
    }
}

#[async_trait]
impl NetworkAgentApi for NetworkAgent {
    async fn apply(&self, spec: HostNetworkSpec) -> AppResult<ApplyReport> {
        Ok(self.converge(&spec).await)
    }
}

/// The bridge a network's ports are plugged into.
pub(crate) fn bridge_name(n: &NetworkSpec) -> String {
    match &n.kind {
        NetworkKind::Flat { bridge } => bridge.clone(),
        NetworkKind::Vxlan { .. } => spec_types::names::bridge(&n.id),
    }
}

fn prefix_len(cidr: &str) -> Option<u8> {
    cidr.split_once('/')?.1.parse().ok()
}

#[derive(Debug, Clone)]
struct VethPlan {
    root: String,
    inner: String,
    bridge: String,
    mtu: u32,
    mac: String,
    addrs: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct NsPlan {
    veths: Vec<VethPlan>,
    router: bool,
    routes: Vec<Route>,
    nat: Option<TableBuilder>,
}

#[derive(Debug, Clone)]
struct DhcpPlan {
    ns: String,
    dir: PathBuf,
    conf: String,
    hosts: String,
    opts: String,
}

/// The router advertisement daemon of a router namespace.
#[derive(Debug, Clone)]
struct RaPlan {
    ns: String,
    dir: PathBuf,
    conf: String,
}

#[derive(Debug, Clone)]
struct ProxyPlan {
    ns: String,
    dir: PathBuf,
    argv: Vec<String>,
}

/// The desired host state of a spec.
#[derive(Debug, Default)]
struct Plan {
    bridges: BTreeMap<String, u32>,
    /// name -> (VNI, bridge, MTU)
    vxlans: BTreeMap<String, (u32, String, u32)>,
    /// name -> (bridge, MTU)
    taps: BTreeMap<String, (String, u32)>,
    namespaces: BTreeMap<String, NsPlan>,
    root_tables: Vec<TableBuilder>,
    dhcp: BTreeMap<String, DhcpPlan>,
    /// Router id -> its RA daemon.
    ra: BTreeMap<String, RaPlan>,
    proxies: BTreeMap<String, ProxyPlan>,
    /// Inconsistencies in the spec itself.
    errors: Vec<String>,
}

impl Plan {
    fn build(spec: &HostNetworkSpec, cfg: &NetworkAgentConfig) -> Plan {
        let mut plan = Plan::default();
        let nets: BTreeMap<String, &NetworkSpec> = spec
            .networks
            .iter()
            .map(|n| (n.id.to_string(), n))
            .collect();
        let proxy = |ns: &str, key: &str, network: &str, listen: String| -> (String, ProxyPlan) {
            let dir = cfg.state_dir.join("metadata").join(key);
            let mut argv = cfg.metadata_proxy_command.clone();
            let upstream = spec.metadata_upstream.clone().unwrap_or_default();
            let pid = dir.join("pid").display().to_string();
            argv.extend(
                [
                    "--network-id",
                    network,
                    "--upstream",
                    &upstream,
                    "--listen",
                    &listen,
                    "--pid-file",
                    &pid,
                ]
                .map(String::from),
            );
            (
                key.to_string(),
                ProxyPlan {
                    ns: ns.to_string(),
                    dir,
                    argv,
                },
            )
        };
        for n in &spec.networks {
            let bridge = bridge_name(n);
            plan.bridges.insert(bridge.clone(), n.mtu);
            if let NetworkKind::Vxlan { vni } = n.kind {
                plan.vxlans.insert(
                    spec_types::names::vxlan(&n.id),
                    (vni, bridge.clone(), n.mtu),
                );
            }
            for p in &n.ports {
                if let Some(tap) = &p.tap {
                    plan.taps.insert(tap.clone(), (bridge.clone(), n.mtu));
                }
            }
            let Some(port) = dhcp::dhcp_port(n) else {
                continue;
            };
            if dhcp::dhcp_subnets(n).next().is_none() {
                continue;
            }
            let routed = spec
                .routers
                .iter()
                .any(|r| r.interfaces.iter().any(|i| i.network_id == n.id));
            let isolated_metadata = !routed
                && spec.metadata_upstream.is_some()
                && port.fixed_ips.iter().any(|f| f.ip.is_ipv4());
            let ns = spec_types::names::dhcp_namespace(&n.id);
            let mut addrs: Vec<String> = port
                .fixed_ips
                .iter()
                .filter_map(|f| {
                    let s = n.subnets.iter().find(|s| s.id == f.subnet_id)?;
                    Some(format!("{}/{}", f.ip, prefix_len(&s.cidr)?))
                })
                .collect();
            if isolated_metadata {
                addrs.push(format!("{METADATA_IP}/32"));
            }
            let inner = names::dhcp_inner(&n.id);
            let veth = VethPlan {
                root: names::dhcp_root(&n.id),
                inner: inner.clone(),
                bridge: bridge.clone(),
                mtu: n.mtu,
                mac: port.mac.to_lowercase(),
                addrs,
            };
            plan.namespaces.insert(
                ns.clone(),
                NsPlan {
                    veths: vec![veth],
                    ..NsPlan::default()
                },
            );
            let dir = cfg.state_dir.join("dhcp").join(n.id.to_string());
            plan.dhcp.insert(
                n.id.to_string(),
                DhcpPlan {
                    ns: ns.clone(),
                    conf: dhcp::conf(n, &inner, &dir),
                    hosts: dhcp::hosts(n),
                    opts: dhcp::opts(n, isolated_metadata),
                    dir,
                },
            );
            if isolated_metadata {
                let (k, p) = proxy(&ns, &ns, &n.id.to_string(), format!("{METADATA_IP}:80"));
                plan.proxies.insert(k, p);
            }
        }
        for r in &spec.routers {
            let ns = spec_types::names::router_namespace(&r.id);
            let mut np = NsPlan {
                router: true,
                ..NsPlan::default()
            };
            let mut ra_subnets = vec![];
            for i in &r.interfaces {
                let Some(n) = nets.get(&i.network_id.to_string()) else {
                    plan.errors.push(format!(
                        "router {}: interface {} on network {} which the spec does not hold",
                        r.id, i.port_id, i.network_id
                    ));
                    continue;
                };
                let Some(len) = prefix_len(&i.cidr) else {
                    plan.errors.push(format!(
                        "router {}: interface {}: bad CIDR {}",
                        r.id, i.port_id, i.cidr
                    ));
                    continue;
                };
                let inner = names::router_port_inner(&i.port_id);
                let addr = format!("{}/{len}", i.ip);
                // A port with several fixed IPs is one interface with several addresses.
                match np.veths.iter_mut().find(|v| v.inner == inner) {
                    Some(v) => v.addrs.push(addr),
                    None => np.veths.push(VethPlan {
                        root: names::router_port_root(&i.port_id),
                        inner: inner.clone(),
                        bridge: bridge_name(n),
                        mtu: n.mtu,
                        mac: i.mac.to_lowercase(),
                        addrs: vec![addr],
                    }),
                }
                // CIDRs of one network never overlap: the CIDR names the subnet.
                if let Some(s) = n.subnets.iter().find(|s| s.cidr == i.cidr) {
                    match ra::advertised(s) {
                        Ok(true) if i.ip.is_ipv6() => ra_subnets.push(ra::RaSubnet {
                            dev: inner,
                            mtu: n.mtu,
                            subnet: s,
                        }),
                        Ok(_) => {}
                        Err(e) => plan.errors.push(format!(
                            "router {}: interface {}: no router advertisements: {e}",
                            r.id, i.port_id
                        )),
                    }
                }
                if spec.metadata_upstream.is_some() && i.ip.is_ipv4() {
                    let key = format!("{ns}-{}", i.port_id);
                    let (k, p) = proxy(
                        &ns,
                        &key,
                        &i.network_id.to_string(),
                        format!("{}:{METADATA_PROXY_PORT}", i.ip),
                    );
                    plan.proxies.insert(k, p);
                }
            }
            if let Some(gw) = &r.gateway {
                match (nets.get(&gw.network_id.to_string()), prefix_len(&gw.cidr)) {
                    (Some(n), Some(len)) => {
                        let mut addrs = vec![format!("{}/{len}", gw.ip)];
                        let full = if gw.ip.is_ipv4() { 32 } else { 128 };
                        addrs.extend(
                            r.floating_ips
                                .iter()
                                .map(|f| format!("{}/{full}", f.floating_ip)),
                        );
                        np.veths.push(VethPlan {
                            root: names::gateway_root(&gw.port_id),
                            inner: names::gateway_inner(&gw.port_id),
                            bridge: bridge_name(n),
                            mtu: n.mtu,
                            mac: gw.mac.to_lowercase(),
                            addrs,
                        });
                        if let Some(via) = gw.gateway_ip {
                            np.routes.push(Route::new("default", via));
                        }
                    }
                    _ => plan.errors.push(format!(
                        "router {}: gateway on network {} which the spec does not hold",
                        r.id, gw.network_id
                    )),
                }
            }
            np.routes
                .extend(r.routes.iter().map(|(dst, via)| Route::new(dst, *via)));
            np.routes.sort();
            np.routes.dedup();
            np.nat = Some(router::nat_table(r, spec.metadata_upstream.is_some()));
            if let Some(conf) = ra::conf(&r.id.to_string(), &ra_subnets) {
                plan.ra.insert(
                    r.id.to_string(),
                    RaPlan {
                        ns: ns.clone(),
                        dir: cfg.state_dir.join("ra").join(r.id.to_string()),
                        conf,
                    },
                );
            }
            plan.namespaces.insert(ns, np);
        }
        if !firewall::filtered_ports(spec).is_empty() {
            let table = names::root_table(&cfg.instance);
            plan.root_tables = vec![
                firewall::bridge_table(spec, &table),
                firewall::inet_table(spec, &table),
            ];
        }
        plan
    }

    fn desired_root_links(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self
            .bridges
            .keys()
            .chain(self.vxlans.keys())
            .chain(self.taps.keys())
            .cloned()
            .collect();
        s.extend(
            self.namespaces
                .values()
                .flat_map(|n| n.veths.iter().map(|v| v.root.clone())),
        );
        s
    }
}

/// The settings a link should have, compared with what it has.
fn link_change(l: Option<&Link>, master: Option<&str>, mtu: u32, mac: Option<&str>) -> LinkChange {
    LinkChange {
        mtu: (l.map(|l| l.mtu) != Some(mtu)).then_some(mtu),
        mac: mac
            .filter(|m| l.and_then(|l| l.mac.as_deref()) != Some(*m))
            .map(str::to_string),
        master: master
            .filter(|m| l.and_then(|l| l.master.as_deref()) != Some(*m))
            .map(str::to_string),
        up: (!l.map(|l| l.up).unwrap_or(false)).then_some(true),
    }
}

const ROOT_SYSCTLS: [&str; 2] = [
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
];

/// Which stale root links a teardown step removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// Only VXLAN devices (before new ones are created).
    VxlanOnly,
    All,
}

/// One pass: the host, the config and what the pass did.
struct Run<'a> {
    dp: &'a dyn Datapath,
    cfg: &'a NetworkAgentConfig,
    report: ApplyReport,
    /// The ownership record: the root links and namespaces this instance
    /// made or adopted (keys from [`names::owned_link`] and
    /// [`names::owned_namespace`]). Teardown removes only these: a name
    /// prefix says "some OxiStack", not "this one", and another cloud on
    /// the same machine must keep its bridges, taps and namespaces.
    owned: BTreeSet<String>,
    owned_changed: bool,
    /// Namespaces this pass created: a daemon still alive "in" one of them
    /// runs in the deleted namespace that had its name.
    fresh_namespaces: BTreeSet<String>,
}

impl Run<'_> {
    fn owned_path(&self) -> PathBuf {
        self.cfg.state_dir.join("owned")
    }

    async fn load_owned(&mut self) {
        match self.dp.read_file(&self.owned_path()).await {
            Ok(text) => {
                self.owned = text
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            Err(e) => self.error("reading the ownership record", e),
        }
    }

    async fn save_owned(&mut self) {
        if !self.owned_changed {
            return;
        }
        let text: String = self.owned.iter().map(|k| format!("{k}\n")).collect();
        match self.dp.write_file(&self.owned_path(), &text).await {
            Ok(()) => self.owned_changed = false,
            Err(e) => self.error("writing the ownership record", e),
        }
    }

    /// Records an object as this instance's; `now` writes the record at
    /// once (before creating it, so a crash never leaves an unrecorded one).
    async fn own(&mut self, key: String, now: bool) {
        if self.owned.insert(key) {
            self.owned_changed = true;
            if now {
                self.save_owned().await;
            }
        }
    }

    fn disown(&mut self, key: &str) {
        if self.owned.remove(key) {
            self.owned_changed = true;
        }
    }

    fn error(&mut self, what: impl std::fmt::Display, e: HostError) {
        self.report.errors.push(format!("{what}: {e}"));
    }

    /// Creates or fixes one link's settings; `fresh` says it was just made.
    async fn fix_link(
        &mut self,
        ns: Ns<'_>,
        name: &str,
        change: LinkChange,
        fresh: bool,
        what: &str,
    ) {
        if change.is_empty() {
            return;
        }
        match self.dp.set_link(ns, name, &change).await {
            Ok(()) if !fresh => self.report.repaired.push(format!("{what} {name}")),
            Ok(()) => {}
            Err(e) => self.error(format!("{what} {name}"), e),
        }
    }

    /// Makes a sysctl hold `value`; a change to an object not `fresh` (just
    /// made) is a repair.
    async fn ensure_sysctl(&mut self, ns: Ns<'_>, key: &str, value: &str, fresh: bool) {
        if matches!(self.dp.sysctl(ns, key).await, Ok(v) if v == value) {
            return;
        }
        let within = ns.map(|n| format!(" in {n}")).unwrap_or_default();
        match self.dp.set_sysctl(ns, key, value).await {
            Ok(()) if !fresh => self
                .report
                .repaired
                .push(format!("sysctl {key}={value}{within}")),
            Ok(()) => {}
            Err(e) => self.error(format!("sysctl {key}{within}"), e),
        }
    }

    async fn stop_daemon(&mut self, pidfile: &Path) -> Result<(), HostError> {
        let Some(pid) = self.dp.daemon(pidfile).await? else {
            return Ok(());
        };
        match self.dp.signal(pid, DaemonSignal::Term).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        for _ in 0..50 {
            if self.dp.daemon(pidfile).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(HostError::failed(format!(
            "pid {pid} still alive 5s after SIGTERM"
        )))
    }

    async fn teardown_daemons(&mut self, plan: &Plan) {
        for (sub, desired, what) in [
            (
                "dhcp",
                plan.dhcp.keys().cloned().collect::<BTreeSet<_>>(),
                "dnsmasq",
            ),
            (
                "ra",
                plan.ra.keys().cloned().collect(),
                "router advertisements",
            ),
            (
                "metadata",
                plan.proxies.keys().cloned().collect(),
                "metadata-proxy",
            ),
        ] {
            let base = self.cfg.state_dir.join(sub);
            let entries = match self.dp.list_dir(&base).await {
                Ok(e) => e,
                Err(e) => {
                    self.error(format!("listing {}", base.display()), e);
                    continue;
                }
            };
            for key in entries.into_iter().filter(|k| !desired.contains(k)) {
                let dir = base.join(&key);
                if let Err(e) = self.stop_daemon(&dir.join("pid")).await {
                    self.error(format!("stopping {what} {key}"), e);
                    continue;
                }
                match self.dp.remove_dir(&dir).await {
                    Ok(()) => self.report.removed.push(format!("{what} {key}")),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => self.error(format!("removing {}", dir.display()), e),
                }
            }
        }
    }

    async fn teardown_namespaces(&mut self, plan: &Plan) {
        let existing = match self.dp.namespaces().await {
            Ok(n) => n,
            Err(e) => return self.error("listing namespaces", e),
        };
        for ns in &existing {
            let key = names::owned_namespace(ns);
            let ours = (ns.starts_with(names::DHCP_NS_PREFIX)
                || ns.starts_with(names::ROUTER_NS_PREFIX))
                && self.owned.contains(&key);
            if ours && !plan.namespaces.contains_key(ns) {
                match self.dp.delete_namespace(ns).await {
                    Ok(()) => {
                        self.report.removed.push(format!("namespace {ns}"));
                        self.disown(&key);
                    }
                    Err(e) if e.is_not_found() => self.disown(&key),
                    Err(e) => self.error(format!("deleting namespace {ns}"), e),
                }
            }
        }
        // Records of namespaces that are gone (removed by hand).
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|k| {
                k.strip_prefix("netns ")
                    .is_some_and(|n| !existing.iter().any(|e| e == n))
            })
            .cloned()
            .collect();
        for k in gone {
            self.disown(&k);
        }
    }

    async fn root_filtering(&mut self, plan: &Plan) {
        if !plan.root_tables.is_empty() {
            for key in ROOT_SYSCTLS {
                match self.dp.sysctl(None, key).await {
                    Ok(v) if v == "1" => {}
                    Ok(_) => match self.dp.set_sysctl(None, key, "1").await {
                        Ok(()) => self.report.repaired.push(format!("sysctl {key}=1")),
                        Err(e) => self.error(format!("sysctl {key}"), e),
                    },
                    Err(e) => self.error(format!("sysctl {key}"), e),
                }
            }
        }
        for t in &plan.root_tables {
            self.table(None, t).await;
        }
        let existing = match self.dp.nft_tables(None).await {
            Ok(t) => t,
            Err(e) => return self.error("listing nftables tables", e),
        };
        for (family, name) in existing {
            let ours = matches!(family.as_str(), "bridge" | "inet")
                && name == names::root_table(&self.cfg.instance);
            let wanted = plan
                .root_tables
                .iter()
                .any(|t| nft::family_name(t.family()) == family && t.name() == name);
            if ours && !wanted {
                let f = if family == "bridge" {
                    nft::Family::Bridge
                } else {
                    nft::Family::INet
                };
                match self
                    .dp
                    .nft_apply(None, &nft::delete_table_batch(f, &name))
                    .await
                {
                    Ok(()) => self
                        .report
                        .removed
                        .push(format!("nftables {family} {name}")),
                    Err(e) => self.error(format!("deleting nftables {family} {name}"), e),
                }
            }
        }
    }

    /// Replaces a table when the host's differs from it (by structure, or
    /// by what was recorded as last applied).
    async fn table(&mut self, ns: Ns<'_>, t: &TableBuilder) {
        let family = nft::family_name(t.family());
        let what = format!(
            "nftables {family} {}{}",
            t.name(),
            ns.map(|n| format!(" in {n}")).unwrap_or_default()
        );
        let record = self.cfg.state_dir.join("nft").join(format!(
            "{}-{family}-{}.json",
            ns.unwrap_or("root"),
            t.name()
        ));
        let json = t.to_json_pretty();
        let current = match self.dp.nft_table(ns, family, t.name()).await {
            Ok(c) => c,
            Err(e) => return self.error(&what, e),
        };
        let recorded = self.dp.read_file(&record).await.ok().flatten();
        if current.as_ref() == Some(&t.summary()) && recorded.as_deref() == Some(json.as_str()) {
            return;
        }
        if let Err(e) = self.dp.nft_apply(ns, &t.replace_batch()).await {
            return self.error(&what, e);
        }
        if current.is_none() {
            self.report.created.push(what.clone());
        } else {
            self.report.repaired.push(what.clone());
        }
        if let Err(e) = self.dp.write_file(&record, &json).await {
            self.error(format!("{what}: recording"), e);
        }
    }

    async fn root_links(&mut self, plan: &Plan) {
        let links: BTreeMap<String, Link> = match self.dp.links(None).await {
            Ok(l) => l.into_iter().map(|l| (l.name.clone(), l)).collect(),
            Err(e) => return self.error("listing links", e),
        };
        for (name, mtu) in &plan.bridges {
            let current = links.get(name);
            // A flat network's bridge may be the machine's (no OxiStack
            // prefix): recorded or not, teardown never deletes it.
            self.own(names::owned_link(name), current.is_none()).await;
            let mut fresh = false;
            match current {
                Some(l) if l.kind.as_deref() != Some("bridge") => {
                    self.report.errors.push(format!("bridge {name}: an interface of that name exists and is not a bridge ({:?})", l.kind));
                    continue;
                }
                Some(_) => {}
                None => match self
                    .dp
                    .add_link(None, &NewLink::Bridge { name: name.clone() })
                    .await
                {
                    Ok(()) => {
                        fresh = true;
                        self.report.created.push(format!("bridge {name}"));
                    }
                    Err(e) if e.is_exists() => {}
                    Err(e) => {
                        self.error(format!("bridge {name}"), e);
                        continue;
                    }
                },
            }
            // The host is no member of a tenant network: its bridge takes no
            // IPv6 address, and no router advertisement configures the host
            // (Neutron's Linux bridge agent does the same).
            if name.starts_with("oxbr-") {
                let key = format!("net.ipv6.conf.{name}.disable_ipv6");
                self.ensure_sysctl(None, &key, "1", fresh).await;
            }
            let change = link_change(current.filter(|_| !fresh), None, *mtu, None);
            self.fix_link(None, name, change, fresh, "bridge").await;
        }
        for (name, (vni, bridge, mtu)) in &plan.vxlans {
            let mut current = links.get(name);
            self.own(names::owned_link(name), current.is_none()).await;
            if let Some(l) = current {
                if l.kind.as_deref() != Some("vxlan") || l.vxlan_id != Some(*vni) {
                    match self.dp.delete_link(None, name).await {
                        Ok(()) => current = None,
                        Err(e) => {
                            self.error(format!("vxlan {name}: replacing a wrong device"), e);
                            continue;
                        }
                    }
                }
            }
            let mut fresh = false;
            if current.is_none() {
                let new = NewLink::Vxlan {
                    name: name.clone(),
                    vni: *vni,
                    local: self.cfg.vxlan_local,
                    dstport: self.cfg.vxlan_port,
                    learning: self.cfg.vxlan_learning,
                    remotes: vec![],
                };
                match self.dp.add_link(None, &new).await {
                    Ok(()) => {
                        fresh = true;
                        let what = if links.contains_key(name) {
                            &mut self.report.repaired
                        } else {
                            &mut self.report.created
                        };
                        what.push(format!("vxlan {name}"));
                    }
                    Err(e) => {
                        self.error(format!("vxlan {name}"), e);
                        continue;
                    }
                }
            }
            let change = link_change(current, Some(bridge), *mtu, None);
            self.fix_link(None, name, change, fresh, "vxlan").await;
        }
        for (name, (bridge, mtu)) in &plan.taps {
            let current = links.get(name);
            // A tap QEMU made itself is adopted: recorded as ours.
            self.own(names::owned_link(name), current.is_none()).await;
            let mut fresh = false;
            if current.is_none() {
                // QEMU opens it by name with script=no; a tap QEMU made itself is adopted.
                match self
                    .dp
                    .add_link(None, &NewLink::Tap { name: name.clone() })
                    .await
                {
                    Ok(()) => {
                        fresh = true;
                        self.report.created.push(format!("tap {name}"));
                    }
                    Err(e) if e.is_exists() => {}
                    Err(e) => {
                        self.error(format!("tap {name}"), e);
                        continue;
                    }
                }
            }
            let change = link_change(current, Some(bridge), *mtu, None);
            self.fix_link(None, name, change, fresh, "tap").await;
        }
    }

    async fn teardown_root_links(&mut self, plan: &Plan, which: Teardown) {
        let links = match self.dp.links(None).await {
            Ok(l) => l,
            Err(e) => return self.error("listing links", e),
        };
        let desired = plan.desired_root_links();
        let our_bridges: BTreeSet<&str> = plan.bridges.keys().map(String::as_str).collect();
        // Ports first, then VXLAN devices, bridges last.
        let rank = |l: &Link| {
            if l.name.starts_with("oxbr-") {
                2
            } else if l.name.starts_with("oxvx-") {
                1
            } else {
                0
            }
        };
        let mut stale: Vec<&Link> = links
            .iter()
            .filter(|l| !desired.contains(&l.name))
            .filter(|l| which == Teardown::All || l.name.starts_with("oxvx-"))
            .filter(|l| self.owned.contains(&names::owned_link(&l.name)))
            .filter(|l| {
                names::ROOT_PREFIXES.iter().any(|p| l.name.starts_with(p))
                    || (names::is_tap(&l.name)
                        && (l.kind.as_deref() == Some("tun")
                            || l.master.as_deref().is_some_and(|m| {
                                m.starts_with("oxbr-") || our_bridges.contains(m)
                            })))
            })
            .collect();
        stale.sort_by_key(|l| rank(l));
        for l in stale {
            let key = names::owned_link(&l.name);
            match self.dp.delete_link(None, &l.name).await {
                Ok(()) => {
                    self.report.removed.push(format!("link {}", l.name));
                    self.disown(&key);
                }
                // A veth goes with its peer's namespace.
                Err(e) if e.is_not_found() => self.disown(&key),
                Err(e) => self.error(format!("deleting link {}", l.name), e),
            }
        }
        // Records of links that are gone (veth ends of deleted namespaces,
        // links removed by hand) and that the plan does not want back.
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|k| {
                k.strip_prefix("link ")
                    .is_some_and(|n| !desired.contains(n) && !links.iter().any(|l| l.name == n))
            })
            .cloned()
            .collect();
        for k in gone {
            self.disown(&k);
        }
    }

    async fn namespaces(&mut self, plan: &Plan) {
        let existing: BTreeSet<String> = match self.dp.namespaces().await {
            Ok(n) => n.into_iter().collect(),
            Err(e) => return self.error("listing namespaces", e),
        };
        for (ns, np) in &plan.namespaces {
            let fresh = !existing.contains(ns);
            self.own(names::owned_namespace(ns), fresh).await;
            if fresh {
                match self.dp.add_namespace(ns).await {
                    Ok(()) => {
                        self.report.created.push(format!("namespace {ns}"));
                        self.fresh_namespaces.insert(ns.clone());
                    }
                    Err(e) if e.is_exists() => {}
                    Err(e) => {
                        self.error(format!("namespace {ns}"), e);
                        continue;
                    }
                }
            }
            self.namespace(ns, np, fresh).await;
        }
    }

    async fn namespace(&mut self, ns: &str, np: &NsPlan, fresh_ns: bool) {
        let root: BTreeMap<String, Link> = match self.dp.links(None).await {
            Ok(l) => l.into_iter().map(|l| (l.name.clone(), l)).collect(),
            Err(e) => return self.error("listing links", e),
        };
        let inner: BTreeMap<String, Link> = match self.dp.links(Some(ns)).await {
            Ok(l) => l.into_iter().map(|l| (l.name.clone(), l)).collect(),
            Err(e) => return self.error(format!("listing links in {ns}"), e),
        };
        for v in &np.veths {
            let (r, i) = (root.get(&v.root), inner.get(&v.inner));
            let whole = matches!((r, i), (Some(r), Some(_)) if r.kind.as_deref() == Some("veth"));
            self.own(names::owned_link(&v.root), !whole).await;
            let mut fresh = false;
            if !whole {
                // Half a pair (or a wrong device) is replaced by a new pair.
                if r.is_some() {
                    if let Err(e) = self.dp.delete_link(None, &v.root).await {
                        self.error(format!("veth {}: removing a broken end", v.root), e);
                        continue;
                    }
                }
                if i.is_some()
                    && self
                        .dp
                        .links(Some(ns))
                        .await
                        .map(|l| l.iter().any(|l| l.name == v.inner))
                        .unwrap_or(false)
                {
                    if let Err(e) = self.dp.delete_link(Some(ns), &v.inner).await {
                        self.error(format!("veth {}: removing a broken end", v.inner), e);
                        continue;
                    }
                }
                let new = NewLink::Veth {
                    name: v.root.clone(),
                    peer: v.inner.clone(),
                    peer_ns: Some(ns.to_string()),
                };
                if let Err(e) = self.dp.add_link(None, &new).await {
                    self.error(format!("veth {} into {ns}", v.root), e);
                    continue;
                }
                fresh = true;
                let bucket = if r.is_some() || i.is_some() {
                    &mut self.report.repaired
                } else {
                    &mut self.report.created
                };
                bucket.push(format!("veth {} into {ns}", v.root));
            }
            let (r, i) = if fresh { (None, None) } else { (r, i) };
            // Set while the interface is still down: our namespaces take no
            // address nor route from router advertisements (a DHCP namespace
            // would configure itself from its network's router, and the
            // address the kernel adds would flap with the plan's).
            let key = format!("net.ipv6.conf.{}.accept_ra", v.inner);
            self.ensure_sysctl(Some(ns), &key, "0", fresh).await;
            self.fix_link(
                None,
                &v.root,
                link_change(r, Some(&v.bridge), v.mtu, None),
                fresh,
                "veth",
            )
            .await;
            self.fix_link(
                Some(ns),
                &v.inner,
                link_change(i, None, v.mtu, Some(&v.mac)),
                fresh,
                "veth",
            )
            .await;
            self.addresses(ns, v, fresh).await;
        }
        // Interfaces of ours in the namespace that the plan no longer has.
        for name in inner.keys() {
            let ours = names::INNER_PREFIXES.iter().any(|p| name.starts_with(p));
            if ours && !np.veths.iter().any(|v| &v.inner == name) {
                match self.dp.delete_link(Some(ns), name).await {
                    Ok(()) => self.report.removed.push(format!("link {name} in {ns}")),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => self.error(format!("deleting {name} in {ns}"), e),
                }
            }
        }
        if np.router {
            // IPv6 `all.forwarding` also sets `default` and every interface,
            // so a router answers neighbour solicitations as a router.
            for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
                self.ensure_sysctl(Some(ns), key, "1", fresh_ns).await;
            }
        }
        self.routes(ns, np).await;
        if let Some(t) = &np.nat {
            self.table(Some(ns), t).await;
        }
    }

    async fn addresses(&mut self, ns: &str, v: &VethPlan, fresh: bool) {
        let current: BTreeSet<String> = match self.dp.addresses(Some(ns), &v.inner).await {
            Ok(a) => a.into_iter().collect(),
            Err(e) => return self.error(format!("addresses of {} in {ns}", v.inner), e),
        };
        let desired: BTreeSet<String> = v.addrs.iter().cloned().collect();
        for a in desired.difference(&current) {
            match self.dp.add_address(Some(ns), &v.inner, a).await {
                Ok(()) if !fresh => self
                    .report
                    .repaired
                    .push(format!("address {a} on {} in {ns}", v.inner)),
                Ok(()) => {}
                Err(e) => self.error(format!("address {a} on {} in {ns}", v.inner), e),
            }
        }
        for a in current.difference(&desired) {
            match self.dp.delete_address(Some(ns), &v.inner, a).await {
                Ok(()) => self
                    .report
                    .removed
                    .push(format!("address {a} on {} in {ns}", v.inner)),
                Err(e) if e.is_not_found() => {}
                Err(e) => self.error(format!("removing address {a} on {} in {ns}", v.inner), e),
            }
        }
    }

    async fn routes(&mut self, ns: &str, np: &NsPlan) {
        let current: BTreeSet<Route> = match self.dp.routes(Some(ns)).await {
            Ok(r) => r.into_iter().collect(),
            Err(e) => return self.error(format!("routes in {ns}"), e),
        };
        let desired: BTreeSet<Route> = np.routes.iter().cloned().collect();
        for r in desired.difference(&current) {
            match self.dp.replace_route(Some(ns), r).await {
                Ok(()) => self
                    .report
                    .created
                    .push(format!("route {} via {} in {ns}", r.dst, r.via)),
                Err(e) => self.error(format!("route {} via {} in {ns}", r.dst, r.via), e),
            }
        }
        for r in current.difference(&desired) {
            // `replace` above may already have taken a stale route's place.
            if desired
                .iter()
                .any(|d| d.dst == r.dst && d.via.is_ipv4() == r.via.is_ipv4())
            {
                continue;
            }
            match self.dp.delete_route(Some(ns), r).await {
                Ok(()) => self
                    .report
                    .removed
                    .push(format!("route {} via {} in {ns}", r.dst, r.via)),
                Err(e) if e.is_not_found() => {}
                Err(e) => self.error(format!("removing route {} via {} in {ns}", r.dst, r.via), e),
            }
        }
    }

    /// Writes a file when its contents differ; says whether it did.
    async fn write_if_changed(&mut self, path: &Path, contents: &str) -> Result<bool, HostError> {
        if self.dp.read_file(path).await?.as_deref() == Some(contents) {
            return Ok(false);
        }
        self.dp.write_file(path, contents).await?;
        Ok(true)
    }

    async fn dhcp(&mut self, plan: &Plan) {
        for (net, d) in &plan.dhcp {
            let what = format!("dnsmasq {net}");
            let files = async {
                let conf = self
                    .write_if_changed(&d.dir.join("dnsmasq.conf"), &d.conf)
                    .await?;
                // dnsmasq keeps the leases it gave in memory: a host entry removed
                // or changed (a deleted port whose address a new port now has)
                // would keep its lease, and the new port would get no offer. A
                // restart forgets them (leases are not on disk, `leasefile-ro`);
                // clients renew their own addresses from the host entries.
                let hosts_path = d.dir.join("hosts");
                let old_hosts = self.dp.read_file(&hosts_path).await?;
                let dropped = old_hosts.as_deref().is_some_and(|old| {
                    old.lines()
                        .any(|l| !l.is_empty() && !d.hosts.lines().any(|n| n == l))
                });
                let hosts = old_hosts.as_deref() != Some(d.hosts.as_str());
                if hosts {
                    self.dp.write_file(&hosts_path, &d.hosts).await?;
                }
                let opts = self.write_if_changed(&d.dir.join("opts"), &d.opts).await?;
                Ok::<_, HostError>((conf || dropped, hosts || opts))
            };
            let (conf_changed, data_changed) = match files.await {
                Ok(c) => c,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            let pidfile = d.dir.join("pid");
            let argv = vec![
                self.cfg.dnsmasq.clone(),
                format!("--conf-file={}", d.dir.join("dnsmasq.conf").display()),
                format!("--pid-file={}", pidfile.display()),
            ];
            let running = match self.dp.daemon(&pidfile).await {
                Ok(p) => p,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            self.daemon(
                &what,
                &d.ns,
                &argv,
                &pidfile,
                running,
                conf_changed,
                data_changed,
            )
            .await;
        }
    }

    /// Router advertisements: like DHCP's dnsmasq, but one file, whose
    /// change restarts the daemon.
    async fn router_advertisements(&mut self, plan: &Plan) {
        for (router, r) in &plan.ra {
            let what = format!("router advertisements {router}");
            let conf_path = r.dir.join("dnsmasq.conf");
            let changed = match self.write_if_changed(&conf_path, &r.conf).await {
                Ok(c) => c,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            let pidfile = r.dir.join("pid");
            let argv = vec![
                self.cfg.dnsmasq.clone(),
                format!("--conf-file={}", conf_path.display()),
                format!("--pid-file={}", pidfile.display()),
            ];
            let running = match self.dp.daemon(&pidfile).await {
                Ok(p) => p,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            self.daemon(&what, &r.ns, &argv, &pidfile, running, changed, false)
                .await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn daemon(
        &mut self,
        what: &str,
        ns: &str,
        argv: &[String],
        pidfile: &Path,
        running: Option<u32>,
        restart: bool,
        reload: bool,
    ) {
        let moved = running.is_some() && self.fresh_namespaces.contains(ns);
        match running {
            None => match self.dp.spawn_daemon(Some(ns), argv, pidfile).await {
                Ok(_) if restart => self.report.created.push(what.to_string()),
                Ok(_) => self.report.repaired.push(format!("{what} (restarted)")),
                Err(e) => self.error(what, e),
            },
            Some(_) if restart || moved => {
                if let Err(e) = self.stop_daemon(pidfile).await {
                    return self.error(what, e);
                }
                let why = if moved {
                    "restarted in its new namespace"
                } else {
                    "restarted with a new configuration"
                };
                match self.dp.spawn_daemon(Some(ns), argv, pidfile).await {
                    Ok(_) => self.report.repaired.push(format!("{what} ({why})")),
                    Err(e) => self.error(what, e),
                }
            }
            Some(pid) if reload => match self.dp.signal(pid, DaemonSignal::Hup).await {
                Ok(()) => self.report.repaired.push(format!("{what} (reloaded)")),
                Err(e) => self.error(what, e),
            },
            Some(_) => {}
        }
    }

    async fn proxies(&mut self, plan: &Plan) {
        for (key, p) in &plan.proxies {
            let what = format!("metadata-proxy {key}");
            let changed = match self
                .write_if_changed(&p.dir.join("args"), &(p.argv.join("\n") + "\n"))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            let pidfile = p.dir.join("pid");
            let running = match self.dp.daemon(&pidfile).await {
                Ok(r) => r,
                Err(e) => {
                    self.error(&what, e);
                    continue;
                }
            };
            self.daemon(&what, &p.ns, &p.argv, &pidfile, running, changed, false)
                .await;
        }
    }
}
