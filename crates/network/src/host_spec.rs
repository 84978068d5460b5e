//! The desired network state of a host, computed from the store.
//!
//! All-in-one (today): every network, router and port is on this host, so
//! the spec names all of them; only VM ports bound to `host` carry a tap.
//! With many hosts, the same function will keep the networks that have
//! ports bound to the host and the routers scheduled to it.

use std::collections::{BTreeSet, HashMap};

use oxistack_bus::network::{
    AddressPair, Direction, FixedIp, FloatingIpSpec, HostNetworkSpec, NetworkKind, NetworkSpec,
    PortSpec, RouterGateway, RouterInterface, RouterSpec, RuleSpec, SecurityGroupSpec, SubnetSpec,
};
use oxistack_model::{AppResult, Scope, SecurityGroupId, SubnetId};
use oxistack_store::network::{Port, Subnet};

use crate::{Network, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE};

fn subnet_spec(s: &Subnet) -> SubnetSpec {
    SubnetSpec {
        id: s.id,
        cidr: s.cidr.clone(),
        ip_version: s.ip_version as u8,
        gateway_ip: s.gateway_ip,
        enable_dhcp: s.enable_dhcp,
        dns_nameservers: s
            .dns_nameservers
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        host_routes: s
            .host_routes
            .iter()
            .map(|r| (r.destination.clone(), r.nexthop))
            .collect(),
        ipv6_address_mode: s.ipv6_address_mode.clone(),
        ipv6_ra_mode: s.ipv6_ra_mode.clone(),
    }
}

fn port_spec(p: &Port, host: &str) -> PortSpec {
    let vm = p.device_owner.starts_with("compute:");
    PortSpec {
        id: p.id,
        network_id: p.network_id,
        mac: p.mac_address.clone(),
        fixed_ips: p
            .fixed_ips
            .iter()
            .map(|f| FixedIp {
                subnet_id: f.subnet_id,
                ip: f.ip_address,
            })
            .collect(),
        device_owner: p.device_owner.clone(),
        device_id: p.device_id.clone(),
        dns_name: Some(p.dns_name.clone()).filter(|d| !d.is_empty()),
        tap: if vm && p.binding_host_id == host {
            p.tap.clone()
        } else {
            None
        },
        port_security: p.port_security_enabled,
        allowed_address_pairs: p
            .allowed_address_pairs
            .iter()
            .map(|a| AddressPair {
                ip_address: a.ip_address.clone(),
                mac: Some(a.mac_address.clone()),
            })
            .collect(),
        security_groups: if p.port_security_enabled {
            p.security_groups.clone()
        } else {
            vec![]
        },
        admin_state_up: p.admin_state_up,
    }
}

impl Network {
    /// The desired state of `host`'s datapath.
    pub async fn host_spec(
        &self,
        host: &str,
        metadata_upstream: Option<String>,
    ) -> AppResult<HostNetworkSpec> {
        let nets = self.store.network_list(Scope::All).await?;
        let subnets = self.store.subnet_list(Scope::All).await?;
        let ports = self.store.port_list(Scope::All).await?;
        let routers = self.store.router_list(Scope::All).await?;
        let fips = self.store.floating_ip_list(Scope::All).await?;
        let subnet_by_id: HashMap<SubnetId, &Subnet> = subnets.iter().map(|s| (s.id, s)).collect();

        let mut networks = Vec::new();
        for n in &nets {
            let kind = match (
                n.network_type.as_str(),
                &n.physical_network,
                n.segmentation_id,
            ) {
                ("flat", Some(bridge), _) => NetworkKind::Flat {
                    bridge: bridge.clone(),
                },
                (_, _, Some(vni)) => NetworkKind::Vxlan { vni: vni as u32 },
                _ => continue,
            };
            networks.push(NetworkSpec {
                id: n.id,
                kind,
                mtu: n.mtu as u32,
                external: n.external,
                subnets: subnets
                    .iter()
                    .filter(|s| s.network_id == n.id)
                    .map(subnet_spec)
                    .collect(),
                // Floating IP ports are addresses of a router, not hosts on
                // the network.
                ports: ports
                    .iter()
                    .filter(|p| p.network_id == n.id && p.device_owner != OWNER_FLOATING_IP)
                    .map(|p| port_spec(p, host))
                    .collect(),
            });
        }

        let mut router_specs = Vec::new();
        for r in &routers {
            let interfaces = ports
                .iter()
                .filter(|p| {
                    p.device_owner == OWNER_ROUTER_INTERFACE && p.device_id == r.id.to_string()
                })
                .flat_map(|p| {
                    p.fixed_ips.iter().filter_map(|f| {
                        subnet_by_id.get(&f.subnet_id).map(|s| RouterInterface {
                            port_id: p.id,
                            network_id: p.network_id,
                            mac: p.mac_address.clone(),
                            ip: f.ip_address,
                            cidr: s.cidr.clone(),
                        })
                    })
                })
                .collect();
            let gateway = r.gw_port_id.and_then(|gid| {
                let p = ports
                    .iter()
                    .find(|p| p.id == gid && p.device_owner == OWNER_ROUTER_GATEWAY)?;
                let f = p
                    .fixed_ips
                    .iter()
                    .find(|f| f.ip_address.is_ipv4())
                    .or(p.fixed_ips.first())?;
                let s = subnet_by_id.get(&f.subnet_id)?;
                Some(RouterGateway {
                    port_id: p.id,
                    network_id: p.network_id,
                    mac: p.mac_address.clone(),
                    ip: f.ip_address,
                    cidr: s.cidr.clone(),
                    gateway_ip: s.gateway_ip,
                    enable_snat: r.enable_snat,
                })
            });
            let floating_ips = fips
                .iter()
                .filter(|f| f.router_id == Some(r.id))
                .filter_map(|f| {
                    f.fixed_ip_address.map(|fixed| FloatingIpSpec {
                        floating_ip: f.floating_ip_address,
                        fixed_ip: fixed,
                    })
                })
                .collect();
            router_specs.push(RouterSpec {
                id: r.id,
                interfaces,
                gateway,
                floating_ips,
                routes: r
                    .routes
                    .iter()
                    .map(|h| (h.destination.clone(), h.nexthop))
                    .collect(),
            });
        }

        // Groups used by ports in the spec, and the groups their rules name.
        let mut wanted: BTreeSet<SecurityGroupId> = networks
            .iter()
            .flat_map(|n| {
                n.ports
                    .iter()
                    .flat_map(|p| p.security_groups.iter().copied())
            })
            .collect();
        let rules = self.store.rule_list(Scope::All).await?;
        let remote: Vec<SecurityGroupId> = rules
            .iter()
            .filter(|r| wanted.contains(&r.security_group_id))
            .filter_map(|r| r.remote_group_id)
            .collect();
        wanted.extend(remote);
        let members = self.store.port_group_members().await?;
        let port_by_id: HashMap<_, &Port> = ports.iter().map(|p| (p.id, p)).collect();
        let security_groups = wanted
            .iter()
            .map(|g| SecurityGroupSpec {
                id: *g,
                rules: rules
                    .iter()
                    .filter(|r| r.security_group_id == *g)
                    .map(|r| RuleSpec {
                        id: r.id,
                        direction: if r.direction == "ingress" {
                            Direction::Ingress
                        } else {
                            Direction::Egress
                        },
                        ethertype: if r.ethertype == "IPv6" { 6 } else { 4 },
                        protocol: r.protocol.clone(),
                        port_range_min: r.port_range_min.map(|v| v as u16),
                        port_range_max: r.port_range_max.map(|v| v as u16),
                        remote_ip_prefix: r.remote_ip_prefix.clone(),
                        remote_group_id: r.remote_group_id,
                    })
                    .collect(),
                member_ips: members
                    .iter()
                    .filter(|(_, sg)| sg == g)
                    .filter_map(|(p, _)| port_by_id.get(p))
                    .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address))
                    .collect(),
            })
            .collect();

        Ok(HostNetworkSpec {
            networks,
            routers: router_specs,
            security_groups,
            metadata_upstream,
        })
    }
}
