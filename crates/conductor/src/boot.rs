//! The boot saga: claim resources on a host, build the instance there, mark
//! the server ACTIVE. A failure anywhere unwinds (the instance is destroyed,
//! the allocations released) and leaves the server in ERROR with a fault
//! that says why, never stuck in BUILD.
//!
//! Steps: `claim` (scheduler) → `network` (ports allocated, bound to the
//! host, datapath converged so the taps exist) → `spawn` (agent) →
//! `finish` (store).

use async_trait::async_trait;
use oxistack_bus::{ImageSpec, InstanceSpec, NicSpec};
use oxistack_model::server_state::{PowerState, TaskState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ConsumerId, ErrorKind, Scope, ServerId};
use oxistack_network::ports::PortUpdate;
use oxistack_network::servers::{PortBinding, RequestedNic};
use oxistack_scheduler::ResourceRequest;
use oxistack_store::compute::{Fault, Server, ServerUpdate};
use oxistack_store::sagas::SagaRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::saga::SagaKind;
use crate::Conductor;

pub const KIND: &str = "boot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootParams {
    pub server_id: ServerId,
    pub image: ImageSpec,
    /// The NICs asked for; empty for `networks: none`.
    #[serde(default)]
    pub nics: Vec<RequestedNic>,
    /// Security group ids for the new ports; empty for the default group.
    #[serde(default)]
    pub security_groups: Vec<String>,
}

pub fn record(params: &BootParams) -> AppResult<SagaRecord> {
    Ok(crate::saga::new_record(
        KIND,
        &params.server_id.to_string(),
        serde_json::to_value(params)?,
    ))
}

pub struct BootSaga;

pub fn params(v: &Value) -> AppResult<BootParams> {
    serde_json::from_value(v.clone())
        .map_err(|e| AppError::internal(format!("boot saga params: {e}")))
}

fn host_of(outputs: &Value) -> Option<String> {
    outputs
        .get("claim")
        .and_then(|c| c.get("host"))
        .and_then(|h| h.as_str())
        .map(String::from)
}

pub fn nics_of(outputs: &Value) -> AppResult<Vec<NicSpec>> {
    match outputs.get("network") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| AppError::internal(format!("boot saga: network output: {e}"))),
    }
}

/// What the host needs to build `server` (and what its metadata says).
pub fn spec(server: &Server, image: &ImageSpec, nics: Vec<NicSpec>) -> InstanceSpec {
    InstanceSpec {
        server_id: server.id,
        name: server.name.clone(),
        hostname: server.hostname.clone(),
        project_id: server.project_id,
        user_id: server.user_id,
        vcpus: server.flavor.vcpus,
        memory_mb: server.flavor.ram_mb,
        root_gb: server.flavor.disk_gb,
        ephemeral_gb: server.flavor.ephemeral_gb,
        swap_mb: server.flavor.swap_mb,
        image: image.clone(),
        key_name: server.key_name.clone(),
        key_data: server.key_data.clone(),
        user_data: server.user_data.clone(),
        config_drive: server.config_drive,
        metadata: server.metadata.clone(),
        availability_zone: server.availability_zone.clone().unwrap_or_default(),
        launch_index: server.launch_index,
        nics,
    }
}

#[async_trait]
impl SagaKind<Conductor> for BootSaga {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn steps(&self) -> &'static [&'static str] {
        &["claim", "network", "spawn", "finish"]
    }

    async fn action(
        &self,
        c: &Conductor,
        step: &str,
        p: &Value,
        outputs: &Value,
    ) -> AppResult<Value> {
        let p = params(p)?;
        let server = c.store.server_get(Scope::All, &p.server_id, true).await?;
        if server.deleted || server.task_state == Some(TaskState::Deleting) {
            return Err(AppError::conflict(
                "The server was deleted while it was being built.",
            ));
        }
        match step {
            "claim" => {
                let req = ResourceRequest {
                    vcpus: server.flavor.vcpus,
                    memory_mb: server.flavor.ram_mb,
                    disk_gb: server.flavor.disk_gb
                        + server.flavor.ephemeral_gb
                        + (server.flavor.swap_mb + 1023) / 1024,
                };
                let host = c
                    .placement
                    .claim(
                        ConsumerId(p.server_id.as_uuid()),
                        server.project_id,
                        server.user_id,
                        req,
                    )
                    .await?;
                c.store
                    .server_update_state(
                        &p.server_id,
                        None,
                        &ServerUpdate {
                            host: Some(Some(host.clone())),
                            task_state: Some(Some(TaskState::Spawning)),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok(json!({ "host": host }))
            }
            "spawn" => {
                let host = host_of(outputs)
                    .ok_or_else(|| AppError::internal("boot saga: no host claimed"))?;
                let nics = nics_of(outputs)?;
                c.bus
                    .agent(&host)?
                    .spawn(spec(&server, &p.image, nics))
                    .await?;
                Ok(Value::Null)
            }
            "network" => {
                if p.nics.is_empty() {
                    return Ok(json!([]));
                }
                let host = host_of(outputs)
                    .ok_or_else(|| AppError::internal("boot saga: no host claimed"))?;
                let ctx = AuthContext::acting_for(server.project_id, server.user_id);
                let ports = c
                    .network
                    .allocate_ports_for_server(&ctx, &p.server_id, &p.nics, &host)
                    .await?;
                let mut nics = Vec::new();
                for port in &ports {
                    let created_here = !p.nics.contains(&RequestedNic::Port(port.port_id));
                    if created_here && !p.security_groups.is_empty() {
                        c.network
                            .port_update(
                                &ctx,
                                &port.port_id,
                                PortUpdate {
                                    security_groups: Some(Some(p.security_groups.clone())),
                                    ..Default::default()
                                },
                            )
                            .await?;
                    }
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
                    nics.push(crate::interface::nic_spec(port));
                }
                // The taps and bridges exist before QEMU opens them.
                c.network.converge(&c.bus, &host).await?;
                Ok(serde_json::to_value(nics)?)
            }
            "finish" => {
                c.store
                    .server_update_state(
                        &p.server_id,
                        None,
                        &ServerUpdate {
                            vm_state: Some(VmState::Active),
                            task_state: Some(None),
                            power_state: Some(PowerState::Running),
                            launched_at: Some(now()),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok(Value::Null)
            }
            other => Err(AppError::internal(format!(
                "boot saga: unknown step {other}"
            ))),
        }
    }

    async fn undo(&self, c: &Conductor, step: &str, p: &Value, outputs: &Value) -> AppResult<()> {
        let p = params(p)?;
        match step {
            "claim" => c.placement.release(ConsumerId(p.server_id.as_uuid())).await,
            "network" => {
                c.network.release_ports_for_server(&p.server_id).await?;
                if let Some(host) = host_of(outputs) {
                    c.network.converge(&c.bus, &host).await?;
                }
                Ok(())
            }
            "spawn" => match host_of(outputs) {
                Some(host) => c.bus.agent(&host)?.destroy(p.server_id).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn unwound(&self, c: &Conductor, p: &Value, error: &AppError) -> AppResult<()> {
        let p = params(p)?;
        let server = c.store.server_get(Scope::All, &p.server_id, true).await?;
        if server.deleted || server.task_state == Some(TaskState::Deleting) {
            // The delete saga waiting behind this one finishes the job.
            return Ok(());
        }
        let message = match error.kind {
            ErrorKind::NoValidHost => error.message.clone(),
            _ => format!(
                "Build of instance {} aborted: {}",
                p.server_id, error.message
            ),
        };
        c.store
            .server_add_fault(
                &p.server_id,
                &Fault {
                    code: if error.kind == ErrorKind::NoValidHost {
                        500
                    } else {
                        error.status() as i64
                    },
                    message,
                    details: error.context.clone().unwrap_or_default(),
                    created_at: now(),
                },
            )
            .await?;
        c.store
            .server_update_state(
                &p.server_id,
                None,
                &ServerUpdate {
                    vm_state: Some(VmState::Error),
                    task_state: Some(None),
                    power_state: Some(PowerState::NoState),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }
}
