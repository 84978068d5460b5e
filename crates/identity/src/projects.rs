//! Projects (Keystone's tenants), in a hierarchy under their domain.

use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, DEFAULT_DOMAIN};
use oxistack_store::identity::{ListFilter, ProjectRec};
use serde_json::{json, Value};

use crate::{new_id, policy, schema, Identity};

const KNOWN: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "parent_id",
    "description",
    "enabled",
    "is_domain",
    "tags",
    "links",
    "options",
];

pub fn missing(id: &str) -> AppError {
    AppError::not_found(format!("Could not find project: {id}."))
}

fn duplicate(name: &str, domain_id: &str) -> AppError {
    AppError::conflict(format!(
        "Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : {name}."
    ))
    .with_context(format!("domain {domain_id}"))
}

impl Identity {
    pub async fn list_projects(
        &self,
        ctx: &AuthContext,
        filter: &ListFilter,
    ) -> AppResult<Vec<ProjectRec>> {
        policy::admin(ctx, "list_projects")?;
        self.store.project_list(filter).await
    }

    /// Admins, and members of the project (any role on it).
    pub async fn get_project(&self, ctx: &AuthContext, id: &str) -> AppResult<ProjectRec> {
        let rec = self.store.project_get(id).await?;
        if !ctx.is_admin() {
            let member = ctx.project_id.is_some_and(|p| p.to_string() == id)
                || !self
                    .store
                    .user_role_ids_on(&ctx.user_id.to_string(), id)
                    .await?
                    .is_empty();
            if !member {
                return Err(policy::refused("get_project"));
            }
        }
        rec.ok_or_else(|| missing(id))
    }

    pub async fn create_project(&self, ctx: &AuthContext, body: &Value) -> AppResult<ProjectRec> {
        policy::admin(ctx, "create_project")?;
        let m = schema::wrapper(body, "project")?;
        if schema::opt_bool(m, "is_domain")? == Some(true) {
            return Err(AppError::bad_request(
                "Projects acting as domains are not supported; create a domain instead.",
            ));
        }
        let name = schema::name(m, 64)?;
        let parent =
            match schema::opt_str(m, "parent_id", 64)? {
                Some(pid) => Some(self.store.project_get(&pid).await?.ok_or_else(|| {
                    AppError::not_found(format!("Could not find project: {pid}."))
                })?),
                None => None,
            };
        let domain_id = match schema::opt_str(m, "domain_id", 64)? {
            Some(d) => d,
            None => parent
                .as_ref()
                .map(|p| p.domain_id.clone())
                .or_else(|| ctx.domain_id.clone())
                .or_else(|| ctx.project_domain_id.clone())
                .unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        };
        if self.store.domain_get(&domain_id).await?.is_none() {
            return Err(AppError::not_found(format!(
                "Could not find domain: {domain_id}."
            )));
        }
        if let Some(p) = &parent {
            if p.domain_id != domain_id {
                return Err(AppError::bad_request(
                    "Cannot create project, the parent project is in a different domain.",
                ));
            }
        }
        let rec = ProjectRec {
            id: new_id(),
            name,
            parent_id: Some(parent.map(|p| p.id).unwrap_or_else(|| domain_id.clone())),
            domain_id,
            description: schema::opt_str(m, "description", 65535)?.unwrap_or_default(),
            enabled: schema::opt_bool(m, "enabled")?.unwrap_or(true),
            extra: Value::Object(schema::extras(m, KNOWN)),
            tags: schema::opt_tags(m)?.unwrap_or_default(),
        };
        self.store
            .project_insert(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        tracing::info!(project_id = %rec.id, "created project");
        Ok(rec)
    }

    pub async fn update_project(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<ProjectRec> {
        policy::admin(ctx, "update_project")?;
        let m = schema::wrapper(body, "project")?;
        let mut rec = self
            .store
            .project_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        for (key, current) in [("id", json!(rec.id)), ("domain_id", json!(rec.domain_id))] {
            if m.get(key).is_some_and(|v| v != &current) {
                return Err(schema::invalid(
                    key,
                    format!("the {key} of a project cannot be changed"),
                ));
            }
        }
        if m.contains_key("is_domain")
            || m.get("parent_id")
                .is_some_and(|v| Some(v) != rec.parent_id.as_ref().map(|p| json!(p)).as_ref())
        {
            return Err(AppError::forbidden(
                "Update of `parent_id` or `is_domain` is not allowed.",
            ));
        }
        if let Some(n) = schema::opt_name(m, 64)? {
            rec.name = n;
        }
        if let Some(d) = schema::opt_nullable_str(m, "description", 65535)? {
            rec.description = d.unwrap_or_default();
        }
        if let Some(e) = schema::opt_bool(m, "enabled")? {
            rec.enabled = e;
        }
        if let Some(t) = schema::opt_tags(m)? {
            rec.tags = t;
        }
        rec.extra = schema::merge_extra(&rec.extra, schema::extras(m, KNOWN));
        self.store
            .project_update(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        Ok(rec)
    }

    /// Deletes a leaf project and every assignment on it (so tokens scoped
    /// to it stop validating at once).
    pub async fn delete_project(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_project")?;
        self.store
            .project_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        if self.store.project_has_children(id).await? {
            return Err(AppError::forbidden(format!(
                "Cannot delete project {id} since it is not a leaf in the hierarchy."
            )));
        }
        self.store.project_delete(id).await?;
        tracing::info!(project_id = %id, "deleted project");
        Ok(())
    }

    /// `GET /v3/users/{id}/projects`: admin or the user itself.
    pub async fn list_user_projects(
        &self,
        ctx: &AuthContext,
        user_id: &str,
    ) -> AppResult<Vec<ProjectRec>> {
        policy::admin_or_self(ctx, "list_user_projects", user_id)?;
        self.store
            .user_get(user_id)
            .await?
            .ok_or_else(|| crate::users::missing(user_id))?;
        self.user_projects(user_id).await
    }
}
