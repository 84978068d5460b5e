//! Nova's `addFixedIp` / `removeFixedIp` server actions (multinic; gone from 2.44),
//! as Nova serves them with Neutron: one more address from the network's subnets on
//! the server's port on that network, or one address taken off the port that holds
//! it. The port is updated with the caller's rights, so Neutron's checks (a subnet
//! out of addresses, the owner) apply; the network service converges the host.

use std::net::IpAddr;

use oxistack_model::{AppError, AppResult, AuthContext, ServerId};
use oxistack_network::ports::{FixedIpRequest, PortUpdate};
use oxistack_store::network::FixedIpRec;

use crate::Compute;

fn keep(ips: &[FixedIpRec], drop: Option<IpAddr>) -> Vec<FixedIpRequest> {
    ips.iter()
        .filter(|f| Some(f.ip_address) != drop)
        .map(|f| FixedIpRequest {
            subnet_id: Some(f.subnet_id.to_string()),
            ip_address: Some(f.ip_address.to_string()),
        })
        .collect()
}

impl Compute {
    /// `addFixedIp {"networkId"}`: the first subnet of the network that still has
    /// an address gives one to the server's port on it (Nova tries them in turn).
    pub async fn server_add_fixed_ip(
        &self,
        ctx: &AuthContext,
        sid: &ServerId,
        network_id: &str,
    ) -> AppResult<()> {
        let server = self.server_get(ctx, sid).await?;
        let not_attached = || {
            AppError::bad_request(format!(
                "Network {network_id} could not be found for instance {}.",
                server.id
            ))
        };
        let ports = self.network.server_ports(sid).await?;
        let port = ports
            .iter()
            .find(|p| p.network_id.to_string() == network_id)
            .ok_or_else(not_attached)?;
        let current = self.network.port_get(ctx, &port.port_id).await?;
        let subnets = self.store.subnets_of_network(&current.network_id).await?;
        let mut last = None;
        for s in &subnets {
            let mut ips = keep(&current.fixed_ips, None);
            ips.push(FixedIpRequest {
                subnet_id: Some(s.id.to_string()),
                ip_address: None,
            });
            let update = PortUpdate {
                fixed_ips: Some(ips),
                ..PortUpdate::default()
            };
            match self.network.port_update(ctx, &port.port_id, update).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => AppError::bad_request(format!(
                "Error adding fixed IP to instance {}: {}",
                server.id, e.message
            )),
            None => not_attached(),
        })
    }

    /// `removeFixedIp {"address"}`: the address leaves the server's port holding it.
    pub async fn server_remove_fixed_ip(
        &self,
        ctx: &AuthContext,
        sid: &ServerId,
        address: IpAddr,
    ) -> AppResult<()> {
        let server = self.server_get(ctx, sid).await?;
        let ports = self.network.server_ports(sid).await?;
        let port = ports
            .iter()
            .find(|p| p.fixed_ips.contains(&address))
            .ok_or_else(|| {
                AppError::bad_request(format!(
                    "Instance {} doesn't have fixed IP '{address}'.",
                    server.id
                ))
            })?;
        let current = self.network.port_get(ctx, &port.port_id).await?;
        let update = PortUpdate {
            fixed_ips: Some(keep(&current.fixed_ips, Some(address))),
            ..PortUpdate::default()
        };
        self.network
            .port_update(ctx, &port.port_id, update)
            .await
            .map(drop)
    }
}
