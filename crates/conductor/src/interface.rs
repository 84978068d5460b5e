//! Interface attach and detach (Nova's os-interface): one NIC more, or one
//! less, for a built server, with the guest running (hot-plug) or stopped.
//!
//! Attach: `port` (the user's port bound to the server's host, or a new
//! port on a network, made with an id chosen when the saga was recorded so a
//! replay finds it; then the host's datapath converged, so the tap exists on
//! the network's bridge before QEMU opens it) → `plug` (the agent hot-plugs
//! the NIC and records it in the instance's spec, so a restart keeps it). A
//! failure undoes both, newest first: the NIC unplugged, the port deleted
//! (made here) or unbound (the user's), the datapath converged again. The
//! server's state does not change either way; the API waits for the saga
//! and answers with its outcome, as Nova's synchronous attach does.
//!
//! Detach: `unplug` (agent: the NIC out of the guest and its spec) →
//! `release` (the port deleted if it was made for the server, else unbound
//! and kept; the datapath converged, which removes the tap). Forward-only,
//! like delete: nothing can be un-released, every step is idempotent, and a
//! step that fails for good leaves a fault with the port still attached, so
//! a later detach tries again.

use async_trait::async_trait;
use oxistack_bus::NicSpec;
use oxistack_model::server_state::TaskState;
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, PortId, Scope, ServerId};
use oxistack_network::servers::{PortBinding, PortInfo, RequestedNic};
use oxistack_network::Network;
use oxistack_store::compute::{Fault, Server};
use oxistack_store::sagas::SagaRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::saga::SagaKind;
use crate::Conductor;

pub const ATTACH: &str = "interface_attach";
pub const DETACH: &str = "interface_detach";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachParams {
    pub server_id: ServerId,
    /// The user's port, or a network with an optional fixed IP (`auto` is
    /// resolved before the saga is recorded).
    pub nic: RequestedNic,
    /// The port's id: the user's port, or the id the new port gets.
    pub port_id: PortId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachParams {
    pub server_id: ServerId,
    pub port_id: PortId,
}

pub fn attach_record(p: &AttachParams) -> AppResult<SagaRecord> {
    Ok(crate::saga::new_record(
        ATTACH,
        &p.server_id.to_string(),
        serde_json::to_value(p)?,
    ))
}

pub fn detach_record(p: &DetachParams) -> AppResult<SagaRecord> {
    Ok(crate::saga::new_record(
        DETACH,
        &p.server_id.to_string(),
        serde_json::to_value(p)?,
    ))
}

fn params<T: serde::de::DeserializeOwned>(kind: &str, v: &Value) -> AppResult<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| AppError::internal(format!("{kind} saga params: {e}")))
}

/// The NIC the agent plugs for a port.
pub fn nic_spec(port: &PortInfo) -> NicSpec {
    NicSpec {
        port_id: port.port_id,
        network_id: port.network_id,
        mac: port.mac.clone(),
        tap: port.tap.clone(),
        mtu: port.mtu,
        fixed_ips: port.fixed_ips.clone(),
    }
}

/// The NICs a server has now, in the order its guest sees them: those it
/// was booted with (`booted`) that it still has, then those attached since.
/// What the metadata service describes.
pub async fn current_nics(
    network: &Network,
    server_id: &ServerId,
    booted: &[NicSpec],
) -> AppResult<Vec<NicSpec>> {
    let mut ports = network.server_ports(server_id).await?;
    ports.sort_by_key(|p| {
        booted
            .iter()
            .position(|n| n.port_id == p.port_id)
            .unwrap_or(usize::MAX)
    });
    Ok(ports.iter().map(nic_spec).collect())
}

/// The server, refused when it is going away (its delete saga waits behind
/// this one and releases whatever is attached).
async fn live_server(c: &Conductor, id: &ServerId) -> AppResult<Server> {
    let server = c.store.server_get(Scope::All, id, true).await?;
    if server.deleted || server.task_state == Some(TaskState::Deleting) {
        return Err(AppError::conflict(format!(
            "Instance {id} is being deleted."
        )));
    }
    Ok(server)
}

fn host_of(server: &Server) -> AppResult<String> {
    server.host.clone().ok_or_else(|| {
        AppError::conflict(format!(
            "Instance {} has no host: it was never built.",
            server.id
        ))
    })
}

/// A fault for the operator; the server's state is left as it is.
async fn record_fault(c: &Conductor, id: &ServerId, message: String, error: &AppError) {
    let fault = Fault {
        code: error.status() as i64,
        message,
        details: match &error.context {
            Some(ctx) => format!("{}: {ctx}", error.message),
            None => error.message.clone(),
        },
        created_at: now(),
    };
    if let Err(e) = c.store.server_add_fault(id, &fault).await {
        tracing::warn!(server_id = %id, error = %e, "could not record the fault");
    }
}

pub struct AttachSaga;

#[async_trait]
impl SagaKind<Conductor> for AttachSaga {
    fn kind(&self) -> &'static str {
        ATTACH
    }

    fn steps(&self) -> &'static [&'static str] {
        &["port", "plug"]
    }

    async fn action(
        &self,
        c: &Conductor,
        step: &str,
        p: &Value,
        outputs: &Value,
    ) -> AppResult<Value> {
        let p: AttachParams = params(ATTACH, p)?;
        let server = live_server(c, &p.server_id).await?;
        let host = host_of(&server)?;
        match step {
            "port" => {
                let ctx = AuthContext::acting_for(server.project_id, server.user_id);
                let port = c
                    .network
                    .attach_port_for_server(&ctx, &p.server_id, &p.nic, p.port_id, &host)
                    .await?;
                c.network
                    .bind_port(
                        &port.port_id,
                        &PortBinding {
                            server_id: p.server_id,
                            host: host.clone(),
                            tap: port.tap.clone(),
                            hostname: Some(server.hostname.clone()),
                        },
                    )
                    .await?;
                // The tap exists, on the network's bridge, before QEMU opens it.
                c.network.converge(&c.bus, &host).await?;
                Ok(serde_json::to_value(nic_spec(&port))?)
            }
            "plug" => {
                let nic: NicSpec =
                    serde_json::from_value(outputs.get("port").cloned().unwrap_or(Value::Null))
                        .map_err(|e| {
                            AppError::internal(format!("attach saga: port output: {e}"))
                        })?;
                c.bus.agent(&host)?.attach_nic(p.server_id, nic).await?;
                Ok(Value::Null)
            }
            other => Err(AppError::internal(format!(
                "attach saga: unknown step {other}"
            ))),
        }
    }

    async fn undo(&self, c: &Conductor, step: &str, p: &Value, _outputs: &Value) -> AppResult<()> {
        let p: AttachParams = params(ATTACH, p)?;
        let server = c.store.server_get(Scope::All, &p.server_id, true).await?;
        match step {
            "port" => {
                c.network
                    .release_port_for_server(&p.server_id, &p.port_id)
                    .await?;
                if let Some(host) = &server.host {
                    c.network.converge(&c.bus, host).await?;
                }
                Ok(())
            }
            "plug" => match &server.host {
                Some(host) => c.bus.agent(host)?.detach_nic(p.server_id, p.port_id).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn unwound(&self, c: &Conductor, p: &Value, error: &AppError) -> AppResult<()> {
        let p: AttachParams = params(ATTACH, p)?;
        // A refused request (a port in use, no address left…) is the
        // caller's answer, not a fault of the server.
        if matches!(error.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            let message = format!("Failed to attach network adapter device to {}", p.server_id);
            record_fault(c, &p.server_id, message, error).await;
        }
        Ok(())
    }
}

pub struct DetachSaga;

#[async_trait]
impl SagaKind<Conductor> for DetachSaga {
    fn kind(&self) -> &'static str {
        DETACH
    }

    fn steps(&self) -> &'static [&'static str] {
        &["unplug", "release"]
    }

    async fn action(
        &self,
        c: &Conductor,
        step: &str,
        p: &Value,
        _outputs: &Value,
    ) -> AppResult<Value> {
        let p: DetachParams = params(DETACH, p)?;
        let server = c.store.server_get(Scope::All, &p.server_id, true).await?;
        match step {
            "unplug" => {
                if let Some(host) = &server.host {
                    c.bus
                        .agent(host)?
                        .detach_nic(p.server_id, p.port_id)
                        .await?;
                }
            }
            "release" => {
                c.network
                    .release_port_for_server(&p.server_id, &p.port_id)
                    .await?;
                if let Some(host) = &server.host {
                    c.network.converge(&c.bus, host).await?;
                }
            }
            other => {
                return Err(AppError::internal(format!(
                    "detach saga: unknown step {other}"
                )))
            }
        }
        Ok(Value::Null)
    }

    async fn undo(
        &self,
        _c: &Conductor,
        _step: &str,
        _p: &Value,
        _outputs: &Value,
    ) -> AppResult<()> {
        // Forward-only: what failed is retried by the next detach.
        Ok(())
    }

    async fn unwound(&self, c: &Conductor, p: &Value, error: &AppError) -> AppResult<()> {
        let p: DetachParams = params(DETACH, p)?;
        let message = format!(
            "Failed to detach network adapter device from {}",
            p.server_id
        );
        record_fault(c, &p.server_id, message, error).await;
        Ok(())
    }
}
