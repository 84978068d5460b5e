//! What compute asks of the network service: ports for a new server, their
//! binding to the host's tap, their release when the server goes, one port
//! more or less for a built server (interface attach and detach), the
//! `addresses` and `security_groups` of servers, and which instance owns a
//! fixed IP (metadata).
//!
//! Every function is safe to run twice (saga steps replay): allocation
//! reuses the ports already made for the server, binding and release are
//! idempotent.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use oxistack_model::{AppError, AppResult, AuthContext, NetworkId, PortId, Scope, ServerId};
use oxistack_store::network::{IpRequest, PortWrite};
use serde::{Deserialize, Serialize};

use crate::{ipam, policy_denied, read_scope, Network, OWNER_COMPUTE};

/// One NIC a server asks for (Nova's `networks` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedNic {
    /// A new port on this network, optionally with this fixed IP.
    Network {
        network_id: NetworkId,
        fixed_ip: Option<IpAddr>,
    },
    /// An existing, unused port of the caller's.
    Port(PortId),
    /// `auto`: the project's only network, else the only shared one.
    Auto,
}

/// A server's port as compute needs it to plug the NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub port_id: PortId,
    pub network_id: NetworkId,
    pub mac: String,
    pub fixed_ips: Vec<IpAddr>,
    /// The tap QEMU should use (`names::tap` of the port).
    pub tap: String,
    pub mtu: u32,
    /// `bridge` (Linux bridge datapath).
    pub vif_type: String,
}

/// How a port is bound to a server on a host.
#[derive(Debug, Clone)]
pub struct PortBinding {
    pub server_id: ServerId,
    pub host: String,
    pub tap: String,
    /// The server's hostname, handed out by DHCP.
    pub hostname: Option<String>,
}

/// One entry of Nova's `addresses` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAddress {
    pub addr: IpAddr,
    pub version: u8,
    pub mac: String,
    /// `fixed` or `floating`.
    pub kind: String,
}

/// Network name → addresses on it, in port order.
pub type ServerAddresses = BTreeMap<String, Vec<ServerAddress>>;

impl Network {
    /// The network `auto` means for this caller: its project's only
    /// network, else the only shared one. None available is a 400, several
    /// a 409, as Nova answers.
    pub async fn auto_network(&self, ctx: &AuthContext) -> AppResult<NetworkId> {
        let project = ctx.project()?;
        let nets = self.store.network_list(Scope::Project(project)).await?;
        let own: Vec<_> = nets
            .iter()
            .filter(|n| n.project_id == project && !n.external)
            .collect();
        let shared: Vec<_> = nets
            .iter()
            .filter(|n| n.shared && n.project_id != project && !n.external)
            .collect();
        match (own.as_slice(), shared.as_slice()) {
            ([one], _) => Ok(one.id),
            ([], [one]) => Ok(one.id),
            ([], []) => Err(AppError::bad_request(
                "Unable to automatically allocate a network for project: no network is available.",
            )),
            _ => Err(AppError::conflict(
                "Multiple possible networks found, use a Network ID to be more specific.",
            )),
        }
    }

    fn port_info(&self, p: &oxistack_store::network::Port, mtu: i64) -> PortInfo {
        PortInfo {
            port_id: p.id,
            network_id: p.network_id,
            mac: p.mac_address.clone(),
            fixed_ips: p.fixed_ips.iter().map(|f| f.ip_address).collect(),
            tap: p
                .tap
                .clone()
                .unwrap_or_else(|| oxistack_bus::network::names::tap(&p.id)),
            mtu: mtu as u32,
            vif_type: "bridge".into(),
        }
    }

    /// Gives a server its ports: new ones on the requested networks
    /// (deleted with the server) and the caller's existing ports (unbound
    /// again when the server goes). On an error, ports made so far are
    /// released. A replay finds the ports it made before and reuses them.
    pub async fn allocate_ports_for_server(
        &self,
        ctx: &AuthContext,
        server_id: &ServerId,
        requested: &[RequestedNic],
        host: &str,
    ) -> AppResult<Vec<PortInfo>> {
        let existing = self.server_ports(server_id).await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let mut out = Vec::new();
        for nic in requested {
            match self.allocate_one(ctx, server_id, nic, host, None).await {
                Ok(info) => out.push(info),
                Err(e) => {
                    self.release_ports_for_server(server_id).await.ok();
                    return Err(e);
                }
            }
        }
        self.kick();
        Ok(out)
    }

    /// One NIC of a server: the caller's port, or a new port (with the id
    /// `new_id` when given) on the NIC's network.
    async fn allocate_one(
        &self,
        ctx: &AuthContext,
        server_id: &ServerId,
        nic: &RequestedNic,
        host: &str,
        new_id: Option<PortId>,
    ) -> AppResult<PortInfo> {
        let (network_id, fixed_ip) = match nic {
            RequestedNic::Port(pid) => {
                let p = self.store.port_get(read_scope(ctx)?, pid).await?;
                return self.take_port(p, server_id, host).await;
            }
            RequestedNic::Network {
                network_id,
                fixed_ip,
            } => (*network_id, *fixed_ip),
            RequestedNic::Auto => (self.auto_network(ctx).await?, None),
        };
        let project = ctx.project()?;
        let net = self
            .store
            .network_get(read_scope(ctx)?, &network_id)
            .await?;
        if net.project_id != project && !net.shared && !ctx.is_admin() {
            return Err(policy_denied("create_port"));
        }
        let reqs: Vec<IpRequest> = match fixed_ip {
            Some(ip) => {
                let f = crate::ports::FixedIpRequest {
                    subnet_id: None,
                    ip_address: Some(ip.to_string()),
                };
                self.ip_requests(&net, Some(&[f])).await?
            }
            None => self.ip_requests(&net, None).await?,
        };
        let mut p = self.new_port_record(&net, project);
        if let Some(id) = new_id {
            p.id = id;
        }
        p.device_id = server_id.to_string();
        p.device_owner = OWNER_COMPUTE.into();
        p.binding_host_id = host.to_string();
        p.auto_delete = true;
        p.tap = Some(oxistack_bus::network::names::tap(&p.id));
        let groups = self
            .port_groups(&project, None, p.port_security_enabled)
            .await?;
        let quota = Some(
            self.quota(&project, oxistack_store::network::Counted::Port)
                .await?,
        );
        self.insert_port_with_mac(
            &mut p,
            PortWrite {
                ips: Some(&reqs),
                security_groups: Some(&groups),
                quota,
                pick: &ipam::pick_free,
            },
        )
        .await?;
        Ok(self.port_info(&p, net.mtu))
    }

    /// Makes the user's port the server's (kept, not deleted, when the
    /// server lets go of it). A port another device holds is a 409.
    async fn take_port(
        &self,
        mut p: oxistack_store::network::Port,
        server_id: &ServerId,
        host: &str,
    ) -> AppResult<PortInfo> {
        if !p.device_id.is_empty() && p.device_id != server_id.to_string() {
            return Err(
                AppError::conflict(format!("Port {} is still in use.", p.id))
                    .with_code("PortInUse"),
            );
        }
        p.device_id = server_id.to_string();
        p.device_owner = OWNER_COMPUTE.into();
        p.binding_host_id = host.to_string();
        p.auto_delete = false;
        self.store
            .port_update(
                &p,
                PortWrite {
                    ips: None,
                    security_groups: None,
                    quota: None,
                    pick: &ipam::pick_free,
                },
            )
            .await?;
        let n = self.store.network_get(Scope::All, &p.network_id).await?;
        Ok(self.port_info(&p, n.mtu))
    }

    /// The ports a server holds now, as compute plugs them (in the order
    /// they were made).
    pub async fn server_ports(&self, server_id: &ServerId) -> AppResult<Vec<PortInfo>> {
        let mut out = Vec::new();
        for p in self.store.ports_of_device(&server_id.to_string()).await? {
            let n = self.store.network_get(Scope::All, &p.network_id).await?;
            out.push(self.port_info(&p, n.mtu));
        }
        Ok(out)
    }

    /// Gives a built server one more port (Nova's interface attach): the
    /// user's port, kept when it is detached again, or a new port on a
    /// network (`Network`; `Auto` must be resolved by the caller), deleted
    /// when it is detached. The new port gets the id `new_port_id`, chosen
    /// when the attach was recorded, so a replay finds the port it made
    /// instead of making another. The caller checked the user may use the
    /// port or network; a port another device took since is a 409.
    /// Idempotent: a port already the server's is returned as it is.
    pub async fn attach_port_for_server(
        &self,
        ctx: &AuthContext,
        server_id: &ServerId,
        nic: &RequestedNic,
        new_port_id: PortId,
        host: &str,
    ) -> AppResult<PortInfo> {
        let id = match nic {
            RequestedNic::Port(p) => *p,
            _ => new_port_id,
        };
        let existing = match self.store.port_get(Scope::All, &id).await {
            Ok(p) => Some(p),
            Err(e) if e.kind == oxistack_model::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let info = match (nic, existing) {
            (_, Some(p)) if p.device_id == server_id.to_string() => {
                let n = self.store.network_get(Scope::All, &p.network_id).await?;
                return Ok(self.port_info(&p, n.mtu));
            }
            (RequestedNic::Port(_), Some(p)) => self.take_port(p, server_id, host).await?,
            (RequestedNic::Port(pid), None) => {
                return Err(oxistack_store::network::port_not_found(pid))
            }
            (RequestedNic::Auto, _) => {
                return Err(AppError::internal(
                    "attach_port_for_server: `auto` must be resolved to a network first",
                ))
            }
            (_, Some(_)) => {
                return Err(AppError::internal(format!(
                    "port id {id} chosen for a new port is taken"
                )))
            }
            (nic, None) => {
                self.allocate_one(ctx, server_id, nic, host, Some(new_port_id))
                    .await?
            }
        };
        self.kick();
        Ok(info)
    }

    /// Releases one port of a server (interface detach, or the undo of an
    /// attach): deleted if it was made for the server, else unbound and
    /// kept. A port that is gone, or that another device holds, is left
    /// alone. Idempotent.
    pub async fn release_port_for_server(
        &self,
        server_id: &ServerId,
        port_id: &PortId,
    ) -> AppResult<()> {
        let p = match self.store.port_get(Scope::All, port_id).await {
            Ok(p) => p,
            Err(e) if e.kind == oxistack_model::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if p.device_id != server_id.to_string() {
            return Ok(());
        }
        self.release_port(p).await?;
        self.kick();
        Ok(())
    }

    /// Deletes a port made for a server, or unbinds (and disassociates the
    /// floating IPs of) one the user gave.
    async fn release_port(&self, mut p: oxistack_store::network::Port) -> AppResult<()> {
        if p.auto_delete {
            return self.store.port_delete(&p.id).await;
        }
        p.device_id.clear();
        p.device_owner.clear();
        p.binding_host_id.clear();
        p.tap = None;
        p.status = "DOWN".into();
        self.store
            .port_update(
                &p,
                PortWrite {
                    ips: None,
                    security_groups: None,
                    quota: None,
                    pick: &ipam::pick_free,
                },
            )
            .await?;
        for mut f in self.store.floating_ip_list(Scope::All).await? {
            if f.port_id == Some(p.id) {
                f.port_id = None;
                f.fixed_ip_address = None;
                f.router_id = None;
                f.status = "DOWN".into();
                self.store.floating_ip_update(&f).await?;
            }
        }
        Ok(())
    }

    /// Binds a port to the server's tap on `host`: the port goes ACTIVE and
    /// the datapath plugs the tap into the network's bridge.
    pub async fn bind_port(&self, port_id: &PortId, b: &PortBinding) -> AppResult<()> {
        let mut p = self.store.port_get(Scope::All, port_id).await?;
        p.device_id = b.server_id.to_string();
        if p.device_owner.is_empty() {
            p.device_owner = OWNER_COMPUTE.into();
        }
        p.binding_host_id = b.host.clone();
        p.tap = Some(b.tap.clone());
        p.status = "ACTIVE".into();
        if let Some(h) = &b.hostname {
            p.dns_name = h.clone();
        }
        self.store
            .port_update(
                &p,
                PortWrite {
                    ips: None,
                    security_groups: None,
                    quota: None,
                    pick: &ipam::pick_free,
                },
            )
            .await?;
        self.kick();
        Ok(())
    }

    /// Releases a server's ports: those made for it are deleted, those the
    /// user gave are unbound and kept. Floating IPs on them are
    /// disassociated. Idempotent.
    pub async fn release_ports_for_server(&self, server_id: &ServerId) -> AppResult<()> {
        for p in self.store.ports_of_device(&server_id.to_string()).await? {
            self.release_port(p).await?;
        }
        self.kick();
        Ok(())
    }

    /// Nova's `addresses` of each server: fixed IPs by network name, each
    /// followed by the floating IPs mapped to it.
    pub async fn server_addresses(
        &self,
        server_ids: &[ServerId],
    ) -> AppResult<HashMap<ServerId, ServerAddresses>> {
        let mut out: HashMap<ServerId, ServerAddresses> = HashMap::new();
        if server_ids.is_empty() {
            return Ok(out);
        }
        let nets: HashMap<NetworkId, String> = self
            .store
            .network_list(Scope::All)
            .await?
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        let fips = self.store.floating_ip_list(Scope::All).await?;
        for sid in server_ids {
            let mut addrs = ServerAddresses::new();
            for p in self.store.ports_of_device(&sid.to_string()).await? {
                let name = nets
                    .get(&p.network_id)
                    .cloned()
                    .unwrap_or_else(|| p.network_id.to_string());
                let list = addrs.entry(name).or_default();
                for f in &p.fixed_ips {
                    list.push(ServerAddress {
                        addr: f.ip_address,
                        version: if f.ip_address.is_ipv4() { 4 } else { 6 },
                        mac: p.mac_address.clone(),
                        kind: "fixed".into(),
                    });
                    for fip in fips.iter().filter(|x| {
                        x.port_id == Some(p.id) && x.fixed_ip_address == Some(f.ip_address)
                    }) {
                        list.push(ServerAddress {
                            addr: fip.floating_ip_address,
                            version: if fip.floating_ip_address.is_ipv4() {
                                4
                            } else {
                                6
                            },
                            mac: p.mac_address.clone(),
                            kind: "floating".into(),
                        });
                    }
                }
            }
            out.insert(*sid, addrs);
        }
        Ok(out)
    }

    /// Nova's `security_groups` of each server: the names of its ports'
    /// groups (the id for a group without a name, as Nova shows it), each
    /// once, in port order. A server whose ports have no group, or that has
    /// no port, is absent: Nova then leaves the key out of the view.
    pub async fn server_security_groups(
        &self,
        server_ids: &[ServerId],
    ) -> AppResult<HashMap<ServerId, Vec<String>>> {
        let mut out: HashMap<ServerId, Vec<String>> = HashMap::new();
        if server_ids.is_empty() {
            return Ok(out);
        }
        let devices: Vec<String> = server_ids.iter().map(|s| s.to_string()).collect();
        for (device, group_id, name) in self.store.device_security_groups(&devices).await? {
            let Ok(sid) = device.parse::<ServerId>() else {
                continue;
            };
            let name = if name.is_empty() {
                group_id.to_string()
            } else {
                name
            };
            let names = out.entry(sid).or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(out)
    }

    /// Which port, and which device (server id), holds `ip` on `network`:
    /// the metadata service's identification of an instance.
    pub async fn metadata_lookup(
        &self,
        network_id: &NetworkId,
        ip: &IpAddr,
    ) -> AppResult<Option<(PortId, String)>> {
        Ok(self
            .store
            .port_by_ip(network_id, ip)
            .await?
            .filter(|p| p.device_owner.starts_with("compute:"))
            .map(|p| (p.id, p.device_id)))
    }
}
