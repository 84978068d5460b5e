//! Power actions (start, stop, soft and hard reboot) as a two-step saga, so
//! a crash in the middle never leaves a server stuck in a task state:
//! `power` (agent) → `finish` (store). A failure clears the task state and
//! records a fault; the power-state sync then reports what the host really
//! did.

use async_trait::async_trait;
use oxistack_bus::PowerCommand;
use oxistack_model::server_state::{PowerState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, Scope, ServerId};
use oxistack_store::compute::{Fault, ServerUpdate};
use oxistack_store::sagas::SagaRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::saga::SagaKind;
use crate::Conductor;

pub const KIND: &str = "power";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerParams {
    pub server_id: ServerId,
    pub command: PowerCommand,
}

pub fn record(p: &PowerParams) -> AppResult<SagaRecord> {
    Ok(crate::saga::new_record(
        KIND,
        &p.server_id.to_string(),
        serde_json::to_value(p)?,
    ))
}

pub struct PowerSaga;

fn params(v: &Value) -> AppResult<PowerParams> {
    serde_json::from_value(v.clone())
        .map_err(|e| AppError::internal(format!("power saga params: {e}")))
}

#[async_trait]
impl SagaKind<Conductor> for PowerSaga {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn steps(&self) -> &'static [&'static str] {
        &["power", "finish"]
    }

    async fn action(
        &self,
        c: &Conductor,
        step: &str,
        p: &Value,
        _outputs: &Value,
    ) -> AppResult<Value> {
        let p = params(p)?;
        match step {
            "power" => {
                let server = c.store.server_get(Scope::All, &p.server_id, false).await?;
                let host = server.host.ok_or_else(|| {
                    AppError::conflict("The server has no host: it was never built.")
                })?;
                c.bus.agent(&host)?.power(p.server_id, p.command).await?;
            }
            "finish" => {
                let (vm, power) = match p.command {
                    PowerCommand::Stop => (VmState::Stopped, PowerState::Shutdown),
                    _ => (VmState::Active, PowerState::Running),
                };
                c.store
                    .server_update_state(
                        &p.server_id,
                        None,
                        &ServerUpdate {
                            vm_state: Some(vm),
                            task_state: Some(None),
                            power_state: Some(power),
                            ..Default::default()
                        },
                    )
                    .await?;
            }
            other => {
                return Err(AppError::internal(format!(
                    "power saga: unknown step {other}"
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
        let p = params(p)?;
        c.store
            .server_add_fault(
                &p.server_id,
                &Fault {
                    code: error.status() as i64,
                    message: format!("{:?} failed: {}", p.command, error.message),
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
                    task_state: Some(None),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }
}
