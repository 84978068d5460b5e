//! Interface attachments (Nova's os-interface): the ports of a server, one
//! more (a user's port, or a new one on a network), one less.
//!
//! Requests are checked here, with the caller's rights, so a bad one is
//! answered at once and leaves nothing behind: the server must exist and be
//! ACTIVE or SHUTOFF with no task running (Nova also allows PAUSED, which
//! OxiStack does not serve), a port must be the caller's and free, a network
//! visible to the caller. Then the conductor's saga does the work
//! (`oxistack_conductor::interface`). An attach waits for it and answers
//! with the port (200), or with the error it failed with; a detach answers
//! 202 at once, as Nova's does.

use std::net::IpAddr;

use oxistack_conductor::interface::{self, AttachParams, DetachParams};
use oxistack_model::server_state::VmState;
use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, NetworkId, PortId, ServerId};
use oxistack_network::servers::RequestedNic;
use oxistack_store::compute::Server;
use oxistack_store::network::{FixedIpRec, Port};

use crate::Compute;

/// What an attach asks for (Nova's `interfaceAttachment`): a port, or a
/// network with an optional fixed IP, or neither (the one network
/// available to the project).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub port_id: Option<PortId>,
    pub net_id: Option<NetworkId>,
    pub fixed_ip: Option<IpAddr>,
}

/// One attached port, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAttachment {
    pub port_id: PortId,
    pub net_id: NetworkId,
    pub mac_addr: String,
    /// The port's status (`ACTIVE`, `DOWN`, …).
    pub port_state: String,
    pub fixed_ips: Vec<FixedIpRec>,
}

impl From<&Port> for InterfaceAttachment {
    fn from(p: &Port) -> Self {
        InterfaceAttachment {
            port_id: p.id,
            net_id: p.network_id,
            mac_addr: p.mac_address.clone(),
            port_state: p.status.clone(),
            fixed_ips: p.fixed_ips.clone(),
        }
    }
}

/// Nova's answer for an action refused in the server's state.
fn invalid_state(action: &str, s: &Server) -> AppError {
    let (attr, state) = match s.task_state {
        Some(t) => ("task_state", t.as_str()),
        None => ("vm_state", s.vm_state.as_str()),
    };
    AppError::conflict(format!(
        "Cannot '{action}' instance {} while it is in {attr} {state}",
        s.id
    ))
}

impl Compute {
    /// The server, if the caller may change its interfaces now.
    async fn interface_target(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        action: &str,
    ) -> AppResult<Server> {
        ctx.require_member()?;
        let s = self.server_get(ctx, id).await?;
        if s.locked && !ctx.is_admin() {
            return Err(AppError::conflict(format!("Instance {id} is locked")));
        }
        if !matches!(s.vm_state, VmState::Active | VmState::Stopped) || s.task_state.is_some() {
            return Err(invalid_state(action, &s));
        }
        Ok(s)
    }

    /// The server's ports.
    pub async fn interface_list(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
    ) -> AppResult<Vec<InterfaceAttachment>> {
        self.server_get(ctx, id).await?;
        Ok(self
            .store
            .ports_of_device(&id.to_string())
            .await?
            .iter()
            .map(InterfaceAttachment::from)
            .collect())
    }

    /// One port of the server; a port it does not have is a 404.
    pub async fn interface_get(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        port_id: &PortId,
    ) -> AppResult<InterfaceAttachment> {
        self.server_get(ctx, id).await?;
        let port = self.network.port_get(ctx, port_id).await?;
        if port.device_id != id.to_string() {
            return Err(AppError::not_found(format!(
                "Instance {id} does not have a port with id {port_id}"
            )));
        }
        Ok(InterfaceAttachment::from(&port))
    }

    /// Attaches a port (or a new port on a network) and waits until the
    /// NIC is plugged; answers with the port.
    pub async fn interface_attach(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        req: AttachRequest,
    ) -> AppResult<InterfaceAttachment> {
        let server = self.interface_target(ctx, id, "attach_interface").await?;
        if req.port_id.is_some() && req.net_id.is_some() {
            return Err(AppError::bad_request(
                "Must not input both network_id and port_id",
            ));
        }
        if req.fixed_ip.is_some() && req.net_id.is_none() {
            return Err(AppError::bad_request(
                "Must input network_id when request IP address",
            ));
        }
        let (nic, port_id) = match (req.port_id, req.net_id) {
            (Some(port_id), _) => {
                let port = self.network.port_get(ctx, &port_id).await?;
                if !port.device_id.is_empty() {
                    return Err(AppError::conflict(format!(
                        "Port {port_id} is still in use."
                    )));
                }
                (RequestedNic::Port(port_id), port_id)
            }
            (None, Some(network_id)) => {
                self.network.network_get(ctx, &network_id).await?;
                let nic = RequestedNic::Network {
                    network_id,
                    fixed_ip: req.fixed_ip,
                };
                (nic, PortId::new())
            }
            (None, None) => {
                let network_id = self
                    .network
                    .auto_network(&AuthContext::acting_for(server.project_id, server.user_id))
                    .await
                    .map_err(|e| match e.kind {
                        ErrorKind::BadRequest => AppError::bad_request(format!(
                            "No specific network was requested and none are available for project '{}'.",
                            server.project_id
                        )),
                        ErrorKind::Conflict => AppError::bad_request(
                            "Multiple possible networks found, use a Network ID to be more specific.",
                        ),
                        _ => e,
                    })?;
                let nic = RequestedNic::Network {
                    network_id,
                    fixed_ip: None,
                };
                (nic, PortId::new())
            }
        };
        let rec = interface::attach_record(&AttachParams {
            server_id: *id,
            nic: nic.clone(),
            port_id,
        })?;
        if let Err(e) = self.conductor.start_and_wait(rec).await? {
            return Err(attach_error(id, &nic, e));
        }
        let port = self.network.port_get(ctx, &port_id).await?;
        Ok(InterfaceAttachment::from(&port))
    }

    /// Starts the detach of a port the server has (202: the NIC leaves the
    /// guest and the port is released in the background).
    pub async fn interface_detach(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        port_id: &PortId,
    ) -> AppResult<()> {
        self.interface_target(ctx, id, "detach_interface").await?;
        let attached = self
            .store
            .ports_of_device(&id.to_string())
            .await?
            .iter()
            .any(|p| p.id == *port_id);
        if !attached {
            return Err(AppError::not_found(format!(
                "Port {port_id} is not attached"
            )));
        }
        self.conductor
            .start(interface::detach_record(&DetachParams {
                server_id: *id,
                port_id: *port_id,
            })?)
            .await?;
        Ok(())
    }
}

/// The answer for an attach that failed, as Nova gives it: the network
/// service's refusals keep their status (a fixed IP in use is a 409, a
/// port quota a 403…), no address left is a 400, and a failure of the host
/// is Nova's `InterfaceAttachFailed` (500).
fn attach_error(id: &ServerId, nic: &RequestedNic, e: AppError) -> AppError {
    match (e.kind, e.code) {
        (ErrorKind::Internal | ErrorKind::Unavailable, _) => AppError::new(
            ErrorKind::Internal,
            format!("Failed to attach network adapter device to {id}"),
        )
        .with_context(e.to_string()),
        (_, Some("IpAddressGenerationFailure")) => {
            let net = match nic {
                RequestedNic::Network { network_id, .. } => network_id.to_string(),
                _ => String::new(),
            };
            AppError::bad_request(format!(
                "No fixed IP addresses available for network: {net}"
            ))
        }
        _ => e,
    }
}
