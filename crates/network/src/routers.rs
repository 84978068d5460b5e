//! Routers: the external gateway (a `network:router_gateway` port on an
//! external network, with SNAT on or off) and interfaces (each a
//! `network:router_interface` port holding its subnet's gateway address).

use std::net::IpAddr;

use oxistack_model::time::now;
use oxistack_model::{
    AppError, AppResult, AuthContext, NetworkId, PortId, RouterId, Scope, SubnetId,
};
use oxistack_store::network::{Counted, HostRoute, IpRequest, Port, PortWrite, Router, Subnet};
use serde::{Deserialize, Serialize};

use crate::ipam;
use crate::ports::FixedIpRequest;
use crate::{
    invalid, nullable, owner_for_create, policy_denied, read_scope, require_owner, Network,
    OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRequest {
    pub network_id: String,
    pub enable_snat: Option<bool>,
    pub external_fixed_ips: Option<Vec<FixedIpRequest>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterCreate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub external_gateway_info: Option<Option<serde_json::Value>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub availability_zone_hints: Option<Vec<String>>,
    pub distributed: Option<bool>,
    pub ha: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterUpdate {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    pub admin_state_up: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub external_gateway_info: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Option<Option<Vec<HostRoute>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceRequest {
    pub subnet_id: Option<String>,
    pub port_id: Option<String>,
}

/// A router with its gateway addresses, as the API shows it.
#[derive(Debug, Clone)]
pub struct RouterView {
    pub router: Router,
    /// (subnet, address) of the gateway port.
    pub external_fixed_ips: Vec<(SubnetId, IpAddr)>,
}

/// The answer of add/remove_router_interface.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceInfo {
    pub id: RouterId,
    pub tenant_id: String,
    pub project_id: String,
    pub port_id: PortId,
    pub network_id: NetworkId,
    pub subnet_id: SubnetId,
    pub subnet_ids: Vec<SubnetId>,
}

fn not_external(network: &str) -> AppError {
    AppError::bad_request(format!(
        "Bad router request: Network {network} is not a valid external network."
    ))
    .with_code("BadRequest")
}

/// Neutron's `BadRequest(resource='router')`.
fn bad_router(msg: impl std::fmt::Display) -> AppError {
    AppError::bad_request(format!("Bad router request: {msg}.")).with_code("BadRequest")
}

/// A subnet whose hosts take their addresses from another router's
/// advertisements (an address mode without an RA mode) cannot be on one
/// of ours, as Neutron's `_validate_subnet_address_mode` has it.
fn check_address_mode(s: &Subnet) -> AppResult<()> {
    if s.ip_version == 6 && s.ipv6_ra_mode.is_none() && s.ipv6_address_mode.is_some() {
        return Err(bad_router(format!(
            "IPv6 subnet {} configured to receive RAs from an external router cannot be added to Neutron Router",
            s.id
        )));
    }
    Ok(())
}

impl Network {
    async fn router_view(&self, r: Router) -> AppResult<RouterView> {
        let external_fixed_ips = match r.gw_port_id {
            Some(p) => match self.store.port_get(Scope::All, &p).await {
                Ok(port) => port
                    .fixed_ips
                    .iter()
                    .map(|f| (f.subnet_id, f.ip_address))
                    .collect(),
                Err(_) => vec![],
            },
            None => vec![],
        };
        Ok(RouterView {
            router: r,
            external_fixed_ips,
        })
    }

    /// Creates or replaces the router's gateway port from the API's
    /// `external_gateway_info` (`None` or `{}` removes it).
    async fn set_gateway(
        &self,
        ctx: &AuthContext,
        r: &mut Router,
        info: Option<serde_json::Value>,
    ) -> AppResult<()> {
        let info = info.filter(|v| v.as_object().map(|o| !o.is_empty()).unwrap_or(!v.is_null()));
        let req: Option<GatewayRequest> = match info {
            None => None,
            Some(v) => Some(
                serde_json::from_value(v)
                    .map_err(|e| invalid(format!("Invalid external_gateway_info: {e}")))?,
            ),
        };
        if let Some(g) = &req {
            if (g.enable_snat.is_some() || g.external_fixed_ips.is_some()) && !ctx.is_admin() {
                return Err(policy_denied(
                    "create_router:external_gateway_info:enable_snat",
                ));
            }
        }
        let same_network = match (&req, r.gw_network_id) {
            (Some(g), Some(cur)) => {
                g.network_id == cur.to_string() && g.external_fixed_ips.is_none()
            }
            _ => false,
        };
        if same_network {
            if let Some(s) = req.as_ref().and_then(|g| g.enable_snat) {
                r.enable_snat = s;
            }
            return Ok(());
        }
        // The new gateway is checked before the current one goes.
        let new_gateway = match &req {
            None => None,
            Some(g) => {
                let nid: NetworkId = g
                    .network_id
                    .parse()
                    .map_err(|_| crate::ports::bad_network_id(&g.network_id))?;
                let net = self.store.network_get(read_scope(ctx)?, &nid).await?;
                if !net.external {
                    return Err(not_external(&g.network_id));
                }
                let reqs = self
                    .ip_requests(&net, g.external_fixed_ips.as_deref())
                    .await?;
                if reqs.is_empty() {
                    return Err(invalid(format!(
                        "Network {nid} has no subnet for the router gateway."
                    )));
                }
                let subnets = self.store.subnets_of_network(&nid).await?;
                self.check_router_subnets(r, &subnets, false).await?;
                Some((net, reqs))
            }
        };
        // Remove the current gateway; floating IPs using it block that.
        if let Some(old) = r.gw_port_id {
            let fips = self.store.floating_ip_list(Scope::All).await?;
            if fips.iter().any(|f| f.router_id == Some(r.id)) {
                return Err(AppError::conflict(format!(
                    "Gateway cannot be updated for router {}, since a gateway to external network {} is required by one or more floating IPs.",
                    r.id,
                    r.gw_network_id.map(|n| n.to_string()).unwrap_or_default()
                ))
                .with_code("RouterExternalGatewayInUseByFloatingIp"));
            }
            self.store.port_delete(&old).await.ok();
            r.gw_port_id = None;
            r.gw_network_id = None;
        }
        let (Some(g), Some((net, reqs))) = (req, new_gateway) else {
            r.enable_snat = true;
            return Ok(());
        };
        let nid = net.id;
        let mut p = self.new_port_record(&net, r.project_id);
        p.device_owner = OWNER_ROUTER_GATEWAY.into();
        p.device_id = r.id.to_string();
        p.status = "ACTIVE".into();
        p.port_security_enabled = false;
        self.insert_port_with_mac(
            &mut p,
            PortWrite {
                ips: Some(&reqs),
                security_groups: None,
                quota: None,
                pick: &ipam::pick_free,
            },
        )
        .await?;
        r.gw_port_id = Some(p.id);
        r.gw_network_id = Some(nid);
        r.enable_snat = g.enable_snat.unwrap_or(true);
        Ok(())
    }

    pub async fn router_create(&self, ctx: &AuthContext, b: RouterCreate) -> AppResult<RouterView> {
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_router",
        )?;
        if b.distributed == Some(true) || b.ha == Some(true) {
            return Err(invalid("Distributed and HA routers are not supported."));
        }
        let t = now();
        let mut r = Router {
            id: RouterId::new(),
            project_id: project,
            name: b.name.unwrap_or_default(),
            description: b.description.unwrap_or_default(),
            admin_state_up: b.admin_state_up.unwrap_or(true),
            status: "ACTIVE".into(),
            gw_network_id: None,
            gw_port_id: None,
            enable_snat: true,
            routes: vec![],
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        let quota = Some(self.quota(&project, Counted::Router).await?);
        self.store.router_insert(&r, quota).await?;
        if let Some(info) = b.external_gateway_info {
            if let Err(e) = self.set_gateway(ctx, &mut r, info).await {
                self.store.router_delete(&r.id).await.ok();
                return Err(e);
            }
            self.store.router_update(&r).await?;
        }
        self.kick();
        let r = self.store.router_get(Scope::All, &r.id).await?;
        self.router_view(r).await
    }

    pub async fn router_get(&self, ctx: &AuthContext, id: &RouterId) -> AppResult<RouterView> {
        let r = self.store.router_get(read_scope(ctx)?, id).await?;
        self.router_view(r).await
    }

    pub async fn router_list(&self, ctx: &AuthContext) -> AppResult<Vec<RouterView>> {
        let mut out = Vec::new();
        for r in self.store.router_list(read_scope(ctx)?).await? {
            out.push(self.router_view(r).await?);
        }
        Ok(out)
    }

    pub async fn router_update(
        &self,
        ctx: &AuthContext,
        id: &RouterId,
        b: RouterUpdate,
    ) -> AppResult<RouterView> {
        let mut r = self.store.router_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &r.project_id, "update_router")?;
        if let Some(v) = b.name {
            r.name = v;
        }
        if let Some(v) = b.description {
            r.description = v.unwrap_or_default();
        }
        if let Some(v) = b.admin_state_up {
            r.admin_state_up = v;
        }
        if let Some(routes) = b.routes {
            let routes = routes.unwrap_or_default();
            let ifaces = self.store.ports_of_device(&r.id.to_string()).await?;
            let subnets = self.store.subnet_list(Scope::All).await?;
            for rt in &routes {
                rt.destination.parse::<ipnet::IpNet>().map_err(|_| {
                    invalid(format!("'{}' is not a valid IP subnet", rt.destination))
                })?;
                let reachable = ifaces.iter().flat_map(|p| &p.fixed_ips).any(|f| {
                    subnets
                        .iter()
                        .any(|s| s.id == f.subnet_id && ipam::in_subnet(&s.cidr, &rt.nexthop))
                });
                if !reachable {
                    return Err(AppError::bad_request(format!(
                        "Invalid format for routes: [{{'destination': '{}', 'nexthop': '{}'}}], the nexthop is not connected with router",
                        rt.destination, rt.nexthop
                    ))
                    .with_code("InvalidRoutes"));
                }
            }
            r.routes = routes;
        }
        if let Some(info) = b.external_gateway_info {
            self.set_gateway(ctx, &mut r, info).await?;
        }
        self.store.router_update(&r).await?;
        self.kick();
        self.router_get(ctx, id).await
    }

    pub async fn router_delete(&self, ctx: &AuthContext, id: &RouterId) -> AppResult<()> {
        let mut r = self.store.router_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &r.project_id, "delete_router")?;
        let ifaces = self
            .store
            .ports_of_device(&id.to_string())
            .await?
            .into_iter()
            .filter(|p| p.device_owner == OWNER_ROUTER_INTERFACE)
            .count();
        if ifaces > 0 {
            return Err(
                AppError::conflict(format!("Router {id} still has ports")).with_code("RouterInUse")
            );
        }
        if r.gw_port_id.is_some() {
            self.set_gateway(ctx, &mut r, None).await?;
            self.store.router_update(&r).await?;
        }
        self.store.router_delete(id).await?;
        self.kick();
        Ok(())
    }

    /// Neutron's `_check_for_dup_router_subnets`: a router holds at most
    /// one port on a subnet, and no two of its subnets overlap. The
    /// gateway counts with every subnet of its external network (unless
    /// `with_gateway` is false: the gateway is being replaced).
    async fn check_router_subnets(
        &self,
        r: &Router,
        new: &[Subnet],
        with_gateway: bool,
    ) -> AppResult<()> {
        let ports: Vec<Port> = self
            .store
            .ports_of_device(&r.id.to_string())
            .await?
            .into_iter()
            .filter(|p| {
                p.device_owner == OWNER_ROUTER_INTERFACE
                    || (with_gateway && p.device_owner == OWNER_ROUTER_GATEWAY)
            })
            .collect();
        let mut attached: Vec<Subnet> = Vec::new();
        for p in &ports {
            if let Some(f) = p
                .fixed_ips
                .iter()
                .find(|f| new.iter().any(|s| s.id == f.subnet_id))
            {
                return Err(bad_router(format!(
                    "Router already has a port on subnet {}",
                    f.subnet_id
                )));
            }
            for s in self.store.subnets_of_network(&p.network_id).await? {
                let on_router = p.device_owner == OWNER_ROUTER_GATEWAY
                    || p.fixed_ips.iter().any(|f| f.subnet_id == s.id);
                if on_router && !attached.iter().any(|a| a.id == s.id) {
                    attached.push(s);
                }
            }
        }
        for a in &attached {
            if let Some(s) = new.iter().find(|s| ipam::overlaps(&a.cidr, &s.cidr)) {
                return Err(bad_router(format!(
                    "Cidr {} of subnet {} overlaps with cidr {} of subnet {}",
                    s.cidr, s.id, a.cidr, a.id
                )));
            }
        }
        Ok(())
    }

    pub async fn router_add_interface(
        &self,
        ctx: &AuthContext,
        id: &RouterId,
        b: InterfaceRequest,
    ) -> AppResult<InterfaceInfo> {
        let r = self.store.router_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &r.project_id, "add_router_interface")?;
        let port: Port = match (&b.subnet_id, &b.port_id) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_request(
                    "Bad router request: Cannot specify both subnet-id and port-id.",
                )
                .with_code("BadRequest"))
            }
            (None, None) => {
                return Err(AppError::bad_request(
                    "Bad router request: Either subnet_id or port_id must be specified.",
                )
                .with_code("BadRequest"))
            }
            (Some(sid), None) => {
                let sid: SubnetId = sid
                    .parse()
                    .map_err(|_| oxistack_store::network::subnet_not_found(sid))?;
                let s = self.store.subnet_get(read_scope(ctx)?, &sid).await?;
                let gw = s.gateway_ip.ok_or_else(|| {
                    AppError::bad_request(format!(
                        "Bad router request: Subnet {sid} for router interface must have a gateway IP."
                    ))
                    .with_code("BadRequest")
                })?;
                let net = self.store.network_get(Scope::All, &s.network_id).await?;
                if net.external {
                    return Err(AppError::bad_request(format!(
                        "Bad router request: Router interface cannot be on external network {}.",
                        net.id
                    ))
                    .with_code("BadRequest"));
                }
                check_address_mode(&s)?;
                self.check_router_subnets(&r, std::slice::from_ref(&s), true)
                    .await?;
                let mut p = self.new_port_record(&net, r.project_id);
                p.device_owner = OWNER_ROUTER_INTERFACE.into();
                p.device_id = r.id.to_string();
                p.status = "ACTIVE".into();
                p.port_security_enabled = false;
                let reqs = [IpRequest {
                    subnet_id: sid,
                    ip: Some(gw),
                }];
                self.insert_port_with_mac(
                    &mut p,
                    PortWrite {
                        ips: Some(&reqs),
                        security_groups: None,
                        quota: None,
                        pick: &ipam::pick_free,
                    },
                )
                .await?;
                p
            }
            (None, Some(pid)) => {
                let pid: PortId = pid
                    .parse()
                    .map_err(|_| oxistack_store::network::port_not_found(pid))?;
                let mut p = self.store.port_get(read_scope(ctx)?, &pid).await?;
                if !p.device_id.is_empty() || !p.device_owner.is_empty() {
                    return Err(AppError::conflict(format!(
                        "Unable to complete operation on port {pid} for network {}. Port already has an attached device {}.",
                        p.network_id, p.device_id
                    ))
                    .with_code("PortInUse"));
                }
                if p.fixed_ips.is_empty() {
                    return Err(AppError::bad_request(format!(
                        "Bad router request: Router port {pid} must have at least one fixed IP address."
                    ))
                    .with_code("BadRequest"));
                }
                let mut subnets = Vec::new();
                for f in &p.fixed_ips {
                    let s = self.store.subnet_get(Scope::All, &f.subnet_id).await?;
                    check_address_mode(&s)?;
                    if !subnets.contains(&s) {
                        subnets.push(s);
                    }
                }
                self.check_router_subnets(&r, &subnets, true).await?;
                if subnets.iter().filter(|s| s.ip_version == 4).count() > 1 {
                    return Err(bad_router(
                        "Cannot have multiple IPv4 subnets on router port",
                    ));
                }
                p.device_owner = OWNER_ROUTER_INTERFACE.into();
                p.device_id = r.id.to_string();
                p.status = "ACTIVE".into();
                self.store
                    .port_update(
                        &p,
                        PortWrite {
                            ips: None,
                            security_groups: Some(&[]),
                            quota: None,
                            pick: &ipam::pick_free,
                        },
                    )
                    .await?;
                p
            }
        };
        self.kick();
        Ok(InterfaceInfo {
            id: r.id,
            tenant_id: r.project_id.to_string(),
            project_id: r.project_id.to_string(),
            port_id: port.id,
            network_id: port.network_id,
            subnet_id: port
                .fixed_ips
                .first()
                .map(|f| f.subnet_id)
                .unwrap_or_default(),
            subnet_ids: port.fixed_ips.iter().map(|f| f.subnet_id).collect(),
        })
    }

    pub async fn router_remove_interface(
        &self,
        ctx: &AuthContext,
        id: &RouterId,
        b: InterfaceRequest,
    ) -> AppResult<InterfaceInfo> {
        let r = self.store.router_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &r.project_id, "remove_router_interface")?;
        let ifaces: Vec<Port> = self
            .store
            .ports_of_device(&id.to_string())
            .await?
            .into_iter()
            .filter(|p| p.device_owner == OWNER_ROUTER_INTERFACE)
            .collect();
        let port = match (&b.port_id, &b.subnet_id) {
            (Some(pid), sid) => {
                let found = ifaces
                    .iter()
                    .find(|p| p.id.to_string() == *pid)
                    .cloned()
                    .ok_or_else(|| {
                        AppError::not_found(format!(
                            "Router {id} does not have an interface with id {pid}"
                        ))
                        .with_code("RouterInterfaceNotFound")
                    })?;
                if let Some(sid) = sid {
                    if !found
                        .fixed_ips
                        .iter()
                        .any(|f| f.subnet_id.to_string() == *sid)
                    {
                        return Err(AppError::conflict(format!(
                            "Subnet {sid} does not match the subnet of port {pid}."
                        ))
                        .with_code("SubnetMismatchForPort"));
                    }
                }
                found
            }
            (None, Some(sid)) => ifaces
                .iter()
                .find(|p| p.fixed_ips.iter().any(|f| f.subnet_id.to_string() == *sid))
                .cloned()
                .ok_or_else(|| {
                    AppError::not_found(format!("Router {id} has no interface on subnet {sid}"))
                        .with_code("RouterInterfaceNotFoundForSubnet")
                })?,
            (None, None) => {
                return Err(AppError::bad_request(
                    "Bad router request: Either subnet_id or port_id must be specified.",
                )
                .with_code("BadRequest"))
            }
        };
        // Floating IPs reached through this interface would lose their path.
        let fips = self.store.floating_ip_list(Scope::All).await?;
        let subnets = self.store.subnet_list(Scope::All).await?;
        for f in fips.iter().filter(|f| f.router_id == Some(*id)) {
            let through = port.fixed_ips.iter().any(|pf| {
                subnets.iter().any(|s| {
                    s.id == pf.subnet_id
                        && f.fixed_ip_address
                            .is_some_and(|ip| ipam::in_subnet(&s.cidr, &ip))
                })
            });
            if through {
                return Err(AppError::conflict(format!(
                    "Cannot remove interface of router {id}: it is required by one or more floating IPs."
                ))
                .with_code("RouterInterfaceInUseByFloatingIP"));
            }
        }
        self.store.port_delete(&port.id).await?;
        self.kick();
        Ok(InterfaceInfo {
            id: r.id,
            tenant_id: r.project_id.to_string(),
            project_id: r.project_id.to_string(),
            port_id: port.id,
            network_id: port.network_id,
            subnet_id: port
                .fixed_ips
                .first()
                .map(|f| f.subnet_id)
                .unwrap_or_default(),
            subnet_ids: port.fixed_ips.iter().map(|f| f.subnet_id).collect(),
        })
    }

    /// The router that joins `subnet` to the external network `ext`.
    pub(crate) async fn router_between(
        &self,
        subnet: &SubnetId,
        ext: &NetworkId,
    ) -> AppResult<Option<RouterId>> {
        let routers = self.store.router_list(Scope::All).await?;
        let ports = self.store.port_list(Scope::All).await?;
        for r in routers.iter().filter(|r| r.gw_network_id == Some(*ext)) {
            let joined = ports.iter().any(|p| {
                p.device_owner == OWNER_ROUTER_INTERFACE
                    && p.device_id == r.id.to_string()
                    && p.fixed_ips.iter().any(|f| f.subnet_id == *subnet)
            });
            if joined {
                return Ok(Some(r.id));
            }
        }
        Ok(None)
    }
}

/// Ports the network service itself owns (never counted against the
/// tenant, never deleted with a network's "in use" check).
pub fn is_service_port(owner: &str) -> bool {
    owner == OWNER_ROUTER_GATEWAY || owner == OWNER_FLOATING_IP || owner == crate::OWNER_DHCP
}
