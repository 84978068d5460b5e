//! A stateful in-memory [`Datapath`]: namespaces, links (with veth peers
//! and bridge ports), addresses, routes, sysctls, nftables tables, files and
//! daemons. It enforces the preconditions the kernel does ("exists", "no
//! such device", a master must be a bridge, an nftables batch applies whole
//! or not at all) and fails any mutating call whose description contains an
//! injected pattern, so error paths are tested too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use nftables::schema::Nftables;
use serde_json::Value;

use crate::datapath::{
    DaemonSignal, Datapath, HostError, HostResult, Link, LinkChange, NewLink, Ns, Route,
    TableSummary,
};

type NsKey = Option<String>;

#[derive(Debug, Clone, Default)]
struct NsState {
    links: BTreeMap<String, Link>,
    addrs: BTreeMap<String, BTreeSet<String>>,
    routes: BTreeSet<Route>,
    sysctls: BTreeMap<String, String>,
    /// VXLAN device -> its UDP port (with the VNI, what the kernel keeps unique).
    vxlan_ports: BTreeMap<String, u16>,
    /// (family, table) -> chain -> rules (as JSON).
    nft: BTreeMap<(String, String), BTreeMap<String, Vec<Value>>>,
}

/// A daemon the fake "started".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDaemon {
    pub pid: u32,
    pub ns: Option<String>,
    pub argv: Vec<String>,
    pub pidfile: PathBuf,
    /// SIGHUPs received.
    pub reloads: u32,
}

#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<NsKey, NsState>,
    /// (ns, link) -> (ns, peer) for veth pairs, both directions.
    peers: BTreeMap<(NsKey, String), (NsKey, String)>,
    files: BTreeMap<PathBuf, String>,
    daemons: BTreeMap<u32, FakeDaemon>,
    next_pid: u32,
    failures: Vec<String>,
    mutations: Vec<String>,
}

/// The fake host. Cheap to create; one per test.
#[derive(Debug)]
pub struct FakeDatapath {
    state: Mutex<State>,
}

impl Default for FakeDatapath {
    fn default() -> Self {
        Self::new()
    }
}

fn key(ns: Ns<'_>) -> NsKey {
    ns.map(str::to_string)
}

fn shown(ns: &NsKey) -> String {
    ns.clone().unwrap_or_else(|| "root".into())
}

impl FakeDatapath {
    pub fn new() -> Self {
        let mut state = State {
            next_pid: 1000,
            ..State::default()
        };
        let mut root = NsState::default();
        root.sysctls
            .insert("net.bridge.bridge-nf-call-iptables".into(), "0".into());
        root.sysctls
            .insert("net.bridge.bridge-nf-call-ip6tables".into(), "0".into());
        state.namespaces.insert(None, root);
        FakeDatapath {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every later mutating call whose description (e.g. `add_link root
    /// oxbr-…`, `nft_apply oxrouter-…`) contains `pattern` fails.
    pub fn fail_matching(&self, pattern: &str) {
        self.lock().failures.push(pattern.to_string());
    }

    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// The mutating calls made so far, as descriptions.
    pub fn mutations(&self) -> Vec<String> {
        self.lock().mutations.clone()
    }

    pub fn daemons(&self) -> Vec<FakeDaemon> {
        self.lock().daemons.values().cloned().collect()
    }

    /// Simulates a daemon dying by itself.
    pub fn crash_daemon(&self, pid: u32) {
        self.lock().daemons.remove(&pid);
    }

    pub fn file(&self, path: &Path) -> Option<String> {
        self.lock().files.get(path).cloned()
    }

    /// The rules of a chain, as the JSON objects the batch added.
    pub fn nft_rules(
        &self,
        ns: Ns<'_>,
        family: &str,
        table: &str,
        chain: &str,
    ) -> Option<Vec<Value>> {
        let st = self.lock();
        st.namespaces
            .get(&key(ns))?
            .nft
            .get(&(family.into(), table.into()))?
            .get(chain)
            .cloned()
    }

    /// Deletes a chain's rules behind the agent's back (a repair test).
    pub fn tamper_flush_chain(&self, ns: Ns<'_>, family: &str, table: &str, chain: &str) {
        let mut st = self.lock();
        if let Some(rules) = st
            .namespaces
            .get_mut(&key(ns))
            .and_then(|n| n.nft.get_mut(&(family.into(), table.into())))
            .and_then(|t| t.get_mut(chain))
        {
            rules.clear();
        }
    }

    fn mutate(&self, what: String) -> HostResult<std::sync::MutexGuard<'_, State>> {
        let mut st = self.lock();
        if st.failures.iter().any(|p| what.contains(p.as_str())) {
            return Err(HostError::failed(format!("injected failure: {what}")));
        }
        st.mutations.push(what);
        Ok(st)
    }
}

impl State {
    fn ns(&self, ns: &NsKey) -> HostResult<&NsState> {
        self.namespaces
            .get(ns)
            .ok_or_else(|| HostError::not_found(format!("namespace {}", shown(ns))))
    }
    fn ns_mut(&mut self, ns: &NsKey) -> HostResult<&mut NsState> {
        self.namespaces
            .get_mut(ns)
            .ok_or_else(|| HostError::not_found(format!("namespace {}", shown(ns))))
    }
    fn remove_link(&mut self, ns: &NsKey, name: &str) {
        if let Some(n) = self.namespaces.get_mut(ns) {
            if n.links.remove(name).is_some() {
                n.addrs.remove(name);
                for l in n.links.values_mut() {
                    if l.master.as_deref() == Some(name) {
                        l.master = None;
                    }
                }
            }
        }
        if let Some((pns, peer)) = self.peers.remove(&(ns.clone(), name.to_string())) {
            self.peers.remove(&(pns.clone(), peer.clone()));
            self.remove_link(&pns, &peer);
        }
    }
}

fn new_link(name: &str, kind: &str) -> Link {
    Link {
        name: name.to_string(),
        kind: Some(kind.to_string()),
        master: None,
        mtu: 1500,
        mac: Some("02:00:00:00:00:01".into()),
        up: false,
        vxlan_id: None,
    }
}

#[async_trait]
impl Datapath for FakeDatapath {
    async fn namespaces(&self) -> HostResult<Vec<String>> {
        Ok(self.lock().namespaces.keys().flatten().cloned().collect())
    }

    async fn add_namespace(&self, name: &str) -> HostResult<()> {
        let mut st = self.mutate(format!("add_namespace {name}"))?;
        let k = Some(name.to_string());
        if st.namespaces.contains_key(&k) {
            return Err(HostError::exists(format!("namespace {name}")));
        }
        let mut ns = NsState::default();
        let mut lo = new_link("lo", "loopback");
        lo.kind = None;
        lo.up = true;
        ns.links.insert("lo".into(), lo);
        ns.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        ns.sysctls
            .insert("net.ipv6.conf.all.forwarding".into(), "0".into());
        st.namespaces.insert(k, ns);
        Ok(())
    }

    async fn delete_namespace(&self, name: &str) -> HostResult<()> {
        let mut st = self.mutate(format!("delete_namespace {name}"))?;
        let k = Some(name.to_string());
        let links: Vec<String> = st.ns(&k)?.links.keys().cloned().collect();
        for l in links {
            st.remove_link(&k, &l);
        }
        st.namespaces.remove(&k);
        Ok(())
    }

    async fn links(&self, ns: Ns<'_>) -> HostResult<Vec<Link>> {
        Ok(self.lock().ns(&key(ns))?.links.values().cloned().collect())
    }

    async fn add_link(&self, ns: Ns<'_>, link: &NewLink) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("add_link {} {}", shown(&k), link.name()))?;
        if st.ns(&k)?.links.contains_key(link.name()) {
            return Err(HostError::exists(format!("link {}", link.name())));
        }
        match link {
            NewLink::Bridge { name } => {
                st.ns_mut(&k)?
                    .links
                    .insert(name.clone(), new_link(name, "bridge"));
            }
            NewLink::Vxlan {
                name, vni, dstport, ..
            } => {
                // As the kernel: one device per VNI and port in a namespace.
                let taken = {
                    let n = st.ns(&k)?;
                    n.links.values().any(|l| {
                        l.vxlan_id == Some(*vni) && n.vxlan_ports.get(&l.name) == Some(dstport)
                    })
                };
                if taken {
                    return Err(HostError::exists(format!(
                        "A VXLAN device with the specified VNI ({vni}) already exists"
                    )));
                }
                let mut l = new_link(name, "vxlan");
                l.vxlan_id = Some(*vni);
                let n = st.ns_mut(&k)?;
                n.links.insert(name.clone(), l);
                n.vxlan_ports.insert(name.clone(), *dstport);
            }
            NewLink::Tap { name } => {
                st.ns_mut(&k)?
                    .links
                    .insert(name.clone(), new_link(name, "tun"));
            }
            NewLink::Veth {
                name,
                peer,
                peer_ns,
            } => {
                let pk = peer_ns.clone().or(k.clone());
                if st.ns(&pk)?.links.contains_key(peer) {
                    return Err(HostError::exists(format!("link {peer}")));
                }
                st.ns_mut(&k)?
                    .links
                    .insert(name.clone(), new_link(name, "veth"));
                st.ns_mut(&pk)?
                    .links
                    .insert(peer.clone(), new_link(peer, "veth"));
                st.peers
                    .insert((k.clone(), name.clone()), (pk.clone(), peer.clone()));
                st.peers.insert((pk, peer.clone()), (k, name.clone()));
            }
        }
        Ok(())
    }

    async fn set_link(&self, ns: Ns<'_>, name: &str, change: &LinkChange) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("set_link {} {name}", shown(&k)))?;
        let n = st.ns_mut(&k)?;
        if let Some(m) = &change.master {
            match n.links.get(m) {
                Some(b) if b.kind.as_deref() == Some("bridge") => {}
                Some(_) => return Err(HostError::failed(format!("{m} is not a bridge"))),
                None => return Err(HostError::not_found(format!("Cannot find device \"{m}\""))),
            }
        }
        let l = n
            .links
            .get_mut(name)
            .ok_or_else(|| HostError::not_found(format!("Cannot find device \"{name}\"")))?;
        if let Some(mtu) = change.mtu {
            l.mtu = mtu;
        }
        if let Some(mac) = &change.mac {
            l.mac = Some(mac.to_lowercase());
        }
        if let Some(m) = &change.master {
            l.master = Some(m.clone());
        }
        if let Some(up) = change.up {
            l.up = up;
        }
        Ok(())
    }

    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("delete_link {} {name}", shown(&k)))?;
        if !st.ns(&k)?.links.contains_key(name) {
            return Err(HostError::not_found(format!(
                "Cannot find device \"{name}\""
            )));
        }
        st.remove_link(&k, name);
        Ok(())
    }

    async fn addresses(&self, ns: Ns<'_>, dev: &str) -> HostResult<Vec<String>> {
        let st = self.lock();
        let n = st.ns(&key(ns))?;
        if !n.links.contains_key(dev) {
            return Err(HostError::not_found(format!(
                "Cannot find device \"{dev}\""
            )));
        }
        Ok(n.addrs
            .get(dev)
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn add_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("add_address {} {dev} {cidr}", shown(&k)))?;
        let n = st.ns_mut(&k)?;
        if !n.links.contains_key(dev) {
            return Err(HostError::not_found(format!(
                "Cannot find device \"{dev}\""
            )));
        }
        if !n
            .addrs
            .entry(dev.to_string())
            .or_default()
            .insert(cidr.to_string())
        {
            return Err(HostError::exists(format!("address {cidr}")));
        }
        Ok(())
    }

    async fn delete_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("delete_address {} {dev} {cidr}", shown(&k)))?;
        let n = st.ns_mut(&k)?;
        if !n
            .addrs
            .get_mut(dev)
            .map(|a| a.remove(cidr))
            .unwrap_or(false)
        {
            return Err(HostError::not_found(format!("address {cidr} on {dev}")));
        }
        Ok(())
    }

    async fn routes(&self, ns: Ns<'_>) -> HostResult<Vec<Route>> {
        Ok(self.lock().ns(&key(ns))?.routes.iter().cloned().collect())
    }

    async fn replace_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!(
            "replace_route {} {} via {}",
            shown(&k),
            route.dst,
            route.via
        ))?;
        let n = st.ns_mut(&k)?;
        n.routes
            .retain(|r| r.dst != route.dst || r.via.is_ipv4() != route.via.is_ipv4());
        n.routes.insert(route.clone());
        Ok(())
    }

    async fn delete_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!(
            "delete_route {} {} via {}",
            shown(&k),
            route.dst,
            route.via
        ))?;
        if !st.ns_mut(&k)?.routes.remove(route) {
            return Err(HostError::not_found(format!(
                "route {} via {}",
                route.dst, route.via
            )));
        }
        Ok(())
    }

    async fn sysctl(&self, ns: Ns<'_>, key_: &str) -> HostResult<String> {
        let st = self.lock();
        st.ns(&key(ns))?
            .sysctls
            .get(key_)
            .cloned()
            .ok_or_else(|| HostError::not_found(format!("sysctl {key_}")))
    }

    async fn set_sysctl(&self, ns: Ns<'_>, key_: &str, value: &str) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("set_sysctl {} {key_}={value}", shown(&k)))?;
        st.ns_mut(&k)?
            .sysctls
            .insert(key_.to_string(), value.to_string());
        Ok(())
    }

    async fn nft_tables(&self, ns: Ns<'_>) -> HostResult<Vec<(String, String)>> {
        Ok(self.lock().ns(&key(ns))?.nft.keys().cloned().collect())
    }

    async fn nft_table(
        &self,
        ns: Ns<'_>,
        family: &str,
        name: &str,
    ) -> HostResult<Option<TableSummary>> {
        let st = self.lock();
        Ok(st
            .ns(&key(ns))?
            .nft
            .get(&(family.to_string(), name.to_string()))
            .map(|t| TableSummary {
                chains: t.iter().map(|(c, r)| (c.clone(), r.len())).collect(),
            }))
    }

    async fn nft_apply(&self, ns: Ns<'_>, batch: &Nftables<'_>) -> HostResult<()> {
        let k = key(ns);
        let mut st = self.mutate(format!("nft_apply {}", shown(&k)))?;
        let json = serde_json::to_value(batch).map_err(|e| HostError::failed(e.to_string()))?;
        // Work on a copy: the batch commits whole or not at all.
        let mut tables = st.ns(&k)?.nft.clone();
        let s = |v: &Value, f: &str| {
            v.get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for cmd in json
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(add) = cmd.get("add") {
                if let Some(t) = add.get("table") {
                    tables.entry((s(t, "family"), s(t, "name"))).or_default();
                } else if let Some(c) = add.get("chain") {
                    let t = tables
                        .get_mut(&(s(c, "family"), s(c, "table")))
                        .ok_or_else(|| {
                            HostError::not_found(format!("table {} for chain", s(c, "table")))
                        })?;
                    t.entry(s(c, "name")).or_default();
                } else if let Some(r) = add.get("rule") {
                    let chain = tables
                        .get_mut(&(s(r, "family"), s(r, "table")))
                        .and_then(|t| t.get_mut(&s(r, "chain")))
                        .ok_or_else(|| {
                            HostError::not_found(format!("chain {} for rule", s(r, "chain")))
                        })?;
                    chain.push(r.get("expr").cloned().unwrap_or(Value::Null));
                } else {
                    return Err(HostError::failed(format!(
                        "fake nft: unsupported add {add}"
                    )));
                }
            } else if let Some(del) = cmd.get("delete") {
                let t = del.get("table").ok_or_else(|| {
                    HostError::failed(format!("fake nft: unsupported delete {del}"))
                })?;
                if tables.remove(&(s(t, "family"), s(t, "name"))).is_none() {
                    return Err(HostError::not_found(format!("table {}", s(t, "name"))));
                }
            } else {
                return Err(HostError::failed(format!(
                    "fake nft: unsupported command {cmd}"
                )));
            }
        }
        st.ns_mut(&k)?.nft = tables;
        Ok(())
    }

    async fn read_file(&self, path: &Path) -> HostResult<Option<String>> {
        Ok(self.lock().files.get(path).cloned())
    }

    async fn write_file(&self, path: &Path, contents: &str) -> HostResult<()> {
        let mut st = self.mutate(format!("write_file {}", path.display()))?;
        st.files.insert(path.to_path_buf(), contents.to_string());
        Ok(())
    }

    async fn remove_dir(&self, path: &Path) -> HostResult<()> {
        let mut st = self.mutate(format!("remove_dir {}", path.display()))?;
        let before = st.files.len();
        st.files.retain(|p, _| !p.starts_with(path));
        if before == st.files.len() {
            return Err(HostError::not_found(path.display().to_string()));
        }
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> HostResult<Vec<String>> {
        let st = self.lock();
        let names: BTreeSet<String> = st
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(path).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn daemon(&self, pidfile: &Path) -> HostResult<Option<u32>> {
        let st = self.lock();
        let Some(pid) = st
            .files
            .get(pidfile)
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            return Ok(None);
        };
        Ok(st
            .daemons
            .get(&pid)
            .filter(|d| d.pidfile == pidfile)
            .map(|d| d.pid))
    }

    async fn spawn_daemon(&self, ns: Ns<'_>, argv: &[String], pidfile: &Path) -> HostResult<u32> {
        let k = key(ns);
        let mut st = self.mutate(format!("spawn_daemon {} {}", shown(&k), argv.join(" ")))?;
        st.ns(&k)?;
        st.next_pid += 1;
        let pid = st.next_pid;
        st.daemons.insert(
            pid,
            FakeDaemon {
                pid,
                ns: k,
                argv: argv.to_vec(),
                pidfile: pidfile.to_path_buf(),
                reloads: 0,
            },
        );
        st.files.insert(pidfile.to_path_buf(), format!("{pid}\n"));
        Ok(pid)
    }

    async fn signal(&self, pid: u32, signal: DaemonSignal) -> HostResult<()> {
        let mut st = self.mutate(format!("signal {pid} {signal:?}"))?;
        match signal {
            DaemonSignal::Hup => {
                st.daemons
                    .get_mut(&pid)
                    .ok_or_else(|| HostError::not_found(format!("pid {pid}")))?
                    .reloads += 1;
            }
            DaemonSignal::Term => {
                st.daemons
                    .remove(&pid)
                    .ok_or_else(|| HostError::not_found(format!("pid {pid}")))?;
            }
        }
        Ok(())
    }
}
