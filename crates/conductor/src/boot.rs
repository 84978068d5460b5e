//! The boot saga: claim resources on a host, build the instance there, mark
//! the server ACTIVE. A failure anywhere unwinds (the instance is destroyed,
//! the allocations released) and leaves the server in ERROR with a fault
//! that says why, never stuck in BUILD.
//!
//! Steps: `claim` (scheduler) → `spawn` (agent) → `finish` (store).

use async_trait::async_trait;
use oxistack_bus::{ImageSpec, InstanceSpec};
use oxistack_model::server_state::{PowerState, TaskState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, ConsumerId, ErrorKind, Scope, ServerId};
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
}

pub fn record(params: &BootParams) -> AppResult<SagaRecord> {
    Ok(crate::saga::new_record(
        KIND,
        &params.server_id.to_string(),
        serde_json::to_value(params)?,
    ))
}

pub struct BootSaga;

fn params(v: &Value) -> AppResult<BootParams> {
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

fn spec(server: &Server, image: &ImageSpec) -> InstanceSpec {
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
    }
}

#[async_trait]
impl SagaKind<Conductor> for BootSaga {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn steps(&self) -> &'static [&'static str] {
        &["claim", "spawn", "finish"]
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
                c.bus.agent(&host)?.spawn(spec(&server, &p.image)).await?;
                Ok(Value::Null)
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
