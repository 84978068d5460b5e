//! Store queries for the compute service: flavors, keypairs, servers (with
//! metadata and faults) and per-project quotas.
//!
//! Server rows are soft-deleted (`deleted = 1`) as Nova does, so usage and
//! audit queries can still see them; every tenant read filters on the
//! caller's [`Scope`].

use std::collections::BTreeMap;

use oxistack_model::server_state::{PowerState, TaskState, VmState};
use oxistack_model::time::Timestamp;
use oxistack_model::{AppError, AppResult, ProjectId, Scope, ServerId, UserId};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::{db_err, parse_ts, ts, RowExt, Store};

// ---------------------------------------------------------------- flavors

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: i64,
    pub ram_mb: i64,
    pub disk_gb: i64,
    pub ephemeral_gb: i64,
    pub swap_mb: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

fn flavor_from(r: &AnyRow) -> Flavor {
    Flavor {
        id: r.text("id"),
        name: r.text("name"),
        vcpus: r.int("vcpus"),
        ram_mb: r.int("ram_mb"),
        disk_gb: r.int("disk_gb"),
        ephemeral_gb: r.int("ephemeral_gb"),
        swap_mb: r.int("swap_mb"),
        rxtx_factor: r.float("rxtx_factor"),
        is_public: r.flag("is_public"),
        disabled: r.flag("disabled"),
        description: r.opt_text("description"),
        extra_specs: BTreeMap::new(),
    }
}

/// Which flavors a caller may see: public ones, and private ones its
/// project was given access to (admins see all).
#[derive(Debug, Clone, Copy)]
pub enum FlavorVisibility {
    All,
    PublicAnd(ProjectId),
}

const FLAVOR_COLS: &str =
    "id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb, rxtx_factor, is_public, disabled, description";

impl Store {
    pub async fn flavor_create(&self, f: &Flavor) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let dup: Option<String> =
            sqlx::query_scalar("SELECT id FROM flavors WHERE id = $1 OR name = $2")
                .bind(&f.id)
                .bind(&f.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if dup.is_some() {
            return Err(AppError::conflict(format!(
                "Flavor with name {} or ID {} already exists.",
                f.name, f.id
            )));
        }
        sqlx::query(&format!(
            "INSERT INTO flavors ({FLAVOR_COLS}, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
        ))
        .bind(&f.id)
        .bind(&f.name)
        .bind(f.vcpus)
        .bind(f.ram_mb)
        .bind(f.disk_gb)
        .bind(f.ephemeral_gb)
        .bind(f.swap_mb)
        .bind(f.rxtx_factor)
        .bind(f.is_public as i64)
        .bind(f.disabled as i64)
        .bind(&f.description)
        .bind(ts(&oxistack_model::time::now()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for (k, v) in &f.extra_specs {
            sqlx::query("INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1,$2,$3)")
                .bind(&f.id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn flavor_get(&self, id: &str, vis: FlavorVisibility) -> AppResult<Flavor> {
        let row = sqlx::query(&format!("SELECT {FLAVOR_COLS} FROM flavors WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| AppError::not_found(format!("Flavor {id} could not be found.")))?;
        let mut f = flavor_from(&row);
        if let FlavorVisibility::PublicAnd(p) = vis {
            if !f.is_public && !self.flavor_access_has(&f.id, &p).await? {
                return Err(AppError::not_found(format!(
                    "Flavor {id} could not be found."
                )));
            }
        }
        f.extra_specs = self.flavor_extra_specs(&f.id).await?;
        Ok(f)
    }

    async fn flavor_access_has(&self, flavor: &str, project: &ProjectId) -> AppResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM flavor_projects WHERE flavor_id = $1 AND project_id = $2",
        )
        .bind(flavor)
        .bind(project.to_string())
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        Ok(n > 0)
    }

    pub async fn flavor_extra_specs(&self, flavor: &str) -> AppResult<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT key, value FROM flavor_extra_specs WHERE flavor_id = $1")
            .bind(flavor)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.text("key"), r.text("value")))
            .collect())
    }

    /// Flavors sorted by `flavorid` as Nova does by default; `is_public`:
    /// Some(true) public only, Some(false) private only, None both.
    pub async fn flavor_list(
        &self,
        vis: FlavorVisibility,
        is_public: Option<bool>,
    ) -> AppResult<Vec<Flavor>> {
        let rows = sqlx::query(&format!("SELECT {FLAVOR_COLS} FROM flavors ORDER BY id"))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let access: Vec<String> = match vis {
            FlavorVisibility::All => vec![],
            FlavorVisibility::PublicAnd(p) => {
                sqlx::query_scalar("SELECT flavor_id FROM flavor_projects WHERE project_id = $1")
                    .bind(p.to_string())
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_err)?
            }
        };
        let specs = sqlx::query("SELECT flavor_id, key, value FROM flavor_extra_specs")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let mut f = flavor_from(r);
            let visible = match vis {
                FlavorVisibility::All => true,
                FlavorVisibility::PublicAnd(_) => f.is_public || access.contains(&f.id),
            };
            let wanted = match is_public {
                None => true,
                Some(p) => f.is_public == p,
            };
            if visible && wanted {
                for s in specs.iter().filter(|s| s.text("flavor_id") == f.id) {
                    f.extra_specs.insert(s.text("key"), s.text("value"));
                }
                out.push(f);
            }
        }
        Ok(out)
    }

    pub async fn flavor_update_description(
        &self,
        id: &str,
        description: Option<&str>,
    ) -> AppResult<()> {
        let r = sqlx::query("UPDATE flavors SET description = $1 WHERE id = $2")
            .bind(description)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Flavor {id} could not be found."
            )));
        }
        Ok(())
    }

    pub async fn flavor_delete(&self, id: &str) -> AppResult<()> {
        let r = sqlx::query("DELETE FROM flavors WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Flavor {id} could not be found."
            )));
        }
        Ok(())
    }

    pub async fn flavor_set_extra_spec(&self, id: &str, key: &str, value: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM flavor_extra_specs WHERE flavor_id = $1 AND key = $2")
            .bind(id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1,$2,$3)")
            .bind(id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn flavor_delete_extra_spec(&self, id: &str, key: &str) -> AppResult<()> {
        let r = sqlx::query("DELETE FROM flavor_extra_specs WHERE flavor_id = $1 AND key = $2")
            .bind(id)
            .bind(key)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Flavor {id} has no extra specs with key {key}."
            )));
        }
        Ok(())
    }

    pub async fn flavor_access_list(&self, id: &str) -> AppResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT project_id FROM flavor_projects WHERE flavor_id = $1 ORDER BY project_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)
    }

    pub async fn flavor_access_add(&self, id: &str, project: &str) -> AppResult<()> {
        sqlx::query("INSERT INTO flavor_projects (flavor_id, project_id) VALUES ($1, $2)")
            .bind(id)
            .bind(project)
            .execute(self.pool())
            .await
            .map_err(|e| match db_err(e) {
                e if e.status() == 409 => AppError::conflict(format!(
                    "Flavor access already exists for flavor {id} and project {project} combination."
                )),
                e => e,
            })?;
        Ok(())
    }

    pub async fn flavor_access_remove(&self, id: &str, project: &str) -> AppResult<()> {
        let r = sqlx::query("DELETE FROM flavor_projects WHERE flavor_id = $1 AND project_id = $2")
            .bind(id)
            .bind(project)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Flavor access not found for {id} / {project} combination."
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- keypairs

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keypair {
    pub user_id: UserId,
    pub name: String,
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: Timestamp,
}

fn keypair_from(r: &AnyRow) -> Keypair {
    Keypair {
        user_id: r.text("user_id").parse().unwrap_or_default(),
        name: r.text("name"),
        key_type: r.text("type"),
        public_key: r.text("public_key"),
        fingerprint: r.text("fingerprint"),
        created_at: parse_ts(&r.text("created_at")),
    }
}

impl Store {
    /// Inserts a keypair if the user is under `limit` keypairs (checked in
    /// the same transaction).
    pub async fn keypair_create(&self, k: &Keypair, limit: i64) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
            .bind(k.user_id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if limit >= 0 && n + 1 > limit {
            return Err(AppError::over_quota("Quota exceeded, too many key pairs."));
        }
        sqlx::query(
            "INSERT INTO keypairs (user_id, name, type, public_key, fingerprint, created_at)
             VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(k.user_id.to_string())
        .bind(&k.name)
        .bind(&k.key_type)
        .bind(&k.public_key)
        .bind(&k.fingerprint)
        .bind(ts(&k.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| match db_err(e) {
            e if e.status() == 409 => {
                AppError::conflict(format!("Key pair '{}' already exists.", k.name))
            }
            e => e,
        })?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn keypair_get(&self, user: &UserId, name: &str) -> AppResult<Keypair> {
        let row = sqlx::query("SELECT * FROM keypairs WHERE user_id = $1 AND name = $2")
            .bind(user.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| {
                AppError::not_found(format!("Keypair {name} not found for user {user}"))
            })?;
        Ok(keypair_from(&row))
    }

    pub async fn keypair_list(&self, user: &UserId) -> AppResult<Vec<Keypair>> {
        let rows = sqlx::query("SELECT * FROM keypairs WHERE user_id = $1 ORDER BY name")
            .bind(user.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(keypair_from).collect())
    }

    pub async fn keypair_delete(&self, user: &UserId, name: &str) -> AppResult<()> {
        let r = sqlx::query("DELETE FROM keypairs WHERE user_id = $1 AND name = $2")
            .bind(user.to_string())
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Keypair {name} not found for user {user}"
            )));
        }
        Ok(())
    }

    pub async fn keypair_count(&self, user: &UserId) -> AppResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_one(self.pool())
            .await
            .map_err(db_err)
    }
}

// ---------------------------------------------------------------- servers

/// The flavor as recorded in the server at boot.
pub type FlavorSnapshot = Flavor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub code: i64,
    pub message: String,
    pub details: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: ServerId,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub name: String,
    pub hostname: String,
    pub description: Option<String>,
    pub image_id: String,
    pub flavor: FlavorSnapshot,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub requested_networks: serde_json::Value,
    pub availability_zone: Option<String>,
    pub host: Option<String>,
    pub node: Option<String>,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub reservation_id: String,
    pub launch_index: i64,
    pub locked: bool,
    pub generation: i64,
    pub launched_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted: bool,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub fault: Option<Fault>,
}

fn server_from(r: &AnyRow) -> AppResult<Server> {
    let flavor: Flavor = serde_json::from_str(&r.text("flavor"))?;
    Ok(Server {
        id: r
            .text("id")
            .parse()
            .map_err(|e| AppError::internal(format!("bad server id in store: {e}")))?,
        project_id: r.text("project_id").parse().unwrap_or_default(),
        user_id: r.text("user_id").parse().unwrap_or_default(),
        name: r.text("name"),
        hostname: r.text("hostname"),
        description: r.opt_text("description"),
        image_id: r.text("image_id"),
        flavor,
        key_name: r.opt_text("key_name"),
        key_data: r.opt_text("key_data"),
        user_data: r.opt_text("user_data"),
        config_drive: r.flag("config_drive"),
        requested_networks: r.json("requested_networks"),
        availability_zone: r.opt_text("availability_zone"),
        host: r.opt_text("host"),
        node: r.opt_text("node"),
        vm_state: VmState::parse(&r.text("vm_state")).unwrap_or(VmState::Error),
        task_state: r
            .opt_text("task_state")
            .as_deref()
            .and_then(TaskState::parse),
        power_state: PowerState::from_i64(r.int("power_state")),
        access_ipv4: r.text("access_ipv4"),
        access_ipv6: r.text("access_ipv6"),
        reservation_id: r.text("reservation_id"),
        launch_index: r.int("launch_index"),
        locked: r.flag("locked"),
        generation: r.int("generation"),
        launched_at: r.opt_text("launched_at").map(|s| parse_ts(&s)),
        terminated_at: r.opt_text("terminated_at").map(|s| parse_ts(&s)),
        created_at: parse_ts(&r.text("created_at")),
        updated_at: parse_ts(&r.text("updated_at")),
        deleted: r.flag("deleted"),
        metadata: BTreeMap::new(),
        tags: Vec::new(),
        fault: None,
    })
}

/// Filters of a server listing that the store applies in SQL.
#[derive(Debug, Clone, Default)]
pub struct ServerFilter {
    pub vm_states: Vec<VmState>,
    pub host: Option<String>,
    pub image_id: Option<String>,
    pub flavor_id: Option<String>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    /// Only servers changed at or after this time (deleted ones included).
    pub changes_since: Option<Timestamp>,
    pub changes_before: Option<Timestamp>,
    /// Include soft-deleted servers.
    pub deleted: bool,
    pub availability_zone: Option<String>,
    pub reservation_id: Option<String>,
}

/// The usage a project's servers take, for quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComputeUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram_mb: i64,
}

/// The fields a user may change on a server (None: leave as is).
#[derive(Debug, Clone, Default)]
pub struct ServerFields {
    pub name: Option<String>,
    /// Some(None) clears the description.
    pub description: Option<Option<String>>,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
}

/// A state change, applied only if the server's generation is unchanged.
#[derive(Debug, Clone, Default)]
pub struct ServerUpdate {
    pub vm_state: Option<VmState>,
    /// Some(None) clears the task state.
    pub task_state: Option<Option<TaskState>>,
    pub power_state: Option<PowerState>,
    pub host: Option<Option<String>>,
    pub launched_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    pub deleted: bool,
}

impl Store {
    /// Records new servers after checking the project's quota, atomically:
    /// the project's quota row is locked while usage is counted.
    /// `limits`: instances, cores, ram (negative = unlimited).
    pub async fn servers_create(&self, servers: &[Server], limits: ComputeUsage) -> AppResult<()> {
        let Some(first) = servers.first() else {
            return Ok(());
        };
        let project = first.project_id.to_string();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO quota_locks (project_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&project)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(&format!(
            "SELECT project_id FROM quota_locks WHERE project_id = $1{}",
            self.for_update()
        ))
        .bind(&project)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let used = usage_in(&mut tx, &project).await?;
        let want = ComputeUsage {
            instances: servers.len() as i64,
            cores: servers.iter().map(|s| s.flavor.vcpus).sum(),
            ram_mb: servers.iter().map(|s| s.flavor.ram_mb).sum(),
        };
        let mut over = Vec::new();
        for (name, limit, used, want) in [
            (
                "instances",
                limits.instances,
                used.instances,
                want.instances,
            ),
            ("cores", limits.cores, used.cores, want.cores),
            ("ram", limits.ram_mb, used.ram_mb, want.ram_mb),
        ] {
            if limit >= 0 && used + want > limit {
                over.push((name, limit, used, want));
            }
        }
        if !over.is_empty() {
            let names: Vec<&str> = over.iter().map(|o| o.0).collect();
            let detail: Vec<String> = over
                .iter()
                .map(|(n, l, u, w)| format!("Requested {w}, but already used {u} of {l} {n}"))
                .collect();
            return Err(AppError::over_quota(format!(
                "Quota exceeded for {}: {}",
                names.join(", "),
                detail.join("; ")
            )));
        }
        for s in servers {
            insert_server(&mut tx, s).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn compute_usage(&self, project: &ProjectId) -> AppResult<ComputeUsage> {
        let mut tx = self.begin().await?;
        let u = usage_in(&mut tx, &project.to_string()).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(u)
    }

    /// A server visible in `scope` (deleted ones only if `include_deleted`).
    pub async fn server_get(
        &self,
        scope: Scope,
        id: &ServerId,
        include_deleted: bool,
    ) -> AppResult<Server> {
        let row = self
            .scoped_row("servers", &id.to_string(), scope)
            .await?
            .ok_or_else(|| AppError::not_found(format!("Instance {id} could not be found.")))?;
        let mut s = server_from(&row)?;
        if s.deleted && !include_deleted {
            return Err(AppError::not_found(format!(
                "Instance {id} could not be found."
            )));
        }
        self.attach_details(std::slice::from_mut(&mut s)).await?;
        Ok(s)
    }

    /// Servers visible in `scope`, newest first (Nova's default order).
    pub async fn server_list(&self, scope: Scope, f: &ServerFilter) -> AppResult<Vec<Server>> {
        let mut sql = String::from("SELECT * FROM servers WHERE ($1 IS NULL OR project_id = $1)");
        let mut binds: Vec<Option<String>> = vec![scope.project()];
        let mut add = |sql: &mut String, cond: &str, v: Option<String>| {
            binds.push(v);
            sql.push_str(&format!(" AND {cond} ${}", binds.len()));
        };
        if !f.deleted && f.changes_since.is_none() {
            sql.push_str(" AND deleted = 0");
        }
        if let Some(h) = &f.host {
            add(&mut sql, "host =", Some(h.clone()));
        }
        if let Some(i) = &f.image_id {
            add(&mut sql, "image_id =", Some(i.clone()));
        }
        if let Some(fl) = &f.flavor_id {
            add(&mut sql, "flavor_id =", Some(fl.clone()));
        }
        if let Some(u) = &f.user_id {
            add(&mut sql, "user_id =", Some(u.clone()));
        }
        if let Some(p) = &f.project_id {
            add(&mut sql, "project_id =", Some(p.clone()));
        }
        if let Some(z) = &f.availability_zone {
            add(&mut sql, "availability_zone =", Some(z.clone()));
        }
        if let Some(r) = &f.reservation_id {
            add(&mut sql, "reservation_id =", Some(r.clone()));
        }
        if let Some(t) = &f.changes_since {
            add(&mut sql, "updated_at >=", Some(ts(t)));
        }
        if let Some(t) = &f.changes_before {
            add(&mut sql, "updated_at <=", Some(ts(t)));
        }
        if !f.vm_states.is_empty() {
            let list: Vec<String> = f
                .vm_states
                .iter()
                .map(|v| format!("'{}'", v.as_str()))
                .collect();
            sql.push_str(&format!(" AND vm_state IN ({})", list.join(",")));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q.fetch_all(self.pool()).await.map_err(db_err)?;
        rows.iter().map(server_from).collect()
    }

    /// Loads metadata and the latest fault of each server.
    pub async fn attach_details(&self, servers: &mut [Server]) -> AppResult<()> {
        if servers.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = servers.iter().map(|s| s.id.to_string()).collect();
        let by_id: std::collections::HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        // Chunks keep the statement under both engines' bind-parameter limits.
        for chunk in ids.chunks(500) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT server_id, key, value FROM server_metadata WHERE server_id IN ({})",
                ph.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(self.pool()).await.map_err(db_err)? {
                if let Some(s) = by_id.get(&r.text("server_id")).map(|&i| &mut servers[i]) {
                    s.metadata.insert(r.text("key"), r.text("value"));
                }
            }
            let sql = format!(
                "SELECT server_id, tag FROM server_tags WHERE server_id IN ({}) ORDER BY tag",
                ph.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(self.pool()).await.map_err(db_err)? {
                if let Some(s) = by_id.get(&r.text("server_id")).map(|&i| &mut servers[i]) {
                    s.tags.push(r.text("tag"));
                }
            }
        }
        for s in servers.iter_mut().filter(|s| s.vm_state == VmState::Error) {
            s.fault = self.server_fault(&s.id).await?;
        }
        Ok(())
    }

    pub async fn server_fault(&self, id: &ServerId) -> AppResult<Option<Fault>> {
        let row = sqlx::query(
            "SELECT code, message, details, created_at FROM server_faults
             WHERE server_id = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| Fault {
            code: r.int("code"),
            message: r.text("message"),
            details: r.text("details"),
            created_at: parse_ts(&r.text("created_at")),
        }))
    }

    pub async fn server_add_fault(&self, id: &ServerId, fault: &Fault) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO server_faults (server_id, code, message, details, created_at) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(id.to_string())
        .bind(fault.code)
        .bind(&fault.message)
        .bind(&fault.details)
        .bind(ts(&fault.created_at))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Applies a state change if the server is still at `generation`
    /// (None: unconditionally). Returns false when another actor changed it
    /// first.
    pub async fn server_update_state(
        &self,
        id: &ServerId,
        generation: Option<i64>,
        u: &ServerUpdate,
    ) -> AppResult<bool> {
        let mut sets: Vec<String> = vec![
            "generation = generation + 1".into(),
            "updated_at = $1".into(),
        ];
        let mut binds: Vec<Option<String>> = vec![Some(ts(&oxistack_model::time::now()))];
        let mut ints: Vec<(usize, i64)> = vec![];
        let mut push = |sets: &mut Vec<String>, col: &str, v: Option<String>| {
            binds.push(v);
            sets.push(format!("{col} = ${}", binds.len()));
        };
        if let Some(v) = u.vm_state {
            push(&mut sets, "vm_state", Some(v.as_str().into()));
        }
        if let Some(t) = u.task_state {
            push(&mut sets, "task_state", t.map(|t| t.as_str().to_string()));
        }
        if let Some(h) = &u.host {
            push(&mut sets, "host", h.clone());
            push(&mut sets, "node", h.clone());
        }
        if let Some(t) = &u.launched_at {
            push(&mut sets, "launched_at", Some(ts(t)));
        }
        if let Some(t) = &u.terminated_at {
            push(&mut sets, "terminated_at", Some(ts(t)));
        }
        if u.deleted {
            push(
                &mut sets,
                "deleted_at",
                Some(ts(&oxistack_model::time::now())),
            );
            sets.push("deleted = 1".into());
        }
        let mut idx = binds.len();
        if let Some(p) = u.power_state {
            idx += 1;
            sets.push(format!("power_state = ${idx}"));
            ints.push((idx, p as i64));
        }
        idx += 1;
        let mut sql = format!("UPDATE servers SET {} WHERE id = ${idx}", sets.join(", "));
        if generation.is_some() {
            sql.push_str(&format!(" AND generation = ${}", idx + 1));
        }
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.clone());
        }
        for (_, v) in &ints {
            q = q.bind(*v);
        }
        q = q.bind(id.to_string());
        if let Some(g) = generation {
            q = q.bind(g);
        }
        let r = q.execute(self.pool()).await.map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }

    /// Changes the user-editable fields of a server (None: unchanged).
    pub async fn server_update_fields(
        &self,
        scope: Scope,
        id: &ServerId,
        f: &ServerFields,
    ) -> AppResult<()> {
        let now = ts(&oxistack_model::time::now());
        let r = sqlx::query(
            "UPDATE servers SET name = COALESCE($1, name),
                description = CASE WHEN $2 = 1 THEN $3 ELSE description END,
                access_ipv4 = COALESCE($4, access_ipv4),
                access_ipv6 = COALESCE($5, access_ipv6),
                updated_at = $6, generation = generation + 1
             WHERE id = $7 AND deleted = 0 AND ($8 IS NULL OR project_id = $8)",
        )
        .bind(&f.name)
        .bind(f.description.is_some() as i64)
        .bind(f.description.clone().flatten())
        .bind(&f.access_ipv4)
        .bind(&f.access_ipv6)
        .bind(now)
        .bind(id.to_string())
        .bind(scope.project())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Instance {id} could not be found."
            )));
        }
        Ok(())
    }

    /// Replaces (`replace = true`) or merges the server's metadata, checking
    /// the item limit on the result.
    pub async fn server_set_metadata(
        &self,
        id: &ServerId,
        items: &BTreeMap<String, String>,
        replace: bool,
        limit: i64,
    ) -> AppResult<BTreeMap<String, String>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT key, value FROM server_metadata WHERE server_id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut md: BTreeMap<String, String> = if replace {
            BTreeMap::new()
        } else {
            rows.iter()
                .map(|r| (r.text("key"), r.text("value")))
                .collect()
        };
        md.extend(items.iter().map(|(k, v)| (k.clone(), v.clone())));
        if limit >= 0 && md.len() as i64 > limit {
            return Err(AppError::over_quota(format!(
                "Quota exceeded for metadata_items: Requested {}, but limit is {limit}",
                md.len()
            )));
        }
        sqlx::query("DELETE FROM server_metadata WHERE server_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (k, v) in &md {
            sqlx::query("INSERT INTO server_metadata (server_id, key, value) VALUES ($1,$2,$3)")
                .bind(id.to_string())
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(md)
    }

    pub async fn server_delete_metadata_key(&self, id: &ServerId, key: &str) -> AppResult<()> {
        let r = sqlx::query("DELETE FROM server_metadata WHERE server_id = $1 AND key = $2")
            .bind(id.to_string())
            .bind(key)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found(format!(
                "Metadata item was not found: {key}"
            )));
        }
        Ok(())
    }

    /// Servers recorded on a host that are not deleted (for reconcilers).
    pub async fn servers_on_host(&self, host: &str) -> AppResult<Vec<Server>> {
        let rows = sqlx::query("SELECT * FROM servers WHERE host = $1 AND deleted = 0")
            .bind(host)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(server_from).collect()
    }

    // ------------------------------------------------------------ quotas

    pub async fn quota_overrides(&self, project: &str) -> AppResult<BTreeMap<String, i64>> {
        let rows =
            sqlx::query("SELECT resource, hard_limit FROM compute_quotas WHERE project_id = $1")
                .bind(project)
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.text("resource"), r.int("hard_limit")))
            .collect())
    }

    pub async fn quota_set(&self, project: &str, resource: &str, limit: i64) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1 AND resource = $2")
            .bind(project)
            .bind(resource)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES ($1,$2,$3)",
        )
        .bind(project)
        .bind(resource)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    pub async fn quota_reset(&self, project: &str) -> AppResult<()> {
        sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1")
            .bind(project)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

async fn usage_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    project: &str,
) -> AppResult<ComputeUsage> {
    let rows = sqlx::query("SELECT flavor FROM servers WHERE project_id = $1 AND deleted = 0")
        .bind(project)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    let mut u = ComputeUsage::default();
    for r in rows {
        let f: Flavor = serde_json::from_str(&r.text("flavor"))?;
        u.instances += 1;
        u.cores += f.vcpus;
        u.ram_mb += f.ram_mb;
    }
    Ok(u)
}

async fn insert_server(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    s: &Server,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO servers (id, project_id, user_id, name, hostname, description, image_id,
            flavor_id, flavor, key_name, key_data, user_data, config_drive, requested_networks,
            availability_zone, host, node, vm_state, task_state, power_state, access_ipv4,
            access_ipv6, reservation_id, launch_index, locked, generation, launched_at,
            terminated_at, created_at, updated_at, deleted_at, deleted)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,
            $23,$24,$25,$26,NULL,NULL,$27,$28,NULL,0)",
    )
    .bind(s.id.to_string())
    .bind(s.project_id.to_string())
    .bind(s.user_id.to_string())
    .bind(&s.name)
    .bind(&s.hostname)
    .bind(&s.description)
    .bind(&s.image_id)
    .bind(&s.flavor.id)
    .bind(serde_json::to_string(&s.flavor)?)
    .bind(&s.key_name)
    .bind(&s.key_data)
    .bind(&s.user_data)
    .bind(s.config_drive as i64)
    .bind(s.requested_networks.to_string())
    .bind(&s.availability_zone)
    .bind(&s.host)
    .bind(&s.node)
    .bind(s.vm_state.as_str())
    .bind(s.task_state.map(|t| t.as_str()))
    .bind(s.power_state as i64)
    .bind(&s.access_ipv4)
    .bind(&s.access_ipv6)
    .bind(&s.reservation_id)
    .bind(s.launch_index)
    .bind(s.locked as i64)
    .bind(s.generation)
    .bind(ts(&s.created_at))
    .bind(ts(&s.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    for (k, v) in &s.metadata {
        sqlx::query("INSERT INTO server_metadata (server_id, key, value) VALUES ($1,$2,$3)")
            .bind(s.id.to_string())
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- tags

impl Store {
    pub async fn server_tags(&self, id: &ServerId) -> AppResult<Vec<String>> {
        sqlx::query_scalar("SELECT tag FROM server_tags WHERE server_id = $1 ORDER BY tag")
            .bind(id.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(db_err)
    }

    /// Replaces the server's tags with `tags` (None: adds one tag).
    pub async fn server_set_tags(
        &self,
        id: &ServerId,
        tags: &[String],
        replace: bool,
        limit: usize,
    ) -> AppResult<()> {
        let mut tx = self.begin().await?;
        let mut current: Vec<String> = if replace {
            sqlx::query("DELETE FROM server_tags WHERE server_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            vec![]
        } else {
            sqlx::query_scalar("SELECT tag FROM server_tags WHERE server_id = $1")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
        };
        for t in tags {
            if !current.contains(t) {
                current.push(t.clone());
                sqlx::query("INSERT INTO server_tags (server_id, tag) VALUES ($1, $2)")
                    .bind(id.to_string())
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        if current.len() > limit {
            return Err(AppError::bad_request(format!(
                "The number of tags exceeded the per-server limit {limit}"
            )));
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn server_delete_tag(&self, id: &ServerId, tag: Option<&str>) -> AppResult<bool> {
        let r = match tag {
            Some(t) => {
                sqlx::query("DELETE FROM server_tags WHERE server_id = $1 AND tag = $2")
                    .bind(id.to_string())
                    .bind(t)
                    .execute(self.pool())
                    .await
            }
            None => {
                sqlx::query("DELETE FROM server_tags WHERE server_id = $1")
                    .bind(id.to_string())
                    .execute(self.pool())
                    .await
            }
        }
        .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }
}

impl Store {
    pub async fn server_set_locked(&self, id: &ServerId, locked: bool) -> AppResult<()> {
        sqlx::query("UPDATE servers SET locked = $1, generation = generation + 1 WHERE id = $2")
            .bind(locked as i64)
            .bind(id.to_string())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
