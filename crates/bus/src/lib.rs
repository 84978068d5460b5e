//! The bus: typed messages from the conductor to the agent that owns a host.
//!
//! Roles never reach into each other's state: the conductor asks a host's
//! agent to spawn, power or destroy an instance through [`AgentApi`], and the
//! agent answers. The in-process transport ([`InProcessBus`]) calls the local
//! agent directly; an AMQP transport for many hosts implements the same
//! trait (see docs/design/0001-architecture.md).

pub mod metadata;
pub mod network;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use oxistack_model::server_state::PowerState;
use oxistack_model::{AppError, AppResult, ImageId, ProjectId, ServerId, UserId};
use serde::{Deserialize, Serialize};

/// The image an instance boots from, as the agent needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageSpec {
    pub id: ImageId,
    pub disk_format: String,
    pub size: i64,
    /// sha512 of the data, to verify the host's cached copy.
    pub os_hash_value: Option<String>,
    /// Image properties (hw_machine_type, hw_disk_bus, os_type, …).
    pub properties: BTreeMap<String, String>,
}

/// Everything a host needs to build one instance. Built once by the
/// conductor from the server record, so a replayed spawn sees the same spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceSpec {
    pub server_id: ServerId,
    pub name: String,
    pub hostname: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap_mb: i64,
    pub image: ImageSpec,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    /// Base64, as the API received it.
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: String,
    pub launch_index: i64,
    /// The server's NICs, in order (empty for `networks: none`).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
}

/// One NIC of an instance: a Neutron port plugged through a tap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NicSpec {
    pub port_id: oxistack_model::PortId,
    pub network_id: oxistack_model::NetworkId,
    pub mac: String,
    /// The tap QEMU attaches to (the network role plugs it into the bridge).
    pub tap: String,
    pub mtu: u32,
    pub fixed_ips: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerCommand {
    Start,
    /// ACPI shutdown, then power off after a grace period.
    Stop,
    /// ACPI reboot request (falls back to reset after a grace period).
    RebootSoft,
    /// Reset.
    RebootHard,
}

/// An instance as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInstance {
    pub server_id: ServerId,
    pub power_state: PowerState,
}

/// A host's capacity and what its agent knows about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFacts {
    pub host: String,
    pub virt_type: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    /// e.g. "kvm" or "tcg".
    pub accel: String,
    pub warnings: Vec<String>,
}

/// What the conductor can ask of a host's agent. Every call is idempotent:
/// spawning an instance that exists, or destroying one that is gone, succeeds.
#[async_trait]
pub trait AgentApi: Send + Sync {
    async fn facts(&self) -> AppResult<HostFacts>;
    async fn spawn(&self, spec: InstanceSpec) -> AppResult<()>;
    async fn destroy(&self, id: ServerId) -> AppResult<()>;
    async fn power(&self, id: ServerId, cmd: PowerCommand) -> AppResult<()>;
    /// Every instance present on the host.
    async fn instances(&self) -> AppResult<Vec<HostInstance>>;
    /// The serial console log; the last `lines` lines when given.
    async fn console_output(&self, id: ServerId, lines: Option<usize>) -> AppResult<String>;
    /// Plugs one more NIC into the instance: hot-plugged when the guest
    /// runs, and recorded in the instance's spec either way, so a restart
    /// or a relaunch keeps it. The NIC's tap exists (the datapath was
    /// converged first). Idempotent: a NIC already plugged is left alone.
    async fn attach_nic(&self, id: ServerId, nic: NicSpec) -> AppResult<()>;
    /// Unplugs the NIC of `port_id` (waiting, within a bound, for the guest
    /// to let go of it) and removes it from the instance's spec.
    /// Idempotent: a NIC (or an instance) that is not there is fine.
    async fn detach_nic(&self, id: ServerId, port_id: oxistack_model::PortId) -> AppResult<()>;
}

/// Routes calls to the agent of a named host.
pub trait Bus: Send + Sync {
    fn agent(&self, host: &str) -> AppResult<Arc<dyn AgentApi>>;
    /// The network role of a host's agent.
    fn network_agent(&self, host: &str) -> AppResult<Arc<dyn network::NetworkAgentApi>>;
    fn hosts(&self) -> Vec<String>;
}

/// The all-in-one transport: agents live in this process.
#[derive(Default)]
pub struct InProcessBus {
    agents: RwLock<HashMap<String, Arc<dyn AgentApi>>>,
    network_agents: RwLock<HashMap<String, Arc<dyn network::NetworkAgentApi>>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, host: &str, agent: Arc<dyn AgentApi>) {
        self.agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), agent);
    }

    pub fn register_network(&self, host: &str, agent: Arc<dyn network::NetworkAgentApi>) {
        self.network_agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), agent);
    }
}

impl Bus for InProcessBus {
    fn agent(&self, host: &str) -> AppResult<Arc<dyn AgentApi>> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .ok_or_else(|| AppError::unavailable(format!("Compute host {host} is not available.")))
    }

    fn network_agent(&self, host: &str) -> AppResult<Arc<dyn network::NetworkAgentApi>> {
        self.network_agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .ok_or_else(|| {
                AppError::unavailable(format!(
                    "The network agent of host {host} is not available."
                ))
            })
    }

    fn hosts(&self) -> Vec<String> {
        let mut h: Vec<String> = self
            .agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        h.sort();
        h
    }
}
