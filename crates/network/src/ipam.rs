//! IP address management: CIDR validation, default gateway and allocation
//! pools, pool validation, choosing the next free address, and the
//! EUI-64 addresses of auto-address IPv6 subnets.
//!
//! Rules follow Neutron's: an IPv4 subnet's pools never include its network
//! and broadcast addresses; the gateway (first address by default) is never
//! in a pool; pools must lie inside the CIDR and must not overlap. On a
//! subnet whose addresses are SLAAC or DHCPv6-stateless
//! ([`is_auto_address`]) a port's address is not drawn from the pools: it
//! is the subnet's prefix with the port's modified EUI-64 interface
//! identifier ([`eui64_address`]), the address the guest configures by
//! itself from the router advertisement. Router interfaces are the
//! exception: they hold the gateway or a pool address.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use oxistack_model::{AppError, AppResult, NetworkId};
use oxistack_store::network::{Pool, Subnet};

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(v)),
    }
}

fn invalid_input(msg: String) -> AppError {
    AppError::bad_request(format!("Invalid input for operation: {msg}")).with_code("InvalidInput")
}

/// Parses and validates a subnet CIDR of the given IP version.
pub fn parse_cidr(cidr: &str, ip_version: i64) -> AppResult<IpNet> {
    let net: IpNet = cidr.parse().map_err(|_| {
        AppError::bad_request(format!(
            "Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet."
        ))
        .with_code("HTTPBadRequest")
    })?;
    if net.trunc() != net {
        return Err(AppError::bad_request(format!(
            "Invalid input for cidr. Reason: '{cidr}' isn't a recognized IP subnet cidr, '{}' is recommended.",
            net.trunc()
        ))
        .with_code("HTTPBadRequest"));
    }
    let version = if net.addr().is_ipv4() { 4 } else { 6 };
    if version != ip_version {
        return Err(invalid_input(format!(
            "Cidr {cidr} does not match the IP version {ip_version}."
        )));
    }
    // An IPv4 subnet needs a network, a broadcast and at least one usable
    // address besides the gateway; IPv6 needs two addresses.
    let too_small = match net {
        IpNet::V4(n) => n.prefix_len() > 30,
        IpNet::V6(n) => n.prefix_len() > 126,
    };
    if too_small {
        return Err(invalid_input(format!(
            "{cidr} is too small, must be at least /30 for IPv4 and /126 for IPv6."
        )));
    }
    Ok(net)
}

/// The first and last addresses pools may use.
fn usable(net: &IpNet) -> (u128, u128) {
    let first = to_u128(net.network());
    let last = to_u128(net.broadcast());
    match net {
        IpNet::V4(_) => (first + 1, last - 1),
        IpNet::V6(_) => (first + 1, last),
    }
}

/// The default gateway: the first usable address.
pub fn default_gateway(net: &IpNet) -> IpAddr {
    from_u128(usable(net).0, net.addr())
}

/// The default pools: every usable address except the gateway.
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let (lo, hi) = usable(net);
    let mk = |a: u128, b: u128| Pool {
        start: from_u128(a, net.addr()),
        end: from_u128(b, net.addr()),
    };
    match gateway.map(to_u128) {
        Some(g) if g >= lo && g <= hi => {
            let mut out = Vec::new();
            if g > lo {
                out.push(mk(lo, g - 1));
            }
            if g < hi {
                out.push(mk(g + 1, hi));
            }
            out
        }
        _ => vec![mk(lo, hi)],
    }
}

/// Checks a gateway address against its subnet.
pub fn validate_gateway(net: &IpNet, gw: IpAddr) -> AppResult<()> {
    let v = to_u128(gw);
    let inside = net.contains(&gw);
    let special = matches!(net, IpNet::V4(_))
        && (v == to_u128(net.network()) || v == to_u128(net.broadcast()));
    if gw.is_ipv4() != net.addr().is_ipv4() || !inside || special {
        return Err(AppError::bad_request(format!(
            "Invalid input for operation: Gateway is not valid on subnet {net}."
        ))
        .with_code("InvalidInput")
        .with_context(format!("gateway {gw}")));
    }
    Ok(())
}

/// Checks user-given pools: inside the CIDR's usable range, ordered, not
/// overlapping, and not containing the gateway.
pub fn validate_pools(net: &IpNet, pools: &[Pool], gateway: Option<IpAddr>) -> AppResult<()> {
    let (lo, hi) = usable(net);
    let mut ranges = Vec::new();
    for p in pools {
        if p.start.is_ipv4() != net.addr().is_ipv4() || p.end.is_ipv4() != net.addr().is_ipv4() {
            return Err(AppError::bad_request(format!(
                "The allocation pool {}-{} spans beyond the subnet cidr {net}.",
                p.start, p.end
            ))
            .with_code("OutOfBoundsAllocationPool"));
        }
        let (s, e) = (to_u128(p.start), to_u128(p.end));
        if s > e {
            return Err(AppError::bad_request(format!(
                "The allocation pool {}-{} is not valid.",
                p.start, p.end
            ))
            .with_code("InvalidAllocationPool"));
        }
        if s < lo || e > hi {
            return Err(AppError::bad_request(format!(
                "The allocation pool {}-{} spans beyond the subnet cidr {net}.",
                p.start, p.end
            ))
            .with_code("OutOfBoundsAllocationPool"));
        }
        ranges.push((s, e, p));
    }
    ranges.sort_by_key(|r| r.0);
    for w in ranges.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(AppError::bad_request(format!(
                "Found overlapping allocation pools: {}-{} and {}-{} for subnet {net}.",
                w[0].2.start, w[0].2.end, w[1].2.start, w[1].2.end
            ))
            .with_code("OverlappingAllocationPools"));
        }
    }
    if let Some(g) = gateway {
        let gv = to_u128(g);
        if ranges.iter().any(|(s, e, _)| gv >= *s && gv <= *e) {
            return Err(AppError::conflict(format!(
                "Gateway ip {g} conflicts with allocation pool {}.",
                ranges
                    .iter()
                    .find(|(s, e, _)| gv >= *s && gv <= *e)
                    .map(|(_, _, p)| format!("{}-{}", p.start, p.end))
                    .unwrap_or_default()
            ))
            .with_code("GatewayConflictWithAllocationPools"));
        }
    }
    Ok(())
}

/// Whether `ip` belongs to the subnet `cidr`.
pub fn in_subnet(cidr: &str, ip: &IpAddr) -> bool {
    cidr.parse::<IpNet>()
        .map(|n| n.contains(ip))
        .unwrap_or(false)
}

/// Whether two CIDRs share any address.
pub fn overlaps(a: &str, b: &str) -> bool {
    match (a.parse::<IpNet>(), b.parse::<IpNet>()) {
        (Ok(a), Ok(b)) => a.contains(&b.network()) || b.contains(&a.network()),
        _ => false,
    }
}

/// The first free address of the subnet's pools, in pool order.
pub fn pick_free(subnet: &Subnet, used: &HashSet<IpAddr>) -> AppResult<IpAddr> {
    for p in &subnet.allocation_pools {
        let (s, e) = (to_u128(p.start), to_u128(p.end));
        let mut v = s;
        // At most |used| addresses are skipped before a free one is found.
        while v <= e {
            let ip = from_u128(v, p.start);
            if !used.contains(&ip) {
                return Ok(ip);
            }
            v += 1;
        }
    }
    Err(exhausted(&subnet.network_id))
}

/// Whether ports get the subnet's addresses without asking for them
/// (SLAAC or DHCPv6-stateless, by either mode), as Neutron's
/// `is_auto_address_subnet` has it.
pub fn is_auto_address(s: &Subnet) -> bool {
    const AUTO: &[&str] = &["slaac", "dhcpv6-stateless"];
    [&s.ipv6_address_mode, &s.ipv6_ra_mode]
        .into_iter()
        .flatten()
        .any(|m| AUTO.contains(&m.as_str()))
}

/// The address `mac` takes by SLAAC in `net`: the prefix plus the modified
/// EUI-64 interface identifier (RFC 4291 appendix A: `ff:fe` in the middle
/// of the MAC, the universal/local bit flipped). `None` for an IPv4 net, a
/// malformed MAC, or an address that would fall outside `net`.
pub fn eui64_address(net: &IpNet, mac: &str) -> Option<IpAddr> {
    let IpNet::V6(n) = net else { return None };
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b, c, d, e, f] = <[u8; 6]>::try_from(bytes).ok()?;
    let iid = u64::from_be_bytes([a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]);
    let ip = std::net::Ipv6Addr::from(u128::from(n.network()).checked_add(u128::from(iid))?);
    n.contains(&ip).then_some(IpAddr::V6(ip))
}

/// Neutron's router-interface owners (`ROUTER_INTERFACE_OWNERS_SNAT`):
/// their ports take the subnet's gateway or a pool address, never an
/// EUI-64 one.
pub fn is_router_interface_owner(owner: &str) -> bool {
    matches!(
        owner,
        "network:router_interface"
            | "network:router_interface_distributed"
            | "network:ha_router_replicated_interface"
            | "network:router_centralized_snat"
    )
}

/// Whether a port of `owner` gets its address on `s` from its MAC.
pub fn takes_eui64(s: &Subnet, owner: &str) -> bool {
    is_auto_address(s) && !is_router_interface_owner(owner)
}

/// The port's EUI-64 address on an auto-address subnet, for a port that
/// takes one.
pub fn port_eui64(s: &Subnet, mac: &str) -> AppResult<IpAddr> {
    s.cidr
        .parse::<IpNet>()
        .ok()
        .and_then(|n| eui64_address(&n, mac))
        .ok_or_else(|| {
            AppError::bad_request(format!(
                "Invalid input for operation: Unable to compute an EUI-64 address on subnet {} for MAC {mac}.",
                s.id
            ))
            .with_code("InvalidInput")
        })
}

/// Chooses a port's address on a subnet it names without an address: its
/// EUI-64 one on an auto-address subnet (unless a router interface), else
/// what `pool` picks.
pub fn pick_for_port<'a>(
    mac: &'a str,
    owner: &'a str,
    pool: oxistack_store::network::PickIp<'a>,
) -> impl Fn(&Subnet, &HashSet<IpAddr>) -> AppResult<IpAddr> + Sync + 'a {
    move |s, used| {
        if takes_eui64(s, owner) {
            let ip = port_eui64(s, mac)?;
            if used.contains(&ip) {
                return Err(oxistack_store::network::ip_in_use(&ip, &s.id));
            }
            Ok(ip)
        } else {
            pool(s, used)
        }
    }
}

pub fn exhausted(network: &NetworkId) -> AppError {
    AppError::conflict(format!(
        "No more IP addresses available on network {network}."
    ))
    .with_code("IpAddressGenerationFailure")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_skip_gateway_network_and_broadcast() {
        let n = parse_cidr("10.0.0.0/24", 4).unwrap();
        let gw = default_gateway(&n);
        assert_eq!(gw, ip("10.0.0.1"));
        let p = default_pools(&n, Some(gw));
        assert_eq!(
            p,
            vec![Pool {
                start: ip("10.0.0.2"),
                end: ip("10.0.0.254")
            }]
        );
        let p = default_pools(&n, Some(ip("10.0.0.100")));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].end, ip("10.0.0.99"));
        assert_eq!(p[1].start, ip("10.0.0.101"));
        let p = default_pools(&n, None);
        assert_eq!(p[0].start, ip("10.0.0.1"));
        let n6 = parse_cidr("fd00::/64", 6).unwrap();
        let p = default_pools(&n6, Some(default_gateway(&n6)));
        assert_eq!(p[0].start, ip("fd00::2"));
        assert_eq!(p[0].end, ip("fd00::ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn cidr_checks() {
        assert!(parse_cidr("10.0.0.0/31", 4).is_err());
        assert!(parse_cidr("10.0.0.0/30", 4).is_ok());
        assert!(parse_cidr("10.0.0.1/24", 4).is_err());
        assert!(parse_cidr("10.0.0.0/24", 6).is_err());
        assert!(parse_cidr("fd00::/127", 6).is_err());
        assert!(parse_cidr("nonsense", 4).is_err());
    }

    #[test]
    fn pool_checks() {
        let n = parse_cidr("10.0.0.0/24", 4).unwrap();
        let p = |a: &str, b: &str| Pool {
            start: ip(a),
            end: ip(b),
        };
        let gw = Some(ip("10.0.0.1"));
        assert!(validate_pools(&n, &[p("10.0.0.2", "10.0.0.9")], gw).is_ok());
        let e = validate_pools(
            &n,
            &[p("10.0.0.2", "10.0.0.9"), p("10.0.0.5", "10.0.0.20")],
            gw,
        )
        .unwrap_err();
        assert_eq!(e.code, Some("OverlappingAllocationPools"));
        let e = validate_pools(&n, &[p("10.0.0.2", "10.0.1.9")], gw).unwrap_err();
        assert_eq!(e.code, Some("OutOfBoundsAllocationPool"));
        let e = validate_pools(&n, &[p("10.0.0.0", "10.0.0.9")], None).unwrap_err();
        assert_eq!(e.code, Some("OutOfBoundsAllocationPool"));
        let e = validate_pools(&n, &[p("10.0.0.9", "10.0.0.2")], gw).unwrap_err();
        assert_eq!(e.code, Some("InvalidAllocationPool"));
        let e = validate_pools(&n, &[p("10.0.0.1", "10.0.0.9")], gw).unwrap_err();
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn eui64_from_mac() {
        let n: IpNet = "2001:db8::/64".parse().unwrap();
        // The address netaddr/oslo's get_ipv6_addr_by_EUI64 gives.
        assert_eq!(
            eui64_address(&n, "fa:16:3e:b5:68:45"),
            Some(ip("2001:db8::f816:3eff:feb5:6845"))
        );
        // The universal/local bit is flipped both ways.
        assert_eq!(
            eui64_address(&n, "02:00:00:00:00:01"),
            Some(ip("2001:db8::ff:fe00:1"))
        );
        assert_eq!(eui64_address(&n, "not-a-mac"), None);
        assert_eq!(eui64_address(&n, "fa:16:3e:b5:68"), None);
        let v4: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(eui64_address(&v4, "fa:16:3e:b5:68:45"), None);
    }

    #[test]
    fn overlap_and_membership() {
        assert!(overlaps("10.0.0.0/24", "10.0.0.128/25"));
        assert!(!overlaps("10.0.0.0/24", "10.0.1.0/24"));
        assert!(in_subnet("10.0.0.0/24", &ip("10.0.0.7")));
        assert!(!in_subnet("10.0.0.0/24", &ip("10.0.1.7")));
    }
}
