//! Nova's floating IP proxy (`os-floating-ips`, `os-floating-ip-pools` and
//! the `addFloatingIp`/`removeFloatingIp` actions), served as Nova serves
//! them with Neutron: a pool is an external network (named, or by id), an
//! address is found among the floating IPs the caller can see, and the
//! instance of a floating IP is the device of the port it is mapped to.
//!
//! Neutron's refusals become Nova's codes: an exhausted pool is a 404, a
//! quota a 403, and any failure to map an address to a server a 400.

use std::net::IpAddr;

use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, FloatingIpId, ServerId};
use oxistack_network::floating_ips::{FloatingIpCreate, FloatingIpUpdate};
use oxistack_network::networks::NetworkView;
use oxistack_store::network::FloatingIp;

use crate::Compute;

/// The pool Nova allocates from when the request names none (Nova's
/// `[neutron] default_floating_pool`): the external network OxiStack makes
/// at first start.
pub const DEFAULT_POOL: &str = "public";

/// A floating IP as Nova shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaFloatingIp {
    pub id: FloatingIpId,
    pub ip: IpAddr,
    pub fixed_ip: Option<IpAddr>,
    /// The server its port belongs to.
    pub instance_id: Option<String>,
    /// The external network's name (its id when it has none).
    pub pool: String,
}

fn pool_name(n: &NetworkView) -> String {
    if n.net.name.is_empty() {
        n.net.id.to_string()
    } else {
        n.net.name.clone()
    }
}

fn fip_not_found(id: &str) -> AppError {
    AppError::not_found(format!("Floating IP not found for ID {id}"))
}

impl Compute {
    async fn nova_floating_ip(
        &self,
        ctx: &AuthContext,
        f: &FloatingIp,
    ) -> AppResult<NovaFloatingIp> {
        let pool = match self.network.network_get(ctx, &f.floating_network_id).await {
            Ok(n) => pool_name(&n),
            Err(e) if e.kind == ErrorKind::NotFound => f.floating_network_id.to_string(),
            Err(e) => return Err(e),
        };
        let instance_id = match &f.port_id {
            None => None,
            Some(p) => self
                .network
                .port_get(ctx, p)
                .await
                .ok()
                .map(|p| p.device_id)
                .filter(|d| !d.is_empty()),
        };
        Ok(NovaFloatingIp {
            id: f.id,
            ip: f.floating_ip_address,
            fixed_ip: f.fixed_ip_address,
            instance_id,
            pool,
        })
    }

    /// The external networks, which Nova calls floating IP pools.
    pub async fn floating_ip_pools(&self, ctx: &AuthContext) -> AppResult<Vec<String>> {
        Ok(self
            .network
            .network_list(ctx)
            .await?
            .iter()
            .filter(|n| n.net.external)
            .map(pool_name)
            .collect())
    }

    /// The floating IPs of the caller's project.
    pub async fn floating_ip_list(&self, ctx: &AuthContext) -> AppResult<Vec<NovaFloatingIp>> {
        let project = ctx.project()?;
        let mut out = Vec::new();
        for f in self.network.floating_ip_list(ctx).await? {
            if f.project_id == project {
                out.push(self.nova_floating_ip(ctx, &f).await?);
            }
        }
        Ok(out)
    }

    /// One floating IP; an id that is not one is a 404, as Neutron's is.
    pub async fn floating_ip_show(&self, ctx: &AuthContext, id: &str) -> AppResult<NovaFloatingIp> {
        let f = self.floating_ip_by_id(ctx, id).await?;
        self.nova_floating_ip(ctx, &f).await
    }

    async fn floating_ip_by_id(&self, ctx: &AuthContext, id: &str) -> AppResult<FloatingIp> {
        let fid: FloatingIpId = id.parse().map_err(|_| fip_not_found(id))?;
        self.network
            .floating_ip_get(ctx, &fid)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => fip_not_found(id),
                _ => e,
            })
    }

    /// Allocates an address of `pool` (an external network's name or id;
    /// [`DEFAULT_POOL`] when none) to the caller's project.
    pub async fn floating_ip_allocate(
        &self,
        ctx: &AuthContext,
        pool: Option<&str>,
    ) -> AppResult<NovaFloatingIp> {
        let name = pool.unwrap_or(DEFAULT_POOL);
        let by_id = name.parse::<oxistack_model::NetworkId>().ok();
        let nets: Vec<NetworkView> = self
            .network
            .network_list(ctx)
            .await?
            .into_iter()
            .filter(|n| n.net.external)
            .filter(|n| match by_id {
                Some(id) => n.net.id == id,
                None => n.net.name == name,
            })
            .collect();
        let net = match nets.as_slice() {
            [one] => one,
            [] => return Err(AppError::not_found("Floating IP pool not found.")),
            _ => {
                return Err(AppError::bad_request(format!(
                    "Multiple floating IP pools matches found for name '{name}'"
                )))
            }
        };
        let made = self
            .network
            .floating_ip_create(
                ctx,
                FloatingIpCreate {
                    floating_network_id: net.net.id.to_string(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                let ctx_msg = e.to_string();
                match (e.kind, e.code) {
                    (_, Some("IpAddressGenerationFailure" | "ExternalIpAddressExhausted")) => {
                        AppError::not_found(format!("No more floating IPs in pool {name}."))
                            .with_context(ctx_msg)
                    }
                    (_, Some("OverQuota")) | (ErrorKind::OverQuota, _) => {
                        AppError::forbidden(format!("IP allocation over quota in pool {name}."))
                            .with_context(ctx_msg)
                    }
                    _ => e,
                }
            })?;
        self.nova_floating_ip(ctx, &made).await
    }

    /// Releases a floating IP, mapped or not.
    pub async fn floating_ip_release(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        let f = self.floating_ip_by_id(ctx, id).await?;
        self.network
            .floating_ip_delete(ctx, &f.id)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => fip_not_found(id),
                _ => e,
            })
    }

    /// The one floating IP with this address among those the caller sees.
    async fn floating_ip_by_address(
        &self,
        ctx: &AuthContext,
        address: &IpAddr,
    ) -> AppResult<FloatingIp> {
        let mut found: Vec<FloatingIp> = self
            .network
            .floating_ip_list(ctx)
            .await?
            .into_iter()
            .filter(|f| f.floating_ip_address == *address)
            .collect();
        match found.len() {
            0 => Err(AppError::not_found("floating IP not found")),
            1 => Ok(found.remove(0)),
            _ => Err(AppError::bad_request(format!(
                "Multiple floating IPs are found for address {address}."
            ))),
        }
    }

    /// `addFloatingIp`: maps `address` to `fixed_address` of the server (by
    /// default its first IPv4 address). A floating IP mapped elsewhere
    /// moves to this server.
    pub async fn server_add_floating_ip(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        address: IpAddr,
        fixed_address: Option<IpAddr>,
    ) -> AppResult<()> {
        self.server_get(ctx, id).await?;
        ctx.require_member()?;
        let ports = self.store.ports_of_device(&id.to_string()).await?;
        if ports.is_empty() {
            return Err(AppError::bad_request("Instance network is not ready yet"));
        }
        let fixed: Vec<(IpAddr, oxistack_model::PortId)> = ports
            .iter()
            .flat_map(|p| p.fixed_ips.iter().map(|f| (f.ip_address, p.id)))
            .collect();
        if fixed.is_empty() {
            return Err(AppError::bad_request("No fixed IPs associated to instance"));
        }
        let (fixed_ip, port) = match fixed_address {
            Some(want) => *fixed.iter().find(|(ip, _)| *ip == want).ok_or_else(|| {
                AppError::bad_request("Specified fixed address not assigned to instance")
            })?,
            None => *fixed.iter().find(|(ip, _)| ip.is_ipv4()).ok_or_else(|| {
                AppError::bad_request(format!(
                    "Unable to associate floating IP {address} to any fixed IPs for instance {id}. Instance has no fixed IPv4 addresses to associate."
                ))
            })?,
        };
        let fip = self.floating_ip_by_address(ctx, &address).await?;
        self.network
            .floating_ip_update(
                ctx,
                &fip.id,
                FloatingIpUpdate {
                    port_id: Some(Some(port.to_string())),
                    fixed_ip_address: Some(fixed_ip.to_string()),
                    description: None,
                },
            )
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Forbidden => e,
                ErrorKind::Conflict => as_bad_request(e),
                _ => AppError::bad_request(format!(
                    "Unable to associate floating IP {address} to fixed IP {fixed_ip} for instance {id}. Error: {}",
                    e.message
                ))
                .with_context(e.to_string()),
            })?;
        Ok(())
    }

    /// `removeFloatingIp`: unmaps `address`, which must be mapped to this
    /// server (else 409).
    pub async fn server_remove_floating_ip(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        address: IpAddr,
    ) -> AppResult<()> {
        self.server_get(ctx, id).await?;
        ctx.require_member()?;
        let fip = self.floating_ip_by_address(ctx, &address).await?;
        let on_server = match &fip.port_id {
            None => false,
            Some(p) => match self.network.port_get(ctx, p).await {
                Ok(port) => port.device_id == id.to_string(),
                Err(e) if e.kind == ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            },
        };
        if !on_server {
            return Err(AppError::conflict(format!(
                "Floating IP {address} is not associated with instance {id}."
            )));
        }
        self.network
            .floating_ip_update(
                ctx,
                &fip.id,
                FloatingIpUpdate {
                    port_id: Some(None),
                    fixed_ip_address: None,
                    description: None,
                },
            )
            .await?;
        Ok(())
    }
}

fn as_bad_request(e: AppError) -> AppError {
    let ctx = e.to_string();
    AppError::bad_request(e.message).with_context(ctx)
}
