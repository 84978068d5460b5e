//! Store queries for the network service (Neutron): networks, subnets,
//! ports with their fixed IPs, security groups and rules, routers, floating
//! IPs and network quotas.
//!
//! Visibility is enforced here: a project-scoped caller reads its own rows,
//! plus shared and external networks (and their subnets). IP addresses are
//! handed out inside the transaction that inserts the port, with the subnet
//! row locked, and `port_fixed_ips`' primary key (subnet, address) makes a
//! double allocation impossible even across controllers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use oxistack_model::time::Timestamp;
use oxistack_model::{
    AppError, AppResult, FloatingIpId, NetworkId, PortId, ProjectId, RouterId, Scope,
    SecurityGroupId, SecurityGroupRuleId, SubnetId,
};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Any;

use crate::{db_err, parse_ts, ts, RowExt, Store};

type Tx = sqlx::Transaction<'static, Any>;

fn id_of<T: std::str::FromStr + Default>(r: &AnyRow, col: &str) -> T {
    r.text(col).parse().unwrap_or_default()
}

fn opt_id<T: std::str::FromStr>(r: &AnyRow, col: &str) -> Option<T> {
    r.opt_text(col).and_then(|s| s.parse().ok())
}

fn json_list<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Vec<T> {
    serde_json::from_value(r.json(col)).unwrap_or_default()
}

fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

// ---------------------------------------------------------------- networks

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRec {
    pub id: NetworkId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub external: bool,
    /// `flat` or `vxlan`.
    pub network_type: String,
    /// For flat networks: the Linux bridge the network lives on.
    pub physical_network: Option<String>,
    /// For vxlan networks: the VNI.
    pub segmentation_id: Option<i64>,
    pub mtu: i64,
    pub port_security_enabled: bool,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn network_from(r: &AnyRow) -> NetworkRec {
    NetworkRec {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        name: r.text("name"),
        description: r.text("description"),
        admin_state_up: r.flag("admin_state_up"),
        shared: r.flag("shared"),
        external: r.flag("external"),
        network_type: r.text("network_type"),
        physical_network: r.opt_text("physical_network"),
        segmentation_id: r.opt_int("segmentation_id"),
        mtu: r.int("mtu"),
        port_security_enabled: r.flag("port_security_enabled"),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

/// Which quota-counted resource a create consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
}

impl Counted {
    fn table(self) -> &'static str {
        match self {
            Counted::Network => "networks",
            Counted::Subnet => "subnets",
            Counted::Port => "ports",
            Counted::Router => "routers",
            Counted::FloatingIp => "floating_ips",
            Counted::SecurityGroup => "security_groups",
            Counted::SecurityGroupRule => "security_group_rules",
        }
    }
    /// Neutron's quota resource name.
    pub fn name(self) -> &'static str {
        match self {
            Counted::Network => "network",
            Counted::Subnet => "subnet",
            Counted::Port => "port",
            Counted::Router => "router",
            Counted::FloatingIp => "floatingip",
            Counted::SecurityGroup => "security_group",
            Counted::SecurityGroupRule => "security_group_rule",
        }
    }
}

/// A quota check done inside the create's transaction: the project's lock
/// row serialises concurrent creates, so the count cannot go stale.
#[derive(Debug, Clone, Copy)]
pub struct QuotaCheck {
    pub project: ProjectId,
    pub resource: Counted,
    /// -1 means unlimited.
    pub limit: i64,
}

async fn check_quota(store: &Store, tx: &mut Tx, q: &QuotaCheck) -> AppResult<()> {
    if q.limit < 0 {
        return Ok(());
    }
    let key = format!("network:{}", q.project);
    sqlx::query("INSERT INTO quota_locks (project_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(&key)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query(&format!(
        "SELECT project_id FROM quota_locks WHERE project_id = $1{}",
        store.for_update()
    ))
    .bind(&key)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    let used: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {} WHERE project_id = $1",
        q.resource.table()
    ))
    .bind(q.project.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    if used >= q.limit {
        return Err(AppError::conflict(format!(
            "Quota exceeded for resources: ['{}'].",
            q.resource.name()
        ))
        .with_code("OverQuota"));
    }
    Ok(())
}

impl Store {
    pub async fn network_insert(&self, n: &NetworkRec, quota: Option<QuotaCheck>) -> AppResult<()> {
        let mut tx = self.begin().await?;
        if let Some(q) = &quota {
            check_quota(self, &mut tx, q).await?;
        }
        sqlx::query(
            "INSERT INTO networks (id, project_id, name, description, admin_state_up, shared, external,
               network_type, physical_network, segmentation_id, mtu, port_security_enabled,
               revision_number, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
        )
        .bind(n.id.to_string())
        .bind(n.project_id.to_string())
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.admin_state_up as i64)
        .bind(n.shared as i64)
        .bind(n.external as i64)
        .bind(&n.network_type)
        .bind(&n.physical_network)
        .bind(n.segmentation_id)
        .bind(n.mtu)
        .bind(n.port_security_enabled as i64)
        .bind(n.revision_number)
        .bind(ts(&n.created_at))
        .bind(ts(&n.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            let err = db_err(e);
            if err.kind == oxistack_model::ErrorKind::Conflict {
                segment_in_use(n)
            } else {
                err
            }
        })?;
        tx.commit().await.map_err(db_err)
    }

    /// A network the scope may see: its own, shared or external ones.
    pub async fn network_get(&self, scope: Scope, id: &NetworkId) -> AppResult<NetworkRec> {
        let row = sqlx::query(
            "SELECT * FROM networks WHERE id = $1
               AND ($2 IS NULL OR project_id = $2 OR shared = 1 OR external = 1)",
        )
        .bind(id.to_string())
        .bind(scope.project())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .ok_or_else(|| network_not_found(id))?;
        Ok(network_from(&row))
    }

    pub async fn network_list(&self, scope: Scope) -> AppResult<Vec<NetworkRec>> {
        let rows = sqlx::query(
            "SELECT * FROM networks
             WHERE ($1 IS NULL OR project_id = $1 OR shared = 1 OR external = 1)
             ORDER BY created_at, id",
        )
        .bind(scope.project())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(network_from).collect())
    }

    pub async fn network_find_by_name(&self, name: &str) -> AppResult<Option<NetworkRec>> {
        let row = sqlx::query("SELECT * FROM networks WHERE name = $1 ORDER BY created_at LIMIT 1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(network_from))
    }

    /// Writes the mutable attributes; bumps the revision.
    pub async fn network_update(&self, n: &NetworkRec) -> AppResult<()> {
        sqlx::query(
            "UPDATE networks SET name = $1, description = $2, admin_state_up = $3, shared = $4,
               external = $5, port_security_enabled = $6, mtu = $7,
               revision_number = revision_number + 1, updated_at = $8
             WHERE id = $9",
        )
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.admin_state_up as i64)
        .bind(n.shared as i64)
        .bind(n.external as i64)
        .bind(n.port_security_enabled as i64)
        .bind(n.mtu)
        .bind(ts(&oxistack_model::time::now()))
        .bind(n.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The VNIs in use, so the app picks a free one.
    pub async fn vxlan_vnis_in_use(&self) -> AppResult<HashSet<i64>> {
        let v: Vec<i64> = sqlx::query_scalar(
            "SELECT segmentation_id FROM networks WHERE network_type = 'vxlan' AND segmentation_id IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(v.into_iter().collect())
    }

    /// Deletes a network whose remaining ports all go with it: the DHCP
    /// port, and the ports of floating IPs that are not associated (those
    /// floating IPs are deleted too, as Neutron does when an external
    /// network goes). Any other port makes it `NetworkInUse`, naming the
    /// ports. The check and the delete are one transaction.
    pub async fn network_delete(&self, id: &NetworkId) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "SELECT id FROM networks WHERE id = $1{}",
            self.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| network_not_found(id))?;
        let busy: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM ports WHERE network_id = $1 AND device_owner <> 'network:dhcp'
               AND id NOT IN (SELECT floating_port_id FROM floating_ips
                              WHERE floating_network_id = $1
                                AND port_id IS NULL AND router_id IS NULL)
             ORDER BY created_at, id",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if !busy.is_empty() {
            return Err(AppError::conflict(format!(
                "Unable to complete operation on network {id}. There are one or more ports still in use on the network, id for these ports is: {}.",
                busy.join(",")
            ))
            .with_code("NetworkInUse"));
        }
        for sql in [
            "DELETE FROM floating_ips WHERE floating_network_id = $1",
            "DELETE FROM port_fixed_ips WHERE network_id = $1",
            "DELETE FROM port_security_groups WHERE port_id IN
               (SELECT id FROM ports WHERE network_id = $1)",
            "DELETE FROM ports WHERE network_id = $1",
            "DELETE FROM subnets WHERE network_id = $1",
            "DELETE FROM networks WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

fn segment_in_use(n: &NetworkRec) -> AppError {
    match (n.segmentation_id, &n.physical_network) {
        (Some(vni), _) => AppError::conflict(format!(
            "Unable to create the network. The VLAN {vni} on physical network None is in use."
        ))
        .with_code("SegmentationIdInUse")
        .with_context(format!("vxlan vni {vni} in use")),
        (None, Some(p)) => AppError::conflict(format!(
            "Unable to create the flat network. Physical network {p} is in use."
        ))
        .with_code("FlatNetworkInUse"),
        _ => AppError::conflict("The network already exists."),
    }
}

pub fn network_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Network {id} could not be found.")).with_code("NetworkNotFound")
}
pub fn subnet_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Subnet {id} could not be found.")).with_code("SubnetNotFound")
}
pub fn port_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Port {id} could not be found.")).with_code("PortNotFound")
}
pub fn router_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Router {id} could not be found.")).with_code("RouterNotFound")
}
pub fn floating_ip_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Floating IP {id} could not be found."))
        .with_code("FloatingIPNotFound")
}
pub fn security_group_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Security group {id} does not exist."))
        .with_code("SecurityGroupNotFound")
}
pub fn rule_not_found(id: impl std::fmt::Display) -> AppError {
    AppError::not_found(format!("Security group rule {id} does not exist."))
        .with_code("SecurityGroupRuleNotFound")
}

// ---------------------------------------------------------------- subnets

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: String,
    pub nexthop: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: SubnetId,
    pub project_id: ProjectId,
    pub network_id: NetworkId,
    pub name: String,
    pub description: String,
    pub ip_version: i64,
    pub cidr: String,
    pub gateway_ip: Option<IpAddr>,
    pub allocation_pools: Vec<Pool>,
    pub dns_nameservers: Vec<String>,
    pub host_routes: Vec<HostRoute>,
    pub enable_dhcp: bool,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    /// Whether the subnet's network is external: the `router:external`
    /// attribute of the `subnet-external-network` extension. Not a column
    /// of its own; every read takes it from the network ([`SUBNET_COLUMNS`]).
    pub external: bool,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The select list of every subnet read (`subnets` aliased `s`): the row
/// and its network's external flag.
const SUBNET_COLUMNS: &str =
    "s.*, (SELECT n.external FROM networks n WHERE n.id = s.network_id) AS network_external";

fn subnet_from(r: &AnyRow) -> Subnet {
    Subnet {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        network_id: id_of(r, "network_id"),
        name: r.text("name"),
        description: r.text("description"),
        ip_version: r.int("ip_version"),
        cidr: r.text("cidr"),
        gateway_ip: opt_id(r, "gateway_ip"),
        allocation_pools: json_list(r, "allocation_pools"),
        dns_nameservers: json_list(r, "dns_nameservers"),
        host_routes: json_list(r, "host_routes"),
        enable_dhcp: r.flag("enable_dhcp"),
        ipv6_ra_mode: r.opt_text("ipv6_ra_mode"),
        ipv6_address_mode: r.opt_text("ipv6_address_mode"),
        external: r.flag("network_external"),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

/// Subnets a scope sees: its own, and those of shared or external networks.
fn subnet_visible(p: &str) -> String {
    format!(
        "({p} IS NULL OR s.project_id = {p} OR s.network_id IN
          (SELECT id FROM networks WHERE shared = 1 OR external = 1))"
    )
}

impl Store {
    pub async fn subnet_insert(&self, s: &Subnet, quota: Option<QuotaCheck>) -> AppResult<()> {
        let mut tx = self.begin().await?;
        if let Some(q) = &quota {
            check_quota(self, &mut tx, q).await?;
        }
        sqlx::query(
            "INSERT INTO subnets (id, project_id, network_id, name, description, ip_version, cidr,
               gateway_ip, allocation_pools, dns_nameservers, host_routes, enable_dhcp,
               ipv6_ra_mode, ipv6_address_mode, revision_number, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)",
        )
        .bind(s.id.to_string())
        .bind(s.project_id.to_string())
        .bind(s.network_id.to_string())
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.ip_version)
        .bind(&s.cidr)
        .bind(s.gateway_ip.map(|g| g.to_string()))
        .bind(json_text(&s.allocation_pools))
        .bind(json_text(&s.dns_nameservers))
        .bind(json_text(&s.host_routes))
        .bind(s.enable_dhcp as i64)
        .bind(&s.ipv6_ra_mode)
        .bind(&s.ipv6_address_mode)
        .bind(s.revision_number)
        .bind(ts(&s.created_at))
        .bind(ts(&s.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn subnet_get(&self, scope: Scope, id: &SubnetId) -> AppResult<Subnet> {
        let row = sqlx::query(&format!(
            "SELECT {SUBNET_COLUMNS} FROM subnets s WHERE s.id = $1 AND {}",
            subnet_visible("$2")
        ))
        .bind(id.to_string())
        .bind(scope.project())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .ok_or_else(|| subnet_not_found(id))?;
        Ok(subnet_from(&row))
    }

    pub async fn subnet_list(&self, scope: Scope) -> AppResult<Vec<Subnet>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBNET_COLUMNS} FROM subnets s WHERE {} ORDER BY s.created_at, s.id",
            subnet_visible("$1")
        ))
        .bind(scope.project())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(subnet_from).collect())
    }

    pub async fn subnets_of_network(&self, network: &NetworkId) -> AppResult<Vec<Subnet>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBNET_COLUMNS} FROM subnets s WHERE s.network_id = $1
             ORDER BY s.created_at, s.id"
        ))
        .bind(network.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(subnet_from).collect())
    }

    pub async fn subnet_update(&self, s: &Subnet) -> AppResult<()> {
        sqlx::query(
            "UPDATE subnets SET name = $1, description = $2, gateway_ip = $3, allocation_pools = $4,
               dns_nameservers = $5, host_routes = $6, enable_dhcp = $7,
               revision_number = revision_number + 1, updated_at = $8
             WHERE id = $9",
        )
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.gateway_ip.map(|g| g.to_string()))
        .bind(json_text(&s.allocation_pools))
        .bind(json_text(&s.dns_nameservers))
        .bind(json_text(&s.host_routes))
        .bind(s.enable_dhcp as i64)
        .bind(ts(&oxistack_model::time::now()))
        .bind(s.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Deletes a subnet, in one transaction with its checks.
    ///
    /// Router interfaces on the subnet always make it `SubnetInUse`. Other
    /// addresses depend on `auto_address` (the subnet's addresses are
    /// SLAAC or DHCPv6-stateless, which ports hold without asking): then
    /// they are taken from their ports, as Neutron does; otherwise only
    /// DHCP ports' addresses go with the subnet and any other allocation
    /// makes it `SubnetInUse`. Returns the ports that lost an address.
    pub async fn subnet_delete(&self, id: &SubnetId, auto_address: bool) -> AppResult<Vec<PortId>> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "SELECT id FROM subnets WHERE id = $1{}",
            self.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| subnet_not_found(id))?;
        let holders: Vec<(String, String)> = sqlx::query(
            "SELECT DISTINCT p.id, p.device_owner FROM port_fixed_ips f
             JOIN ports p ON p.id = f.port_id WHERE f.subnet_id = $1",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| (r.text("id"), r.text("device_owner")))
        .collect();
        let blocks = |owner: &str| {
            owner == "network:router_interface" || (!auto_address && owner != "network:dhcp")
        };
        if holders.iter().any(|(_, owner)| blocks(owner)) {
            return Err(AppError::conflict(format!(
                "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
            ))
            .with_code("SubnetInUse"));
        }
        let now = ts(&oxistack_model::time::now());
        let mut stripped = Vec::new();
        for (port, owner) in &holders {
            if owner == "network:dhcp" {
                continue;
            }
            sqlx::query(
                "UPDATE ports SET revision_number = revision_number + 1, updated_at = $1
                 WHERE id = $2",
            )
            .bind(&now)
            .bind(port)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            stripped.push(port.parse().unwrap_or_default());
        }
        for sql in [
            "DELETE FROM port_fixed_ips WHERE subnet_id = $1",
            "DELETE FROM subnets WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(stripped)
    }
}

// ---------------------------------------------------------------- ports

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIpRec {
    pub subnet_id: SubnetId,
    pub ip_address: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPairRec {
    pub ip_address: String,
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub id: PortId,
    pub project_id: ProjectId,
    pub network_id: NetworkId,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub mac_address: String,
    pub device_id: String,
    pub device_owner: String,
    pub status: String,
    pub binding_host_id: String,
    pub binding_profile: serde_json::Value,
    pub binding_vnic_type: String,
    pub tap: Option<String>,
    pub port_security_enabled: bool,
    pub allowed_address_pairs: Vec<AddressPairRec>,
    pub dns_name: String,
    pub auto_delete: bool,
    pub fixed_ips: Vec<FixedIpRec>,
    pub security_groups: Vec<SecurityGroupId>,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn port_from(r: &AnyRow) -> Port {
    Port {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        network_id: id_of(r, "network_id"),
        name: r.text("name"),
        description: r.text("description"),
        admin_state_up: r.flag("admin_state_up"),
        mac_address: r.text("mac_address"),
        device_id: r.text("device_id"),
        device_owner: r.text("device_owner"),
        status: r.text("status"),
        binding_host_id: r.text("binding_host_id"),
        binding_profile: match r.json("binding_profile") {
            serde_json::Value::Null => serde_json::json!({}),
            v => v,
        },
        binding_vnic_type: r.text("binding_vnic_type"),
        tap: r.opt_text("tap"),
        port_security_enabled: r.flag("port_security_enabled"),
        allowed_address_pairs: json_list(r, "allowed_address_pairs"),
        dns_name: r.text("dns_name"),
        auto_delete: r.flag("auto_delete"),
        fixed_ips: Vec::new(),
        security_groups: Vec::new(),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

/// One address a port asks for: a given address, or the next free one of
/// the subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRequest {
    pub subnet_id: SubnetId,
    pub ip: Option<IpAddr>,
}

/// Chooses a free address of a subnet, given the addresses in use (the
/// app's IPAM; called inside the allocating transaction).
pub type PickIp<'a> = &'a (dyn Fn(&Subnet, &HashSet<IpAddr>) -> AppResult<IpAddr> + Sync);

/// What a port write changes besides its own columns.
pub struct PortWrite<'a> {
    /// New addresses (`None` keeps the current ones). Addresses the port
    /// already holds and asks for again are kept, not reallocated.
    pub ips: Option<&'a [IpRequest]>,
    pub security_groups: Option<&'a [SecurityGroupId]>,
    pub quota: Option<QuotaCheck>,
    pub pick: PickIp<'a>,
}

pub fn ip_in_use(ip: &IpAddr, subnet: &SubnetId) -> AppError {
    AppError::conflict(format!(
        "Unable to complete operation for network. The IP address {ip} is in use."
    ))
    .with_code("IpAddressAlreadyAllocated")
    .with_context(format!("subnet {subnet}"))
}

async fn write_port_ips(
    store: &Store,
    tx: &mut Tx,
    port: &Port,
    reqs: &[IpRequest],
    pick: PickIp<'_>,
) -> AppResult<Vec<FixedIpRec>> {
    let held: Vec<FixedIpRec> = sqlx::query("SELECT * FROM port_fixed_ips WHERE port_id = $1")
        .bind(port.id.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| FixedIpRec {
            subnet_id: id_of(r, "subnet_id"),
            ip_address: r
                .text("ip_address")
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        })
        .collect();
    let kept: Vec<&FixedIpRec> = held
        .iter()
        .filter(|h| {
            reqs.iter()
                .any(|r| r.subnet_id == h.subnet_id && r.ip == Some(h.ip_address))
        })
        .collect();
    for h in &held {
        if !kept.contains(&h) {
            sqlx::query("DELETE FROM port_fixed_ips WHERE subnet_id = $1 AND ip_address = $2")
                .bind(h.subnet_id.to_string())
                .bind(h.ip_address.to_string())
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
    }
    let mut out = Vec::new();
    for r in reqs {
        if let Some(ip) = r.ip {
            if kept
                .iter()
                .any(|k| k.subnet_id == r.subnet_id && k.ip_address == ip)
            {
                out.push(FixedIpRec {
                    subnet_id: r.subnet_id,
                    ip_address: ip,
                });
                continue;
            }
        }
        // Locks the subnet: allocations from one subnet are serialised.
        let row = sqlx::query(&format!(
            "SELECT {SUBNET_COLUMNS} FROM subnets s WHERE s.id = $1{}",
            store.for_update()
        ))
        .bind(r.subnet_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| subnet_not_found(r.subnet_id))?;
        let subnet = subnet_from(&row);
        let used: HashSet<IpAddr> = sqlx::query_scalar::<_, String>(
            "SELECT ip_address FROM port_fixed_ips WHERE subnet_id = $1",
        )
        .bind(r.subnet_id.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?
        .into_iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        let ip = match r.ip {
            Some(ip) if used.contains(&ip) => return Err(ip_in_use(&ip, &r.subnet_id)),
            Some(ip) => ip,
            None => pick(&subnet, &used)?,
        };
        sqlx::query(
            "INSERT INTO port_fixed_ips (subnet_id, ip_address, port_id, network_id) VALUES ($1,$2,$3,$4)",
        )
        .bind(r.subnet_id.to_string())
        .bind(ip.to_string())
        .bind(port.id.to_string())
        .bind(port.network_id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            let err = db_err(e);
            if err.kind == oxistack_model::ErrorKind::Conflict {
                ip_in_use(&ip, &r.subnet_id)
            } else {
                err
            }
        })?;
        out.push(FixedIpRec {
            subnet_id: r.subnet_id,
            ip_address: ip,
        });
    }
    Ok(out)
}

async fn write_port_groups(
    tx: &mut Tx,
    port: &PortId,
    groups: &[SecurityGroupId],
) -> AppResult<()> {
    sqlx::query("DELETE FROM port_security_groups WHERE port_id = $1")
        .bind(port.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    for g in groups {
        sqlx::query(
            "INSERT INTO port_security_groups (port_id, security_group_id) VALUES ($1,$2) ON CONFLICT DO NOTHING",
        )
        .bind(port.to_string())
        .bind(g.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

impl Store {
    /// Inserts a port with its addresses and groups, in one transaction.
    /// Returns the addresses it got.
    pub async fn port_insert(&self, p: &Port, w: PortWrite<'_>) -> AppResult<Vec<FixedIpRec>> {
        let mut tx = self.begin().await?;
        if let Some(q) = &w.quota {
            check_quota(self, &mut tx, q).await?;
        }
        sqlx::query(
            "INSERT INTO ports (id, project_id, network_id, name, description, admin_state_up,
               mac_address, device_id, device_owner, status, binding_host_id, binding_profile,
               binding_vnic_type, tap, port_security_enabled, allowed_address_pairs, dns_name,
               auto_delete, revision_number, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)",
        )
        .bind(p.id.to_string())
        .bind(p.project_id.to_string())
        .bind(p.network_id.to_string())
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.admin_state_up as i64)
        .bind(&p.mac_address)
        .bind(&p.device_id)
        .bind(&p.device_owner)
        .bind(&p.status)
        .bind(&p.binding_host_id)
        .bind(p.binding_profile.to_string())
        .bind(&p.binding_vnic_type)
        .bind(&p.tap)
        .bind(p.port_security_enabled as i64)
        .bind(json_text(&p.allowed_address_pairs))
        .bind(&p.dns_name)
        .bind(p.auto_delete as i64)
        .bind(p.revision_number)
        .bind(ts(&p.created_at))
        .bind(ts(&p.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            let err = db_err(e);
            if err.kind == oxistack_model::ErrorKind::Conflict {
                AppError::conflict(format!(
                    "Unable to complete operation for network {}. The mac address {} is in use.",
                    p.network_id, p.mac_address
                ))
                .with_code("MacAddressInUse")
            } else {
                err
            }
        })?;
        let ips = write_port_ips(self, &mut tx, p, w.ips.unwrap_or(&[]), w.pick).await?;
        write_port_groups(&mut tx, &p.id, w.security_groups.unwrap_or(&[])).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ips)
    }

    /// Writes a port's mutable columns, and its addresses and groups when given.
    pub async fn port_update(&self, p: &Port, w: PortWrite<'_>) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE ports SET name = $1, description = $2, admin_state_up = $3, device_id = $4,
               device_owner = $5, status = $6, binding_host_id = $7, binding_profile = $8,
               binding_vnic_type = $9, tap = $10, port_security_enabled = $11,
               allowed_address_pairs = $12, dns_name = $13, auto_delete = $14, mac_address = $15,
               revision_number = revision_number + 1, updated_at = $16
             WHERE id = $17",
        )
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.admin_state_up as i64)
        .bind(&p.device_id)
        .bind(&p.device_owner)
        .bind(&p.status)
        .bind(&p.binding_host_id)
        .bind(p.binding_profile.to_string())
        .bind(&p.binding_vnic_type)
        .bind(&p.tap)
        .bind(p.port_security_enabled as i64)
        .bind(json_text(&p.allowed_address_pairs))
        .bind(&p.dns_name)
        .bind(p.auto_delete as i64)
        .bind(&p.mac_address)
        .bind(ts(&oxistack_model::time::now()))
        .bind(p.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if n.rows_affected() == 0 {
            return Err(port_not_found(p.id));
        }
        if let Some(ips) = w.ips {
            write_port_ips(self, &mut tx, p, ips, w.pick).await?;
        }
        if let Some(g) = w.security_groups {
            write_port_groups(&mut tx, &p.id, g).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// Fills `fixed_ips` and `security_groups` of loaded ports.
    async fn port_details(&self, ports: &mut [Port]) -> AppResult<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let idx: HashMap<PortId, usize> =
            ports.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        // One query per table for the whole list; small lists use an IN list.
        let (ips, groups) = if ports.len() <= 200 {
            let list = ports
                .iter()
                .map(|p| format!("'{}'", p.id))
                .collect::<Vec<_>>()
                .join(",");
            (
                sqlx::query(&format!(
                    "SELECT * FROM port_fixed_ips WHERE port_id IN ({list}) ORDER BY ip_address"
                ))
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?,
                sqlx::query(&format!(
                    "SELECT * FROM port_security_groups WHERE port_id IN ({list}) ORDER BY security_group_id"
                ))
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?,
            )
        } else {
            (
                sqlx::query("SELECT * FROM port_fixed_ips ORDER BY ip_address")
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_err)?,
                sqlx::query("SELECT * FROM port_security_groups ORDER BY security_group_id")
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_err)?,
            )
        };
        for r in &ips {
            let pid: PortId = id_of(r, "port_id");
            if let (Some(i), Ok(ip)) = (idx.get(&pid), r.text("ip_address").parse()) {
                ports[*i].fixed_ips.push(FixedIpRec {
                    subnet_id: id_of(r, "subnet_id"),
                    ip_address: ip,
                });
            }
        }
        for r in &groups {
            let pid: PortId = id_of(r, "port_id");
            if let Some(i) = idx.get(&pid) {
                ports[*i]
                    .security_groups
                    .push(id_of(r, "security_group_id"));
            }
        }
        Ok(())
    }

    /// A port of the scope's project (admins: any).
    pub async fn port_get(&self, scope: Scope, id: &PortId) -> AppResult<Port> {
        let row = self
            .scoped_row("ports", &id.to_string(), scope)
            .await?
            .ok_or_else(|| port_not_found(id))?;
        let mut p = vec![port_from(&row)];
        self.port_details(&mut p).await?;
        Ok(p.remove(0))
    }

    pub async fn port_list(&self, scope: Scope) -> AppResult<Vec<Port>> {
        let rows = self.scoped_rows("ports", scope).await?;
        let mut ports: Vec<Port> = rows.iter().map(port_from).collect();
        self.port_details(&mut ports).await?;
        Ok(ports)
    }

    /// Ports whose `device_id` is `device` (a server, a router, a floating IP).
    pub async fn ports_of_device(&self, device: &str) -> AppResult<Vec<Port>> {
        let rows = sqlx::query("SELECT * FROM ports WHERE device_id = $1 ORDER BY created_at, id")
            .bind(device)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut ports: Vec<Port> = rows.iter().map(port_from).collect();
        self.port_details(&mut ports).await?;
        Ok(ports)
    }

    /// The security groups of the ports of each of `devices`, as
    /// (device id, group id, group name) in port order, then by group name.
    /// One query per 200 devices, so a page of servers costs a few queries,
    /// not one per server.
    pub async fn device_security_groups(
        &self,
        devices: &[String],
    ) -> AppResult<Vec<(String, SecurityGroupId, String)>> {
        let mut out = Vec::new();
        for chunk in devices.chunks(200) {
            let params = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!(
                "SELECT p.device_id AS device_id, g.id AS group_id, g.name AS group_name
                 FROM ports p
                 JOIN port_security_groups pg ON pg.port_id = p.id
                 JOIN security_groups g ON g.id = pg.security_group_id
                 WHERE p.device_id IN ({params})
                 ORDER BY p.device_id, p.created_at, p.id, g.name, g.id"
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.as_str());
            }
            let rows = q.fetch_all(self.pool()).await.map_err(db_err)?;
            out.extend(rows.iter().map(|r| {
                (
                    r.text("device_id"),
                    id_of(r, "group_id"),
                    r.text("group_name"),
                )
            }));
        }
        Ok(out)
    }

    pub async fn ports_of_network(&self, network: &NetworkId) -> AppResult<Vec<Port>> {
        let rows = sqlx::query("SELECT * FROM ports WHERE network_id = $1 ORDER BY created_at, id")
            .bind(network.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut ports: Vec<Port> = rows.iter().map(port_from).collect();
        self.port_details(&mut ports).await?;
        Ok(ports)
    }

    /// The port holding `ip` on `network`, if any.
    pub async fn port_by_ip(&self, network: &NetworkId, ip: &IpAddr) -> AppResult<Option<Port>> {
        let pid: Option<String> = sqlx::query_scalar(
            "SELECT port_id FROM port_fixed_ips WHERE network_id = $1 AND ip_address = $2",
        )
        .bind(network.to_string())
        .bind(ip.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        match pid.and_then(|p| p.parse::<PortId>().ok()) {
            Some(p) => Ok(Some(self.port_get(Scope::All, &p).await?)),
            None => Ok(None),
        }
    }

    /// Deletes a port (its addresses and group memberships go with it) and
    /// clears floating IP associations pointing at it.
    pub async fn port_delete(&self, id: &PortId) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE floating_ips SET port_id = NULL, fixed_ip_address = NULL, router_id = NULL,
               status = 'DOWN' WHERE port_id = $1",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for sql in [
            "DELETE FROM port_fixed_ips WHERE port_id = $1",
            "DELETE FROM port_security_groups WHERE port_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let n = sqlx::query("DELETE FROM ports WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if n.rows_affected() == 0 {
            return Err(port_not_found(id));
        }
        tx.commit().await.map_err(db_err)
    }
}

// ---------------------------------------------------------------- security groups

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: SecurityGroupId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub is_default: bool,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn group_from(r: &AnyRow) -> SecurityGroup {
    SecurityGroup {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        name: r.text("name"),
        description: r.text("description"),
        is_default: r.opt_text("default_for").is_some(),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub id: SecurityGroupRuleId,
    pub project_id: ProjectId,
    pub security_group_id: SecurityGroupId,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<i64>,
    pub port_range_max: Option<i64>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<SecurityGroupId>,
    pub description: String,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl SecurityGroupRule {
    /// Every attribute that makes two rules the same rule.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{:?}|{:?}|{}|{}",
            self.security_group_id,
            self.direction,
            self.ethertype,
            self.protocol.as_deref().unwrap_or(""),
            self.port_range_min,
            self.port_range_max,
            self.remote_ip_prefix.as_deref().unwrap_or(""),
            self.remote_group_id
                .map(|g| g.to_string())
                .unwrap_or_default(),
        )
    }
}

fn rule_from(r: &AnyRow) -> SecurityGroupRule {
    SecurityGroupRule {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        security_group_id: id_of(r, "security_group_id"),
        direction: r.text("direction"),
        ethertype: r.text("ethertype"),
        protocol: r.opt_text("protocol"),
        port_range_min: r.opt_int("port_range_min"),
        port_range_max: r.opt_int("port_range_max"),
        remote_ip_prefix: r.opt_text("remote_ip_prefix"),
        remote_group_id: opt_id(r, "remote_group_id"),
        description: r.text("description"),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

async fn insert_rule(tx: &mut Tx, r: &SecurityGroupRule) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO security_group_rules (id, project_id, security_group_id, direction, ethertype,
           protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description,
           fingerprint, revision_number, created_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
    )
    .bind(r.id.to_string())
    .bind(r.project_id.to_string())
    .bind(r.security_group_id.to_string())
    .bind(&r.direction)
    .bind(&r.ethertype)
    .bind(&r.protocol)
    .bind(r.port_range_min)
    .bind(r.port_range_max)
    .bind(&r.remote_ip_prefix)
    .bind(r.remote_group_id.map(|g| g.to_string()))
    .bind(&r.description)
    .bind(r.fingerprint())
    .bind(r.revision_number)
    .bind(ts(&r.created_at))
    .bind(ts(&r.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        let err = db_err(e);
        if err.kind == oxistack_model::ErrorKind::Conflict {
            AppError::conflict(format!(
                "Security group rule already exists. Rule id is {}.",
                r.id
            ))
            .with_code("SecurityGroupRuleExists")
        } else {
            err
        }
    })?;
    Ok(())
}

impl Store {
    /// Inserts a group with its initial rules. For a default group, a
    /// concurrent creation of the same project's default group makes this
    /// one a conflict (the caller then reads the winner).
    pub async fn security_group_insert(
        &self,
        g: &SecurityGroup,
        rules: &[SecurityGroupRule],
        quota: Option<QuotaCheck>,
    ) -> AppResult<()> {
        let mut tx = self.begin().await?;
        if let Some(q) = &quota {
            check_quota(self, &mut tx, q).await?;
        }
        sqlx::query(
            "INSERT INTO security_groups (id, project_id, name, description, default_for,
               revision_number, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(g.id.to_string())
        .bind(g.project_id.to_string())
        .bind(&g.name)
        .bind(&g.description)
        .bind(g.is_default.then(|| g.project_id.to_string()))
        .bind(g.revision_number)
        .bind(ts(&g.created_at))
        .bind(ts(&g.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for r in rules {
            insert_rule(&mut tx, r).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn default_security_group(
        &self,
        project: &ProjectId,
    ) -> AppResult<Option<SecurityGroup>> {
        let row = sqlx::query("SELECT * FROM security_groups WHERE default_for = $1")
            .bind(project.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(group_from))
    }

    pub async fn security_group_get(
        &self,
        scope: Scope,
        id: &SecurityGroupId,
    ) -> AppResult<SecurityGroup> {
        let row = self
            .scoped_row("security_groups", &id.to_string(), scope)
            .await?
            .ok_or_else(|| security_group_not_found(id))?;
        Ok(group_from(&row))
    }

    pub async fn security_group_list(&self, scope: Scope) -> AppResult<Vec<SecurityGroup>> {
        let rows = self.scoped_rows("security_groups", scope).await?;
        Ok(rows.iter().map(group_from).collect())
    }

    pub async fn security_group_update(&self, g: &SecurityGroup) -> AppResult<()> {
        sqlx::query(
            "UPDATE security_groups SET name = $1, description = $2,
               revision_number = revision_number + 1, updated_at = $3 WHERE id = $4",
        )
        .bind(&g.name)
        .bind(&g.description)
        .bind(ts(&oxistack_model::time::now()))
        .bind(g.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Deletes a group no port uses (its rules go with it).
    pub async fn security_group_delete(&self, id: &SecurityGroupId) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM port_security_groups WHERE security_group_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if used > 0 {
            return Err(AppError::conflict(format!("Security Group {id} in use."))
                .with_code("SecurityGroupInUse"));
        }
        for sql in [
            "DELETE FROM security_group_rules WHERE security_group_id = $1 OR remote_group_id = $1",
            "DELETE FROM security_groups WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn rule_insert(
        &self,
        r: &SecurityGroupRule,
        quota: Option<QuotaCheck>,
    ) -> AppResult<()> {
        let mut tx = self.begin().await?;
        if let Some(q) = &quota {
            check_quota(self, &mut tx, q).await?;
        }
        insert_rule(&mut tx, r).await?;
        tx.commit().await.map_err(db_err)
    }

    /// The id of the rule that has the same attributes as `r`, if any.
    pub async fn rule_duplicate(
        &self,
        r: &SecurityGroupRule,
    ) -> AppResult<Option<SecurityGroupRuleId>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM security_group_rules WHERE fingerprint = $1")
                .bind(r.fingerprint())
                .fetch_optional(self.pool())
                .await
                .map_err(db_err)?;
        Ok(id.and_then(|i| i.parse().ok()))
    }

    pub async fn rule_get(
        &self,
        scope: Scope,
        id: &SecurityGroupRuleId,
    ) -> AppResult<SecurityGroupRule> {
        let row = self
            .scoped_row("security_group_rules", &id.to_string(), scope)
            .await?
            .ok_or_else(|| rule_not_found(id))?;
        Ok(rule_from(&row))
    }

    /// Rules of the scope's groups (a project also sees rules on its groups
    /// that an admin added in its name).
    pub async fn rule_list(&self, scope: Scope) -> AppResult<Vec<SecurityGroupRule>> {
        let rows = sqlx::query(
            "SELECT * FROM security_group_rules WHERE ($1 IS NULL OR project_id = $1
               OR security_group_id IN (SELECT id FROM security_groups WHERE project_id = $1))
             ORDER BY created_at, id",
        )
        .bind(scope.project())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(rule_from).collect())
    }

    pub async fn rule_delete(&self, id: &SecurityGroupRuleId) -> AppResult<()> {
        let n = sqlx::query("DELETE FROM security_group_rules WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if n.rows_affected() == 0 {
            return Err(rule_not_found(id));
        }
        Ok(())
    }

    /// Which ports are members of which groups, for every port (host spec).
    pub async fn port_group_members(&self) -> AppResult<Vec<(PortId, SecurityGroupId)>> {
        let rows =
            sqlx::query("SELECT * FROM port_security_groups ORDER BY security_group_id, port_id")
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (id_of(r, "port_id"), id_of(r, "security_group_id")))
            .collect())
    }
}

// ---------------------------------------------------------------- routers

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Router {
    pub id: RouterId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub status: String,
    pub gw_network_id: Option<NetworkId>,
    pub gw_port_id: Option<PortId>,
    pub enable_snat: bool,
    pub routes: Vec<HostRoute>,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn router_from(r: &AnyRow) -> Router {
    Router {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        name: r.text("name"),
        description: r.text("description"),
        admin_state_up: r.flag("admin_state_up"),
        status: r.text("status"),
        gw_network_id: opt_id(r, "gw_network_id"),
        gw_port_id: opt_id(r, "gw_port_id"),
        enable_snat: r.flag("enable_snat"),
        routes: json_list(r, "routes"),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

impl Store {
    pub async fn router_insert(&self, r: &Router, quota: Option<QuotaCheck>) -> AppResult<()> {
        let mut tx = self.begin().await?;
        if let Some(q) = &quota {
            check_quota(self, &mut tx, q).await?;
        }
        sqlx::query(
            "INSERT INTO routers (id, project_id, name, description, admin_state_up, status,
               gw_network_id, gw_port_id, enable_snat, routes, revision_number, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(r.id.to_string())
        .bind(r.project_id.to_string())
        .bind(&r.name)
        .bind(&r.description)
        .bind(r.admin_state_up as i64)
        .bind(&r.status)
        .bind(r.gw_network_id.map(|n| n.to_string()))
        .bind(r.gw_port_id.map(|n| n.to_string()))
        .bind(r.enable_snat as i64)
        .bind(json_text(&r.routes))
        .bind(r.revision_number)
        .bind(ts(&r.created_at))
        .bind(ts(&r.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn router_get(&self, scope: Scope, id: &RouterId) -> AppResult<Router> {
        let row = self
            .scoped_row("routers", &id.to_string(), scope)
            .await?
            .ok_or_else(|| router_not_found(id))?;
        Ok(router_from(&row))
    }

    pub async fn router_list(&self, scope: Scope) -> AppResult<Vec<Router>> {
        let rows = self.scoped_rows("routers", scope).await?;
        Ok(rows.iter().map(router_from).collect())
    }

    pub async fn router_update(&self, r: &Router) -> AppResult<()> {
        sqlx::query(
            "UPDATE routers SET name = $1, description = $2, admin_state_up = $3, status = $4,
               gw_network_id = $5, gw_port_id = $6, enable_snat = $7, routes = $8,
               revision_number = revision_number + 1, updated_at = $9 WHERE id = $10",
        )
        .bind(&r.name)
        .bind(&r.description)
        .bind(r.admin_state_up as i64)
        .bind(&r.status)
        .bind(r.gw_network_id.map(|n| n.to_string()))
        .bind(r.gw_port_id.map(|n| n.to_string()))
        .bind(r.enable_snat as i64)
        .bind(json_text(&r.routes))
        .bind(ts(&oxistack_model::time::now()))
        .bind(r.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Deletes a router with no interface left (gateway port excepted,
    /// which the caller removed first).
    pub async fn router_delete(&self, id: &RouterId) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ports WHERE device_id = $1 AND device_owner = 'network:router_interface'",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if busy > 0 {
            return Err(
                AppError::conflict(format!("Router {id} still has ports")).with_code("RouterInUse")
            );
        }
        let n = sqlx::query("DELETE FROM routers WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if n.rows_affected() == 0 {
            return Err(router_not_found(id));
        }
        tx.commit().await.map_err(db_err)
    }
}

// ---------------------------------------------------------------- floating IPs

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: FloatingIpId,
    pub project_id: ProjectId,
    pub floating_network_id: NetworkId,
    pub floating_ip_address: IpAddr,
    pub floating_port_id: PortId,
    pub port_id: Option<PortId>,
    pub fixed_ip_address: Option<IpAddr>,
    pub router_id: Option<RouterId>,
    pub status: String,
    pub description: String,
    pub revision_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn fip_from(r: &AnyRow) -> FloatingIp {
    FloatingIp {
        id: id_of(r, "id"),
        project_id: id_of(r, "project_id"),
        floating_network_id: id_of(r, "floating_network_id"),
        floating_ip_address: r
            .text("floating_ip_address")
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        floating_port_id: id_of(r, "floating_port_id"),
        port_id: opt_id(r, "port_id"),
        fixed_ip_address: opt_id(r, "fixed_ip_address"),
        router_id: opt_id(r, "router_id"),
        status: r.text("status"),
        description: r.text("description"),
        revision_number: r.int("revision_number"),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

impl Store {
    pub async fn floating_ip_insert(&self, f: &FloatingIp) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO floating_ips (id, project_id, floating_network_id, floating_ip_address,
               floating_port_id, port_id, fixed_ip_address, router_id, status, description,
               revision_number, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(f.id.to_string())
        .bind(f.project_id.to_string())
        .bind(f.floating_network_id.to_string())
        .bind(f.floating_ip_address.to_string())
        .bind(f.floating_port_id.to_string())
        .bind(f.port_id.map(|p| p.to_string()))
        .bind(f.fixed_ip_address.map(|p| p.to_string()))
        .bind(f.router_id.map(|p| p.to_string()))
        .bind(&f.status)
        .bind(&f.description)
        .bind(f.revision_number)
        .bind(ts(&f.created_at))
        .bind(ts(&f.updated_at))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Counts a project's floating IPs under its quota lock, for the create
    /// that follows (the address port is allocated in between).
    pub async fn floating_ip_quota(&self, q: &QuotaCheck) -> AppResult<()> {
        let mut tx = self.begin().await?;
        check_quota(self, &mut tx, q).await?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn floating_ip_get(&self, scope: Scope, id: &FloatingIpId) -> AppResult<FloatingIp> {
        let row = self
            .scoped_row("floating_ips", &id.to_string(), scope)
            .await?
            .ok_or_else(|| floating_ip_not_found(id))?;
        Ok(fip_from(&row))
    }

    pub async fn floating_ip_list(&self, scope: Scope) -> AppResult<Vec<FloatingIp>> {
        let rows = self.scoped_rows("floating_ips", scope).await?;
        Ok(rows.iter().map(fip_from).collect())
    }

    pub async fn floating_ip_update(&self, f: &FloatingIp) -> AppResult<()> {
        sqlx::query(
            "UPDATE floating_ips SET port_id = $1, fixed_ip_address = $2, router_id = $3, status = $4,
               description = $5, revision_number = revision_number + 1, updated_at = $6 WHERE id = $7",
        )
        .bind(f.port_id.map(|p| p.to_string()))
        .bind(f.fixed_ip_address.map(|p| p.to_string()))
        .bind(f.router_id.map(|p| p.to_string()))
        .bind(&f.status)
        .bind(&f.description)
        .bind(ts(&oxistack_model::time::now()))
        .bind(f.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn floating_ip_delete(&self, id: &FloatingIpId) -> AppResult<()> {
        sqlx::query("DELETE FROM floating_ips WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- quotas

impl Store {
    pub async fn network_quota_overrides(
        &self,
        project: &ProjectId,
    ) -> AppResult<HashMap<String, i64>> {
        let rows =
            sqlx::query("SELECT resource, hard_limit FROM network_quotas WHERE project_id = $1")
                .bind(project.to_string())
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.text("resource"), r.int("hard_limit")))
            .collect())
    }

    pub async fn network_quota_set(
        &self,
        project: &ProjectId,
        resource: &str,
        limit: i64,
    ) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO network_quotas (project_id, resource, hard_limit) VALUES ($1,$2,$3)
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = $3",
        )
        .bind(project.to_string())
        .bind(resource)
        .bind(limit)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn network_quota_reset(&self, project: &ProjectId) -> AppResult<()> {
        sqlx::query("DELETE FROM network_quotas WHERE project_id = $1")
            .bind(project.to_string())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Projects with overrides (admin's quota list).
    pub async fn network_quota_projects(&self) -> AppResult<Vec<ProjectId>> {
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT project_id FROM network_quotas ORDER BY project_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(v.into_iter().filter_map(|p| p.parse().ok()).collect())
    }

    /// A project's usage of each counted resource.
    pub async fn network_usage(&self, project: &ProjectId, what: Counted) -> AppResult<i64> {
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {} WHERE project_id = $1",
            what.table()
        ))
        .bind(project.to_string())
        .fetch_one(self.pool())
        .await
        .map_err(db_err)
    }
}
