//! Ports: MAC addresses (`fa:16:3e:…`, unique per network), fixed IPs from
//! the subnets' pools or as requested, bindings, port security, allowed
//! address pairs and security groups.

use std::net::IpAddr;

use oxistack_model::time::now;
use oxistack_model::{
    AppError, AppResult, AuthContext, NetworkId, PortId, ProjectId, Scope, SecurityGroupId,
    SubnetId,
};
use oxistack_store::network::{
    AddressPairRec, Counted, FixedIpRec, IpRequest, NetworkRec, Port, PortWrite, Subnet,
};
use rand::Rng;
use serde::Deserialize;

use crate::ipam;
use crate::{
    invalid, nullable, owner_for_create, policy_denied, read_scope, require_owner, Network,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIpRequest {
    pub subnet_id: Option<String>,
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPairRequest {
    pub ip_address: String,
    pub mac_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCreate {
    pub network_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub mac_address: Option<String>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    #[serde(rename = "binding:host_id")]
    pub binding_host_id: Option<String>,
    #[serde(rename = "binding:profile")]
    pub binding_profile: Option<serde_json::Value>,
    #[serde(rename = "binding:vnic_type")]
    pub binding_vnic_type: Option<String>,
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Option<Vec<AddressPairRequest>>,
    pub security_groups: Option<Vec<String>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortUpdate {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    pub admin_state_up: Option<bool>,
    pub mac_address: Option<String>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    #[serde(rename = "binding:host_id")]
    pub binding_host_id: Option<String>,
    #[serde(rename = "binding:profile", default, deserialize_with = "nullable")]
    pub binding_profile: Option<Option<serde_json::Value>>,
    #[serde(rename = "binding:vnic_type")]
    pub binding_vnic_type: Option<String>,
    pub port_security_enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_address_pairs: Option<Option<Vec<AddressPairRequest>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub security_groups: Option<Option<Vec<String>>>,
}

pub(crate) fn bad_network_id(s: &str) -> AppError {
    AppError::not_found(format!("Network {s} could not be found.")).with_code("NetworkNotFound")
}

fn random_mac() -> String {
    let mut r = rand::thread_rng();
    format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        r.gen::<u8>(),
        r.gen::<u8>(),
        r.gen::<u8>()
    )
}

fn check_mac(mac: &str) -> AppResult<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    let first = parts
        .first()
        .and_then(|p| u8::from_str_radix(p, 16).ok())
        .unwrap_or(1);
    if !ok || first & 1 == 1 || mac.eq_ignore_ascii_case("00:00:00:00:00:00") {
        return Err(invalid(format!("'{mac}' is not a valid MAC address")));
    }
    Ok(mac.to_ascii_lowercase())
}

fn check_pairs(pairs: &[AddressPairRequest], port_mac: &str) -> AppResult<Vec<AddressPairRec>> {
    let mut out: Vec<AddressPairRec> = Vec::new();
    for p in pairs {
        let valid =
            p.ip_address.parse::<IpAddr>().is_ok() || p.ip_address.parse::<ipnet::IpNet>().is_ok();
        if !valid {
            return Err(invalid(format!(
                "'{}' is not a valid IP address or CIDR",
                p.ip_address
            )));
        }
        let mac = match &p.mac_address {
            Some(m) => check_mac(m)?,
            None => port_mac.to_string(),
        };
        let rec = AddressPairRec {
            ip_address: p.ip_address.clone(),
            mac_address: mac,
        };
        if out.contains(&rec) {
            return Err(
                AppError::bad_request("Request contains duplicate address pair.")
                    .with_code("DuplicateAddressPairInRequest"),
            );
        }
        out.push(rec);
    }
    Ok(out)
}

/// Neutron's IPAM rules for auto-address subnets (SLAAC and
/// DHCPv6-stateless), applied to a port's address requests: a port that
/// is not a router interface holds its EUI-64 address on every such subnet
/// of its network, whether it named the subnet or not, and may name no
/// other address there (`AllocationOnAutoAddressSubnet`), unless it holds
/// that address already (`held`). Router interfaces' requests are kept as
/// they are: they take the gateway or a pool address.
pub(crate) fn with_auto_addresses(
    subnets: &[Subnet],
    reqs: &[IpRequest],
    mac: &str,
    owner: &str,
    held: &[FixedIpRec],
) -> AppResult<Vec<IpRequest>> {
    let auto: Vec<&Subnet> = subnets
        .iter()
        .filter(|s| ipam::takes_eui64(s, owner))
        .collect();
    let mut out: Vec<IpRequest> = Vec::with_capacity(reqs.len() + auto.len());
    for r in reqs {
        let Some(s) = auto.iter().find(|s| s.id == r.subnet_id) else {
            out.push(r.clone());
            continue;
        };
        // A bare subnet entry is the automatic address, asked for below.
        let Some(ip) = r.ip else { continue };
        let holds = held
            .iter()
            .any(|h| h.subnet_id == s.id && h.ip_address == ip);
        if !holds && ip != ipam::port_eui64(s, mac)? {
            return Err(AppError::bad_request(format!(
                "IPv6 address {ip} cannot be directly assigned to a port on subnet {} as the subnet is configured for automatic addresses",
                s.id
            ))
            .with_code("AllocationOnAutoAddressSubnet"));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    for s in auto {
        if !out.iter().any(|r| r.subnet_id == s.id) {
            out.push(IpRequest {
                subnet_id: s.id,
                ip: None,
            });
        }
    }
    Ok(out)
}

impl Network {
    /// A fresh port record on `net`, without addresses.
    pub(crate) fn new_port_record(&self, net: &NetworkRec, project: ProjectId) -> Port {
        let t = now();
        Port {
            id: PortId::new(),
            project_id: project,
            network_id: net.id,
            name: String::new(),
            description: String::new(),
            admin_state_up: true,
            mac_address: random_mac(),
            device_id: String::new(),
            device_owner: String::new(),
            status: "DOWN".into(),
            binding_host_id: String::new(),
            binding_profile: serde_json::json!({}),
            binding_vnic_type: "normal".into(),
            tap: None,
            port_security_enabled: net.port_security_enabled,
            allowed_address_pairs: Vec::new(),
            dns_name: String::new(),
            auto_delete: false,
            fixed_ips: Vec::new(),
            security_groups: Vec::new(),
            revision_number: 1,
            created_at: t,
            updated_at: t,
        }
    }

    /// Inserts a port; a generated MAC that collides is drawn again.
    ///
    /// The address requests are completed for the port's MAC and owner
    /// ([`with_auto_addresses`]): on each auto-address subnet of the
    /// network the port gets its EUI-64 address, and `w.pick` only chooses
    /// on the other subnets.
    pub(crate) async fn insert_port_with_mac(
        &self,
        p: &mut Port,
        w: PortWrite<'_>,
    ) -> AppResult<()> {
        let subnets = match w.ips {
            Some(_) => self.store.subnets_of_network(&p.network_id).await?,
            None => Vec::new(),
        };
        let mut attempts = 0;
        loop {
            let mac = p.mac_address.clone();
            let owner = p.device_owner.clone();
            let reqs = match w.ips {
                Some(r) => Some(with_auto_addresses(&subnets, r, &mac, &owner, &[])?),
                None => None,
            };
            let pick = ipam::pick_for_port(&mac, &owner, w.pick);
            let w2 = PortWrite {
                ips: reqs.as_deref(),
                security_groups: w.security_groups,
                quota: w.quota,
                pick: &pick,
            };
            match self.store.port_insert(p, w2).await {
                Ok(ips) => {
                    p.fixed_ips = ips;
                    if let Some(g) = w.security_groups {
                        p.security_groups = g.to_vec();
                    }
                    return Ok(());
                }
                Err(e)
                    if e.code == Some("MacAddressInUse")
                        && attempts < 16
                        && p.mac_address.starts_with("fa:16:3e") =>
                {
                    attempts += 1;
                    p.mac_address = random_mac();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a port's columns and, when `ips` is given, its addresses as
    /// [`Network::insert_port_with_mac`] completes them. `held` is what the
    /// port holds now (kept even where a new request would be refused).
    pub(crate) async fn update_port_with_ips(
        &self,
        p: &Port,
        ips: Option<&[IpRequest]>,
        held: &[FixedIpRec],
        security_groups: Option<&[SecurityGroupId]>,
    ) -> AppResult<()> {
        let reqs = match ips {
            Some(r) => {
                let subnets = self.store.subnets_of_network(&p.network_id).await?;
                Some(with_auto_addresses(
                    &subnets,
                    r,
                    &p.mac_address,
                    &p.device_owner,
                    held,
                )?)
            }
            None => None,
        };
        let pick = ipam::pick_for_port(&p.mac_address, &p.device_owner, &ipam::pick_free);
        self.store
            .port_update(
                p,
                PortWrite {
                    ips: reqs.as_deref(),
                    security_groups,
                    quota: None,
                    pick: &pick,
                },
            )
            .await
    }

    /// Turns the API's `fixed_ips` into allocation requests, checking each
    /// subnet belongs to the network and each address to its subnet. No
    /// request means, as Neutron has it, one address on the first IPv4
    /// subnet, one on the first IPv6 subnet that hands addresses out
    /// (stateful DHCPv6 or none), and the EUI-64 address on every
    /// auto-address subnet.
    pub(crate) async fn ip_requests(
        &self,
        net: &NetworkRec,
        fixed: Option<&[FixedIpRequest]>,
    ) -> AppResult<Vec<IpRequest>> {
        let subnets = self.store.subnets_of_network(&net.id).await?;
        let Some(fixed) = fixed else {
            let any = |s: &Subnet| IpRequest {
                subnet_id: s.id,
                ip: None,
            };
            let v4 = subnets.iter().find(|s| s.ip_version == 4);
            let v6_stateful = subnets
                .iter()
                .find(|s| s.ip_version == 6 && !ipam::is_auto_address(s));
            let v6_auto = subnets
                .iter()
                .filter(|s| s.ip_version == 6 && ipam::is_auto_address(s));
            return Ok(v4
                .into_iter()
                .chain(v6_stateful)
                .chain(v6_auto)
                .map(any)
                .collect());
        };
        let mut out = Vec::new();
        for f in fixed {
            let ip: Option<IpAddr> = match &f.ip_address {
                None => None,
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| invalid(format!("'{s}' is not a valid IP address")))?,
                ),
            };
            let subnet: &Subnet = match (&f.subnet_id, ip) {
                (Some(sid), _) => {
                    let sid: SubnetId = sid.parse().map_err(|_| oxistack_store::network::subnet_not_found(sid))?;
                    subnets.iter().find(|s| s.id == sid).ok_or_else(|| {
                        AppError::bad_request(format!(
                            "Invalid input for operation: Failed to create port on network {}, because fixed_ips included invalid subnet {sid}.",
                            net.id
                        ))
                        .with_code("InvalidInput")
                    })?
                }
                (None, Some(ip)) => subnets
                    .iter()
                    .find(|s| ipam::in_subnet(&s.cidr, &ip))
                    .ok_or_else(|| {
                        AppError::bad_request(format!(
                            "IP address {ip} is not a valid IP for any of the subnets on the specified network."
                        ))
                        .with_code("InvalidIpForNetwork")
                    })?,
                (None, None) => return Err(invalid("Exceeded maximum amount of fixed ips per port.")),
            };
            if let Some(ip) = ip {
                if !ipam::in_subnet(&subnet.cidr, &ip) {
                    return Err(AppError::bad_request(format!(
                        "IP address {ip} is not a valid IP for the specified subnet."
                    ))
                    .with_code("InvalidIpForSubnet"));
                }
            }
            out.push(IpRequest {
                subnet_id: subnet.id,
                ip,
            });
        }
        Ok(out)
    }

    /// The security groups a new port gets: the named ones (each must be
    /// the port project's), or the project's default group.
    pub(crate) async fn port_groups(
        &self,
        project: &ProjectId,
        requested: Option<&[String]>,
        port_security: bool,
    ) -> AppResult<Vec<SecurityGroupId>> {
        match requested {
            Some(list) => {
                let mut out = Vec::new();
                for g in list {
                    let id: SecurityGroupId = g
                        .parse()
                        .map_err(|_| oxistack_store::network::security_group_not_found(g))?;
                    self.store
                        .security_group_get(Scope::Project(*project), &id)
                        .await?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                if !out.is_empty() && !port_security {
                    return Err(AppError::bad_request(
                        "Port has security group associated. Cannot disable port security or ip address until security group is removed",
                    )
                    .with_code("PortSecurityAndIPRequiredForSecurityGroups"));
                }
                Ok(out)
            }
            None if port_security => Ok(vec![self.ensure_default_group(project).await?.id]),
            None => Ok(vec![]),
        }
    }

    pub async fn port_create(&self, ctx: &AuthContext, b: PortCreate) -> AppResult<Port> {
        let network_id: NetworkId = b
            .network_id
            .parse()
            .map_err(|_| bad_network_id(&b.network_id))?;
        let net = self
            .store
            .network_get(read_scope(ctx)?, &network_id)
            .await?;
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_port",
        )?;
        if !ctx.is_admin() && net.project_id != project && !net.shared {
            return Err(policy_denied("create_port"));
        }
        let admin_only = b.binding_host_id.is_some() || b.binding_profile.is_some();
        if admin_only && !ctx.is_admin() {
            return Err(policy_denied("create_port:binding:host_id"));
        }
        if b.mac_address.is_some() && !ctx.is_admin() && net.project_id != project {
            return Err(policy_denied("create_port:mac_address"));
        }
        let mut p = self.new_port_record(&net, project);
        if let Some(m) = &b.mac_address {
            p.mac_address = check_mac(m)?;
        }
        if let Some(v) = b.binding_vnic_type {
            if v != "normal" {
                return Err(invalid(format!("'{v}' is not in ['normal']")));
            }
        }
        p.name = b.name.unwrap_or_default();
        p.description = b.description.unwrap_or_default();
        p.admin_state_up = b.admin_state_up.unwrap_or(true);
        p.device_id = b.device_id.unwrap_or_default();
        p.device_owner = b.device_owner.unwrap_or_default();
        if let Some(ps) = b.port_security_enabled {
            p.port_security_enabled = ps;
        }
        if let Some(prof) = b.binding_profile {
            p.binding_profile = if prof.is_null() {
                serde_json::json!({})
            } else {
                prof
            };
        }
        if let Some(h) = b.binding_host_id {
            p.binding_host_id = h;
        }
        let pairs = b.allowed_address_pairs.unwrap_or_default();
        if !pairs.is_empty() && !p.port_security_enabled {
            return Err(AppError::conflict(
                "Port Security must be enabled in order to have allowed address pairs on a port.",
            )
            .with_code("AddressPairAndPortSecurityRequired"));
        }
        p.allowed_address_pairs = check_pairs(&pairs, &p.mac_address)?;
        let network_owned = p.device_owner.starts_with("network:");
        let groups = if network_owned {
            vec![]
        } else {
            self.port_groups(
                &project,
                b.security_groups.as_deref(),
                p.port_security_enabled,
            )
            .await?
        };
        let reqs = self.ip_requests(&net, b.fixed_ips.as_deref()).await?;
        let quota = Some(self.quota(&project, Counted::Port).await?);
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
        self.kick();
        self.store.port_get(Scope::All, &p.id).await
    }

    /// Creates every port of a bulk request, or none: when one fails,
    /// those already made are deleted (their addresses freed) and its
    /// error is the answer.
    pub async fn port_create_bulk(
        &self,
        ctx: &AuthContext,
        items: Vec<PortCreate>,
    ) -> AppResult<Vec<Port>> {
        let mut made: Vec<Port> = Vec::with_capacity(items.len());
        for b in items {
            match self.port_create(ctx, b).await {
                Ok(p) => made.push(p),
                Err(e) => {
                    for p in made.iter().rev() {
                        if let Err(u) = self.store.port_delete(&p.id).await {
                            tracing::warn!(port = %p.id, error = %u, "could not undo a bulk port create");
                        }
                    }
                    self.kick();
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    pub async fn port_get(&self, ctx: &AuthContext, id: &PortId) -> AppResult<Port> {
        self.store.port_get(read_scope(ctx)?, id).await
    }

    pub async fn port_list(&self, ctx: &AuthContext) -> AppResult<Vec<Port>> {
        self.store.port_list(read_scope(ctx)?).await
    }

    pub async fn port_update(
        &self,
        ctx: &AuthContext,
        id: &PortId,
        b: PortUpdate,
    ) -> AppResult<Port> {
        let mut p = self.store.port_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &p.project_id, "update_port")?;
        if (b.binding_host_id.is_some() || b.binding_profile.is_some() || b.mac_address.is_some())
            && !ctx.is_admin()
        {
            return Err(policy_denied("update_port:binding:host_id"));
        }
        let net = self.store.network_get(Scope::All, &p.network_id).await?;
        let old_mac = p.mac_address.clone();
        if let Some(v) = b.name {
            p.name = v;
        }
        if let Some(v) = b.description {
            p.description = v.unwrap_or_default();
        }
        if let Some(v) = b.admin_state_up {
            p.admin_state_up = v;
        }
        if let Some(m) = b.mac_address {
            if p.binding_host_id.is_empty() {
                p.mac_address = check_mac(&m)?;
            } else {
                return Err(
                    AppError::conflict("Port is bound; MAC address cannot be changed.")
                        .with_code("PortBound"),
                );
            }
        }
        if let Some(v) = b.device_id {
            p.device_id = v;
        }
        if let Some(v) = b.device_owner {
            p.device_owner = v;
        }
        if let Some(h) = b.binding_host_id {
            p.binding_host_id = h;
        }
        if let Some(prof) = b.binding_profile {
            p.binding_profile = prof
                .filter(|v| !v.is_null())
                .unwrap_or_else(|| serde_json::json!({}));
        }
        if let Some(v) = b.binding_vnic_type {
            if v != "normal" {
                return Err(invalid(format!("'{v}' is not in ['normal']")));
            }
        }
        if let Some(ps) = b.port_security_enabled {
            p.port_security_enabled = ps;
        }
        let groups: Option<Vec<SecurityGroupId>> = match b.security_groups {
            None => None,
            Some(list) => Some(
                self.port_groups(
                    &p.project_id,
                    Some(&list.unwrap_or_default()),
                    p.port_security_enabled,
                )
                .await?,
            ),
        };
        if !p.port_security_enabled {
            let has_groups = groups
                .as_ref()
                .map(|g| !g.is_empty())
                .unwrap_or(!p.security_groups.is_empty());
            if has_groups {
                return Err(AppError::conflict(
                    "Port has security group associated. Cannot disable port security or ip address until security group is removed",
                )
                .with_code("PortSecurityPortHasSecurityGroup"));
            }
        }
        if let Some(pairs) = b.allowed_address_pairs {
            p.allowed_address_pairs = check_pairs(&pairs.unwrap_or_default(), &p.mac_address)?;
        }
        if !p.allowed_address_pairs.is_empty() && !p.port_security_enabled {
            return Err(AppError::conflict(
                "Port Security must be enabled in order to have allowed address pairs on a port.",
            )
            .with_code("AddressPairAndPortSecurityRequired"));
        }
        let mut held = p.fixed_ips.clone();
        let mut reqs = match &b.fixed_ips {
            Some(f) => Some(self.ip_requests(&net, Some(f)).await?),
            None => None,
        };
        if p.mac_address != old_mac {
            // The EUI-64 addresses of the old MAC move to the new one's.
            let subnets = self.store.subnets_of_network(&p.network_id).await?;
            let old_eui64: Vec<FixedIpRec> = held
                .iter()
                .filter(|h| {
                    subnets.iter().any(|s| {
                        s.id == h.subnet_id
                            && ipam::takes_eui64(s, &p.device_owner)
                            && ipam::port_eui64(s, &old_mac).ok() == Some(h.ip_address)
                    })
                })
                .cloned()
                .collect();
            if !old_eui64.is_empty() {
                let mut r = reqs.unwrap_or_else(|| {
                    held.iter()
                        .map(|h| IpRequest {
                            subnet_id: h.subnet_id,
                            ip: Some(h.ip_address),
                        })
                        .collect()
                });
                for q in &mut r {
                    if old_eui64
                        .iter()
                        .any(|o| Some(o.ip_address) == q.ip && o.subnet_id == q.subnet_id)
                    {
                        q.ip = None;
                    }
                }
                held.retain(|h| !old_eui64.contains(h));
                reqs = Some(r);
            }
        }
        self.update_port_with_ips(&p, reqs.as_deref(), &held, groups.as_deref())
            .await?;
        self.kick();
        self.store.port_get(Scope::All, id).await
    }

    pub async fn port_delete(&self, ctx: &AuthContext, id: &PortId) -> AppResult<()> {
        let p = self.store.port_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &p.project_id, "delete_port")?;
        if p.device_owner == crate::OWNER_ROUTER_INTERFACE && !ctx.is_admin() {
            return Err(AppError::conflict(format!(
                "Port {id} cannot be deleted directly via the port API: has device owner network:router_interface."
            ))
            .with_code("ServicePortInUse"));
        }
        self.store.port_delete(id).await?;
        self.kick();
        Ok(())
    }
}
