//! Names of the host objects the network role makes beyond those in
//! [`oxistack_bus::network::names`]: the veth pairs into namespaces, the
//! nftables tables and chains. Every name carries an OxiStack prefix or
//! lives inside an OxiStack namespace, so teardown removes only its own.

use oxistack_model::{NetworkId, PortId};

fn hex(u: &uuid::Uuid, n: usize) -> String {
    u.simple().to_string()[..n].to_string()
}

/// Root-namespace interface prefixes the agent owns (bridges, VXLAN
/// devices, veth ends on bridges).
pub const ROOT_PREFIXES: [&str; 5] = ["oxbr-", "oxvx-", "oxdh-", "oxri-", "oxrg-"];
/// Prefixes of interfaces inside OxiStack namespaces.
pub const INNER_PREFIXES: [&str; 3] = ["ns-", "qr-", "qg-"];
pub const DHCP_NS_PREFIX: &str = "oxdhcp-";
pub const ROUTER_NS_PREFIX: &str = "oxrouter-";

/// The root-namespace end of a DHCP namespace's veth (on the network's bridge).
pub fn dhcp_root(n: &NetworkId) -> String {
    format!("oxdh-{}", hex(&n.as_uuid(), 10))
}
/// The DHCP namespace's interface.
pub fn dhcp_inner(n: &NetworkId) -> String {
    format!("ns-{}", hex(&n.as_uuid(), 11))
}
/// The root end of a router interface's veth.
pub fn router_port_root(p: &PortId) -> String {
    format!("oxri-{}", hex(&p.as_uuid(), 10))
}
pub fn router_port_inner(p: &PortId) -> String {
    format!("qr-{}", hex(&p.as_uuid(), 11))
}
/// The root end of a router gateway's veth (on the external bridge).
pub fn gateway_root(p: &PortId) -> String {
    format!("oxrg-{}", hex(&p.as_uuid(), 10))
}
pub fn gateway_inner(p: &PortId) -> String {
    format!("qg-{}", hex(&p.as_uuid(), 11))
}

/// Is this a tap name the bus naming makes (`tap` + 11 hex digits)?
pub fn is_tap(name: &str) -> bool {
    name.len() == 14 && name.starts_with("tap") && name[3..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The name of both root-namespace tables of one agent instance: port
/// anti-spoofing (bridge family, stateless) and security groups (inet
/// family, stateful through br_netfilter). Tables are host-global, so each
/// instance (one per data directory) has its own: two clouds on one machine
/// (CI, tests) must not replace each other's rules.
pub fn root_table(instance: &str) -> String {
    format!("oxistack-{instance}")
}

/// The record keys of the host objects an instance owns (see the agent's
/// ownership record): root-namespace links and namespaces.
pub fn owned_link(name: &str) -> String {
    format!("link {name}")
}
pub fn owned_namespace(name: &str) -> String {
    format!("netns {name}")
}
/// The NAT table in router namespaces.
pub const NAT_TABLE: &str = "oxistack-nat";

/// Per-port chains, from the tap (itself derived from the port ID).
pub fn spoof_chain(tap: &str) -> String {
    format!("spoof-{tap}")
}
pub fn egress_chain(tap: &str) -> String {
    format!("egress-{tap}")
}
pub fn ingress_chain(tap: &str) -> String {
    format!("ingress-{tap}")
}
