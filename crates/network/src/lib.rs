//! Neutron's application layer: networks, subnets, ports (with IPAM),
//! security groups, routers, floating IPs and quotas; the desired network
//! state of each host ([`Network::host_spec`]) and the reconciler that
//! pushes it to the host's agent; and the functions compute calls to give
//! servers their ports (see `servers`).
//!
//! Writes record intent in the store and answer at once. Every write that
//! changes the datapath wakes the reconciler ([`Network::kick`]), which
//! computes the host's spec from the store and hands it to the agent's
//! network role; the agent converges idempotently, so a missed wake-up is
//! repaired by the next periodic run. Design: docs/design/0010-neutron-api.md.

pub mod floating_ips;
pub mod host_spec;
pub mod ipam;
pub mod networks;
pub mod ports;
pub mod quotas;
pub mod routers;
pub mod security_groups;
pub mod servers;
pub mod subnets;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oxistack_bus::Bus;
use oxistack_model::config::Settings;
use oxistack_model::{AppError, AppResult, AuthContext, ProjectId, Scope};
use oxistack_store::network::{Counted, QuotaCheck};
use oxistack_store::Store;
use tokio::sync::Notify;

/// Device owners Neutron uses; ports of these owners belong to the network
/// service itself.
pub const OWNER_DHCP: &str = "network:dhcp";
pub const OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
pub const OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";
pub const OWNER_FLOATING_IP: &str = "network:floatingip";
pub const OWNER_COMPUTE: &str = "compute:nova";

/// The extensions this service implements, as `GET /v2.0/extensions` lists
/// them: (alias, name, description).
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("network_availability_zone", "Network Availability Zone", "Availability zone support for network."),
    ("port-security", "Port Security", "Provides port security"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("router_availability_zone", "Router Availability Zone", "Availability zone support for router."),
    ("security-group", "security-group", "The security groups extension."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("subnet-external-network", "Subnet belongs to an external network", "Informs if the subnet belongs to an external network"),
];

/// Where the reconciler sends specs: this host's name (the bus is the
/// reconciler task's own).
struct Datapath {
    host: String,
}

pub struct Network {
    pub store: Store,
    pub settings: Arc<Settings>,
    datapath: OnceLock<Datapath>,
    metadata_upstream: OnceLock<Option<String>>,
    /// Wakes the reconciler after a write that changes the datapath.
    wake: Arc<Notify>,
    /// One converge at a time, from reading the store to the agent's
    /// answer. Without it a reconciler pass could read the store before a
    /// boot saga binds its port and apply that older spec after the saga's
    /// converge: the new port's tap and DHCP host entry would vanish just
    /// as QEMU starts.
    converging: tokio::sync::Mutex<()>,
}

impl Network {
    pub fn new(store: Store, settings: Arc<Settings>) -> Self {
        Network {
            store,
            settings,
            datapath: OnceLock::new(),
            metadata_upstream: OnceLock::new(),
            wake: Arc::new(Notify::new()),
            converging: tokio::sync::Mutex::new(()),
        }
    }

    /// The host whose agent gets the datapath state (all-in-one: this host).
    /// Used for `binding:host_id` defaults and by [`Network::kick`].
    pub fn datapath_host(&self) -> Option<&str> {
        self.datapath.get().map(|d| d.host.as_str())
    }

    /// Asks the reconciler to converge now. A no-op until
    /// [`Network::spawn_reconciler`] ran; never waits.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Computes `host`'s spec and applies it through its network agent,
    /// recording the run in `reconciler_runs`. No registered agent (tests,
    /// the fake datapath) is not an error: the run is skipped.
    pub async fn converge(&self, bus: &Arc<dyn Bus>, host: &str) -> AppResult<()> {
        let agent = match bus.network_agent(host) {
            Ok(a) => a,
            Err(_) => {
                tracing::debug!(host, "no network agent registered; datapath not converged");
                return Ok(());
            }
        };
        let name = format!("network:{host}");
        let _one = self.converging.lock().await;
        let spec = self
            .host_spec(host, self.settings_metadata_upstream())
            .await?;
        match agent.apply(spec).await {
            Ok(r) => {
                let summary = format!(
                    "created {}, repaired {}, removed {}, errors {}{}",
                    r.created.len(),
                    r.repaired.len(),
                    r.removed.len(),
                    r.errors.len(),
                    if r.errors.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.errors.join("; "))
                    }
                );
                if !r.is_noop() {
                    tracing::info!(host, %summary, "network datapath converged");
                }
                self.store
                    .reconciler_report(&name, r.errors.is_empty(), &summary)
                    .await
            }
            Err(e) => {
                tracing::warn!(host, error = %e, "network datapath apply failed");
                self.store
                    .reconciler_report(&name, false, &e.to_string())
                    .await?;
                Err(e)
            }
        }
    }

    fn settings_metadata_upstream(&self) -> Option<String> {
        self.metadata_upstream.get().cloned().flatten()
    }

    /// Starts the reconciler for `host`: it converges every `interval` and
    /// whenever a write calls [`Network::kick`]. Also makes `host` the
    /// datapath host. `metadata_upstream` goes into every spec.
    pub fn spawn_reconciler(
        self: &Arc<Self>,
        bus: Arc<dyn Bus>,
        host: String,
        interval: Duration,
        metadata_upstream: Option<String>,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.datapath.set(Datapath { host: host.clone() });
        let _ = self.metadata_upstream.set(metadata_upstream);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.converge(&bus, &host).await {
                    tracing::warn!(host = %host, error = %e, "network reconciler run failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {},
                    _ = me.wake.notified() => {},
                }
            }
        })
    }

    /// The quota check a create runs inside its transaction.
    pub(crate) async fn quota(&self, project: &ProjectId, what: Counted) -> AppResult<QuotaCheck> {
        Ok(QuotaCheck {
            project: *project,
            resource: what,
            limit: self.quota_limit(project, what).await?,
        })
    }
}

/// The scope of a read: admins see every project, others their own (plus
/// shared and external networks, which the store adds).
pub(crate) fn read_scope(ctx: &AuthContext) -> AppResult<Scope> {
    if ctx.is_admin() {
        Ok(Scope::All)
    } else {
        ctx.own_scope()
    }
}

/// Neutron's answer when policy refuses an action on a visible resource.
pub(crate) fn policy_denied(action: &str) -> AppError {
    AppError::forbidden(format!("rule:{action} is disallowed by policy"))
        .with_code("PolicyNotAuthorized")
}

/// Owner-or-admin check for changes to an existing resource.
pub(crate) fn require_owner(ctx: &AuthContext, owner: &ProjectId, action: &str) -> AppResult<()> {
    ctx.require_member().map_err(|_| policy_denied(action))?;
    if ctx.is_admin() || ctx.project_id.as_ref() == Some(owner) {
        Ok(())
    } else {
        Err(policy_denied(action))
    }
}

/// The project a new resource belongs to: the caller's, or (admins only)
/// the one the body names in `project_id`/`tenant_id`.
pub(crate) fn owner_for_create(
    ctx: &AuthContext,
    project_id: Option<&str>,
    tenant_id: Option<&str>,
    action: &str,
) -> AppResult<ProjectId> {
    ctx.require_member().map_err(|_| policy_denied(action))?;
    if let (Some(p), Some(t)) = (project_id, tenant_id) {
        if p != t {
            return Err(AppError::bad_request(
                "Invalid input for operation: 'project_id' and 'tenant_id' do not match.",
            )
            .with_code("InvalidInput"));
        }
    }
    let own = ctx.project()?;
    match project_id.or(tenant_id) {
        None => Ok(own),
        Some(p) => {
            let p: ProjectId = p.parse().map_err(|_| {
                AppError::bad_request(format!(
                    "Invalid input for project_id: '{p}' is not a valid project id."
                ))
                .with_code("InvalidInput")
            })?;
            if p != own && !ctx.is_admin() {
                return Err(policy_denied(action));
            }
            Ok(p)
        }
    }
}

/// Deserialises a field that may be absent, null, or a value (for updates
/// where null means "clear").
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Some(Option::<T>::deserialize(d)?))
}

/// A Neutron "Invalid input" 400.
pub(crate) fn invalid(msg: impl std::fmt::Display) -> AppError {
    AppError::bad_request(format!("Invalid input for operation: {msg}")).with_code("InvalidInput")
}
