//! Floating IPs: an address of an external network (held by a
//! `network:floatingip` port) mapped 1:1 to a port's fixed IP through the
//! router that joins the port's subnet to that external network.

use std::net::IpAddr;

use oxistack_model::time::now;
use oxistack_model::{
    AppError, AppResult, AuthContext, FloatingIpId, NetworkId, PortId, Scope, SubnetId,
};
use oxistack_store::network::{Counted, FloatingIp, PortWrite};
use serde::Deserialize;

use crate::ipam;
use crate::ports::FixedIpRequest;
use crate::{
    invalid, nullable, owner_for_create, policy_denied, read_scope, require_owner, Network,
    OWNER_FLOATING_IP,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpCreate {
    pub floating_network_id: String,
    pub floating_ip_address: Option<String>,
    pub subnet_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip_address: Option<String>,
    pub description: Option<String>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpUpdate {
    #[serde(default, deserialize_with = "nullable")]
    pub port_id: Option<Option<String>>,
    pub fixed_ip_address: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
}

impl Network {
    /// Resolves an association request into (port, fixed IP, router).
    async fn association(
        &self,
        ctx: &AuthContext,
        fip: &FloatingIp,
        port_id: &str,
        fixed_ip: Option<&str>,
    ) -> AppResult<(PortId, IpAddr, oxistack_model::RouterId)> {
        let pid: PortId = port_id
            .parse()
            .map_err(|_| oxistack_store::network::port_not_found(port_id))?;
        let port = self.store.port_get(read_scope(ctx)?, &pid).await?;
        if port.fixed_ips.is_empty() {
            return Err(AppError::bad_request(format!(
                "Bad floatingip request: Port {pid} does not have any fixed IP addresses."
            ))
            .with_code("BadRequest"));
        }
        let chosen = match fixed_ip {
            Some(s) => {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| invalid(format!("'{s}' is not a valid IP address")))?;
                port.fixed_ips
                    .iter()
                    .find(|f| f.ip_address == ip)
                    .cloned()
                    .ok_or_else(|| {
                        AppError::bad_request(format!(
                            "Bad floatingip request: Port {pid} does not have fixed ip {ip}."
                        ))
                        .with_code("BadRequest")
                    })?
            }
            None => port
                .fixed_ips
                .iter()
                .find(|f| f.ip_address.is_ipv4())
                .cloned()
                .ok_or_else(|| {
                    AppError::bad_request(format!(
                        "Bad floatingip request: Port {pid} does not have any IPv4 addresses."
                    ))
                    .with_code("BadRequest")
                })?,
        };
        let others = self.store.floating_ip_list(Scope::All).await?;
        if let Some(o) = others.iter().find(|o| {
            o.id != fip.id
                && o.port_id == Some(pid)
                && o.fixed_ip_address == Some(chosen.ip_address)
        }) {
            return Err(AppError::conflict(format!(
                "Cannot associate floating IP {} ({}) with port {pid} using fixed IP {}, as that fixed IP already has a floating IP on external network {}.",
                fip.floating_ip_address, fip.id, chosen.ip_address, o.floating_network_id
            ))
            .with_code("FloatingIPPortAlreadyAssociated"));
        }
        let router = self
            .router_between(&chosen.subnet_id, &fip.floating_network_id)
            .await?
            .ok_or_else(|| {
                AppError::not_found(format!(
                    "External network {} is not reachable from subnet {}.  Therefore, cannot associate Port {pid} with a Floating IP.",
                    fip.floating_network_id, chosen.subnet_id
                ))
                .with_code("ExternalGatewayForFloatingIPNotFound")
            })?;
        Ok((pid, chosen.ip_address, router))
    }

    pub async fn floating_ip_create(
        &self,
        ctx: &AuthContext,
        b: FloatingIpCreate,
    ) -> AppResult<FloatingIp> {
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_floatingip",
        )?;
        let nid: NetworkId = b
            .floating_network_id
            .parse()
            .map_err(|_| crate::ports::bad_network_id(&b.floating_network_id))?;
        let net = self.store.network_get(read_scope(ctx)?, &nid).await?;
        if !net.external {
            return Err(AppError::bad_request(format!(
                "Bad floatingip request: Network {nid} is not a valid external network."
            ))
            .with_code("BadRequest"));
        }
        if b.floating_ip_address.is_some() && !ctx.is_admin() {
            return Err(policy_denied("create_floatingip:floating_ip_address"));
        }
        let fixed = FixedIpRequest {
            subnet_id: b.subnet_id.clone(),
            ip_address: b.floating_ip_address.clone(),
        };
        let fixed_list = [fixed];
        let reqs = if b.subnet_id.is_some() || b.floating_ip_address.is_some() {
            self.ip_requests(&net, Some(&fixed_list)).await?
        } else {
            // The first IPv4 subnet of the external network.
            let subnets = self.store.subnets_of_network(&nid).await?;
            let s = subnets.iter().find(|s| s.ip_version == 4).ok_or_else(|| {
                AppError::bad_request(format!(
                    "Bad floatingip request: Network {nid} does not contain any IPv4 subnet."
                ))
                .with_code("BadRequest")
            })?;
            vec![oxistack_store::network::IpRequest {
                subnet_id: s.id,
                ip: None,
            }]
        };
        self.store
            .floating_ip_quota(&self.quota(&project, Counted::FloatingIp).await?)
            .await?;
        let t = now();
        let id = FloatingIpId::new();
        let mut port = self.new_port_record(&net, project);
        port.device_owner = OWNER_FLOATING_IP.into();
        port.device_id = id.to_string();
        port.port_security_enabled = false;
        port.status = "N/A".into();
        self.insert_port_with_mac(
            &mut port,
            PortWrite {
                ips: Some(&reqs),
                security_groups: None,
                quota: None,
                pick: &ipam::pick_free,
            },
        )
        .await?;
        let address = port
            .fixed_ips
            .first()
            .map(|f| f.ip_address)
            .ok_or_else(|| ipam::exhausted(&nid))?;
        let mut fip = FloatingIp {
            id,
            project_id: project,
            floating_network_id: nid,
            floating_ip_address: address,
            floating_port_id: port.id,
            port_id: None,
            fixed_ip_address: None,
            router_id: None,
            status: "DOWN".into(),
            description: b.description.unwrap_or_default(),
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        if let Some(pid) = &b.port_id {
            match self
                .association(ctx, &fip, pid, b.fixed_ip_address.as_deref())
                .await
            {
                Ok((p, ip, r)) => {
                    fip.port_id = Some(p);
                    fip.fixed_ip_address = Some(ip);
                    fip.router_id = Some(r);
                    fip.status = "ACTIVE".into();
                }
                Err(e) => {
                    self.store.port_delete(&port.id).await.ok();
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.store.floating_ip_insert(&fip).await {
            self.store.port_delete(&port.id).await.ok();
            return Err(e);
        }
        self.kick();
        Ok(fip)
    }

    pub async fn floating_ip_get(
        &self,
        ctx: &AuthContext,
        id: &FloatingIpId,
    ) -> AppResult<FloatingIp> {
        self.store.floating_ip_get(read_scope(ctx)?, id).await
    }

    pub async fn floating_ip_list(&self, ctx: &AuthContext) -> AppResult<Vec<FloatingIp>> {
        self.store.floating_ip_list(read_scope(ctx)?).await
    }

    pub async fn floating_ip_update(
        &self,
        ctx: &AuthContext,
        id: &FloatingIpId,
        b: FloatingIpUpdate,
    ) -> AppResult<FloatingIp> {
        let mut fip = self.store.floating_ip_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &fip.project_id, "update_floatingip")?;
        if let Some(d) = b.description {
            fip.description = d.unwrap_or_default();
        }
        match b.port_id {
            Some(Some(pid)) => {
                let (p, ip, r) = self
                    .association(ctx, &fip, &pid, b.fixed_ip_address.as_deref())
                    .await?;
                fip.port_id = Some(p);
                fip.fixed_ip_address = Some(ip);
                fip.router_id = Some(r);
                fip.status = "ACTIVE".into();
            }
            Some(None) => {
                fip.port_id = None;
                fip.fixed_ip_address = None;
                fip.router_id = None;
                fip.status = "DOWN".into();
            }
            None => {}
        }
        self.store.floating_ip_update(&fip).await?;
        self.kick();
        self.store.floating_ip_get(Scope::All, id).await
    }

    pub async fn floating_ip_delete(&self, ctx: &AuthContext, id: &FloatingIpId) -> AppResult<()> {
        let fip = self.store.floating_ip_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &fip.project_id, "delete_floatingip")?;
        self.store.floating_ip_delete(id).await?;
        self.store.port_delete(&fip.floating_port_id).await.ok();
        self.kick();
        Ok(())
    }
}

/// The subnet of an address among a port's fixed IPs (for views).
pub fn subnet_of(fixed: &[oxistack_store::network::FixedIpRec], ip: &IpAddr) -> Option<SubnetId> {
    fixed
        .iter()
        .find(|f| f.ip_address == *ip)
        .map(|f| f.subnet_id)
}
