//! Hypervisors and compute services, as Nova's admin APIs show them: one
//! per host agent, with its reported capacity, acceleration and usage.

use oxistack_model::{AppError, AppResult, AuthContext};
use oxistack_store::hosts::HostRecord;

use crate::Compute;

#[derive(Debug, Clone)]
pub struct Hypervisor {
    pub host: HostRecord,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub local_gb: i64,
    pub vcpus_used: i64,
    pub memory_mb_used: i64,
    pub local_gb_used: i64,
    pub running_vms: i64,
    /// `kvm` or `tcg` (or `none` for the fake driver).
    pub accel: String,
    /// E.g. the TCG fallback warning.
    pub warnings: Vec<String>,
}

impl Compute {
    pub async fn hypervisors(&self, ctx: &AuthContext) -> AppResult<Vec<Hypervisor>> {
        ctx.require_admin()?;
        let mut out = Vec::new();
        for host in self.store.host_list().await? {
            let servers = self.store.servers_on_host(&host.name).await?;
            let f = &host.facts;
            let int = |k: &str| f.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
            out.push(Hypervisor {
                vcpus: int("vcpus"),
                memory_mb: int("memory_mb"),
                local_gb: int("disk_gb"),
                vcpus_used: servers.iter().map(|s| s.flavor.vcpus).sum(),
                memory_mb_used: servers.iter().map(|s| s.flavor.ram_mb).sum(),
                local_gb_used: servers
                    .iter()
                    .map(|s| s.flavor.disk_gb + s.flavor.ephemeral_gb)
                    .sum(),
                running_vms: servers.len() as i64,
                accel: f
                    .get("accel")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                warnings: f
                    .get("warnings")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|w| w.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                host,
            });
        }
        Ok(out)
    }

    pub async fn hypervisor(&self, ctx: &AuthContext, id: &str) -> AppResult<Hypervisor> {
        self.hypervisors(ctx)
            .await?
            .into_iter()
            .find(|h| h.host.seq.to_string() == id || h.host.id == id)
            .ok_or_else(|| {
                AppError::not_found(format!("Hypervisor with ID '{id}' could not be found."))
            })
    }
}
