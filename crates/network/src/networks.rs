//! Networks: tenant (vxlan) and provider (flat) networks, shared and
//! external flags, VNI allocation, and the `public` network made at first
//! start.

use std::sync::Arc;

use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, NetworkId, ProjectId, Scope, SubnetId};
use oxistack_store::network::{Counted, NetworkRec, Subnet};
use serde::Deserialize;

use crate::{
    invalid, nullable, owner_for_create, policy_denied, read_scope, require_owner, Network,
};

/// MTU of a VXLAN network: 1500 less the 50 bytes of VXLAN over IPv4.
pub const VXLAN_MTU: i64 = 1450;
pub const FLAT_MTU: i64 = 1500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    #[serde(rename = "router:external")]
    pub external: Option<bool>,
    #[serde(rename = "provider:network_type")]
    pub network_type: Option<String>,
    #[serde(rename = "provider:physical_network")]
    pub physical_network: Option<String>,
    #[serde(rename = "provider:segmentation_id")]
    pub segmentation_id: Option<i64>,
    pub mtu: Option<i64>,
    pub port_security_enabled: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub availability_zone_hints: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkUpdate {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    #[serde(rename = "router:external")]
    pub external: Option<bool>,
    pub mtu: Option<i64>,
    pub port_security_enabled: Option<bool>,
    #[serde(rename = "provider:network_type")]
    pub network_type: Option<String>,
    #[serde(rename = "provider:physical_network")]
    pub physical_network: Option<String>,
    #[serde(rename = "provider:segmentation_id")]
    pub segmentation_id: Option<i64>,
}

/// A network with the ids of its subnets, as the API shows it.
#[derive(Debug, Clone)]
pub struct NetworkView {
    pub net: NetworkRec,
    pub subnets: Vec<SubnetId>,
}

impl Network {
    async fn view(&self, net: NetworkRec, all_subnets: &[Subnet]) -> NetworkView {
        let subnets = all_subnets
            .iter()
            .filter(|s| s.network_id == net.id)
            .map(|s| s.id)
            .collect();
        NetworkView { net, subnets }
    }

    pub async fn network_create(
        &self,
        ctx: &AuthContext,
        b: NetworkCreate,
    ) -> AppResult<NetworkView> {
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_network",
        )?;
        let privileged = b.shared.is_some()
            || b.external.is_some()
            || b.network_type.is_some()
            || b.physical_network.is_some()
            || b.segmentation_id.is_some();
        if privileged && !ctx.is_admin() {
            // Neutron lets members pass `shared: false`; only turning
            // things on needs admin.
            let harmless = b.shared != Some(true)
                && b.external != Some(true)
                && b.network_type.is_none()
                && b.physical_network.is_none()
                && b.segmentation_id.is_none();
            if !harmless {
                return Err(policy_denied("create_network"));
            }
        }
        let n = self
            .network_insert(
                project,
                b.name.unwrap_or_default(),
                b.description.unwrap_or_default(),
                b.admin_state_up.unwrap_or(true),
                b.shared.unwrap_or(false),
                b.external.unwrap_or(false),
                b.network_type.as_deref(),
                b.physical_network,
                b.segmentation_id,
                b.mtu,
                b.port_security_enabled.unwrap_or(true),
                !ctx.is_admin() || ctx.project_id == Some(project),
            )
            .await?;
        Ok(NetworkView {
            net: n,
            subnets: vec![],
        })
    }

    /// Creates every network of a bulk request, or none: when one fails,
    /// those already made are deleted and its error is the answer.
    pub async fn network_create_bulk(
        &self,
        ctx: &AuthContext,
        items: Vec<NetworkCreate>,
    ) -> AppResult<Vec<NetworkView>> {
        let mut made: Vec<NetworkView> = Vec::with_capacity(items.len());
        for b in items {
            match self.network_create(ctx, b).await {
                Ok(n) => made.push(n),
                Err(e) => {
                    for n in made.iter().rev() {
                        if let Err(u) = self.store.network_delete(&n.net.id).await {
                            tracing::warn!(network = %n.net.id, error = %u, "could not undo a bulk network create");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// Validates the provider attributes, picks a VNI and inserts.
    #[allow(clippy::too_many_arguments)]
    async fn network_insert(
        &self,
        project: ProjectId,
        name: String,
        description: String,
        admin_state_up: bool,
        shared: bool,
        external: bool,
        network_type: Option<&str>,
        physical_network: Option<String>,
        segmentation_id: Option<i64>,
        mtu: Option<i64>,
        port_security_enabled: bool,
        counted: bool,
    ) -> AppResult<NetworkRec> {
        let network_type = network_type.unwrap_or("vxlan").to_string();
        let (physical_network, max_mtu) = match network_type.as_str() {
            "vxlan" => {
                if physical_network.is_some() {
                    return Err(invalid(
                        "provider:physical_network specified for vxlan network",
                    ));
                }
                (None, VXLAN_MTU)
            }
            "flat" => {
                if segmentation_id.is_some() {
                    return Err(invalid(
                        "provider:segmentation_id specified for flat network",
                    ));
                }
                let p = physical_network.filter(|p| !p.is_empty()).ok_or_else(|| {
                    invalid("provider:physical_network required for flat provider network")
                })?;
                (Some(p), FLAT_MTU)
            }
            other => {
                return Err(invalid(format!(
                    "network_type value '{other}' not supported"
                )));
            }
        };
        let mtu = match mtu {
            Some(m) if m < 68 || m > max_mtu => {
                return Err(invalid(format!(
                    "Requested MTU is too big, maximum is {max_mtu}."
                )))
            }
            Some(m) => m,
            None => max_mtu,
        };
        let quota = if counted {
            Some(self.quota(&project, Counted::Network).await?)
        } else {
            None
        };
        let t = now();
        let mut n = NetworkRec {
            id: NetworkId::new(),
            project_id: project,
            name,
            description,
            admin_state_up,
            shared,
            external,
            network_type: network_type.clone(),
            physical_network,
            segmentation_id: None,
            mtu,
            port_security_enabled,
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        if network_type == "vxlan" {
            let (lo, hi) = (
                self.settings.vxlan_vni_min as i64,
                self.settings.vxlan_vni_max as i64,
            );
            if let Some(v) = segmentation_id {
                if !(1..=16_777_215).contains(&v) {
                    return Err(invalid(format!("{v} is not a valid VXLAN VNI")));
                }
                n.segmentation_id = Some(v);
                return self.store.network_insert(&n, quota).await.map(|_| n);
            }
            // Another controller may take the same VNI between the read
            // and the insert: the unique index refuses it, and we retry.
            for _ in 0..8 {
                let used = self.store.vxlan_vnis_in_use().await?;
                let vni = (lo..=hi).find(|v| !used.contains(v)).ok_or_else(|| {
                    AppError::unavailable(
                        "Unable to create the network. No tenant network is available for allocation.",
                    )
                    .with_code("NoNetworkAvailable")
                })?;
                n.segmentation_id = Some(vni);
                match self.store.network_insert(&n, quota).await {
                    Err(e) if e.code == Some("SegmentationIdInUse") => continue,
                    r => return r.map(|_| n),
                }
            }
            return Err(AppError::unavailable(
                "Could not allocate a VXLAN VNI; try again.",
            ));
        }
        self.store.network_insert(&n, quota).await.map(|_| n)
    }

    pub async fn network_get(&self, ctx: &AuthContext, id: &NetworkId) -> AppResult<NetworkView> {
        let n = self.store.network_get(read_scope(ctx)?, id).await?;
        let subnets = self.store.subnets_of_network(id).await?;
        Ok(self.view(n, &subnets).await)
    }

    pub async fn network_list(&self, ctx: &AuthContext) -> AppResult<Vec<NetworkView>> {
        let scope = read_scope(ctx)?;
        let nets = self.store.network_list(scope).await?;
        let subnets = self.store.subnet_list(Scope::All).await?;
        let mut out = Vec::with_capacity(nets.len());
        for n in nets {
            out.push(self.view(n, &subnets).await);
        }
        Ok(out)
    }

    pub async fn network_update(
        &self,
        ctx: &AuthContext,
        id: &NetworkId,
        b: NetworkUpdate,
    ) -> AppResult<NetworkView> {
        let mut n = self.store.network_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &n.project_id, "update_network")?;
        if b.network_type.is_some() || b.physical_network.is_some() || b.segmentation_id.is_some() {
            return Err(invalid(
                "Plugin does not support updating provider attributes",
            ));
        }
        if (b.shared.is_some_and(|s| s != n.shared) || b.external.is_some_and(|e| e != n.external))
            && !ctx.is_admin()
        {
            return Err(policy_denied("update_network"));
        }
        if let Some(v) = b.name {
            n.name = v;
        }
        if let Some(v) = b.description {
            n.description = v.unwrap_or_default();
        }
        if let Some(v) = b.admin_state_up {
            n.admin_state_up = v;
        }
        if let Some(v) = b.shared {
            n.shared = v;
        }
        if let Some(v) = b.external {
            n.external = v;
        }
        if let Some(v) = b.port_security_enabled {
            n.port_security_enabled = v;
        }
        if let Some(m) = b.mtu {
            let max = if n.network_type == "vxlan" {
                VXLAN_MTU
            } else {
                FLAT_MTU
            };
            if !(68..=max).contains(&m) {
                return Err(invalid(format!(
                    "Requested MTU is too big, maximum is {max}."
                )));
            }
            n.mtu = m;
        }
        self.store.network_update(&n).await?;
        self.kick();
        self.network_get(ctx, id).await
    }

    pub async fn network_delete(&self, ctx: &AuthContext, id: &NetworkId) -> AppResult<()> {
        let n = self.store.network_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &n.project_id, "delete_network")?;
        self.store.network_delete(id).await?;
        self.kick();
        Ok(())
    }

    /// Creates, once, the admin-owned external flat network `public` on
    /// the bridge `public_bridge`, with a subnet (no DHCP) whose pool
    /// holds the floating IPs. Run at every start; finds the existing one.
    pub async fn ensure_public_network(
        self: &Arc<Self>,
        admin_project: ProjectId,
    ) -> AppResult<NetworkId> {
        if let Some(n) = self.store.network_find_by_name("public").await? {
            if n.external {
                return Ok(n.id);
            }
        }
        let s = &self.settings;
        let n = self
            .network_insert(
                admin_project,
                "public".into(),
                "External network made by OxiStack at first start".into(),
                true,
                false,
                true,
                Some("flat"),
                Some(s.public_bridge.clone()),
                None,
                None,
                true,
                false,
            )
            .await?;
        let parse = |what: &str, v: &str| {
            v.parse::<std::net::IpAddr>().map_err(|_| {
                AppError::bad_request(format!("setting {what}: {v:?} is not an IP address"))
            })
        };
        let body = crate::subnets::SubnetCreate {
            network_id: n.id.to_string(),
            name: Some("public-subnet".into()),
            ip_version: 4,
            cidr: Some(s.public_cidr.clone()),
            gateway_ip: Some(Some(
                parse("public_gateway", &s.public_gateway)?.to_string(),
            )),
            allocation_pools: Some(vec![oxistack_store::network::Pool {
                start: parse("public_pool_start", &s.public_pool_start)?,
                end: parse("public_pool_end", &s.public_pool_end)?,
            }]),
            enable_dhcp: Some(false),
            ..Default::default()
        };
        self.subnet_insert(admin_project, &n, body, false).await?;
        tracing::info!(network = %n.id, bridge = %s.public_bridge, "created the public network");
        Ok(n.id)
    }
}
