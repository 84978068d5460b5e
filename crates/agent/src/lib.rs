//! The agent: the roles that own a host's resources. Today the compute role
//! with its virt drivers; the network and storage roles come next.
//!
//! The compute role answers the conductor's calls ([`oxistack_bus::AgentApi`])
//! by driving a [`VirtDriver`]. Drivers are narrow and idempotent; the fake
//! driver implements the same trait as QEMU's so the whole control plane can
//! run, be tested and be benchmarked without virtualisation.

pub mod fake;
pub mod network;
pub mod qemu;

use std::sync::Arc;

use async_trait::async_trait;
use oxistack_bus::{AgentApi, HostFacts, HostInstance, InstanceSpec, NicSpec, PowerCommand};
use oxistack_model::{AppResult, PortId, ServerId};

/// A hypervisor, as the compute role sees it.
#[async_trait]
pub trait VirtDriver: Send + Sync {
    /// The host's capacity and acceleration.
    async fn facts(&self) -> AppResult<HostFacts>;
    /// Builds and starts the instance. Idempotent: an instance that already
    /// exists is left as it is.
    async fn spawn(&self, spec: &InstanceSpec) -> AppResult<()>;
    /// Stops and removes every trace of the instance. Idempotent.
    async fn destroy(&self, id: ServerId) -> AppResult<()>;
    async fn power(&self, id: ServerId, cmd: PowerCommand) -> AppResult<()>;
    async fn instances(&self) -> AppResult<Vec<HostInstance>>;
    async fn console_output(&self, id: ServerId, lines: Option<usize>) -> AppResult<String>;
    /// Plugs a NIC in (hot-plug when the guest runs) and records it in the
    /// instance's spec. Idempotent.
    async fn attach_nic(&self, id: ServerId, nic: &NicSpec) -> AppResult<()>;
    /// Unplugs the NIC of a port and removes it from the spec. Idempotent.
    async fn detach_nic(&self, id: ServerId, port_id: PortId) -> AppResult<()>;
}

/// The compute role of one host.
pub struct ComputeAgent {
    driver: Arc<dyn VirtDriver>,
}

impl ComputeAgent {
    pub fn new(driver: Arc<dyn VirtDriver>) -> Self {
        ComputeAgent { driver }
    }
}

#[async_trait]
impl AgentApi for ComputeAgent {
    async fn facts(&self) -> AppResult<HostFacts> {
        self.driver.facts().await
    }

    async fn spawn(&self, spec: InstanceSpec) -> AppResult<()> {
        tracing::info!(server_id = %spec.server_id, "spawning instance");
        self.driver.spawn(&spec).await
    }

    async fn destroy(&self, id: ServerId) -> AppResult<()> {
        tracing::info!(server_id = %id, "destroying instance");
        self.driver.destroy(id).await
    }

    async fn power(&self, id: ServerId, cmd: PowerCommand) -> AppResult<()> {
        tracing::info!(server_id = %id, ?cmd, "power action");
        self.driver.power(id, cmd).await
    }

    async fn instances(&self) -> AppResult<Vec<HostInstance>> {
        self.driver.instances().await
    }

    async fn console_output(&self, id: ServerId, lines: Option<usize>) -> AppResult<String> {
        self.driver.console_output(id, lines).await
    }

    async fn attach_nic(&self, id: ServerId, nic: NicSpec) -> AppResult<()> {
        tracing::info!(server_id = %id, port_id = %nic.port_id, tap = %nic.tap, "attaching NIC");
        self.driver.attach_nic(id, &nic).await
    }

    async fn detach_nic(&self, id: ServerId, port_id: PortId) -> AppResult<()> {
        tracing::info!(server_id = %id, port_id = %port_id, "detaching NIC");
        self.driver.detach_nic(id, port_id).await
    }
}

/// The last `n` lines of a console log (all of it when `n` is None), as
/// Nova cuts them: the log split on `\n`, the last `n` pieces joined again.
/// A log ending in a newline thus ends in an empty piece, which counts,
/// exactly as clients (and Tempest) count the lines of the answer.
pub fn tail_lines(log: &str, n: Option<usize>) -> String {
    match n {
        None => log.to_string(),
        Some(n) => {
            let pieces: Vec<&str> = log.split('\n').collect();
            pieces[pieces.len().saturating_sub(n)..].join("\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tail_lines;

    #[test]
    fn tail_keeps_the_last_lines_as_nova_counts_them() {
        // "a\nb\nc\n" is four pieces: a, b, c and the empty one after the last newline.
        assert_eq!(tail_lines("a\nb\nc\n", Some(3)), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc\n", Some(3)).split('\n').count(), 3);
        assert_eq!(tail_lines("a\nb\nc", Some(2)), "b\nc");
        assert_eq!(tail_lines("a\nb\nc\n", Some(9)), "a\nb\nc\n");
        assert_eq!(tail_lines("a\nb\n", None), "a\nb\n");
        assert_eq!(tail_lines("", Some(3)), "");
    }
}
