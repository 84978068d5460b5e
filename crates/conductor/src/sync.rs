//! The power-state reconciler: compares each host's instances with the
//! servers recorded on it and corrects the difference, as Nova's
//! `_sync_power_states` does:
//! - an ACTIVE server whose guest is off, crashed or gone becomes SHUTOFF;
//! - a SHUTOFF server whose guest runs is powered off;
//! - an instance on a host with no live server record (deleted while the
//!   agent was down) is destroyed.
//!
//! Servers with a task in progress are left to their saga.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxistack_bus::PowerCommand;
use oxistack_model::server_state::{PowerState, VmState};
use oxistack_model::{AppResult, ServerId};
use oxistack_store::compute::ServerUpdate;

use crate::Conductor;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub checked: usize,
    pub marked_shutoff: Vec<ServerId>,
    pub powered_off: Vec<ServerId>,
    pub orphans_destroyed: Vec<ServerId>,
    pub errors: Vec<String>,
}

impl Conductor {
    pub async fn sync_power_states(&self) -> AppResult<SyncReport> {
        let mut report = SyncReport::default();
        for host in self.bus.hosts() {
            if let Err(e) = self.sync_host(&host, &mut report).await {
                report.errors.push(format!("{host}: {}", e.message));
            }
        }
        let summary = format!(
            "checked {}, marked shutoff {}, powered off {}, orphans destroyed {}, errors {}",
            report.checked,
            report.marked_shutoff.len(),
            report.powered_off.len(),
            report.orphans_destroyed.len(),
            report.errors.len()
        );
        self.store
            .reconciler_report("power_sync", report.errors.is_empty(), &summary)
            .await?;
        Ok(report)
    }

    async fn sync_host(&self, host: &str, report: &mut SyncReport) -> AppResult<()> {
        let agent = self.bus.agent(host)?;
        let on_host: HashMap<ServerId, PowerState> = agent
            .instances()
            .await?
            .into_iter()
            .map(|i| (i.server_id, i.power_state))
            .collect();
        let recorded = self.store.servers_on_host(host).await?;
        for s in &recorded {
            report.checked += 1;
            if s.task_state.is_some() {
                continue;
            }
            let actual = on_host.get(&s.id).copied().unwrap_or(PowerState::NoState);
            match s.vm_state {
                VmState::Active if actual != PowerState::Running => {
                    if on_host.contains_key(&s.id) {
                        agent.power(s.id, PowerCommand::Stop).await?;
                    }
                    let changed = self
                        .store
                        .server_update_state(
                            &s.id,
                            Some(s.generation),
                            &ServerUpdate {
                                vm_state: Some(VmState::Stopped),
                                power_state: Some(if actual == PowerState::NoState {
                                    PowerState::NoState
                                } else {
                                    PowerState::Shutdown
                                }),
                                ..Default::default()
                            },
                        )
                        .await?;
                    if changed {
                        tracing::warn!(server_id = %s.id, ?actual, "guest is not running: server marked SHUTOFF");
                        report.marked_shutoff.push(s.id);
                    }
                }
                VmState::Stopped if actual == PowerState::Running => {
                    agent.power(s.id, PowerCommand::Stop).await?;
                    tracing::warn!(server_id = %s.id, "guest of a stopped server was running: powered off");
                    report.powered_off.push(s.id);
                }
                _ if s.power_state != actual
                    && matches!(s.vm_state, VmState::Active | VmState::Stopped) =>
                {
                    self.store
                        .server_update_state(
                            &s.id,
                            Some(s.generation),
                            &ServerUpdate {
                                power_state: Some(actual),
                                ..Default::default()
                            },
                        )
                        .await?;
                }
                _ => {}
            }
        }
        for id in on_host.keys() {
            if !recorded.iter().any(|s| s.id == *id) {
                agent.destroy(*id).await?;
                tracing::warn!(server_id = %id, host, "destroyed an instance with no live server record");
                report.orphans_destroyed.push(*id);
            }
        }
        Ok(())
    }

    /// Runs the power sync every `interval` until the process stops.
    pub fn spawn_power_sync(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match me.sync_power_states().await {
                    Ok(r) if !r.errors.is_empty() => {
                        tracing::warn!(errors = ?r.errors, "power sync had errors")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "power sync failed"),
                }
            }
        })
    }
}
