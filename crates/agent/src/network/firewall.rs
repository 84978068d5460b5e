//! Port filtering in the root namespace: anti-spoofing and security groups.
//!
//! Two tables of this agent instance's own, `oxistack-<instance>`
//! (docs/design/0011-datapath.md):
//!
//! - `bridge oxistack-<instance>`, stateless, on the bridges' forward hook: frames from
//!   a port go through `spoof-<tap>` (only its MACs and IPs, ARP included;
//!   never a DHCP server reply, never a router advertisement). The same
//!   chain tags the frame's mark with the source port's index (high 16
//!   bits) and the destination port's index (low 16 bits).
//! - `inet oxistack-<instance>`, stateful: this kernel has no conntrack for the bridge
//!   family, so bridged IP traffic is filtered where br_netfilter hands it
//!   to the IP forward hook, with conntrack. The mark says which ports the
//!   packet comes from and goes to; `egress-<tap>` returns when the source
//!   port may send it, `ingress-<tap>` accepts when the destination port
//!   may receive it. Default: deny ingress; egress only as the rules say.
//!
//! Ports without port security get no rules at all.

use std::collections::BTreeMap;
use std::net::IpAddr;

use oxistack_bus::network::{Direction, HostNetworkSpec, PortSpec, RuleSpec, SecurityGroupSpec};
use oxistack_netdev::nft::{self, Family, Hook, Key, TableBuilder};

use super::names;

/// The ports this host filters, in a stable order; a port's index (from 1)
/// is its mark.
pub fn filtered_ports(spec: &HostNetworkSpec) -> Vec<&PortSpec> {
    let mut ports: Vec<&PortSpec> = spec
        .networks
        .iter()
        .flat_map(|n| &n.ports)
        .filter(|p| p.tap.is_some() && p.port_security)
        .collect();
    ports.sort_by(|a, b| a.tap.cmp(&b.tap));
    ports.dedup_by(|a, b| a.tap == b.tap);
    ports
}

/// Addresses a port may send from: (MACs, IPv4 entries, IPv6 entries).
fn allowed_sources(p: &PortSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut macs = vec![p.mac.to_lowercase()];
    let (mut v4, mut v6) = (vec![], vec![]);
    for f in &p.fixed_ips {
        match f.ip {
            IpAddr::V4(a) => v4.push(a.to_string()),
            IpAddr::V6(a) => v6.push(a.to_string()),
        }
    }
    for pair in &p.allowed_address_pairs {
        if let Some(m) = &pair.mac {
            macs.push(m.to_lowercase());
        }
        if pair.ip_address.contains(':') {
            v6.push(pair.ip_address.clone());
        } else {
            v4.push(pair.ip_address.clone());
        }
    }
    if let Some(ll) = link_local(&p.mac) {
        v6.push(ll);
    }
    for v in [&mut macs, &mut v4, &mut v6] {
        v.sort();
        v.dedup();
    }
    (macs, v4, v6)
}

/// The EUI-64 link-local address of a MAC (what the guest's kernel uses).
fn link_local(mac: &str) -> Option<String> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if b.len() != 6 {
        return None;
    }
    let a = std::net::Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    );
    Some(a.to_string())
}

fn strings(v: &[String]) -> oxistack_netdev::nftables::expr::Expression<'static> {
    nft::set(v.iter().map(|x| nft::addr(x)).collect())
}

/// The `bridge oxistack-<instance>` table.
pub fn bridge_table(spec: &HostNetworkSpec, name: &str) -> TableBuilder {
    let mut t = TableBuilder::new(Family::Bridge, name);
    t.base_chain("forward", nft::ChainType::Filter, Hook::Forward, -200);
    let ports = filtered_ports(spec);
    // The source rules set the whole mark, so they all come before the
    // destination rules, which add to it.
    for (i, p) in ports.iter().enumerate() {
        let tap = p.tap.as_deref().unwrap_or_default();
        let idx = i as u32 + 1;
        let chain = names::spoof_chain(tap);
        t.chain(&chain);
        t.rule(
            "forward",
            vec![
                nft::eq(nft::meta(Key::Iifname), nft::s(tap)),
                nft::set_meta(Key::Mark, nft::n(idx << 16)),
                nft::jump(&chain),
            ],
        );
    }
    for (i, p) in ports.iter().enumerate() {
        let tap = p.tap.as_deref().unwrap_or_default();
        t.rule(
            "forward",
            vec![
                nft::eq(nft::meta(Key::Oifname), nft::s(tap)),
                nft::set_meta(
                    Key::Mark,
                    nft::or(nft::meta(Key::Mark), nft::n(i as u32 + 1)),
                ),
            ],
        );
    }
    for p in &ports {
        let chain = names::spoof_chain(p.tap.as_deref().unwrap_or_default());
        let (macs, v4, v6) = allowed_sources(p);
        t.rule(
            &chain,
            vec![
                nft::ne(nft::field("ether", "saddr"), strings(&macs)),
                nft::drop(),
            ],
        );
        // ARP: only from its MACs and IPs (0.0.0.0 is an address probe).
        let arp = || nft::eq(nft::field("ether", "type"), nft::s("arp"));
        t.rule(
            &chain,
            vec![
                arp(),
                nft::ne(nft::field("arp", "saddr ether"), strings(&macs)),
                nft::drop(),
            ],
        );
        let mut arp_ips = v4.clone();
        arp_ips.push("0.0.0.0".into());
        t.rule(
            &chain,
            vec![
                arp(),
                nft::ne(nft::field("arp", "saddr ip"), strings(&arp_ips)),
                nft::drop(),
            ],
        );
        t.rule(&chain, vec![arp(), nft::ret()]);
        // IPv4: never a DHCP server; a DHCP client may ask from 0.0.0.0.
        let ip4 = || nft::eq(nft::field("ether", "type"), nft::s("ip"));
        t.rule(
            &chain,
            vec![
                ip4(),
                nft::eq(nft::field("udp", "sport"), nft::n(67)),
                nft::drop(),
            ],
        );
        t.rule(
            &chain,
            vec![
                ip4(),
                nft::eq(nft::field("ip", "saddr"), nft::s("0.0.0.0")),
                nft::eq(nft::field("udp", "sport"), nft::n(68)),
                nft::eq(nft::field("udp", "dport"), nft::n(67)),
                nft::ret(),
            ],
        );
        if v4.is_empty() {
            t.rule(&chain, vec![ip4(), nft::drop()]);
        } else {
            t.rule(
                &chain,
                vec![
                    ip4(),
                    nft::ne(nft::field("ip", "saddr"), strings(&v4)),
                    nft::drop(),
                ],
            );
            t.rule(&chain, vec![ip4(), nft::ret()]);
        }
        // IPv6: never a router advertisement nor a DHCPv6 server; `::` for DAD.
        let ip6 = || nft::eq(nft::field("ether", "type"), nft::s("ip6"));
        t.rule(
            &chain,
            vec![
                ip6(),
                nft::eq(nft::field("icmpv6", "type"), nft::s("nd-router-advert")),
                nft::drop(),
            ],
        );
        t.rule(
            &chain,
            vec![
                ip6(),
                nft::eq(nft::field("udp", "sport"), nft::n(547)),
                nft::drop(),
            ],
        );
        let mut v6s = v6.clone();
        v6s.push("::".into());
        t.rule(
            &chain,
            vec![
                ip6(),
                nft::ne(nft::field("ip6", "saddr"), strings(&v6s)),
                nft::drop(),
            ],
        );
        t.rule(&chain, vec![ip6(), nft::ret()]);
        // Anything else (other ethertypes, VLAN tags) is not for a port.
        t.rule(&chain, vec![nft::drop()]);
    }
    t
}

fn proto_number(p: &str) -> Option<u32> {
    match p {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        "dccp" => Some(33),
        "gre" => Some(47),
        "esp" => Some(50),
        "ah" => Some(51),
        other => other.parse().ok(),
    }
}

/// The statements matching one rule (without the verdict), or None when the
/// rule can match nothing (a remote group without members of its family,
/// an unknown protocol).
fn rule_match(
    rule: &RuleSpec,
    groups: &BTreeMap<String, &SecurityGroupSpec>,
) -> Option<Vec<oxistack_netdev::nftables::stmt::Statement<'static>>> {
    let v6 = rule.ethertype == 6;
    let mut m = vec![nft::eq(
        nft::meta(Key::Nfproto),
        nft::s(if v6 { "ipv6" } else { "ipv4" }),
    )];
    let remote_field = match (rule.direction == Direction::Ingress, v6) {
        (true, false) => ("ip", "saddr"),
        (false, false) => ("ip", "daddr"),
        (true, true) => ("ip6", "saddr"),
        (false, true) => ("ip6", "daddr"),
    };
    if let Some(prefix) = &rule.remote_ip_prefix {
        if !matches!(prefix.as_str(), "0.0.0.0/0" | "::/0") {
            m.push(nft::eq(
                nft::field(remote_field.0, remote_field.1),
                nft::addr(prefix),
            ));
        }
    }
    if let Some(g) = &rule.remote_group_id {
        let members: Vec<String> = groups
            .get(&g.to_string())
            .map(|g| {
                g.member_ips
                    .iter()
                    .filter(|ip| ip.is_ipv6() == v6)
                    .map(|ip| ip.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if members.is_empty() {
            return None;
        }
        m.push(nft::eq(
            nft::field(remote_field.0, remote_field.1),
            strings(&members),
        ));
    }
    if let Some(proto) = &rule.protocol {
        let number = proto_number(&proto.to_lowercase())?;
        m.push(nft::eq(nft::meta(Key::L4proto), nft::n(number)));
        match number {
            1 | 58 => {
                let icmp = if number == 1 { "icmp" } else { "icmpv6" };
                if let Some(t) = rule.port_range_min {
                    m.push(nft::eq(nft::field(icmp, "type"), nft::n(t.into())));
                    if let Some(c) = rule.port_range_max {
                        m.push(nft::eq(nft::field(icmp, "code"), nft::n(c.into())));
                    }
                }
            }
            6 | 17 | 33 | 132 | 136 => {
                if let Some(lo) = rule.port_range_min {
                    let hi = rule.port_range_max.unwrap_or(lo);
                    let v = if lo == hi {
                        nft::n(lo.into())
                    } else {
                        nft::range(lo.into(), hi.into())
                    };
                    m.push(nft::eq(nft::field("th", "dport"), v));
                }
            }
            _ => {}
        }
    }
    Some(m)
}

/// The `inet oxistack-<instance>` table.
pub fn inet_table(spec: &HostNetworkSpec, name: &str) -> TableBuilder {
    let mut t = TableBuilder::new(Family::INet, name);
    t.base_chain("forward", nft::ChainType::Filter, Hook::Forward, 0);
    let groups: BTreeMap<String, &SecurityGroupSpec> = spec
        .security_groups
        .iter()
        .map(|g| (g.id.to_string(), g))
        .collect();
    let ports = filtered_ports(spec);
    // Only bridged traffic of our bridges carries our marks.
    let mut bridges: Vec<String> = vec![];
    for p in &ports {
        if let Some(n) = spec.networks.iter().find(|n| n.id == p.network_id) {
            bridges.push(super::bridge_name(n));
        }
    }
    bridges.sort();
    bridges.dedup();
    if !ports.is_empty() {
        t.rule(
            "forward",
            vec![
                nft::ne(nft::meta(Key::Iifname), strings(&bridges)),
                nft::ret(),
            ],
        );
    }
    for (i, p) in ports.iter().enumerate() {
        let tap = p.tap.as_deref().unwrap_or_default();
        let idx = i as u32 + 1;
        let (egress, ingress) = (names::egress_chain(tap), names::ingress_chain(tap));
        t.chain(&egress);
        t.chain(&ingress);
        t.rule(
            "forward",
            vec![
                nft::eq(
                    nft::and(nft::meta(Key::Mark), nft::n(0xffff_0000)),
                    nft::n(idx << 16),
                ),
                nft::jump(&egress),
            ],
        );
        t.rule(
            "forward",
            vec![
                nft::eq(nft::and(nft::meta(Key::Mark), nft::n(0xffff)), nft::n(idx)),
                nft::jump(&ingress),
            ],
        );

        let nd = || {
            nft::set(
                [
                    "nd-router-solicit",
                    "nd-neighbor-solicit",
                    "nd-neighbor-advert",
                    "mld-listener-report",
                    "mld2-listener-report",
                ]
                .into_iter()
                .map(nft::s)
                .collect(),
            )
        };
        // Egress: DHCP, DHCPv6 and neighbour discovery as Neutron allows them, then state.
        for (sport, dport) in [(68, 67), (546, 547)] {
            t.rule(
                &egress,
                vec![
                    nft::eq(nft::meta(Key::L4proto), nft::s("udp")),
                    nft::eq(nft::field("udp", "sport"), nft::n(sport)),
                    nft::eq(nft::field("udp", "dport"), nft::n(dport)),
                    nft::ret(),
                ],
            );
        }
        t.rule(
            &egress,
            vec![nft::eq(nft::field("icmpv6", "type"), nd()), nft::ret()],
        );
        t.rule(
            &egress,
            vec![nft::is_in(nft::ct("state"), nft::s("invalid")), nft::drop()],
        );
        t.rule(
            &egress,
            vec![
                nft::is_in(
                    nft::ct("state"),
                    nft::set(vec![nft::s("established"), nft::s("related")]),
                ),
                nft::ret(),
            ],
        );
        // Ingress: DHCP and DHCPv6 replies and neighbour discovery, then state.
        for (sport, dport) in [(67, 68), (547, 546)] {
            t.rule(
                &ingress,
                vec![
                    nft::eq(nft::meta(Key::L4proto), nft::s("udp")),
                    nft::eq(nft::field("udp", "sport"), nft::n(sport)),
                    nft::eq(nft::field("udp", "dport"), nft::n(dport)),
                    nft::accept(),
                ],
            );
        }
        let nd_in = nft::set(
            [
                "nd-router-advert",
                "nd-neighbor-solicit",
                "nd-neighbor-advert",
                "mld-listener-query",
            ]
            .into_iter()
            .map(nft::s)
            .collect(),
        );
        t.rule(
            &ingress,
            vec![nft::eq(nft::field("icmpv6", "type"), nd_in), nft::accept()],
        );
        t.rule(
            &ingress,
            vec![nft::is_in(nft::ct("state"), nft::s("invalid")), nft::drop()],
        );
        t.rule(
            &ingress,
            vec![
                nft::is_in(
                    nft::ct("state"),
                    nft::set(vec![nft::s("established"), nft::s("related")]),
                ),
                nft::accept(),
            ],
        );
        let mut rules: Vec<&RuleSpec> = p
            .security_groups
            .iter()
            .filter_map(|g| groups.get(&g.to_string()))
            .flat_map(|g| g.rules.iter())
            .collect();
        rules.sort_by_key(|r| r.id.to_string());
        rules.dedup_by_key(|r| r.id);
        for r in rules {
            let Some(mut m) = rule_match(r, &groups) else {
                continue;
            };
            match r.direction {
                Direction::Egress => {
                    m.push(nft::ret());
                    t.rule(&egress, m);
                }
                Direction::Ingress => {
                    m.push(nft::accept());
                    t.rule(&ingress, m);
                }
            }
        }
        t.rule(&egress, vec![nft::drop()]);
        t.rule(&ingress, vec![nft::drop()]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::link_local;

    #[test]
    fn link_local_follows_eui64() {
        assert_eq!(
            link_local("fa:16:3e:12:34:56").as_deref(),
            Some("fe80::f816:3eff:fe12:3456")
        );
        assert_eq!(link_local("nonsense"), None);
    }
}
