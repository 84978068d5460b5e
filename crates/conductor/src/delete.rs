//! The delete saga: destroy the instance on its host, release its ports
//! (and converge the host's datapath), release its allocations, mark the
//! server deleted. Every step is idempotent and
//! forward-only (nothing can be un-destroyed): a step that fails for good
//! leaves the server in ERROR with a fault, and a later delete tries again.

use async_trait::async_trait;
use oxistack_model::server_state::{PowerState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, ConsumerId, Scope, ServerId};
use oxistack_store::compute::{Fault, ServerUpdate};
use oxistack_store::sagas::SagaRecord;
use serde_json::{json, Value};

use crate::saga::SagaKind;
use crate::Conductor;

pub const KIND: &str = "delete";

pub fn record(server_id: ServerId) -> SagaRecord {
    crate::saga::new_record(
        KIND,
        &server_id.to_string(),
        json!({ "server_id": server_id }),
    )
}

pub struct DeleteSaga;

fn server_id(p: &Value) -> AppResult<ServerId> {
    p.get("server_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| AppError::internal("delete saga: bad params"))
}

#[async_trait]
impl SagaKind<Conductor> for DeleteSaga {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn steps(&self) -> &'static [&'static str] {
        &["destroy", "release_ports", "release", "mark_deleted"]
    }

    async fn action(
        &self,
        c: &Conductor,
        step: &str,
        p: &Value,
        _outputs: &Value,
    ) -> AppResult<Value> {
        let id = server_id(p)?;
        match step {
            "destroy" => {
                let server = c.store.server_get(Scope::All, &id, true).await?;
                if let Some(host) = server.host {
                    c.bus.agent(&host)?.destroy(id).await?;
                }
            }
            "release_ports" => {
                let server = c.store.server_get(Scope::All, &id, true).await?;
                c.network.release_ports_for_server(&id).await?;
                if let Some(host) = server.host {
                    c.network.converge(&c.bus, &host).await?;
                }
            }
            "release" => c.placement.release(ConsumerId(id.as_uuid())).await?,
            "mark_deleted" => {
                c.store
                    .server_update_state(
                        &id,
                        None,
                        &ServerUpdate {
                            vm_state: Some(VmState::Deleted),
                            task_state: Some(None),
                            power_state: Some(PowerState::NoState),
                            terminated_at: Some(now()),
                            deleted: true,
                            ..Default::default()
                        },
                    )
                    .await?;
            }
            other => {
                return Err(AppError::internal(format!(
                    "delete saga: unknown step {other}"
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
        Ok(())
    }

    async fn unwound(&self, c: &Conductor, p: &Value, error: &AppError) -> AppResult<()> {
        let id = server_id(p)?;
        c.store
            .server_add_fault(
                &id,
                &Fault {
                    code: 500,
                    message: format!("Failed to delete the instance: {}", error.message),
                    details: error.context.clone().unwrap_or_default(),
                    created_at: now(),
                },
            )
            .await?;
        c.store
            .server_update_state(
                &id,
                None,
                &ServerUpdate {
                    vm_state: Some(VmState::Error),
                    task_state: Some(None),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }
}
