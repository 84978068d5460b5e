//! The NAT table of a router namespace (`ip oxistack-nat`): SNAT through
//! the gateway, 1:1 DNAT/SNAT for floating IPs, and the metadata DNAT of
//! 169.254.169.254:80 to the proxy listening on each interface.

use std::net::IpAddr;

use oxistack_bus::network::RouterSpec;
use oxistack_netdev::nft::{self, Family, Hook, Key, TableBuilder};

use super::names;

pub const METADATA_IP: &str = "169.254.169.254";
/// Where a router's metadata proxies listen, on each interface's own IP.
pub const METADATA_PROXY_PORT: u16 = 9697;

pub fn nat_table(r: &RouterSpec, metadata: bool) -> TableBuilder {
    let mut t = TableBuilder::new(Family::IP, names::NAT_TABLE);
    t.base_chain("prerouting", nft::ChainType::NAT, Hook::Prerouting, -100);
    t.base_chain("output", nft::ChainType::NAT, Hook::Output, -100);
    t.base_chain("postrouting", nft::ChainType::NAT, Hook::Postrouting, 100);
    if metadata {
        for i in &r.interfaces {
            if let IpAddr::V4(ip) = i.ip {
                t.rule(
                    "prerouting",
                    vec![
                        nft::eq(
                            nft::meta(Key::Iifname),
                            nft::s(names::router_port_inner(&i.port_id)),
                        ),
                        nft::eq(nft::field("ip", "daddr"), nft::s(METADATA_IP)),
                        nft::eq(nft::field("tcp", "dport"), nft::n(80)),
                        nft::dnat(&ip.to_string(), Some(METADATA_PROXY_PORT)),
                    ],
                );
            }
        }
    }
    let Some(gw) = &r.gateway else { return t };
    let gw_dev = names::gateway_inner(&gw.port_id);
    for f in &r.floating_ips {
        let (IpAddr::V4(fip), IpAddr::V4(fixed)) = (f.floating_ip, f.fixed_ip) else {
            continue;
        };
        for chain in ["prerouting", "output"] {
            t.rule(
                chain,
                vec![
                    nft::eq(nft::field("ip", "daddr"), nft::s(fip.to_string())),
                    nft::dnat(&fixed.to_string(), None),
                ],
            );
        }
        t.rule(
            "postrouting",
            vec![
                nft::eq(nft::meta(Key::Oifname), nft::s(gw_dev.clone())),
                nft::eq(nft::field("ip", "saddr"), nft::s(fixed.to_string())),
                nft::snat(&fip.to_string()),
            ],
        );
    }
    if let (true, IpAddr::V4(gw_ip)) = (gw.enable_snat, gw.ip) {
        t.rule(
            "postrouting",
            vec![
                nft::eq(nft::meta(Key::Oifname), nft::s(gw_dev)),
                nft::snat(&gw_ip.to_string()),
            ],
        );
    }
    t
}
