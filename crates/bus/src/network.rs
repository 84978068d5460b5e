//! The desired network state of one host, as the controller computes it
//! from the Neutron records and the host's agent applies it.
//!
//! The agent's network role makes the host match a `HostNetworkSpec`
//! idempotently: it creates what is missing, fixes what differs and removes
//! what OxiStack owns but the spec no longer names (bridges, VXLAN devices,
//! taps, namespaces, nftables chains, dnsmasq processes). Sending the same
//! spec twice changes nothing. Host object names derive from resource IDs
//! (see [`names`]), so a restarted agent recognises its own objects.

use std::net::IpAddr;

use oxistack_model::{NetworkId, PortId, RouterId, SecurityGroupId, SecurityGroupRuleId, SubnetId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostNetworkSpec {
    pub networks: Vec<NetworkSpec>,
    pub routers: Vec<RouterSpec>,
    /// Every security group a port on this host uses, with its rules.
    pub security_groups: Vec<SecurityGroupSpec>,
    /// Where the metadata proxies forward requests (a unix socket path of
    /// the control plane), with the network id and the instance's fixed IP
    /// added as headers.
    pub metadata_upstream: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkKind {
    /// A provider network on an existing or OxiStack-made Linux bridge
    /// (e.g. `br-public`), never linked to a physical interface by OxiStack.
    Flat { bridge: String },
    /// A self-service network: a bridge with a VXLAN device of this VNI.
    Vxlan { vni: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub id: NetworkId,
    pub kind: NetworkKind,
    pub mtu: u32,
    pub external: bool,
    pub subnets: Vec<SubnetSpec>,
    /// Every port of the network (VM, DHCP, router interfaces): DHCP hands
    /// leases to these MAC/IP pairs only.
    pub ports: Vec<PortSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub id: SubnetId,
    /// e.g. `10.0.0.0/24` or `fd00::/64`.
    pub cidr: String,
    pub ip_version: u8,
    pub gateway_ip: Option<IpAddr>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<IpAddr>,
    /// (destination CIDR, next hop).
    pub host_routes: Vec<(String, IpAddr)>,
    /// IPv6: `slaac`, `dhcpv6-stateful`, `dhcpv6-stateless` or none.
    pub ipv6_address_mode: Option<String>,
    pub ipv6_ra_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub id: PortId,
    pub network_id: NetworkId,
    pub mac: String,
    pub fixed_ips: Vec<FixedIp>,
    /// `compute:nova`, `network:dhcp`, `network:router_interface`,
    /// `network:router_gateway`, `network:floatingip`, …
    pub device_owner: String,
    pub device_id: String,
    /// The DNS name DHCP gives this port (the server's hostname).
    pub dns_name: Option<String>,
    /// Set for VM ports bound to this host: the tap QEMU uses.
    pub tap: Option<String>,
    pub port_security: bool,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub security_groups: Vec<SecurityGroupId>,
    pub admin_state_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: SubnetId,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    /// An IP or a CIDR.
    pub ip_address: String,
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    pub id: SecurityGroupId,
    pub rules: Vec<RuleSpec>,
    /// The fixed IPs of the group's member ports (for `remote_group_id` rules
    /// of other groups naming this one).
    pub member_ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub id: SecurityGroupRuleId,
    pub direction: Direction,
    /// 4 or 6.
    pub ethertype: u8,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, a protocol number, or None for any.
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<SecurityGroupId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterSpec {
    pub id: RouterId,
    pub interfaces: Vec<RouterInterface>,
    pub gateway: Option<RouterGateway>,
    pub floating_ips: Vec<FloatingIpSpec>,
    /// Extra routes: (destination CIDR, next hop).
    pub routes: Vec<(String, IpAddr)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterInterface {
    pub port_id: PortId,
    pub network_id: NetworkId,
    pub mac: String,
    pub ip: IpAddr,
    /// The subnet's CIDR (the interface gets ip/prefix).
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterGateway {
    pub port_id: PortId,
    pub network_id: NetworkId,
    pub mac: String,
    pub ip: IpAddr,
    pub cidr: String,
    /// The external subnet's gateway (default route of the router).
    pub gateway_ip: Option<IpAddr>,
    pub enable_snat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIpSpec {
    pub floating_ip: IpAddr,
    pub fixed_ip: IpAddr,
}

/// Host object names, derived from IDs (Linux limits interface names to 15
/// characters). The prefixes are OxiStack's own, so teardown never touches
/// anything it did not make.
pub mod names {
    use oxistack_model::{NetworkId, PortId, RouterId};

    fn short(u: &uuid::Uuid) -> String {
        u.simple().to_string()[..11].to_string()
    }
    /// Bridge of a self-service network.
    pub fn bridge(n: &NetworkId) -> String {
        format!("oxbr-{}", &short(&n.as_uuid())[..10])
    }
    /// VXLAN device of a network.
    pub fn vxlan(n: &NetworkId) -> String {
        format!("oxvx-{}", &short(&n.as_uuid())[..10])
    }
    /// The tap of a VM port.
    pub fn tap(p: &PortId) -> String {
        format!("tap{}", short(&p.as_uuid()))
    }
    /// The DHCP namespace of a network.
    pub fn dhcp_namespace(n: &NetworkId) -> String {
        format!("oxdhcp-{}", n)
    }
    /// The namespace of a router.
    pub fn router_namespace(r: &RouterId) -> String {
        format!("oxrouter-{}", r)
    }
}

/// What one application of a spec changed on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Host objects created, e.g. `bridge oxbr-…`, `namespace oxrouter-…`.
    pub created: Vec<String>,
    /// Host objects that existed but differed, and were corrected.
    pub repaired: Vec<String>,
    /// Host objects OxiStack owned that the spec no longer names.
    pub removed: Vec<String>,
    /// What could not be done (the next application tries again).
    pub errors: Vec<String>,
}

impl ApplyReport {
    pub fn is_noop(&self) -> bool {
        self.created.is_empty()
            && self.repaired.is_empty()
            && self.removed.is_empty()
            && self.errors.is_empty()
    }
}

/// The network role of a host's agent.
#[async_trait::async_trait]
pub trait NetworkAgentApi: Send + Sync {
    /// Makes the host match `spec`, idempotently.
    async fn apply(&self, spec: HostNetworkSpec) -> oxistack_model::AppResult<ApplyReport>;
}
