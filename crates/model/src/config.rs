//! The cloud's settings, as plain data. They come from flags, environment
//! variables and `DIR/oxistack.toml` (the binary merges them; see
//! docs/configuration.md, the one place where every setting is documented).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the API listens on.
    pub listen: String,
    /// Base URL clients use to reach the API (catalog endpoints are built on
    /// it). Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// This host's name: the compute host and its resource provider.
    /// Defaults to the machine's hostname.
    pub host: Option<String>,
    /// Keystone region of every catalog endpoint.
    pub region: String,
    /// Token lifetime in seconds.
    pub token_lifetime_secs: i64,
    /// Placement allocation ratios for VCPU, MEMORY_MB, DISK_GB.
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    /// Host resources reserved for the host itself.
    pub reserved_host_memory_mb: i64,
    pub reserved_host_disk_gb: i64,
    /// The availability zone of this host's servers.
    pub availability_zone: String,
    /// Default per-project quotas.
    pub quota_instances: i64,
    pub quota_cores: i64,
    pub quota_ram_mb: i64,
    pub quota_key_pairs: i64,
    pub quota_metadata_items: i64,
    /// Largest image upload accepted, in bytes.
    pub image_size_cap: i64,
    /// Fake driver: how many vCPUs, MB of RAM and GB of disk the host reports.
    /// `None` reads the real host.
    pub host_vcpus: Option<i64>,
    pub host_memory_mb: Option<i64>,
    pub host_disk_gb: Option<i64>,
    /// Seconds between power-state syncs.
    pub power_sync_interval_secs: u64,
    /// The VXLAN VNIs tenant networks get, inclusive.
    pub vxlan_vni_min: u32,
    pub vxlan_vni_max: u32,
    /// The external network `public` made at first start: its Linux bridge
    /// (never linked to a physical interface), subnet, gateway and the pool
    /// floating IPs come from.
    pub public_bridge: String,
    pub public_cidr: String,
    pub public_gateway: String,
    pub public_pool_start: String,
    pub public_pool_end: String,
    /// Seconds between runs of the network datapath reconciler.
    pub network_reconcile_interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            host: None,
            region: "RegionOne".into(),
            token_lifetime_secs: 3600,
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            reserved_host_memory_mb: 512,
            reserved_host_disk_gb: 0,
            availability_zone: "nova".into(),
            quota_instances: 10,
            quota_cores: 20,
            quota_ram_mb: 51200,
            quota_key_pairs: 100,
            quota_metadata_items: 128,
            image_size_cap: 1 << 40,
            host_vcpus: None,
            host_memory_mb: None,
            host_disk_gb: None,
            power_sync_interval_secs: 10,
            vxlan_vni_min: 1000,
            vxlan_vni_max: 9999,
            public_bridge: "br-public".into(),
            public_cidr: "172.24.4.0/24".into(),
            public_gateway: "172.24.4.1".into(),
            public_pool_start: "172.24.4.10".into(),
            public_pool_end: "172.24.4.250".into(),
            network_reconcile_interval_secs: 30,
        }
    }
}

impl Settings {
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}
