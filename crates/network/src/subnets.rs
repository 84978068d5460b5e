//! Subnets: CIDR, gateway and pool validation; the network's DHCP port
//! (one per network, holding one address on each DHCP-enabled subnet, as
//! Neutron's DHCP agent keeps it).

use std::net::IpAddr;

use oxistack_model::time::now;
use oxistack_model::{AppResult, AuthContext, NetworkId, ProjectId, SubnetId};
use oxistack_store::network::{Counted, HostRoute, IpRequest, NetworkRec, Pool, PortWrite, Subnet};
use serde::Deserialize;

use crate::ipam;
use crate::{
    invalid, nullable, owner_for_create, policy_denied, read_scope, require_owner, Network,
    OWNER_DHCP,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetCreate {
    pub network_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub ip_version: i64,
    pub cidr: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub gateway_ip: Option<Option<String>>,
    pub allocation_pools: Option<Vec<Pool>>,
    pub dns_nameservers: Option<Vec<String>>,
    pub host_routes: Option<Vec<HostRoute>>,
    pub enable_dhcp: Option<bool>,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub subnetpool_id: Option<String>,
    pub prefixlen: Option<i64>,
    pub use_default_subnetpool: Option<bool>,
    pub service_types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetUpdate {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub gateway_ip: Option<Option<String>>,
    pub allocation_pools: Option<Vec<Pool>>,
    pub dns_nameservers: Option<Vec<String>>,
    pub host_routes: Option<Vec<HostRoute>>,
    pub enable_dhcp: Option<bool>,
}

const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

fn check_dns(list: &[String]) -> AppResult<()> {
    let mut seen = std::collections::HashSet::new();
    for d in list {
        if d.parse::<IpAddr>().is_err() {
            return Err(invalid(format!("'{d}' is not a valid nameserver.")));
        }
        if !seen.insert(d) {
            return Err(invalid(format!("Duplicate nameserver '{d}'.")));
        }
    }
    Ok(())
}

fn check_routes(net: &ipnet::IpNet, routes: &[HostRoute]) -> AppResult<()> {
    for r in routes {
        let d: ipnet::IpNet = r
            .destination
            .parse()
            .map_err(|_| invalid(format!("'{}' is not a valid IP subnet.", r.destination)))?;
        if d.addr().is_ipv4() != net.addr().is_ipv4() || r.nexthop.is_ipv4() != net.addr().is_ipv4()
        {
            return Err(invalid(format!(
                "Host route {} via {} does not match the subnet's IP version.",
                r.destination, r.nexthop
            ))
            .with_code("HostRoutesExhausted"));
        }
    }
    Ok(())
}

fn parse_gateway(net: &ipnet::IpNet, g: &str) -> AppResult<IpAddr> {
    let ip: IpAddr = g
        .parse()
        .map_err(|_| invalid(format!("'{g}' is not a valid IP address")))?;
    ipam::validate_gateway(net, ip)?;
    Ok(ip)
}

impl Network {
    pub async fn subnet_create(&self, ctx: &AuthContext, b: SubnetCreate) -> AppResult<Subnet> {
        let network_id: NetworkId = b
            .network_id
            .parse()
            .map_err(|_| crate::ports::bad_network_id(&b.network_id))?;
        let net = self
            .store
            .network_get(read_scope(ctx)?, &network_id)
            .await?;
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_subnet",
        )?;
        if net.project_id != project && !ctx.is_admin() {
            return Err(policy_denied("create_subnet"));
        }
        let s = self.subnet_insert(project, &net, b, true).await?;
        Ok(s)
    }

    /// Validates and inserts a subnet, then gives the network's DHCP port
    /// an address on it when DHCP is on.
    pub(crate) async fn subnet_insert(
        &self,
        project: ProjectId,
        net: &NetworkRec,
        b: SubnetCreate,
        counted: bool,
    ) -> AppResult<Subnet> {
        if b.subnetpool_id.is_some()
            || b.use_default_subnetpool == Some(true)
            || b.prefixlen.is_some()
        {
            return Err(invalid("Subnet pools are not supported; give a cidr."));
        }
        if b.ip_version != 4 && b.ip_version != 6 {
            return Err(invalid(format!("{} is not in [4, 6]", b.ip_version)));
        }
        let cidr = b
            .cidr
            .as_deref()
            .ok_or_else(|| invalid("A cidr must be specified in the absence of a subnet pool"))?;
        let cn = ipam::parse_cidr(cidr, b.ip_version)?;
        for m in [&b.ipv6_ra_mode, &b.ipv6_address_mode]
            .into_iter()
            .flatten()
        {
            if b.ip_version != 6 {
                return Err(invalid(format!(
                    "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False or for an IPv{} subnet.",
                    b.ip_version
                )));
            }
            if !IPV6_MODES.contains(&m.as_str()) {
                return Err(invalid(format!("'{m}' is not in {IPV6_MODES:?}")));
            }
        }
        if let (Some(ra), Some(addr)) = (&b.ipv6_ra_mode, &b.ipv6_address_mode) {
            if ra != addr {
                return Err(invalid(format!(
                    "ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{addr}' is not valid. If both attributes are set, they must be the same value"
                )));
            }
        }
        if (b.ipv6_ra_mode.is_some() || b.ipv6_address_mode.is_some())
            && b.enable_dhcp == Some(false)
        {
            return Err(invalid(
                "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False.",
            ));
        }
        let existing = self.store.subnets_of_network(&net.id).await?;
        if let Some(o) = existing.iter().find(|s| ipam::overlaps(&s.cidr, cidr)) {
            return Err(invalid(format!(
                "Requested subnet with cidr: {cidr} for network: {} overlaps with another subnet {}.",
                net.id, o.id
            )));
        }
        let gateway = match &b.gateway_ip {
            None => Some(ipam::default_gateway(&cn)),
            Some(None) => None,
            Some(Some(g)) => Some(parse_gateway(&cn, g)?),
        };
        let pools = match b.allocation_pools {
            Some(p) if !p.is_empty() => {
                ipam::validate_pools(&cn, &p, gateway)?;
                p
            }
            _ => ipam::default_pools(&cn, gateway),
        };
        let dns = b.dns_nameservers.unwrap_or_default();
        check_dns(&dns)?;
        let routes = b.host_routes.unwrap_or_default();
        check_routes(&cn, &routes)?;
        let quota = if counted {
            Some(self.quota(&project, Counted::Subnet).await?)
        } else {
            None
        };
        let t = now();
        let s = Subnet {
            id: SubnetId::new(),
            project_id: project,
            network_id: net.id,
            name: b.name.unwrap_or_default(),
            description: b.description.unwrap_or_default(),
            ip_version: b.ip_version,
            cidr: cn.to_string(),
            gateway_ip: gateway,
            allocation_pools: pools,
            dns_nameservers: dns,
            host_routes: routes,
            enable_dhcp: b.enable_dhcp.unwrap_or(true),
            ipv6_ra_mode: b.ipv6_ra_mode,
            ipv6_address_mode: b.ipv6_address_mode,
            external: net.external,
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        if is_auto_address(&s) && cn.prefix_len() != 64 {
            return Err(invalid(format!(
                "Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64."
            )));
        }
        self.store.subnet_insert(&s, quota).await?;
        if s.enable_dhcp {
            if let Err(e) = self.sync_dhcp_port(net).await {
                // The subnet stands; the next subnet change retries. A full
                // pool is the usual reason, and not fatal to the subnet.
                tracing::warn!(subnet = %s.id, error = %e, "could not give the DHCP port an address");
            }
        }
        if is_auto_address(&s) {
            self.add_auto_addresses(&s).await?;
        }
        self.kick();
        Ok(s)
    }

    /// Gives each port already on the network (router interfaces aside)
    /// its EUI-64 address on a new auto-address subnet, as Neutron does.
    /// A port that cannot take it (the address is someone else's) is left
    /// without, and logged.
    async fn add_auto_addresses(&self, s: &Subnet) -> AppResult<()> {
        for p in self.store.ports_of_network(&s.network_id).await? {
            if !ipam::takes_eui64(s, &p.device_owner)
                || p.fixed_ips.iter().any(|f| f.subnet_id == s.id)
            {
                continue;
            }
            let mut reqs: Vec<IpRequest> = p
                .fixed_ips
                .iter()
                .map(|f| IpRequest {
                    subnet_id: f.subnet_id,
                    ip: Some(f.ip_address),
                })
                .collect();
            reqs.push(IpRequest {
                subnet_id: s.id,
                ip: None,
            });
            match self
                .update_port_with_ips(&p, Some(&reqs), &p.fixed_ips, None)
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind == oxistack_model::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(subnet = %s.id, port = %p.id, error = %e, "could not give a port its automatic address")
                }
            }
        }
        Ok(())
    }

    /// Keeps the network's DHCP port holding one address on each of its
    /// DHCP-enabled subnets; removes it when there are none.
    pub(crate) async fn sync_dhcp_port(&self, net: &NetworkRec) -> AppResult<()> {
        let subnets: Vec<Subnet> = self
            .store
            .subnets_of_network(&net.id)
            .await?
            .into_iter()
            .filter(|s| s.enable_dhcp)
            .collect();
        let ports = self.store.ports_of_network(&net.id).await?;
        let dhcp = ports.into_iter().find(|p| p.device_owner == OWNER_DHCP);
        match (dhcp, subnets.is_empty()) {
            (Some(p), true) => self.store.port_delete(&p.id).await,
            (None, true) => Ok(()),
            (existing, false) => {
                let reqs: Vec<IpRequest> = subnets
                    .iter()
                    .map(|s| IpRequest {
                        subnet_id: s.id,
                        ip: existing.as_ref().and_then(|p| {
                            p.fixed_ips
                                .iter()
                                .find(|f| f.subnet_id == s.id)
                                .map(|f| f.ip_address)
                        }),
                    })
                    .collect();
                match existing {
                    Some(p) => {
                        self.update_port_with_ips(&p, Some(&reqs), &p.fixed_ips, None)
                            .await
                    }
                    None => {
                        let w = PortWrite {
                            ips: Some(&reqs),
                            security_groups: None,
                            quota: None,
                            pick: &ipam::pick_free,
                        };
                        let mut p = self.new_port_record(net, net.project_id);
                        p.device_owner = OWNER_DHCP.into();
                        p.device_id = format!("dhcp-{}", net.id);
                        p.status = "ACTIVE".into();
                        p.port_security_enabled = false;
                        self.insert_port_with_mac(&mut p, w).await.map(|_| ())
                    }
                }
            }
        }
    }

    pub async fn subnet_get(&self, ctx: &AuthContext, id: &SubnetId) -> AppResult<Subnet> {
        self.store.subnet_get(read_scope(ctx)?, id).await
    }

    pub async fn subnet_list(&self, ctx: &AuthContext) -> AppResult<Vec<Subnet>> {
        self.store.subnet_list(read_scope(ctx)?).await
    }

    pub async fn subnet_update(
        &self,
        ctx: &AuthContext,
        id: &SubnetId,
        b: SubnetUpdate,
    ) -> AppResult<Subnet> {
        let mut s = self.store.subnet_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &s.project_id, "update_subnet")?;
        let cn = ipam::parse_cidr(&s.cidr, s.ip_version)?;
        if let Some(v) = b.name {
            s.name = v;
        }
        if let Some(v) = b.description {
            s.description = v.unwrap_or_default();
        }
        if let Some(g) = b.gateway_ip {
            s.gateway_ip = match g {
                None => None,
                Some(g) => Some(parse_gateway(&cn, &g)?),
            };
        }
        if let Some(p) = b.allocation_pools {
            ipam::validate_pools(&cn, &p, s.gateway_ip)?;
            s.allocation_pools = p;
        } else if let Some(g) = s.gateway_ip {
            ipam::validate_pools(&cn, &s.allocation_pools, Some(g))?;
        }
        if let Some(d) = b.dns_nameservers {
            check_dns(&d)?;
            s.dns_nameservers = d;
        }
        if let Some(r) = b.host_routes {
            check_routes(&cn, &r)?;
            s.host_routes = r;
        }
        let dhcp_changed = b.enable_dhcp.is_some_and(|d| d != s.enable_dhcp);
        if let Some(d) = b.enable_dhcp {
            s.enable_dhcp = d;
        }
        self.store.subnet_update(&s).await?;
        if dhcp_changed {
            let net = self
                .store
                .network_get(oxistack_model::Scope::All, &s.network_id)
                .await?;
            if let Err(e) = self.sync_dhcp_port(&net).await {
                tracing::warn!(subnet = %s.id, error = %e, "could not update the DHCP port");
            }
        }
        self.kick();
        self.store.subnet_get(oxistack_model::Scope::All, id).await
    }

    pub async fn subnet_delete(&self, ctx: &AuthContext, id: &SubnetId) -> AppResult<()> {
        let s = self.store.subnet_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &s.project_id, "delete_subnet")?;
        self.subnet_remove(&s).await?;
        self.kick();
        Ok(())
    }

    /// Deletes a subnet and keeps the network's DHCP port in step. The
    /// addresses of an auto-address subnet are taken from their ports
    /// (see [`is_auto_address`]).
    pub(crate) async fn subnet_remove(&self, s: &Subnet) -> AppResult<()> {
        let stripped = self.store.subnet_delete(&s.id, is_auto_address(s)).await?;
        if !stripped.is_empty() {
            tracing::info!(subnet = %s.id, ports = ?stripped, "removed the subnet's addresses from its ports");
        }
        let net = self
            .store
            .network_get(oxistack_model::Scope::All, &s.network_id)
            .await?;
        self.sync_dhcp_port(&net).await
    }

    /// Creates every subnet of a bulk request, or none: when one fails,
    /// those already made are deleted and its error is the answer.
    pub async fn subnet_create_bulk(
        &self,
        ctx: &AuthContext,
        items: Vec<SubnetCreate>,
    ) -> AppResult<Vec<Subnet>> {
        let mut made: Vec<Subnet> = Vec::with_capacity(items.len());
        for b in items {
            match self.subnet_create(ctx, b).await {
                Ok(s) => made.push(s),
                Err(e) => {
                    for s in made.iter().rev() {
                        if let Err(u) = self.subnet_remove(s).await {
                            tracing::warn!(subnet = %s.id, error = %u, "could not undo a bulk subnet create");
                        }
                    }
                    self.kick();
                    return Err(e);
                }
            }
        }
        Ok(made)
    }
}

pub use crate::ipam::is_auto_address;
