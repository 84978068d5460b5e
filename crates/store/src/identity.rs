//! Store queries for the identity service: Keystone's domains, projects,
//! users, groups, roles, role assignments, token revocations and catalog.
//!
//! Keystone resources are not tenant resources (they define the tenants), so
//! these queries take no `Scope`: the identity app layer applies Keystone's
//! policy (admin, or the caller itself) before calling them.

use oxistack_model::time::{now, Timestamp};
use oxistack_model::AppResult;
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::{db_err, parse_ts, ts, RowExt, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct DomainRec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub extra: Value,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRec {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub parent_id: Option<String>,
    pub description: String,
    pub enabled: bool,
    pub extra: Value,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRec {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: bool,
    pub password_hash: Option<String>,
    pub default_project_id: Option<String>,
    pub extra: Value,
    pub password_changed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRec {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: String,
    pub extra: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleRec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub extra: Value,
}

/// One role assignment: `actor_type` is `user` or `group`, `target_type` is
/// `project` or `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRec {
    pub actor_type: String,
    pub actor_id: String,
    pub target_type: String,
    pub target_id: String,
    pub role_id: String,
}

/// Filters of an assignment listing; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AssignmentFilter {
    pub actor_type: Option<String>,
    pub actor_ids: Option<Vec<String>>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub role_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegionRec {
    pub id: String,
    pub description: String,
    pub parent_region_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRec {
    pub id: String,
    pub service_type: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRec {
    pub id: String,
    pub service_id: String,
    pub interface: String,
    pub region_id: Option<String>,
    pub url: String,
    pub enabled: bool,
}

/// Filters of a name/domain/enabled listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
    pub parent_id: Option<String>,
}

fn tags_of(row: &AnyRow) -> Vec<String> {
    serde_json::from_value(row.json("tags")).unwrap_or_default()
}

fn obj(row: &AnyRow, col: &str) -> Value {
    match row.json(col) {
        Value::Object(m) => Value::Object(m),
        _ => Value::Object(Default::default()),
    }
}

fn domain_of(row: &AnyRow) -> DomainRec {
    DomainRec {
        id: row.text("id"),
        name: row.text("name"),
        description: row.text("description"),
        enabled: row.flag("enabled"),
        extra: obj(row, "extra"),
        tags: tags_of(row),
    }
}

fn project_of(row: &AnyRow) -> ProjectRec {
    ProjectRec {
        id: row.text("id"),
        name: row.text("name"),
        domain_id: row.text("domain_id"),
        parent_id: row.opt_text("parent_id"),
        description: row.text("description"),
        enabled: row.flag("enabled"),
        extra: obj(row, "extra"),
        tags: tags_of(row),
    }
}

fn user_of(row: &AnyRow) -> UserRec {
    UserRec {
        id: row.text("id"),
        name: row.text("name"),
        domain_id: row.text("domain_id"),
        enabled: row.flag("enabled"),
        password_hash: row.opt_text("password_hash"),
        default_project_id: row.opt_text("default_project_id"),
        extra: obj(row, "extra"),
        password_changed_at: row.opt_text("password_changed_at").map(|s| parse_ts(&s)),
    }
}

fn group_of(row: &AnyRow) -> GroupRec {
    GroupRec {
        id: row.text("id"),
        name: row.text("name"),
        domain_id: row.text("domain_id"),
        description: row.text("description"),
        extra: obj(row, "extra"),
    }
}

fn role_of(row: &AnyRow) -> RoleRec {
    RoleRec {
        id: row.text("id"),
        name: row.text("name"),
        description: row.text("description"),
        extra: obj(row, "extra"),
    }
}

fn assignment_of(row: &AnyRow) -> AssignmentRec {
    AssignmentRec {
        actor_type: row.text("actor_type"),
        actor_id: row.text("actor_id"),
        target_type: row.text("target_type"),
        target_id: row.text("target_id"),
        role_id: row.text("role_id"),
    }
}

fn region_of(row: &AnyRow) -> RegionRec {
    RegionRec {
        id: row.text("id"),
        description: row.text("description"),
        parent_region_id: row.opt_text("parent_region_id"),
    }
}

fn service_of(row: &AnyRow) -> ServiceRec {
    ServiceRec {
        id: row.text("id"),
        service_type: row.text("type"),
        name: row.text("name"),
        description: row.text("description"),
        enabled: row.flag("enabled"),
    }
}

fn endpoint_of(row: &AnyRow) -> EndpointRec {
    EndpointRec {
        id: row.text("id"),
        service_id: row.text("service_id"),
        interface: row.text("interface"),
        region_id: row.opt_text("region_id"),
        url: row.text("url"),
        enabled: row.flag("enabled"),
    }
}

/// A WHERE clause assembled from optional text filters, all bound.
#[derive(Default)]
struct Where {
    conds: Vec<String>,
    binds: Vec<String>,
}

impl Where {
    fn eq(&mut self, col: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.binds.push(v.to_string());
            self.conds.push(format!("{col} = ${}", self.binds.len()));
        }
    }
    fn within(&mut self, col: &str, vs: Option<&[String]>) {
        if let Some(vs) = vs {
            if vs.is_empty() {
                self.conds.push("1 = 0".into());
                return;
            }
            let mut ph = Vec::new();
            for v in vs {
                self.binds.push(v.clone());
                ph.push(format!("${}", self.binds.len()));
            }
            self.conds.push(format!("{col} IN ({})", ph.join(", ")));
        }
    }
    fn flag(&mut self, col: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.conds.push(format!("{col} = {}", i64::from(v)));
        }
    }
    fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
    async fn fetch(&self, store: &Store, head: &str, tail: &str) -> AppResult<Vec<AnyRow>> {
        let sql = format!("{head}{}{tail}", self.sql());
        let mut q = sqlx::query(&sql);
        for b in &self.binds {
            q = q.bind(b.clone());
        }
        q.fetch_all(store.pool()).await.map_err(db_err)
    }
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

impl Store {
    // ---- secrets -------------------------------------------------------

    /// The secret called `name`, created with `value` if it does not exist
    /// yet. Several controllers racing here all end up with the first value.
    pub async fn secret_get_or_create(&self, name: &str, value: &str) -> AppResult<String> {
        sqlx::query("INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        sqlx::query_scalar::<_, String>("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)
    }

    // ---- domains -------------------------------------------------------

    pub async fn domain_insert(&self, d: &DomainRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_domains (id, name, description, enabled, extra, tags, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&d.id)
            .bind(&d.name)
            .bind(&d.description)
            .bind(i64::from(d.enabled))
            .bind(json_text(&d.extra))
            .bind(json_text(&d.tags))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn domain_update(&self, d: &DomainRec) -> AppResult<()> {
        sqlx::query("UPDATE identity_domains SET name = $2, description = $3, enabled = $4, extra = $5, tags = $6 WHERE id = $1")
            .bind(&d.id)
            .bind(&d.name)
            .bind(&d.description)
            .bind(i64::from(d.enabled))
            .bind(json_text(&d.extra))
            .bind(json_text(&d.tags))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn domain_get(&self, id: &str) -> AppResult<Option<DomainRec>> {
        let row = sqlx::query("SELECT * FROM identity_domains WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(domain_of))
    }

    pub async fn domain_by_name(&self, name: &str) -> AppResult<Option<DomainRec>> {
        let row = sqlx::query("SELECT * FROM identity_domains WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(domain_of))
    }

    pub async fn domain_list(&self, f: &ListFilter) -> AppResult<Vec<DomainRec>> {
        let mut w = Where::default();
        w.eq("name", f.name.as_deref());
        w.flag("enabled", f.enabled);
        let rows = w
            .fetch(self, "SELECT * FROM identity_domains", " ORDER BY name")
            .await?;
        Ok(rows.iter().map(domain_of).collect())
    }

    /// Deletes a domain and everything in it (projects, users, groups and
    /// every assignment on or of them), in one transaction.
    pub async fn domain_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_assignments WHERE target_id = $1",
            "DELETE FROM identity_assignments WHERE target_id IN (SELECT id FROM identity_projects WHERE domain_id = $1)",
            "DELETE FROM identity_assignments WHERE actor_id IN (SELECT id FROM identity_users WHERE domain_id = $1)",
            "DELETE FROM identity_assignments WHERE actor_id IN (SELECT id FROM identity_groups WHERE domain_id = $1)",
            "DELETE FROM identity_projects WHERE domain_id = $1",
            "DELETE FROM identity_users WHERE domain_id = $1",
            "DELETE FROM identity_groups WHERE domain_id = $1",
            "DELETE FROM identity_domains WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    // ---- projects ------------------------------------------------------

    pub async fn project_insert(&self, p: &ProjectRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_projects (id, name, domain_id, parent_id, description, enabled, extra, tags, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.domain_id)
            .bind(p.parent_id.clone())
            .bind(&p.description)
            .bind(i64::from(p.enabled))
            .bind(json_text(&p.extra))
            .bind(json_text(&p.tags))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn project_update(&self, p: &ProjectRec) -> AppResult<()> {
        sqlx::query("UPDATE identity_projects SET name = $2, description = $3, enabled = $4, extra = $5, tags = $6 WHERE id = $1")
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(i64::from(p.enabled))
            .bind(json_text(&p.extra))
            .bind(json_text(&p.tags))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn project_get(&self, id: &str) -> AppResult<Option<ProjectRec>> {
        let row = sqlx::query("SELECT * FROM identity_projects WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(project_of))
    }

    pub async fn project_by_name(
        &self,
        domain_id: &str,
        name: &str,
    ) -> AppResult<Option<ProjectRec>> {
        let row = sqlx::query("SELECT * FROM identity_projects WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(project_of))
    }

    pub async fn project_list(&self, f: &ListFilter) -> AppResult<Vec<ProjectRec>> {
        let mut w = Where::default();
        w.eq("name", f.name.as_deref());
        w.eq("domain_id", f.domain_id.as_deref());
        w.eq("parent_id", f.parent_id.as_deref());
        w.flag("enabled", f.enabled);
        let rows = w
            .fetch(self, "SELECT * FROM identity_projects", " ORDER BY name")
            .await?;
        Ok(rows.iter().map(project_of).collect())
    }

    pub async fn project_has_children(&self, id: &str) -> AppResult<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM identity_projects WHERE parent_id = $1")
                .bind(id)
                .fetch_one(self.pool())
                .await
                .map_err(db_err)?;
        Ok(n > 0)
    }

    /// Deletes a project and every role assignment on it.
    pub async fn project_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_assignments WHERE target_id = $1",
            "UPDATE identity_users SET default_project_id = NULL WHERE default_project_id = $1",
            "DELETE FROM identity_projects WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    // ---- users ---------------------------------------------------------

    pub async fn user_insert(&self, u: &UserRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_users (id, name, domain_id, enabled, password_hash, default_project_id, extra, password_changed_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&u.id)
            .bind(&u.name)
            .bind(&u.domain_id)
            .bind(i64::from(u.enabled))
            .bind(u.password_hash.clone())
            .bind(u.default_project_id.clone())
            .bind(json_text(&u.extra))
            .bind(u.password_changed_at.as_ref().map(ts))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn user_update(&self, u: &UserRec) -> AppResult<()> {
        sqlx::query("UPDATE identity_users SET name = $2, enabled = $3, password_hash = $4, default_project_id = $5, extra = $6, password_changed_at = $7 WHERE id = $1")
            .bind(&u.id)
            .bind(&u.name)
            .bind(i64::from(u.enabled))
            .bind(u.password_hash.clone())
            .bind(u.default_project_id.clone())
            .bind(json_text(&u.extra))
            .bind(u.password_changed_at.as_ref().map(ts))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn user_get(&self, id: &str) -> AppResult<Option<UserRec>> {
        let row = sqlx::query("SELECT * FROM identity_users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(user_of))
    }

    pub async fn user_by_name(&self, domain_id: &str, name: &str) -> AppResult<Option<UserRec>> {
        let row = sqlx::query("SELECT * FROM identity_users WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(user_of))
    }

    pub async fn user_list(&self, f: &ListFilter) -> AppResult<Vec<UserRec>> {
        let mut w = Where::default();
        w.eq("name", f.name.as_deref());
        w.eq("domain_id", f.domain_id.as_deref());
        w.flag("enabled", f.enabled);
        let rows = w
            .fetch(self, "SELECT * FROM identity_users", " ORDER BY name")
            .await?;
        Ok(rows.iter().map(user_of).collect())
    }

    /// Deletes a user, its assignments and group memberships.
    pub async fn user_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_assignments WHERE actor_id = $1",
            "DELETE FROM identity_group_members WHERE user_id = $1",
            "DELETE FROM identity_users WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    // ---- groups --------------------------------------------------------

    pub async fn group_insert(&self, g: &GroupRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_groups (id, name, domain_id, description, extra, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&g.id)
            .bind(&g.name)
            .bind(&g.domain_id)
            .bind(&g.description)
            .bind(json_text(&g.extra))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn group_update(&self, g: &GroupRec) -> AppResult<()> {
        sqlx::query(
            "UPDATE identity_groups SET name = $2, description = $3, extra = $4 WHERE id = $1",
        )
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(json_text(&g.extra))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn group_get(&self, id: &str) -> AppResult<Option<GroupRec>> {
        let row = sqlx::query("SELECT * FROM identity_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(group_of))
    }

    pub async fn group_list(&self, f: &ListFilter) -> AppResult<Vec<GroupRec>> {
        let mut w = Where::default();
        w.eq("name", f.name.as_deref());
        w.eq("domain_id", f.domain_id.as_deref());
        let rows = w
            .fetch(self, "SELECT * FROM identity_groups", " ORDER BY name")
            .await?;
        Ok(rows.iter().map(group_of).collect())
    }

    pub async fn group_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_assignments WHERE actor_id = $1",
            "DELETE FROM identity_group_members WHERE group_id = $1",
            "DELETE FROM identity_groups WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn group_add_user(&self, group_id: &str, user_id: &str) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT (group_id, user_id) DO NOTHING")
            .bind(group_id)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Returns whether the membership existed.
    pub async fn group_remove_user(&self, group_id: &str, user_id: &str) -> AppResult<bool> {
        let r =
            sqlx::query("DELETE FROM identity_group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group_id)
                .bind(user_id)
                .execute(self.pool())
                .await
                .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn group_has_user(&self, group_id: &str, user_id: &str) -> AppResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM identity_group_members WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group_id)
        .bind(user_id)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        Ok(n > 0)
    }

    pub async fn group_users(&self, group_id: &str) -> AppResult<Vec<UserRec>> {
        let rows = sqlx::query("SELECT u.* FROM identity_users u JOIN identity_group_members m ON m.user_id = u.id WHERE m.group_id = $1 ORDER BY u.name")
            .bind(group_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(user_of).collect())
    }

    pub async fn user_groups(&self, user_id: &str) -> AppResult<Vec<GroupRec>> {
        let rows = sqlx::query("SELECT g.* FROM identity_groups g JOIN identity_group_members m ON m.group_id = g.id WHERE m.user_id = $1 ORDER BY g.name")
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(group_of).collect())
    }

    // ---- roles ---------------------------------------------------------

    pub async fn role_insert(&self, r: &RoleRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_roles (id, name, description, extra, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&r.id)
            .bind(&r.name)
            .bind(&r.description)
            .bind(json_text(&r.extra))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn role_update(&self, r: &RoleRec) -> AppResult<()> {
        sqlx::query(
            "UPDATE identity_roles SET name = $2, description = $3, extra = $4 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.description)
        .bind(json_text(&r.extra))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn role_get(&self, id: &str) -> AppResult<Option<RoleRec>> {
        let row = sqlx::query("SELECT * FROM identity_roles WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(role_of))
    }

    pub async fn role_list(&self, name: Option<&str>) -> AppResult<Vec<RoleRec>> {
        let mut w = Where::default();
        w.eq("name", name);
        let rows = w
            .fetch(self, "SELECT * FROM identity_roles", " ORDER BY name")
            .await?;
        Ok(rows.iter().map(role_of).collect())
    }

    pub async fn role_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_assignments WHERE role_id = $1",
            "DELETE FROM identity_implied_roles WHERE prior_role_id = $1 OR implied_role_id = $1",
            "DELETE FROM identity_roles WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn implied_role_add(&self, prior: &str, implied: &str) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_implied_roles (prior_role_id, implied_role_id) VALUES ($1, $2) ON CONFLICT (prior_role_id, implied_role_id) DO NOTHING")
            .bind(prior)
            .bind(implied)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn implied_role_remove(&self, prior: &str, implied: &str) -> AppResult<bool> {
        let r = sqlx::query(
            "DELETE FROM identity_implied_roles WHERE prior_role_id = $1 AND implied_role_id = $2",
        )
        .bind(prior)
        .bind(implied)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    /// Every implication rule, as (prior, implied) role id pairs.
    pub async fn implied_role_list(&self) -> AppResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT prior_role_id, implied_role_id FROM identity_implied_roles ORDER BY prior_role_id, implied_role_id")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.text("prior_role_id"), r.text("implied_role_id")))
            .collect())
    }

    // ---- assignments ---------------------------------------------------

    /// Grants a role; granting an existing assignment again is not an error.
    pub async fn assignment_add(&self, a: &AssignmentRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_assignments (actor_type, actor_id, target_type, target_id, role_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (actor_id, target_id, role_id) DO NOTHING")
            .bind(&a.actor_type)
            .bind(&a.actor_id)
            .bind(&a.target_type)
            .bind(&a.target_id)
            .bind(&a.role_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Returns whether the assignment existed.
    pub async fn assignment_remove(&self, a: &AssignmentRec) -> AppResult<bool> {
        let r = sqlx::query("DELETE FROM identity_assignments WHERE actor_id = $1 AND target_id = $2 AND role_id = $3")
            .bind(&a.actor_id)
            .bind(&a.target_id)
            .bind(&a.role_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn assignment_list(&self, f: &AssignmentFilter) -> AppResult<Vec<AssignmentRec>> {
        let mut w = Where::default();
        w.eq("actor_type", f.actor_type.as_deref());
        w.within("actor_id", f.actor_ids.as_deref());
        w.eq("target_type", f.target_type.as_deref());
        w.eq("target_id", f.target_id.as_deref());
        w.eq("role_id", f.role_id.as_deref());
        let rows = w
            .fetch(
                self,
                "SELECT * FROM identity_assignments",
                " ORDER BY actor_id, target_id, role_id",
            )
            .await?;
        Ok(rows.iter().map(assignment_of).collect())
    }

    /// The role ids a user holds on a target directly or through its
    /// groups (before implied roles are expanded). The hot path of token
    /// validation: one indexed query.
    pub async fn user_role_ids_on(&self, user_id: &str, target_id: &str) -> AppResult<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT role_id FROM identity_assignments WHERE target_id = $1 AND (actor_id = $2 OR actor_id IN (SELECT group_id FROM identity_group_members WHERE user_id = $2))")
            .bind(target_id)
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)
    }

    /// Ids of every target of `target_type` where the user holds some role,
    /// directly or through a group.
    pub async fn user_target_ids(
        &self,
        user_id: &str,
        target_type: &str,
    ) -> AppResult<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT target_id FROM identity_assignments WHERE target_type = $1 AND (actor_id = $2 OR actor_id IN (SELECT group_id FROM identity_group_members WHERE user_id = $2)) ORDER BY target_id")
            .bind(target_type)
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)
    }

    // ---- token revocations ---------------------------------------------

    pub async fn revoke_audit_id(&self, audit_id: &str) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_revocations (id, audit_id, user_id, issued_before, created_at) VALUES ($1, $2, NULL, NULL, $3)")
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(audit_id)
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Revokes every token of `user_id` issued at or before `before`.
    pub async fn revoke_user_tokens(&self, user_id: &str, before: &Timestamp) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_revocations (id, audit_id, user_id, issued_before, created_at) VALUES ($1, NULL, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(user_id)
            .bind(ts(before))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Whether a token with these audit ids, of this user, issued at
    /// `issued_at`, has been revoked.
    pub async fn token_revoked(
        &self,
        audit_ids: &[String],
        user_id: &str,
        issued_at: &Timestamp,
    ) -> AppResult<bool> {
        let first = audit_ids.first().cloned().unwrap_or_default();
        let second = audit_ids.get(1).cloned().unwrap_or_else(|| first.clone());
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_revocations WHERE audit_id IN ($1, $2) OR (user_id = $3 AND issued_before >= $4)")
            .bind(first)
            .bind(second)
            .bind(user_id)
            .bind(ts(issued_at))
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        Ok(n > 0)
    }

    // ---- catalog -------------------------------------------------------

    pub async fn region_upsert(&self, r: &RegionRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_regions (id, description, parent_region_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(&r.id)
            .bind(&r.description)
            .bind(r.parent_region_id.clone())
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn region_list(&self) -> AppResult<Vec<RegionRec>> {
        let rows = sqlx::query("SELECT * FROM identity_regions ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(region_of).collect())
    }

    /// Replaces a region's description and parent; false when it is missing.
    pub async fn region_update(&self, r: &RegionRec) -> AppResult<bool> {
        let n = sqlx::query(
            "UPDATE identity_regions SET description = $2, parent_region_id = $3 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(&r.description)
        .bind(r.parent_region_id.clone())
        .execute(self.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n > 0)
    }

    /// Deletes a region; false when it is missing.
    pub async fn region_delete(&self, id: &str) -> AppResult<bool> {
        let n = sqlx::query("DELETE FROM identity_regions WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }

    pub async fn region_get(&self, id: &str) -> AppResult<Option<RegionRec>> {
        let row = sqlx::query("SELECT * FROM identity_regions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(region_of))
    }

    /// Inserts or replaces a service (type, name, description, enabled).
    pub async fn service_upsert(&self, s: &ServiceRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_services (id, type, name, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET type = $2, name = $3, description = $4, enabled = $5")
            .bind(&s.id)
            .bind(&s.service_type)
            .bind(&s.name)
            .bind(&s.description)
            .bind(i64::from(s.enabled))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn service_get(&self, id: &str) -> AppResult<Option<ServiceRec>> {
        let row = sqlx::query("SELECT * FROM identity_services WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(service_of))
    }

    pub async fn service_list(&self, service_type: Option<&str>) -> AppResult<Vec<ServiceRec>> {
        let mut w = Where::default();
        w.eq("type", service_type);
        let rows = w
            .fetch(
                self,
                "SELECT * FROM identity_services",
                " ORDER BY type, id",
            )
            .await?;
        Ok(rows.iter().map(service_of).collect())
    }

    pub async fn service_delete(&self, id: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM identity_endpoints WHERE service_id = $1",
            "DELETE FROM identity_services WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// Inserts or replaces an endpoint.
    pub async fn endpoint_upsert(&self, e: &EndpointRec) -> AppResult<()> {
        sqlx::query("INSERT INTO identity_endpoints (id, service_id, interface, region_id, url, enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET service_id = $2, interface = $3, region_id = $4, url = $5, enabled = $6")
            .bind(&e.id)
            .bind(&e.service_id)
            .bind(&e.interface)
            .bind(e.region_id.clone())
            .bind(&e.url)
            .bind(i64::from(e.enabled))
            .bind(ts(&now()))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn endpoint_get(&self, id: &str) -> AppResult<Option<EndpointRec>> {
        let row = sqlx::query("SELECT * FROM identity_endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(endpoint_of))
    }

    pub async fn endpoint_list(
        &self,
        service_id: Option<&str>,
        interface: Option<&str>,
    ) -> AppResult<Vec<EndpointRec>> {
        let mut w = Where::default();
        w.eq("service_id", service_id);
        w.eq("interface", interface);
        let rows = w
            .fetch(
                self,
                "SELECT * FROM identity_endpoints",
                " ORDER BY service_id, interface, id",
            )
            .await?;
        Ok(rows.iter().map(endpoint_of).collect())
    }

    pub async fn endpoint_delete(&self, id: &str) -> AppResult<bool> {
        let r = sqlx::query("DELETE FROM identity_endpoints WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }
}
